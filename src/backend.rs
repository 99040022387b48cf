//! Choosing where the demeaning runs, once per command: `--backend auto|cpu|gpu`.
//!
//! * `cpu`: the exact f64 reference ([`CpuDemeaner`]).
//! * `gpu`: the best adapter ([`GpuDemeaner`]); no adapter is an error.
//! * `auto`: a GPU when one is present, is real hardware (not a software rasterizer such as
//!   lavapipe, which is slower than the CPU path) and the problem is big enough to gain
//!   (`AUTO_MIN_CELLS` observation × column cells); otherwise the CPU, with a one-line notice
//!   when a GPU was wanted but none was usable.

use crate::demean::{CpuDemeaner, Demeaner, GpuDemeaner};
use crate::error::Result;
use crate::gpu::{list_adapters, Precision};

/// Observation × column cells from which `auto` prefers a GPU.
pub const AUTO_MIN_CELLS: usize = 2_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Auto,
    Cpu,
    Gpu,
}

/// The demeaner for a problem of `cells` observation × column cells. Notices go to `notice`.
pub fn choose(
    backend: Backend,
    precision: Precision,
    cells: usize,
    notice: &mut dyn FnMut(String),
) -> Result<Box<dyn Demeaner>> {
    match backend {
        Backend::Cpu => Ok(Box::new(CpuDemeaner)),
        Backend::Gpu => Ok(Box::new(GpuDemeaner::new(precision)?)),
        Backend::Auto => {
            if cells < AUTO_MIN_CELLS {
                return Ok(Box::new(CpuDemeaner));
            }
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
            match GpuDemeaner::new(precision) {
                Ok(g) => Ok(Box::new(g)),
                Err(e) => {
                    notice(format!("backend auto: the GPU could not be used ({e}); using the CPU"));
                    Ok(Box::new(CpuDemeaner))
                }
            }
        }
    }
}
