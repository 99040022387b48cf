# JSON by hand for the reference generators (no jsonlite dependency): doubles as %.17g,
# NA/NaN/Inf as null, factors as their labels; jarr() marks a vector that must stay an array.
# Sourced by make_ppml_golden.R and make_separation.R.

json_str = function(s) {
  s = gsub("\\\\", "\\\\\\\\", s)
  s = gsub("\"", "\\\\\"", s)
  s = gsub("\n", "\\\\n", s)
  s = gsub("\t", "\\\\t", s)
  paste0("\"", s, "\"")
}
json_scalar = function(x) {
  if (is.null(x) || length(x) == 0) return("null")
  if (is.na(x)) return("null")
  if (is.logical(x)) return(if (x) "true" else "false")
  if (is.character(x) || is.factor(x)) return(json_str(as.character(x)))
  if (is.integer(x)) return(sprintf("%d", x))
  if (!is.finite(x)) return("null")
  sprintf("%.17g", x)
}
to_json = function(x, indent = 0) {
  pad = strrep(" ", indent + 1)
  if (is.null(x)) return("null")
  if (inherits(x, "json_array") || (is.list(x) && is.null(names(x)))) {
    x = unclass(x)
    if (length(x) == 0) return("[]")
    items = vapply(x, to_json, "", indent = indent + 1)
    if (all(!grepl("\n", items)) && sum(nchar(items)) < 100) {
      return(paste0("[", paste(items, collapse = ", "), "]"))
    }
    return(paste0("[\n", paste0(pad, items, collapse = ",\n"), "\n", strrep(" ", indent), "]"))
  }
  if (is.list(x)) {
    if (length(x) == 0) return("{}")
    items = mapply(function(k, v) paste0(json_str(k), ": ", to_json(v, indent + 1)), names(x), x)
    return(paste0("{\n", paste0(pad, items, collapse = ",\n"), "\n", strrep(" ", indent), "}"))
  }
  if (length(x) == 1 && is.null(names(x))) return(json_scalar(x))
  if (!is.null(names(x))) return(to_json(as.list(x), indent))
  to_json(structure(as.list(x), class = "json_array"), indent)
}
jarr = function(x) structure(as.list(x), class = "json_array")
