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

use super::krylov::FeOps;
use super::precond::{Layout, Preconditioner};
use super::{strategy, Absorb, DemeanOptions, Demeaned, Demeaner};
use crate::error::Result;
use crate::fe::FixedEffect;
use crate::linalg::dot;

/// The exact f64 CPU backend.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuDemeaner;

impl Demeaner for CpuDemeaner {
    fn name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn demean(&self, problem: &Absorb, columns: Vec<Vec<f64>>, opts: &DemeanOptions) -> Result<Demeaned> {
        strategy::demean(self, problem, columns, opts)
    }

    fn one_pass(&self, problem: &Absorb, columns: &mut [Vec<f64>]) -> Result<()> {
        if problem.fes[0].in_runs() {
            columns.par_iter_mut().for_each(|c| project_runs(problem, c));
        } else {
            columns
                .par_iter_mut()
                .for_each(|c| project(problem, 0, c, &mut Vec::new()));
        }
        Ok(())
    }

    fn alternating(&self, problem: &Absorb, columns: Vec<Vec<f64>>, opts: &DemeanOptions) -> Result<Demeaned> {
        Ok(demean_iterative(problem, columns, opts))
    }

    fn krylov(&self, problem: &Absorb, mut columns: Vec<Vec<f64>>, opts: &DemeanOptions) -> Result<Demeaned> {
        let mut ops = CpuOps::new(&problem.fes, problem.weights, &mut columns);
        let (outcome, used) = strategy::run_ladder(&mut ops, &problem.fes, &[problem.weights], opts)?;
        Ok(strategy::krylov_result(columns, &outcome, used))
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
        method: strategy::Method {
            solver: "alternating projections".to_string(),
            preconditioner: None,
        },
        residual: f64::NAN,
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

/// [`project`] on effect 0 when its levels are contiguous runs: each run's mean is formed and
/// subtracted while the run is in cache, one read and one write of `x` instead of two reads.
/// The sums are the same additions in the same order, so the result is bit-identical.
fn project_runs(problem: &Absorb, x: &mut [f64]) {
    let fe = problem.fes[0];
    let inv = &problem.inv_weight_sums[0];
    let mut start = 0;
    while start < x.len() {
        let g = fe.ids[start];
        let len = fe.ids[start..].iter().position(|&h| h != g).unwrap_or(x.len() - start);
        let run = &mut x[start..start + len];
        let sum: f64 = match problem.weights {
            Some(w) => run
                .iter()
                .zip(&w[start..start + len])
                .fold(0.0, |s, (xi, wi)| s + wi * xi),
            None => run.iter().fold(0.0, |s, xi| s + xi),
        };
        let mean = sum * inv[g as usize];
        run.iter_mut().for_each(|xi| *xi -= mean);
        start += len;
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

/// `q ← D'WD p` over rows sorted by the `run` effect (ids, offset into the coefficients), with
/// `M` other effects: per row `t = w (p_run + Σ p_k)`, added to each effect's level; the run
/// effect's coefficient is read and its sum written once per run of equal ids.
fn normal_runs<const M: usize>(
    run: (&[u32], usize),
    others: [(&[u32], usize); M],
    weights: Option<&[f64]>,
    p: &[f64],
    q: &mut [f64],
) {
    let (ids, off) = run;
    let n = ids.len();
    let mut i = 0;
    while i < n {
        let g = ids[i] as usize;
        let pg = p[off + g];
        let mut acc = 0.0;
        while i < n && ids[i] as usize == g {
            let mut v = pg;
            for (o, oo) in &others {
                v += p[oo + o[i] as usize];
            }
            let t = match weights {
                Some(w) => w[i] * v,
                None => v,
            };
            acc += t;
            for (o, oo) in &others {
                q[oo + o[i] as usize] += t;
            }
            i += 1;
        }
        q[off + g] += acc;
    }
}

/// The CPU's conjugate-gradient kernels: lanes are the columns under one weight vector,
/// coefficient vectors are host `Vec<f64>`s in [`Layout`] order.
pub struct CpuOps<'a> {
    fes: Vec<&'a FixedEffect>,
    weights: Option<&'a [f64]>,
    layout: Layout,
    columns: &'a mut [Vec<f64>],
    active: Vec<bool>,
    /// An effect whose ids never decrease along the rows (the sample is sorted by its largest
    /// effect): its sums run along the rows in a register instead of through memory.
    sorted: Option<usize>,
}

impl<'a> CpuOps<'a> {
    pub fn new(fes: &[&'a FixedEffect], weights: Option<&'a [f64]>, columns: &'a mut [Vec<f64>]) -> CpuOps<'a> {
        let active = vec![true; columns.len()];
        let sorted = (2..=4)
            .contains(&fes.len())
            .then(|| fes.iter().position(|f| f.ids.windows(2).all(|p| p[0] <= p[1])))
            .flatten();
        CpuOps {
            layout: Layout::new(fes),
            fes: fes.to_vec(),
            weights,
            columns,
            active,
            sorted,
        }
    }

    /// `q ← D'WD p` for one lane. With a sorted effect, the rows are taken in its runs: its
    /// coefficient is read once per run and its sum kept in a register ([`normal_runs`]).
    fn normal_lane(&self, p: &[f64], q: &mut [f64]) {
        let Some(s) = self.sorted else {
            return self.scatter(q, |i| self.gather(p, i));
        };
        q.iter_mut().for_each(|v| *v = 0.0);
        let offs = &self.layout.offsets;
        let others: Vec<(&[u32], usize)> = (0..self.fes.len())
            .filter(|&k| k != s)
            .map(|k| (self.fes[k].ids.as_slice(), offs[k]))
            .collect();
        let run = (self.fes[s].ids.as_slice(), offs[s]);
        match others.as_slice() {
            [a] => normal_runs(run, [*a], self.weights, p, q),
            [a, b] => normal_runs(run, [*a, *b], self.weights, p, q),
            [a, b, c] => normal_runs(run, [*a, *b, *c], self.weights, p, q),
            _ => unreachable!("2 to 4 effects"),
        }
    }

    /// `out ← D'W t` where `t_i` is `value(i)`.
    fn scatter(&self, out: &mut [f64], value: impl Fn(usize) -> f64) {
        out.iter_mut().for_each(|v| *v = 0.0);
        let n = self.fes[0].ids.len();
        for i in 0..n {
            let t = match self.weights {
                Some(w) => w[i] * value(i),
                None => value(i),
            };
            for (fe, &o) in self.fes.iter().zip(&self.layout.offsets) {
                out[o + fe.ids[i] as usize] += t;
            }
        }
    }

    /// `Σ_k α_k[ids_k[i]]`.
    #[inline]
    fn gather(&self, alpha: &[f64], i: usize) -> f64 {
        self.fes
            .iter()
            .zip(&self.layout.offsets)
            .map(|(fe, &o)| alpha[o + fe.ids[i] as usize])
            .sum()
    }

    /// Run `f(lane, …)` on the active lanes in parallel.
    fn each<T: Send, F: Fn(usize, &mut T) + Sync + Send>(&self, out: &mut [T], f: F) {
        out.par_iter_mut()
            .enumerate()
            .filter(|(l, _)| self.active[*l])
            .for_each(|(l, o)| f(l, o));
    }
}

impl FeOps for CpuOps<'_> {
    type Coef = Vec<Vec<f64>>;

    fn lanes(&self) -> usize {
        self.columns.len()
    }

    fn zeros(&self) -> Result<Self::Coef> {
        Ok(vec![vec![0.0; self.layout.total]; self.columns.len()])
    }

    fn rhs(&mut self, b: &mut Self::Coef) -> Result<()> {
        let cols = &*self.columns;
        self.each(b, |l, bl| self.scatter(bl, |i| cols[l][i]));
        Ok(())
    }

    fn normal(&mut self, p: &Self::Coef, q: &mut Self::Coef) -> Result<()> {
        self.each(q, |l, ql| self.normal_lane(&p[l], ql));
        Ok(())
    }

    fn precondition(&mut self, m: &Preconditioner, r: &Self::Coef, z: &mut Self::Coef) -> Result<()> {
        let errors: Vec<Result<()>> = z
            .par_iter_mut()
            .enumerate()
            .filter(|(l, _)| self.active[*l])
            .map(|(l, zl)| m.apply(0, &r[l], zl))
            .collect();
        errors.into_iter().collect()
    }

    fn dot(&mut self, a: &Self::Coef, b: &Self::Coef) -> Result<Vec<f64>> {
        Ok(a.par_iter().zip(b).map(|(x, y)| dot(x, y)).collect())
    }

    fn axpy(&mut self, s: &[f64], x: &Self::Coef, y: &mut Self::Coef) -> Result<()> {
        self.each(y, |l, yl| yl.iter_mut().zip(&x[l]).for_each(|(a, b)| *a += s[l] * b));
        Ok(())
    }

    fn xpay(&mut self, x: &Self::Coef, s: &[f64], y: &mut Self::Coef) -> Result<()> {
        self.each(y, |l, yl| {
            yl.iter_mut().zip(&x[l]).for_each(|(a, b)| *a = b + s[l] * *a)
        });
        Ok(())
    }

    fn copy(&mut self, x: &Self::Coef, y: &mut Self::Coef) -> Result<()> {
        self.each(y, |l, yl| yl.copy_from_slice(&x[l]));
        Ok(())
    }

    fn set_active(&mut self, active: &[bool]) -> Result<()> {
        self.active.copy_from_slice(active);
        Ok(())
    }

    fn finish(&mut self, alpha: &Self::Coef) -> Result<()> {
        let (fes, offsets) = (&self.fes, &self.layout.offsets);
        self.columns.par_iter_mut().zip(alpha).for_each(|(col, a)| {
            for (i, v) in col.iter_mut().enumerate() {
                *v -= fes
                    .iter()
                    .zip(offsets)
                    .map(|(fe, &o)| a[o + fe.ids[i] as usize])
                    .sum::<f64>();
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demean::strategy::few_level_split;
    use crate::rng::Stream;

    /// The dummy path equals alternating projections on both effects, with unequal and zero
    /// weights, a nested effect and an unweighted case; rows in any order, and sorted by the
    /// large effect (its one-pass then runs over contiguous levels).
    #[test]
    fn few_level_effects_as_dummies_equal_alternating_projections() {
        let mut s = Stream::new(8, 3);
        let n = 3000;
        let shuffled: Vec<u32> = (0..n).map(|_| s.below(300)).collect();
        let mut sorted = shuffled.clone();
        sorted.sort_unstable();
        for ids in [shuffled, sorted] {
            dummies_match_alternating_projections(ids, &mut s);
        }
    }

    fn dummies_match_alternating_projections(big_ids: Vec<u32>, s: &mut Stream) {
        let n = big_ids.len();
        let big = FixedEffect {
            name: "firm".into(),
            ids: big_ids,
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
            ..Default::default()
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
    }

    #[test]
    fn a_pass_over_contiguous_levels_equals_the_scattered_pass_bit_for_bit() {
        let mut s = Stream::new(9, 1);
        let n = 2000;
        let mut ids: Vec<u32> = (0..n).map(|_| s.below(150)).collect();
        ids.sort_unstable();
        let fe = FixedEffect {
            name: "g".into(),
            ids,
            levels: 150,
        };
        assert!(fe.in_runs());
        let w: Vec<f64> = (0..n).map(|_| s.uniform()).collect();
        let x: Vec<f64> = (0..n).map(|_| 10.0 * s.normal() + 3.0).collect();
        for weights in [None, Some(w.as_slice())] {
            let problem = Absorb::new(vec![&fe], weights);
            let mut runs = vec![x.clone()];
            CpuDemeaner.one_pass(&problem, &mut runs).unwrap();
            let mut scattered = x.clone();
            project(&problem, 0, &mut scattered, &mut Vec::new());
            assert_eq!(runs[0], scattered);
        }
        let split = FixedEffect {
            name: "h".into(),
            ids: vec![0, 0, 1, 0],
            levels: 2,
        };
        assert!(!split.in_runs());
    }

    #[test]
    fn few_level_split_needs_one_large_effect_and_few_dummies() {
        let mut s = Stream::new(8, 4);
        let n = 3000;
        let big = FixedEffect {
            name: "firm".into(),
            ids: (0..n).map(|_| s.below(300)).collect(),
            levels: 300,
        };
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
