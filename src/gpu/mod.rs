//! The GPU backend's plumbing: adapter and device ([`context`]), buffers ([`buffers`]), the
//! compiled WGSL kernels ([`pipelines`]) and the start-up check that the adapter's f32
//! arithmetic carries df64 ([`selftest`]). The demeaning algorithm that drives them lives in
//! [`crate::demean::gpu`]; the kernels live in `shaders/`, one family per file.

pub mod buffers;
pub mod context;
pub mod pipelines;
pub mod random;
pub mod selftest;

pub use context::{list_adapters, AdapterRow, GpuContext, Precision};
