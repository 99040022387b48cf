//! The WGSL kernels, compiled once per device and precision. Each kernel family in `shaders/`
//! is prefixed with the prelude of the chosen real type (df64 or f64), which supplies `R` and
//! its arithmetic, so the kernels are written once.

use super::context::{GpuContext, Precision};
use crate::error::{Error, Result};

pub(crate) const PARAMS: &str = include_str!("../../shaders/params.wgsl");
pub(crate) const PRELUDE_DF64: &str = include_str!("../../shaders/real_df64.wgsl");
const PRELUDE_F64: &str = include_str!("../../shaders/real_f64.wgsl");
const GROUP_SUMS: &str = include_str!("../../shaders/group_sums.wgsl");
const SWEEP: &str = include_str!("../../shaders/sweep.wgsl");
const REDUCE: &str = include_str!("../../shaders/reduce.wgsl");
const GRAM: &str = include_str!("../../shaders/gram.wgsl");
/// Packed pair positions, prepended to the cross-product kernel families.
pub(crate) const PAIRS: &str = include_str!("../../shaders/pairs.wgsl");
const KRYLOV: &str = include_str!("../../shaders/krylov.wgsl");
const WEIGHTS_REAL: &str = include_str!("../../shaders/weights_real.wgsl");
const WEIGHTS_F16: &str = include_str!("../../shaders/weights_f16.wgsl");

/// How observation weights are stored on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightStorage {
    /// As reals (df64 or f64), 8 bytes each.
    Real,
    /// As f16, 2 bytes each; only when every weight is exactly an f16 value.
    F16,
}

/// Threads per workgroup of the element-wise and group kernels (must match the shaders).
pub const WORKGROUP: u32 = 64;
/// Observations per reduction chunk (must match `CHUNK` in reduce.wgsl).
pub const REDUCE_CHUNK: u32 = 4096;
/// Threads per dispatch row: a dispatch of more than 65,535 workgroups becomes 2-D.
pub const ROW_STRIDE: u32 = 65_535 * WORKGROUP;

/// Uniform parameters shared by all kernels (layout of `Params` in the shaders).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n: u32,
    pub lanes: u32,
    pub n_cols: u32,
    pub levels: u32,
    pub n_seg: u32,
    pub row_stride: u32,
    pub n_chunks: u32,
    pub mode: u32,
    pub max_iter: u32,
    pub tol: f32,
    pub pad0: u32,
    /// Always 0: the df64 prelude XORs with it to stop algebraic rewrites.
    pub zero: u32,
    /// krylov.wgsl: offset of the current effect in a lane's coefficient vector.
    pub offset: u32,
    /// krylov.wgsl: coefficients per lane.
    pub total: u32,
    pub pad1: u32,
    pub pad2: u32,
}

pub struct Kernels {
    pub segment_sums: wgpu::ComputePipeline,
    pub level_means: wgpu::ComputePipeline,
    pub subtract_means: wgpu::ComputePipeline,
    pub save_x0: wgpu::ComputePipeline,
    pub save_x1: wgpu::ComputePipeline,
    pub extrapolate: wgpu::ComputePipeline,
    pub lane_partials: wgpu::ComputePipeline,
    pub finish: wgpu::ComputePipeline,
    pub gram_partials: wgpu::ComputePipeline,
    pub gram_finish: wgpu::ComputePipeline,
    /// The conjugate-gradient kernels (krylov.wgsl).
    pub krylov: KrylovKernels,
}

/// Entry points of krylov.wgsl.
pub struct KrylovKernels {
    pub gather: wgpu::ComputePipeline,
    pub level_sums: wgpu::ComputePipeline,
    pub axpy: wgpu::ComputePipeline,
    pub xpay: wgpu::ComputePipeline,
    pub copy: wgpu::ComputePipeline,
    pub jacobi: wgpu::ComputePipeline,
    pub dot_partials: wgpu::ComputePipeline,
    pub dot_finish: wgpu::ComputePipeline,
}

/// Compile `prelude` + `body` (shaders/`name`), turning a validation error into an [`Error`].
pub(crate) fn module(ctx: &GpuContext, name: &str, prelude: &str, body: &str) -> Result<wgpu::ShaderModule> {
    let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let m = ctx.device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(name),
        source: wgpu::ShaderSource::Wgsl(format!("{prelude}\n{body}").into()),
    });
    if let Some(e) = pollster::block_on(scope.pop()) {
        return Err(Error::Gpu(format!("compiling shaders/{name}: {e}")));
    }
    Ok(m)
}

/// The compute pipeline of `entry` in `m`, with its layout derived from the shader.
pub(crate) fn pipeline(ctx: &GpuContext, m: &wgpu::ShaderModule, entry: &str) -> Result<wgpu::ComputePipeline> {
    let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let p = ctx.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: None,
        module: m,
        entry_point: Some(entry),
        compilation_options: Default::default(),
        cache: None,
    });
    if let Some(e) = pollster::block_on(scope.pop()) {
        return Err(Error::Gpu(format!("building kernel `{entry}`: {e}")));
    }
    Ok(p)
}

/// The uniform parameters and the real-number prelude of `precision`, which every kernel
/// family is compiled after.
pub fn real_prelude(precision: Precision) -> String {
    format!(
        "{PARAMS}\n{}",
        match precision {
            Precision::Df64 => PRELUDE_DF64,
            Precision::F64 => PRELUDE_F64,
        }
    )
}

impl Kernels {
    pub fn new(ctx: &GpuContext, precision: Precision, weights: WeightStorage) -> Result<Kernels> {
        let real = real_prelude(precision);
        let with_weights = format!(
            "{real}\n{}",
            match weights {
                WeightStorage::Real => WEIGHTS_REAL,
                WeightStorage::F16 => WEIGHTS_F16,
            }
        );
        let gs = module(ctx, "group_sums.wgsl", &with_weights, GROUP_SUMS)?;
        let sw = module(ctx, "sweep.wgsl", &real, SWEEP)?;
        let rd = module(ctx, "reduce.wgsl", &with_weights, REDUCE)?;
        let gr = module(ctx, "gram.wgsl", &format!("{with_weights}\n{PAIRS}"), GRAM)?;
        let kr = module(ctx, "krylov.wgsl", &real, KRYLOV)?;
        Ok(Kernels {
            segment_sums: pipeline(ctx, &gs, "segment_sums")?,
            level_means: pipeline(ctx, &gs, "level_means")?,
            subtract_means: pipeline(ctx, &sw, "subtract_means")?,
            save_x0: pipeline(ctx, &sw, "save_x0")?,
            save_x1: pipeline(ctx, &sw, "save_x1")?,
            extrapolate: pipeline(ctx, &sw, "extrapolate")?,
            lane_partials: pipeline(ctx, &rd, "lane_partials")?,
            finish: pipeline(ctx, &rd, "finish")?,
            gram_partials: pipeline(ctx, &gr, "gram_partials")?,
            gram_finish: pipeline(ctx, &gr, "gram_finish")?,
            krylov: KrylovKernels {
                gather: pipeline(ctx, &kr, "gather")?,
                level_sums: pipeline(ctx, &kr, "level_sums")?,
                axpy: pipeline(ctx, &kr, "axpy")?,
                xpay: pipeline(ctx, &kr, "xpay")?,
                copy: pipeline(ctx, &kr, "copy")?,
                jacobi: pipeline(ctx, &kr, "jacobi")?,
                dot_partials: pipeline(ctx, &kr, "dot_partials")?,
                dot_finish: pipeline(ctx, &kr, "dot_finish")?,
            },
        })
    }
}

/// Workgroup counts for `threads` threads of a `WORKGROUP`-wide kernel (2-D above 65,535).
pub fn grid(threads: u64) -> (u32, u32) {
    let groups = threads.div_ceil(WORKGROUP as u64).max(1);
    if groups <= 65_535 {
        (groups as u32, 1)
    } else {
        (65_535, groups.div_ceil(65_535) as u32)
    }
}

/// A bind group for `pipe`'s layout with `(binding, buffer)` entries (whole buffers).
pub fn bind_group(ctx: &GpuContext, pipe: &wgpu::ComputePipeline, entries: &[(u32, &wgpu::Buffer)]) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = entries
        .iter()
        .map(|(b, buf)| wgpu::BindGroupEntry {
            binding: *b,
            resource: buf.as_entire_binding(),
        })
        .collect();
    ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipe.get_bind_group_layout(0),
        entries: &entries,
    })
}
