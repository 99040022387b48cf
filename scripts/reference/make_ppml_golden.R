#!/usr/bin/env Rscript
# Golden values for fegpu's Poisson (PPML) and logit fixed-effects estimators, computed by an
# independent implementation: the R package fixest (Berge), `fepois()` / `feglm(family = binomial)`.
#
# Writes tests/fixtures/ppml/trade.csv, tests/fixtures/ppml/zeros.csv (the data) and
# tests/fixtures/ppml/fixest.json (the results). CI never runs this: the outputs are committed.
# To regenerate (R and fixest installed as in scripts/peers/INSTALL-R.md), from the repo root:
#
#     Rscript scripts/reference/make_ppml_golden.R
#
# No R package beyond fixest is needed (the JSON is written by hand, every double as %.17g).
#
# fixest conventions that matter when comparing (fixest 0.12.2, read from its R/ and src/):
#
# * Fit. IRLS, stop when |dev - dev_old| / (0.1 + |dev|) < glm.tol. Every case here runs at
#   glm.tol = 1e-10, fixef.tol = 1e-10 (fixest refuses fixef.tol <= 1e4 * .Machine$double.eps),
#   glm.iter = 1000, fixef.iter = 1e5, so the numbers are the converged optimum to ~1e-9 relative.
#   `iterations` is fixest's IRLS count at those tolerances; it is not something to match.
#
# * Dropped FE groups (`fixef.rm = "perfect"`, the default of fepois/feglm): Poisson drops every
#   observation of a fixed-effect level whose outcome sum is 0; logit drops levels whose outcome
#   is all 0 or all 1. One pass over all effects at once, in C++ (src/quf.cpp), no singletons.
#   For Poisson one pass is enough: removing y = 0 rows never changes any other group's sum,
#   so no new all-zero group can appear (recursion only matters when singletons are also
#   dropped, or for logit's all-1 groups; see tests/fixtures/ppml/separation/). fixest does NOT
#   detect separation caused by regressors (issue #529). `n_removed_fe` = nobs_origin - nobs
#   (the data have no missing values, so every removed row is an FE-group removal);
#   `fixef_removed` = number of levels removed per effect.
#
# * Variance. bread = (X~' W X~)^-1 from the last IRLS step (W = w*mu for Poisson,
#   w*mu*(1-mu) for logit), dispersion fixed at 1 for both families. The ssc is fixest's default
#   ssc(adj = TRUE, fixef.K = "nested", cluster.adj = TRUE, cluster.df = "min", t.df = "min"):
#     K = nparams = k + sum_q (G_q - 1) + 1   (every FE level counted once less one per effect,
#                                             plus one; no exact redundancy count, since
#                                             fixef.force_exact = FALSE)
#   Clustered ("nested"): the FEs nested in a cluster variable are taken out of K:
#     some nested:  K - sum_{q nested} (G_q - 1)
#     all nested:   K - (sum_q G_q - (Q - 1)) + 1   (= k + 1)
#   "Nested" is decided by name (the FE is a cluster variable, or a^b with a or b a cluster
#   variable: Origin^Destination is nested in Origin) and otherwise by cpp_check_nested.
#   Examples in fixest.json: | Origin + Destination with cluster:Origin gives K = 31 - 14 = 17;
#   with cluster:Origin+Destination K = 3; | Origin^Destination + Product + Year with
#   cluster:Origin gives K = 221 - 208 = 13.
#   iid    V = (n-1)/(n-K) * bread        (yes: a small-sample factor even though phi = 1)
#   hetero V = n/(n-K) * bread S'S bread  (HC1: n/(n-1) times (n-1)/(n-K))
#   cluster V = G/(G-1) * (n-1)/(n-K) * bread (sum_g s_g s_g') bread; two-way: CGM
#     V_A + V_B - V_AB with all three unscaled, then the single factor G_min/(G_min-1).
#   `dof_K` in the JSON is the K fixest used for that vcov (attr "dof.K").
#
# * p-values: NORMAL distribution for poisson and binomial (z statistics), 2*pnorm(-|z|), for
#   every vcov (fixest's use_t_distr() is FALSE for these families). `tstat` = coef / se.
#
# * Fit statistics.
#     deviance: 2 sum w [y log(y/mu) - (y - mu)] (Poisson), binomial deviance for logit.
#     loglik:   Poisson sum w [y eta - mu - lgamma(y+1)]; logit binomial()$aic(...)/-2, i.e.
#               sum [y log mu + (1-y) log(1-mu)] (no weighted logit case here: R's binomial aic
#               rounds m*y and m = prior weights, so fixest's weighted logit loglik is not the
#               textbook weighted one).
#     ll_null:  closed form for the intercept-only model, ignoring the offset. Poisson:
#               sy log(sy/N) - sy - sum lgamma(y+1), with sy = sum w y, N = sum w -- NB the
#               lgamma term is NOT weighted even when weights are (femlm.R get_model_null), so
#               with weights ll_null is not the weighted null log-likelihood. Logit:
#               sy log(sy/(N-sy)) + N log((N-sy)/N).
#     pseudo_r2: r2(m, "pr2") = 1 - loglik / ll_null (what fixest's etable shows as Pseudo R2).
#     apr2:     r2(m, "apr2") = 1 - (loglik - nparams + 1) / ll_null (printed by summary()).
#     object_pseudo_r2: the `pseudo_r2` element stored in the fixest object,
#               1 - (loglik - nparams) / (ll_null - 1) -- a third definition; don't use it.
#     sq_cor:   squared correlation of y and mu.
#   All on the estimation sample (after FE-group removal).
#
# * Offsets: `offset = ~off` adds off to eta; exposure is offset = ~log(expo) (fixest has no
#   exposure argument). The JSON says "exposure": "expo" for those cases.

suppressPackageStartupMessages(library(fixest))
setFixest_nthreads(1)   # deterministic sums

args = commandArgs(trailingOnly = FALSE)
script = sub("^--file=", "", args[grep("^--file=", args)])
root = if (length(script)) normalizePath(file.path(dirname(script), "..", "..")) else getwd()
OUT = file.path(root, "tests", "fixtures", "ppml")
dir.create(OUT, recursive = TRUE, showWarnings = FALSE)

GLM_TOL = 1e-10
FIXEF_TOL = 1e-10

# JSON by hand: scripts/reference/json.R
source(file.path(root, "scripts", "reference", "json.R"))

# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
# Write, then read back: every number below is computed from exactly what the CSV holds. All
# generated continuous columns are dyadic rationals (multiples of 2^-b, b <= 14: ldist 2^-14, dist_km 2^-6, the rest 2^-10) written with
# <= 15 significant digits, i.e. their exact decimal expansion: any parser, correctly rounding
# or not quite (R's own strtod is off by an ulp on some 6-decimal strings), lands on the same
# double, which is checked here.
dyadic = function(x, bits) round(x * 2^bits) / 2^bits
write_and_read = function(df, file) {
  path = file.path(OUT, file)
  write.csv(df, path, row.names = FALSE, quote = FALSE)
  back = read.csv(path, stringsAsFactors = FALSE)
  for (v in names(df)) {
    if (is.numeric(df[[v]]) && !identical(as.numeric(back[[v]]), as.numeric(df[[v]])))
      stop(file, ": column ", v, " does not read back exactly")
  }
  back
}

make_trade = function() {
  data(trade, package = "fixest", envir = environment())
  d = trade[trade$Product %in% 1:3, c("Origin", "Destination", "Product", "Year", "dist_km", "Euros")]
  d$Origin = as.character(d$Origin)
  d$Destination = as.character(d$Destination)
  d$Year = as.integer(d$Year)
  d$dist_km = dyadic(d$dist_km, 6)             # original km, to 1/64 km
  set.seed(20250601)
  n = nrow(d)
  d$ldist = dyadic(log(d$dist_km), 14)
  d$z = dyadic(rnorm(n), 10)                    # continuous regressor (noise)
  d$w = dyadic(runif(n, 0.5, 2), 10)            # positive weights
  d$off = dyadic(0.3 * rnorm(n), 10)            # offset, log scale
  d$expo = dyadic(exp(runif(n, -1, 1)), 10)     # positive exposure
  d$big = as.integer(d$Euros > quantile(d$Euros, 0.75))   # logit outcome (top quartile)
  d
}

# Small simulated panel with zeros everywhere and whole FE levels of zeros (Poisson drops
# them), plus one fe1 level whose outcome is always positive (logit drops it as all-1).
make_zeros = function() {
  set.seed(4242)
  n = 1200
  fe1 = sample(1:40, n, replace = TRUE)
  fe2 = sample(1:25, n, replace = TRUE)
  cl = sample(1:30, n, replace = TRUE)
  x1 = dyadic(rnorm(n), 10)
  x2 = dyadic(rnorm(n) + fe2 / 25, 10)
  a1 = rnorm(40, 0, 0.7)
  a2 = rnorm(25, 0, 0.7)
  eta = -0.6 + 0.4 * x1 - 0.3 * x2 + a1[fe1] + a2[fe2]
  y = rpois(n, exp(eta))
  y[fe1 %in% c(7, 23, 31)] = 0          # three all-zero fe1 levels
  y[fe2 %in% c(5, 19)] = 0              # two all-zero fe2 levels
  # fe1 level 12: outcome always >= 1 (logit drops it as all-1). None of its rows sits in an
  # all-zero fe2 level: otherwise level 12 would become all-1 only after those rows go, which
  # fixest's one-pass removal misses (see separation/ case b_logit) and the fixture would be
  # ambiguous.
  fe2[fe1 == 12 & fe2 %in% c(5, 19)] = 6
  y[fe1 == 12] = pmax(y[fe1 == 12], 1)
  w = dyadic(runif(n, 0.5, 2), 10)
  yc = dyadic(y * exp(rnorm(n, 0, 0.3)), 10)   # non-integer outcome with the same zeros
  data.frame(fe1 = fe1, fe2 = sprintf("g%02d", fe2), cl = cl, x1 = x1, x2 = x2, y = y,
             yb = as.integer(y > 0), yc = yc, w = w)
}

trade = write_and_read(make_trade(), "trade.csv")
zeros = write_and_read(make_zeros(), "zeros.csv")

# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------
vcov_arg = function(v) {
  if (v %in% c("iid", "hetero")) return(v)
  stopifnot(startsWith(v, "cluster:"))
  as.formula(paste0("~", sub("^cluster:", "", v)))
}

cases = list()
run = function(name, data_file, family, formula, vcov, weights = NULL, offset = NULL,
               exposure = NULL) {
  df = switch(data_file, "trade.csv" = trade, "zeros.csv" = zeros)
  fml = as.formula(formula)
  off = NULL
  if (!is.null(offset)) off = as.formula(paste0("~", offset))
  if (!is.null(exposure)) off = as.formula(paste0("~log(", exposure, ")"))
  w = if (is.null(weights)) NULL else as.formula(paste0("~", weights))
  fam = if (family == "poisson") "poisson" else "logit"
  warn = character(0)
  m = withCallingHandlers(
    feglm(fml, data = df, family = if (fam == "poisson") poisson() else binomial(),
          vcov = vcov_arg(vcov), weights = w, offset = off,
          glm.tol = GLM_TOL, fixef.tol = FIXEF_TOL, glm.iter = 1000, fixef.iter = 100000,
          notes = FALSE),
    warning = function(wn) { warn <<- c(warn, conditionMessage(wn)); invokeRestart("muffleWarning") })
  ct = coeftable(m)
  V = vcov(m, attr = TRUE)
  K = attr(V, "dof.K")
  nm = rownames(ct)
  named = function(v) setNames(as.list(unname(v)), nm)
  removed = m$fixef_removed
  fe_sizes = if (is.null(m$fixef_sizes)) list() else as.list(setNames(as.integer(m$fixef_sizes), names(m$fixef_sizes)))
  call_txt = paste0(if (fam == "poisson") "fepois(" else "feglm(", formula,
                    if (fam == "logit") ", family = binomial" else "",
                    ", vcov = ", if (is.character(vcov_arg(vcov))) json_str(vcov) else deparse(vcov_arg(vcov)),
                    if (!is.null(w)) paste0(", weights = ", deparse(w)) else "",
                    if (!is.null(off)) paste0(", offset = ", deparse(off)) else "", ")")
  case = list(
    name = name, data = data_file, family = family, formula = formula,
    weights = weights, offset = offset, exposure = exposure, vcov = vcov,
    fixest_call = call_txt,
    nobs = as.integer(m$nobs), nobs_origin = as.integer(m$nobs_origin),
    n_removed_fe = as.integer(m$nobs_origin - m$nobs),
    fixef_removed = if (is.null(removed)) NULL else as.list(setNames(as.integer(lengths(removed)), names(removed))),
    coef = named(ct[, 1]), se = named(ct[, 2]), tstat = named(ct[, 3]), pvalue = named(ct[, 4]),
    vcov_matrix = lapply(seq_len(nrow(V)), function(i) jarr(unname(V[i, ]))),
    deviance = m$deviance, loglik = as.numeric(logLik(m)), ll_null = m$ll_null,
    pseudo_r2 = unname(r2(m, "pr2")), apr2 = unname(r2(m, "apr2")),
    object_pseudo_r2 = m$pseudo_r2, sq_cor = m$sq.cor,
    nparams = as.integer(m$nparams), dof_K = as.numeric(K),
    cluster_G_min = if (is.null(attr(V, "G"))) NULL else as.integer(attr(V, "G")),
    iterations = as.integer(m$iterations), converged = isTRUE(m$convStatus),
    fixef_sizes = fe_sizes,
    warnings = if (length(warn)) jarr(warn) else NULL
  )
  if (length(warn)) message(name, ": ", paste(warn, collapse = " | "))
  cases[[length(cases) + 1]] <<- case
  invisible(m)
}

# --- Poisson on trade.csv --------------------------------------------------------------------
F1 = "Euros ~ ldist + z | Origin"
F2 = "Euros ~ ldist + z | Origin + Destination"
F3 = "Euros ~ z | Origin^Destination + Product + Year"   # ldist is collinear with the pair FE
for (v in c("iid", "hetero", "cluster:Origin"))
  run(paste0("pois_fe1_", sub(":", "_", sub("\\+", "_", v))), "trade.csv", "poisson", F1, v)
for (v in c("iid", "hetero", "cluster:Origin", "cluster:Year", "cluster:Origin+Destination"))
  run(paste0("pois_fe2_", sub(":", "_", gsub("\\+", "_", v))), "trade.csv", "poisson", F2, v)
for (v in c("iid", "hetero", "cluster:Origin", "cluster:Origin+Destination"))
  run(paste0("pois_fe3pair_", sub(":", "_", gsub("\\+", "_", v))), "trade.csv", "poisson", F3, v)
run("pois_nofe_hetero", "trade.csv", "poisson", "Euros ~ ldist + z", "hetero")
run("pois_fe2_weights_iid", "trade.csv", "poisson", F2, "iid", weights = "w")
run("pois_fe2_weights_cluster_Origin", "trade.csv", "poisson", F2, "cluster:Origin", weights = "w")
run("pois_fe3pair_weights_hetero", "trade.csv", "poisson", F3, "hetero", weights = "w")
run("pois_fe2_offset_iid", "trade.csv", "poisson", F2, "iid", offset = "off")
run("pois_fe2_offset_cluster_Origin_Destination", "trade.csv", "poisson", F2, "cluster:Origin+Destination", offset = "off")
run("pois_fe2_exposure_hetero", "trade.csv", "poisson", F2, "hetero", exposure = "expo")
run("pois_fe3pair_exposure_cluster_Origin", "trade.csv", "poisson", F3, "cluster:Origin", exposure = "expo")
run("pois_fe2_weights_offset_hetero", "trade.csv", "poisson", F2, "hetero", weights = "w", offset = "off")

# --- logit on trade.csv ----------------------------------------------------------------------
L1 = "big ~ ldist + z | Origin"
L2 = "big ~ ldist + z | Origin + Destination"
for (v in c("iid", "hetero", "cluster:Origin"))
  run(paste0("logit_fe1_", sub(":", "_", v)), "trade.csv", "logit", L1, v)
for (v in c("iid", "hetero", "cluster:Origin", "cluster:Origin+Destination"))
  run(paste0("logit_fe2_", sub(":", "_", gsub("\\+", "_", v))), "trade.csv", "logit", L2, v)
run("logit_fe2_offset_iid", "trade.csv", "logit", L2, "iid", offset = "off")
run("logit_nofe_hetero", "trade.csv", "logit", "big ~ ldist + z", "hetero")

# --- zeros.csv: all-zero FE levels dropped ---------------------------------------------------
Z1 = "y ~ x1 + x2 | fe1"
Z2 = "y ~ x1 + x2 | fe1 + fe2"
run("zeros_pois_fe1_iid", "zeros.csv", "poisson", Z1, "iid")
run("zeros_pois_fe2_iid", "zeros.csv", "poisson", Z2, "iid")
run("zeros_pois_fe2_hetero", "zeros.csv", "poisson", Z2, "hetero")
run("zeros_pois_fe2_cluster_cl", "zeros.csv", "poisson", Z2, "cluster:cl")
run("zeros_pois_fe2_cluster_fe1_cl", "zeros.csv", "poisson", Z2, "cluster:fe1+cl")
run("zeros_pois_fe2_weights_hetero", "zeros.csv", "poisson", Z2, "hetero", weights = "w")
run("zeros_pois_fe2_noninteger_y_iid", "zeros.csv", "poisson", "yc ~ x1 + x2 | fe1 + fe2", "iid")
run("zeros_logit_fe1_iid", "zeros.csv", "logit", "yb ~ x1 + x2 | fe1", "iid")
run("zeros_logit_fe2_cluster_cl", "zeros.csv", "logit", "yb ~ x1 + x2 | fe1 + fe2", "cluster:cl")

# ---------------------------------------------------------------------------------------------
# Independent check of the FE-group removal on zeros.csv (recomputed here by hand)
# ---------------------------------------------------------------------------------------------
drop_rows = function(y, fes, logit) {
  # iterate to a fixed point: a level is dropped when its y is all 0 (or all 1 for logit)
  keep = rep(TRUE, length(y))
  repeat {
    bad = rep(FALSE, length(y))
    for (f in fes) {
      s = tapply(y[keep], f[keep], sum); cnt = tapply(y[keep], f[keep], length)
      lv = names(s)[s == 0 | (logit & s == cnt)]
      bad = bad | (keep & as.character(f) %in% lv)
    }
    if (!any(bad)) break
    keep = keep & !bad
  }
  sum(!keep)
}
expect = c(
  zeros_pois_fe1_iid = drop_rows(zeros$y, list(zeros$fe1), FALSE),
  zeros_pois_fe2_iid = drop_rows(zeros$y, list(zeros$fe1, zeros$fe2), FALSE),
  zeros_logit_fe1_iid = drop_rows(zeros$yb, list(zeros$fe1), TRUE),
  zeros_logit_fe2_cluster_cl = drop_rows(zeros$yb, list(zeros$fe1, zeros$fe2), TRUE),
  logit_fe1_iid = drop_rows(trade$big, list(trade$Origin), TRUE),
  logit_fe2_iid = drop_rows(trade$big, list(trade$Origin, trade$Destination), TRUE))
for (nm in names(expect)) {
  got = Filter(function(cs) cs$name == nm, cases)[[1]]$n_removed_fe
  cat(sprintf("%-28s n_removed_fe fixest %4d, fixed-point recomputation %4d\n", nm, got, expect[[nm]]))
  if (got != expect[[nm]]) stop("fixest's one-pass removal differs from the fixed point for ", nm)
}

meta = list(
  generator = "scripts/reference/make_ppml_golden.R",
  fixest_version = as.character(packageVersion("fixest")),
  R_version = paste(R.version$major, R.version$minor, sep = "."),
  glm_tol = GLM_TOL, fixef_tol = FIXEF_TOL, glm_iter = 1000L, fixef_iter = 100000L,
  fixef_rm = "perfect",
  ssc = list(adj = TRUE, fixef.K = "nested", cluster.adj = TRUE, cluster.df = "min",
             t.df = "min", fixef.force_exact = FALSE),
  ssc_note = "fixest default ssc(); pvalues use the normal distribution (poisson, binomial)",
  pseudo_r2_note = "pseudo_r2 = 1 - loglik/ll_null (r2 'pr2'); apr2 = 1 - (loglik - nparams + 1)/ll_null; object_pseudo_r2 = fixest object's $pseudo_r2 = 1 - (loglik - nparams)/(ll_null - 1)",
  n_removed_note = "n_removed_fe = nobs_origin - nobs: rows of FE levels with all-zero y (poisson) or all-0/all-1 y (logit), one pass, no singleton removal",
  vcov_matrix_note = "rows/columns in the order of coef"
)
out = c(meta, list(cases = cases))
writeLines(to_json(out), file.path(OUT, "fixest.json"))
cat(sprintf("wrote %d cases to %s\n", length(cases), file.path(OUT, "fixest.json")))
