//! From a loaded [`Table`] and a parsed [`Model`] to the f64 design of one estimation sample:
//! evaluate the terms (`log(x)`, `x1:x2`), drop rows with a missing or non-finite value in any
//! used variable (fixest and reghdfe both do this silently but report counts; so do we), drop
//! zero weights (fixest), then drop singletons iteratively (reghdfe), and finally renumber the
//! fixed-effect and cluster levels densely over the rows that remain.

use std::borrow::Cow;
use std::collections::HashMap;

use rayon::prelude::*;

use super::factor::MISSING_CODE;
use super::load::Table;
use crate::error::{Error, Result};
use crate::fe::index::{compact, interact, sort_rows_by};
use crate::fe::{drop_singletons, FixedEffect};
use crate::formula::{Factor, Func, Model, Term};

/// Rows removed on the way from the raw data to the estimation sample, by cause.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Dropped {
    /// A used variable (outcome, regressor, fixed effect, cluster, weight) is missing.
    pub missing: usize,
    /// A transformed term is not finite (`log` of a non-positive value, fixest's "infinite values").
    pub nonfinite: usize,
    /// The observation weight is zero (fixest drops these).
    pub zero_weight: usize,
    /// Singletons, removed iteratively (reghdfe).
    pub singletons: usize,
}

/// What `prepare` needs besides the model.
#[derive(Debug, Clone, Default)]
pub struct PrepareOptions {
    pub weights: Option<String>,
    /// Cluster variables (each may be an interaction written `a^b`).
    pub clusters: Vec<String>,
    /// Keep singletons (reghdfe's `keepsingletons`); default false.
    pub keep_singletons: bool,
    /// Further numeric columns carried along row by row (e.g. the group of `bdiff`); rows where
    /// they are missing are dropped like any other used variable.
    pub extra: Vec<String>,
}

/// The columns to read for `models` under `opts`: every variable of the formulas, the weights,
/// the parts of each cluster variable (`a^b` reads `a` and `b`) and the extra columns, each
/// once, in that order. Readers load only these.
pub fn used_columns(models: &[&Model], opts: &PrepareOptions) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let clusters = opts
        .clusters
        .iter()
        .flat_map(|c| c.split('^').map(|v| v.trim().to_string()));
    let names = models
        .iter()
        .flat_map(|m| m.variables())
        .chain(opts.weights.iter().cloned())
        .chain(clusters)
        .chain(opts.extra.iter().cloned());
    for v in names {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// A cluster variable over the estimation sample.
#[derive(Debug, Clone)]
pub struct ClusterVar {
    pub name: String,
    pub ids: Vec<u32>,
    pub levels: usize,
}

/// The estimation sample of one model.
#[derive(Debug, Clone)]
pub struct Design {
    pub y_name: String,
    pub y: Vec<f64>,
    /// Regressor names, `(Intercept)` first when the model has one.
    pub x_names: Vec<String>,
    /// Regressors, one vector per column.
    pub x: Vec<Vec<f64>>,
    pub intercept: bool,
    /// Endogenous regressors and excluded instruments of an IV model (empty otherwise).
    pub endog_names: Vec<String>,
    pub endog: Vec<Vec<f64>>,
    pub inst_names: Vec<String>,
    pub inst: Vec<Vec<f64>>,
    pub weights: Option<Vec<f64>>,
    /// The `PrepareOptions::extra` columns over the estimation sample.
    pub extra: Vec<Vec<f64>>,
    pub fes: Vec<FixedEffect>,
    pub clusters: Vec<ClusterVar>,
    pub nobs_raw: usize,
    pub dropped: Dropped,
}

impl Design {
    pub fn nobs(&self) -> usize {
        self.y.len()
    }
}

/// Cached raw columns, so a variable used by several terms is converted once.
struct Columns<'a> {
    table: &'a Table,
    /// Borrowed from the table where its column is already one f64 buffer without missing values.
    numeric: HashMap<String, Cow<'a, [f64]>>,
    codes: HashMap<String, (Vec<u32>, usize)>,
}

impl<'a> Columns<'a> {
    fn numeric(&mut self, name: &str) -> Result<&[f64]> {
        if !self.numeric.contains_key(name) {
            let v = self.table.numeric_cow(name)?;
            self.numeric.insert(name.to_string(), v);
        }
        Ok(&self.numeric[name])
    }

    fn factor(&mut self, f: &Factor) -> Result<Vec<f64>> {
        match f {
            // a bare variable is the cached column itself (see `term`); here it is an argument
            Factor::Var(v) => Ok(self.numeric(v)?.to_vec()),
            Factor::Call(func, arg) => {
                let mut v = self.factor(arg)?;
                for x in v.iter_mut() {
                    *x = match func {
                        // log of a non-positive value is -inf/NaN: the row is dropped as non-finite
                        Func::Log => {
                            if *x > 0.0 {
                                x.ln()
                            } else if x.is_nan() {
                                f64::NAN
                            } else {
                                f64::NEG_INFINITY
                            }
                        }
                        Func::Exp => x.exp(),
                        Func::Sqrt => {
                            if *x >= 0.0 {
                                x.sqrt()
                            } else if x.is_nan() {
                                f64::NAN
                            } else {
                                f64::NEG_INFINITY
                            }
                        }
                    }
                }
                Ok(v)
            }
        }
    }

    /// The values of a term: a bare variable is borrowed from the cache (no copy of a
    /// 10-million-row column), anything computed is owned.
    fn term(&mut self, t: &Term) -> Result<Cow<'_, [f64]>> {
        if let [Factor::Var(v)] = t.factors.as_slice() {
            self.numeric(v)?;
            return Ok(Cow::Borrowed(&self.numeric[v.as_str()]));
        }
        let mut out = self.factor(&t.factors[0])?;
        for f in &t.factors[1..] {
            let v = self.factor(f)?;
            for (o, x) in out.iter_mut().zip(v) {
                *o *= x;
            }
        }
        Ok(Cow::Owned(out))
    }

    /// Load the raw numeric columns `names` in parallel (the first error in `names` order wins).
    fn load_numeric(&mut self, names: &[String]) -> Result<()> {
        let todo: Vec<&String> = names
            .iter()
            .filter(|v| !self.numeric.contains_key(v.as_str()))
            .collect();
        let table = self.table;
        let loaded: Vec<Result<Cow<'a, [f64]>>> = todo.par_iter().map(|v| table.numeric_cow(v)).collect();
        for (v, col) in todo.into_iter().zip(loaded) {
            self.numeric.insert(v.clone(), col?);
        }
        Ok(())
    }

    /// Codes of categorical variables or interactions `a^b` (fixed effects, clusters): every
    /// variable is factorised once (`dest` may be an effect, part of `firm^dest` and the
    /// cluster), variables and then interactions in parallel.
    fn codes(&mut self, specs: &[String]) -> Result<Vec<(Vec<u32>, usize)>> {
        let parts = |spec: &str| spec.split('^').map(str::trim).map(str::to_string).collect::<Vec<_>>();
        let mut vars: Vec<String> = Vec::new();
        for v in specs.iter().flat_map(|s| parts(s)) {
            if !self.codes.contains_key(&v) && !vars.contains(&v) {
                vars.push(v);
            }
        }
        let coded: Vec<Result<(Vec<u32>, usize)>> = vars.par_iter().map(|v| self.table.codes(v)).collect();
        for (v, c) in vars.into_iter().zip(coded) {
            self.codes.insert(v, c?);
        }
        let cache = &self.codes;
        Ok(specs
            .par_iter()
            .map(|spec| {
                let members: Vec<(&[u32], usize)> = parts(spec)
                    .iter()
                    .map(|v| (cache[v.as_str()].0.as_slice(), cache[v.as_str()].1))
                    .collect();
                interact(&members)
            })
            .collect())
    }
}

/// The endogenous regressors and instruments of the IV part, if any.
fn iv_terms(model: &Model) -> impl Iterator<Item = &Term> {
    model
        .iv
        .iter()
        .flat_map(|iv| iv.endogenous.iter().chain(iv.instruments.iter()))
}

/// Build the estimation sample of `model` from `table`.
pub fn prepare(table: &Table, model: &Model, opts: &PrepareOptions) -> Result<Design> {
    let n = table.nrows();
    let mut cols = Columns {
        table,
        numeric: HashMap::new(),
        codes: HashMap::new(),
    };

    // Raw variables: a NaN there means the value is missing.
    let mut missing = vec![false; n];
    let raw_vars: Vec<String> = {
        let mut v: Vec<String> = std::iter::once(&model.lhs)
            .chain(&model.rhs)
            .chain(iv_terms(model))
            .flat_map(|t| t.vars())
            .collect();
        v.extend(opts.weights.iter().cloned());
        v.extend(opts.extra.iter().cloned());
        v.dedup();
        v
    };
    cols.load_numeric(&raw_vars)?;
    for v in &raw_vars {
        for (m, x) in missing.iter_mut().zip(cols.numeric(v)?) {
            *m |= x.is_nan();
        }
    }
    let specs: Vec<String> = model
        .fixed_effects
        .iter()
        .map(|fe| fe.name())
        .chain(opts.clusters.iter().cloned())
        .collect();
    let mut fe_codes = cols.codes(&specs)?;
    let cl_codes = fe_codes.split_off(model.fixed_effects.len());
    for (codes, _) in fe_codes.iter().chain(&cl_codes) {
        for (m, &c) in missing.iter_mut().zip(codes) {
            *m |= c == MISSING_CODE;
        }
    }

    // Terms; a non-finite value on a row with no missing input is a "non-finite" drop.
    // Computed terms are materialised once; bare variables stay in the cache and are read there.
    for t in std::iter::once(&model.lhs).chain(&model.rhs).chain(iv_terms(model)) {
        if !matches!(t.factors.as_slice(), [Factor::Var(_)]) {
            let v = cols.term(t)?.into_owned();
            cols.numeric.insert(t.name(), Cow::Owned(v));
        }
    }
    let column_of = |t: &Term| -> &[f64] {
        match t.factors.as_slice() {
            [Factor::Var(v)] => &cols.numeric[v.as_str()],
            _ => &cols.numeric[&t.name()],
        }
    };
    let y = column_of(&model.lhs);
    let x_raw: Vec<&[f64]> = model.rhs.iter().map(column_of).collect();
    let iv_raw: Vec<&[f64]> = iv_terms(model).map(column_of).collect();
    // keep: no missing input and every term finite (chunks of rows in parallel)
    let mut keep = vec![true; n];
    let mut dropped = Dropped::default();
    let chunk = 1 << 16;
    let counts: Vec<(usize, usize)> = keep
        .par_chunks_mut(chunk)
        .enumerate()
        .map(|(c, part)| {
            let (mut miss, mut nonfinite) = (0, 0);
            for (k, kept) in part.iter_mut().enumerate() {
                let i = c * chunk + k;
                if missing[i] {
                    *kept = false;
                    miss += 1;
                } else if !y[i].is_finite() || x_raw.iter().chain(&iv_raw).any(|col| !col[i].is_finite()) {
                    *kept = false;
                    nonfinite += 1;
                }
            }
            (miss, nonfinite)
        })
        .collect();
    dropped.missing = counts.iter().map(|c| c.0).sum();
    dropped.nonfinite = counts.iter().map(|c| c.1).sum();

    let weights_raw = match &opts.weights {
        Some(w) => {
            // loaded with the raw variables above
            let wv = cols.numeric[w.as_str()].to_vec();
            for i in 0..n {
                if !keep[i] {
                    continue;
                }
                if !wv[i].is_finite() || wv[i] < 0.0 {
                    return Err(Error::column(
                        w,
                        format!("weights must be finite and non-negative; row {} has {}", i + 1, wv[i]),
                    ));
                }
                if wv[i] == 0.0 {
                    keep[i] = false;
                    dropped.zero_weight += 1;
                }
            }
            Some(wv)
        }
        None => None,
    };

    if !opts.keep_singletons && !fe_codes.is_empty() {
        // A row with a MISSING_CODE is not kept (see `missing`), and `drop_singletons` reads the
        // codes of kept rows only, so the codes are passed as they are.
        let views: Vec<(&[u32], usize)> = fe_codes.iter().map(|(c, g)| (c.as_slice(), *g)).collect();
        dropped.singletons = drop_singletons(&views, &mut keep);
    }

    let nobs = keep.iter().filter(|&&k| k).count();
    if nobs == 0 {
        return Err(Error::NoObservations(format!(
            "all {n} rows of {} were dropped ({} with a missing value, {} non-finite, {} zero weight, {} singletons)",
            table.source(),
            dropped.missing,
            dropped.nonfinite,
            dropped.zero_weight,
            dropped.singletons
        )));
    }

    // The estimation sample, ordered by the fixed effect with the most levels (see
    // `sort_rows_by`); every statistic is a sum over rows, so the order changes nothing else.
    let mut rows: Vec<usize> = (0..n).filter(|&i| keep[i]).collect();
    if let Some((codes, g)) = fe_codes.iter().max_by_key(|(_, g)| *g) {
        rows = sort_rows_by(codes, *g, &rows);
    }
    let subset = |v: &[f64]| -> Vec<f64> { rows.iter().map(|&i| v[i]).collect() };
    let mut x_names = Vec::new();
    let mut x = Vec::new();
    if model.intercept {
        x_names.push("(Intercept)".to_string());
        x.push(vec![1.0; nobs]);
    }
    x_names.extend(model.rhs.iter().map(Term::name));
    x.par_extend(x_raw.par_iter().map(|c| subset(c)));
    let fes = model
        .fixed_effects
        .par_iter()
        .zip(&fe_codes)
        .map(|(spec, (codes, g))| {
            let (ids, levels) = compact(codes, *g, &rows);
            FixedEffect {
                name: spec.name(),
                ids,
                levels,
            }
        })
        .collect();
    let clusters = opts
        .clusters
        .par_iter()
        .zip(&cl_codes)
        .map(|(name, (codes, g))| {
            let (ids, levels) = compact(codes, *g, &rows);
            ClusterVar {
                name: name.clone(),
                ids,
                levels,
            }
        })
        .collect();
    Ok(Design {
        y_name: model.lhs.name(),
        y: subset(y),
        endog_names: model
            .iv
            .iter()
            .flat_map(|iv| iv.endogenous.iter().map(Term::name))
            .collect(),
        endog: model
            .iv
            .iter()
            .flat_map(|iv| iv.endogenous.iter().map(|t| subset(column_of(t))))
            .collect(),
        inst_names: model
            .iv
            .iter()
            .flat_map(|iv| iv.instruments.iter().map(Term::name))
            .collect(),
        inst: model
            .iv
            .iter()
            .flat_map(|iv| iv.instruments.iter().map(|t| subset(column_of(t))))
            .collect(),
        x_names,
        x,
        intercept: model.intercept,
        weights: weights_raw.as_deref().map(subset),
        extra: opts.extra.iter().map(|e| subset(&cols.numeric[e.as_str()])).collect(),
        fes,
        clusters,
        nobs_raw: n,
        dropped,
    })
}
