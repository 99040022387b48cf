//! The estimation driver: design → demean → OLS → vcov → [`FitResult`], the one result type
//! every report writer and the JSON contract read.

use std::time::Instant;

use serde::Serialize;

use super::finite;
use super::ols::{self, DroppedRegressor};
use super::vcov::{self, Ssc, VcovInput, VcovSpec};
use crate::data::prepare::{prepare, Design, Dropped, PrepareOptions};
use crate::data::Table;
use crate::demean::{Absorb, DemeanOptions, Demeaner};
use crate::error::{Error, Result};
use crate::fe::dof::effects_to_project;
use crate::fe::{absorbed_dof, FixedEffect};
use crate::formula::Model;
use crate::stats::t_two_sided_p;

/// How to estimate a model.
#[derive(Debug, Clone)]
pub struct FitOptions {
    pub vcov: VcovSpec,
    pub weights: Option<String>,
    pub ssc: Ssc,
    pub demean: DemeanOptions,
    /// fixest's `collin.tol`.
    pub collin_tol: f64,
    pub keep_singletons: bool,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            vcov: VcovSpec::Iid,
            weights: None,
            ssc: Ssc::Reghdfe,
            demean: DemeanOptions::default(),
            collin_tol: 1e-10,
            keep_singletons: false,
        }
    }
}

/// One row of the coefficient table.
#[derive(Debug, Clone, Serialize)]
pub struct Coefficient {
    pub name: String,
    pub estimate: f64,
    pub std_error: f64,
    pub t: f64,
    pub p: f64,
}

/// A fixed effect as reported: levels in the sample and how many were counted as redundant.
#[derive(Debug, Clone, Serialize)]
pub struct FixedEffectInfo {
    pub name: String,
    pub levels: usize,
    pub redundant: usize,
    pub nested: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterInfo {
    pub name: String,
    pub clusters: usize,
}

/// Everything one estimation produced. Serialised as one element of `models` in
/// `fegpu fit --format json`; the field names are a contract.
#[derive(Debug, Clone, Serialize)]
pub struct FitResult {
    pub formula: String,
    pub depvar: String,
    pub nobs: usize,
    pub nobs_raw: usize,
    pub coefficients: Vec<Coefficient>,
    pub r2: f64,
    pub adj_r2: f64,
    pub within_r2: Option<f64>,
    pub rmse: f64,
    pub rss: f64,
    pub tss: f64,
    pub vcov: String,
    pub ssc: Ssc,
    pub weights: Option<String>,
    pub fixed_effects: Vec<FixedEffectInfo>,
    pub clusters: Vec<ClusterInfo>,
    pub dropped: Dropped,
    pub collinear: Vec<DroppedRegressor>,
    /// Absorbed degrees of freedom used by the variance (after nesting in clusters).
    pub df_absorbed: usize,
    /// `N − K − df_absorbed`.
    pub df_resid: f64,
    /// Degrees of freedom of the t tests.
    pub df_t: f64,
    pub iterations: usize,
    pub converged: bool,
    /// How the fixed effects were projected out (`exact: …`, `cg`, `alternating projections`).
    pub solver: String,
    /// The preconditioners CG used, in the order it climbed them (`jacobi → schwarz`).
    pub preconditioner: Option<String>,
    /// Largest final relative residual of the fixed-effect normal equations,
    /// ‖D'W(v − Dα)‖ / ‖D'Wv‖, over the demeaned columns (0 when exact, null when unmeasured).
    pub demean_residual: Option<f64>,
    pub backend: String,
    /// The df64 self-test of the GPU that demeaned ("passed", "failed" — then native f64 ran —
    /// or "not run"); absent on the CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub df64_selftest: Option<crate::gpu::selftest::Status>,
    /// Variance matrix of the reported coefficients, row by row.
    pub vcov_matrix: Vec<Vec<f64>>,
    pub eigen_fixed: bool,
    /// Warnings (non-convergence, dropped regressors) in plain words.
    pub notes: Vec<String>,
    /// Wall time of the estimation proper (prepare to vcov), seconds.
    pub seconds: f64,
    /// IV-2SLS diagnostics (first stages, weak identification, overidentification).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iv: Option<super::iv::IvDiagnostics>,
}

/// The per-effect absorbed-dof table as reported.
pub(crate) fn fixed_effect_info(dof: &crate::fe::AbsorbedDof) -> Vec<FixedEffectInfo> {
    dof.per_fe
        .iter()
        .map(|d| FixedEffectInfo {
            name: d.name.clone(),
            levels: d.levels,
            redundant: d.redundant,
            nested: d.nested,
        })
        .collect()
}

/// Cluster counts as reported.
pub(crate) fn cluster_info(design: &Design) -> Vec<ClusterInfo> {
    design
        .clusters
        .iter()
        .map(|c| ClusterInfo {
            name: c.name.clone(),
            clusters: c.levels,
        })
        .collect()
}

/// The warning for a column whose demeaning did not converge (printed in every format).
pub(crate) fn not_converged_note(name: &str, dm: &crate::demean::Demeaned, o: &crate::demean::DemeanOptions) -> String {
    let residual = if dm.residual.is_finite() {
        format!(", final normal-equation residual {:.1e}", dm.residual)
    } else {
        String::new()
    };
    format!(
        "WARNING: demeaning of `{name}` did not converge ({} in {} iterations, tolerance {:e}{residual}); its estimates may be inaccurate",
        dm.method.solver, dm.iterations, o.tol
    )
}

/// Prepare the sample of `model` from `table` and estimate it.
pub fn fit(table: &Table, model: &Model, opts: &FitOptions, demeaner: &dyn Demeaner) -> Result<FitResult> {
    let t0 = Instant::now();
    let design = prepare_for(table, model, opts)?;
    estimate_prepared(design, model, opts, demeaner, t0)
}

/// [`fit`] for a command's last model: the table is dropped once the sample is prepared, so
/// the raw data frame is not held while demeaning (a third of the peak memory of a large fit).
pub fn fit_last(table: Table, model: &Model, opts: &FitOptions, demeaner: &dyn Demeaner) -> Result<FitResult> {
    let t0 = Instant::now();
    let design = prepare_for(&table, model, opts)?;
    // freeing a 10-million-row frame takes a noticeable moment: do it beside the estimation
    std::thread::spawn(move || drop(table));
    estimate_prepared(design, model, opts, demeaner, t0)
}

fn prepare_for(table: &Table, model: &Model, opts: &FitOptions) -> Result<Design> {
    let popts = PrepareOptions {
        weights: opts.weights.clone(),
        clusters: opts.vcov.cluster_vars().to_vec(),
        keep_singletons: opts.keep_singletons,
        ..Default::default()
    };
    prepare(table, model, &popts)
}

fn estimate_prepared(
    mut design: Design,
    model: &Model,
    opts: &FitOptions,
    demeaner: &dyn Demeaner,
    t0: Instant,
) -> Result<FitResult> {
    crate::timing::lap("prepare");
    let mut r = if model.iv.is_some() {
        super::iv::fit_iv_design(&design, &model.formula, opts, demeaner)?
    } else {
        // the design's own y and x are demeaned in place of copies
        let y = std::mem::take(&mut design.y);
        let x = std::mem::take(&mut design.x);
        fit_columns(&design, y, x, &model.formula, opts, demeaner)?
    };
    r.seconds = t0.elapsed().as_secs_f64();
    r.notes.splice(0..0, model.notes.iter().cloned());
    Ok(r)
}

pub(crate) fn weighted_centred_ss(x: &[f64], w: Option<&[f64]>, centre: bool) -> f64 {
    let (sw, sx) = match w {
        Some(w) => (w.iter().sum::<f64>(), x.iter().zip(w).map(|(a, b)| a * b).sum::<f64>()),
        None => (x.len() as f64, x.iter().sum::<f64>()),
    };
    let m = if centre && sw > 0.0 { sx / sw } else { 0.0 };
    match w {
        Some(w) => x.iter().zip(w).map(|(a, b)| b * (a - m) * (a - m)).sum(),
        None => x.iter().map(|a| (a - m) * (a - m)).sum(),
    }
}

/// Estimate a prepared design (the CPU/GPU-independent part of [`fit`]).
pub fn fit_design(design: &Design, formula: &str, opts: &FitOptions, demeaner: &dyn Demeaner) -> Result<FitResult> {
    fit_columns(design, design.y.clone(), design.x.clone(), formula, opts, demeaner)
}

/// What a solver hands to the shared tail of [`fit_columns`]: the OLS solution, its variance,
/// the sums of squares and how the demeaning went.
pub(crate) struct Solved {
    pub est: ols::Ols,
    pub v: vcov::Vcov,
    pub rss: f64,
    /// Σ w ỹ² of the fully demeaned y (with fixed effects).
    pub within_ss: Option<f64>,
    pub iterations: usize,
    pub converged: bool,
    pub method: (crate::demean::Method, f64),
    pub notes: Vec<String>,
}

/// Degrees of freedom of a fit of `n` observations (the design's columns may have been
/// taken) with `k` kept regressors: the absorbed ones (with the
/// clusters' nesting rule for the variance), and N − K − A for the variance and for R².
pub(crate) struct Degrees {
    pub dof_vcov: crate::fe::AbsorbedDof,
    pub df_resid: f64,
    pub df_resid_full: f64,
}

pub(crate) fn degrees(design: &Design, n: usize, k: usize, opts: &FitOptions) -> Degrees {
    let n = n as f64;
    let (dof_full, dof_vcov) = absorbed(design, opts);
    Degrees {
        df_resid_full: n - k as f64 - dof_full.df_a as f64,
        df_resid: n - k as f64 - dof_vcov.df_a as f64,
        dof_vcov,
    }
}

/// Absorbed degrees of freedom of the design's effects: for R² (no clusters) and for the
/// variance (effects nested in a cluster count as in `--ssc`'s rule).
pub(crate) fn absorbed(design: &Design, opts: &FitOptions) -> (crate::fe::AbsorbedDof, crate::fe::AbsorbedDof) {
    let rule = opts.ssc.dof_rule();
    let dof_full = absorbed_dof(&design.fes, &[], rule);
    let cluster_ids: Vec<&[u32]> = design.clusters.iter().map(|c| c.ids.as_slice()).collect();
    let dof_vcov = if cluster_ids.is_empty() {
        dof_full.clone()
    } else {
        absorbed_dof(&design.fes, &cluster_ids, rule)
    };
    (dof_full, dof_vcov)
}

/// The OLS solution's notes, or the error when no regressor is left.
pub(crate) fn check_kept(design: &Design, est: &ols::Ols, notes: &mut Vec<String>) -> Result<()> {
    for d in &est.dropped {
        notes.push(format!("`{}` was removed: {}", d.name, d.reason));
    }
    if est.kept.is_empty() && !design.x_names.is_empty() {
        let names: Vec<String> = est
            .dropped
            .iter()
            .map(|d| format!("`{}` ({})", d.name, d.reason))
            .collect();
        return Err(Error::Estimation(format!(
            "no regressor is left to estimate: {}",
            names.join(", ")
        )));
    }
    Ok(())
}

/// The demeaned `[y, x…]` must be finite (an overflow inside the demeaner names the column).
fn check_demeaned(design: &Design, cols: &[Vec<f64>], w: Option<&[f64]>) -> Result<()> {
    let names = std::iter::once(&design.y_name).chain(&design.x_names);
    names
        .zip(cols)
        .try_for_each(|(name, c)| finite::check_demeaned(name, c, w))
}

/// Demean on the host side of the [`Demeaner`], solve OLS on the columns and form the variance.
fn solve_host(
    design: &Design,
    y: Vec<f64>,
    x: Vec<Vec<f64>>,
    opts: &FitOptions,
    demeaner: &dyn Demeaner,
) -> Result<(Solved, Degrees)> {
    let w = design.weights.as_deref();
    let has_fe = !design.fes.is_empty();
    let mut notes = Vec::new();
    let (yt, xt, iterations, converged, raw_ss, method) = if has_fe {
        let raw_ss: Vec<f64> = x.iter().map(|c| weighted_centred_ss(c, w, true)).collect();
        let project: Vec<&FixedEffect> = effects_to_project(&design.fes)
            .into_iter()
            .map(|k| &design.fes[k])
            .collect();
        let absorb = Absorb::new(project, w);
        let mut cols = Vec::with_capacity(x.len() + 1);
        cols.push(y);
        cols.extend(x);
        let dm = demeaner.demean(&absorb, cols, &opts.demean)?;
        crate::timing::lap("demean");
        check_demeaned(design, &dm.columns, w)?;
        for &c in &dm.not_converged {
            let name = if c == 0 { &design.y_name } else { &design.x_names[c - 1] };
            notes.push(not_converged_note(name, &dm, &opts.demean));
        }
        let converged = dm.not_converged.is_empty();
        let method = (dm.method.clone(), dm.residual);
        let mut it = dm.columns.into_iter();
        let yt = it.next().unwrap();
        (
            yt,
            it.collect::<Vec<_>>(),
            dm.iterations,
            converged,
            Some(raw_ss),
            method,
        )
    } else {
        (y, x, 0, true, None, (Default::default(), 0.0))
    };
    let est = ols::solve_checked(&design.x_names, &xt, &yt, w, raw_ss.as_deref(), opts.collin_tol)?;
    crate::timing::lap("estimate");
    check_kept(design, &est, &mut notes)?;
    let deg = degrees(design, yt.len(), est.kept.len(), opts);
    let kept_x: Vec<&[f64]> = est.kept.iter().map(|&j| xt[j].as_slice()).collect();
    let v = vcov::compute(
        &opts.vcov,
        &VcovInput {
            x: kept_x,
            resid: &est.resid,
            weights: w,
            bread: &est.bread,
            df_resid: deg.df_resid,
        },
        &design.clusters,
    )?;
    crate::timing::lap("variance");
    let rss: f64 = match w {
        Some(w) => est.resid.iter().zip(w).map(|(e, w)| w * e * e).sum(),
        None => est.resid.iter().map(|e| e * e).sum(),
    };
    let within_ss = has_fe.then(|| weighted_centred_ss(&yt, w, false));
    let solved = Solved {
        est,
        v,
        rss,
        within_ss,
        iterations,
        converged,
        method,
        notes,
    };
    Ok((solved, deg))
}

/// [`fit_design`] with the design's `y` and `x` passed by value (`design.y`/`design.x` are not
/// read), so that they are demeaned without a copy.
fn fit_columns(
    design: &Design,
    y: Vec<f64>,
    x: Vec<Vec<f64>>,
    formula: &str,
    opts: &FitOptions,
    demeaner: &dyn Demeaner,
) -> Result<FitResult> {
    let t0 = Instant::now();
    let n = y.len();
    let w = design.weights.as_deref();
    let has_fe = !design.fes.is_empty();
    let centred = has_fe || design.intercept;
    let names = std::iter::once(&design.y_name).chain(&design.x_names);
    let cols = std::iter::once(y.as_slice()).chain(x.iter().map(|c| c.as_slice()));
    finite::check_weights(opts.weights.as_deref(), w)?;
    finite::check_inputs(names.map(|s| s.as_str()).zip(cols), w)?;
    let tss = weighted_centred_ss(&y, w, centred);
    crate::timing::lap("prepare");
    let (solved, deg) = match super::resident::solve(design, &y, &x, opts, demeaner)? {
        Some(s) => s,
        None => solve_host(design, y, x, opts, demeaner)?,
    };
    let Solved {
        est,
        v,
        rss,
        within_ss,
        iterations,
        converged,
        method,
        mut notes,
    } = solved;
    let Degrees {
        dof_vcov,
        df_resid,
        df_resid_full,
    } = deg;
    let k = est.kept.len();
    if opts.ssc == Ssc::Fixest && design.dropped.singletons > 0 {
        notes.push(format!(
            "{} singleton observations were dropped (reghdfe's rule); fixest keeps them by default, so N and the standard errors differ from fixest's — use --keep-singletons to match it",
            design.dropped.singletons
        ));
    }
    if v.eigen_fixed {
        notes.push("the multiway cluster variance was not positive semi-definite; negative eigenvalues were set to zero (Cameron, Gelbach & Miller 2011)".into());
    }

    let r2 = 1.0 - rss / tss;
    let within_r2 = within_ss.map(|ss| 1.0 - rss / ss);
    let adj_r2 = if centred {
        1.0 - (1.0 - r2) * (n as f64 - 1.0) / df_resid_full
    } else {
        1.0 - (1.0 - r2) * n as f64 / df_resid_full
    };
    let rmse = match opts.ssc {
        Ssc::Reghdfe => (rss / df_resid_full).sqrt(),
        Ssc::Fixest => (rss / n as f64).sqrt(),
    };

    let coefficients = est
        .kept
        .iter()
        .enumerate()
        .map(|(a, &j)| {
            let se = v.matrix.get(a, a).max(0.0).sqrt();
            let t = est.beta[a] / se;
            Coefficient {
                name: design.x_names[j].clone(),
                estimate: est.beta[a],
                std_error: se,
                t,
                p: t_two_sided_p(t, v.df_t),
            }
        })
        .collect();
    let vcov_matrix = (0..k).map(|a| (0..k).map(|b| v.matrix.get(a, b)).collect()).collect();

    let r = FitResult {
        formula: formula.to_string(),
        depvar: design.y_name.clone(),
        nobs: n,
        nobs_raw: design.nobs_raw,
        coefficients,
        r2,
        adj_r2,
        within_r2,
        rmse,
        rss,
        tss,
        vcov: opts.vcov.describe(),
        ssc: opts.ssc,
        weights: opts.weights.clone(),
        fixed_effects: fixed_effect_info(&dof_vcov),
        clusters: cluster_info(design),
        dropped: design.dropped.clone(),
        collinear: est.dropped.clone(),
        df_absorbed: dof_vcov.df_a,
        df_resid,
        df_t: v.df_t,
        iterations,
        converged,
        solver: if has_fe { method.0.solver } else { "none".into() },
        preconditioner: method.0.preconditioner,
        demean_residual: method.1.is_finite().then_some(method.1),
        backend: if has_fe {
            demeaner.name()
        } else {
            "cpu (no fixed effects)".into()
        },
        df64_selftest: if has_fe { demeaner.df64_selftest() } else { None },
        vcov_matrix,
        eigen_fixed: v.eigen_fixed,
        notes,
        seconds: t0.elapsed().as_secs_f64(),
        iv: None,
    };
    finite::check_result(&r)?;
    crate::timing::lap("estimate");
    Ok(r)
}
