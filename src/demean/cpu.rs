//! The f64 CPU demeaner: the reference every other backend is checked against.
//!
//! One sweep `T` subtracts, effect by effect, the weighted group means of the current residual
//! (`x ← x − D_k (D_k'WD_k)⁻¹ D_k'W x`, a Gauss–Seidel / Kaczmarz pass). Its fixed point is the
//! residual of the weighted projection onto all effects. Plain iteration converges linearly and
//! slowly on poorly connected panels, so every two sweeps we extrapolate with Irons & Tuck (1969)
//! as fixest does (Bergé 2018): with `x1 = T x0`, `x2 = T x1`, `δ1 = x2 − x1`,
//! `δ2 = x2 − 2x1 + x0`, the next iterate is `x2 − (δ1·δ2 / δ2·δ2) δ1`. Being an affine
//! combination of iterates, it stays in `x − span(D)` and converges to the same point. A single
//! effect is solved exactly by one sweep.

use rayon::prelude::*;

use super::{Absorb, DemeanOptions, Demeaned, Demeaner};
use crate::error::Result;

/// The exact f64 CPU backend.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuDemeaner;

impl Demeaner for CpuDemeaner {
    fn name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn demean(&self, problem: &Absorb, mut columns: Vec<Vec<f64>>, opts: &DemeanOptions) -> Result<Demeaned> {
        let results: Vec<(usize, bool)> = columns
            .par_iter_mut()
            .map(|col| demean_column(problem, col, opts))
            .collect();
        let iterations = results.iter().map(|r| r.0).max().unwrap_or(0);
        let not_converged = results
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.1)
            .map(|(i, _)| i)
            .collect();
        Ok(Demeaned {
            columns,
            iterations,
            not_converged,
        })
    }
}

/// Subtract the weighted group means of effect `k` from `x` (`sums` is scratch of the effect's
/// level count).
fn project(problem: &Absorb, k: usize, x: &mut [f64], sums: &mut Vec<f64>) {
    let fe = &problem.fes[k];
    let inv = &problem.inv_weight_sums[k];
    sums.clear();
    sums.resize(fe.levels, 0.0);
    match problem.weights {
        Some(w) => {
            for ((&g, &xi), &wi) in fe.ids.iter().zip(x.iter()).zip(w) {
                sums[g as usize] += wi * xi;
            }
        }
        None => {
            for (&g, &xi) in fe.ids.iter().zip(x.iter()) {
                sums[g as usize] += xi;
            }
        }
    }
    for (s, &iv) in sums.iter_mut().zip(inv) {
        *s *= iv;
    }
    for (&g, xi) in fe.ids.iter().zip(x.iter_mut()) {
        *xi -= sums[g as usize];
    }
}

fn sweep(problem: &Absorb, x: &mut [f64], sums: &mut Vec<f64>) {
    for k in 0..problem.fes.len() {
        project(problem, k, x, sums);
    }
}

/// Weighted root mean square of `x` (the scale the tolerance is relative to).
fn scale_of(problem: &Absorb, x: &[f64]) -> f64 {
    let (mut s, mut sw) = (0.0, 0.0);
    match problem.weights {
        Some(w) => {
            for (&xi, &wi) in x.iter().zip(w) {
                s += wi * xi * xi;
                sw += wi;
            }
        }
        None => {
            s = x.iter().map(|v| v * v).sum();
            sw = x.len() as f64;
        }
    }
    if sw > 0.0 {
        (s / sw).sqrt()
    } else {
        0.0
    }
}

/// Reusable buffers of [`demean_column_with`].
#[derive(Default)]
pub struct Scratch {
    x1: Vec<f64>,
    x2: Vec<f64>,
    sums: Vec<f64>,
}

/// Demean one column in place; returns (sweeps used, converged).
pub fn demean_column(problem: &Absorb, x: &mut [f64], opts: &DemeanOptions) -> (usize, bool) {
    demean_column_with(problem, x, opts, &mut Scratch::default())
}

/// [`demean_column`] with caller-provided scratch buffers.
pub fn demean_column_with(
    problem: &Absorb,
    x: &mut [f64],
    opts: &DemeanOptions,
    scratch: &mut Scratch,
) -> (usize, bool) {
    let Scratch { x1, x2, sums } = scratch;
    match problem.fes.len() {
        0 => return (0, true),
        1 => {
            project(problem, 0, x, sums);
            return (1, true);
        }
        _ => {}
    }
    // First sweep centres the column, so the scale is that of the within variation's
    // neighbourhood rather than of the raw level.
    sweep(problem, x, sums);
    let scale = scale_of(problem, x);
    if scale == 0.0 || !scale.is_finite() {
        return (1, scale == 0.0);
    }
    let threshold = opts.tol * scale;
    let n = x.len();
    x1.resize(n, 0.0);
    x2.resize(n, 0.0);
    let mut sweeps = 1;
    while sweeps + 2 <= opts.max_iter {
        x1.copy_from_slice(x);
        sweep(problem, x1, sums);
        x2.copy_from_slice(x1);
        sweep(problem, x2, sums);
        sweeps += 2;
        let mut max_change = 0.0f64;
        let (mut num, mut den) = (0.0, 0.0);
        for i in 0..n {
            let d1 = x2[i] - x1[i];
            let d2 = d1 - (x1[i] - x[i]);
            max_change = max_change.max(d1.abs());
            num += d1 * d2;
            den += d2 * d2;
        }
        if max_change <= threshold {
            x.copy_from_slice(x2);
            return (sweeps, true);
        }
        if den > 0.0 {
            let a = num / den;
            for i in 0..n {
                x[i] = x2[i] - a * (x2[i] - x1[i]);
            }
        } else {
            x.copy_from_slice(x2);
        }
    }
    (sweeps, false)
}
