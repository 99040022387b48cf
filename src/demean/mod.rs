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

pub mod cpu;
pub mod gpu;

use crate::error::Result;
use crate::fe::FixedEffect;

pub use cpu::CpuDemeaner;
pub use gpu::GpuDemeaner;

/// The fixed-effect structure and weights of one estimation sample.
pub struct Absorb<'a> {
    pub fes: Vec<&'a FixedEffect>,
    pub weights: Option<&'a [f64]>,
    /// `1 / Σ_{i∈g} w_i` for each effect and level.
    pub inv_weight_sums: Vec<Vec<f64>>,
}

impl<'a> Absorb<'a> {
    pub fn new(fes: Vec<&'a FixedEffect>, weights: Option<&'a [f64]>) -> Self {
        let inv_weight_sums = fes
            .iter()
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
        }
    }

    pub fn nobs(&self) -> usize {
        self.fes.first().map_or(0, |f| f.ids.len())
    }
}

/// Convergence settings shared by all backends.
#[derive(Debug, Clone, Copy)]
pub struct DemeanOptions {
    /// Stop when the largest change of a sweep pair is below `tol` times the column's weighted
    /// standard deviation (reghdfe and fixest default 1e-8).
    pub tol: f64,
    /// Maximum number of sweeps per column.
    pub max_iter: usize,
}

impl Default for DemeanOptions {
    fn default() -> Self {
        DemeanOptions {
            tol: 1e-8,
            max_iter: 10_000,
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
}

/// A backend that projects columns off the fixed effects.
pub trait Demeaner: Send + Sync {
    /// What ran, for the `backend` field of results (e.g. `cpu (2 threads)` or an adapter name).
    fn name(&self) -> String;
    /// Demean every column in `columns` (each of length `problem.nobs()`).
    fn demean(&self, problem: &Absorb, columns: Vec<Vec<f64>>, opts: &DemeanOptions) -> Result<Demeaned>;

    /// Whether the backend gains from many lanes of the same rows in one batch (GPU). When it
    /// does not (CPU), the replicate engine drops zero-weight rows before demeaning instead.
    fn batches_lanes(&self) -> bool {
        false
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
}
