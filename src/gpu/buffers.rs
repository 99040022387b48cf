//! Buffers: creation checked against the adapter's limits and for out-of-memory, NaN poisoning
//! of outputs (so a kernel that did not write shows up as NaN, never as a stale number), real
//! numbers in the kernels' layout (df64 pairs or f64), and read-back.

use wgpu::util::DeviceExt;

use super::context::{GpuContext, Precision};
use crate::error::{Error, Result};

/// Bytes per real number on the device (df64: two f32; f64: one f64).
pub const REAL_BYTES: u64 = 8;

/// The all-ones bit pattern: NaN as f32, and as both halves of a df64 or an f64.
pub const POISON: u32 = u32::MAX;

fn checked_size(ctx: &GpuContext, label: &str, bytes: u64) -> Result<()> {
    let max_binding = ctx.limits.max_storage_buffer_binding_size as u64;
    let max_buffer = ctx.limits.max_buffer_size;
    if bytes > max_binding.min(max_buffer) {
        return Err(Error::Gpu(format!(
            "buffer `{label}` needs {bytes} bytes, more than this adapter binds ({} bytes); the problem must be split further",
            max_binding.min(max_buffer)
        )));
    }
    Ok(())
}

fn oom_scope<T>(ctx: &GpuContext, label: &str, f: impl FnOnce() -> T) -> Result<T> {
    let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let out = f();
    if let Some(e) = pollster::block_on(scope.pop()) {
        return Err(Error::Gpu(format!("out of GPU memory allocating `{label}`: {e}")));
    }
    ctx.check(&format!("allocating `{label}`"))?;
    Ok(out)
}

/// A storage buffer holding `data`.
pub fn storage<T: bytemuck::Pod>(ctx: &GpuContext, label: &str, data: &[T]) -> Result<wgpu::Buffer> {
    let bytes: &[u8] = bytemuck::cast_slice(data);
    // wgpu rejects empty bindings: keep at least one word
    let bytes = if bytes.is_empty() { &[0u8; 4][..] } else { bytes };
    checked_size(ctx, label, bytes.len() as u64)?;
    oom_scope(ctx, label, || {
        ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        })
    })
}

/// A storage buffer of `bytes` bytes filled with NaN (written through the mapping, no host copy).
pub fn poisoned(ctx: &GpuContext, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
    let bytes = bytes.max(4).div_ceil(4) * 4;
    checked_size(ctx, label, bytes)?;
    let buf = oom_scope(ctx, label, || {
        ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: true,
        })
    })?;
    let mut view = buf
        .slice(..)
        .get_mapped_range_mut()
        .map_err(|e| Error::Gpu(format!("poisoning `{label}`: {e}")))?;
    poison_view(&mut view);
    drop(view);
    buf.unmap();
    Ok(buf)
}

/// Fill a mapped range with 0xFF bytes (NaN in every real layout) at memcpy speed: mapped
/// memory is write-only, and an element-wise fill of it runs at a tenth of that.
fn poison_view(view: &mut wgpu::BufferViewMut) {
    const CHUNK: usize = 1 << 22;
    let pattern = vec![0xFFu8; CHUNK.min(view.len())];
    let mut start = 0;
    while start < view.len() {
        let end = (start + CHUNK).min(view.len());
        view.slice(start..end).copy_from_slice(&pattern[..end - start]);
        start = end;
    }
}

/// A work buffer of `bytes` bytes that the kernels write before they read it (not poisoned:
/// nothing of it is ever returned).
pub fn scratch(ctx: &GpuContext, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
    let bytes = bytes.max(4).div_ceil(4) * 4;
    checked_size(ctx, label, bytes)?;
    oom_scope(ctx, label, || {
        ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    })
}

/// A uniform buffer holding `value`.
pub fn uniform<T: bytemuck::Pod>(ctx: &GpuContext, label: &str, value: &T) -> Result<wgpu::Buffer> {
    oom_scope(ctx, label, || {
        ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(value),
            usage: wgpu::BufferUsages::UNIFORM,
        })
    })
}

/// f64 values in the kernels' real layout.
pub fn encode_reals(values: impl Iterator<Item = f64>, precision: Precision) -> Vec<u32> {
    let mut out = Vec::with_capacity(2 * values.size_hint().0);
    for v in values {
        match precision {
            Precision::Df64 => {
                let hi = v as f32;
                let lo = (v - hi as f64) as f32;
                out.push(hi.to_bits());
                out.push(lo.to_bits());
            }
            Precision::F64 => {
                let b = v.to_bits();
                out.push(b as u32);
                out.push((b >> 32) as u32);
            }
        }
    }
    out
}

/// Back from the kernels' real layout.
pub fn decode_reals(words: &[u32], precision: Precision) -> Vec<f64> {
    words.chunks_exact(2).map(|p| decode_real(p, precision)).collect()
}

/// One real from its two words (see [`encode_reals`]).
pub fn decode_real(w: &[u32], precision: Precision) -> f64 {
    match precision {
        Precision::Df64 => f32::from_bits(w[0]) as f64 + f32::from_bits(w[1]) as f64,
        Precision::F64 => f64::from_bits(w[0] as u64 | (w[1] as u64) << 32),
    }
}

/// Copy `bytes` bytes of `src` (from `offset`) into a NaN-poisoned staging buffer and read them.
pub fn read_back(ctx: &GpuContext, src: &wgpu::Buffer, offset: u64, bytes: u64, stage: &str) -> Result<Vec<u32>> {
    read_back_with(ctx, src, offset, bytes, stage, |words| words.to_vec())
}

/// Like [`read_back`], but hands the mapped words to `f` instead of copying them out.
pub fn read_back_with<R>(
    ctx: &GpuContext,
    src: &wgpu::Buffer,
    offset: u64,
    bytes: u64,
    stage: &str,
    f: impl FnOnce(&[u32]) -> R,
) -> Result<R> {
    let staging = oom_scope(ctx, "read-back staging", || {
        ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read-back"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: true,
        })
    })?;
    let mut view = staging
        .slice(..)
        .get_mapped_range_mut()
        .map_err(|e| Error::Gpu(format!("poisoning the read-back buffer of {stage}: {e}")))?;
    poison_view(&mut view);
    drop(view);
    staging.unmap();
    let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("read-back"),
    });
    enc.copy_buffer_to_buffer(src, offset, &staging, 0, bytes);
    ctx.queue.submit([enc.finish()]);
    let slice = staging.slice(..);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    ctx.wait(stage)?;
    rx.recv()
        .map_err(|_| Error::Gpu(format!("read-back of {stage} never completed")))?
        .map_err(|e| Error::Gpu(format!("mapping the results of {stage}: {e}")))?;
    let data = slice
        .get_mapped_range()
        .map_err(|e| Error::Gpu(format!("reading the results of {stage}: {e}")))?;
    let out = f(bytemuck::cast_slice::<u8, u32>(&data));
    drop(data);
    staging.unmap();
    Ok(out)
}

/// The power of two nearest the column's root mean square (1 for a zero column): columns travel
/// divided by it (exact), so df64 parts stay clear of f32 denormals.
pub fn power_of_two_scale(col: &[f64]) -> f64 {
    let rms = (col.iter().map(|v| v * v).sum::<f64>() / col.len().max(1) as f64).sqrt();
    if rms > 0.0 && rms.is_finite() {
        2f64.powi(rms.log2().round() as i32)
    } else {
        1.0
    }
}
