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
//! replicates (contiguous, so they vectorise); the second term is, per run, a rank-one update
//! of every replicate at once. The work per replicate is O(N · c²) like the direct path, but
//! at matrix-product speed instead of one dot product at a time.
//!
//! A permutation pair needs only one of its groups in the block: the other group's weights
//! are the base weights minus the first group's minus the rows in neither group (singletons
//! pruned from one side), so its first term and run sums follow by subtraction (O(1) per run
//! and replicate, plus the few rows in neither group), and only its between-run term is summed
//! again. The columns are the full-sample residuals (the warm start): their run sums under
//! the base weights are zero to rounding, so the subtraction loses nothing.
//!
//! [`block_pays`] is the cost model that chooses between this product and the per-replicate
//! paths ([`LevelRuns::gram_pair`] costs in proportion to the smaller group; this one to N).

use rayon::prelude::*;

use super::complement::LevelTotals;
use super::fwl::LevelRuns;

/// Rows whose products `u_p u_q` are formed at once for the matrix product (a slab of Q in
/// cache, 4096 rows × the column pairs).
const SLAB: usize = 4096;

/// Most replicates in one block: the block's accumulators (packed m×m × R) stay in cache.
pub const MAX_BLOCK: usize = 64;

/// What every block shares: each row's dummy positions (`nsmall` per row, `u32::MAX` for a
/// small effect's first level, which has no dummy).
pub struct GramProduct<'t> {
    totals: &'t LevelTotals,
    nsmall: usize,
    dummies: Vec<u32>,
}

/// The index of (p, q) in a packed lower triangle (row by row).
#[inline]
fn tri(p: usize, q: usize) -> usize {
    if p >= q {
        p * (p + 1) / 2 + q
    } else {
        q * (q + 1) / 2 + p
    }
}

/// y[..] += a · x[..]
#[inline]
fn axpy(y: &mut [f64], a: f64, x: &[f64]) {
    for (v, &w) in y.iter_mut().zip(x) {
        *v += a * w;
    }
}

/// The block's Grams: one replicate's per weight vector (and, for a pair block, the other
/// group's), packed m×m before the dummies are partialled out.
pub struct BlockGrams {
    pub first: Vec<Vec<f64>>,
    pub second: Vec<Vec<f64>>,
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
    pub fn betas(&self, ws: &[Vec<f64>], memory: u64) -> Vec<Option<Vec<f64>>> {
        let (c, m) = (self.totals.c, self.totals.m);
        ws.par_chunks(self.block_size(memory))
            .flat_map_iter(|blk| {
                let refs: Vec<&[f64]> = blk.iter().map(|w| w.as_slice()).collect();
                let g = self.grams(&refs, None);
                g.first.into_iter().map(move |g| beta_of(&g, c, m))
            })
            .collect()
    }

    /// β of both groups of every permutation pair (the first group's weights, and the rows
    /// with base weight in neither group), `[first, second]` per pair, in order.
    pub fn pair_betas(&self, pairs: &[(Vec<f64>, Vec<u32>)], memory: u64) -> Vec<Option<Vec<f64>>> {
        let (c, m) = (self.totals.c, self.totals.m);
        pairs
            .par_chunks(self.block_size(memory))
            .flat_map_iter(|blk| {
                let refs: Vec<&[f64]> = blk.iter().map(|(w, _)| w.as_slice()).collect();
                let lists: Vec<&[u32]> = blk.iter().map(|(_, l)| l.as_slice()).collect();
                let g = self.grams(&refs, Some(&lists));
                g.first
                    .into_iter()
                    .zip(g.second)
                    .flat_map(move |(a, b)| [beta_of(&a, c, m), beta_of(&b, c, m)])
            })
            .collect()
    }

    /// Replicates per block for `n` rows within `memory` bytes (the block's weights, held
    /// twice: by replicate and by row).
    pub fn block_size(&self, memory: u64) -> usize {
        let n = self.totals.base.len() as u64;
        ((memory / (2 * 8 * n).max(1)) as usize).clamp(4, MAX_BLOCK)
    }

    /// The Grams of the weight vectors `ws` (each of N entries). With `pairs`, `ws` are the
    /// first groups of permutation pairs whose second group is the base weights minus `ws[r]`
    /// minus the rows `pairs[r]` lists (base weight in neither group); their Grams come back
    /// in `second`.
    pub fn grams(&self, ws: &[&[f64]], pairs: Option<&[&[u32]]>) -> BlockGrams {
        let t = self.totals;
        let (n, r, m) = (t.base.len(), ws.len(), t.m);
        let mm = m * (m + 1) / 2;
        // W by row: the R weights of row i contiguous
        let mut w = vec![0.0; n * r];
        for (j, v) in ws.iter().enumerate() {
            for (i, &x) in v.iter().enumerate() {
                w[i * r + j] = x;
            }
        }
        // first term, packed m×m × R (entry-major: R contiguous)
        let mut raw = vec![0.0; mm * r];
        self.column_block(&w, &mut raw, r);
        let mut btw = vec![0.0; mm * r];
        let mut btw2 = pairs.map(|_| vec![0.0; mm * r]);
        self.row_pass(&w, r, &mut raw, &mut btw, btw2.as_deref_mut(), pairs);
        let unpack =
            |a: &[f64], b: &[f64], j: usize| -> Vec<f64> { (0..mm).map(|e| a[e * r + j] - b[e * r + j]).collect() };
        let first: Vec<Vec<f64>> = (0..r).map(|j| unpack(&raw, &btw, j)).collect();
        let second = match (pairs, &btw2) {
            (Some(pairs), Some(b2)) => (0..r)
                .map(|j| {
                    // Σ w u u' of the second group: the base's minus the first group's minus
                    // the rows in neither
                    let mut g: Vec<f64> = (0..mm).map(|e| t.raw[e] - raw[e * r + j] - b2[e * r + j]).collect();
                    for &i in pairs[j] {
                        let (i, b) = (i as usize, t.base[i as usize]);
                        let u = &t.u[i * m..(i + 1) * m];
                        for p in 0..m {
                            if u[p] != 0.0 {
                                for q in 0..=p {
                                    g[tri(p, q)] -= b * u[p] * u[q];
                                }
                            }
                        }
                    }
                    g
                })
                .collect(),
            _ => Vec::new(),
        };
        BlockGrams { first, second }
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
            for p in 0..c {
                for qq in 0..=p {
                    let col = &mut q[tri(p, qq) * len..(tri(p, qq) + 1) * len];
                    for (k, v) in col.iter_mut().enumerate() {
                        let u = &t.u[(i0 + k) * m..(i0 + k) * m + c];
                        *v = u[p] * u[qq];
                    }
                }
            }
            // out (R × pc) += Wᵀ[:, slab] (R × len, column-major: row i's R weights) · Q
            faer::linalg::matmul::matmul(
                faer::MatMut::from_column_major_slice_mut(&mut out, r, pc),
                faer::Accum::Add,
                faer::MatRef::from_column_major_slice(&w[i0 * r..(i0 + len) * r], r, len),
                faer::MatRef::from_column_major_slice(&q[..len * pc], len, pc),
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
    /// and every run's between-run term S S' / W (into `btw`), for the R replicates of `w` (by
    /// row) at once; with `pairs`, also the second groups' between-run terms (into `btw2`).
    fn row_pass(
        &self,
        w: &[f64],
        r: usize,
        raw: &mut [f64],
        btw: &mut [f64],
        mut btw2: Option<&mut [f64]>,
        pairs: Option<&[&[u32]]>,
    ) {
        let t = self.totals;
        let (c, m, ns) = (t.c, t.m, self.nsmall);
        let mut s = vec![0.0; m * r];
        let mut s2 = vec![0.0; m * r];
        let (mut wsum, mut cnt, mut inv) = (vec![0.0; r], vec![0.0; r], vec![0.0; r]);
        let (mut w2, mut n2) = (vec![0.0; r], vec![0.0; r]);
        let mut nz: Vec<usize> = Vec::with_capacity(m);
        let mut cursor = vec![0usize; r];
        for g in 0..t.run_start.len() - 1 {
            let (a, b) = (t.run_start[g], t.run_start[g + 1]);
            nz.clear();
            nz.extend(0..c);
            s[..c * r].iter_mut().for_each(|v| *v = 0.0);
            wsum.iter_mut().for_each(|v| *v = 0.0);
            cnt.iter_mut().for_each(|v| *v = 0.0);
            for i in a..b {
                if t.base[i] <= 0.0 {
                    continue;
                }
                let wi = &w[i * r..(i + 1) * r];
                let u = &t.u[i * m..i * m + c];
                let ds = &self.dummies[i * ns..(i + 1) * ns];
                for &d in ds.iter().filter(|&&d| d != u32::MAX) {
                    let d = d as usize;
                    if !nz[c..].contains(&d) {
                        nz.push(d);
                        s[d * r..(d + 1) * r].iter_mut().for_each(|v| *v = 0.0);
                    }
                }
                for p in 0..c {
                    axpy(&mut s[p * r..(p + 1) * r], u[p], wi);
                }
                for &d in ds.iter().filter(|&&d| d != u32::MAX) {
                    let d = d as usize;
                    axpy(&mut s[d * r..(d + 1) * r], 1.0, wi);
                    for p in 0..c {
                        axpy(&mut raw[tri(d, p) * r..(tri(d, p) + 1) * r], u[p], wi);
                    }
                    for &e in ds.iter().filter(|&&e| e != u32::MAX && e as usize <= d) {
                        let e = tri(d, e as usize);
                        axpy(&mut raw[e * r..(e + 1) * r], 1.0, wi);
                    }
                }
                axpy(&mut wsum, 1.0, wi);
                for (k, &x) in cnt.iter_mut().zip(wi) {
                    *k += (x > 0.0) as u8 as f64;
                }
            }
            for (v, &x) in inv.iter_mut().zip(&wsum) {
                *v = if x > 0.0 { 1.0 / x } else { 0.0 };
            }
            between(btw, &s, &inv, &nz, r);
            let (Some(pairs), Some(btw2)) = (pairs, btw2.as_deref_mut()) else {
                continue;
            };
            // the second group: the run's base sums minus the first group's minus the rows in
            // neither group
            let base_sums = &t.run_sums[g * m..(g + 1) * m];
            for &p in &nz {
                for j in 0..r {
                    s2[p * r + j] = base_sums[p] - s[p * r + j];
                }
            }
            for j in 0..r {
                w2[j] = t.run_weight[g] - wsum[j];
                n2[j] = t.run_rows[g] as f64 - cnt[j];
                let list = pairs[j];
                while cursor[j] < list.len() && (list[cursor[j]] as usize) < b {
                    let i = list[cursor[j]] as usize;
                    let bi = t.base[i];
                    for &p in &nz {
                        s2[p * r + j] -= bi * t.u[i * m + p];
                    }
                    w2[j] -= bi;
                    n2[j] -= 1.0;
                    cursor[j] += 1;
                }
                inv[j] = if n2[j] > 0.0 { 1.0 / w2[j] } else { 0.0 };
            }
            between(btw2, &s2, &inv, &nz, r);
        }
    }
}

/// β from a block Gram (dummies partialled out), or `None` when singular.
pub fn beta_of(g: &[f64], c: usize, m: usize) -> Option<Vec<f64>> {
    super::wls_from_gram(&crate::linalg::partial_out_last(g, c, m), c)
}

/// The cost model: whether the block product is cheaper than the per-replicate paths for
/// pairs of N = `n` rows whose smaller group has `small` rows (`c` columns, `m` with the
/// dummies, `runs` runs). The pair path's work is its rank-one terms, two per row of the
/// smaller group ((m² multiply-adds each, at matrix-product speed) plus per-row bookkeeping;
/// the block's is a matrix product over every row's column pairs, the sparse row updates
/// and two between-run terms per run. The weights are relative speeds measured on the
/// 2-core reference machine (README, "Resampling engines"): a multiply-add inside faer's
/// product costs 1, in an axpy over the block 2.5, and a row of per-row bookkeeping 200.
pub fn block_pays(n: usize, small: usize, shape: Shape) -> bool {
    if let Some(block) = forced_block() {
        return block;
    }
    let (n, small) = (n as f64, small as f64);
    let (c, m, ns, runs) = (shape.c as f64, shape.m as f64, shape.nsmall as f64, shape.runs as f64);
    let pair = small * (2.0 * m * m + 200.0);
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

/// btw[(p,q)][·] += S_p · inv · S_q over the run's nonzero variables `nz` (every replicate).
fn between(btw: &mut [f64], s: &[f64], inv: &[f64], nz: &[usize], r: usize) {
    let mut scaled = vec![0.0; r];
    for (x, &p) in nz.iter().enumerate() {
        for ((v, &a), &b) in scaled.iter_mut().zip(&s[p * r..(p + 1) * r]).zip(inv) {
            *v = a * b;
        }
        for &q in &nz[..=x] {
            let e = tri(p, q);
            for ((g, &a), &b) in btw[e * r..(e + 1) * r]
                .iter_mut()
                .zip(&scaled)
                .zip(&s[q * r..(q + 1) * r])
            {
                *g += a * b;
            }
        }
    }
}
