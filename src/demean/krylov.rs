//! Preconditioned conjugate gradients on the fixed-effect normal equations, written once over
//! the few kernels a backend supplies ([`FeOps`]) — FixedEffects.jl's design.
//!
//! For one lane (a column v under one weight vector w) the projection residual is
//! `v − Dα` with `α` solving `D'WD α = D'W v` (singular when effects overlap, but consistent:
//! any solution gives the same `Dα` on rows with weight). PCG minimises the error in the
//! `D'WD` norm, which is exactly the weighted error of the demeaned column, so it converges
//! on weakly connected graphs where alternating projections creep.
//!
//! **Stopping rule** (on the projection itself, not on the change per step): a lane stops when
//! the normal-equation residual `‖D'W(v − Dα)‖ ≤ tol · ‖D'Wv‖`. The recursively updated
//! residual drifts from the true one in floating point, so a lane that meets the rule is
//! checked once more with a freshly computed `b − D'WDα`; if that misses, PCG restarts from
//! there. The reported residual is the true one.
//!
//! **Stalls**: a lane whose residual has not reached a new low for [`stall_window`]
//! iterations (rounding, or an approximate preconditioner that lost definiteness) stops, not
//! converged; every unconverged lane ends at its best iterate, never at a diverged last one.
//!
//! Lanes run in lock step; a converged lane drops out of every kernel ([`FeOps::set_active`]).
//! Per-lane scalars (step lengths, norms) live on the host: one small read-back per dot.

use super::precond::Preconditioner;

/// The kernels a backend provides. Coefficient vectors hold every effect's levels
/// concatenated, per lane; observation vectors hold every lane's column.
pub trait FeOps {
    /// A coefficient-space vector for every lane.
    type Coef;
    fn lanes(&self) -> usize;
    fn zeros(&self) -> crate::Result<Self::Coef>;
    /// `b ← D'W v` for the lanes' columns (the right-hand side).
    fn rhs(&mut self, b: &mut Self::Coef) -> crate::Result<()>;
    /// `q ← D'WD p`.
    fn normal(&mut self, p: &Self::Coef, q: &mut Self::Coef) -> crate::Result<()>;
    /// `z ← M⁻¹ r`.
    fn precondition(&mut self, m: &Preconditioner, r: &Self::Coef, z: &mut Self::Coef) -> crate::Result<()>;
    /// Per-lane dot products `a·b` (every lane; inactive lanes may return anything).
    fn dot(&mut self, a: &Self::Coef, b: &Self::Coef) -> crate::Result<Vec<f64>>;
    /// `y ← y + s_l x` per lane.
    fn axpy(&mut self, s: &[f64], x: &Self::Coef, y: &mut Self::Coef) -> crate::Result<()>;
    /// `y ← x + s_l y` per lane.
    fn xpay(&mut self, x: &Self::Coef, s: &[f64], y: &mut Self::Coef) -> crate::Result<()>;
    /// `y ← x`.
    fn copy(&mut self, x: &Self::Coef, y: &mut Self::Coef) -> crate::Result<()>;
    /// Which lanes the kernels work on.
    fn set_active(&mut self, active: &[bool]) -> crate::Result<()>;
    /// The lanes' columns become `v − Dα` (every lane).
    fn finish(&mut self, alpha: &Self::Coef) -> crate::Result<()>;
}

/// Restarts from the true residual before a lane is judged to sit at its rounding floor (it
/// then stops, not converged: a residual above `tol` is never reported as converged).
const MAX_RESTARTS: usize = 4;
/// Iterations without a new smallest residual after which a lane has stalled (rounding, or a
/// preconditioner that lost definiteness): it stops, not converged, at its best iterate.
fn stall_window(it: usize) -> usize {
    100 + it / 2
}

/// `t = b − Aα` (computed afresh, `q` is scratch) for the active lanes, and ‖t‖ / ‖b‖ per lane.
fn true_residual<K: FeOps>(
    ops: &mut K,
    alpha: &K::Coef,
    b: &K::Coef,
    q: &mut K::Coef,
    b_norm: &[f64],
) -> crate::Result<(K::Coef, Vec<f64>)> {
    ops.normal(alpha, q)?;
    let mut t = ops.zeros()?;
    ops.copy(b, &mut t)?;
    ops.axpy(&vec![-1.0; b_norm.len()], q, &mut t)?;
    let tt = ops.dot(&t, &t)?;
    let rel = tt.iter().zip(b_norm).map(|(x, n)| x.sqrt() / n).collect();
    Ok((t, rel))
}

/// Whether a lane whose relative residuals so far are `history` would still be above `tol`
/// after `budget` iterations at its latest rate (over its last two steps: CG's first steps
/// remove the easy directions fast, so any longer average flatters a lane about to stall).
fn too_slow(history: &[f64], tol: f64, budget: usize) -> bool {
    let it = history.len();
    if it < 4 {
        return false;
    }
    let (a, b) = (history[it - 3], history[it - 1]);
    let rate = (b / a).ln() / 2.0;
    rate >= 0.0 || !rate.is_finite() || it as f64 + (tol / b).ln() / rate > budget as f64
}

/// What one PCG run did, per lane.
#[derive(Debug, Clone)]
pub struct KrylovOutcome {
    pub iterations: Vec<usize>,
    pub converged: Vec<bool>,
    /// Final true relative residual `‖D'W(v − Dα)‖ / ‖D'Wv‖` (0 for a zero right-hand side).
    pub residual: Vec<f64>,
}

/// Solve every lane with preconditioner `m`, starting from `alpha` (zero or a warm start),
/// for at most `max_iter` iterations; `alpha` ends as the solution.
///
/// `probe`: from this many iterations on (every second), a lane whose residual is falling too
/// slowly to reach `tol` within `max_iter` at its recent geometric rate is stopped
/// (unconverged), so that a stronger preconditioner can take over before the budget is spent.
pub fn pcg<K: FeOps>(
    ops: &mut K,
    m: &Preconditioner,
    alpha: &mut K::Coef,
    tol: f64,
    max_iter: usize,
    probe: Option<usize>,
) -> crate::Result<KrylovOutcome> {
    let lanes = ops.lanes();
    let mut b = ops.zeros()?;
    ops.set_active(&vec![true; lanes])?;
    ops.rhs(&mut b)?;
    let b_norm: Vec<f64> = ops.dot(&b, &b)?.into_iter().map(f64::sqrt).collect();
    // r = b − Aα
    let mut r = ops.zeros()?;
    let mut q = ops.zeros()?;
    ops.normal(alpha, &mut q)?;
    ops.copy(&b, &mut r)?;
    ops.axpy(&vec![-1.0; lanes], &q, &mut r)?;
    let mut active: Vec<bool> = b_norm.iter().map(|&n| n > 0.0 && n.is_finite()).collect();
    let mut out = KrylovOutcome {
        iterations: vec![0; lanes],
        converged: b_norm.iter().map(|&n| n == 0.0).collect(),
        residual: vec![0.0; lanes],
    };
    // a warm start may already be the answer
    let r0 = ops.dot(&r, &r)?;
    for l in 0..lanes {
        if active[l] {
            out.residual[l] = r0[l].sqrt() / b_norm[l];
            if out.residual[l] <= tol {
                active[l] = false;
                out.converged[l] = true;
            }
        }
    }
    let mut z = ops.zeros()?;
    let mut p = ops.zeros()?;
    let mut rz = vec![0.0; lanes];
    let mut restart = active.clone();
    let mut restarts = vec![0usize; lanes];
    // relative residual after each iteration, per lane (for the probe)
    let mut history: Vec<Vec<f64>> = vec![Vec::new(); lanes];
    // each lane's smallest residual so far, the iteration it was reached and its coefficients
    let mut best = ops.zeros()?;
    ops.copy(alpha, &mut best)?;
    let mut best_rel: Vec<f64> = out.residual.clone();
    let mut best_at = vec![0usize; lanes];
    let mut it = 0;
    while active.iter().any(|&a| a) && it < max_iter {
        ops.set_active(&active)?;
        if restart.iter().any(|&s| s) {
            // (re)start the lanes that need it: p = z = M⁻¹r
            ops.set_active(&restart)?;
            ops.precondition(m, &r, &mut z)?;
            ops.copy(&z, &mut p)?;
            let d = ops.dot(&r, &z)?;
            for l in 0..lanes {
                if restart[l] {
                    rz[l] = d[l];
                }
            }
            restart = vec![false; lanes];
            ops.set_active(&active)?;
        }
        ops.normal(&p, &mut q)?;
        let pq = ops.dot(&p, &q)?;
        let step: Vec<f64> = (0..lanes)
            .map(|l| if active[l] && pq[l] > 0.0 { rz[l] / pq[l] } else { 0.0 })
            .collect();
        ops.axpy(&step, &p, alpha)?;
        let neg: Vec<f64> = step.iter().map(|s| -s).collect();
        ops.axpy(&neg, &q, &mut r)?;
        it += 1;
        let rr = ops.dot(&r, &r)?;
        let mut check = vec![false; lanes];
        for l in 0..lanes {
            if !active[l] {
                continue;
            }
            out.iterations[l] = it;
            let rel = rr[l].sqrt() / b_norm[l];
            if rel <= tol || pq[l] <= 0.0 || !rel.is_finite() {
                check[l] = true;
            } else if probe.is_some_and(|p| it >= p && it % 2 == 0) && too_slow(&history[l], tol, max_iter) {
                active[l] = false;
                out.residual[l] = rel;
            }
            history[l].push(rel);
            if it - best_at[l] > stall_window(it) && !check[l] {
                active[l] = false;
                out.residual[l] = rel;
            }
        }
        keep_best(
            ops,
            alpha,
            &mut best,
            &rr,
            &b_norm,
            &active,
            &mut best_rel,
            &mut best_at,
            it,
        )?;
        if check.iter().any(|&c| c) {
            // confirm on the true residual b − Aα
            ops.set_active(&check)?;
            let (t, true_rel) = true_residual(ops, alpha, &b, &mut q, &b_norm)?;
            for l in 0..lanes {
                if !check[l] {
                    continue;
                }
                let rel = true_rel[l];
                out.residual[l] = rel;
                restarts[l] += 1;
                if rel <= tol {
                    active[l] = false;
                    out.converged[l] = true;
                } else if !rel.is_finite() {
                    active[l] = false;
                } else if restarts[l] > MAX_RESTARTS {
                    // the recursion keeps claiming convergence the true residual does not
                    // show: rounding sets a floor above `tol`
                    active[l] = false;
                } else {
                    restart[l] = true;
                }
            }
            if restart.iter().any(|&s| s) {
                ops.set_active(&restart)?;
                ops.copy(&t, &mut r)?;
            }
            // the other lanes go on below; restarting lanes are set up afresh next iteration
        }
        ops.set_active(&active)?;
        ops.precondition(m, &r, &mut z)?;
        let rz_new = ops.dot(&r, &z)?;
        let beta: Vec<f64> = (0..lanes)
            .map(|l| {
                if active[l] && rz[l] != 0.0 {
                    rz_new[l] / rz[l]
                } else {
                    0.0
                }
            })
            .collect();
        for l in 0..lanes {
            if active[l] {
                rz[l] = rz_new[l];
            }
        }
        ops.xpay(&z, &beta, &mut p)?;
    }
    // lanes that did not converge end at their best iterate, with its true residual
    let open: Vec<bool> = out.converged.iter().map(|&c| !c).collect();
    if open.iter().any(|&o| o) {
        ops.set_active(&open)?;
        let (_, now) = true_residual(ops, alpha, &b, &mut q, &b_norm)?;
        let (_, then) = true_residual(ops, &best, &b, &mut q, &b_norm)?;
        let restore: Vec<bool> = (0..lanes).map(|l| open[l] && then[l] < now[l]).collect();
        for l in 0..lanes {
            if open[l] {
                out.residual[l] = if restore[l] { then[l] } else { now[l] };
            }
        }
        if restore.iter().any(|&r| r) {
            ops.set_active(&restore)?;
            ops.copy(&best, alpha)?;
        }
    }
    ops.set_active(&vec![true; lanes])?;
    Ok(out)
}

/// Copy `alpha` into `best` for the active lanes whose recursive residual `rr` is a new low.
#[allow(clippy::too_many_arguments)]
fn keep_best<K: FeOps>(
    ops: &mut K,
    alpha: &K::Coef,
    best: &mut K::Coef,
    rr: &[f64],
    b_norm: &[f64],
    active: &[bool],
    best_rel: &mut [f64],
    best_at: &mut [usize],
    it: usize,
) -> crate::Result<()> {
    let mut improved = vec![false; rr.len()];
    for l in 0..rr.len() {
        let rel = rr[l].sqrt() / b_norm[l];
        if active[l] && rel < best_rel[l] {
            improved[l] = true;
            best_rel[l] = rel;
            best_at[l] = it;
        }
    }
    if improved.iter().any(|&i| i) {
        ops.set_active(&improved)?;
        ops.copy(alpha, best)?;
    }
    Ok(())
}
