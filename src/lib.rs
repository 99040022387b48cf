//! fegpu: high-dimensional fixed-effect regressions with an exact f64 CPU path and WGSL GPU
//! kernels behind one solver.
//!
//! Data flows one way: [`data::load`] (CSV/Parquet through polars, only the used columns) →
//! [`terms`] (each formula term as named columns: numeric, factors, `i()`) → [`data::prepare`]
//! (missing values, singletons) → [`demean`] (partialling out
//! the fixed effects, behind the [`demean::Demeaner`] trait) → [`estimate`] (OLS, variance,
//! small-sample conventions) → [`report`] (text, Markdown, LaTeX, CSV, JSON tables).
//! The demeaning method is chosen once above the backends ([`demean::strategy`]: exact passes,
//! or preconditioned conjugate gradients written once in [`demean::krylov`], refined until each
//! demeaned column is accurate relative to itself, [`demean::refine`]); the kernels run on
//! the CPU ([`demean::CpuDemeaner`], exact f64) or on any Vulkan, Metal or DX12 GPU
//! ([`demean::GpuDemeaner`], WGSL kernels in `shaders/`), chosen once by [`backend`].
//! The resampling commands (`bdiff`, `boot`, and `merge` of their shards) are library functions
//! in [`resampling`], above the engines in [`inference`]. [`timing`] splits a command's wall time
//! into those stages.

pub mod backend;
pub mod bench;
pub mod data;
pub mod demean;
pub mod error;
pub mod estimate;
pub mod fe;
pub mod fitted;
pub mod formula;
pub mod gpu;
pub mod inference;
pub mod linalg;
pub mod memory;
pub mod progress;

pub mod report;
pub mod resampling;
pub mod rng;
pub mod stats;
pub mod study;
pub mod terms;
pub use study::replicate;
pub mod timing;

pub use error::{Error, Result};
