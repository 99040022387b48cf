#!/usr/bin/env Rscript
# Time R fixest on "hard" fixed-effect panels, one JSON line per file.
#
#   Rscript scripts/peers/bench_hard.R d1e5.csv d1e6.csv [--nthreads=2] [--ref=fixture.json]
#   Rscript scripts/peers/bench_hard.R demo.csv \
#     --formula="qua ~ digtech + age + finance + profit + klratio + turnover + lnlp + lev + open + market + lnpergdp + xr | firm + year + firm^dest"
#
# Needs fixest (with dreamerr, stringmagic) and data.table. Default model:
# y ~ x1 + x2 | id_indiv + id_firm + id_year; --fe= replaces only the part after `|`,
# --formula= the whole formula. feols runs with fixest's defaults (fixef.tol = 1e-6,
# fixef.iter = 10000), nthreads = 2 (--nthreads=) and vcov = "iid" (--vcov=).
# Each file is read with data.table::fread (seconds_read, CSV only). A warm-up fit on --warm=
# rows (default 2000, whole groups of the first fixed effect) comes first, then the full fit is timed: best of 2 when the first
# took under 20 s, else that one. Errors and warnings (e.g. fixest's "Absence of convergence")
# are reported; `iterations` are fixest's demeaning iterations per variable. With --ref=
# (make_difficult.py fixtures, comma-separated, matched to data files by the base name of their
# "file" field) the line also gets the largest |coef - exact| (the fixtures are read with
# regular expressions: no JSON package needed).

suppressPackageStartupMessages({
  library(data.table)
  library(fixest)
})

args = commandArgs(trailingOnly = TRUE)
opt = function(name, default) {
  hit = grep(paste0("^--", name, "="), args, value = TRUE)
  if (length(hit)) sub(paste0("^--", name, "="), "", hit[length(hit)]) else default
}
files = args[!grepl("^--", args)]
if (!length(files)) stop("usage: Rscript bench_hard.R FILE.csv ... [--formula=..] [--fe=..] [--nthreads=2] [--vcov=iid] [--warm=2000] [--ref=fixture.json]")
fml_txt = opt("formula", "y ~ x1 + x2 | id_indiv + id_firm + id_year")
fe = opt("fe", NULL)
if (!is.null(fe)) fml_txt = paste(trimws(strsplit(fml_txt, "|", fixed = TRUE)[[1]][1]), "|", fe)
nthreads = as.integer(opt("nthreads", "2"))
vcov = opt("vcov", "iid")
warm = as.integer(opt("warm", "2000"))
ref_path = opt("ref", NULL)
setFixest_nthreads(nthreads)
setDTthreads(nthreads)
fml = as.formula(fml_txt)

# fixtures: --ref=a.json,b.json; each goes with the data file of the same base name as its
# "file" field (a lone fixture also goes with a lone data file)
read_ref = function(p) {
  txt = paste(readLines(p), collapse = " ")
  block = regmatches(txt, regexpr('"coef"\\s*:\\s*\\{[^}]*\\}', txt))
  pairs = regmatches(block, gregexpr('"[^"]+"\\s*:\\s*[-+0-9.eE]+', block))[[1]]
  file = sub('.*"file"\\s*:\\s*"([^"]*)".*', "\\1", txt)
  list(file = basename(file),
       coef = setNames(as.numeric(sub('^"[^"]+"\\s*:\\s*', "", pairs)), sub('^"([^"]+)".*', "\\1", pairs)))
}
refs = if (is.null(ref_path)) list() else lapply(strsplit(ref_path, ",", fixed = TRUE)[[1]], read_ref)
ref_for = function(path) {
  for (r in refs) if (r$file == basename(path)) return(r$coef)
  if (length(refs) == 1 && length(files) == 1) refs[[1]]$coef else NULL
}

num = function(x) if (is.null(x) || is.na(x)) "null" else sprintf("%.17g", x)
str_ = function(x) if (is.null(x)) "null" else paste0('"', gsub('(["\\\\])', "\\\\\\1", gsub("\n", " ", x)), '"')
obj = function(v) paste0("{", paste0(str_(names(v)), ": ", vapply(v, num, ""), collapse = ", "), "}")
arr = function(v, f) paste0("[", paste(vapply(v, f, ""), collapse = ", "), "]")

fit = function(dt) {
  warns = character(0)
  t = proc.time()[["elapsed"]]
  m = withCallingHandlers(feols(fml, data = dt, vcov = vcov, nthreads = nthreads),
                          warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") })
  list(m = m, sec = proc.time()[["elapsed"]] - t, warns = warns)
}

for (path in files) {
  t = proc.time()[["elapsed"]]
  dt = fread(path, nThread = nthreads)
  t_read = proc.time()[["elapsed"]] - t
  fields = c(tool = str_("fixest"), version = str_(as.character(packageVersion("fixest"))),
             file = str_(path), method = str_("feols"), formula = str_(fml_txt),
             nthreads = nthreads, rows = nrow(dt), seconds_read = num(t_read))
  ref = ref_for(path)
  res = tryCatch({
    if (warm > 0) {
      tw = proc.time()[["elapsed"]]
      # whole groups of the first fixed effect (the first rows of a big panel are singletons)
      fe1 = trimws(strsplit(strsplit(strsplit(fml_txt, "|", fixed = TRUE)[[1]][2], "+", fixed = TRUE)[[1]][1], "^", fixed = TRUE)[[1]][1])
      idx = if (!is.na(fe1) && fe1 %in% names(dt)) order(dt[[fe1]]) else seq_len(nrow(dt))
      part = dt[idx[seq_len(min(warm, nrow(dt)))]]
      try(suppressMessages(suppressWarnings(feols(fml, data = part, vcov = vcov, nthreads = nthreads))), silent = TRUE)
      rm(part, idx)
      fields["seconds_warmup"] = num(proc.time()[["elapsed"]] - tw)
    }
    r = fit(dt)
    secs = r$sec
    if (r$sec < 20) { r2 = fit(dt); secs = c(secs, r2$sec); r$warns = c(r$warns, r2$warns) }
    m = r$m
    b = coef(m)
    fields["seconds"] = num(min(secs))
    fields["seconds_all"] = arr(secs, num)
    fields["n"] = nobs(m)
    fields["coef"] = obj(b)
    fields["se"] = obj(se(m))
    fields["iterations"] = arr(as.numeric(m$iterations), num)
    if (length(r$warns)) fields["warnings"] = arr(unique(r$warns), str_)
    if (!is.null(ref)) {
      common = intersect(names(ref), names(b))
      fields["max_abs_diff_vs_ref"] = num(if (length(common)) max(abs(b[common] - ref[common])) else NULL)
    }
    fields["error"] = "null"
    fields
  }, error = function(e) { fields["error"] = str_(conditionMessage(e)); fields })
  cat("{", paste0('"', names(res), '": ', res, collapse = ", "), "}\n", sep = "")
}
