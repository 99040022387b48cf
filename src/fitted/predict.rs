//! Predictions for new rows (`fegpu fit --predict NEWDATA`, fixest's `predict(newdata =)`):
//! `Xβ` plus each fixed effect's value ([`super::Fitted`], fixest's normalisation; the sum
//! does not depend on it) on every row of the new data.
//!
//! * Terms are evaluated on the new rows as in the fit (`log(x)`, `x1:x2`, factors, `i()`),
//!   with the fit's columns: a factor level's column is the fit's column of that name, a
//!   reference level or a removed column contributes 0.
//! * A factor level (of a text column, `factor(x)`, `i()`) not seen in the estimation sample is
//!   an error naming the column, the level and the row (fixest: an error too).
//! * A fixed-effect level not seen in the estimation sample gives a missing prediction (fixest:
//!   `NA`), as does a missing value in any variable the prediction reads.
//! * Levels are compared as labels ([`crate::terms::Level::label`]: text as is, numbers in
//!   their shortest form), so `2005` in a CSV and `2005.0` in a Parquet file are one level.
//! * Panel operators (`l()`, `f()`, `d()`) are not predicted yet: an error says so.

use std::collections::{HashMap, HashSet};

use super::Fitted;
use crate::data::factor::MISSING_CODE;
use crate::data::prepare::term_values;
use crate::data::Table;
use crate::error::{Error, Result};
use crate::formula::Model;
use crate::terms::{self, categories, TermPlan};

/// The columns of the new data a prediction of `model` reads: its right-hand side (and
/// endogenous regressors) and its fixed effects, not the outcome.
pub fn needed_columns(model: &Model) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let terms = model
        .rhs
        .iter()
        .chain(model.iv.iter().flat_map(|iv| iv.endogenous.iter()));
    let vars = terms
        .flat_map(|t| t.vars())
        .chain(model.fixed_effects.iter().flat_map(|f| f.vars.clone()));
    for v in vars {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// The prediction of `model` (fitted on `est`, sample and values in `fit`) on every row of
/// `new`; NaN where it is missing.
pub fn predict(est: &Table, model: &Model, fit: &Fitted, new: &Table) -> Result<Vec<f64>> {
    let plan = terms::plan(est, model)?;
    if let Some(t) = plan.lagged() {
        return Err(Error::Usage(format!(
            "--predict: `{}` uses a panel operator; predicting new rows with l(), f() or d() is not supported yet",
            t.name()
        )));
    }
    let beta: HashMap<&str, f64> = fit.beta.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    let n = new.nrows();
    let mut out = vec![beta.get("(Intercept)").copied().unwrap_or(0.0); n];
    for p in plan.rhs.iter().chain(&plan.endogenous) {
        let numeric = p.numeric.as_ref().map(|t| term_values(new, t)).transpose()?;
        if p.is_numeric() {
            let b = beta.get(p.term.name().as_str()).copied().unwrap_or(0.0);
            let x = numeric.expect("a numeric term's values");
            out.iter_mut().zip(&x).for_each(|(o, x)| *o += b * x);
        } else {
            add_categorical(est, fit, new, p, numeric.as_deref(), &beta, &mut out)?;
        }
    }
    for (q, spec) in model.fixed_effects.iter().enumerate() {
        let values = effect_by_label(est, fit, q, &spec.vars)?;
        let keys = labels(new, &spec.vars)?;
        for (o, key) in out.iter_mut().zip(keys) {
            *o += key.and_then(|k| values.get(&k).copied()).unwrap_or(f64::NAN);
        }
    }
    Ok(out)
}

/// Add a categorical term's contribution: per row, the coefficient of the column its levels
/// name (0 for a reference or removed column) times the numeric part.
fn add_categorical(
    est: &Table,
    fit: &Fitted,
    new: &Table,
    p: &TermPlan,
    numeric: Option<&[f64]>,
    beta: &HashMap<&str, f64>,
    out: &mut [f64],
) -> Result<()> {
    // per coding: the new data's codes and each code's label, checked against the fit's levels
    let mut codings: Vec<(Vec<u32>, Vec<String>)> = Vec::with_capacity(p.codings.len());
    for c in &p.codings {
        let seen = sample_labels(est, &c.var, &fit.rows)?;
        let cats = categories(new, &c.var)?;
        let labels: Vec<String> = cats.levels.iter().map(|l| l.label()).collect();
        if let Some((i, code)) = cats
            .codes
            .iter()
            .enumerate()
            .find(|(_, &code)| code != MISSING_CODE && !seen.contains(&labels[code as usize]))
        {
            return Err(Error::column(
                &c.var,
                format!(
                    "--predict: level `{}` (row {} of {}) is not a level of the estimation sample, so `{}` has no coefficient for it",
                    labels[*code as usize],
                    i + 1,
                    new.source(),
                    p.term.name()
                ),
            ));
        }
        codings.push((cats.codes, labels));
    }
    let mut name_cache: HashMap<Vec<u32>, f64> = HashMap::new();
    for (i, o) in out.iter_mut().enumerate() {
        let combo: Vec<u32> = codings.iter().map(|(codes, _)| codes[i]).collect();
        if combo.contains(&MISSING_CODE) {
            *o = f64::NAN;
            continue;
        }
        let b = *name_cache.entry(combo.clone()).or_insert_with(|| {
            let name = terms::column_name(p, |k| codings[k].1[combo[k] as usize].clone());
            beta.get(name.as_str()).copied().unwrap_or(0.0)
        });
        *o += b * numeric.map_or(1.0, |x| x[i]);
    }
    Ok(())
}

/// The labels of `var`'s levels on the estimation sample's rows.
fn sample_labels(est: &Table, var: &str, rows: &[usize]) -> Result<HashSet<String>> {
    let cats = categories(est, var)?;
    let mut used = vec![false; cats.levels.len()];
    for &r in rows {
        if let Some(u) = used.get_mut(cats.codes[r] as usize) {
            *u = true;
        }
    }
    Ok(cats
        .levels
        .iter()
        .zip(used)
        .filter(|(_, u)| *u)
        .map(|(l, _)| l.label())
        .collect())
}

/// Per row of `table`, the labels of the variables `vars` (an effect `a^b`) joined into one
/// key; `None` where one is missing.
fn labels(table: &Table, vars: &[String]) -> Result<Vec<Option<String>>> {
    let cats = vars.iter().map(|v| categories(table, v)).collect::<Result<Vec<_>>>()?;
    let labels: Vec<Vec<String>> = cats
        .iter()
        .map(|c| c.levels.iter().map(|l| l.label()).collect())
        .collect();
    Ok((0..table.nrows())
        .map(|i| {
            let parts: Option<Vec<&str>> = cats
                .iter()
                .zip(&labels)
                .map(|(c, l)| (c.codes[i] != MISSING_CODE).then(|| l[c.codes[i] as usize].as_str()))
                .collect();
            parts.map(|p| p.join("\u{1f}"))
        })
        .collect())
}

/// Effect `q`'s value by the key of its level ([`labels`]).
fn effect_by_label(est: &Table, fit: &Fitted, q: usize, vars: &[String]) -> Result<HashMap<String, f64>> {
    let keys = labels(est, vars)?;
    let (effect, values) = (&fit.effects[q], &fit.values.values[q]);
    let mut out = HashMap::with_capacity(effect.levels);
    for (&row, &g) in fit.rows.iter().zip(&effect.ids) {
        if let Some(k) = &keys[row] {
            out.entry(k.clone()).or_insert(values[g as usize]);
        }
    }
    Ok(out)
}
