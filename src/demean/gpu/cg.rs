//! The GPU's kernels for the conjugate-gradient demeaner: [`GpuOps`] implements
//! [`crate::demean::krylov::FeOps`] with the WGSL kernels of `shaders/krylov.wgsl` plus the segment
//! sums of `shaders/group_sums.wgsl`, over every lane (columns × replicates) at once. The
//! iteration itself is [`crate::demean::krylov::pcg`], the same code the CPU runs.
//!
//! * Observation data (columns, weights, fixed-effect CSR) are uploaded once per batch and
//!   stay on the device; coefficient vectors (every effect's levels, per lane) live there too.
//! * Per iteration the host reads back only per-lane dot products (`lanes` reals), and writes
//!   per-lane step lengths. Jacobi runs on the device; a factored preconditioner (two-effect
//!   block, Schwarz) is applied on the host to the read-back residual (coefficient space, far
//!   smaller than the observations) — correct everywhere; moving it on the device is the GPU
//!   issue's work.
//! * Columns travel scaled by a power of two (exact), as in the sweeps, so df64 parts stay
//!   clear of f32 denormals; results are unscaled on the way back, and any non-finite value
//!   read back is an error.

use std::collections::HashMap;

use super::{DeviceFe, GpuDemeaner};
use crate::demean::krylov::FeOps;
use crate::demean::precond::{Layout, Preconditioner};
use crate::demean::{strategy, Absorb, DemeanOptions, Demeaned};
use crate::error::{Error, Result};
use crate::fe::FixedEffect;
use crate::gpu::buffers::{
    decode_reals, encode_reals, poisoned, power_of_two_scale, read_back, scratch, storage, uniform, REAL_BYTES,
};
use crate::gpu::pipelines::{bind_group, grid, Params, ROW_STRIDE};

/// Coefficients per chunk of a device dot product (must match `DOT_CHUNK` in krylov.wgsl).
const DOT_CHUNK: usize = 256;

/// Demean one problem (one weight vector) with CG on the device.
pub fn demean(g: &GpuDemeaner, problem: &Absorb, columns: Vec<Vec<f64>>, opts: &DemeanOptions) -> Result<Demeaned> {
    let w = problem.weights.map(|w| w.to_vec());
    let mut out = demean_batch(g, &problem.fes, &columns, std::slice::from_ref(&w), opts)?;
    Ok(out.pop().expect("one replicate"))
}

/// Demean `columns` under each weight vector (`None`: unweighted) with CG, all lanes at once.
pub fn demean_batch(
    g: &GpuDemeaner,
    fes: &[&FixedEffect],
    columns: &[Vec<f64>],
    weights: &[Option<Vec<f64>>],
    opts: &DemeanOptions,
) -> Result<Vec<Demeaned>> {
    let mut ops = GpuOps::new(g, fes, columns, weights)?;
    let wrefs: Vec<Option<&[f64]>> = weights.iter().map(|w| w.as_deref()).collect();
    let (outcome, used) = strategy::run_ladder(&mut ops, fes, &wrefs, opts)?;
    let cols = ops.read_columns()?;
    let c = columns.len();
    Ok(cols
        .chunks(c)
        .enumerate()
        .map(|(r, cs)| {
            let lane = |j: usize| r * c + j;
            let o = crate::demean::krylov::KrylovOutcome {
                iterations: (0..c).map(|j| outcome.iterations[lane(j)]).collect(),
                converged: (0..c).map(|j| outcome.converged[lane(j)]).collect(),
                residual: (0..c).map(|j| outcome.residual[lane(j)]).collect(),
            };
            strategy::krylov_result(cs.to_vec(), &o, used.clone())
        })
        .collect())
}

/// A coefficient vector of every lane, on the device.
pub struct DeviceCoef(wgpu::Buffer);

/// The device state of one CG batch.
pub struct GpuOps<'g> {
    g: &'g GpuDemeaner,
    n: usize,
    cols: usize,
    lanes: usize,
    layout: Layout,
    fes: Vec<DeviceFe>,
    scales: Vec<f64>,
    /// the lanes' columns
    x: wgpu::Buffer,
    /// the demeaned columns, once [`FeOps::finish`] has run (NaN-poisoned before)
    out: Option<wgpu::Buffer>,
    /// observation scratch (D p)
    t: wgpu::Buffer,
    weights: wgpu::Buffer,
    partial: wgpu::Buffer,
    state: wgpu::Buffer,
    scal: wgpu::Buffer,
    dots: wgpu::Buffer,
    dot_out: wgpu::Buffer,
    /// Jacobi diagonals uploaded so far, by preconditioner address
    diagonals: HashMap<usize, wgpu::Buffer>,
}

impl<'g> GpuOps<'g> {
    pub fn new(
        g: &'g GpuDemeaner,
        fes: &[&FixedEffect],
        columns: &[Vec<f64>],
        weights: &[Option<Vec<f64>>],
    ) -> Result<GpuOps<'g>> {
        let ctx = &g.ctx;
        let p = g.precision;
        let n = fes[0].ids.len();
        let c = columns.len();
        let lanes = c * weights.len();
        let layout = Layout::new(fes);
        let scales: Vec<f64> = columns.iter().map(|col| power_of_two_scale(col)).collect();
        let words = encode_reals(
            weights.iter().flat_map(|_| {
                columns
                    .iter()
                    .zip(&scales)
                    .flat_map(|(col, s)| col.iter().map(move |v| v / s))
            }),
            p,
        );
        let x = storage(ctx, "CG columns", &words)?;
        drop(words);
        let w = encode_reals(
            weights
                .iter()
                .flat_map(|w| (0..n).map(move |i| w.as_ref().map_or(1.0, |w| w[i]))),
            p,
        );
        let weights_buf = storage(ctx, "CG weights", &w)?;
        let dev_fes: Vec<DeviceFe> = fes.iter().map(|fe| g.upload_fe(fe)).collect::<Result<_>>()?;
        let max_seg = dev_fes.iter().map(|f| f.n_seg).max().unwrap_or(1) as u64;
        let chunks = layout.total.div_ceil(DOT_CHUNK).max(1) as u64;
        Ok(GpuOps {
            t: scratch(ctx, "CG scratch", (lanes * n) as u64 * REAL_BYTES)?,
            partial: scratch(ctx, "CG segment sums", lanes as u64 * max_seg * REAL_BYTES)?,
            state: storage(ctx, "CG lane state", &vec![1u32; lanes])?,
            scal: storage(ctx, "CG scalars", &vec![0u32; 2 * lanes])?,
            dots: scratch(ctx, "CG dot partials", lanes as u64 * chunks * REAL_BYTES)?,
            dot_out: poisoned(ctx, "CG dots", lanes as u64 * REAL_BYTES)?,
            weights: weights_buf,
            g,
            n,
            cols: c,
            lanes,
            layout,
            fes: dev_fes,
            scales,
            x,
            out: None,
            diagonals: HashMap::new(),
        })
    }

    fn params(&self, levels: u32, n_seg: u32, offset: usize, mode: u32, n_chunks: usize) -> Result<wgpu::Buffer> {
        uniform(
            &self.g.ctx,
            "CG params",
            &Params {
                n: self.n as u32,
                lanes: self.lanes as u32,
                n_cols: self.cols as u32,
                levels,
                n_seg,
                row_stride: ROW_STRIDE,
                n_chunks: n_chunks as u32,
                mode,
                offset: offset as u32,
                total: self.layout.total as u32,
                ..Default::default()
            },
        )
    }

    fn bind(&self, pipe: &wgpu::ComputePipeline, entries: &[(u32, &wgpu::Buffer)]) -> wgpu::BindGroup {
        bind_group(&self.g.ctx, pipe, entries)
    }

    /// Record and submit `(pipeline, bind group, threads)` dispatches in order.
    fn run(&self, steps: &[(&wgpu::ComputePipeline, wgpu::BindGroup, u64)]) -> Result<()> {
        let ctx = &self.g.ctx;
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("cg") });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("cg"),
                timestamp_writes: None,
            });
            for (pipe, bg, threads) in steps {
                let (gx, gy) = grid(*threads);
                pass.set_pipeline(pipe);
                pass.set_bind_group(0, bg, &[]);
                pass.dispatch_workgroups(gx, gy, 1);
            }
        }
        ctx.queue.submit([enc.finish()]);
        ctx.check("the CG kernels")
    }

    /// `out ← D'W obs` for every effect (segment sums, then per-level sums).
    fn scatter(&self, obs: &wgpu::Buffer, out: &wgpu::Buffer) -> Result<()> {
        let k = &self.g.kernels;
        let mut steps = Vec::new();
        let mut prms = Vec::new();
        for (f, &off) in self.fes.iter().zip(&self.layout.offsets) {
            prms.push(self.params(f.levels, f.n_seg, off, 0, 0)?);
        }
        for ((f, prm), _) in self.fes.iter().zip(&prms).zip(&self.layout.offsets) {
            let seg = self.bind(
                &k.segment_sums,
                &[
                    (0, prm),
                    (1, obs),
                    (12, &self.weights),
                    (3, &f.order),
                    (4, &f.seg_start),
                    (5, &f.seg_end),
                    (8, &self.partial),
                    (10, &self.state),
                ],
            );
            let sums = self.bind(
                &k.krylov.level_sums,
                &[
                    (0, prm),
                    (4, &self.state),
                    (5, &self.partial),
                    (6, &f.level_seg),
                    (7, out),
                ],
            );
            steps.push((&k.segment_sums, seg, f.n_seg as u64 * self.lanes as u64));
            steps.push((&k.krylov.level_sums, sums, f.levels as u64 * self.lanes as u64));
            // (the partials are reused effect after effect: run in order)
            self.run(&steps)?;
            steps.clear();
        }
        Ok(())
    }

    /// `obs ← (set | add | subtract | x −) D coef`, effect by effect (`first_mode` for the first;
    /// see krylov.wgsl). `obs` must not be the columns `x`, which the kernel reads.
    fn gather(&self, coef: &wgpu::Buffer, obs: &wgpu::Buffer, first_mode: u32, then_mode: u32) -> Result<()> {
        let k = &self.g.kernels.krylov;
        let mut steps = Vec::new();
        for (e, (f, &off)) in self.fes.iter().zip(&self.layout.offsets).enumerate() {
            let prm = self.params(f.levels, f.n_seg, off, if e == 0 { first_mode } else { then_mode }, 0)?;
            let bg = self.bind(
                &k.gather,
                &[
                    (0, &prm),
                    (1, obs),
                    (2, &f.ids),
                    (3, coef),
                    (4, &self.state),
                    (12, &self.x),
                ],
            );
            steps.push((&k.gather, bg, (self.n * self.lanes) as u64));
        }
        self.run(&steps)
    }

    fn coef_op(&self, pipe: &wgpu::ComputePipeline, entries: &[(u32, &wgpu::Buffer)]) -> Result<()> {
        let prm = self.params(0, 0, 0, 0, 0)?;
        let mut all = vec![(0u32, &prm)];
        all.extend_from_slice(entries);
        all.push((4, &self.state));
        let bg = self.bind(pipe, &all);
        self.run(&[(pipe, bg, (self.layout.total * self.lanes) as u64)])
    }

    fn upload_scalars(&self, s: &[f64]) {
        let words = encode_reals(s.iter().copied(), self.g.precision);
        self.g
            .ctx
            .queue
            .write_buffer(&self.scal, 0, bytemuck::cast_slice(&words));
    }

    fn read_coef(&self, c: &DeviceCoef) -> Result<Vec<f64>> {
        let bytes = (self.lanes * self.layout.total) as u64 * REAL_BYTES;
        let words = read_back(&self.g.ctx, &c.0, 0, bytes, "CG coefficients")?;
        Ok(decode_reals(&words, self.g.precision))
    }

    /// The demeaned columns, unscaled, replicate by replicate (`lanes` vectors).
    pub fn read_columns(&self) -> Result<Vec<Vec<f64>>> {
        let bytes = (self.lanes * self.n) as u64 * REAL_BYTES;
        let out = self
            .out
            .as_ref()
            .ok_or_else(|| Error::Gpu("the CG result was read before it was formed".into()))?;
        let words = read_back(&self.g.ctx, out, 0, bytes, "CG demeaning")?;
        let all = decode_reals(&words, self.g.precision);
        let mut out = Vec::with_capacity(self.lanes);
        for (l, lane) in all.chunks(self.n).enumerate() {
            let s = self.scales[l % self.cols];
            if let Some(i) = lane.iter().position(|v| !v.is_finite()) {
                return Err(Error::Gpu(format!(
                    "the GPU returned a non-finite value (lane {l}, observation {i}): the computation did not complete; no results were used — rerun with `--backend cpu` (exact f64) or `--precision f64`"
                )));
            }
            out.push(lane.iter().map(|v| v * s).collect());
        }
        Ok(out)
    }
}

impl FeOps for GpuOps<'_> {
    type Coef = DeviceCoef;

    fn lanes(&self) -> usize {
        self.lanes
    }

    fn zeros(&self) -> Result<DeviceCoef> {
        let words = vec![0u32; 2 * self.lanes * self.layout.total];
        Ok(DeviceCoef(storage(&self.g.ctx, "CG coefficients", &words)?))
    }

    fn rhs(&mut self, b: &mut DeviceCoef) -> Result<()> {
        self.scatter(&self.x, &b.0)
    }

    fn normal(&mut self, p: &DeviceCoef, q: &mut DeviceCoef) -> Result<()> {
        self.gather(&p.0, &self.t, 0, 1)?;
        self.scatter(&self.t, &q.0)
    }

    fn precondition(&mut self, m: &Preconditioner, r: &DeviceCoef, z: &mut DeviceCoef) -> Result<()> {
        if let Preconditioner::Jacobi { .. } = m {
            let key = m as *const Preconditioner as usize;
            if !self.diagonals.contains_key(&key) {
                let reps = self.lanes / self.cols;
                let words = encode_reals(
                    (0..reps).flat_map(|r| m.inverse_diagonal(r).iter().copied()),
                    self.g.precision,
                );
                self.diagonals
                    .insert(key, storage(&self.g.ctx, "Jacobi diagonal", &words)?);
            }
            let diag = &self.diagonals[&key];
            return self.coef_op(&self.g.kernels.krylov.jacobi, &[(3, &r.0), (7, &z.0), (9, diag)]);
        }
        // factored preconditioners run on the host, on the coefficient vectors
        let total = self.layout.total;
        let rs = self.read_coef(r)?;
        let mut zs = self.read_coef(z)?;
        for l in 0..self.lanes {
            let range = l * total..(l + 1) * total;
            let mut zl = vec![0.0; total];
            m.apply(l / self.cols, &rs[range.clone()], &mut zl)?;
            zs[range].copy_from_slice(&zl);
        }
        let words = encode_reals(zs.into_iter(), self.g.precision);
        self.g.ctx.queue.write_buffer(&z.0, 0, bytemuck::cast_slice(&words));
        Ok(())
    }

    fn dot(&mut self, a: &DeviceCoef, b: &DeviceCoef) -> Result<Vec<f64>> {
        let k = &self.g.kernels.krylov;
        let chunks = self.layout.total.div_ceil(DOT_CHUNK).max(1);
        let prm = self.params(0, 0, 0, 0, chunks)?;
        let part = self.bind(&k.dot_partials, &[(0, &prm), (3, &a.0), (11, &b.0), (10, &self.dots)]);
        let fin = self.bind(&k.dot_finish, &[(0, &prm), (10, &self.dots), (7, &self.dot_out)]);
        self.run(&[
            (&k.dot_partials, part, (chunks * self.lanes) as u64),
            (&k.dot_finish, fin, self.lanes as u64),
        ])?;
        let words = read_back(
            &self.g.ctx,
            &self.dot_out,
            0,
            self.lanes as u64 * REAL_BYTES,
            "CG dot products",
        )?;
        Ok(decode_reals(&words, self.g.precision))
    }

    fn axpy(&mut self, s: &[f64], x: &DeviceCoef, y: &mut DeviceCoef) -> Result<()> {
        self.upload_scalars(s);
        self.coef_op(&self.g.kernels.krylov.axpy, &[(3, &x.0), (7, &y.0), (8, &self.scal)])
    }

    fn xpay(&mut self, x: &DeviceCoef, s: &[f64], y: &mut DeviceCoef) -> Result<()> {
        self.upload_scalars(s);
        self.coef_op(&self.g.kernels.krylov.xpay, &[(3, &x.0), (7, &y.0), (8, &self.scal)])
    }

    fn copy(&mut self, x: &DeviceCoef, y: &mut DeviceCoef) -> Result<()> {
        self.coef_op(&self.g.kernels.krylov.copy, &[(3, &x.0), (7, &y.0)])
    }

    fn set_active(&mut self, active: &[bool]) -> Result<()> {
        let words: Vec<u32> = active.iter().map(|&a| a as u32).collect();
        self.g
            .ctx
            .queue
            .write_buffer(&self.state, 0, bytemuck::cast_slice(&words));
        Ok(())
    }

    fn finish(&mut self, alpha: &DeviceCoef) -> Result<()> {
        self.set_active(&vec![true; self.lanes])?;
        let out = poisoned(
            &self.g.ctx,
            "CG demeaned columns",
            (self.lanes * self.n) as u64 * REAL_BYTES,
        )?;
        self.gather(&alpha.0, &out, 3, 2)?;
        self.out = Some(out);
        Ok(())
    }
}
