//! The f64 CPU demeaner: the reference every other backend is checked against.
//!
//! One sweep `T` subtracts, effect by effect, the weighted group means of the current residual
//! (`x ← x − D_k (D_k'WD_k)⁻¹ D_k'W x`, a Gauss–Seidel / Kaczmarz pass). Its fixed point is the
//! residual of the weighted projection onto all effects. Plain iteration converges linearly and
//! slowly on poorly connected panels, so every two sweeps we extrapolate with Irons & Tuck (1969)
//! as fixest does (Bergé 2018): with `x1 = T x0`, `x2 = T x1`, `δ1 = x2 − x1`,
//! `δ2 = x2 − 2x1 + x0`, the next iterate is `x2 − (δ1·δ2 / δ2·δ2) δ1`. Being an affine
//! combination of iterates, it stays in `x − span(D)` and converges to the same point. A single
//! effect is solved exactly by one sweep, and so is the common panel case of one large effect
//! beside few-level ones (year): those enter as dummies, partialled out after one sweep of the
//! large effect (Frisch–Waugh–Lovell), with no iteration and no tolerance.

use rayon::prelude::*;

use super::{Absorb, DemeanOptions, Demeaned, Demeaner};
use crate::error::Result;
use crate::fe::FixedEffect;
use crate::linalg::{cholesky_drop, cholesky_inverse, dot, Mat};

/// The exact f64 CPU backend.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuDemeaner;

impl Demeaner for CpuDemeaner {
    fn name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn demean(&self, problem: &Absorb, mut columns: Vec<Vec<f64>>, opts: &DemeanOptions) -> Result<Demeaned> {
        if let Some((large, small)) = few_level_split(&problem.fes) {
            demean_with_dummies(problem, &mut columns, large, &small);
            return Ok(Demeaned {
                columns,
                iterations: 1,
                not_converged: vec![],
            });
        }
        Ok(demean_iterative(problem, columns, opts))
    }
}

/// Alternating projections with Irons–Tuck acceleration, column by column in parallel (the
/// general path of [`CpuDemeaner`]).
pub fn demean_iterative(problem: &Absorb, mut columns: Vec<Vec<f64>>, opts: &DemeanOptions) -> Demeaned {
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
    Demeaned {
        columns,
        iterations,
        not_converged,
    }
}

/// Most dummy columns [`demean_with_dummies`] builds.
pub const MAX_DUMMIES: usize = 32;

/// One effect with many levels and the others with few (the study's firm×destination + year):
/// (the large effect, the small ones) when the small ones need at most [`MAX_DUMMIES`] dummies.
pub fn few_level_split(fes: &[&FixedEffect]) -> Option<(usize, Vec<usize>)> {
    if fes.len() < 2 {
        return None;
    }
    let large = (0..fes.len()).max_by_key(|&k| fes[k].levels)?;
    let small: Vec<usize> = (0..fes.len()).filter(|&k| k != large).collect();
    let dummies: usize = small.iter().map(|&k| fes[k].levels.saturating_sub(1)).sum();
    (dummies <= MAX_DUMMIES).then_some((large, small))
}

/// Exact demeaning without iterating, by Frisch–Waugh–Lovell: demean every column and the
/// dummies of the few-level effects by the large effect alone (exact in one pass), then take
/// the dummies' weighted least-squares fit out of each column. Dummies collinear with the large
/// effect (a nested effect, a level with no weight) are dropped by the pivoted Cholesky. Equals
/// the fixed point of alternating projections, without its tolerance.
fn demean_with_dummies(problem: &Absorb, columns: &mut [Vec<f64>], large: usize, small: &[usize]) {
    let big = Absorb {
        fes: vec![problem.fes[large]],
        weights: problem.weights,
        inv_weight_sums: vec![problem.inv_weight_sums[large].clone()],
    };
    let mut dummies: Vec<Vec<f64>> = Vec::new();
    for &s in small {
        let fe = problem.fes[s];
        for level in 1..fe.levels as u32 {
            dummies.push(fe.ids.iter().map(|&l| (l == level) as u8 as f64).collect());
        }
    }
    columns
        .par_iter_mut()
        .chain(dummies.par_iter_mut())
        .for_each(|c| project(&big, 0, c, &mut Vec::new()));
    let weighted: Vec<Vec<f64>> = dummies
        .par_iter()
        .map(|d| match problem.weights {
            Some(w) => d.iter().zip(w).map(|(a, b)| a * b).collect(),
            None => d.clone(),
        })
        .collect();
    let m = dummies.len();
    let mut g = Mat::zeros(m);
    for a in 0..m {
        for b in 0..=a {
            let v = dot(&weighted[a], &dummies[b]);
            g.set(a, b, v);
            g.set(b, a, v);
        }
    }
    let ch = cholesky_drop(&g, 1e-10);
    if ch.kept.is_empty() {
        return;
    }
    let inv = cholesky_inverse(&ch.l);
    columns.par_iter_mut().for_each(|x| {
        let rhs: Vec<f64> = ch.kept.iter().map(|&a| dot(&weighted[a], x)).collect();
        let gamma = inv.mul_vec(&rhs);
        for (&a, &ga) in ch.kept.iter().zip(&gamma) {
            for (xi, di) in x.iter_mut().zip(&dummies[a]) {
                *xi -= ga * di;
            }
        }
    });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    /// The dummy path equals alternating projections on both effects, with unequal and zero
    /// weights, a nested effect and an unweighted case.
    #[test]
    fn few_level_effects_as_dummies_equal_alternating_projections() {
        let mut s = Stream::new(8, 3);
        let n = 3000;
        let big = FixedEffect {
            name: "firm".into(),
            ids: (0..n).map(|_| s.below(300)).collect(),
            levels: 300,
        };
        let year = FixedEffect {
            name: "year".into(),
            ids: (0..n).map(|_| s.below(7)).collect(),
            levels: 7,
        };
        // a 2-level effect nested in the large one (its dummy is absorbed and must be dropped)
        let nested = FixedEffect {
            name: "sector".into(),
            ids: big.ids.iter().map(|&f| f % 2).collect(),
            levels: 2,
        };
        let columns: Vec<Vec<f64>> = (0..3)
            .map(|c| {
                (0..n)
                    .map(|i| s.normal() + 0.3 * c as f64 * year.ids[i] as f64 + 0.01 * big.ids[i] as f64)
                    .collect()
            })
            .collect();
        let opts = DemeanOptions {
            tol: 1e-14,
            max_iter: 100_000,
        };
        let fes = vec![&year, &big, &nested];
        assert_eq!(few_level_split(&fes), Some((1, vec![0, 2])));
        for case in 0..3 {
            let w: Option<Vec<f64>> = match case {
                0 => None,
                _ => Some(
                    (0..n)
                        .map(|_| if s.uniform() < 0.3 { 0.0 } else { 0.5 + s.uniform() })
                        .collect(),
                ),
            };
            let problem = Absorb::new(fes.clone(), w.as_deref());
            let exact = CpuDemeaner.demean(&problem, columns.clone(), &opts).unwrap();
            assert_eq!(exact.iterations, 1);
            let map = demean_iterative(&problem, columns.clone(), &opts);
            for (a, b) in exact.columns.iter().zip(&map.columns) {
                for i in 0..n {
                    if w.as_ref().is_none_or(|w| w[i] > 0.0) {
                        assert!((a[i] - b[i]).abs() < 1e-9, "case {case}, row {i}: {} vs {}", a[i], b[i]);
                    }
                }
            }
        }
        // too many small levels: the general path
        let many = FixedEffect {
            name: "many".into(),
            ids: (0..n as u32).map(|i| i % 100).collect(),
            levels: 100,
        };
        assert_eq!(few_level_split(&[&big, &many]), None);
        assert_eq!(few_level_split(&[&big]), None);
    }
}
