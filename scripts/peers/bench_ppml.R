#!/usr/bin/env Rscript
# Peer benchmark: fixest's fepois on the simulated gravity panel (scripts/peers/make_gravity.py).
#
#   fepois(trade ~ fta | exp^year + imp^year + exp^imp, data, vcov = ~exp^imp)
#
# timed twice: at fixest's default tolerances (fixef.tol = 1e-6, glm.tol = 1e-8) and at
# fixef.tol = 1e-10, glm.tol = 1e-10. Reading the file is timed separately from the fits.
# A warm-up fit on years 1-2 comes first (reported as warmup_seconds, as in bench_ppml.py).
# Prints one JSON object on stdout (progress goes to stderr).
#
#   Rscript scripts/peers/bench_ppml.R [/tmp/gravity/gravity.csv] [threads]
#
# threads defaults to every core (parallel::detectCores()). R and fixest: see
# scripts/peers/INSTALL-R.md. data.table's fread reads the CSV (fixest depends on data.table
# only as a suggestion; the Debian package r-cran-data.table provides it).

suppressPackageStartupMessages({
  library(fixest)
  library(data.table)
})

args = commandArgs(trailingOnly = TRUE)
path = if (length(args) >= 1) args[1] else "/tmp/gravity/gravity.csv"
threads = if (length(args) >= 2) as.integer(args[2]) else parallel::detectCores()
setFixest_nthreads(threads)
setDTthreads(threads)

js = function(x) {
  if (is.null(x)) return("null")
  if (is.character(x)) return(paste0("\"", x, "\""))
  if (is.logical(x)) return(if (isTRUE(x)) "true" else "false")
  if (is.integer(x)) return(sprintf("%d", x))
  sprintf("%.17g", x)
}
obj = function(...) {
  kv = list(...)
  paste0("{", paste0("\"", names(kv), "\": ", unlist(kv), collapse = ", "), "}")
}

t0 = proc.time()[["elapsed"]]
d = fread(path)
t_read = proc.time()[["elapsed"]] - t0
message(sprintf("read %s: %d rows in %.2f s", path, nrow(d), t_read))

run = function(label, ...) {
  gc()
  t0 = proc.time()[["elapsed"]]
  m = fepois(trade ~ fta | exp^year + imp^year + exp^imp, d, vcov = ~exp^imp, notes = FALSE, ...)
  secs = proc.time()[["elapsed"]] - t0
  message(sprintf("%s: %.2f s, %d iterations", label, secs, m$iterations))
  obj(label = js(label), seconds = sprintf("%.3f", secs), coef_fta = js(unname(coef(m)["fta"])),
      se_fta = js(unname(se(m)["fta"])), nobs = js(as.integer(m$nobs)),
      n_removed = js(as.integer(m$nobs_origin - m$nobs)),
      fixef_sizes = obj(`exp^year` = js(as.integer(m$fixef_sizes[[1]])),
                        `imp^year` = js(as.integer(m$fixef_sizes[[2]])),
                        `exp^imp` = js(as.integer(m$fixef_sizes[[3]]))),
      iterations = js(as.integer(m$iterations)), converged = js(isTRUE(m$convStatus)),
      deviance = js(m$deviance))
}

# warm-up on years 1-2 (R has no JIT, but this keeps the two scripts alike)
t0 = proc.time()[["elapsed"]]
invisible(fepois(trade ~ fta | exp^year + imp^year + exp^imp, d[year <= 2], vcov = ~exp^imp, notes = FALSE))
t_warm = proc.time()[["elapsed"]] - t0

fits = c(
  run("default_tol", fixef.tol = 1e-6, glm.tol = 1e-8),
  run("tight_tol_1e-10", fixef.tol = 1e-10, glm.tol = 1e-10, glm.iter = 100, fixef.iter = 100000))

load = tryCatch(readLines("/proc/loadavg", n = 1), error = function(e) NA_character_)
cat(paste0("{\"tool\": \"fixest\", \"fixest_version\": ", js(as.character(packageVersion("fixest"))),
           ", \"R_version\": ", js(paste(R.version$major, R.version$minor, sep = ".")),
           ", \"file\": ", js(path), ", \"rows\": ", js(nrow(d)),
           ", \"threads\": ", js(as.integer(getFixest_nthreads())),
           ", \"cores\": ", js(parallel::detectCores()),
           ", \"read_seconds\": ", sprintf("%.3f", t_read),
           ", \"warmup_seconds\": ", sprintf("%.3f", t_warm),
           ", \"loadavg_at_end\": ", js(load),
           ", \"fits\": [", paste(fits, collapse = ", "), "]}\n"))
