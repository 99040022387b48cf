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
use crate::terms::{self, Categories, Plan, TermPlan};

/// Rows removed on the way from the raw data to the estimation sample, by cause.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dropped {
    /// A used variable (outcome, regressor, fixed effect, cluster, weight) is missing.
    pub missing: usize,
    /// A transformed term is not finite (`log` of a non-positive value, fixest's "infinite values").
    pub nonfinite: usize,
    /// The observation weight is zero (fixest drops these).
    pub zero_weight: usize,
    /// Singletons, removed iteratively (reghdfe).
    pub singletons: usize,
    /// Outside `--subset` (counted first: the other causes count rows inside it).
    #[serde(default)]
    pub subset: usize,
    /// Separated observations of a Poisson or logit model: fixed-effect groups whose outcomes
    /// pin the mean at a bound, and observations separated by the regressors and effects
    /// together (see `estimate::glm::separation`).
    #[serde(default)]
    pub separated: usize,
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
    /// Only the rows where this holds are used (`--subset`; applied before anything else).
    pub subset: Option<super::subset::Subset>,
    /// The unit and time variables of the panel operators `l()`, `f()`, `d()` (`--panel`).
    pub panel: Option<(String, String)>,
    /// What the outcome must be on the sample's rows (a GLM's family); a row that breaks it is
    /// an error naming it.
    pub outcome: OutcomeRule,
    /// Columns (among `extra`) that must be positive on the sample's rows (`--exposure`).
    pub positive: Vec<String>,
}

/// The values an outcome may take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutcomeRule {
    #[default]
    Any,
    /// y ≥ 0 (Poisson).
    NonNegative,
    /// y ∈ {0, 1} (logit).
    Binary,
}

impl OutcomeRule {
    fn broken_by(self, y: f64) -> Option<&'static str> {
        match self {
            OutcomeRule::NonNegative if y < 0.0 => Some("must be non-negative (a Poisson outcome)"),
            OutcomeRule::Binary if y != 0.0 && y != 1.0 => Some("must be 0 or 1 (a logit outcome)"),
            _ => None,
        }
    }
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
        .chain(opts.extra.iter().cloned())
        .chain(opts.subset.iter().flat_map(|s| s.columns()))
        .chain(opts.panel.iter().flat_map(|(i, t)| [i.clone(), t.clone()]));
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
    /// The observation weights divided by their mean ([`normalised`]).
    pub weights: Option<Vec<f64>>,
    /// The mean the weights were divided by (1 without weights): sums of weighted squares are
    /// reported in the user's weight units (rss, tss, rmse as fixest and pyfixest print them).
    pub weight_scale: f64,
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
    /// The panel index of the lags (built when a term has one).
    panel: Option<terms::panel::Panel>,
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
            Factor::Lag(lag) => {
                let x = self.numeric(&lag.var)?.to_vec();
                let panel = self
                    .panel
                    .as_ref()
                    .ok_or_else(|| Error::Usage(format!("`{}` needs the panel: give --panel ID,TIME", lag.name())))?;
                let shifted = panel.lag(&x, lag.shift());
                Ok(match lag.op {
                    crate::formula::LagOp::Diff => x.iter().zip(shifted).map(|(a, b)| a - b).collect(),
                    _ => shifted,
                })
            }
            // the term layer never puts a categorical factor in a numeric product
            Factor::AsFactor(_) | Factor::I(_) => Err(Error::Usage(format!(
                "`{}` is categorical and cannot be transformed or multiplied as a number",
                f.name()
            ))),
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
        // interactions first (they read the cache), then each single variable's codes are
        // moved out of the cache at their last use and cloned before
        let cache = &self.codes;
        let mut out: Vec<Option<(Vec<u32>, usize)>> = specs
            .par_iter()
            .map(|spec| {
                let members: Vec<(&[u32], usize)> = parts(spec)
                    .iter()
                    .map(|v| (cache[v.as_str()].0.as_slice(), cache[v.as_str()].1))
                    .collect();
                (members.len() != 1).then(|| interact(&members))
            })
            .collect();
        for (i, spec) in specs.iter().enumerate() {
            if out[i].is_none() {
                let v = spec.trim();
                let used_later = specs[i + 1..].iter().any(|s| s.trim() == v);
                out[i] = Some(match used_later {
                    true => self.codes[v].clone(),
                    false => self.codes.remove(v).expect("factorised above"),
                });
            }
        }
        Ok(out.into_iter().map(|c| c.expect("every spec coded")).collect())
    }
}

/// The values of a numeric term (`x`, `log(x)`, `x1:x2`) on every row of `table`, NaN where
/// an input is missing (a term with a panel operator is an error: it needs `--panel`).
pub fn term_values(table: &Table, t: &Term) -> Result<Vec<f64>> {
    let mut cols = Columns {
        table,
        numeric: HashMap::new(),
        codes: HashMap::new(),
        panel: None,
    };
    Ok(cols.term(t)?.into_owned())
}

/// Build the estimation sample of `model` from `table`.
pub fn prepare(table: &Table, model: &Model, opts: &PrepareOptions) -> Result<Design> {
    let sample = select(table, model, opts)?;
    sample.gather(model, opts, |name| table.numeric_cow(name))
}

/// [`prepare`], with the table row of each sample row (`rows[i]`, counted from 0): the
/// sample's rows are in the order the demeaning uses (see `sort_rows_by`), not the table's.
pub fn prepare_with_rows(table: &Table, model: &Model, opts: &PrepareOptions) -> Result<(Design, Vec<usize>)> {
    let sample = select(table, model, opts)?;
    let rows = sample.rows.clone();
    Ok((sample.gather(model, opts, |name| table.numeric_cow(name))?, rows))
}

/// [`prepare`] for a table that is not needed afterwards: the used f64 columns are taken out of
/// it and reordered into the sample in their own buffers, so a 10-million-row fit allocates
/// (and the kernel zeroes) one or two new columns instead of one per variable.
pub fn prepare_taking(table: &mut Table, model: &Model, opts: &PrepareOptions) -> Result<Design> {
    let sample = select(table, model, opts)?;
    sample.gather(model, opts, |name| table.take_numeric(name).map(Cow::Owned))
}

/// The rows of the estimation sample and everything decided on them, before the variables
/// are gathered.
struct Sample {
    /// Kept rows in the order the sample uses (see `sort_rows_by`).
    rows: Vec<usize>,
    /// The model's terms as columns ([`terms::plan`]).
    plan: Plan,
    /// The categories of the categorical variables over all raw rows, by variable.
    categories: HashMap<String, Categories>,
    /// Columns computed or converted while selecting (terms such as `log(x)`, columns that
    /// needed a copy), over all raw rows, by term or variable name.
    owned: HashMap<String, Vec<f64>>,
    fes: Vec<FixedEffect>,
    clusters: Vec<ClusterVar>,
    nobs_raw: usize,
    dropped: Dropped,
}

/// The name a term's values are kept under: the variable for a bare variable, else the term.
fn key(t: &Term) -> String {
    match t.factors.as_slice() {
        [Factor::Var(v)] => v.clone(),
        _ => t.name(),
    }
}

/// The weights divided by their mean over the sample (as Stata does for aweights), so that no
/// sum or product of them leaves f64's range and nothing depends on their scale: an estimate
/// with weights × c equals the estimate with weights. Scaled by the largest weight first, so the
/// mean itself cannot overflow. Returns the weights and the mean they were divided by.
pub fn normalised(mut w: Vec<f64>) -> (Vec<f64>, f64) {
    let top = w.iter().copied().fold(0.0, f64::max);
    if w.is_empty() || !(top > 0.0) || !top.is_finite() {
        return (w, 1.0);
    }
    let mean = w.iter().map(|&x| x / top).sum::<f64>() / w.len() as f64;
    w.iter_mut().for_each(|x| *x = (*x / top) / mean);
    (w, mean * top)
}

/// Decide the estimation sample: missing and non-finite values, zero weights, singletons, the
/// row order, and the fixed-effect and cluster ids over it.
fn select(table: &Table, model: &Model, opts: &PrepareOptions) -> Result<Sample> {
    let n = table.nrows();
    let mut cols = Columns {
        table,
        numeric: HashMap::new(),
        codes: HashMap::new(),
        panel: None,
    };

    // What each term means as columns (numeric, or categories times a numeric part).
    let plan = terms::plan(table, model)?;
    // Raw variables: a NaN there means the value is missing.
    let mut missing = vec![false; n];
    if let Some(t) = plan.lagged() {
        let Some((id, time)) = &opts.panel else {
            return Err(Error::Usage(format!(
                "`{}` uses a panel operator: give the panel's unit and time as --panel ID,TIME",
                t.name()
            )));
        };
        cols.panel = Some(terms::panel::Panel::new(table, id, time)?);
    }
    let raw_vars: Vec<String> = {
        let mut v: Vec<String> = plan.numeric_row_vars();
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
    // Categorical variables: a missing category is a missing value.
    let categories: HashMap<String, Categories> = plan
        .categorical_vars()
        .par_iter()
        .map(|v| terms::categories(table, v).map(|c| (v.clone(), c)))
        .collect::<Result<_>>()?;
    for c in categories.values() {
        for (m, &code) in missing.iter_mut().zip(&c.codes) {
            *m |= code == MISSING_CODE;
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
    // (The numeric part of a categorical term, `x` in `industry:x`, is checked like a term.)
    for t in plan.all().filter_map(|p| p.numeric.as_ref()) {
        if !matches!(t.factors.as_slice(), [Factor::Var(_)]) && !cols.numeric.contains_key(&t.name()) {
            let v = cols.term(t)?.into_owned();
            cols.numeric.insert(t.name(), Cow::Owned(v));
        }
    }
    let column_of = |t: &Term| -> &[f64] { &cols.numeric[&key(t)] };
    let y = column_of(plan.lhs.numeric.as_ref().expect("a numeric outcome"));
    let x_raw: Vec<&[f64]> = plan
        .all()
        .skip(1)
        .filter_map(|p| p.numeric.as_ref())
        .map(column_of)
        .collect();
    // keep: inside the subset, no missing input and every term finite (chunks of rows in
    // parallel)
    let inside = opts.subset.as_ref().map(|s| s.rows(table)).transpose()?;
    let mut keep = vec![true; n];
    let mut dropped = Dropped::default();
    if let Some(inside) = &inside {
        for (k, &i) in keep.iter_mut().zip(inside) {
            *k = i;
        }
        dropped.subset = inside.iter().filter(|&&i| !i).count();
    }
    let chunk = 1 << 16;
    let counts: Vec<(usize, usize)> = keep
        .par_chunks_mut(chunk)
        .enumerate()
        .map(|(c, part)| {
            let (mut miss, mut nonfinite) = (0, 0);
            for (k, kept) in part.iter_mut().enumerate() {
                let i = c * chunk + k;
                if !*kept {
                    // outside the subset
                } else if missing[i] {
                    *kept = false;
                    miss += 1;
                } else if !y[i].is_finite() || x_raw.iter().any(|col| !col[i].is_finite()) {
                    *kept = false;
                    nonfinite += 1;
                }
            }
            (miss, nonfinite)
        })
        .collect();
    dropped.missing = counts.iter().map(|c| c.0).sum();
    dropped.nonfinite = counts.iter().map(|c| c.1).sum();

    if let Some(w) = &opts.weights {
        // loaded with the raw variables above
        let wv = &cols.numeric[w.as_str()];
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
    }

    check_values(&cols, (&model.lhs.name(), y), &keep, opts)?;

    if !opts.keep_singletons && !fe_codes.is_empty() {
        // A row with a MISSING_CODE is not kept (see `missing`), and `drop_singletons` reads the
        // codes of kept rows only, so the codes are passed as they are.
        let views: Vec<(&[u32], usize)> = fe_codes.iter().map(|(c, g)| (c.as_slice(), *g)).collect();
        dropped.singletons = drop_singletons(&views, &mut keep);
    }

    let nobs = keep.iter().filter(|&&k| k).count();
    if nobs == 0 {
        return Err(Error::NoObservations(format!(
            "all {n} rows of {} were dropped ({}{} with a missing value, {} non-finite, {} zero weight, {} singletons)",
            table.source(),
            match dropped.subset {
                0 => String::new(),
                k => format!("{k} outside --subset, "),
            },
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
    let owned = cols
        .numeric
        .into_iter()
        .filter_map(|(k, v)| match v {
            Cow::Owned(v) => Some((k, v)),
            Cow::Borrowed(_) => None,
        })
        .collect();
    Ok(Sample {
        rows,
        plan,
        categories,
        owned,
        fes,
        clusters,
        nobs_raw: n,
        dropped,
    })
}

/// The outcome meets `opts.outcome` and the `opts.positive` columns are positive on every kept
/// row; otherwise an error naming the column, the first row (1-based, as in the file) and its
/// value.
fn check_values(cols: &Columns, (y_name, y): (&str, &[f64]), keep: &[bool], opts: &PrepareOptions) -> Result<()> {
    let first_bad = |v: &[f64], bad: &dyn Fn(f64) -> bool| (0..v.len()).find(|&i| keep[i] && bad(v[i]));
    if opts.outcome != OutcomeRule::Any {
        if let Some(i) = first_bad(y, &|v| opts.outcome.broken_by(v).is_some()) {
            let rule = opts.outcome.broken_by(y[i]).unwrap_or_default();
            return Err(Error::column(
                y_name,
                format!("the outcome {rule}; row {} has {}", i + 1, y[i]),
            ));
        }
    }
    for name in &opts.positive {
        let v = cols
            .numeric
            .get(name.as_str())
            .expect("positive columns are loaded as extra columns");
        if let Some(i) = first_bad(v, &|x| !(x > 0.0)) {
            return Err(Error::column(
                name,
                format!("must be positive (an exposure is logged); row {} has {}", i + 1, v[i]),
            ));
        }
    }
    Ok(())
}

impl Sample {
    /// The sample's variables in its row order. `fetch` gives a raw column by name (borrowed
    /// from the table, or taken out of it); owned columns are reordered into reused buffers.
    fn gather<'t>(
        mut self,
        model: &Model,
        opts: &PrepareOptions,
        mut fetch: impl FnMut(&str) -> Result<Cow<'t, [f64]>>,
    ) -> Result<Design> {
        let plan = self.plan;
        // every slot of the design by key, in design order: the numeric column (or numeric
        // part) of each term
        let numeric_parts = |ps: &[TermPlan]| ps.iter().filter(|p| p.numeric.is_some()).count();
        let slots: Vec<String> = plan
            .all()
            .filter_map(|p| p.numeric.as_ref())
            .map(key)
            .chain(opts.weights.iter().cloned())
            .chain(opts.extra.iter().cloned())
            .collect();
        let mut unique: Vec<&String> = Vec::new();
        for k in &slots {
            if !unique.contains(&k) {
                unique.push(k);
            }
        }
        let sources = unique
            .iter()
            .map(|k| match self.owned.remove(k.as_str()) {
                Some(v) => Ok(Cow::Owned(v)),
                None => fetch(k),
            })
            .collect::<Result<Vec<_>>>()?;
        let mut gathered: HashMap<&str, Vec<f64>> = unique
            .iter()
            .map(|k| k.as_str())
            .zip(reorder(&self.rows, sources))
            .collect();
        // the last slot of a key takes its column, earlier ones (a variable used twice) copy it
        let mut take = |k: &String, later: &[String]| -> Vec<f64> {
            if later.contains(k) {
                gathered[k.as_str()].clone()
            } else {
                gathered.remove(k.as_str()).expect("every key gathered")
            }
        };
        let mut columns: Vec<Vec<f64>> = Vec::with_capacity(slots.len());
        for (i, k) in slots.iter().enumerate() {
            columns.push(take(k, &slots[i + 1..]));
        }
        let mut columns = columns.into_iter();
        let mut next = |count: usize| -> Vec<Vec<f64>> { columns.by_ref().take(count).collect() };
        let y = next(1).pop().expect("the outcome");
        let rhs_parts = next(numeric_parts(&plan.rhs));
        let endog_parts = next(numeric_parts(&plan.endogenous));
        let inst_parts = next(numeric_parts(&plan.instruments));
        let mut x_names = Vec::new();
        let mut x = Vec::new();
        if model.intercept {
            x_names.push("(Intercept)".to_string());
            x.push(vec![1.0; self.rows.len()]);
        }
        let rows = &self.rows;
        let categories = &self.categories;
        let columns_of = |ps: &[TermPlan], parts: Vec<Vec<f64>>| -> Result<(Vec<String>, Vec<Vec<f64>>)> {
            let mut parts = parts.into_iter();
            let (mut names, mut cols) = (Vec::new(), Vec::new());
            for p in ps {
                let part = if p.numeric.is_some() { parts.next() } else { None };
                if p.is_numeric() {
                    names.push(p.term.name());
                    cols.push(part.expect("a numeric term's column"));
                    continue;
                }
                let cats: Vec<&Categories> = p.codings.iter().map(|c| &categories[&c.var]).collect();
                let codes: Vec<Vec<u32>> = cats
                    .iter()
                    .map(|c| rows.iter().map(|&i| c.codes[i]).collect())
                    .collect();
                for (name, col) in terms::expand(p, &cats, &codes, part.as_deref())? {
                    names.push(name);
                    cols.push(col);
                }
            }
            Ok((names, cols))
        };
        let (names, cols) = columns_of(&plan.rhs, rhs_parts)?;
        x_names.extend(names);
        x.extend(cols);
        let (endog_names, endog_cols) = columns_of(&plan.endogenous, endog_parts)?;
        let (inst_names, inst_cols) = columns_of(&plan.instruments, inst_parts)?;
        let (weights, weight_scale) = match opts.weights {
            Some(_) => {
                let (w, scale) = normalised(next(1).pop().expect("the weights"));
                (Some(w), scale)
            }
            None => (None, 1.0),
        };
        let extra = next(opts.extra.len());
        Ok(Design {
            y_name: model.lhs.name(),
            y,
            endog_names,
            endog: endog_cols,
            inst_names,
            inst: inst_cols,
            x_names,
            x,
            intercept: model.intercept,
            weights,
            weight_scale,
            extra,
            fes: self.fes,
            clusters: self.clusters,
            nobs_raw: self.nobs_raw,
            dropped: self.dropped,
        })
    }
}

/// `out[i] = column[rows[i]]` for every column, in parallel over groups of columns. An owned
/// column's buffer receives the next column of its group, so reordering k owned columns
/// allocates one buffer per group instead of k (fresh pages cost more than the copy itself).
fn reorder(rows: &[usize], columns: Vec<Cow<'_, [f64]>>) -> Vec<Vec<f64>> {
    let per = columns.len().div_ceil(rayon::current_num_threads()).max(1);
    let mut inputs: Vec<Option<Cow<'_, [f64]>>> = columns.into_iter().map(Some).collect();
    let mut out: Vec<Vec<f64>> = vec![Vec::new(); inputs.len()];
    out.par_chunks_mut(per)
        .zip(inputs.par_chunks_mut(per))
        .for_each(|(outs, ins)| {
            let mut spare: Vec<f64> = Vec::new();
            for (o, input) in outs.iter_mut().zip(ins) {
                let column = input.take().expect("each column once");
                spare.clear();
                spare.extend(rows.iter().map(|&i| column[i]));
                *o = std::mem::take(&mut spare);
                if let Cow::Owned(v) = column {
                    spare = v;
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::*;

    /// A table with what every branch of the gather meets: nulls in f64 columns (NaN in the
    /// slot, as the readers make, and not, as other polars code makes), an integer regressor,
    /// a computed term, weights with a zero, an extra column that is also a regressor, IV.
    fn table(n: usize) -> Table {
        let f = |k: usize| (0..n).map(move |i| ((i * 7 + k * 13) % 23) as f64 / 5.0 + 0.1);
        let with_nulls = |k: usize, every: usize| {
            Float64Chunked::from_iter_options("".into(), f(k).enumerate().map(|(i, v)| (i % every != 3).then_some(v)))
        };
        let x1 = crate::data::csv::float_with_nulls("x1".into(), f(1).collect(), &[5, 40]);
        let cols: Vec<Column> = vec![
            Series::new("y".into(), f(0).collect::<Vec<_>>()).into(),
            x1.into_series().into(),
            with_nulls(2, 17).with_name("x2".into()).into_series().into(),
            Series::new("k".into(), (0..n as i64).map(|i| i % 5).collect::<Vec<_>>()).into(),
            Series::new("z".into(), f(3).collect::<Vec<_>>()).into(),
            Series::new("w".into(), (0..n).map(|i| (i % 9) as f64 / 4.0).collect::<Vec<_>>()).into(),
            Series::new("a".into(), (0..n as i64).map(|i| i % 11).collect::<Vec<_>>()).into(),
            Series::new("b".into(), (0..n as i64).map(|i| (i / 3) % 4).collect::<Vec<_>>()).into(),
        ];
        Table::new(DataFrame::new(n, cols).unwrap(), "t".into())
    }

    #[test]
    fn taking_the_columns_gives_the_borrowed_design() {
        let cases = [
            ("y ~ x1 + log(x2) + k | a + b", vec![]),
            ("y ~ x1 + x2:k | a^b", vec!["x1".to_string()]),
            ("y ~ k + x2 | a | x1 ~ z", vec![]),
            ("y ~ x1 + x2", vec!["k".to_string()]),
        ];
        for (formula, extra) in cases {
            let model = crate::formula::parse(formula).unwrap();
            let opts = PrepareOptions {
                weights: Some("w".into()),
                clusters: vec!["b".into()],
                extra,
                ..Default::default()
            };
            let t = table(200);
            let want = prepare(&t, &model, &opts).unwrap();
            let mut taken = table(200);
            let got = prepare_taking(&mut taken, &model, &opts).unwrap();
            let cols = |d: &Design| {
                let mut c = vec![d.y.clone()];
                c.extend(d.x.iter().chain(&d.endog).chain(&d.inst).chain(&d.extra).cloned());
                c.extend(d.weights.clone());
                c
            };
            assert!(want.dropped.missing > 0 && want.dropped.zero_weight > 0, "{formula}");
            assert_eq!(cols(&got), cols(&want), "{formula}");
            assert_eq!(
                (&got.x_names, &got.endog_names, &got.inst_names),
                (&want.x_names, &want.endog_names, &want.inst_names)
            );
            assert_eq!(got.dropped, want.dropped);
            let ids = |d: &Design| {
                d.fes
                    .iter()
                    .map(|f| f.ids.clone())
                    .chain(d.clusters.iter().map(|c| c.ids.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(ids(&got), ids(&want), "{formula}");
            // the sample's first row is the table's row that sorts first: check against the raw table
            let raw = t.numeric("y").unwrap();
            assert!(want.y.iter().all(|v| raw.contains(v)));
        }
    }

    #[test]
    fn taken_and_borrowed_columns_are_the_readers_buffers() {
        let mut t = table(100);
        // x1's null slots hold NaN: borrowed as it is; x2's do not: converted
        let x1 = t.numeric_cow("x1").unwrap();
        assert!(matches!(x1, Cow::Borrowed(_)) && x1[5].is_nan() && x1[40].is_nan());
        let x2 = t.numeric_cow("x2").unwrap();
        assert!(matches!(x2, Cow::Owned(_)) && x2[3].is_nan() && x2[20].is_nan() && !x2[4].is_nan());
        let before = t.numeric_cow("x1").unwrap().as_ptr();
        let taken = t.take_numeric("x1").unwrap();
        assert_eq!(taken.as_ptr(), before, "the buffer is handed over, not copied");
        assert!(taken[5].is_nan() && !taken[6].is_nan());
        let x2 = t.take_numeric("x2").unwrap();
        assert!(x2[3].is_nan() && x2[20].is_nan() && !x2[4].is_nan());
        assert!(t.numeric("x1").is_err(), "a taken column leaves the table");
        assert_eq!(t.take_numeric("k").unwrap()[7], 2.0);
        assert!(t.numeric("k").is_ok(), "a converted column stays");
    }

    #[test]
    fn reorder_reuses_owned_buffers_in_row_order() {
        let rows = vec![4, 0, 2];
        let cols: Vec<Cow<[f64]>> = (0..5)
            .map(|k| Cow::Owned((0..6).map(|i| (10 * k + i) as f64).collect()))
            .chain(std::iter::once(Cow::Borrowed(&[7.0, 8.0, 9.0, 10.0, 11.0, 12.0][..])))
            .collect();
        let out = reorder(&rows, cols);
        for (k, c) in out.iter().enumerate().take(5) {
            assert_eq!(c, &vec![(10 * k + 4) as f64, (10 * k) as f64, (10 * k + 2) as f64]);
        }
        assert_eq!(out[5], vec![11.0, 7.0, 9.0]);
    }
}
