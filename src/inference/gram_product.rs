//! Replicate Grams as one dense product over a block of replicates, for the [`LevelRuns`]
//! structure (one large effect beside few-level ones: the study's firm×destination + year).
//!
//! For weights w the Gram the direct path ([`LevelRuns::gram`]) builds is, before the dummies
//! are partialled out (u = the columns, then the few-level effects' 0/1 dummies),
//!
//! G(w) = Σ_i w_i u_i u_i' − Σ_runs S_g S_g' / W_g,   S_g = Σ_{i∈g} w_i u_i,  W_g = Σ_{i∈g} w_i.
//!
//! For a block of R weight vectors held as an N × R matrix W, the first term's column block is
//! one matrix product Wᵀ Q (Q_i = the products u_ip u_iq of row i's columns), which faer's
//! blocked SIMD kernels run near the machine's peak; the dummies' rows of the first term and
//! the run sums are sparse in u and are accumulated row by row as axpys over the block's R
//! replicates (contiguous, so they vectorise); the second term is Ŝ'Ŝ per replicate with
//! Ŝ_g = S_g / √W_g, one matrix product per chunk of runs. The work per replicate is
//! O(N · c²) like the direct path, at matrix-product speed instead of one dot product at a
//! time. Layouts are chosen for the memory system: W and Ŝ are transposed in tiles that stay
//! within a few pages (written by replicate first, they cost more in address translation than
//! the products did).
//!
//! A permutation pair is two weight vectors in the block. (Forming the second group by
//! complement — the base weights minus the first group's — needs a correction for every row
//! in neither group, the singletons pruned from either side: on the study's panel, where
//! firm×destination cells hold 3.8 rows on average, a random half leaves a quarter of the rows
//! alone in a cell, and that correction cost more than the second group's share of the
//! product.)
//!
//! [`block_pays`] is the cost model that chooses between this product and the per-replicate
//! paths ([`LevelRuns::gram_pair`] costs in proportion to the smaller group; this one to N).

use rayon::prelude::*;

use super::complement::LevelTotals;
use super::fwl::LevelRuns;
use crate::linalg::packed as tri;

/// Rows whose products `u_p u_q` are formed at once for the matrix product (a slab of Q in
/// cache, 4096 rows × the column pairs).
const SLAB: usize = 4096;

/// Runs whose between-run terms are summed by one matrix product per replicate.
const RUN_CHUNK: usize = 256;

/// Most replicates in one block: the block's accumulators (packed m×m × R) stay in cache.
pub const MAX_BLOCK: usize = 64;

/// What every block shares: each row's dummy positions (`nsmall` per row, `u32::MAX` for a
/// small effect's first level, which has no dummy).
pub struct GramProduct<'t> {
    totals: &'t LevelTotals,
    nsmall: usize,
    dummies: Vec<u32>,
}

/// y[..] += a · x[..]
#[inline]
fn axpy(y: &mut [f64], a: f64, x: &[f64]) {
    for (v, &w) in y.iter_mut().zip(x) {
        *v += a * w;
    }
}

impl<'t> GramProduct<'t> {
    pub fn new(runs: &LevelRuns, totals: &'t LevelTotals) -> GramProduct<'t> {
        let n = totals.base.len();
        let nsmall = runs.small_effects();
        let mut dummies = vec![u32::MAX; n * nsmall];
        let mut row = Vec::new();
        for i in 0..n {
            runs.dummies_of(totals.c, i, &mut row);
            for (k, &d) in row.iter().enumerate() {
                dummies[i * nsmall + k] = d as u32;
            }
        }
        GramProduct {
            totals,
            nsmall,
            dummies,
        }
    }

    pub fn shape(&self) -> Shape {
        let t = self.totals;
        Shape {
            c: t.c,
            m: t.m,
            nsmall: self.nsmall,
            runs: t.run_start.len() - 1,
        }
    }

    /// β of every weight vector (blocks in parallel, in order).
    pub fn betas(&self, ws: &[&[f64]], memory: u64) -> Vec<Option<Vec<f64>>> {
        let (c, m) = (self.totals.c, self.totals.m);
        ws.par_chunks(self.block_size(memory))
            .flat_map_iter(|blk| self.grams(blk).into_iter().map(move |g| beta_of(&g, c, m)))
            .collect()
    }

    /// Replicates per block for `n` rows within `memory` bytes (the block's weights, held
    /// twice: by replicate and by row).
    pub fn block_size(&self, memory: u64) -> usize {
        let n = self.totals.base.len() as u64;
        ((memory / (2 * 8 * n).max(1)) as usize).clamp(4, MAX_BLOCK)
    }

    /// The Grams of the weight vectors `ws` (each of N entries), packed m×m before the dummies
    /// are partialled out.
    pub fn grams(&self, ws: &[&[f64]]) -> Vec<Vec<f64>> {
        let t = self.totals;
        let (n, r, m) = (t.base.len(), ws.len(), t.m);
        let mm = m * (m + 1) / 2;
        // W by row: the R weights of row i contiguous
        let mut w = vec![0.0; n * r];
        // in tiles of rows, so that reads and writes both stay in cache
        const TILE: usize = 64;
        for i0 in (0..n).step_by(TILE) {
            let i1 = (i0 + TILE).min(n);
            for (j, v) in ws.iter().enumerate() {
                for (i, &x) in v[i0..i1].iter().enumerate() {
                    w[(i0 + i) * r + j] = x;
                }
            }
        }
        // first term, packed m×m × R (entry-major: R contiguous)
        let mut raw = vec![0.0; mm * r];
        self.column_block(&w, &mut raw, r);
        let mut btw = vec![vec![0.0; m * m]; r];
        self.row_pass(&w, r, &mut raw, &mut btw);
        btw.iter()
            .enumerate()
            .map(|(j, b)| {
                (0..m)
                    .flat_map(|p| (0..=p).map(move |q| (p, q)))
                    .map(|(p, q)| raw[tri(p, q) * r + j] - b[p + q * m])
                    .collect()
            })
            .collect()
    }

    /// raw[(p,q)][·] += Σ_i w_i u_ip u_iq for the column pairs (p, q < c): Wᵀ Q by faer's
    /// matrix product, Q formed a slab of rows at a time (`w` by row, R entries each).
    fn column_block(&self, w: &[f64], raw: &mut [f64], r: usize) {
        let t = self.totals;
        let (n, c, m) = (t.base.len(), t.c, t.m);
        let pc = c * (c + 1) / 2;
        let mut out = vec![0.0; r * pc];
        let mut q = vec![0.0; SLAB * pc];
        for i0 in (0..n).step_by(SLAB) {
            let len = SLAB.min(n - i0);
            // row by row (Q row-major: a row's products contiguous)
            for (k, qk) in q.chunks_exact_mut(pc).take(len).enumerate() {
                let u = &t.u[(i0 + k) * m..(i0 + k) * m + c];
                let mut e = 0;
                for p in 0..c {
                    for &uq in &u[..=p] {
                        qk[e] = u[p] * uq;
                        e += 1;
                    }
                }
            }
            // out (R × pc) += Wᵀ[:, slab] (R × len, column-major: row i's R weights) · Q
            faer::linalg::matmul::matmul(
                faer::MatMut::from_column_major_slice_mut(&mut out, r, pc),
                faer::Accum::Add,
                faer::MatRef::from_column_major_slice(&w[i0 * r..(i0 + len) * r], r, len),
                faer::MatRef::from_row_major_slice(&q[..len * pc], len, pc),
                1.0,
                faer::Par::Seq,
            );
        }
        // out is column-major R × pc: entry e's R values are contiguous, as raw's
        for (dst, src) in raw[..pc * r].iter_mut().zip(&out) {
            *dst += src;
        }
    }

    /// One pass over the rows, run by run: the dummies' rows of the first term (into `raw`)
    /// and every run's sums S (m entries) and weight W, for the R replicates of `w` (by row) at
    /// once; each chunk of runs' between-run terms Σ_g S_g S_g' / W_g go to `btw` (m × m,
    /// column-major, per replicate) as one matrix product per replicate (Ŝ'Ŝ, Ŝ = S / √W).
    fn row_pass(&self, w: &[f64], r: usize, raw: &mut [f64], btw: &mut [Vec<f64>]) {
        let t = self.totals;
        let (c, m, ns) = (t.c, t.m, self.nsmall);
        let runs = t.run_start.len() - 1;
        let chunk = RUN_CHUNK.min(runs.max(1));
        // S of the chunk's runs, [run][variable][replicate]; √W's inverse, [run][replicate]
        let mut s = vec![0.0; chunk * m * r];
        let mut isw = vec![0.0; chunk * r];
        let mut hat = vec![0.0; r * chunk * m];
        for g0 in (0..runs).step_by(chunk) {
            let len = chunk.min(runs - g0);
            s[..len * m * r].iter_mut().for_each(|v| *v = 0.0);
            for k in 0..len {
                let sk = &mut s[k * m * r..(k + 1) * m * r];
                let wk = &mut isw[k * r..(k + 1) * r];
                wk.iter_mut().for_each(|v| *v = 0.0);
                for i in t.run_start[g0 + k]..t.run_start[g0 + k + 1] {
                    if t.base[i] <= 0.0 {
                        continue;
                    }
                    let wi = &w[i * r..(i + 1) * r];
                    let u = &t.u[i * m..i * m + c];
                    for p in 0..c {
                        axpy(&mut sk[p * r..(p + 1) * r], u[p], wi);
                    }
                    let ds = &self.dummies[i * ns..(i + 1) * ns];
                    for &d in ds.iter().filter(|&&d| d != u32::MAX) {
                        let d = d as usize;
                        axpy(&mut sk[d * r..(d + 1) * r], 1.0, wi);
                        for p in 0..c {
                            axpy(&mut raw[tri(d, p) * r..(tri(d, p) + 1) * r], u[p], wi);
                        }
                        for &e in ds.iter().filter(|&&e| e != u32::MAX && e as usize <= d) {
                            let e = tri(d, e as usize);
                            axpy(&mut raw[e * r..(e + 1) * r], 1.0, wi);
                        }
                    }
                    axpy(wk, 1.0, wi);
                }
                wk.iter_mut()
                    .for_each(|v| *v = if *v > 0.0 { 1.0 / v.sqrt() } else { 0.0 });
            }
            // Ŝ of every replicate, [run][replicate][variable]: one run's writes stay within a
            // few pages (a layout by replicate first scattered them over R pages, and the
            // address translations cost more than the products)
            for k in 0..len {
                let x = &isw[k * r..(k + 1) * r];
                let hk = &mut hat[k * r * m..(k + 1) * r * m];
                for p in 0..m {
                    let sp = &s[(k * m + p) * r..(k * m + p + 1) * r];
                    for (j, (&v, &xj)) in sp.iter().zip(x).enumerate() {
                        hk[j * m + p] = v * xj;
                    }
                }
            }
            for (j, b) in btw.iter_mut().enumerate() {
                let h = &hat[j * m..(len - 1) * r * m + (j + 1) * m];
                let h = faer::MatRef::from_row_major_slice_with_stride(h, len, m, r * m);
                faer::linalg::matmul::matmul(
                    faer::MatMut::from_column_major_slice_mut(b, m, m),
                    faer::Accum::Add,
                    h.transpose(),
                    h,
                    1.0,
                    faer::Par::Seq,
                );
            }
        }
    }
}

/// β from a block Gram (dummies partialled out), or `None` when singular.
pub fn beta_of(g: &[f64], c: usize, m: usize) -> Option<Vec<f64>> {
    super::wls_from_gram(&crate::linalg::partial_out_last(g, c, m), c)
}

/// The cost model: whether the block product is cheaper than the per-replicate paths for
/// pairs of N = `n` rows whose smaller group has `small` rows. The pair path's work is its
/// rank-one terms, two per row of the smaller group (m² multiply-adds each) plus per-row
/// bookkeeping (drawing, pruning, the runs it touches); the block's is a matrix product over
/// every row's column pairs, the row updates over the block (the dummies and run sums) and the
/// between-run products per run. The weights are relative costs measured on the 2-core
/// reference machine: a multiply-add of faer's product 1, of an axpy over the block 2.5, and a
/// row of the pair path's bookkeeping 520 — fitted so that the model's crossover falls where
/// the measured one does on the study's 130k panel (smaller group at about 26% of the rows:
/// 17% ran 14.4 s per replicate engine against 18.8 s for the block, 50% 35.2 s against 21.7 s,
/// CPU seconds for 1000 replicates).
pub fn block_pays(n: usize, small: usize, shape: Shape) -> bool {
    if let Some(block) = forced_block() {
        return block;
    }
    let (n, small) = (n as f64, small as f64);
    let (c, m, ns, runs) = (shape.c as f64, shape.m as f64, shape.nsmall as f64, shape.runs as f64);
    let pair = small * (2.0 * m * m + 520.0);
    let row_axpys = c + 1.0 + ns * (1.0 + c + ns);
    let block = n * (c * (c + 1.0) / 2.0 + 2.5 * row_axpys) + runs * 2.5 * (c + 2.0 * ns) * (c + 2.0 * ns + 1.0);
    block < pair
}

/// The engine `FEGPU_ENGINE` forces (`block` or `single`, one replicate at a time), for the
/// tests that hold the engines to each other and for benchmarks; `None` lets the cost model
/// choose.
pub fn forced_block() -> Option<bool> {
    match std::env::var("FEGPU_ENGINE").ok()?.as_str() {
        "block" => Some(true),
        "single" => Some(false),
        _ => None,
    }
}

/// The sizes [`block_pays`] weighs.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub c: usize,
    pub m: usize,
    pub nsmall: usize,
    pub runs: usize,
}
