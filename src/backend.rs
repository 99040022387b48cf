//! Choosing where the demeaning runs, once per command: `--backend auto|cpu|gpu`.
//!
//! * `cpu`: the exact f64 reference ([`CpuDemeaner`]).
//! * `gpu`: the best adapter ([`GpuDemeaner`]); no adapter is an error.
//! * `auto`: a GPU when one is present, is real hardware (not a software rasterizer such as
//!   lavapipe, which is slower than the CPU path) and the problem is big enough to gain
//!   (`AUTO_MIN_CELLS` observation × column cells); otherwise the CPU, with a one-line notice
//!   when a GPU was wanted but none was usable.
//!
//! A df64 GPU demeaner exists only once its adapter passed the df64 self-test
//! ([`crate::demean::selftest`]); on failure it comes back with native f64 (said in a notice
//! here), or not at all (`gpu`: the error; `auto`: a notice and the CPU).

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
        Backend::Gpu => Ok(Box::new(gpu(precision, notice)?)),
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
