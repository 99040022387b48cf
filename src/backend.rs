//! Choosing where the demeaning runs, once per command: `--backend auto|cpu|gpu`.
//!
//! * `cpu`: the exact f64 reference ([`CpuDemeaner`]).
//! * `gpu`: the best adapter ([`GpuDemeaner`]); no adapter is an error.
//! * `auto`: the backend measured faster for the command's [`Workload`] (README, "Choosing
//!   the backend"). On an H200 beside its 16-core CPU: single fits up to 10M rows ran faster on
//!   the CPU (the columns cross the bus twice and the CPU's exact paths are strong), and so did
//!   the wild bootstrap (its replicates cost O(G²) on the host whatever the backend); replicate
//!   engines resident on the device won from about 3·10⁸ observation × column × weight-vector
//!   cells (130k × 13 × 2000 `bdiff` vectors: 5.7× the CPU). So `auto` takes the GPU for
//!   resident replicate work of at least [`AUTO_MIN_REPLICATE_CELLS`] on real hardware (never a
//!   software rasterizer such as lavapipe), and the CPU otherwise, with a one-line notice when a
//!   GPU was wanted but none was usable.
//!
//! A df64 GPU demeaner exists only once its adapter passed the df64 self-test
//! ([`crate::demean::selftest`]); on failure it comes back with native f64 (said in a notice
//! here), or not at all (`gpu`: the error; `auto`: a notice and the CPU).

use crate::demean::{CpuDemeaner, Demeaner, GpuDemeaner};
use crate::error::Result;
use crate::gpu::{list_adapters, Precision};

/// Observation × column × weight-vector cells from which `auto` runs resident replicate work
/// on a GPU (below it the GPU's fixed costs — start-up, shader compilation, upload — exceed
/// the CPU's whole run).
pub const AUTO_MIN_REPLICATE_CELLS: usize = 300_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Auto,
    Cpu,
    Gpu,
}

/// What a command will run, for `auto`'s choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Fits, the wild bootstrap and the study: the CPU under `auto`.
    Fit,
    /// `vectors` replicate weight vectors of `cells` observation × column cells each;
    /// `resident` when the device engine ([`crate::inference::device`]) solves the structure.
    Replicates {
        cells: usize,
        vectors: usize,
        resident: bool,
    },
}

impl Workload {
    fn wants_gpu(self) -> bool {
        match self {
            Workload::Fit => false,
            Workload::Replicates {
                cells,
                vectors,
                resident,
            } => resident && cells.saturating_mul(vectors) >= AUTO_MIN_REPLICATE_CELLS,
        }
    }
}

/// The demeaner for `workload`. Notices go to `notice`.
pub fn choose(
    backend: Backend,
    precision: Precision,
    workload: Workload,
    notice: &mut dyn FnMut(String),
) -> Result<Box<dyn Demeaner>> {
    match backend {
        Backend::Cpu => Ok(Box::new(CpuDemeaner)),
        Backend::Gpu => Ok(Box::new(gpu(precision, notice)?)),
        Backend::Auto if !workload.wants_gpu() => Ok(Box::new(CpuDemeaner)),
        Backend::Auto => {
            let adapters = list_adapters();
            let hardware = adapters.iter().any(|a| a.device_type != "Cpu");
            if !hardware {
                notice(if adapters.is_empty() {
                    "backend auto: no GPU adapter found; using the CPU".to_string()
                } else {
                    format!(
                        "backend auto: only a software adapter ({}) is present; using the CPU",
                        adapters[0].name
                    )
                });
                return Ok(Box::new(CpuDemeaner));
            }
            match gpu(precision, notice) {
                Ok(g) => Ok(Box::new(g)),
                Err(e) => {
                    notice(format!("backend auto: the GPU could not be used ({e}); using the CPU"));
                    Ok(Box::new(CpuDemeaner))
                }
            }
        }
    }
}

/// The GPU demeaner, with a notice when the df64 self-test sent it to native f64.
fn gpu(precision: Precision, notice: &mut dyn FnMut(String)) -> Result<GpuDemeaner> {
    let g = GpuDemeaner::new(precision)?;
    if g.precision() != precision {
        let failure = g.context().df64_selftest.as_ref().and_then(|t| t.first_failure());
        notice(format!(
            "the df64 self-test failed on {} ({}); using native f64",
            g.context().info.name,
            failure.unwrap_or_default()
        ));
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_takes_the_gpu_only_for_large_resident_replicate_work() {
        let work = |vectors, resident| Workload::Replicates {
            cells: 130_000 * 13,
            vectors,
            resident,
        };
        assert!(work(2000, true).wants_gpu());
        assert!(!work(2000, false).wants_gpu());
        assert!(!work(100, true).wants_gpu());
        assert!(!Workload::Fit.wants_gpu());
    }
}
