//! What the OLS driver ([`super::fit`]), its device path ([`super::resident`]) and IV-2SLS
//! ([`super::iv`]) share: how to estimate ([`FitOptions`]), centred sums of squares, the
//! absorbed degrees of freedom of a design, what a solver hands to the shared tail of a fit,
//! and the note on a column whose demeaning did not converge.

use std::time::Instant;

use super::ols;
use super::result::{cluster_info, fixed_effect_info, Coefficient, DroppedRegressor, FitResult, IvDiagnostics};
use super::vcov::{self, Ssc, VcovSpec};
use crate::data::prepare::Design;
use crate::demean::{DemeanOptions, Demeaner};
use crate::error::{Error, Result};
use crate::fe::absorbed_dof;

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
    /// Only the rows where this holds are used (`--subset`, fixest's `subset`).
    pub subset: Option<crate::data::Subset>,
    /// The unit and time of the panel operators (`--panel ID,TIME`).
    pub panel: Option<(String, String)>,
    /// `--family`: gaussian (OLS), poisson or logit (IRLS, [`super::glm`]).
    pub family: super::glm::Family,
    /// A GLM's offset column (on the linear predictor's scale) and exposure column (logged).
    pub offset: Option<String>,
    pub exposure: Option<String>,
    /// IRLS: tolerance on the relative change of the deviance, and the iteration limit.
    pub glm_tol: f64,
    pub glm_iter: usize,
    /// Which separation checks run before a Poisson or logit fit.
    pub separation: super::glm::SeparationChecks,
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
            subset: None,
            panel: None,
            family: Default::default(),
            offset: None,
            exposure: None,
            glm_tol: 1e-8,
            glm_iter: 100,
            separation: Default::default(),
        }
    }
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

/// Σ w (x − x̄)² (x̄ the weighted mean; 0 when `centre` is false): the total sum of squares, in
/// one blocked pass ([`crate::linalg::passes::moments`]).
pub(crate) fn weighted_centred_ss(x: &[f64], w: Option<&[f64]>, centre: bool) -> f64 {
    let m = crate::linalg::passes::moments(&[x], w)[0];
    if centre {
        m.centred_ss
    } else {
        m.sum_sq
    }
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
    let cluster_ids: Vec<&[u32]> = design.clusters.iter().map(|c| c.ids.as_slice()).collect();
    if cluster_ids.is_empty() {
        let dof = absorbed_dof(&design.fes, &[], rule);
        return (dof.clone(), dof);
    }
    // each counts connected components over the whole sample: side by side
    rayon::join(
        || absorbed_dof(&design.fes, &[], rule),
        || absorbed_dof(&design.fes, &cluster_ids, rule),
    )
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

/// A fit's own numbers; [`assemble`] adds what OLS and IV report alike.
pub(crate) struct Own {
    pub nobs: usize,
    pub coefficients: Vec<Coefficient>,
    /// R², adjusted R², within R² (with fixed effects), RMSE, RSS, TSS.
    pub r2: f64,
    pub adj_r2: f64,
    pub within_r2: Option<f64>,
    pub rmse: f64,
    pub rss: f64,
    pub tss: f64,
    pub collinear: Vec<DroppedRegressor>,
    pub vcov_matrix: Vec<Vec<f64>>,
    pub notes: Vec<String>,
    pub iv: Option<IvDiagnostics>,
}

/// The demeaning run behind a fit (what `FitResult` reports about it).
pub(crate) struct Run<'a> {
    iterations: usize,
    converged: bool,
    method: (crate::demean::Method, f64),
    has_fe: bool,
    demeaner: &'a dyn Demeaner,
    t0: Instant,
}

impl<'a> Run<'a> {
    pub fn new(
        iterations: usize,
        converged: bool,
        method: (crate::demean::Method, f64),
        has_fe: bool,
        demeaner: &'a dyn Demeaner,
        t0: Instant,
    ) -> Self {
        Run {
            iterations,
            converged,
            method,
            has_fe,
            demeaner,
            t0,
        }
    }
}

/// The [`FitResult`] of `formula` on `design`: the estimator's own numbers, and the sample,
/// effects, clusters, degrees of freedom, variance and demeaning run filled the same way for
/// every estimator.
#[allow(clippy::too_many_arguments)]
pub(crate) fn assemble(
    formula: &str,
    design: &Design,
    opts: &FitOptions,
    dof_vcov: &crate::fe::AbsorbedDof,
    df_resid: f64,
    v: &vcov::Vcov,
    run: Run,
    own: Own,
) -> FitResult {
    let (has_fe, method) = (run.has_fe, run.method);
    FitResult {
        formula: formula.to_string(),
        depvar: design.y_name.clone(),
        nobs: own.nobs,
        nobs_raw: design.nobs_raw,
        coefficients: own.coefficients,
        r2: own.r2,
        adj_r2: own.adj_r2,
        within_r2: own.within_r2,
        rmse: own.rmse,
        rss: own.rss,
        tss: own.tss,
        vcov: opts.vcov.describe(),
        ssc: opts.ssc,
        weights: opts.weights.clone(),
        fixed_effects: fixed_effect_info(dof_vcov),
        clusters: cluster_info(design),
        dropped: design.dropped.clone(),
        collinear: own.collinear,
        df_absorbed: dof_vcov.df_a,
        df_resid,
        df_t: v.df_t,
        iterations: run.iterations,
        converged: run.converged,
        solver: if has_fe { method.0.solver } else { "none".into() },
        preconditioner: method.0.preconditioner,
        demean_residual: method.1.is_finite().then_some(method.1),
        backend: if has_fe {
            run.demeaner.name()
        } else {
            "cpu (no fixed effects)".into()
        },
        df64_selftest: if has_fe { run.demeaner.df64_selftest() } else { None },
        vcov_matrix: own.vcov_matrix,
        eigen_fixed: v.eigen_fixed,
        notes: own.notes,
        seconds: run.t0.elapsed().as_secs_f64(),
        iv: own.iv,
        family: opts.family,
        glm: None,
        sample: None,
    }
}
