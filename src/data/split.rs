//! `--split VAR` and `--fsplit VAR` (fixest's `split` and `fsplit`): one estimation sample per
//! value of VAR, in its level order (text by bytes, numbers numerically, as the factors of
//! [`crate::terms::levels`]); `--fsplit` puts the full sample first. Rows where VAR is missing
//! belong to no sample, the full one included (fixest drops them too).
//!
//! Each sample is a [`Subset`] (`VAR == value`, the full sample `VAR in (every value)`), joined
//! to the user's `--subset` by `&`, so everything the subset decides (missing values,
//! singletons, factor references) is decided within the sample, and the table is read once.
//! Values are those observed inside the user's subset.

use serde::Serialize;

use super::subset::{Expr, Literal, Op, Subset};
use super::Table;
use crate::data::factor::MISSING_CODE;
use crate::error::{Error, Result};
use crate::terms::{categories, Level};

/// Which sample a model was estimated on (`sample` in the JSON of a split fit).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleLabel {
    /// The split variable.
    pub var: String,
    /// Its value, as a label (`null`: the full sample of `--fsplit`).
    pub value: Option<String>,
}

impl SampleLabel {
    /// As the table's "Sample" row shows it.
    pub fn shown(&self) -> String {
        self.value.clone().unwrap_or_else(|| "Full sample".into())
    }
}

/// One estimation sample: its label and the rows it keeps.
#[derive(Debug, Clone)]
pub struct Sample {
    pub label: Option<SampleLabel>,
    pub subset: Option<Subset>,
}

/// The samples of a fit: the user's subset alone without a split, else one per value of
/// `split` (the full sample first when `full_first`, fixest's `fsplit`).
pub fn samples(table: &Table, split: Option<&str>, full_first: bool, user: Option<&Subset>) -> Result<Vec<Sample>> {
    let Some(var) = split else {
        return Ok(vec![Sample {
            label: None,
            subset: user.cloned(),
        }]);
    };
    let levels = observed(table, var, user)?;
    let literal = |l: &Level| match l {
        Level::Num(v) => Literal::Num(*v),
        Level::Text(t) => Literal::Text(t.clone()),
    };
    let joined = |expr: Expr, text: String| {
        let (expr, text) = match user {
            Some(u) => (
                Expr::And(Box::new(u.expr.clone()), Box::new(expr)),
                format!("({}) & {text}", u.text),
            ),
            None => (expr, text),
        };
        Some(Subset { text, expr })
    };
    let mut out = Vec::with_capacity(levels.len() + 1);
    if full_first {
        let expr = Expr::In {
            column: var.to_string(),
            values: levels.iter().map(literal).collect(),
        };
        out.push(Sample {
            label: Some(SampleLabel {
                var: var.to_string(),
                value: None,
            }),
            subset: joined(expr, format!("{var} is not missing")),
        });
    }
    for l in &levels {
        let expr = Expr::Cmp {
            column: var.to_string(),
            op: Op::Eq,
            value: literal(l),
        };
        out.push(Sample {
            label: Some(SampleLabel {
                var: var.to_string(),
                value: Some(l.label()),
            }),
            subset: joined(expr, format!("{var} == {}", l.label())),
        });
    }
    Ok(out)
}

/// The levels of `var` on the rows inside `user` (all rows without it), in level order.
fn observed(table: &Table, var: &str, user: Option<&Subset>) -> Result<Vec<Level>> {
    let cats = categories(table, var).map_err(|e| match e {
        Error::Column { .. } => e,
        other => Error::column(var, format!("--split: {other}")),
    })?;
    let inside = user.map(|u| u.rows(table)).transpose()?;
    let mut used = vec![false; cats.levels.len()];
    for (i, &c) in cats.codes.iter().enumerate() {
        if c != MISSING_CODE && inside.as_ref().is_none_or(|r| r[i]) {
            used[c as usize] = true;
        }
    }
    let levels: Vec<Level> = cats
        .levels
        .into_iter()
        .zip(used)
        .filter(|(_, u)| *u)
        .map(|(l, _)| l)
        .collect();
    if levels.is_empty() {
        return Err(Error::column(
            var,
            "--split: the variable has no value on the rows used (all missing)",
        ));
    }
    Ok(levels)
}
