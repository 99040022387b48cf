#!/usr/bin/env Rscript
# Golden values from R's fixest for `fegpu fit --save/--predict/--split/--fsplit`
# (issue 28, items 5 and 8), written by hand as JSON (no jsonlite needed):
#
#     Rscript scripts/reference/make_fixest_save.R tests/fixtures/model_language
#
# writes save_data.csv, save_new.csv and fixest_save.json there. The data: 400 rows, effects
# f (20 levels) and g (8 levels) in two connected sets (f 0-13 with g 0-5, f 14-19 with g 6-7),
# h (5 levels) crossing both, a text factor ind, weights w, a split variable s with missing
# values; every level has at least two rows (no singletons: fixest keeps them, reghdfe drops).
# fixef.tol = 2.3e-12 (fixest's minimum is 2.2e-12), so fitted values, residuals and the
# fixed effects' values (fixef(), fixest's normalisation) are accurate to ~1e-10.
suppressMessages(library(fixest))
out = commandArgs(trailingOnly = TRUE)[1]
set.seed(2028)
n = 400
f = (0:(n - 1) * 7) %% 20
g = ifelse(f < 14, sample(0:5, n, TRUE), sample(6:7, n, TRUE))
h = sample(0:4, n, TRUE)
ind = sample(c("A", "B", "C"), n, TRUE)
x = rnorm(n)
w = 0.5 + runif(n)
s = sample(c("p", "q"), n, TRUE)
s[seq(6, n, by = 41)] = NA
y = 0.7 * x + 0.3 * f - 0.4 * g + 0.2 * h + c(A = 0, B = 1, C = -0.5)[ind] + rnorm(n)
d = data.frame(y = y, x = x, w = w, f = f, g = g, h = h, ind = ind, s = s)
write.csv(d, file.path(out, "save_data.csv"), row.names = FALSE, na = "")
new = data.frame(x = c(0.5, 1, -2, NA, 3), f = c(3, 99, 15, 3, 16), g = c(2, 2, 7, 1, 6),
                 ind = c("B", "A", "C", "A", "A"))
write.csv(new, file.path(out, "save_new.csv"), row.names = FALSE, na = "")

num = function(v) ifelse(is.na(v), "null", sprintf("%.17g", v))
arr = function(v) paste0("[", paste(num(v), collapse = ", "), "]")
obj = function(...) {
  kv = list(...)
  paste0("{", paste(sprintf("\"%s\": %s", names(kv), unlist(kv)), collapse = ", "), "}")
}
coefs = function(m) obj(names = paste0("[", paste(sprintf("\"%s\"", names(coef(m))), collapse = ", "), "]"),
                        estimate = arr(coef(m)), std_error = arr(se(m)), nobs = nobs(m))
per_row = function(m, d) {
  fe = fixef(m)
  parts = lapply(names(fe), function(q) arr(fe[[q]][as.character(d[[q]])]))
  names(parts) = paste0("fe_", names(fe))
  refs = attr(fe, "references")
  c(list(fitted = arr(fitted(m)), residual = arr(resid(m)),
         references = arr(if (is.null(refs)) integer(0) else refs)), parts)
}
tol = 2.3e-12
m2 = feols(y ~ x + ind | f + g, d, fixef.tol = tol)
m2w = feols(y ~ x + ind | f + g, d, weights = ~w, fixef.tol = tol)
m3 = feols(y ~ x | f + g + h, d, fixef.tol = tol)
sp = feols(y ~ csw(x, ind) | f, d, fsplit = ~s, fixef.tol = tol)
split_models = sapply(seq_along(sp), function(k) {
  m = sp[[k]]
  obj(sample = sprintf("\"%s\"", m$model_info$sample$value), rhs = sprintf("\"%s\"", deparse(formula(m)[[3]][[2]])),
      fit = coefs(m))
})
json = obj(
  fixest = sprintf("\"%s\"", as.character(packageVersion("fixest"))),
  two = do.call(obj, c(list(fit = coefs(m2)), per_row(m2, d))),
  two_weighted = do.call(obj, c(list(fit = coefs(m2w)), per_row(m2w, d))),
  three = do.call(obj, c(list(fit = coefs(m3)), per_row(m3, d))),
  predict = arr(predict(m2, newdata = new)),
  fsplit = paste0("[", paste(split_models, collapse = ",\n "), "]")
)
writeLines(json, file.path(out, "fixest_save.json"))
