//! Iteratively reweighted least squares with fixed effects, written once above the backends:
//! each iteration is one weighted demeaning of the working variable and the regressors through
//! the shared [`Demeaner`] (every structure, exact passes or CG, CPU or GPU) and one least
//! squares solve ([`crate::estimate::ols`]).
//!
//! * Working weight `W = w · V(μ)` and variable `z = ξ + (y − μ)/V(μ)` (canonical link).
//! * Warm starts: any column `v` with `v − z ∈ span(D)` demeans to the same `M_W z` whatever
//!   the weights, so iteration t demeans `z̃_{t−1} + (z_t − z_{t−1})` and the previous demeaned
//!   regressors — both nearly demeaned already (fixest, ppmlhdfe, pyfixest do the same).
//! * Inner tolerance: loose (1e-4) at first and tightened to a tenth of the outer criterion as it
//!   falls, down to the target; convergence is only declared at the target (ppmlhdfe's rule).
//!   The regressors are demeaned at the target from the first iteration, so that a regressor
//!   absorbed by the fixed effects is recognised as such.
//! * Stopping: `|Δdev| / (0.1 + |dev|) < tol` (fixest's `glm.tol`); step-halving while the
//!   deviance rises or is not finite.

use rayon::prelude::*;

use crate::data::prepare::Design;
use crate::demean::{Absorb, DemeanOptions, Demeaned, Demeaner};
use crate::error::{Error, Result};
use crate::estimate::ols::{self, DroppedRegressor, Ols};
use crate::fe::dof::effects_to_project;
use crate::fe::FixedEffect;

use super::family::Family;

/// How to iterate.
#[derive(Debug, Clone, Copy)]
pub struct IrlsOptions {
    pub family: Family,
    /// Outer tolerance on the relative change of the deviance (fixest's `glm.tol`).
    pub tol: f64,
    pub max_iter: usize,
    /// The demeaning's target tolerance and method.
    pub demean: DemeanOptions,
    pub collin_tol: f64,
}

/// The loosest inner tolerance of the first iterations.
const FIRST_INNER_TOL: f64 = 1e-4;
/// Step-halvings per iteration before giving up.
const MAX_HALVINGS: usize = 40;

/// The converged (or last) iteration.
pub struct Irls {
    /// The last weighted least squares solve: β, the bread, the working residuals.
    pub est: Ols,
    /// The regressors demeaned under the last weights (indexed like `design.x`; only the kept
    /// ones are filled).
    pub xt: Vec<Vec<f64>>,
    /// The last working weights `w · V(μ)`.
    pub weights: Vec<f64>,
    /// `ξ` and `μ` after the last update.
    pub xi: Vec<f64>,
    pub mu: Vec<f64>,
    pub deviance: f64,
    pub iterations: usize,
    pub converged: bool,
    /// The demeaning run behind the last iteration (method, iterations, residual).
    pub last_demean: Option<Demeaned>,
    /// Regressors removed (absorbed by the effects or collinear), in formula order.
    pub dropped: Vec<DroppedRegressor>,
    /// How many means sat at the family's bound at the end.
    pub at_bound: usize,
}

/// The family's mean with η clamped so that μ and V(μ) stay positive and finite (R's
/// binomial clamps η to ±30 the same way); `at_bound` counts where the clamp acted.
fn clamped_mean(family: Family, eta: f64) -> (f64, bool) {
    let (lo, hi) = match family {
        Family::Poisson => (-700.0, 700.0),
        Family::Logit => (-30.0, 30.0),
        Family::Gaussian => (f64::NEG_INFINITY, f64::INFINITY),
    };
    let e = eta.clamp(lo, hi);
    (family.mean(e), e != eta || (family == Family::Poisson && eta < -36.0))
}

fn deviance(family: Family, y: &[f64], mu: &[f64], w: Option<&[f64]>) -> f64 {
    (0..y.len())
        .into_par_iter()
        .map(|i| w.map_or(1.0, |w| w[i]) * family.unit_deviance(y[i], mu[i]))
        .sum()
}

/// Fit `design` (its rows already free of separated observations) by IRLS.
pub fn irls(design: &Design, offset: Option<&[f64]>, o: &IrlsOptions, demeaner: &dyn Demeaner) -> Result<Irls> {
    let (y, w) = (&design.y, design.weights.as_deref());
    let n = y.len();
    let family = o.family;
    let off = |i: usize| offset.map_or(0.0, |o| o[i]);
    let mut mu: Vec<f64> = y.iter().map(|&v| family.start(v)).collect();
    let mut xi: Vec<f64> = (0..n).map(|i| family.link(mu[i]) - off(i)).collect();
    let mut dev = deviance(family, y, &mu, w);
    let project: Vec<&FixedEffect> = effects_to_project(&design.fes)
        .into_iter()
        .map(|k| &design.fes[k])
        .collect();
    let has_fe = !project.is_empty();

    let mut regs = Kept {
        names: design.x_names.clone(),
        index: (0..design.x.len()).collect(),
    };
    let mut x_in: Vec<Vec<f64>> = design.x.clone();
    let mut dropped: Vec<DroppedRegressor> = Vec::new();
    let mut prev: Option<(Vec<f64>, Vec<f64>)> = None; // (z, z̃) of the last iteration
    let mut inner = FIRST_INNER_TOL.max(o.demean.tol);
    let mut last_demean = None;
    let mut raw_ss: Vec<f64> = Vec::new();
    for iter in 1..=o.max_iter {
        let weights: Vec<f64> = (0..n)
            .into_par_iter()
            .map(|i| w.map_or(1.0, |w| w[i]) * family.variance(mu[i]))
            .collect();
        let z: Vec<f64> = (0..n)
            .into_par_iter()
            .map(|i| xi[i] + (y[i] - mu[i]) / family.variance(mu[i]))
            .collect();
        let z_in = match &prev {
            Some((zp, ztp)) => (0..n).into_par_iter().map(|i| ztp[i] + (z[i] - zp[i])).collect(),
            None => z.clone(),
        };
        if iter == 1 && has_fe {
            // the regressors' weighted spread before demeaning, for the absorbed test
            let cols: Vec<&[f64]> = design.x.iter().map(|c| c.as_slice()).collect();
            raw_ss = crate::linalg::passes::moments(&cols, Some(&weights))
                .iter()
                .map(|m| m.centred_ss)
                .collect();
        }
        let (zt, xt) = if has_fe {
            // z and the regressors in one call: the lanes of one solve share its passes
            let absorb = Absorb::new(project.clone(), Some(&weights)).warm_started();
            let mut cols = Vec::with_capacity(x_in.len() + 1);
            cols.push(z_in);
            cols.append(&mut x_in);
            let mut dm = demeaner.demean(&absorb, cols, &DemeanOptions { tol: inner, ..o.demean })?;
            let xt = dm.columns.split_off(1);
            let zt = dm.columns.pop().expect("z");
            last_demean = Some(dm);
            (zt, xt)
        } else {
            (z_in, std::mem::take(&mut x_in))
        };
        let ss: Vec<f64> = regs
            .index
            .iter()
            .map(|&j| raw_ss.get(j).copied().unwrap_or(0.0))
            .collect();
        let raw = has_fe.then_some(ss.as_slice());
        let mut est = ols::solve_checked(&regs.names, &xt, &zt, Some(&weights), raw, o.collin_tol)?;
        // the kept regressors only, from now on
        x_in = regs.keep_only(&mut est, xt, &mut dropped);
        // the new linear predictor: the fit z − ẽ, then halved back while the deviance rises
        let fitted: Vec<f64> = (0..n).into_par_iter().map(|i| z[i] - est.resid[i]).collect();
        let (xi_new, mu_new, dev_new, halvings) = update(o.family, design, offset, &xi, fitted, (iter, dev))?;
        let crit = (dev_new - dev).abs() / (0.1 + dev_new.abs());
        if std::env::var_os("FEGPU_TIMING").is_some() {
            eprintln!("timing: irls {iter:>3}  deviance {dev_new:.12e}  change {crit:.1e}  inner tol {inner:.0e}  halvings {halvings}");
        }
        xi = xi_new;
        mu = mu_new;
        dev = dev_new;
        let at_target = !has_fe || inner <= o.demean.tol;
        if (crit < o.tol && at_target) || iter == o.max_iter {
            let converged = crit < o.tol && at_target;
            let mut xt_full = vec![Vec::new(); design.x.len()];
            for (k, &j) in regs.index.iter().enumerate() {
                xt_full[j] = std::mem::take(&mut x_in[k]);
            }
            est.kept = regs.index.clone();
            let at_bound = (0..n).filter(|&i| clamped_mean(family, xi[i] + off(i)).1).count();
            dropped.sort_by_key(|d| design.x_names.iter().position(|x| *x == d.name));
            return Ok(Irls {
                est,
                xt: xt_full,
                weights,
                xi,
                mu,
                deviance: dev,
                iterations: iter,
                converged,
                last_demean,
                dropped,
                at_bound,
            });
        }
        // a tenth of the last change: the iteration that meets the outer tolerance usually runs
        // looser, and one more at the target follows — whose weights make the standard errors
        // accurate to the deviance's convergence rather than to the last step's (a faster
        // schedule left them 4e-6 off on the gravity benchmark, as fixest's default is)
        inner = o.demean.tol.max(inner.min(0.1 * crit));
        prev = Some((z, zt));
    }
    unreachable!("the loop returns at max_iter")
}

/// The regressors still in the model: names and positions in the design.
struct Kept {
    names: Vec<String>,
    index: Vec<usize>,
}

impl Kept {
    /// Drop from here on the regressors `est` removed (noted in `dropped`); `est` is renumbered
    /// over the kept ones. Returns the kept demeaned columns, the next iteration's input.
    fn keep_only(
        &mut self,
        est: &mut Ols,
        mut xt: Vec<Vec<f64>>,
        dropped: &mut Vec<DroppedRegressor>,
    ) -> Vec<Vec<f64>> {
        if est.kept.len() == self.names.len() {
            return xt;
        }
        dropped.extend(est.dropped.drain(..));
        let keep = std::mem::take(&mut est.kept);
        self.names = keep.iter().map(|&j| self.names[j].clone()).collect();
        self.index = keep.iter().map(|&j| self.index[j]).collect();
        est.kept = (0..keep.len()).collect();
        keep.iter().map(|&j| std::mem::take(&mut xt[j])).collect()
    }
}

/// The linear predictor `fitted` with its means and deviance, halved back towards `xi` while
/// the deviance is not finite or (after the first iteration) rises above `dev`; the number of
/// halvings. `(iter, dev)`: the iteration and the last deviance.
fn update(
    family: Family,
    design: &Design,
    offset: Option<&[f64]>,
    xi: &[f64],
    mut fitted: Vec<f64>,
    (iter, dev): (usize, f64),
) -> Result<(Vec<f64>, Vec<f64>, f64, usize)> {
    let (y, w) = (&design.y, design.weights.as_deref());
    let off = |i: usize| offset.map_or(0.0, |o| o[i]);
    let means = |xi: &[f64]| -> Vec<f64> {
        (0..xi.len())
            .into_par_iter()
            .map(|i| clamped_mean(family, xi[i] + off(i)).0)
            .collect()
    };
    let mut mu = means(&fitted);
    let mut dev_new = deviance(family, y, &mu, w);
    let mut halvings = 0;
    while !dev_new.is_finite() || (iter > 1 && dev_new > dev * (1.0 + 1e-12)) {
        halvings += 1;
        if halvings > MAX_HALVINGS {
            return Err(Error::Estimation(format!(
                "IRLS could not lower the deviance at iteration {iter} (step-halving failed {MAX_HALVINGS} times; deviance {dev})"
            )));
        }
        fitted.iter_mut().zip(xi).for_each(|(f, x)| *f = 0.5 * (*f + x));
        mu = means(&fitted);
        dev_new = deviance(family, y, &mu, w);
    }
    Ok((fitted, mu, dev_new, halvings))
}
