//! Philox4x32-10 on the device (shaders/philox.wgsl), the twin of [`crate::rng::philox4x32`].
//! Replicate draws are pure functions of (seed, replicate, unit), so the CPU and any GPU produce
//! the same weights bit for bit; the functions here are how tests hold the two to that.

use super::buffers::{poisoned, read_back, storage};
use super::context::GpuContext;
use crate::error::{Error, Result};

const PHILOX: &str = include_str!("../../shaders/philox.wgsl");
const CHECK: &str = include_str!("../../shaders/philox_check.wgsl");

/// Run one of the check kernels of philox_check.wgsl: one thread per (counter, key) pair, four
/// words out per thread at binding `out_binding`.
fn run_check(
    ctx: &GpuContext,
    entry: &str,
    counters: &[[u32; 4]],
    keys: &[[u32; 2]],
    out_binding: u32,
) -> Result<Vec<[u32; 4]>> {
    if counters.len() != keys.len() {
        return Err(Error::Usage("one key per counter".into()));
    }
    if counters.is_empty() {
        return Ok(Vec::new());
    }
    let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let module = ctx.device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("philox_check.wgsl"),
        source: wgpu::ShaderSource::Wgsl(format!("{PHILOX}\n{CHECK}").into()),
    });
    let pipe = ctx.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: None,
        module: &module,
        entry_point: Some(entry),
        compilation_options: Default::default(),
        cache: None,
    });
    if let Some(e) = pollster::block_on(scope.pop()) {
        return Err(Error::Gpu(format!("building the kernel `{entry}`: {e}")));
    }
    let flat_c: Vec<u32> = counters.iter().flatten().copied().collect();
    let flat_k: Vec<u32> = keys.iter().flat_map(|k| [k[0], k[1], 0, 0]).collect();
    let input = storage(ctx, "philox counters", &flat_c)?;
    let key_buf = storage(ctx, "philox keys", &flat_k)?;
    let bytes = counters.len() as u64 * 16;
    let output = poisoned(ctx, "philox output", bytes)?;
    let bg = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipe.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: input.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: key_buf.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: out_binding,
                resource: output.as_entire_binding(),
            },
        ],
    });
    let mut enc = ctx
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(entry) });
    {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(entry),
            timestamp_writes: None,
        });
        pass.set_pipeline(&pipe);
        pass.set_bind_group(0, &bg, &[]);
        pass.dispatch_workgroups((counters.len() as u32).div_ceil(64), 1, 1);
    }
    ctx.queue.submit([enc.finish()]);
    let words = read_back(ctx, &output, 0, bytes, entry)?;
    Ok(words.chunks_exact(4).map(|w| [w[0], w[1], w[2], w[3]]).collect())
}

/// Evaluate Philox4x32-10 on the device for each (counter, key).
pub fn philox_on_device(ctx: &GpuContext, counters: &[[u32; 4]], keys: &[[u32; 2]]) -> Result<Vec<[u32; 4]>> {
    run_check(ctx, "philox_check", counters, keys, 2)
}

/// The replicate decisions of [`crate::inference::replicates`] computed on the device for
/// counters (replicate, unit, stream, n): (Rademacher bit, Webb index, multiply-shift draw in
/// 0..n, raw word).
pub fn decisions_on_device(ctx: &GpuContext, counters: &[[u32; 4]], seed: u64) -> Result<Vec<[u32; 4]>> {
    let keys = vec![[seed as u32, (seed >> 32) as u32]; counters.len()];
    run_check(ctx, "decisions_check", counters, &keys, 3)
}
