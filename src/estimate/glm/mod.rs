//! Generalised linear models with fixed effects: Poisson (PPML) and logit, as fixest's
//! `fepois`/`feglm` and Stata's ppmlhdfe.
//!
//! The driver [`fit_glm`] takes a prepared design and runs: outcome checks → separation
//! ([`separation`]: fixed-effect levels pinned at a bound, then the iterative rectifier for
//! separation by regressors and effects together; separated rows leave the design) → IRLS
//! ([`irls`], one weighted demeaning per iteration through the shared [`Demeaner`]) → the
//! variance from the last weighted solve (bread `(X̃'WX̃)⁻¹`, scores `W ẽ x̃`) → the statistics
//! (deviance, log-likelihood, pseudo R²) in a [`FitResult`] with a [`GlmStats`] block.
//!
//! Small-sample conventions (`--ssc`), z statistics and normal p-values under both:
//! * `fixest` (fepois): iid `(N−1)/(N−K)·B`; hetero `N/(N−K)·B M B`; cluster
//!   `(N−1)/(N−K)·G/(G−1)·B M B`, K counting the fixed effects' levels as fixest does;
//! * `reghdfe` (the default, ppmlhdfe's): iid `B`; hetero `N/(N−1)·B M B`; cluster
//!   `G/(G−1)·B M B` — no K term.
//!
//! Under iid the bread is in the user's weight units (weights count as frequencies, as in
//! fixest and R's `glm`): scaling the weights scales that variance; the sandwich estimators do
//! not depend on the weights' scale.

pub mod family;
pub mod irls;
pub mod separation;

use std::time::Instant;

use serde::Serialize;

use super::common::{assemble, degrees, FitOptions, Own, Run};
use super::finite;
use super::result::{Coefficient, FitResult};
use super::vcov::{self, Ssc, VcovInput, VcovSpec};
use crate::data::prepare::Design;
use crate::demean::Demeaner;
use crate::error::{Error, Result};
use crate::stats::normal_two_sided_p;
pub use family::Family;

/// Which separation checks run (`--separation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeparationChecks {
    /// Fixed-effect levels whose outcomes pin the mean at a bound (recursive).
    pub fe: bool,
    /// The iterative rectifier (Poisson): separation by regressors and effects together.
    pub relu: bool,
}

impl Default for SeparationChecks {
    fn default() -> Self {
        SeparationChecks { fe: true, relu: true }
    }
}

impl SeparationChecks {
    /// `fe,relu` (default), `fe`, `relu` or `none`.
    pub fn parse(s: &str) -> Result<Self> {
        let mut c = SeparationChecks { fe: false, relu: false };
        for part in s.split(',').map(str::trim) {
            match part {
                "fe" => c.fe = true,
                "relu" | "ir" => c.relu = true,
                "none" => {}
                _ => {
                    return Err(Error::Usage(format!(
                        "unknown --separation check `{part}` (expected fe, relu, fe,relu or none)"
                    )))
                }
            }
        }
        Ok(c)
    }
}

/// What a GLM reports beyond a linear fit (flattened into the model's JSON object).
#[derive(Debug, Clone, Serialize)]
pub struct GlmStats {
    pub deviance: f64,
    /// Deviance of the model with an intercept (and the offset) only.
    pub null_deviance: f64,
    pub loglik: f64,
    pub ll_null: f64,
    /// McFadden's 1 − loglik/ll_null (fixest's `pr2`).
    pub pseudo_r2: f64,
    /// Separated observations removed (also in `dropped.separated`).
    pub separated: usize,
    /// IRLS iterations.
    pub irls_iterations: usize,
    pub offset: Option<String>,
    pub exposure: Option<String>,
}

/// Estimate a prepared design by IRLS. `design.extra` holds the offset then the exposure
/// columns when `opts` names them.
pub fn fit_glm(mut design: Design, formula: &str, opts: &FitOptions, demeaner: &dyn Demeaner) -> Result<FitResult> {
    let t0 = Instant::now();
    let family = opts.family;
    if !design.endog.is_empty() {
        return Err(Error::Usage(format!(
            "--family {}: instrumental variables are estimated for linear models only",
            family.name()
        )));
    }
    check_outcomes(&design, family)?;
    let mut notes = Vec::new();
    separate(&mut design, opts, demeaner, &mut notes)?;
    let offset = offset_of(&design, opts);
    let io = irls::IrlsOptions {
        family,
        tol: opts.glm_tol,
        max_iter: opts.glm_iter,
        demean: opts.demean,
        collin_tol: opts.collin_tol,
    };
    let fit = irls::irls(&design, offset.as_deref(), &io, demeaner)?;
    crate::timing::lap("estimate");
    notes.extend(fit_notes(&fit, opts));
    if fit.est.kept.is_empty() && !design.x_names.is_empty() {
        return Err(Error::Estimation(
            "no regressor is left to estimate: all were removed as collinear".into(),
        ));
    }
    let n = design.nobs();
    let v = glm_vcov(&design, &fit, opts)?;
    crate::timing::lap("variance");
    let coefficients = fit
        .est
        .kept
        .iter()
        .enumerate()
        .map(|(a, &j)| {
            let se = v.0.matrix.get(a, a).max(0.0).sqrt();
            let z = fit.est.beta[a] / se;
            Coefficient {
                name: design.x_names[j].clone(),
                estimate: fit.est.beta[a],
                std_error: se,
                t: z,
                p: normal_two_sided_p(z),
            }
        })
        .collect();
    let k = fit.est.kept.len();
    let vcov_matrix = (0..k).map(|a| (0..k).map(|b| v.0.matrix.get(a, b)).collect()).collect();
    let stats = statistics(&design, &fit, offset.as_deref(), opts);
    let w = design.weights.as_deref();
    let wi = |i: usize| w.map_or(1.0, |w| w[i]);
    let rss: f64 = (0..n).map(|i| wi(i) * (design.y[i] - fit.mu[i]).powi(2)).sum();
    let tss = super::common::weighted_centred_ss(&design.y, w, true);
    let (rss, tss) = finite::in_weight_units(opts.weights.as_deref(), design.weight_scale, rss, tss)?;
    let own = Own {
        nobs: n,
        coefficients,
        r2: f64::NAN,
        adj_r2: f64::NAN,
        within_r2: None,
        rmse: (rss / n as f64).sqrt(),
        rss,
        tss,
        collinear: fit.dropped.clone(),
        vcov_matrix,
        notes,
        iv: None,
    };
    let has_fe = !design.fes.is_empty();
    let method = fit
        .last_demean
        .as_ref()
        .map(|d| (d.method.clone(), d.residual))
        .unwrap_or_default();
    let demean_iters = fit.last_demean.as_ref().map_or(0, |d| d.iterations);
    let demean_ok = fit.last_demean.as_ref().is_none_or(|d| d.not_converged.is_empty());
    let run = Run::new(demean_iters, fit.converged && demean_ok, method, has_fe, demeaner, t0);
    let mut r = assemble(formula, &design, opts, &v.1, v.2, &v.0, run, own);
    r.df_t = f64::INFINITY;
    r.family = family;
    r.glm = Some(stats);
    finite::check_result(&r)?;
    Ok(r)
}

/// The notes of a GLM fit: removed regressors, and WARNINGs for IRLS or the last demeaning not
/// converging and for means at the family's bound.
fn fit_notes(fit: &irls::Irls, opts: &FitOptions) -> Vec<String> {
    let mut out = Vec::new();
    for d in &fit.dropped {
        out.push(format!("`{}` was removed: {}", d.name, d.reason));
    }
    if !fit.converged {
        out.push(format!(
            "WARNING: IRLS did not converge in {} iterations (deviance {:.10e}); the estimates may be inaccurate — raise --glm-iter",
            fit.iterations, fit.deviance
        ));
    }
    if let Some(dm) = &fit.last_demean {
        if !dm.not_converged.is_empty() {
            out.push(format!(
                "WARNING: the demeaning of the last IRLS iteration did not converge ({} in {} iterations, tolerance {:e}); its estimates may be inaccurate",
                dm.method.solver, dm.iterations, opts.demean.tol
            ));
        }
    }
    if fit.at_bound > 0 {
        out.push(format!(
            "WARNING: {} fitted means are at the family's bound (μ ≈ 0{}): separation the checks did not remove (see --separation); the estimates of the regressors that separate them are not finite",
            fit.at_bound,
            if opts.family == Family::Logit { " or 1" } else { "" }
        ));
    }
    out
}

/// The coefficients of every regressor of `design` (a resampled sample: frequency weights),
/// after the separation checks of `opts`; `None` when a regressor is removed (absorbed,
/// collinear) or IRLS does not converge — the replicate cannot be used.
pub fn refit(mut design: Design, opts: &FitOptions, demeaner: &dyn Demeaner) -> Result<Option<Vec<f64>>> {
    if check_outcomes(&design, opts.family).is_err() {
        return Ok(None);
    }
    let mut notes = Vec::new();
    if separate(&mut design, opts, demeaner, &mut notes).is_err() {
        return Ok(None);
    }
    let io = irls::IrlsOptions {
        family: opts.family,
        tol: opts.glm_tol,
        max_iter: opts.glm_iter,
        demean: opts.demean,
        collin_tol: opts.collin_tol,
    };
    let offset = offset_of(&design, opts);
    let fit = irls::irls(&design, offset.as_deref(), &io, demeaner)?;
    let complete = fit.converged && fit.est.kept.len() == design.x.len() && fit.at_bound == 0;
    Ok(complete.then_some(fit.est.beta))
}

/// Poisson needs some positive outcome, logit both values (row-level rules were checked when
/// the sample was prepared).
fn check_outcomes(design: &Design, family: Family) -> Result<()> {
    let any = |f: &dyn Fn(f64) -> bool| design.y.iter().any(|&v| f(v));
    let y = &design.y_name;
    match family {
        Family::Poisson if !any(&|v| v > 0.0) => Err(Error::column(
            y,
            format!(
                "every outcome of the {} observations is zero: a Poisson model has no estimate",
                design.nobs()
            ),
        )),
        Family::Logit if !any(&|v| v == 1.0) || !any(&|v| v == 0.0) => Err(Error::column(
            y,
            format!(
                "the outcome takes only one value over the {} observations: a logit model has no estimate",
                design.nobs()
            ),
        )),
        _ => Ok(()),
    }
}

/// Remove separated observations from `design` (counted in `design.dropped`), with notes.
fn separate(design: &mut Design, opts: &FitOptions, demeaner: &dyn Demeaner, notes: &mut Vec<String>) -> Result<()> {
    let checks = opts.separation;
    let (mut by_fe, mut by_relu, mut singletons) = (0, 0, 0);
    let fe_pass = |design: &mut Design, by_fe: &mut usize, singletons: &mut usize| {
        let mut keep = vec![true; design.nobs()];
        let d = separation::by_fixed_effects(&design.y, &design.fes, opts.family, &mut keep, opts.keep_singletons);
        design.retain(&keep);
        *by_fe += d.separated;
        *singletons += d.singletons;
    };
    if checks.fe {
        fe_pass(design, &mut by_fe, &mut singletons);
    }
    if checks.relu && opts.family == Family::Poisson {
        // a drop can make new rows separable (rarely): repeat a few times
        for _ in 0..5 {
            let r = separation::by_rectifier(design, demeaner, &opts.demean)?;
            if !r.finished {
                notes.push(format!(
                    "WARNING: the separation check (iterative rectifier) stopped after {} iterations without a certificate; separated observations may remain",
                    r.iterations
                ));
            }
            if r.separated.is_empty() {
                break;
            }
            by_relu += r.separated.len();
            let mut keep = vec![true; design.nobs()];
            for &i in &r.separated {
                keep[i] = false;
            }
            design.retain(&keep);
            fe_pass(design, &mut by_fe, &mut singletons);
        }
    }
    crate::timing::lap("prepare"); // the separation checks decide the sample
    design.dropped.separated += by_fe + by_relu;
    design.dropped.singletons += singletons;
    if by_fe + by_relu > 0 {
        notes.push(format!(
            "{} separated observations were removed ({by_fe} in fixed-effect levels whose outcomes are all {}, {by_relu} separated by the regressors and effects together)",
            by_fe + by_relu,
            if opts.family == Family::Logit { "0 or all 1" } else { "zero" }
        ));
    }
    if singletons > 0 {
        notes.push(format!(
            "{singletons} further singleton observations were removed after the separated ones"
        ));
    }
    if design.nobs() == 0 {
        return Err(Error::NoObservations(
            "every observation is separated: no estimate exists".into(),
        ));
    }
    Ok(())
}

/// The offset over the sample: `--offset` plus the log of `--exposure` (the design's extra
/// columns, in that order).
fn offset_of(design: &Design, opts: &FitOptions) -> Option<Vec<f64>> {
    let mut extra = design.extra.iter();
    let offset = opts
        .offset
        .as_ref()
        .map(|_| extra.next().expect("the offset column").clone());
    let exposure = opts
        .exposure
        .as_ref()
        .map(|_| extra.next().expect("the exposure column"));
    match (offset, exposure) {
        (None, None) => None,
        (Some(o), None) => Some(o),
        (o, Some(e)) => Some(
            e.iter()
                .enumerate()
                .map(|(i, v)| v.ln() + o.as_ref().map_or(0.0, |o| o[i]))
                .collect(),
        ),
    }
}

/// The variance under `opts.ssc` (module doc), the absorbed dof and the df used.
fn glm_vcov(design: &Design, fit: &irls::Irls, opts: &FitOptions) -> Result<(vcov::Vcov, crate::fe::AbsorbedDof, f64)> {
    let n = design.nobs();
    let k = fit.est.kept.len();
    let deg = degrees(design, n, k, opts);
    let df = match opts.ssc {
        Ssc::Fixest => deg.df_resid,
        Ssc::Reghdfe => n as f64 - 1.0,
    };
    let x: Vec<&[f64]> = fit.est.kept.iter().map(|&j| fit.xt[j].as_slice()).collect();
    let inp = VcovInput {
        x,
        resid: &fit.est.resid,
        weights: Some(&fit.weights),
        bread: &fit.est.bread,
        df_resid: df,
    };
    let v = match &opts.vcov {
        // with a known dispersion the model-based variance depends on the weights' scale (they
        // count as frequencies, as in fixest and R's glm): the bread in the user's units
        VcovSpec::Iid => vcov::model_based(&fit.est.bread.clone().scale(1.0 / design.weight_scale), n, df),
        spec => vcov::compute(spec, &inp, &design.clusters)?,
    };
    Ok((v, deg.dof_vcov, deg.df_resid))
}

/// Deviance, log-likelihoods and the pseudo R².
fn statistics(design: &Design, fit: &irls::Irls, offset: Option<&[f64]>, opts: &FitOptions) -> GlmStats {
    let family = opts.family;
    let (y, w) = (&design.y, design.weights.as_deref());
    let wi = |i: usize| w.map_or(1.0, |w| w[i]);
    let sum = |f: &(dyn Fn(usize) -> f64 + Sync)| {
        use rayon::prelude::*;
        (0..y.len()).into_par_iter().map(|i| wi(i) * f(i)).sum::<f64>()
    };
    let scale = design.weight_scale;
    let null_mu = null_means(family, y, w, offset);
    let loglik = scale * sum(&|i| family.loglik(y[i], fit.mu[i]));
    let ll_null = scale * sum(&|i| family.loglik(y[i], null_mu[i]));
    GlmStats {
        deviance: scale * fit.deviance,
        null_deviance: scale * sum(&|i| family.unit_deviance(y[i], null_mu[i])),
        loglik,
        ll_null,
        pseudo_r2: 1.0 - loglik / ll_null,
        separated: design.dropped.separated,
        irls_iterations: fit.iterations,
        offset: opts.offset.clone(),
        exposure: opts.exposure.clone(),
    }
}

/// The means of the intercept-only model (with the offset): Newton on the one parameter.
fn null_means(family: Family, y: &[f64], w: Option<&[f64]>, offset: Option<&[f64]>) -> Vec<f64> {
    let wi = |i: usize| w.map_or(1.0, |w| w[i]);
    let off = |i: usize| offset.map_or(0.0, |o| o[i]);
    let sw: f64 = (0..y.len()).map(wi).sum();
    let ybar = (0..y.len()).map(|i| wi(i) * y[i]).sum::<f64>() / sw;
    let mut c = family.link(ybar);
    if offset.is_some() {
        for _ in 0..100 {
            let (mut g, mut h) = (0.0, 0.0);
            for i in 0..y.len() {
                let mu = family.mean(c + off(i));
                g += wi(i) * (y[i] - mu);
                h += wi(i) * family.variance(mu);
            }
            let step = g / h;
            c += step;
            if step.abs() < 1e-14 * (1.0 + c.abs()) {
                break;
            }
        }
    }
    (0..y.len()).map(|i| family.mean(c + off(i))).collect()
}
