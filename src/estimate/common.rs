//! What the OLS driver ([`super::fit`]), its device path ([`super::resident`]) and IV-2SLS
//! ([`super::iv`]) share: how to estimate ([`FitOptions`]), centred sums of squares, the
//! absorbed degrees of freedom of a design, what a solver hands to the shared tail of a fit,
//! and the note on a column whose demeaning did not converge.

use super::ols;
use super::vcov::{self, Ssc, VcovSpec};
use crate::data::prepare::Design;
use crate::demean::DemeanOptions;
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

/// Σ w (x − x̄)² (x̄ the weighted mean; 0 when `centre` is false): the total sum of squares.
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
