//! The GPU demeaner. Its kernels for the method [`super::strategy`] chooses: the conjugate-
//! gradient kernels live in [`cg`]; this file holds the device's single-effect
//! pass and alternating projections (weighted group-mean sweeps, Irons–Tuck every two sweeps,
//! per-lane convergence) run for many lanes at once in WGSL — `--solver ap`, the one exact
//! pass, and replicate batches of one large effect beside few-level ones.
//!
//! * **Lanes.** A batch is `columns × replicates` lanes, laid out lane-major
//!   (`x[lane * n + i]`, lane = replicate · columns + column). One dispatch works on every lane:
//!   y, all regressors and instruments, under up to B weight vectors (the resampling issue sends
//!   1000). Batches larger than the adapter's buffers or the memory budget are split by
//!   replicates.
//! * **No atomics.** Group sums go through each effect's observations sorted by level (CSR),
//!   cut into segments of at most `SEGMENT` observations, so a level holding half the sample is
//!   summed by many threads; a second pass adds each level's segments in a fixed order. Results
//!   are deterministic.
//! * **Precision.** The default arithmetic is df64 (pairs of f32, ~48 bits) built from f32
//!   operations only, so adapters without f64 (Metal, most consumer GPUs) give f64-grade
//!   answers; `Precision::F64` uses native f64 where `SHADER_F64` exists. Columns are uploaded
//!   scaled by a power of two (exact) so df64 parts never reach f32 denormals.
//! * **Convergence on the device.** Per-lane reductions (reduce.wgsl) decide convergence and
//!   the Irons–Tuck step without a host round trip; converged lanes stop costing. The host only
//!   polls a per-lane state word every few rounds.
//! * **Faults.** Output buffers start as NaN; any wgpu error, lost device or non-finite result is
//!   an error, never a stale number.

use rayon::prelude::*;

use super::{Absorb, DemeanOptions, Demeaned, Demeaner};

pub mod cg;
use crate::error::{Error, Result};
use crate::fe::FixedEffect;
use crate::gpu::buffers::{
    decode_real, encode_reals, poisoned, power_of_two_scale, read_back, read_back_with, scratch, storage, uniform,
    REAL_BYTES,
};
use crate::gpu::pipelines::{bind_group, grid, Kernels, Params, WeightStorage, REDUCE_CHUNK, ROW_STRIDE};
use crate::gpu::{GpuContext, Precision};

/// Longest run of observations one thread sums.
pub const SEGMENT: usize = 256;
/// Rounds (two sweeps each) between checks of the lanes' state on the host.
const ROUNDS_PER_CHECK: usize = 4;

/// The CSR view of one fixed effect on the device.
pub(crate) struct DeviceFe {
    pub(crate) levels: u32,
    pub(crate) n_seg: u32,
    pub(crate) ids: wgpu::Buffer,
    pub(crate) order: wgpu::Buffer,
    pub(crate) seg_start: wgpu::Buffer,
    pub(crate) seg_end: wgpu::Buffer,
    pub(crate) level_seg: wgpu::Buffer,
}

/// GPU backend.
pub struct GpuDemeaner {
    pub(super) ctx: GpuContext,
    pub(super) precision: Precision,
    /// Kernels reading weights stored as reals, and as f16.
    pub(crate) kernels: Kernels,
    kernels_f16: Kernels,
    /// Bytes of device memory one batch may use (lanes are split to stay below).
    pub memory_budget: u64,
    /// Largest buffer one binding may hold (the adapter's limit; lower it to test splitting).
    pub binding_limit: u64,
}

impl GpuDemeaner {
    /// Open the best adapter. `Precision::F64` requires `SHADER_F64`.
    pub fn new(precision: Precision) -> Result<GpuDemeaner> {
        let ctx = GpuContext::new(precision == Precision::F64)?;
        let kernels = Kernels::new(&ctx, precision, WeightStorage::Real)?;
        let kernels_f16 = Kernels::new(&ctx, precision, WeightStorage::F16)?;
        let memory_budget = std::env::var("FEGPU_GPU_MEMORY")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2u64 << 30);
        let binding_limit = (ctx.limits.max_storage_buffer_binding_size as u64).min(ctx.limits.max_buffer_size);
        // df64 is trusted only after the adapter passes the self-test (super::selftest)
        super::selftest::admit(GpuDemeaner {
            binding_limit,
            ctx,
            precision,
            kernels,
            kernels_f16,
            memory_budget,
        })
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub(crate) fn upload_fe(&self, fe: &FixedEffect) -> Result<DeviceFe> {
        let n = fe.ids.len();
        let g = fe.levels;
        // counting sort: observations by level
        let mut start = vec![0usize; g + 1];
        for &l in &fe.ids {
            start[l as usize + 1] += 1;
        }
        for l in 0..g {
            start[l + 1] += start[l];
        }
        let mut pos = start.clone();
        let mut order = vec![0u32; n];
        for (i, &l) in fe.ids.iter().enumerate() {
            order[pos[l as usize]] = i as u32;
            pos[l as usize] += 1;
        }
        let (mut seg_start, mut seg_end, mut level_seg) = (Vec::new(), Vec::new(), Vec::with_capacity(g + 1));
        for l in 0..g {
            level_seg.push(seg_start.len() as u32);
            let mut s = start[l];
            while s < start[l + 1] {
                let e = (s + SEGMENT).min(start[l + 1]);
                seg_start.push(s as u32);
                seg_end.push(e as u32);
                s = e;
            }
        }
        level_seg.push(seg_start.len() as u32);
        Ok(DeviceFe {
            levels: g as u32,
            n_seg: seg_start.len() as u32,
            ids: storage(&self.ctx, &format!("{} ids", fe.name), &fe.ids)?,
            order: storage(&self.ctx, &format!("{} order", fe.name), &order)?,
            seg_start: storage(&self.ctx, &format!("{} segments", fe.name), &seg_start)?,
            seg_end: storage(&self.ctx, &format!("{} segment ends", fe.name), &seg_end)?,
            level_seg: storage(&self.ctx, &format!("{} level segments", fe.name), &level_seg)?,
        })
    }

    /// Demean `columns` under every weight vector in `weights` (one result per weight vector).
    pub fn demean_batch(
        &self,
        fes: &[&FixedEffect],
        columns: &[Vec<f64>],
        weights: &[Vec<f64>],
        opts: &DemeanOptions,
    ) -> Result<Vec<Demeaned>> {
        match self.batched(fes, columns, weights, opts, false)? {
            BatchOut::Columns(d) => Ok(d),
            BatchOut::Grams(_) => unreachable!("columns were asked for"),
        }
    }

    /// Weighted cross products of every replicate's demeaned columns (see
    /// [`Demeaner::gram_batch`]), computed on the device: only c(c+1)/2 numbers per replicate
    /// come back.
    pub fn gram_batch(
        &self,
        fes: &[&FixedEffect],
        columns: &[Vec<f64>],
        weights: &[Vec<f64>],
        opts: &DemeanOptions,
    ) -> Result<Vec<Vec<f64>>> {
        match self.batched(fes, columns, weights, opts, true)? {
            BatchOut::Grams(g) => Ok(g),
            BatchOut::Columns(d) => Ok(super::grams_of(&d, weights)),
        }
    }

    fn batched(
        &self,
        fes: &[&FixedEffect],
        columns: &[Vec<f64>],
        weights: &[Vec<f64>],
        opts: &DemeanOptions,
        grams: bool,
    ) -> Result<BatchOut> {
        let n = fes.first().map_or(0, |f| f.ids.len());
        let c = columns.len();
        if fes.is_empty() || n == 0 || c == 0 {
            // nothing to project: every replicate gets the columns unchanged
            return Ok(BatchOut::Columns(
                weights
                    .iter()
                    .map(|_| Demeaned::exact(columns.to_vec(), 0, alternating_method()))
                    .collect(),
            ));
        }
        for w in weights {
            if w.len() != n {
                return Err(Error::Usage(format!(
                    "a weight vector has {} entries for {n} observations",
                    w.len()
                )));
            }
        }
        // Exact power-of-two scaling per column keeps df64 parts away from denormals.
        let scales: Vec<f64> = columns.iter().map(|col| power_of_two_scale(col)).collect();
        let dev_fes: Vec<DeviceFe> = fes.iter().map(|fe| self.upload_fe(fe)).collect::<Result<_>>()?;

        // Replicates per batch: three copies of every lane plus weights within the budget and
        // within one buffer binding.
        let lane_bytes = n as u64 * REAL_BYTES;
        let max_binding = self.binding_limit;
        if lane_bytes > max_binding {
            return Err(Error::Gpu(format!(
                "{n} observations need {lane_bytes} bytes per column, more than this adapter binds ({max_binding}); use --backend cpu"
            )));
        }
        // More columns than one binding holds: demean groups of columns separately (lanes are
        // independent) and put every replicate's columns back together.
        let cols_fit = (max_binding / lane_bytes).max(1) as usize;
        if cols_fit < c {
            // (cross products need every column of a replicate in one binding: the caller forms
            // them on the host from the columns returned here)
            let mut merged: Vec<Demeaned> = Vec::new();
            for (k, group) in columns.chunks(cols_fit).enumerate() {
                let part = self.demean_batch(fes, group, weights, opts)?;
                if k == 0 {
                    merged = part;
                    continue;
                }
                for (m, d) in merged.iter_mut().zip(part) {
                    let offset = m.columns.len();
                    m.columns.extend(d.columns);
                    m.iterations = m.iterations.max(d.iterations);
                    m.not_converged.extend(d.not_converged.into_iter().map(|j| j + offset));
                }
            }
            return Ok(BatchOut::Columns(merged));
        }
        let reps_per_batch = self.replicates_per_batch(&dev_fes, n, c, grams)?;

        let mut cols = Vec::new();
        let mut gram = Vec::new();
        for chunk in weights.chunks(reps_per_batch) {
            match self.run_batch(&dev_fes, fes, columns, &scales, chunk, opts, grams)? {
                BatchOut::Columns(d) => cols.extend(d),
                BatchOut::Grams(g) => gram.extend(g),
            }
        }
        Ok(if grams {
            BatchOut::Grams(gram)
        } else {
            BatchOut::Columns(cols)
        })
    }

    /// Replicates per batch: as many as keep every buffer of [`Self::run_batch`] within one
    /// binding of the adapter and all of them within the memory budget (and the lanes within
    /// one dispatch dimension). An error, naming the buffer, only when one replicate's share
    /// does not fit a binding.
    fn replicates_per_batch(&self, dev_fes: &[DeviceFe], n: usize, c: usize, grams: bool) -> Result<usize> {
        let (n, c) = (n as u64, c as u64);
        let max_seg = dev_fes.iter().map(|f| f.n_seg).max().unwrap_or(0) as u64;
        let max_levels = dev_fes.iter().map(|f| f.levels).max().unwrap_or(0) as u64;
        let n_chunks = n.div_ceil(REDUCE_CHUNK as u64);
        let pairs = if grams { c * (c + 1) / 2 } else { 0 };
        // bytes per replicate of each buffer
        let per_rep = [
            ("lanes", c * n * REAL_BYTES),
            ("x0", c * n * REAL_BYTES),
            ("x1", c * n * REAL_BYTES),
            ("weights", n * REAL_BYTES),
            ("inverse weights", max_levels * REAL_BYTES),
            ("segment sums", c * max_seg * REAL_BYTES),
            ("level means", c * max_levels * REAL_BYTES),
            ("reduction partials", c * n_chunks * 16),
            ("cross-product partials", pairs * n_chunks * REAL_BYTES),
            ("cross products", pairs * REAL_BYTES),
        ];
        let mut reps = (self.memory_budget / per_rep.iter().map(|&(_, b)| b).sum::<u64>().max(1)).max(1);
        for (label, bytes) in per_rep {
            if bytes > self.binding_limit {
                return Err(Error::Gpu(format!(
                    "buffer `{label}` needs {bytes} bytes for one replicate, more than this adapter binds ({} bytes); use --backend cpu",
                    self.binding_limit
                )));
            }
            reps = reps.min(self.binding_limit / bytes.max(1));
        }
        Ok(reps.min(65_535 / c).max(1) as usize)
    }

    fn run_batch(
        &self,
        dev_fes: &[DeviceFe],
        fes: &[&FixedEffect],
        columns: &[Vec<f64>],
        scales: &[f64],
        weights: &[Vec<f64>],
        opts: &DemeanOptions,
        grams: bool,
    ) -> Result<BatchOut> {
        let ctx = &self.ctx;
        let p = self.precision;
        let n = fes[0].ids.len();
        let c = columns.len();
        let reps = weights.len();
        let lanes = reps * c;
        let n_chunks = n.div_ceil(REDUCE_CHUNK as usize);
        let max_levels = dev_fes.iter().map(|f| f.levels).max().unwrap() as u64;
        let max_seg = dev_fes.iter().map(|f| f.n_seg).max().unwrap() as u64;

        let t_start = std::time::Instant::now();
        // Inputs: the columns travel once; the device copies them into every replicate's lanes.
        let mut x_words = vec![0u32; 2 * c * n];
        x_words
            .par_chunks_mut(2 * n)
            .zip(columns.par_iter().zip(scales))
            .for_each(|(dst, (col, s))| {
                dst.copy_from_slice(&encode_reals(col.iter().map(|v| v / s), p));
            });
        let source = storage(ctx, "columns", &x_words)?;
        drop(x_words);
        // every word of the lanes is written by the copies below
        let x = scratch(ctx, "lanes", reps as u64 * c as u64 * n as u64 * REAL_BYTES)?;
        {
            let block = c as u64 * n as u64 * REAL_BYTES;
            let mut enc = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("lanes") });
            for r in 0..reps as u64 {
                enc.copy_buffer_to_buffer(&source, 0, &x, r * block, block);
            }
            ctx.queue.submit([enc.finish()]);
        }
        // Weights that are all exact f16 values (bootstrap counts, 0/1, ones) travel as f16.
        let compact = weights
            .iter()
            .all(|w| w.iter().all(|&v| half::f16::from_f64(v).to_f64() == v));
        let w = if compact {
            let halves: Vec<u16> = weights
                .iter()
                .flat_map(|w| w.iter().map(|&v| half::f16::from_f64(v).to_bits()))
                .collect();
            let words: Vec<u32> = halves
                .chunks(2)
                .map(|p| p[0] as u32 | (*p.get(1).unwrap_or(&0) as u32) << 16)
                .collect();
            storage(ctx, "weights (f16)", &words)?
        } else {
            storage(
                ctx,
                "weights",
                &encode_reals(weights.iter().flat_map(|w| w.iter().copied()), p),
            )?
        };
        let inv_w: Vec<wgpu::Buffer> = fes
            .iter()
            .map(|fe| {
                let inv: Vec<f64> = weights
                    .iter()
                    .flat_map(|wr| {
                        fe.weight_sums(Some(wr))
                            .into_iter()
                            .map(|s| if s > 0.0 { 1.0 / s } else { 0.0 })
                    })
                    .collect();
                storage(
                    ctx,
                    &format!("{} inverse weights", fe.name),
                    &encode_reals(inv.into_iter(), p),
                )
            })
            .collect::<Result<_>>()?;
        // Work and output buffers, poisoned.
        let lane_bytes = lanes as u64 * n as u64 * REAL_BYTES;
        let x0 = scratch(ctx, "x0", lane_bytes)?;
        let x1 = scratch(ctx, "x1", lane_bytes)?;
        // written before they are read, for running lanes only (never returned)
        let partial = scratch(ctx, "segment sums", lanes as u64 * max_seg * REAL_BYTES)?;
        let mean = scratch(ctx, "level means", lanes as u64 * max_levels * REAL_BYTES)?;
        let red = poisoned(ctx, "reduction partials", lanes as u64 * n_chunks as u64 * 16)?;
        let active = storage(ctx, "lane state", &vec![1u32; lanes])?;
        let coef = poisoned(ctx, "Irons-Tuck coefficients", lanes as u64 * 4)?;
        let scale = poisoned(ctx, "lane scales", lanes as u64 * 4)?;
        let iters = storage(ctx, "lane iterations", &vec![0u32; lanes])?;

        let base = Params {
            n: n as u32,
            lanes: lanes as u32,
            n_cols: c as u32,
            row_stride: ROW_STRIDE,
            n_chunks: n_chunks as u32,
            max_iter: opts.max_iter.min(u32::MAX as usize) as u32,
            tol: opts.tol as f32,
            ..Default::default()
        };
        let fe_params: Vec<wgpu::Buffer> = dev_fes
            .iter()
            .map(|f| {
                uniform(
                    ctx,
                    "fe params",
                    &Params {
                        levels: f.levels,
                        n_seg: f.n_seg,
                        ..base
                    },
                )
            })
            .collect::<Result<_>>()?;
        let scale_params = uniform(ctx, "scale params", &Params { mode: 0, ..base })?;
        let it_params = uniform(ctx, "iteration params", &Params { mode: 1, ..base })?;

        let bind = |pipe: &wgpu::ComputePipeline, entries: &[(u32, &wgpu::Buffer)]| bind_group(ctx, pipe, entries);
        let k = if compact { &self.kernels_f16 } else { &self.kernels };
        let sweep_groups: Vec<[wgpu::BindGroup; 3]> = dev_fes
            .iter()
            .zip(&fe_params)
            .zip(&inv_w)
            .map(|((f, prm), iw)| {
                [
                    bind(
                        &k.segment_sums,
                        &[
                            (0, prm),
                            (1, &x),
                            (12, &w),
                            (3, &f.order),
                            (4, &f.seg_start),
                            (5, &f.seg_end),
                            (8, &partial),
                            (10, &active),
                        ],
                    ),
                    bind(
                        &k.level_means,
                        &[
                            (0, prm),
                            (6, &f.level_seg),
                            (7, iw),
                            (8, &partial),
                            (9, &mean),
                            (10, &active),
                        ],
                    ),
                    bind(
                        &k.subtract_means,
                        &[(0, prm), (1, &x), (2, &f.ids), (3, &mean), (4, &active)],
                    ),
                ]
            })
            .collect();
        let bg_save_x0 = bind(&k.save_x0, &[(0, &it_params), (1, &x), (4, &active), (5, &x0)]);
        let bg_save_x1 = bind(&k.save_x1, &[(0, &it_params), (1, &x), (4, &active), (6, &x1)]);
        let bg_extrapolate = bind(
            &k.extrapolate,
            &[(0, &it_params), (1, &x), (4, &active), (6, &x1), (7, &coef)],
        );
        let reduce_bg = |prm: &wgpu::Buffer| {
            (
                bind(
                    &k.lane_partials,
                    &[(0, prm), (1, &x), (2, &x0), (3, &x1), (12, &w), (5, &red), (6, &active)],
                ),
                bind(
                    &k.finish,
                    &[(0, prm), (5, &red), (6, &active), (7, &coef), (8, &scale), (9, &iters)],
                ),
            )
        };
        let (bg_scale_partials, bg_scale_finish) = reduce_bg(&scale_params);
        let (bg_it_partials, bg_it_finish) = reduce_bg(&it_params);
        ctx.check("binding buffers")?;

        let dispatch =
            |pass: &mut wgpu::ComputePass, pipe: &wgpu::ComputePipeline, bg: &wgpu::BindGroup, threads: u64| {
                let (gx, gy) = grid(threads);
                pass.set_pipeline(pipe);
                pass.set_bind_group(0, bg, &[]);
                pass.dispatch_workgroups(gx, gy, 1);
            };
        let nl = (n * lanes) as u64;
        let sweep = |pass: &mut wgpu::ComputePass| {
            for (f, bgs) in dev_fes.iter().zip(&sweep_groups) {
                dispatch(pass, &k.segment_sums, &bgs[0], f.n_seg as u64 * lanes as u64);
                dispatch(pass, &k.level_means, &bgs[1], f.levels as u64 * lanes as u64);
                dispatch(pass, &k.subtract_means, &bgs[2], nl);
            }
        };
        let reduce = |pass: &mut wgpu::ComputePass, partials: &wgpu::BindGroup, finish: &wgpu::BindGroup| {
            pass.set_pipeline(&k.lane_partials);
            pass.set_bind_group(0, partials, &[]);
            pass.dispatch_workgroups(n_chunks as u32, lanes as u32, 1);
            dispatch(pass, &k.finish, finish, lanes as u64);
        };
        let submit = |record: &dyn Fn(&mut wgpu::ComputePass)| {
            let mut enc = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("demean") });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("demean"),
                    timestamp_writes: None,
                });
                record(&mut pass);
            }
            ctx.queue.submit([enc.finish()]);
        };

        // First sweep; one effect is then exact. Otherwise measure each lane's scale and iterate.
        // with FEGPU_TIMING, wait after each phase so the times split upload, sweeps and read-back
        let timing = std::env::var_os("FEGPU_TIMING").is_some();
        let t_upload = if timing {
            ctx.wait("uploading")?;
            t_start.elapsed().as_secs_f64()
        } else {
            0.0
        };
        submit(&|pass| sweep(pass));
        if timing {
            ctx.wait("the first sweep")?;
            eprintln!(
                "timing: gpu upload {t_upload:.3} s, first sweep {:.3} s",
                t_start.elapsed().as_secs_f64() - t_upload
            );
        }
        let mut state = vec![2u32; lanes];
        if dev_fes.len() > 1 {
            submit(&|pass| reduce(pass, &bg_scale_partials, &bg_scale_finish));
            let max_rounds = opts.max_iter.saturating_sub(1) / 2 + 1;
            let mut rounds = 0;
            loop {
                submit(&|pass| {
                    for _ in 0..ROUNDS_PER_CHECK {
                        dispatch(pass, &k.save_x0, &bg_save_x0, nl);
                        sweep(pass);
                        dispatch(pass, &k.save_x1, &bg_save_x1, nl);
                        sweep(pass);
                        reduce(pass, &bg_it_partials, &bg_it_finish);
                        dispatch(pass, &k.extrapolate, &bg_extrapolate, nl);
                    }
                });
                rounds += ROUNDS_PER_CHECK;
                state = read_back(ctx, &active, 0, lanes as u64 * 4, "demeaning")?;
                if !state.contains(&1) || rounds > max_rounds + ROUNDS_PER_CHECK {
                    break;
                }
            }
        }
        let it = read_back(ctx, &iters, 0, lanes as u64 * 4, "demeaning")?;
        let t_device = t_start.elapsed().as_secs_f64();
        if grams {
            let pairs = c * (c + 1) / 2;
            let jobs = (reps * pairs) as u64;
            let gpart = poisoned(ctx, "cross-product partials", jobs * n_chunks as u64 * REAL_BYTES)?;
            let gram = poisoned(ctx, "cross products", jobs * REAL_BYTES)?;
            let bg_partials = bind(&k.gram_partials, &[(0, &it_params), (1, &x), (12, &w), (13, &gpart)]);
            let bg_finish = bind(&k.gram_finish, &[(0, &it_params), (13, &gpart), (14, &gram)]);
            ctx.check("binding the cross-product buffers")?;
            submit(&|pass| {
                pass.set_pipeline(&k.gram_partials);
                pass.set_bind_group(0, &bg_partials, &[]);
                pass.dispatch_workgroups(n_chunks as u32, jobs.min(65_535) as u32, jobs.div_ceil(65_535) as u32);
                dispatch(pass, &k.gram_finish, &bg_finish, jobs);
            });
            let words = read_back(ctx, &gram, 0, jobs * REAL_BYTES, "cross products")?;
            ctx.check("cross products")?;
            let mut out = Vec::with_capacity(reps);
            for r in 0..reps {
                let mut g = Vec::with_capacity(pairs);
                for pq in 0..pairs {
                    let (pi, qi) = super::pair_of(pq);
                    let v = decode_real(&words[2 * (r * pairs + pq)..2 * (r * pairs + pq) + 2], p)
                        * scales[pi]
                        * scales[qi];
                    if !v.is_finite() {
                        return Err(Error::Gpu(format!(
                            "the GPU returned a non-finite cross product (replicate {r}, pair {pq}): the computation did not complete; no results were used — rerun with `--backend cpu` (exact f64) or `--precision f64`"
                        )));
                    }
                    g.push(v);
                }
                out.push(g);
            }
            if timing {
                eprintln!(
                    "timing: gpu batch of {lanes} lanes × {n}: upload+iterate {t_device:.3} s, cross products {:.3} s",
                    t_start.elapsed().as_secs_f64() - t_device
                );
            }
            return Ok(BatchOut::Grams(out));
        }
        // decode every replicate's columns straight from the mapped buffer, in parallel
        let decoded = read_back_with(ctx, &x, 0, lane_bytes, "demeaning", |words| {
            (0..reps)
                .into_par_iter()
                .map(|r| {
                    (0..c)
                        .map(|j| {
                            let l = r * c + j;
                            let lane = &words[2 * l * n..2 * (l + 1) * n];
                            let col: Vec<f64> = lane.chunks_exact(2).map(|w| decode_real(w, p) * scales[j]).collect();
                            match col.iter().position(|v| !v.is_finite()) {
                                Some(i) => Err((l, i)),
                                None => Ok(col),
                            }
                        })
                        .collect::<std::result::Result<Vec<Vec<f64>>, (usize, usize)>>()
                })
                .collect::<Vec<_>>()
        })?;
        ctx.check("demeaning")?;
        if timing {
            eprintln!(
                "timing: gpu batch of {lanes} lanes × {n}: upload+iterate {t_device:.3} s, read-back+decode {:.3} s",
                t_start.elapsed().as_secs_f64() - t_device
            );
        }
        let columns = decoded
            .into_iter()
            .enumerate()
            .map(|(r, cols)| {
                let cols = cols.map_err(|(lane, obs)| {
                    Error::Gpu(format!(
                        "the GPU returned a non-finite value (lane {lane}, observation {obs}): the computation did not complete; no results were used — rerun with `--backend cpu` (exact f64) or `--precision f64`"
                    ))
                })?;
                let lane_iters = (0..c).map(|j| 1 + it[r * c + j] as usize).max().unwrap_or(1);
                let not_converged = (0..c)
                    .filter(|&j| state[r * c + j] == 1 || state[r * c + j] == 3)
                    .collect();
                Ok(Demeaned {
                    columns: cols,
                    iterations: lane_iters,
                    not_converged,
                    method: alternating_method(),
                    residual: f64::NAN,
                })
            })
            .collect::<Result<Vec<Demeaned>>>()?;
        Ok(BatchOut::Columns(columns))
    }
}

fn alternating_method() -> super::Method {
    super::Method {
        solver: "alternating projections".to_string(),
        preconditioner: None,
    }
}

/// What a batch returns: demeaned columns, or only their weighted cross products.
enum BatchOut {
    Columns(Vec<Demeaned>),
    Grams(Vec<Vec<f64>>),
}

impl Demeaner for GpuDemeaner {
    fn name(&self) -> String {
        self.ctx.describe(self.precision)
    }

    fn df64_selftest(&self) -> Option<crate::gpu::selftest::Status> {
        Some(self.ctx.df64_status())
    }

    fn demean(&self, problem: &Absorb, columns: Vec<Vec<f64>>, opts: &DemeanOptions) -> Result<Demeaned> {
        super::strategy::demean(self, problem, columns, opts)
    }

    fn roundoff(&self) -> f64 {
        match self.precision {
            Precision::Df64 => super::refine::DF64_ROUNDOFF,
            Precision::F64 => f64::EPSILON,
        }
    }

    fn one_pass(&self, problem: &Absorb, columns: &mut [Vec<f64>]) -> Result<()> {
        let mut out = self.alternating(problem, columns.to_vec(), &DemeanOptions::default())?;
        for (c, d) in columns.iter_mut().zip(out.columns.drain(..)) {
            *c = d;
        }
        Ok(())
    }

    fn alternating(&self, problem: &Absorb, columns: Vec<Vec<f64>>, opts: &DemeanOptions) -> Result<Demeaned> {
        let n = problem.nobs();
        let w = problem.weights.map(|w| w.to_vec()).unwrap_or_else(|| vec![1.0; n]);
        let mut out = GpuDemeaner::demean_batch(self, &problem.fes, &columns, &[w], opts)?;
        Ok(out.pop().unwrap())
    }

    fn krylov(&self, problem: &Absorb, columns: Vec<Vec<f64>>, opts: &DemeanOptions) -> Result<Demeaned> {
        cg::demean(self, problem, columns, opts)
    }

    /// Replicates run as lanes of one batch over the full rows (the trait's default, false,
    /// sent every replicate through a separate device call).
    fn batches_lanes(&self) -> bool {
        true
    }

    fn gpu(&self) -> Option<&GpuDemeaner> {
        Some(self)
    }

    fn demean_batch(
        &self,
        fes: &[&FixedEffect],
        columns: &[Vec<f64>],
        weights: &[Vec<f64>],
        opts: &DemeanOptions,
    ) -> Result<Vec<Demeaned>> {
        if sweeps_suffice(fes, opts) {
            return GpuDemeaner::demean_batch(self, fes, columns, weights, opts);
        }
        // Structures that need CG: each replicate through the one strategy (centred, at unit
        // scale, refined until accurate relative to itself, imprecise columns on the CPU).
        // One batch of lanes under a preconditioner built for the first weight vector gave
        // coefficients off by 1e-4 with "converged" on a 500-row, three-effect bdiff (issue
        // 25); replicates as lanes of one accurate solve are issue 26's work.
        weights
            .iter()
            .map(|w| self.demean(&Absorb::new(fes.to_vec(), Some(w)), columns.to_vec(), opts))
            .collect()
    }

    fn gram_batch(
        &self,
        fes: &[&FixedEffect],
        columns: &[Vec<f64>],
        weights: &[Vec<f64>],
        opts: &DemeanOptions,
    ) -> Result<Vec<Vec<f64>>> {
        if sweeps_suffice(fes, opts) {
            return GpuDemeaner::gram_batch(self, fes, columns, weights, opts);
        }
        Ok(super::grams_of(
            &Demeaner::demean_batch(self, fes, columns, weights, opts)?,
            weights,
        ))
    }
}

/// Whether a replicate batch runs on the device's batched sweeps rather than CG: asked for
/// (`--solver ap`), or a structure the sweeps solve in one pass or nearly (one effect, or one
/// large effect beside few-level ones, which the CPU solves exactly by FWL).
fn sweeps_suffice(fes: &[&FixedEffect], opts: &DemeanOptions) -> bool {
    opts.solver == super::Solver::Ap
        || fes.len() <= 1
        || (opts.solver == super::Solver::Auto && super::strategy::few_level_split(fes).is_some())
}

/// The CPU reference for batches: every replicate demeaned with its own weights, in parallel.
pub fn cpu_demean_batch(
    fes: &[&FixedEffect],
    columns: &[Vec<f64>],
    weights: &[Vec<f64>],
    opts: &DemeanOptions,
) -> Result<Vec<Demeaned>> {
    weights
        .par_iter()
        .map(|w| {
            let problem = Absorb::new(fes.to_vec(), Some(w));
            super::CpuDemeaner.demean(&problem, columns.to_vec(), opts)
        })
        .collect()
}
