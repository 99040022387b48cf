//! The paper's published numbers (`data/paper_values.json`), for the "paper" rows that
//! `fegpu replicate` sets beside its own estimates.
//!
//! The file is a transcription of every printed cell of Tables 1–13; each paper column names the
//! column of `data/replicate_spec.json` it corresponds to in `spec_match` = "TABLE:LABEL" (the
//! label as our table shows it: a split column's split label; Table 7's rows are "7:counts
//! level K"). [`by_spec_match`] indexes the columns by that key, so a table looks its columns up
//! by (table id, label) and a renamed column simply loses its paper values rather than showing
//! another column's. The paper prints coefficients to four decimals and t statistics to two;
//! [`PaperColumn::coef_cell`] and [`PaperColumn::t_cell`] show them that way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The shipped transcription of the paper's tables.
pub const PAPER_VALUES: &str = include_str!("../../data/paper_values.json");

/// A further coefficient printed in the same paper column (Table 13's Digtech, say).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OtherCoef {
    pub param: String,
    pub coef: Option<f64>,
    pub t: Option<f64>,
    #[serde(default)]
    pub stars: Option<String>,
}

/// One printed column of the paper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaperColumn {
    pub paper_label: String,
    pub param: Option<String>,
    pub coef: Option<f64>,
    pub t: Option<f64>,
    #[serde(default)]
    pub stars: Option<String>,
    pub n: Option<u64>,
    /// The printed Adj. R².
    pub r2: Option<f64>,
    /// The printed coefficient-difference p-value (split tables).
    pub p: Option<f64>,
    #[serde(default)]
    pub other_coefs: Vec<OtherCoef>,
    /// Further printed cells (Table 7's firms, share_pct, competition_code, obs; Table 2's
    /// weak-identification statistics).
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub spec_match: Option<String>,
    #[serde(default)]
    pub spec_match_note: Option<String>,
}

impl PaperColumn {
    /// Every printed coefficient of the column: (parameter, coefficient, t, stars).
    pub fn coefficients(&self) -> Vec<(String, f64, Option<f64>, String)> {
        let main = self
            .param
            .clone()
            .zip(self.coef)
            .map(|(p, c)| (p, c, self.t, self.stars.clone().unwrap_or_default()));
        main.into_iter()
            .chain(self.other_coefs.iter().filter_map(|o| {
                o.coef
                    .map(|c| (o.param.clone(), c, o.t, o.stars.clone().unwrap_or_default()))
            }))
            .collect()
    }

    /// A coefficient as the paper prints it (four decimals and its stars).
    pub fn coef_cell(coef: f64, stars: &str) -> String {
        format!("{coef:.4}{stars}")
    }

    /// The printed name of a further statistic in `extra` (its key where none is known).
    pub fn extra_label(key: &str) -> String {
        match key {
            "kp_rk_lm" => "KP rk LM",
            "kp_rk_wald_f" => "KP rk Wald F",
            "cragg_donald_wald_f" => "CD Wald F",
            "stock_yogo_10pct_critical" => "Stock-Yogo 10% size",
            "first_stage_coef" => "first-stage coefficient",
            other => other,
        }
        .to_string()
    }

    /// A t statistic as the paper prints it (two decimals, in parentheses).
    pub fn t_cell(t: Option<f64>) -> String {
        t.map_or(String::new(), |t| format!("({t:.2})"))
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Panel {
    columns: Vec<PaperColumn>,
}

#[derive(Debug, Clone, Deserialize)]
struct PaperTable {
    panels: Vec<Panel>,
}

#[derive(Debug, Clone, Deserialize)]
struct PaperValues {
    tables: BTreeMap<String, PaperTable>,
}

/// The paper's columns keyed by `spec_match` (columns without one are left out). Two paper
/// columns with the same key are refused: each of our columns has at most one paper twin.
pub fn by_spec_match(text: &str) -> Result<BTreeMap<String, PaperColumn>> {
    let v: PaperValues = serde_json::from_str(text)
        .map_err(|e| Error::Data(format!("data/paper_values.json: not a paper-values file: {e}")))?;
    let mut out = BTreeMap::new();
    for c in v.tables.into_values().flat_map(|t| t.panels).flat_map(|p| p.columns) {
        let Some(key) = c.spec_match.clone() else { continue };
        if out.insert(key.clone(), c).is_some() {
            return Err(Error::Data(format!(
                "data/paper_values.json: two paper columns match `{key}`"
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_values_index_by_spec_match() {
        let m = by_spec_match(PAPER_VALUES).unwrap();
        let t1 = &m["1:(2)"];
        assert_eq!((t1.coef, t1.t, t1.n), (Some(0.0016), Some(3.43), Some(129833)));
        let t13 = &m["13:Degree"];
        let names: Vec<String> = t13.coefficients().into_iter().map(|c| c.0).collect();
        assert_eq!(names, ["Degree", "Digtech"]);
        assert_eq!(m["8:Strong quality (4)"].p, Some(0.082));
        assert_eq!(m["7:counts level 4"].extra["firms"].as_f64(), Some(178.0));
        assert_eq!(PaperColumn::coef_cell(0.001, "***"), "0.0010***");
        assert_eq!(PaperColumn::t_cell(Some(3.0)), "(3.00)");
    }

    #[test]
    fn a_key_used_twice_is_refused() {
        let col =
            r#"{"paper_label":"a","param":null,"coef":null,"t":null,"n":null,"r2":null,"p":null,"spec_match":"1:x"}"#;
        let text = format!(r#"{{"tables":{{"1":{{"panels":[{{"columns":[{col},{col}]}}]}}}}}}"#);
        assert!(by_spec_match(&text).unwrap_err().to_string().contains("1:x"));
    }
}
