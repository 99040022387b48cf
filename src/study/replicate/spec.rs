//! The table specification of `fegpu replicate` (`data/replicate_spec.json` or `--spec FILE`):
//! tables, columns, defaults and labels as data, `${macro}` expansion, and the sample filters.

use std::collections::BTreeMap;

use polars::prelude::{BooleanChunked, DataFrame, NewChunkedArray};
use serde::{Deserialize, Serialize};

use crate::data::load::Table;
use crate::error::{Error, Result};
use crate::estimate::vcov::VcovSpec;

/// The shipped specification of the study's tables.
pub const DEFAULT_SPEC: &str = include_str!("../../../data/replicate_spec.json");

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Spec {
    #[serde(default)]
    pub about: String,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub macros: BTreeMap<String, String>,
    /// Variable names as the paper writes them (`digtech` → `Digtech`), for the displayed
    /// tables; results.json keeps the names.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub tables: Vec<TableSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Defaults {
    #[serde(default = "default_vcov")]
    pub vcov: String,
    /// Regressors shown as one "Controls: Yes/No" row instead of coefficient by coefficient
    /// (the paper's layout; macros allowed). The JSON keeps every coefficient.
    #[serde(default)]
    pub controls: Option<String>,
    #[serde(default = "default_param")]
    pub param: String,
}

pub(super) fn default_vcov() -> String {
    "cluster:country".into()
}

pub(super) fn default_param() -> String {
    "digtech".into()
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            vcov: default_vcov(),
            controls: None,
            param: default_param(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TableSpec {
    pub id: String,
    pub title: String,
    /// Printed under the table: the choices made where the paper is ambiguous.
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub columns: Vec<ColumnSpec>,
    #[serde(default)]
    pub counts: Option<CountsSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ColumnSpec {
    pub label: String,
    pub formula: String,
    #[serde(default)]
    pub sample: Option<String>,
    #[serde(default)]
    pub vcov: Option<String>,
    #[serde(default)]
    pub param: Option<String>,
    #[serde(default)]
    pub split: Option<String>,
    #[serde(default)]
    pub split_labels: Option<[String; 2]>,
    /// Permutation unit of the split test: `obs` (bdiff's default) or a variable whose units
    /// move together (e.g. `firm_id` for a firm-level split). When the split varies within a
    /// unit, observations are permuted instead and the table says so.
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub truth: Option<String>,
    /// The planted values of a split column's two sides (split == 1, split == 0), in place of
    /// `truth`, where the simulator plants a different effect on each side.
    #[serde(default)]
    pub split_truth: Option<[String; 2]>,
    /// A pattern the simulator plants by direction only: a `sign:*` key of truth.json (±1).
    #[serde(default)]
    pub planted_sign: Option<String>,
    /// The panel of the table the column belongs to (consecutive columns with one name form a
    /// panel, laid out as its own block: Table 10's Panels A and B).
    #[serde(default)]
    pub panel: Option<String>,
    /// Printed under the table, after the column's label.
    #[serde(default)]
    pub note: Option<String>,
}

/// Distinct units per level of a categorical variable (Table 7's firm counts).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CountsSpec {
    pub variable: String,
    pub unit: String,
    pub levels: Vec<(f64, String)>,
    #[serde(default)]
    pub truth: Vec<String>,
}

impl Spec {
    /// Parse a specification (JSON) and check it: known macros, parseable formulas and vcov,
    /// well-formed sample filters.
    pub fn parse(text: &str, source: &str) -> Result<Spec> {
        let spec: Spec = serde_json::from_str(text)
            .map_err(|e| Error::Usage(format!("{source}: not a valid specification: {e}")))?;
        if spec.tables.is_empty() {
            return Err(Error::Usage(format!("{source}: the specification has no tables")));
        }
        for t in &spec.tables {
            for c in &t.columns {
                let where_ = format!("{source}, table {} column `{}`", t.id, c.label);
                let f = spec
                    .expand(&c.formula)
                    .map_err(|e| Error::Usage(format!("{where_}: {e}")))?;
                crate::formula::parse(&f).map_err(|e| Error::Usage(format!("{where_}: {e}")))?;
                VcovSpec::parse(c.vcov.as_deref().unwrap_or(&spec.defaults.vcov))
                    .map_err(|e| Error::Usage(format!("{where_}: {e}")))?;
                if let Some(s) = &c.sample {
                    parse_filter(s).map_err(|e| Error::Usage(format!("{where_}: {e}")))?;
                }
            }
            if t.columns.is_empty() && t.counts.is_none() {
                return Err(Error::Usage(format!(
                    "{source}, table {}: no columns and no counts",
                    t.id
                )));
            }
        }
        Ok(spec)
    }

    /// The variables collapsed into the "Controls" row.
    pub fn control_names(&self) -> Vec<String> {
        self.defaults
            .controls
            .as_deref()
            .and_then(|c| self.expand(c).ok())
            .map(|c| {
                c.split('+')
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A variable or interaction (`digtech:vol2`) as the paper writes it (`labels`; `×` joins
    /// the factors of an interaction); names without a label are kept.
    pub fn display(&self, name: &str) -> String {
        display_name(&self.labels, name)
    }

    /// Expand `{NAME}` macros.
    pub fn expand(&self, formula: &str) -> std::result::Result<String, String> {
        let mut out = String::new();
        let mut rest = formula;
        while let Some(i) = rest.find('{') {
            out.push_str(&rest[..i]);
            let Some(j) = rest[i..].find('}') else {
                return Err(format!("unclosed `{{` in `{formula}`"));
            };
            let name = &rest[i + 1..i + j];
            match self.macros.get(name) {
                Some(v) => out.push_str(v),
                None => return Err(format!("unknown macro {{{name}}} in `{formula}`")),
            }
            rest = &rest[i + j + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// `name` (a variable or an interaction `a:b`) with each factor relabelled by `labels`.
pub(super) fn display_name(labels: &BTreeMap<String, String>, name: &str) -> String {
    name.split(':')
        .map(|v| labels.get(v).cloned().unwrap_or_else(|| v.to_string()))
        .collect::<Vec<_>>()
        .join("×")
}

/// One clause `var op value` of a sample filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub var: String,
    pub op: String,
    pub value: f64,
}

/// Parse `a == 1 & b >= 2.5` (ops ==, !=, >=, <=, >, <).
pub fn parse_filter(s: &str) -> std::result::Result<Vec<Clause>, String> {
    s.split('&')
        .map(|c| {
            let c = c.trim();
            for op in ["==", "!=", ">=", "<=", ">", "<"] {
                if let Some(i) = c.find(op) {
                    let var = c[..i].trim();
                    let val = c[i + op.len()..].trim();
                    if var.is_empty() || !var.chars().all(|ch| ch.is_alphanumeric() || ch == '_') {
                        return Err(format!("sample clause `{c}`: `{var}` is not a variable name"));
                    }
                    let value: f64 = val
                        .parse()
                        .map_err(|_| format!("sample clause `{c}`: `{val}` is not a number"))?;
                    return Ok(Clause {
                        var: var.to_string(),
                        op: op.to_string(),
                        value,
                    });
                }
            }
            Err(format!(
                "sample clause `{c}`: expected `variable op number` with op one of == != >= <= > <"
            ))
        })
        .collect()
}

pub(super) fn holds(op: &str, x: f64, v: f64) -> bool {
    match op {
        "==" => x == v,
        "!=" => x != v,
        ">=" => x >= v,
        "<=" => x <= v,
        ">" => x > v,
        _ => x < v,
    }
}

/// Rows of `df` where every clause holds (missing values fail every clause).
pub fn filter_rows(df: &DataFrame, clauses: &[Clause], source: &str) -> Result<DataFrame> {
    if clauses.is_empty() {
        return Ok(df.clone());
    }
    let t = Table::new(df.clone(), source.to_string());
    let mut mask = vec![true; df.height()];
    for c in clauses {
        let v = t.numeric(&c.var)?;
        for (m, x) in mask.iter_mut().zip(&v) {
            *m &= x.is_finite() && holds(&c.op, *x, c.value);
        }
    }
    let mask = BooleanChunked::from_slice("mask".into(), &mask);
    df.filter(&mask)
        .map_err(|e| Error::Data(format!("{source}: filtering rows: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_spec_parses_and_expands() {
        let s = Spec::parse(DEFAULT_SPEC, "data/replicate_spec.json").unwrap();
        assert_eq!(s.tables.len(), 13);
        let ids: Vec<&str> = s.tables.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(
            ids,
            (1..=13)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
        );
        assert_eq!(s.expand("y ~ x | {FE}").unwrap(), "y ~ x | firm + year + firm^country");
        assert!(s.expand("y ~ {NOPE}").is_err());
    }

    #[test]
    fn every_paper_column_names_a_column_of_the_shipped_spec() {
        let s = Spec::parse(DEFAULT_SPEC, "data/replicate_spec.json").unwrap();
        let mut labels = std::collections::BTreeSet::new();
        for t in &s.tables {
            for c in &t.columns {
                let shown = c.split_labels.clone().map_or(vec![c.label.clone()], Vec::from);
                labels.extend(shown.iter().map(|l| format!("{}:{l}", t.id)));
            }
            for (level, _) in t.counts.iter().flat_map(|c| &c.levels) {
                labels.insert(format!("{}:counts level {level}", t.id));
            }
        }
        let paper = crate::study::paper::by_spec_match(crate::study::paper::PAPER_VALUES).unwrap();
        let unknown: Vec<&String> = paper.keys().filter(|k| !labels.contains(*k)).collect();
        assert!(unknown.is_empty(), "paper columns matching no column: {unknown:?}");
        let printed: serde_json::Value = serde_json::from_str(crate::study::paper::PAPER_VALUES).unwrap();
        let columns = printed["tables"].as_object().unwrap().values().flat_map(|t| {
            t["panels"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|p| p["columns"].as_array().unwrap())
        });
        assert_eq!(
            paper.len(),
            columns.count(),
            "every printed column of the paper is matched"
        );
        assert_eq!(s.display("digtech:vol2"), "Digtech×Vol2");
        assert_eq!(s.display("trans"), "trans");
    }

    #[test]
    fn bad_specs_are_refused_with_the_place() {
        let bad = r#"{"tables":[{"id":"1","title":"t","columns":[{"label":"a","formula":"y ~ ~ x"}]}]}"#;
        let e = Spec::parse(bad, "mine.json").unwrap_err().to_string();
        assert!(
            e.contains("mine.json") && e.contains("table 1") && e.contains("`a`"),
            "{e}"
        );
        let bad =
            r#"{"tables":[{"id":"2","title":"t","columns":[{"label":"b","formula":"y ~ x","sample":"x => 1"}]}]}"#;
        assert!(Spec::parse(bad, "m").is_err());
        assert!(Spec::parse("{", "m").is_err());
        assert!(Spec::parse(r#"{"tables":[]}"#, "m").is_err());
    }

    #[test]
    fn filters_parse_and_apply() {
        let c = parse_filter("a == 1 & b >= 2.5").unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].op, ">=");
        assert!(parse_filter("a ~ 1").is_err());
        assert!(parse_filter("a == x").is_err());
        let df = DataFrame::new(
            3,
            vec![
                polars::prelude::Column::new("a".into(), vec![1.0, 1.0, f64::NAN]),
                polars::prelude::Column::new("b".into(), vec![3.0, 1.0, 3.0]),
            ],
        )
        .unwrap();
        assert_eq!(filter_rows(&df, &c, "t").unwrap().height(), 1);
    }
}
