#!/usr/bin/env Rscript
# Separation reference for fegpu's Poisson / logit: small constructed data sets whose separated
# observations are known BY CONSTRUCTION (reasoning in tests/fixtures/ppml/separation/README.md).
#
# Writes tests/fixtures/ppml/separation/<case>.csv and <case>.json. Each JSON holds
#   expected:  the rows (1-based, in CSV order) that must be dropped, split into
#              singleton rows and separated rows, and the remaining counts -- written here from
#              the construction, not from any estimator;
#   fixest:    what fixest (0.12.2, fixef.rm = "perfect", its default) reports on the full data
#              (it only drops all-zero / all-one FE levels, one pass), and, under "clean", its
#              fit on the expected remaining rows (finite, converged: the numbers an estimator
#              that drops the right rows should reproduce).
# scripts/reference/check_separation.py verifies every `expected` independently with a linear
# program (and records what pyfixest's separation checks do).
#
#     Rscript scripts/reference/make_separation.R      # from the repo root

suppressPackageStartupMessages(library(fixest))
setFixest_nthreads(1)

args = commandArgs(trailingOnly = FALSE)
script = sub("^--file=", "", args[grep("^--file=", args)])
root = if (length(script)) normalizePath(file.path(dirname(script), "..", "..")) else getwd()
OUT = file.path(root, "tests", "fixtures", "ppml", "separation")
dir.create(OUT, recursive = TRUE, showWarnings = FALSE)

# JSON by hand: scripts/reference/json.R
source(file.path(root, "scripts", "reference", "json.R"))

# --- fixest, capturing what it says --------------------------------------------------------------
fit = function(df, formula, family, fixef.rm = "perfect") {
  msgs = character(0)
  m = tryCatch(withCallingHandlers(
    feglm(as.formula(formula), data = df, vcov = "iid",
          family = if (family == "poisson") poisson() else binomial(),
          fixef.rm = fixef.rm, glm.tol = 1e-10, fixef.tol = 1e-10, glm.iter = 1000),
    warning = function(w) { msgs <<- c(msgs, paste("warning:", conditionMessage(w))); invokeRestart("muffleWarning") },
    message = function(m) { msgs <<- c(msgs, paste("message:", trimws(conditionMessage(m)))); invokeRestart("muffleMessage") }),
    error = function(e) e)
  if (inherits(m, "error")) return(list(error = conditionMessage(m), messages = jarr(msgs)))
  ct = coeftable(m)
  removed = if (is.null(m$obs_selection$obsRemoved)) integer(0) else sort(as.integer(-m$obs_selection$obsRemoved))
  fe = if (length(m$fixef_vars)) fixef(m, notes = FALSE) else NULL
  list(fixef_rm = fixef.rm, nobs = as.integer(m$nobs), rows_removed = jarr(removed),
       coef = as.list(setNames(unname(ct[, 1]), rownames(ct))),
       se_iid = as.list(setNames(unname(ct[, 2]), rownames(ct))),
       collinear_removed = if (length(m$collin.var)) jarr(m$collin.var) else NULL,
       converged = isTRUE(m$convStatus), iterations = as.integer(m$iterations),
       deviance = m$deviance,
       fixef_range = if (is.null(fe)) NULL else lapply(fe, function(v) jarr(range(v))),
       messages = if (length(msgs)) jarr(msgs) else NULL)
}

write_case = function(name, df, family, formula, design, drop_singletons, drop_separated,
                      omitted_after, notes, extra_fixest = list()) {
  csv = paste0(name, ".csv")
  write.csv(df, file.path(OUT, csv), row.names = FALSE, quote = FALSE)
  df = read.csv(file.path(OUT, csv), stringsAsFactors = FALSE)
  n = nrow(df)
  drop_all = sort(c(drop_singletons, drop_separated))
  keep = setdiff(seq_len(n), drop_all)
  keep_with_singletons = setdiff(seq_len(n), drop_separated)
  fx = list(full_data = fit(df, formula, family))
  fx = c(fx, extra_fixest)
  fx$clean = fit(df[keep, ], formula, family)
  fx$clean$rows = "the expected remaining rows (drop_rows removed)"
  if (length(drop_singletons)) {
    fx$clean_keep_singletons = fit(df[keep_with_singletons, ], formula, family)
    fx$clean_keep_singletons$rows = "only drop_separated removed (singletons kept)"
  }
  out = list(
    name = name, data = csv, family = family, formula = formula, nobs_input = n,
    design = design,
    expected = list(
      drop_rows = jarr(as.integer(drop_all)),
      drop_singletons = jarr(as.integer(drop_singletons)),
      drop_separated = jarr(as.integer(drop_separated)),
      n_remaining = length(keep),
      n_remaining_keep_singletons = length(keep_with_singletons),
      omitted_after_drop = if (length(omitted_after)) jarr(omitted_after) else jarr(character(0)),
      notes = notes),
    fixest_version = as.character(packageVersion("fixest")),
    fixest = fx)
  writeLines(to_json(out), file.path(OUT, paste0(name, ".json")))
  cat(sprintf("%-26s n=%2d drop=%s  fixest(full): nobs=%s conv=%s\n", name, n,
              paste(drop_all, collapse = ","), fx$full_data$nobs, fx$full_data$converged))
  invisible(out)
}

# ---------------------------------------------------------------------------------------------
# (a) one FE level with an all-zero outcome
# ---------------------------------------------------------------------------------------------
a = data.frame(
  fe = rep(c("A", "B", "C", "D"), each = 5),
  x  = c(0.5, -1.2, 0.3, 1.1, -0.4,   -0.7, 0.9, 1.5, -1.1, 0.2,
         0.1, -0.3, 1.3, -0.8, 0.6,    1.0, -0.5, 0.4, -1.4, 0.8),
  y  = c(2, 0, 1, 3, 0,   0, 4, 1, 0, 2,   0, 0, 0, 0, 0,   1, 0, 2, 1, 0))
write_case("a_fe_all_zero", a, "poisson", "y ~ x | fe",
  design = "fe level C (rows 11-15) has y = 0 on every row; every other level has positive rows, and level A has positive rows with different x.",
  drop_singletons = integer(0), drop_separated = 11:15, omitted_after = character(0),
  notes = "fixest drops the same rows (fixef.rm = 'perfect').")

# ---------------------------------------------------------------------------------------------
# (b) recursion: a singleton hides an all-zero level of the second effect
# ---------------------------------------------------------------------------------------------
b = data.frame(
  f1 = c("P", "A", "B", "A", "A", "A", "B", "B", "B", "C", "C", "C", "A", "B", "C", "C"),
  f2 = c("Q", "Q", "Q", "R", "S", "T", "R", "S", "T", "R", "S", "T", "R", "S", "T", "R"),
  x  = c(0.4, -0.6, 1.2, 0.3, -1.0, 0.8, -0.2, 1.4, -0.9, 0.7, -0.4, 1.1, -1.3, 0.5, -0.1, 0.9),
  y  = c(3, 0, 0, 2, 1, 0, 0, 3, 1, 1, 0, 2, 1, 0, 1, 0))
write_case("b_singleton_recursion", b, "poisson", "y ~ x | f1 + f2",
  design = "row 1 is the only row of f1 = P (a singleton) and has y = 3; f2 = Q holds rows 1, 2, 3 with y = 3, 0, 0. No level is all-zero at first. Dropping the singleton row 1 leaves f2 = Q with rows 2, 3, both y = 0: a second pass drops them. Nothing else changes (f1 A and B keep positive rows).",
  drop_singletons = 1L, drop_separated = 2:3, omitted_after = character(0),
  notes = paste(
    "Rows 2 and 3 are separated whether or not singletons are dropped: z = 1{f1=P} - 1{f2=Q} is 0 on every y > 0 row and -1 on rows 2, 3 only, so the Q effect goes to -inf.",
    "Row 1 is not separated; a singleton only fits itself and never changes beta, so an estimator that keeps singletons keeps it (n_remaining_keep_singletons).",
    "Under the pure all-zero rule (fixest's 'perfect', pyfixest's 'fe') nothing is dropped; the zero-sum rule alone can never need a second pass for Poisson (removing y = 0 rows changes no group's sum), so recursion only bites once singletons are dropped."),
  extra_fixest = list(full_data_fixef_rm_both = fit(b, "y ~ x | f1 + f2", "poisson", fixef.rm = "both")))

# ---------------------------------------------------------------------------------------------
# (b_logit) recursion for logit: an all-one level hides an all-zero level
# ---------------------------------------------------------------------------------------------
bl = data.frame(
  f1 = c("P", "P", "A", "B", "A", "A", "A", "A", "A", "A", "B", "B",
         "B", "B", "B", "B", "C", "C", "C", "C", "C", "C"),
  f2 = c("Q", "R", "Q", "Q", "R", "R", "S", "S", "T", "T", "R", "R",
         "S", "S", "T", "T", "R", "R", "S", "S", "T", "T"),
  x  = c(0.5, -0.75, -0.5, 1.25, -0.75, 1, 0, 0, 0, -1.5, 0, 2,
         -1.25, 0.5, 0.75, 0.75, -0.75, -0.5, -1.25, -0.25, 1.25, -0.75),
  y  = c(1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1))
write_case("b_logit_recursion", bl, "logit", "y ~ x | f1 + f2",
  design = "f1 = P (rows 1, 2) has y = 1 on both rows: dropped. f2 = Q holds rows 1, 3, 4 with y = 1, 0, 0: mixed at first, all-zero once row 1 is gone, so a second pass drops rows 3, 4. The remaining 18 rows (a 3 x 3 f1 x f2 layout, two rows a cell) mix 0 and 1 in every level and are not separated (checked by the LP).",
  drop_singletons = integer(0), drop_separated = 1:4, omitted_after = character(0),
  notes = "fixest 0.12.2 removes all-0/all-1 levels in one pass only (src/quf.cpp: 'I don't reiterate the observation removal'), so it drops rows 1, 2 and keeps 3, 4, whose Q effect then runs off to -inf.")

# ---------------------------------------------------------------------------------------------
# (c) a regressor separates: x > 0 only on some y = 0 rows, x = 0 elsewhere
# ---------------------------------------------------------------------------------------------
cc = data.frame(
  fe = rep(c("A", "B", "C"), each = 6),
  x  = c(0, 0, 0, 0, 1.0, 0,   0, 0, 0, 0, 2.5, 0,   0, 0, 0, 0.5, 0, 0),
  x2 = c(0.3, -0.8, 1.2, 0.5, -0.2, 0.9,   -1.1, 0.4, 0.7, -0.5, 1.3, 0.1,
         0.6, -0.9, 0.2, 1.0, -0.3, -1.4),
  y  = c(1, 0, 2, 1, 0, 3,   2, 1, 0, 4, 0, 1,   1, 3, 0, 0, 2, 1))
write_case("c_regressor", cc, "poisson", "y ~ x + x2 | fe",
  design = "x = 0 on every row except rows 5, 11, 16 (x = 1, 2.5, 0.5), which all have y = 0. Each fe level has positive rows with different x2.",
  drop_singletons = integer(0), drop_separated = c(5L, 11L, 16L), omitted_after = "x",
  notes = "After the drop x is identically 0: it must be reported as omitted (collinear), x2 stays. On the full data the MLE of x's coefficient is -inf; the fe rule finds nothing.")

# same data, no fixed effect (intercept): the textbook case
write_case("c_regressor_nofe", cc, "poisson", "y ~ x + x2",
  design = "as c_regressor, without the fixed effect (intercept only).",
  drop_singletons = integer(0), drop_separated = c(5L, 11L, 16L), omitted_after = "x",
  notes = "Same rows; with an intercept the positive rows still force every direction but x to vanish.")

# ---------------------------------------------------------------------------------------------
# (d) only a combination of regressors and the fixed effect separates
# ---------------------------------------------------------------------------------------------
# Level c_g: A 0, B 1, C -1. On every y > 0 row x1 - x2 = c_g; on y = 0 rows x1 - x2 >= c_g,
# strictly greater exactly on rows 4, 7 (A), 11 (B), 20 (C). All values are multiples of 1/4,
# so x1 - x2 - c_g is exactly 0 in floating point where it should be.
fe = rep(c("A", "B", "C"), each = 8)
x1 = c(0.5, -0.25, 1.25, 0.75, -1, 0, 0.5, -0.75,
       1.5, 0.25, 2, -0.5, 0.75, 1.25, 0.25, -0.25,
       0.5, -1, 1, 0, -0.5, 0.75, -1, 0.25)
gap = c(0, 0, 0, 0.75, 0, 0, 1, 0,   0, 0, 0.5, 0, 0, 0, 0, 0,   0, 0, 0, 0.5, 0, 0, 0, 0)
cg = unname(c(A = 0, B = 1, C = -1)[fe])
d = data.frame(
  fe = fe, x1 = x1, x2 = x1 - cg - gap,
  x3 = c(0.2, -1.1, 0.4, 0.9, -0.5, 1.3, -0.8, 0.6,
         -0.3, 0.7, -1.2, 0.1, 1.0, -0.6, 0.5, -0.9,
         0.8, -0.2, 0.3, -1.0, 1.1, -0.4, 0.2, -0.7),
  y  = c(2, 1, 0, 0, 3, 1, 0, 0,   1, 2, 0, 0, 4, 1, 0, 2,   1, 0, 2, 0, 3, 0, 1, 0))
g = d$x1 - d$x2 - cg
stopifnot(all(g[d$y > 0] == 0), all(g[d$y == 0] >= 0), identical(which(g > 0), c(4L, 7L, 11L, 20L)))
write_case("d_combination", d, "poisson", "y ~ x1 + x2 + x3 | fe",
  design = "x1 - x2 - c_fe (c_A = 0, c_B = 1, c_C = -1) is exactly 0 on every y > 0 row, 0 on rows 3, 8, 12, 15, 18, 22, 24 (y = 0) and 0.75, 1, 0.5, 0.5 on rows 4, 7, 11, 20 (y = 0). Every level has positive rows; x1, x2 and x3 each vary among the positive rows of every level; x1 - x2 takes three values on positive rows.",
  drop_singletons = integer(0), drop_separated = c(4L, 7L, 11L, 20L),
  omitted_after = "x2 (or x1): x1 - x2 equals the fe's c_fe on every remaining row",
  notes = "Neither part alone separates: the fe rule finds no all-zero level; without the fixed effect (or with only one of x1, x2 beside it) no combination vanishes on the positive rows -- checked by the LP in scripts/reference/check_separation.py. After the drop one of x1, x2 is collinear with the other and the fe; its partner's coefficient is then the sum of the two.")

cat("wrote", OUT, "\n")
