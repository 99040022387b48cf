//! Separation: observations whose maximum-likelihood mean lies on the boundary (μ = 0 for
//! Poisson, μ ∈ {0, 1} for logit). Their linear predictor diverges, no finite estimate exists
//! with them, and the estimates of the other parameters are those of the sample without them
//! (Correia, Guimarães & Zylkin 2021, "Verifying the existence of maximum likelihood estimates
//! for generalized linear models"). Two checks, as ppmlhdfe's default `separation(fe relu)`:
//!
//! * [`by_fixed_effects`]: a fixed-effect level whose outcomes are all zero (Poisson) or all
//!   equal (logit) — its effect goes to ∓∞ — repeated over all effects, with singletons, until
//!   nothing changes (fixest's `fixef.rm = "perfect"`, made recursive as ppmlhdfe does);
//! * [`by_rectifier`] (Poisson): separation by the regressors and effects together. It looks
//!   for a combination `z = Xγ + Dα` that is 0 on every y > 0 row and ≥ 0 on every y = 0 row;
//!   the rows with z > 0 are separated. The iterative rectifier: regress `u` (at first 1{y = 0})
//!   on X and the effects by least squares with a weight of 1/√ε on the y > 0 rows (so the fit
//!   is held at 0 there), set `u = max(fit, 0)` on the y = 0 rows, repeat; it stops when the
//!   fit is non-negative on every y = 0 row (those with a positive fit are separated) or no
//!   residual on them is negative (no separation left). The regressions run through the shared
//!   [`Demeaner`], so every fixed-effect structure and backend is covered.

use crate::data::prepare::Design;
use crate::demean::{Absorb, DemeanOptions, Demeaner};
use crate::error::Result;
use crate::fe::{drop_singletons, FixedEffect};
use crate::linalg::passes::residuals;

use super::family::Family;

/// Rows dropped by [`by_fixed_effects`], by cause.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FeDrops {
    pub separated: usize,
    pub singletons: usize,
}

/// Drop (clear `keep` of) every row in a fixed-effect level whose outcomes pin the mean at a
/// bound, and then singletons unless `keep_singletons`, until no level is left to drop.
pub fn by_fixed_effects(
    y: &[f64],
    fes: &[FixedEffect],
    family: Family,
    keep: &mut [bool],
    keep_singletons: bool,
) -> FeDrops {
    let mut drops = FeDrops::default();
    loop {
        let mut changed = false;
        for fe in fes {
            // per level: number of kept rows and the sum of their outcomes
            let mut count = vec![0usize; fe.levels];
            let mut sum = vec![0.0f64; fe.levels];
            for (i, &g) in fe.ids.iter().enumerate() {
                if keep[i] {
                    count[g as usize] += 1;
                    sum[g as usize] += y[i];
                }
            }
            let pinned = |g: usize| match family {
                Family::Poisson => sum[g] == 0.0,
                Family::Logit => sum[g] == 0.0 || sum[g] == count[g] as f64,
                Family::Gaussian => false,
            };
            for (i, &g) in fe.ids.iter().enumerate() {
                if keep[i] && pinned(g as usize) {
                    keep[i] = false;
                    drops.separated += 1;
                    changed = true;
                }
            }
        }
        if !keep_singletons && !fes.is_empty() {
            let views: Vec<(&[u32], usize)> = fes.iter().map(|f| (f.ids.as_slice(), f.levels)).collect();
            let s = drop_singletons(&views, keep);
            drops.singletons += s;
            changed |= s > 0;
        }
        if !changed {
            return drops;
        }
    }
}

/// Tolerances of the rectifier (ppmlhdfe's defaults).
const RELU_TOL: f64 = 1e-4;
const RELU_ZERO_TOL: f64 = 1e-8;
const RELU_MAX_ITER: usize = 100;
/// Demeaning tolerance of the rectifier's regressions (ppmlhdfe uses 1e-8 on its own criterion).
const RELU_DEMEAN_TOL: f64 = 1e-6;

/// What [`by_rectifier`] found.
#[derive(Debug, Clone)]
pub struct Rectified {
    /// Rows (of the design) that are separated.
    pub separated: Vec<usize>,
    pub iterations: usize,
    /// False when the iteration limit was reached before a certificate was found.
    pub finished: bool,
}

/// The iterative rectifier on a Poisson design (all rows of `design` are in the sample).
pub fn by_rectifier(design: &Design, demeaner: &dyn Demeaner, opts: &DemeanOptions) -> Result<Rectified> {
    let y = &design.y;
    let n = y.len();
    let boundary: Vec<usize> = (0..n).filter(|&i| y[i] == 0.0).collect();
    if boundary.is_empty() {
        return Ok(Rectified {
            separated: vec![],
            iterations: 0,
            finished: true,
        });
    }
    // the method of weighting for least squares with equality constraints (Van Loan 1985)
    let m = f64::EPSILON.powf(-0.5).ceil();
    let omega: Vec<f64> = y.iter().map(|&v| if v == 0.0 { 1.0 } else { m }).collect();
    // the fits are judged against RELU_TOL (1e-4): their demeaning needs two digits more
    let opts = DemeanOptions {
        tol: opts.tol.max(RELU_DEMEAN_TOL),
        ..*opts
    };
    let fes: Vec<&FixedEffect> = crate::fe::dof::effects_to_project(&design.fes)
        .into_iter()
        .map(|k| &design.fes[k])
        .collect();
    // from the second iteration on, u is the last demeaned u plus its change
    let absorb = Absorb::new(fes, Some(&omega)).warm_started();
    let project = |cols: Vec<Vec<f64>>| -> Result<Vec<Vec<f64>>> {
        if design.fes.is_empty() {
            Ok(cols)
        } else {
            Ok(demeaner.demean(&absorb, cols, &opts)?.columns)
        }
    };
    let mut u: Vec<f64> = y.iter().map(|&v| if v == 0.0 { 1.0 } else { 0.0 }).collect();
    // the first u and the regressors in one call (the weights never change)
    let mut first = Vec::with_capacity(design.x.len() + 1);
    first.push(u.clone());
    first.extend(design.x.iter().cloned());
    let mut projected = project(first)?;
    let xt = projected.split_off(1);
    let mut ut_first = projected.pop();
    let names: Vec<String> = (0..xt.len()).map(|j| format!("x{j}")).collect();
    let ratio = column_norm_ratio(&design.x, y);
    let (mut u_last, mut ut_last): (Vec<f64>, Vec<f64>) = (vec![], vec![]);
    for iter in 1..=RELU_MAX_ITER {
        // warm start: the previous demeaned u plus the change of u demeans to the same result
        let ut = match ut_first.take() {
            Some(ut) => ut,
            None => {
                let input = (0..n).map(|i| ut_last[i] + u[i] - u_last[i]).collect();
                project(vec![input])?.pop().expect("one column")
            }
        };
        let resid = if xt.is_empty() {
            ut.clone()
        } else {
            let est = crate::estimate::ols::solve(&names, &xt, &ut, Some(&omega), None, 1e-10);
            let kept: Vec<&[f64]> = est.kept.iter().map(|&j| xt[j].as_slice()).collect();
            residuals(&ut, &kept, &est.beta)
        };
        let uu: f64 = u.iter().map(|v| v * v).sum();
        let epsilon = (uu / m * ratio.max(1.0).powi(2)).max(1e-8);
        let delta = epsilon + RELU_TOL;
        // the fit, 0 where y > 0 and where within tolerance of 0 on the boundary
        let mut fit: Vec<f64> = (0..n).map(|i| u[i] - resid[i]).collect();
        for i in 0..n {
            if y[i] != 0.0 || (-0.1 * delta..=delta).contains(&fit[i]) {
                fit[i] = 0.0;
            }
        }
        let separated = |fit: &[f64]| boundary.iter().copied().filter(|&i| fit[i] > 0.0).collect();
        if boundary.iter().all(|&i| fit[i] >= 0.0) {
            return Ok(Rectified {
                separated: separated(&fit),
                iterations: iter,
                finished: true,
            });
        }
        // no negative residual left on the boundary: X'e = 0 leaves no separated row to find
        let r = |i: usize| if resid[i].abs() < RELU_ZERO_TOL { 0.0 } else { resid[i] };
        if boundary.iter().all(|&i| r(i) >= 0.0) {
            for &i in &boundary {
                if r(i) > delta {
                    fit[i] = 0.0;
                }
            }
            return Ok(Rectified {
                separated: separated(&fit),
                iterations: iter,
                finished: true,
            });
        }
        u_last = std::mem::take(&mut u);
        u = (0..n)
            .map(|i| if y[i] == 0.0 { fit[i].max(0.0) } else { 0.0 })
            .collect();
        ut_last = ut;
    }
    Ok(Rectified {
        separated: vec![],
        iterations: RELU_MAX_ITER,
        finished: false,
    })
}

/// ‖X_boundary‖₁ / ‖X_interior‖₁ (largest absolute column sums), 1 without regressors.
fn column_norm_ratio(x: &[Vec<f64>], y: &[f64]) -> f64 {
    let norm = |zero: bool| {
        x.iter()
            .map(|c| {
                c.iter()
                    .zip(y)
                    .filter(|(_, &v)| (v == 0.0) == zero)
                    .map(|(a, _)| a.abs())
                    .sum::<f64>()
            })
            .fold(0.0f64, f64::max)
    };
    let (b, i) = (norm(true), norm(false));
    if i > 0.0 {
        b / i
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fe(ids: &[u32]) -> FixedEffect {
        FixedEffect::from_codes("g", ids)
    }

    #[test]
    fn all_zero_groups_go_and_their_removal_is_repeated() {
        // group 0 of `a` is all zero; once gone, group 2 of `b` holds only zeros
        let y = [0.0, 0.0, 1.0, 0.0, 2.0, 3.0];
        let a = fe(&[0, 0, 1, 1, 2, 2]);
        let b = fe(&[0, 2, 1, 2, 1, 0]);
        let mut keep = vec![true; 6];
        let d = by_fixed_effects(&y, &[a, b], Family::Poisson, &mut keep, true);
        assert_eq!(keep, vec![false, false, true, false, true, true]);
        assert_eq!(d.separated, 3);
    }

    #[test]
    fn logit_drops_groups_of_all_ones_too() {
        let y = [1.0, 1.0, 0.0, 1.0];
        let mut keep = vec![true; 4];
        by_fixed_effects(&y, &[fe(&[0, 0, 1, 1])], Family::Logit, &mut keep, true);
        assert_eq!(keep, vec![false, false, true, true]);
    }
}
