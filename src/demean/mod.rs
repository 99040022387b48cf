//! Demeaning: projecting columns off the fixed effects ("partialling out", Frisch–Waugh–Lovell).
//!
//! * [`Absorb`] holds what every backend needs: the fixed effects of the estimation sample, the
//!   observation weights and the inverse weighted level sizes.
//! * [`Demeaner`] is the one interface backends implement. It takes a batch of columns (y, the
//!   regressors, later instruments and replicate-weighted copies) and returns them demeaned,
//!   with the iteration count and the columns that did not converge.
//! * [`cpu::CpuDemeaner`] is the exact f64 reference: alternating projections (one weighted
//!   group-mean sweep per effect, Gauss–Seidel order) accelerated by Irons–Tuck extrapolation,
//!   as fixest does; one effect is solved in a single sweep; columns run in parallel (rayon).
//! * [`strategy`] chooses the method above the backends (`--solver`): exact passes where the
//!   structure allows, else conjugate gradients ([`krylov`], written once over the kernels a
//!   backend supplies) with a preconditioner ladder ([`precond`]: Jacobi, the two largest
//!   effects' block, additive Schwarz with approximate Cholesky).
//! * [`refine`] makes every iterative answer accurate relative to the demeaned column itself
//!   (solving again on the result while its projection on the effects is above `tol`), so a
//!   column's level or between-group spread cannot hide an error in its within part.
//! * [`selftest`] admits a df64 GPU demeaner only after its adapter passes the start-up
//!   self-test (else native f64, the CPU or an error).

use rayon::prelude::*;

pub mod cpu;
pub mod gpu;
pub mod krylov;
pub mod precond;
pub mod refine;
pub mod resident;
pub mod selftest;
pub mod strategy;

use crate::error::Result;
use crate::fe::FixedEffect;

pub use cpu::CpuDemeaner;
pub use gpu::GpuDemeaner;
pub use strategy::{Method, Solver};

/// The fixed-effect structure and weights of one estimation sample.
pub struct Absorb<'a> {
    pub fes: Vec<&'a FixedEffect>,
    pub weights: Option<&'a [f64]>,
    /// `1 / Σ_{i∈g} w_i` for each effect and level.
    pub inv_weight_sums: Vec<Vec<f64>>,
    /// The columns may be nearly demeaned already (IRLS passes the last iteration's result
    /// plus the change of its input): the first CG solve is then held only to the accuracy the
    /// result needs ([`strategy`]'s warm-start rule). Off by [`Absorb::new`].
    pub warm_start: bool,
}

impl<'a> Absorb<'a> {
    pub fn new(fes: Vec<&'a FixedEffect>, weights: Option<&'a [f64]>) -> Self {
        let inv_weight_sums = fes
            .par_iter()
            .map(|fe| {
                fe.weight_sums(weights)
                    .into_iter()
                    .map(|s| if s > 0.0 { 1.0 / s } else { 0.0 })
                    .collect()
            })
            .collect();
        Absorb {
            fes,
            weights,
            inv_weight_sums,
            warm_start: false,
        }
    }

    /// This problem, its columns marked as possibly warm-started (see `warm_start`).
    pub fn warm_started(mut self) -> Self {
        self.warm_start = true;
        self
    }

    pub fn nobs(&self) -> usize {
        self.fes.first().map_or(0, |f| f.ids.len())
    }
}

/// The smallest `--tol` accepted: relative residuals of f64 sums over many rows stop falling
/// near 1e-15, so a tolerance below this could only be missed (or "met" by rounding).
pub const MIN_TOL: f64 = 1e-14;

/// Convergence settings shared by all backends.
#[derive(Debug, Clone, Copy)]
pub struct DemeanOptions {
    /// Conjugate gradients stop when the normal-equation residual ‖D'W(v − Dα)‖ is below
    /// `tol` times ‖D'Wv‖; alternating projections when the largest change of a sweep pair is
    /// below `tol` times the column's weighted standard deviation (fixest's rule). Default 1e-8.
    pub tol: f64,
    /// Maximum number of iterations (CG steps or sweeps) per column.
    pub max_iter: usize,
    /// The method (`--solver`).
    pub solver: Solver,
}

impl Default for DemeanOptions {
    fn default() -> Self {
        DemeanOptions {
            tol: 1e-8,
            max_iter: 10_000,
            solver: Solver::Auto,
        }
    }
}

/// Demeaned columns and convergence information.
#[derive(Debug, Clone)]
pub struct Demeaned {
    pub columns: Vec<Vec<f64>>,
    /// Largest number of sweeps any column needed.
    pub iterations: usize,
    /// Indices of columns that hit `max_iter` before converging.
    pub not_converged: Vec<usize>,
    /// What solved it.
    pub method: Method,
    /// Largest final relative normal-equation residual ‖D'W(v − Dα)‖ / ‖D'Wv‖ over the
    /// columns, `v` centred (0 for the exact paths; NaN where the method does not measure it);
    /// of the first solve when [`refine`] solved a column again.
    pub residual: f64,
}

impl Demeaned {
    /// The result of a method that needs no tolerance.
    pub fn exact(columns: Vec<Vec<f64>>, iterations: usize, method: Method) -> Demeaned {
        Demeaned {
            columns,
            iterations,
            not_converged: vec![],
            method,
            residual: 0.0,
        }
    }
}

/// A backend that projects columns off the fixed effects.
pub trait Demeaner: Send + Sync {
    /// What ran, for the `backend` field of results (e.g. `cpu (2 threads)` or an adapter name).
    fn name(&self) -> String;
    /// The df64 self-test's outcome on the device this backend runs on (`None` off the GPU;
    /// see [`selftest`]).
    fn df64_selftest(&self) -> Option<crate::gpu::selftest::Status> {
        None
    }
    /// The relative rounding of this backend's arithmetic (f64: 2⁻⁵²; df64 on a GPU about
    /// 2⁻⁴⁴): a column whose within part is a small fraction of its spread keeps only
    /// `roundoff × spread / within` of itself ([`refine::precise_enough`]).
    fn roundoff(&self) -> f64 {
        f64::EPSILON
    }
    /// Demean every column in `columns` (each of length `problem.nobs()`) with the method
    /// [`strategy::demean`] chooses; backends implement it as that one call.
    fn demean(&self, problem: &Absorb, columns: Vec<Vec<f64>>, opts: &DemeanOptions) -> Result<Demeaned>;

    /// Kernel: project every column off the single effect of `problem` (exact, one pass).
    fn one_pass(&self, problem: &Absorb, columns: &mut [Vec<f64>]) -> Result<()>;

    /// Kernel family: alternating projections with Irons–Tuck (`--solver ap`).
    fn alternating(&self, problem: &Absorb, columns: Vec<Vec<f64>>, opts: &DemeanOptions) -> Result<Demeaned>;

    /// Conjugate gradients ([`strategy::run_ladder`]) over this backend's [`krylov::FeOps`].
    fn krylov(&self, problem: &Absorb, columns: Vec<Vec<f64>>, opts: &DemeanOptions) -> Result<Demeaned>;

    /// Whether the backend gains from many lanes of the same rows in one batch (GPU). When it
    /// does not (CPU), the replicate engine drops zero-weight rows before demeaning instead.
    fn batches_lanes(&self) -> bool {
        false
    }

    /// The GPU behind this backend, for engines that keep data resident on it
    /// ([`crate::inference::device`]).
    fn gpu(&self) -> Option<&GpuDemeaner> {
        None
    }

    /// Demean `columns` under each weight vector (the replicate engine's batch: columns ×
    /// replicates). The default runs the replicates one after another; backends batch them.
    fn demean_batch(
        &self,
        fes: &[&FixedEffect],
        columns: &[Vec<f64>],
        weights: &[Vec<f64>],
        opts: &DemeanOptions,
    ) -> Result<Vec<Demeaned>> {
        weights
            .iter()
            .map(|w| self.demean(&Absorb::new(fes.to_vec(), Some(w)), columns.to_vec(), opts))
            .collect()
    }

    /// For each weight vector w, the weighted cross products Σ_i w_i x̃_p,i x̃_q,i of the
    /// demeaned columns, lower triangle in the order of [`pair_of`] — all the replicate engine
    /// needs for β (y first, then the regressors). The default demeans and multiplies on the
    /// host; the GPU forms them on the device and reads back c(c+1)/2 numbers per replicate.
    fn gram_batch(
        &self,
        fes: &[&FixedEffect],
        columns: &[Vec<f64>],
        weights: &[Vec<f64>],
        opts: &DemeanOptions,
    ) -> Result<Vec<Vec<f64>>> {
        Ok(grams_of(&self.demean_batch(fes, columns, weights, opts)?, weights))
    }
}

/// [`weighted_gram`] of every replicate's demeaned columns, in parallel.
pub fn grams_of(demeaned: &[Demeaned], weights: &[Vec<f64>]) -> Vec<Vec<f64>> {
    demeaned
        .par_iter()
        .zip(weights)
        .map(|(d, w)| weighted_gram(&d.columns, w))
        .collect()
}

/// The (p, q), q ≤ p, of lower-triangle position `k = p(p+1)/2 + q`.
pub fn pair_of(k: usize) -> (usize, usize) {
    let mut p = (((8 * k + 1) as f64).sqrt() as usize).saturating_sub(1) / 2;
    while p * (p + 1) / 2 > k {
        p -= 1;
    }
    while (p + 1) * (p + 2) / 2 <= k {
        p += 1;
    }
    (p, k - p * (p + 1) / 2)
}

/// Σ_i w_i x_p,i x_q,i for q ≤ p, in [`pair_of`] order.
pub fn weighted_gram(columns: &[Vec<f64>], w: &[f64]) -> Vec<f64> {
    let c = columns.len();
    let mut g = Vec::with_capacity(c * (c + 1) / 2);
    for p in 0..c {
        for q in 0..=p {
            g.push(
                columns[p]
                    .iter()
                    .zip(&columns[q])
                    .zip(w)
                    .map(|((a, b), wi)| wi * a * b)
                    .sum(),
            );
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_positions_round_trip() {
        let mut k = 0;
        for p in 0..200 {
            for q in 0..=p {
                assert_eq!(pair_of(k), (p, q));
                k += 1;
            }
        }
        let g = weighted_gram(&[vec![1.0, 2.0], vec![3.0, 4.0]], &[1.0, 0.5]);
        assert_eq!(g, vec![1.0 + 2.0, 3.0 + 4.0, 9.0 + 8.0]);
    }
}
