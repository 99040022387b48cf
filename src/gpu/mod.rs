//! The GPU backend's plumbing: adapter and device ([`context`]), buffers ([`buffers`]) and the
//! compiled WGSL kernels ([`pipelines`]). The demeaning algorithm that drives them lives in
//! [`crate::demean::gpu`]; the kernels live in `shaders/`, one family per file.

pub mod buffers;
pub mod context;
pub mod pipelines;
pub mod random;

pub use context::{list_adapters, AdapterRow, GpuContext, Precision};
