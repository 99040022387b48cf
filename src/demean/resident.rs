//! The GPU engine that keeps a model resident on the device: a model's columns and its fixed effect's levels
//! are uploaded once, each batch of replicates makes its weight vectors on the device from the
//! Philox twin ([`Draws`], shaders/draws.wgsl), solves exactly on the device
//! (shaders/replicates.wgsl) and reads back c(c+1)/2 cross products per weight vector. Nothing
//! of size observations × replicates crosses the bus, and no step iterates.
//!
//! Structures: one effect to project, or one large effect beside few-level ones (the study's
//! firm×destination + year, [`few_level_split`]), whose dummies ride along as extra columns and
//! are partialled out of the cross products on the host (Frisch–Waugh–Lovell, as
//! [`crate::inference::fwl`] does on the CPU). Other structures use the batched solvers of
//! [`crate::demean::gpu`].
//!
//! Singletons: the host path zeroes the weight of singleton observations of each replicate
//! (reghdfe's rule); here they keep their weight. A singleton is fitted exactly by its own
//! level, so its demeaned values are zero and its cross products vanish: β is the same.

use std::time::Instant;

use super::strategy::few_level_split;
use crate::demean::gpu::{DeviceFe, GpuDemeaner};
use crate::error::{Error, Result};
use crate::fe::FixedEffect;
use crate::gpu::buffers::{
    decode_real, encode_reals, poisoned, power_of_two_scale, read_back, scratch, storage, uniform, REAL_BYTES,
};
use crate::gpu::pipelines::{bind_group, grid, Params, REDUCE_CHUNK, ROW_STRIDE};
use crate::gpu::GpuContext;
use crate::rng::stream;

/// How the weight vectors of a batch of replicates are made.
pub enum Draws<'a> {
    /// The base weights the engine was built with (already on the device): a single fit.
    Base,
    /// Given by the host (one weight vector each).
    Given(&'a [Vec<f64>]),
    /// `fegpu bdiff`: replicate r puts the `first` units with the smallest Philox keys in group 1
    /// ([`super::replicates::permutation_first_group`]); two weight vectors per replicate (group
    /// 1, group 0): base weight × membership (× the pairs multiplicity with `bsample`).
    Permutation {
        seed: u64,
        units: &'a [u32],
        n_units: usize,
        first: usize,
        bsample: bool,
        replicates: std::ops::Range<u32>,
        /// `u32::MAX`; fewer bits only to test ties at the selection threshold (the keys are
        /// ANDed with it on the device).
        key_mask: u32,
    },
    /// Pairs bootstrap: base weight × the multiplicity of the observation's cluster
    /// ([`super::replicates::pairs_multiplicities`]).
    Pairs {
        seed: u64,
        clusters: &'a [u32],
        n_clusters: usize,
        replicates: std::ops::Range<u32>,
    },
}

impl Draws<'_> {
    /// Weight vectors the draws make.
    pub fn vectors(&self) -> usize {
        match self {
            Draws::Base => 1,
            Draws::Given(w) => w.len(),
            Draws::Permutation { replicates, .. } => 2 * replicates.len(),
            Draws::Pairs { replicates, .. } => replicates.len(),
        }
    }
}

/// Compiled kernels of draws.wgsl and replicates.wgsl.
struct EngineKernels {
    perm_hist: wgpu::ComputePipeline,
    perm_find: wgpu::ComputePipeline,
    pairs_counts: wgpu::ComputePipeline,
    make_weights: wgpu::ComputePipeline,
    level_weights: wgpu::ComputePipeline,
    segment_sums: wgpu::ComputePipeline,
    gram_partials: wgpu::ComputePipeline,
    gram_tiled: wgpu::ComputePipeline,
    residual_weights: wgpu::ComputePipeline,
    demeaned_segment_sums: wgpu::ComputePipeline,
}

/// Uniform of draws.wgsl (`DrawParams`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct DrawParams {
    n: u32,
    units: u32,
    first: u32,
    reps: u32,
    rep0: u32,
    seed_lo: u32,
    seed_hi: u32,
    kind: u32,
    bsample: u32,
    digit: u32,
    row_stride: u32,
    key_mask: u32,
}

/// Time per phase, summed over batches (printed with `FEGPU_TIMING`, which also makes each
/// phase wait for the device so the split is real).
#[derive(Default, Debug, Clone, Copy)]
pub struct PhaseTimes {
    pub upload: f64,
    pub draws: f64,
    pub solve: f64,
    pub reduce: f64,
    pub read_back: f64,
    pub bytes_solved: f64,
}

impl PhaseTimes {
    /// The `FEGPU_TIMING` line: seconds per phase and the solve's effective bandwidth.
    pub fn line(&self) -> String {
        let work = self.solve + self.reduce;
        format!(
            "timing: device replicates: upload {:.3} s, draws {:.3} s, solve {:.3} s, reduce {:.3} s, read-back {:.3} s ({:.0} GB/s over solve+reduce)",
            self.upload,
            self.draws,
            self.solve,
            self.reduce,
            self.read_back,
            if work > 0.0 { self.bytes_solved / work / 1e9 } else { 0.0 }
        )
    }
}

/// The resident state of one model (see the module docs).
pub struct DeviceReplicates {
    n: usize,
    /// Model columns (y first); `m - c` dummy columns follow them on the device.
    c: usize,
    m: usize,
    scales: Vec<f64>,
    src: wgpu::Buffer,
    large: DeviceFe,
    base_w: wgpu::Buffer,
    kernels: EngineKernels,
    pub times: std::sync::Mutex<PhaseTimes>,
    /// Wait after each phase so [`PhaseTimes`] splits the time (`FEGPU_TIMING`, `fegpu bench`).
    pub timed: bool,
}

/// Work buffers of one [`DeviceReplicates::grams`] call, reused by each of its batches.
struct Work {
    w: wgpu::Buffer,
    inv_w: wgpu::Buffer,
    partial: wgpu::Buffer,
    mean: wgpu::Buffer,
    active: wgpu::Buffer,
    gpart: wgpu::Buffer,
    unit_of: wgpu::Buffer,
    cut: wgpu::Buffer,
    counts: wgpu::Buffer,
    hist: wgpu::Buffer,
}

/// Most columns (model columns and dummies) the tiled cross-product kernel takes (`TM` in
/// replicates.wgsl); wider models use the one-pair-per-workgroup kernel.
const TILED_COLUMNS: usize = 32;

/// Batch size limits: weight vectors per batch.
const MAX_VECTORS: usize = 4096;

/// Buckets of a permutation replicate's key histogram (the radix select of draws.wgsl looks at
/// 16 bits of the Philox keys at a time).
const HISTOGRAM_BUCKETS: u64 = 65_536;

impl DeviceReplicates {
    /// Upload `columns` (y first) and the projected effects' structure, or `None` when the
    /// structure is not one this engine solves exactly.
    pub fn new(
        gpu: &GpuDemeaner,
        fes: &[&FixedEffect],
        columns: &[&[f64]],
        base_w: &[f64],
    ) -> Result<Option<DeviceReplicates>> {
        let t0 = Instant::now();
        let (large, small) = match fes.len() {
            0 => return Ok(None),
            1 => (0, vec![]),
            _ => match few_level_split(fes) {
                Some(s) => s,
                None => return Ok(None),
            },
        };
        let ctx = gpu.context();
        let n = base_w.len();
        let c = columns.len();
        let dummies: Vec<(&FixedEffect, u32)> = small
            .iter()
            .flat_map(|&s| (1..fes[s].levels as u32).map(move |level| (fes[s], level)))
            .collect();
        let m = c + dummies.len();
        if m as u64 * n as u64 * REAL_BYTES > gpu.binding_limit {
            // the columns must sit in one binding: the batched solvers, which split the
            // columns into groups, take the model instead
            return Ok(None);
        }
        // one column at a time through the queue: the host never holds more than one encoded
        let src = scratch(ctx, "resident columns", m as u64 * n as u64 * REAL_BYTES)?;
        let mut scales = Vec::with_capacity(m);
        let p = gpu.precision();
        for a in 0..m {
            let dummy: Vec<f64>;
            let col: &[f64] = if a < c {
                // centred in f64 first (a constant is in the large effect's span): a level such
                // as y + 1e9 would otherwise take eight of df64's digits from the within part
                dummy = centred(columns[a], base_w);
                &dummy
            } else {
                let (fe, level) = dummies[a - c];
                dummy = fe.ids.iter().map(|&l| (l == level) as u8 as f64).collect();
                &dummy
            };
            let s = power_of_two_scale(col);
            let words = encode_reals(col.iter().map(|v| v / s), p);
            ctx.queue
                .write_buffer(&src, a as u64 * n as u64 * REAL_BYTES, bytemuck::cast_slice(&words));
            scales.push(s);
        }
        ctx.check("uploading the columns")?;
        let engine = DeviceReplicates {
            n,
            c,
            m,
            src,
            large: gpu.upload_fe(fes[large])?,
            base_w: storage(ctx, "base weights", &encode_reals(base_w.iter().copied(), p))?,
            kernels: EngineKernels::new(gpu)?,
            scales,
            times: Default::default(),
            timed: std::env::var_os("FEGPU_TIMING").is_some(),
        };
        let mut t = PhaseTimes::default();
        t.upload = t0.elapsed().as_secs_f64();
        *engine.times.lock().unwrap() = t;
        Ok(Some(engine))
    }

    /// The cross products (y first, dummies partialled out; [`crate::demean::pair_of`] order)
    /// of every weight vector `draws` makes, in order.
    pub fn grams(&self, gpu: &GpuDemeaner, draws: &Draws) -> Result<Vec<Vec<f64>>> {
        let total = draws.vectors();
        let step = self.vectors_per_batch(gpu, draws)?;
        let t0 = Instant::now();
        let work = self.work(gpu, draws, step.min(total))?;
        self.times.lock().unwrap().upload += t0.elapsed().as_secs_f64();
        let mut out = Vec::with_capacity(total);
        let mut v0 = 0;
        while v0 < total {
            let v1 = (v0 + step).min(total);
            let full = self.batch(gpu, draws, v0..v1, &work)?;
            out.extend(full.iter().map(|g| crate::linalg::partial_out_last(g, self.c, self.m)));
            v0 = v1;
        }
        Ok(out)
    }

    /// Weight vectors per batch: the most (even, so that a permutation replicate's two vectors
    /// share a batch; at most [`MAX_VECTORS`]) for which every work buffer fits one binding of
    /// the adapter and all of them the memory budget. An error, naming the buffer, only when
    /// not even one replicate's buffers fit a binding.
    fn vectors_per_batch(&self, gpu: &GpuDemeaner, draws: &Draws) -> Result<usize> {
        let sizes = |v: usize| self.work_sizes(draws, v as u64);
        let binds = |v: usize| sizes(v).iter().all(|&(_, b)| b <= gpu.binding_limit);
        let budget = |v: usize| sizes(v).iter().map(|&(_, b)| b).sum::<u64>() <= gpu.memory_budget;
        if let Some(&(label, bytes)) = sizes(2).iter().find(|&&(_, b)| b > gpu.binding_limit) {
            return Err(Error::Gpu(format!(
                "buffer `{label}` needs {bytes} bytes for a single replicate, more than this adapter binds ({} bytes); use --backend cpu",
                gpu.binding_limit
            )));
        }
        // the sizes grow with v: bisect on even counts for the largest that binds (and fits
        // the budget, which never goes below one replicate)
        let (mut lo, mut hi) = (1, MAX_VECTORS / 2);
        while lo < hi {
            let mid = (lo + hi + 1) / 2;
            if binds(2 * mid) && budget(2 * mid) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Ok(2 * lo)
    }

    /// The work buffers of a batch of `v` weight vectors, with their sizes in bytes (what
    /// [`DeviceReplicates::work`] allocates and [`DeviceReplicates::batch`] adds).
    fn work_sizes(&self, draws: &Draws, v: u64) -> [(&'static str, u64); 10] {
        let (lv, seg, m, n) = (
            self.large.levels as u64,
            self.large.n_seg as u64,
            self.m as u64,
            self.n as u64,
        );
        let n_chunks = self.n.div_ceil(REDUCE_CHUNK as usize) as u64;
        let n_units = match draws {
            Draws::Base | Draws::Given(_) => 0,
            Draws::Permutation { n_units, .. } => *n_units as u64,
            Draws::Pairs { n_clusters, .. } => *n_clusters as u64,
        };
        let permutation = matches!(draws, Draws::Permutation { .. });
        let pairs = m * (m + 1) / 2;
        [
            ("weights", v * n * REAL_BYTES),
            ("inverse level weights", v * lv * REAL_BYTES),
            ("segment sums", v * m * seg * REAL_BYTES),
            ("level means", v * m * lv * REAL_BYTES),
            ("lane state", v * m * 4),
            ("cross-product partials", v * pairs * n_chunks * REAL_BYTES),
            ("selection", v * 16),
            ("multiplicities", v * n_units * 4),
            (
                "key histograms",
                if permutation {
                    v.div_ceil(2) * HISTOGRAM_BUCKETS * 4
                } else {
                    4
                },
            ),
            ("cross products", v * pairs * REAL_BYTES),
        ]
    }

    /// Work buffers for batches of up to `vectors` weight vectors (allocated once per call).
    fn work(&self, gpu: &GpuDemeaner, draws: &Draws, vectors: usize) -> Result<Work> {
        let ctx = gpu.context();
        let units: &[u32] = match draws {
            Draws::Base | Draws::Given(_) => &[],
            Draws::Permutation { units, .. } => units,
            Draws::Pairs { clusters, .. } => clusters,
        };
        let [w, inv_w, partial, mean, active, gpart, cut, counts, hist, _] = self.work_sizes(draws, vectors as u64);
        Ok(Work {
            // every word of a batch's weights is written (by the host or make_weights)
            w: scratch(ctx, w.0, w.1)?,
            inv_w: scratch(ctx, inv_w.0, inv_w.1)?,
            partial: scratch(ctx, partial.0, partial.1)?,
            mean: scratch(ctx, mean.0, mean.1)?,
            active: storage(ctx, active.0, &vec![1u32; (active.1 / 4) as usize])?,
            gpart: scratch(ctx, gpart.0, gpart.1)?,
            unit_of: storage(ctx, "units", units)?,
            cut: scratch(ctx, cut.0, cut.1)?,
            counts: scratch(ctx, counts.0, counts.1)?,
            hist: scratch(ctx, hist.0, hist.1)?,
        })
    }
}

impl EngineKernels {
    fn new(gpu: &GpuDemeaner) -> Result<EngineKernels> {
        let ctx = gpu.context();
        let prelude = crate::gpu::pipelines::real_prelude(gpu.precision());
        let draws = crate::gpu::pipelines::module(
            ctx,
            "draws.wgsl",
            &format!("{prelude}\n{}", include_str!("../../shaders/philox.wgsl")),
            include_str!("../../shaders/draws.wgsl"),
        )?;
        let resident = crate::gpu::pipelines::module(
            ctx,
            "replicates.wgsl",
            &format!(
                "{prelude}\n{}\n{}",
                include_str!("../../shaders/weights_real.wgsl"),
                crate::gpu::pipelines::PAIRS
            ),
            include_str!("../../shaders/replicates.wgsl"),
        )?;
        let pipe = |m: &wgpu::ShaderModule, e: &str| crate::gpu::pipelines::pipeline(ctx, m, e);
        Ok(EngineKernels {
            perm_hist: pipe(&draws, "perm_hist")?,
            perm_find: pipe(&draws, "perm_find")?,
            pairs_counts: pipe(&draws, "pairs_counts")?,
            make_weights: pipe(&draws, "make_weights")?,
            level_weights: pipe(&resident, "level_weights")?,
            segment_sums: pipe(&resident, "src_segment_sums")?,
            gram_partials: pipe(&resident, "src_gram_partials")?,
            gram_tiled: pipe(&resident, "src_gram_tiled")?,
            residual_weights: pipe(&resident, "residual_weights")?,
            demeaned_segment_sums: pipe(&resident, "demeaned_segment_sums")?,
        })
    }
}

/// A compute pass recorder: (pipeline, bind group, workgroups x/y/z) in order.
type Step<'a> = (&'static str, &'a wgpu::ComputePipeline, wgpu::BindGroup, [u32; 3]);

/// Seconds per kernel (only with `FEGPU_TIMING`, where each dispatch is waited for).
static KERNEL_TIMES: std::sync::Mutex<Vec<(&'static str, f64)>> = std::sync::Mutex::new(Vec::new());

fn threads(n: u64) -> [u32; 3] {
    let (x, y) = grid(n);
    [x, y, 1]
}

fn submit(ctx: &GpuContext, steps: &[Step], clears: &[&wgpu::Buffer]) {
    let timing = std::env::var_os("FEGPU_TIMING").is_some();
    let record = |steps: &[Step], clears: &[&wgpu::Buffer]| {
        let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("replicates"),
        });
        for b in clears {
            enc.clear_buffer(b, 0, None);
        }
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("replicates"),
                timestamp_writes: None,
            });
            for (_, pipe, bg, [x, y, z]) in steps {
                pass.set_pipeline(pipe);
                pass.set_bind_group(0, bg, &[]);
                pass.dispatch_workgroups(*x, *y, *z);
            }
        }
        ctx.queue.submit([enc.finish()]);
    };
    if !timing {
        return record(steps, clears);
    }
    let _ = ctx.wait("timing");
    for (k, step) in steps.iter().enumerate() {
        let t = Instant::now();
        record(std::slice::from_ref(step), if k == 0 { clears } else { &[] });
        let _ = ctx.wait("timing");
        let mut times = KERNEL_TIMES.lock().unwrap();
        match times.iter_mut().find(|(name, _)| *name == step.0) {
            Some(entry) => entry.1 += t.elapsed().as_secs_f64(),
            None => times.push((step.0, t.elapsed().as_secs_f64())),
        }
    }
}

/// Per-kernel seconds so far, for the `FEGPU_TIMING` report.
pub fn kernel_times() -> String {
    KERNEL_TIMES
        .lock()
        .unwrap()
        .iter()
        .map(|(k, t)| format!("{k} {t:.3} s"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl DeviceReplicates {
    /// One batch: weight vectors `range` of `draws`, made, solved, reduced and read back.
    fn batch(
        &self,
        gpu: &GpuDemeaner,
        draws: &Draws,
        range: std::ops::Range<usize>,
        work: &Work,
    ) -> Result<Vec<Vec<f64>>> {
        let ctx = gpu.context();
        let timing = self.timed;
        let mut times = *self.times.lock().unwrap();
        let mut clock = Instant::now();
        let mut lap = |slot: &mut f64| -> Result<()> {
            if timing {
                ctx.wait("the replicate batch")?;
                *slot += clock.elapsed().as_secs_f64();
                clock = Instant::now();
            }
            Ok(())
        };
        let vectors = range.len();
        self.weights(gpu, draws, range, work)?;
        let Work {
            w,
            inv_w,
            partial,
            mean,
            active,
            gpart,
            ..
        } = work;
        lap(&mut times.draws)?;
        let (lv, seg, m) = (self.large.levels as u64, self.large.n_seg as u64, self.m as u64);
        let lanes = vectors as u64 * m;
        let n_chunks = self.n.div_ceil(REDUCE_CHUNK as usize) as u64;
        let prm = uniform(
            ctx,
            "replicate params",
            &Params {
                n: self.n as u32,
                lanes: lanes as u32,
                n_cols: m as u32,
                levels: lv as u32,
                n_seg: seg as u32,
                row_stride: ROW_STRIDE,
                n_chunks: n_chunks as u32,
                ..Default::default()
            },
        )?;
        let f = &self.large;
        let k = &self.kernels;
        let kg = &gpu.kernels;
        let bg = |pipe: &wgpu::ComputePipeline, e: &[(u32, &wgpu::Buffer)]| bind_group(ctx, pipe, e);
        submit(
            ctx,
            &[
                (
                    "level_weights",
                    &k.level_weights,
                    bg(
                        &k.level_weights,
                        &[
                            (0, &prm),
                            (12, &w),
                            (3, &f.order),
                            (4, &f.seg_start),
                            (5, &f.seg_end),
                            (6, &f.level_seg),
                            (7, &inv_w),
                        ],
                    ),
                    threads(vectors as u64 * lv),
                ),
                (
                    "segment_sums",
                    &k.segment_sums,
                    bg(
                        &k.segment_sums,
                        &[
                            (0, &prm),
                            (12, &w),
                            (3, &f.order),
                            (4, &f.seg_start),
                            (5, &f.seg_end),
                            (1, &self.src),
                            (8, &partial),
                        ],
                    ),
                    threads(lanes * seg),
                ),
                (
                    "level_means",
                    &kg.level_means,
                    bg(
                        &kg.level_means,
                        &[
                            (0, &prm),
                            (6, &f.level_seg),
                            (7, &inv_w),
                            (8, &partial),
                            (9, &mean),
                            (10, &active),
                        ],
                    ),
                    threads(lanes * lv),
                ),
            ],
            &[],
        );
        ctx.check("the replicate solve")?;
        lap(&mut times.solve)?;
        let pairs = m * (m + 1) / 2;
        let jobs = vectors as u64 * pairs;
        let gram = poisoned(ctx, "cross products", jobs * REAL_BYTES)?;
        submit(
            ctx,
            &[
                if self.m <= TILED_COLUMNS {
                    (
                        "gram_tiled",
                        &k.gram_tiled,
                        bg(
                            &k.gram_tiled,
                            &[(0, &prm), (12, w), (1, &self.src), (2, &f.ids), (9, mean), (13, gpart)],
                        ),
                        [n_chunks as u32, vectors as u32, 1],
                    )
                } else {
                    (
                        "gram_partials",
                        &k.gram_partials,
                        bg(
                            &k.gram_partials,
                            &[(0, &prm), (12, w), (1, &self.src), (2, &f.ids), (9, mean), (13, gpart)],
                        ),
                        [n_chunks as u32, jobs.min(65_535) as u32, jobs.div_ceil(65_535) as u32],
                    )
                },
                (
                    "gram_finish",
                    &kg.gram_finish,
                    bg(&kg.gram_finish, &[(0, &prm), (13, &gpart), (14, &gram)]),
                    threads(jobs),
                ),
            ],
            &[],
        );
        ctx.check("the replicate cross products")?;
        lap(&mut times.reduce)?;
        let words = read_back(ctx, &gram, 0, jobs * REAL_BYTES, "replicate cross products")?;
        lap(&mut times.read_back)?;
        times.bytes_solved +=
            (lanes * self.n as u64 * (REAL_BYTES + 4) + pairs * vectors as u64 * self.n as u64 * 4 * REAL_BYTES) as f64;
        *self.times.lock().unwrap() = times;
        (0..vectors)
            .map(|v| self.decode(gpu, &words[2 * v * pairs as usize..2 * (v + 1) * pairs as usize], v))
            .collect()
    }

    /// One weight vector's cross products of all m columns: scaled back and checked.
    fn decode(&self, gpu: &GpuDemeaner, words: &[u32], v: usize) -> Result<Vec<f64>> {
        let g: Vec<f64> = words
            .chunks_exact(2)
            .enumerate()
            .map(|(pq, w)| {
                let (p, q) = crate::demean::pair_of(pq);
                decode_real(w, gpu.precision()) * self.scales[p] * self.scales[q]
            })
            .collect();
        if let Some(pq) = g.iter().position(|v| !v.is_finite()) {
            return Err(Error::Gpu(format!(
                "the GPU returned a non-finite cross product (weight vector {v}, pair {pq}): the computation did not complete; no results were used — rerun with `--backend cpu` (exact f64) or `--precision f64`"
            )));
        }
        Ok(g)
    }

    /// The batch's weight vectors on the device (`vectors × n` reals).
    fn weights(&self, gpu: &GpuDemeaner, draws: &Draws, range: std::ops::Range<usize>, work: &Work) -> Result<()> {
        let ctx = gpu.context();
        let n = self.n;
        let (kind, seed, n_units, first, bsample, rep0, reps, key_mask) = match draws {
            Draws::Base => {
                let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("base weights"),
                });
                enc.copy_buffer_to_buffer(&self.base_w, 0, &work.w, 0, n as u64 * REAL_BYTES);
                ctx.queue.submit([enc.finish()]);
                return ctx.check("copying the base weights");
            }
            Draws::Given(ws) => {
                let words = encode_reals(ws[range].iter().flat_map(|w| w.iter().copied()), gpu.precision());
                ctx.queue.write_buffer(&work.w, 0, bytemuck::cast_slice(&words));
                return ctx.check("uploading the weights");
            }
            Draws::Permutation {
                seed,
                n_units,
                first,
                bsample,
                replicates,
                key_mask,
                ..
            } => (
                stream::PERMUTATION,
                *seed,
                *n_units,
                *first,
                *bsample,
                replicates.start + range.start as u32 / 2,
                range.len() / 2,
                *key_mask,
            ),
            Draws::Pairs {
                seed,
                n_clusters,
                replicates,
                ..
            } => (
                stream::PAIRS,
                *seed,
                *n_clusters,
                0,
                false,
                replicates.start + range.start as u32,
                range.len(),
                u32::MAX,
            ),
        };
        let d = DrawParams {
            n: n as u32,
            units: n_units as u32,
            first: first as u32,
            reps: reps as u32,
            rep0,
            seed_lo: seed as u32,
            seed_hi: (seed >> 32) as u32,
            kind,
            bsample: bsample as u32,
            digit: 0,
            row_stride: ROW_STRIDE,
            key_mask,
        };
        let prm = uniform(
            ctx,
            "params",
            &Params {
                n: n as u32,
                row_stride: ROW_STRIDE,
                ..Default::default()
            },
        )?;
        let d0 = uniform(ctx, "draw params", &d)?;
        let d1 = uniform(ctx, "draw params", &DrawParams { digit: 1, ..d })?;
        let Work {
            unit_of,
            cut,
            counts,
            w,
            hist,
            ..
        } = work;
        let k = &self.kernels;
        let bg = |pipe: &wgpu::ComputePipeline, e: &[(u32, &wgpu::Buffer)]| bind_group(ctx, pipe, e);
        let per_unit = threads(reps as u64 * n_units as u64);
        let mut tail: Vec<Step> = Vec::new();
        if kind == stream::PAIRS || bsample {
            tail.push((
                "pairs_counts",
                &k.pairs_counts,
                bg(&k.pairs_counts, &[(15, &d0), (4, &counts)]),
                per_unit,
            ));
        }
        tail.push((
            "make_weights",
            &k.make_weights,
            bg(
                &k.make_weights,
                &[
                    (15, &d0),
                    (0, &prm),
                    (1, &unit_of),
                    (3, &cut),
                    (4, &counts),
                    (5, &self.base_w),
                    (6, &w),
                ],
            ),
            threads(range.len() as u64 * n as u64),
        ));
        if kind == stream::PERMUTATION {
            // radix select: high digit, then (histogram cleared) the low digit within it
            let digit = |dp: &wgpu::Buffer| -> [Step; 2] {
                [
                    (
                        "perm_hist",
                        &k.perm_hist,
                        bg(&k.perm_hist, &[(15, dp), (2, &hist), (3, &cut)]),
                        per_unit,
                    ),
                    (
                        "perm_find",
                        &k.perm_find,
                        bg(&k.perm_find, &[(15, dp), (2, &hist), (3, &cut)]),
                        [reps as u32, 1, 1],
                    ),
                ]
            };
            submit(ctx, &digit(&d0), &[hist, counts]);
            let mut second: Vec<Step> = digit(&d1).into();
            second.extend(tail);
            submit(ctx, &second, &[hist]);
        } else {
            submit(ctx, &tail, &[counts]);
        }
        ctx.check("making the replicate weights")
    }
}

/// A single fit solved on the device: its level means stay there for the variance's pieces.
pub struct ResidentFit {
    work: Work,
    /// Cross products of all m columns (y, regressors, dummies), packed, true units.
    pub full_gram: Vec<f64>,
}

impl DeviceReplicates {
    /// Model columns (y first) and all columns including the few-level effects' dummies.
    pub fn widths(&self) -> (usize, usize) {
        (self.c, self.m)
    }

    /// Solve the fit under the base weights (already on the device): one exact pass, cross
    /// products.
    pub fn solve_fit(&self, gpu: &GpuDemeaner) -> Result<ResidentFit> {
        let work = self.work(gpu, &Draws::Base, 1)?;
        let full_gram = self.batch(gpu, &Draws::Base, 0..1, &work)?.pop().expect("one vector");
        Ok(ResidentFit { work, full_gram })
    }

    /// Device units of a residual coefficient vector (true units in, one per column). The
    /// residual it forms is in units of the outcome's scale (e / scales[0], near 1), not in
    /// true units: a residual of 1e-22 squared would leave f32's range (the df64 parts) and
    /// read back as zero. [`Self::residual_gram`] and [`Self::residual_group_sums`] multiply
    /// the scale back on the host.
    fn device_coef(&self, gpu: &GpuDemeaner, coef: &[f64]) -> Result<wgpu::Buffer> {
        let e_scale = self.scales[0];
        let dev = coef.iter().zip(&self.scales).map(|(c, s)| c * (s / e_scale));
        storage(
            gpu.context(),
            "residual coefficients",
            &encode_reals(dev, gpu.precision()),
        )
    }

    /// w e (`squared`: (w e)²) per observation into a fresh buffer, e = Σ_a coef_a ũ_a.
    fn residual_weights(
        &self,
        gpu: &GpuDemeaner,
        fit: &ResidentFit,
        coef: &[f64],
        squared: bool,
    ) -> Result<wgpu::Buffer> {
        let ctx = gpu.context();
        let prm = uniform(
            ctx,
            "residual params",
            &Params {
                n: self.n as u32,
                lanes: self.m as u32,
                n_cols: self.m as u32,
                levels: self.large.levels,
                row_stride: ROW_STRIDE,
                mode: squared as u32,
                ..Default::default()
            },
        )?;
        let c = self.device_coef(gpu, coef)?;
        let out = poisoned(ctx, "residual weights", self.n as u64 * REAL_BYTES)?;
        let k = &self.kernels.residual_weights;
        let entries = [
            (0, &prm),
            (1, &self.src),
            (2, &self.large.ids),
            (9, &fit.work.mean),
            (12, &fit.work.w),
            (10, &c),
            (11, &out),
        ];
        submit(
            ctx,
            &[(
                "residual_weights",
                k,
                bind_group(ctx, k, &entries),
                threads(self.n as u64),
            )],
            &[],
        );
        ctx.check("the residuals")?;
        Ok(out)
    }

    /// For each level of `groups` (cluster ids, or one group of everything), Σ w e ũ_a for
    /// every column a, true units: `groups.levels` rows of m.
    pub fn residual_group_sums(
        &self,
        gpu: &GpuDemeaner,
        fit: &ResidentFit,
        coef: &[f64],
        groups: &FixedEffect,
    ) -> Result<Vec<Vec<f64>>> {
        let ctx = gpu.context();
        let we = self.residual_weights(gpu, fit, coef, false)?;
        let grp = gpu.upload_fe(groups)?;
        let m = self.m as u32;
        let base = Params {
            n: self.n as u32,
            lanes: m,
            n_cols: m,
            n_seg: grp.n_seg,
            row_stride: ROW_STRIDE,
            ..Default::default()
        };
        let sums_prm = uniform(
            ctx,
            "group sums",
            &Params {
                levels: self.large.levels,
                ..base
            },
        )?;
        let means_prm = uniform(
            ctx,
            "group totals",
            &Params {
                levels: grp.levels,
                ..base
            },
        )?;
        let ones = storage(
            ctx,
            "ones",
            &encode_reals(std::iter::repeat(1.0).take(grp.levels as usize), gpu.precision()),
        )?;
        let partial = scratch(ctx, "group segment sums", m as u64 * grp.n_seg as u64 * REAL_BYTES)?;
        let totals = poisoned(ctx, "group sums", m as u64 * grp.levels as u64 * REAL_BYTES)?;
        let active = storage(ctx, "lane state", &vec![1u32; self.m])?;
        let (k, kg) = (&self.kernels.demeaned_segment_sums, &gpu.kernels.level_means);
        let sums = [
            (0, &sums_prm),
            (12, &we),
            (3, &grp.order),
            (4, &grp.seg_start),
            (5, &grp.seg_end),
            (1, &self.src),
            (2, &self.large.ids),
            (9, &fit.work.mean),
            (8, &partial),
        ];
        let reduce = [
            (0, &means_prm),
            (6, &grp.level_seg),
            (7, &ones),
            (8, &partial),
            (9, &totals),
            (10, &active),
        ];
        submit(
            ctx,
            &[
                (
                    "demeaned_segment_sums",
                    k,
                    bind_group(ctx, k, &sums),
                    threads(m as u64 * grp.n_seg as u64),
                ),
                (
                    "level_means",
                    kg,
                    bind_group(ctx, kg, &reduce),
                    threads(m as u64 * grp.levels as u64),
                ),
            ],
            &[],
        );
        ctx.check("the residual sums")?;
        let words = read_back(
            ctx,
            &totals,
            0,
            m as u64 * grp.levels as u64 * REAL_BYTES,
            "residual sums",
        )?;
        let p = gpu.precision();
        let e_scale = self.scales[0];
        let at = |a: usize, g: usize| {
            decode_real(&words[2 * (a * grp.levels as usize + g)..][..2], p) * self.scales[a] * e_scale
        };
        let out: Vec<Vec<f64>> = (0..grp.levels as usize)
            .map(|g| (0..self.m).map(|a| at(a, g)).collect())
            .collect();
        if out.iter().flatten().any(|v| !v.is_finite()) {
            return Err(Error::Gpu(
                "the GPU returned a non-finite residual sum: the computation did not complete; no results were used — rerun with `--backend cpu` (exact f64) or `--precision f64`"
                    .into(),
            ));
        }
        Ok(out)
    }

    /// Σ (w e)² ũ_a ũ_b over all columns (packed m×m, true units): the heteroskedastic meat.
    pub fn residual_gram(&self, gpu: &GpuDemeaner, fit: &ResidentFit, coef: &[f64]) -> Result<Vec<f64>> {
        let ctx = gpu.context();
        let we2 = self.residual_weights(gpu, fit, coef, true)?;
        let m = self.m as u64;
        let n_chunks = self.n.div_ceil(REDUCE_CHUNK as usize) as u64;
        let prm = uniform(
            ctx,
            "residual gram params",
            &Params {
                n: self.n as u32,
                lanes: m as u32,
                n_cols: m as u32,
                levels: self.large.levels,
                row_stride: ROW_STRIDE,
                n_chunks: n_chunks as u32,
                ..Default::default()
            },
        )?;
        let jobs = m * (m + 1) / 2;
        let gram = poisoned(ctx, "residual cross products", jobs * REAL_BYTES)?;
        let (k, kf) = (&self.kernels.gram_partials, &gpu.kernels.gram_finish);
        let part = [
            (0, &prm),
            (12, &we2),
            (1, &self.src),
            (2, &self.large.ids),
            (9, &fit.work.mean),
            (13, &fit.work.gpart),
        ];
        submit(
            ctx,
            &[
                (
                    "gram_partials",
                    k,
                    bind_group(ctx, k, &part),
                    [n_chunks as u32, jobs.min(65_535) as u32, jobs.div_ceil(65_535) as u32],
                ),
                (
                    "gram_finish",
                    kf,
                    bind_group(ctx, kf, &[(0, &prm), (13, &fit.work.gpart), (14, &gram)]),
                    threads(jobs),
                ),
            ],
            &[],
        );
        ctx.check("the residual cross products")?;
        let words = read_back(ctx, &gram, 0, jobs * REAL_BYTES, "residual cross products")?;
        let e2 = self.scales[0] * self.scales[0];
        Ok(self.decode(gpu, &words, 0)?.into_iter().map(|v| v * e2).collect())
    }
}

/// `col` minus its `w`-weighted mean ([`crate::linalg::passes::moments`]).
fn centred(col: &[f64], w: &[f64]) -> Vec<f64> {
    let mean = crate::linalg::passes::moments(&[col], Some(w))[0].mean;
    let mean = if mean.is_finite() { mean } else { 0.0 };
    col.iter().map(|v| v - mean).collect()
}
