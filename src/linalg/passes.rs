//! Sums over observations as single passes over memory: the cross products of OLS, the
//! residuals, and the pieces of every variance estimator.
//!
//! Rows are cut into tasks of [`TASK`] rows (run in parallel) and tasks into blocks of
//! [`BLOCK`] rows: a block of every column (14 columns × 2,048 rows × 8 bytes ≈ 230 KB, in L2) is
//! brought into cache once and every pair of columns is reduced there, so forming `X̃'WX̃`
//! reads each column from memory once instead of once per pair. Partial sums are added in task
//! order, and the cut depends on the number of rows only, so results do not depend on the
//! number of threads; summing short blocks first is also more accurate than one running sum.

use rayon::prelude::*;

use crate::linalg::{dot, Mat};

/// Rows per cache block.
pub const BLOCK: usize = 2048;
/// Rows per parallel task.
pub const TASK: usize = 32 * BLOCK;

/// Index of pair `(a, b)`, `b ≤ a`, in a packed lower triangle.
fn packed(a: usize, b: usize) -> usize {
    a * (a + 1) / 2 + b
}

/// The row ranges of the parallel tasks.
fn tasks(n: usize) -> Vec<std::ops::Range<usize>> {
    (0..n.div_ceil(TASK))
        .map(|t| t * TASK..((t + 1) * TASK).min(n))
        .collect()
}

/// Add per-task partial vectors in task order.
fn add_in_order(parts: Vec<Vec<f64>>, len: usize) -> Vec<f64> {
    let mut total = vec![0.0; len];
    for p in parts {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}

/// What multiplies row i of a cross product: nothing, `w_i`, or `u_i v_i` (the HC1 meat's
/// squared weighted residuals, formed block by block instead of as a column of their own).
#[derive(Clone, Copy)]
pub enum RowScale<'a> {
    One,
    By(&'a [f64]),
    ByProduct(&'a [f64], &'a [f64]),
}

impl<'a> RowScale<'a> {
    /// The scale of rows `r0..r1`, written into `buf` when it is a product.
    fn block(self, r0: usize, r1: usize, buf: &'a mut [f64]) -> Option<&'a [f64]> {
        match self {
            RowScale::One => None,
            RowScale::By(w) => Some(&w[r0..r1]),
            RowScale::ByProduct(u, v) => {
                for ((o, a), b) in buf.iter_mut().zip(&u[r0..r1]).zip(&v[r0..r1]) {
                    *o = a * b;
                }
                Some(&buf[..r1 - r0])
            }
        }
    }
}

/// `Σ_i w_i a_i b_i` for every pair of `cols` (`w = 1` when unweighted), as a symmetric matrix.
pub fn cross_products(cols: &[&[f64]], weights: Option<&[f64]>) -> Mat {
    cross_products_scaled(cols, weights.map_or(RowScale::One, RowScale::By))
}

/// `Σ_i u_i v_i a_i b_i` for every pair of `cols` (HC1's meat with `u = v = w e`).
pub fn cross_products_by(cols: &[&[f64]], u: &[f64], v: &[f64]) -> Mat {
    cross_products_scaled(cols, RowScale::ByProduct(u, v))
}

fn cross_products_scaled(cols: &[&[f64]], scale: RowScale) -> Mat {
    let k = cols.len();
    let n = cols.first().map_or(0, |c| c.len());
    let len = k * (k + 1) / 2;
    let parts: Vec<Vec<f64>> = tasks(n)
        .into_par_iter()
        .map(|range| {
            let mut acc = vec![0.0; len];
            let mut ws = vec![0.0; BLOCK];
            for r0 in range.clone().step_by(BLOCK) {
                let r1 = (r0 + BLOCK).min(range.end);
                let w = scale.block(r0, r1, &mut ws);
                let block: Vec<&[f64]> = cols.iter().map(|c| &c[r0..r1]).collect();
                add_lower_triangle(&mut acc, &block, w);
            }
            acc
        })
        .collect();
    let total = add_in_order(parts, len);
    let mut m = Mat::zeros(k);
    for a in 0..k {
        for b in 0..=a {
            m.set(a, b, total[packed(a, b)]);
            m.set(b, a, total[packed(a, b)]);
        }
    }
    m
}

/// Adds one block's `Σ w a b` for every pair `b ≤ a` to the packed lower triangle `acc`, in
/// register tiles: two left columns against four right ones (see [`dots`]); where a pair of
/// left columns leaves two right columns (its own 2×2 diagonal block) a 2×2 tile, and a last
/// single left column runs against four at a time. For 13 columns that is 100 multiply-adds
/// per row for the 91 products, where 2×4 tiles everywhere would do 128.
fn add_lower_triangle(acc: &mut [f64], cols: &[&[f64]], w: Option<&[f64]>) {
    let k = cols.len();
    let mut add = |a: usize, b0: usize, row: &[f64]| {
        for (j, v) in row.iter().enumerate().take((a + 1).saturating_sub(b0)) {
            acc[packed(a, b0 + j)] += v;
        }
    };
    for a0 in (0..k).step_by(2) {
        if a0 + 1 == k {
            // the last column alone: against four right columns at a time
            for b0 in (0..=a0).step_by(4) {
                let pick = |j: usize| cols[(b0 + j).min(a0)];
                let d = dots::<1, 4>([cols[a0]], [pick(0), pick(1), pick(2), pick(3)], w);
                add(a0, b0, &d[0]);
            }
            continue;
        }
        let (a1, left) = (a0 + 1, [cols[a0], cols[a0 + 1]]);
        let full = (a1 + 1) / 4 * 4;
        for b0 in (0..full).step_by(4) {
            let d = dots::<2, 4>(left, [cols[b0], cols[b0 + 1], cols[b0 + 2], cols[b0 + 3]], w);
            add(a0, b0, &d[0]);
            add(a1, b0, &d[1]);
        }
        if full < a1 + 1 {
            // the pair's own diagonal block
            let d = dots::<2, 2>(left, left, w);
            add(a0, a0, &d[0]);
            add(a1, a0, &d[1]);
        }
    }
}

/// `Σ_i w_i a_ri b_ci` for `R` left columns against `C` right columns at once (`w = 1` when
/// there is no row scale): each loaded value serves several products (a 2×4 tile does six
/// loads, seven with a scale, per eight multiply-adds; the scale multiplies the left values in
/// registers, so weighted sums cost no extra pass). With AVX2 and FMA (checked at run time)
/// R·C vector multiply-add chains run side by side, which is what lets the cross products keep
/// up with memory; elsewhere a portable loop. (The two round differently in the last bits:
/// results are deterministic on one machine, not bit-equal across instruction sets.)
fn dots<const R: usize, const C: usize>(a: [&[f64]; R], b: [&[f64]; C], w: Option<&[f64]>) -> [[f64; C]; R] {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // Safety: the CPU has the features the function is compiled for (checked above).
            return unsafe {
                match w {
                    Some(w) => dots_avx2::<R, C, true>(a, b, w),
                    None => dots_avx2::<R, C, false>(a, b, &[]),
                }
            };
        }
    }
    let mut out = [[0.0; C]; R];
    for (o, l) in out.iter_mut().zip(a) {
        for (c0, chunk) in o.chunks_mut(4).enumerate() {
            let pick = |j: usize| b[(4 * c0 + j).min(C - 1)];
            let d = dots4_portable(l, [pick(0), pick(1), pick(2), pick(3)], w);
            chunk.copy_from_slice(&d[..chunk.len()]);
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dots_avx2<const R: usize, const C: usize, const SCALED: bool>(
    a: [&[f64]; R],
    b: [&[f64]; C],
    w: &[f64],
) -> [[f64; C]; R] {
    use std::arch::x86_64::*;
    let n = a[0].len();
    assert!(a.iter().chain(&b).all(|c| c.len() == n) && (!SCALED || w.len() == n));
    let m = n / 4 * 4;
    let mut acc = [[_mm256_setzero_pd(); C]; R];
    let mut i = 0;
    while i < m {
        // Safety: i + 4 ≤ n for every column and the scale (same length, asserted above).
        let mut x = [_mm256_setzero_pd(); R];
        for (xr, ar) in x.iter_mut().zip(&a) {
            *xr = _mm256_loadu_pd(ar.as_ptr().add(i));
        }
        if SCALED {
            let s = _mm256_loadu_pd(w.as_ptr().add(i));
            for xr in x.iter_mut() {
                *xr = _mm256_mul_pd(*xr, s);
            }
        }
        for (j, bj) in b.iter().enumerate() {
            let y = _mm256_loadu_pd(bj.as_ptr().add(i));
            for (accr, xr) in acc.iter_mut().zip(&x) {
                accr[j] = _mm256_fmadd_pd(*xr, y, accr[j]);
            }
        }
        i += 4;
    }
    let mut out = [[0.0; C]; R];
    for r in 0..R {
        for j in 0..C {
            let mut lanes = [0.0; 4];
            _mm256_storeu_pd(lanes.as_mut_ptr(), acc[r][j]);
            let scale = |t: usize| if SCALED { w[t] } else { 1.0 };
            let tail: f64 = (m..n).map(|t| scale(t) * a[r][t] * b[j][t]).sum();
            out[r][j] = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + tail;
        }
    }
    out
}

/// `Σ_i w_i a_i b_ji` for one column against four (`w = 1` when `None`), in four-lane chains.
#[inline(always)]
fn dots4_portable(a: &[f64], b: [&[f64]; 4], w: Option<&[f64]>) -> [f64; 4] {
    let mut acc = [[0.0f64; 4]; 4];
    let mut scaled = [0.0f64; 4];
    let rows = a.chunks_exact(4).zip(b[0].chunks_exact(4)).zip(b[1].chunks_exact(4));
    let rows = rows.zip(b[2].chunks_exact(4)).zip(b[3].chunks_exact(4));
    for (r, ((((x, p), q), t), s)) in rows.enumerate() {
        let x = match w {
            Some(w) => {
                for l in 0..4 {
                    scaled[l] = x[l] * w[4 * r + l];
                }
                &scaled[..]
            }
            None => x,
        };
        for l in 0..4 {
            acc[0][l] += x[l] * p[l];
            acc[1][l] += x[l] * q[l];
            acc[2][l] += x[l] * t[l];
            acc[3][l] += x[l] * s[l];
        }
    }
    let tail = a.len() / 4 * 4;
    let scale = |r: usize| w.map_or(1.0, |w| w[r]);
    let mut out = [0.0; 4];
    for (j, o) in out.iter_mut().enumerate() {
        let t: f64 = (tail..a.len()).map(|r| scale(r) * a[r] * b[j][r]).sum();
        *o = (acc[j][0] + acc[j][1]) + (acc[j][2] + acc[j][3]) + t;
    }
    out
}

/// `Σ_i w_i l_i r_i` for every column `l` of `left` and `r` of `right` (row-major,
/// `left.len() × right.len()`), in one blocked pass.
pub fn cross(left: &[&[f64]], right: &[&[f64]], weights: Option<&[f64]>) -> Vec<f64> {
    let (a, b) = (left.len(), right.len());
    let n = left.first().map_or(0, |c| c.len());
    let parts: Vec<Vec<f64>> = tasks(n)
        .into_par_iter()
        .map(|range| {
            let mut acc = vec![0.0; a * b];
            let mut wl = vec![0.0; BLOCK];
            for r0 in range.clone().step_by(BLOCK) {
                let r1 = (r0 + BLOCK).min(range.end);
                for (p, l) in left.iter().enumerate() {
                    let l = &l[r0..r1];
                    let l: &[f64] = match weights {
                        Some(w) => {
                            for ((o, x), wi) in wl.iter_mut().zip(l).zip(&w[r0..r1]) {
                                *o = wi * x;
                            }
                            &wl[..r1 - r0]
                        }
                        None => l,
                    };
                    for (q, r) in right.iter().enumerate() {
                        acc[p * b + q] += dot(l, &r[r0..r1]);
                    }
                }
            }
            acc
        })
        .collect();
    add_in_order(parts, a * b)
}

/// A column's weighted count `Σw`, mean `Σwx/Σw`, centred sum of squares `Σw(x − mean)²` and raw
/// sum of squares `Σwx²` (`w = 1` when unweighted).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Moments {
    pub sum_w: f64,
    pub mean: f64,
    pub centred_ss: f64,
    pub sum_sq: f64,
}

impl Moments {
    /// The moments of two parts together (Chan, Golub & LeVeque 1979): means are combined, not
    /// sums of squares subtracted, so the centred sum keeps its precision when the mean is large.
    fn merge(self, o: Moments) -> Moments {
        let sum_sq = self.sum_sq + o.sum_sq;
        if o.sum_w == 0.0 {
            return Moments { sum_sq, ..self };
        }
        if self.sum_w == 0.0 {
            return Moments { sum_sq, ..o };
        }
        let sum_w = self.sum_w + o.sum_w;
        let d = o.mean - self.mean;
        Moments {
            sum_w,
            mean: self.mean + d * (o.sum_w / sum_w),
            centred_ss: self.centred_ss + o.centred_ss + d * d * (self.sum_w * o.sum_w / sum_w),
            sum_sq,
        }
    }

    /// The moments of one block (in cache): weighted sums, then squares about the block's mean.
    fn of_block(x: &[f64], w: Option<&[f64]>) -> Moments {
        let (sum_w, sum_x) = match w {
            Some(w) => (lanes(w.len(), |i| w[i]), dot(x, w)),
            None => (x.len() as f64, lanes(x.len(), |i| x[i])),
        };
        if sum_w == 0.0 {
            return Moments::default();
        }
        let mean = sum_x / sum_w;
        let (centred_ss, sum_sq) = match w {
            Some(w) => (
                lanes(x.len(), |i| w[i] * (x[i] - mean) * (x[i] - mean)),
                lanes(x.len(), |i| w[i] * x[i] * x[i]),
            ),
            None => (lanes(x.len(), |i| (x[i] - mean) * (x[i] - mean)), dot(x, x)),
        };
        Moments {
            sum_w,
            mean,
            centred_ss,
            sum_sq,
        }
    }
}

/// `Σ_{i<n} f(i)` in four interleaved partial sums (vectorisable, and short dependency chains).
#[inline(always)]
fn lanes(n: usize, f: impl Fn(usize) -> f64) -> f64 {
    let mut acc = [0.0f64; 4];
    let m = n / 4 * 4;
    for i in (0..m).step_by(4) {
        for (l, a) in acc.iter_mut().enumerate() {
            *a += f(i + l);
        }
    }
    let tail: f64 = (m..n).map(f).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// The [`Moments`] of every column in one blocked pass (blocks combined in row order, so the
/// result does not depend on the number of threads).
pub fn moments(cols: &[&[f64]], w: Option<&[f64]>) -> Vec<Moments> {
    let k = cols.len();
    let n = cols.first().map_or(0, |c| c.len());
    let parts: Vec<Vec<Moments>> = tasks(n)
        .into_par_iter()
        .map(|range| {
            let mut acc = vec![Moments::default(); k];
            for r0 in range.clone().step_by(BLOCK) {
                let r1 = (r0 + BLOCK).min(range.end);
                let wb = w.map(|w| &w[r0..r1]);
                for (a, c) in acc.iter_mut().zip(cols) {
                    *a = a.merge(Moments::of_block(&c[r0..r1], wb));
                }
            }
            acc
        })
        .collect();
    let mut total = vec![Moments::default(); k];
    for p in parts {
        for (t, m) in total.iter_mut().zip(p) {
            *t = t.merge(m);
        }
    }
    total
}

/// `Σ_i u_i v_i` in the blocked order.
pub fn sum_products(u: &[f64], v: &[f64]) -> f64 {
    let parts: Vec<f64> = tasks(u.len())
        .into_par_iter()
        .map(|r| dot(&u[r.clone()], &v[r]))
        .collect();
    parts.into_iter().sum()
}

/// Residuals `y − Σ_j β_j x_j`, block by block: each block of `y` is copied and updated in cache
/// by four columns per sweep, all in parallel (the output's pages are first touched by the
/// threads that fill them). The subtractions keep the order β₁x₁, β₂x₂, … of a plain loop.
pub fn residuals(y: &[f64], x: &[&[f64]], beta: &[f64]) -> Vec<f64> {
    let mut resid = vec![0.0; y.len()];
    resid.par_chunks_mut(TASK).enumerate().for_each(|(t, chunk)| {
        let base = t * TASK;
        for (b, block) in chunk.chunks_mut(BLOCK).enumerate() {
            let r0 = base + b * BLOCK;
            let rows = r0..r0 + block.len();
            block.copy_from_slice(&y[rows.clone()]);
            for (xs, bs) in x.chunks(4).zip(beta.chunks(4)) {
                if let ([x0, x1, x2, x3], [b0, b1, b2, b3]) = (xs, bs) {
                    let cols = x0[rows.clone()].iter().zip(&x1[rows.clone()]);
                    let cols = cols.zip(x2[rows.clone()].iter().zip(&x3[rows.clone()]));
                    for (r, ((v0, v1), (v2, v3))) in block.iter_mut().zip(cols) {
                        *r = (((*r - b0 * v0) - b1 * v1) - b2 * v2) - b3 * v3;
                    }
                } else {
                    for (xj, &bj) in xs.iter().zip(bs) {
                        for (r, v) in block.iter_mut().zip(&xj[rows.clone()]) {
                            *r -= bj * v;
                        }
                    }
                }
            }
        }
    });
    resid
}

/// `u_i v_i` for every row.
pub fn products(u: &[f64], v: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; u.len()];
    out.par_chunks_mut(TASK).enumerate().for_each(|(t, chunk)| {
        let r0 = t * TASK;
        for ((o, a), b) in chunk.iter_mut().zip(&u[r0..]).zip(&v[r0..]) {
            *o = a * b;
        }
    });
    out
}

/// Per-cluster score sums `s_g = Σ_{i∈g} s_i x_i` (row-major, `levels × k`). The rows are split
/// into as many contiguous parts as the data allow (each part holds its own `levels × k` sums,
/// at most 2²⁵ numbers in all), so few-cluster variables run in parallel and million-cluster
/// ones do not multiply their memory. Within a part, see [`add_cluster_scores`]; a part's sums
/// are kept with a row stride rounded up to 4 (whole vectors), and cut back to `k` at the end.
pub fn cluster_sums(x: &[&[f64]], s: &[f64], ids: &[u32], levels: usize) -> Vec<f64> {
    let k = x.len();
    let n = s.len();
    assert!(ids.len() == n && x.iter().all(|c| c.len() == n));
    let stride = k.div_ceil(4) * 4;
    let width = (levels * stride).max(1);
    let parts = (n / TASK).clamp(1, 64).min(((1usize << 25) / width).max(1));
    let size = n.div_ceil(parts).max(1);
    let sums: Vec<Vec<f64>> = (0..parts)
        .into_par_iter()
        .map(|p| {
            let mut acc = vec![0.0; width];
            let (lo, hi) = (p * size, ((p + 1) * size).min(n));
            for r0 in (lo..hi).step_by(BLOCK) {
                add_cluster_scores(&mut acc, stride, x, s, ids, r0..(r0 + BLOCK).min(hi));
            }
            acc
        })
        .collect();
    let padded = add_in_order(sums, width);
    padded
        .chunks(stride)
        .take(levels)
        .flat_map(|row| row[..k].iter().copied())
        .collect()
}

/// Adds the scores of `rows` to their clusters' sums (cluster g's at `acc[g·stride..]`). A block
/// inside one cluster (data sorted by cluster) is reduced by vectorised dot products. Otherwise
/// each row's k scores `s_i x_i` are added to its cluster's contiguous sums as whole vectors:
/// with AVX2 four rows × four columns are loaded, scaled and transposed in registers
/// ([`add_scattered_avx2`]); elsewhere through a row-major tile. Either way each sum receives
/// its rows in row order (the results are the same).
fn add_cluster_scores(
    acc: &mut [f64],
    stride: usize,
    x: &[&[f64]],
    s: &[f64],
    ids: &[u32],
    rows: std::ops::Range<usize>,
) {
    let k = x.len();
    let block_ids = &ids[rows.clone()];
    if block_ids.iter().all(|&g| g == block_ids[0]) {
        let g = block_ids[0] as usize * stride;
        let sb = &s[rows.clone()];
        for c0 in (0..k).step_by(4) {
            let pick = |j: usize| &x[(c0 + j).min(k - 1)][rows.clone()];
            let d = dots4_portable(sb, [pick(0), pick(1), pick(2), pick(3)], None);
            for (j, v) in d.iter().enumerate().take(k - c0) {
                acc[g + c0 + j] += v;
            }
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // Safety: the CPU has AVX2 (checked above); bounds are checked inside.
            unsafe { add_scattered_avx2(acc, stride, x, s, ids, rows) };
            return;
        }
    }
    add_scattered_tiles(acc, stride, x, s, ids, rows);
}

/// Rows per tile of [`add_scattered_tiles`].
const TILE: usize = 64;

/// The portable scattered path: the scores of [`TILE`] rows are formed column by column into a
/// row-major tile, then each row's scores are added to its cluster's contiguous sums.
fn add_scattered_tiles(
    acc: &mut [f64],
    stride: usize,
    x: &[&[f64]],
    s: &[f64],
    ids: &[u32],
    rows: std::ops::Range<usize>,
) {
    let k = x.len();
    let mut tile = vec![0.0; TILE * k];
    for t0 in rows.clone().step_by(TILE) {
        let t1 = (t0 + TILE).min(rows.end);
        for (j, xj) in x.iter().enumerate() {
            for (r, (v, si)) in xj[t0..t1].iter().zip(&s[t0..t1]).enumerate() {
                tile[r * k + j] = si * v;
            }
        }
        for (r, &g) in ids[t0..t1].iter().enumerate() {
            let g = g as usize * stride;
            for (a, v) in acc[g..g + k].iter_mut().zip(&tile[r * k..r * k + k]) {
                *a += v;
            }
        }
    }
}

/// The AVX2 scattered path: for four rows at a time and four columns at a time, the columns'
/// values are loaded as vectors, multiplied by the rows' `s`, transposed into one vector per
/// row (two unpacks and two lane permutes) and added to the row's cluster sums — four vector
/// stores per row for 13 columns instead of 13 scalar ones. Columns past `k` in the last group
/// are zeros (the stride is a multiple of 4, so the padding lanes exist and stay zero).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn add_scattered_avx2(
    acc: &mut [f64],
    stride: usize,
    x: &[&[f64]],
    s: &[f64],
    ids: &[u32],
    rows: std::ops::Range<usize>,
) {
    use std::arch::x86_64::*;
    let k = x.len();
    assert!(stride % 4 == 0 && stride >= k && s.len() >= rows.end && ids.len() >= rows.end);
    assert!(x.iter().all(|c| c.len() >= rows.end));
    let end4 = rows.start + (rows.end - rows.start) / 4 * 4;
    let mut r = rows.start;
    while r < end4 {
        let mut at = [0usize; 4];
        for (i, a) in at.iter_mut().enumerate() {
            *a = ids[r + i] as usize * stride;
            assert!(*a + stride <= acc.len(), "cluster id out of range");
        }
        // Safety: r + 4 ≤ rows.end ≤ every column's length, and every row's sums lie inside
        // `acc` (both asserted above).
        let sv = _mm256_loadu_pd(s.as_ptr().add(r));
        for c0 in (0..k).step_by(4) {
            let col = |j: usize| {
                if c0 + j < k {
                    _mm256_mul_pd(_mm256_loadu_pd(x[c0 + j].as_ptr().add(r)), sv)
                } else {
                    _mm256_setzero_pd()
                }
            };
            let (v0, v1, v2, v3) = (col(0), col(1), col(2), col(3));
            let lo01 = _mm256_unpacklo_pd(v0, v1); // rows 0 and 2 of columns 0, 1
            let hi01 = _mm256_unpackhi_pd(v0, v1); // rows 1 and 3
            let lo23 = _mm256_unpacklo_pd(v2, v3);
            let hi23 = _mm256_unpackhi_pd(v2, v3);
            let by_row = [
                _mm256_permute2f128_pd(lo01, lo23, 0x20),
                _mm256_permute2f128_pd(hi01, hi23, 0x20),
                _mm256_permute2f128_pd(lo01, lo23, 0x31),
                _mm256_permute2f128_pd(hi01, hi23, 0x31),
            ];
            for (t, &a) in by_row.iter().zip(&at) {
                let p = acc.as_mut_ptr().add(a + c0);
                _mm256_storeu_pd(p, _mm256_add_pd(_mm256_loadu_pd(p), *t));
            }
        }
        r += 4;
    }
    add_scattered_tiles(acc, stride, x, s, ids, end4..rows.end);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            })
            .collect()
    }

    #[test]
    fn blocked_sums_match_plain_loops() {
        // sizes that cut blocks and tasks unevenly
        let n = TASK * 2 + BLOCK + 7;
        let cols: Vec<Vec<f64>> = (0..4).map(|j| column(n, j + 1)).collect();
        let refs: Vec<&[f64]> = cols.iter().map(|c| c.as_slice()).collect();
        let w: Vec<f64> = column(n, 9).iter().map(|v| v + 1.0).collect();
        let m = cross_products(&refs, Some(&w));
        for a in 0..4 {
            for b in 0..4 {
                let plain: f64 = (0..n).map(|i| w[i] * cols[a][i] * cols[b][i]).sum();
                assert!((m.get(a, b) - plain).abs() < 1e-9 * plain.abs().max(1.0), "{a} {b}");
            }
        }
        // an odd number of columns (the last pair of left columns is one column)
        let five: Vec<&[f64]> = refs.iter().copied().chain([w.as_slice()]).collect();
        let m5 = cross_products(&five, None);
        for (a, b) in [(4, 4), (4, 2), (3, 1), (0, 0)] {
            let plain: f64 = (0..n).map(|i| five[a][i] * five[b][i]).sum();
            assert!((m5.get(a, b) - plain).abs() < 1e-9 * plain.abs().max(1.0), "{a} {b}");
        }
        let beta = [0.5, -2.0, 0.25];
        let r = residuals(&cols[0], &refs[1..], &beta);
        for i in [0, BLOCK - 1, BLOCK, TASK + 3, n - 1] {
            let plain = cols[0][i] - (0..3).map(|j| beta[j] * cols[j + 1][i]).sum::<f64>();
            assert!((r[i] - plain).abs() < 1e-15, "{i}");
        }
        let ids: Vec<u32> = (0..n).map(|i| (i * 7 % 5) as u32).collect();
        let sums = cluster_sums(&refs[1..3], &cols[3], &ids, 5);
        for g in 0..5 {
            for j in 0..2 {
                let plain: f64 = (0..n)
                    .filter(|&i| ids[i] == g as u32)
                    .map(|i| cols[3][i] * cols[j + 1][i])
                    .sum();
                assert!((sums[g * 2 + j] - plain).abs() < 1e-9, "{g} {j}");
            }
        }
        // clusters in runs (whole blocks inside one cluster, and blocks that straddle two)
        let runs: Vec<u32> = (0..n).map(|i| ((i / (BLOCK * 3 / 2)) % 5) as u32).collect();
        let sums = cluster_sums(&refs[..3], &cols[3], &runs, 5);
        for g in 0..5 {
            for j in 0..3 {
                let plain: f64 = (0..n)
                    .filter(|&i| runs[i] == g as u32)
                    .map(|i| cols[3][i] * cols[j][i])
                    .sum();
                assert!((sums[g * 3 + j] - plain).abs() < 1e-9, "runs {g} {j}");
            }
        }
        // seven and eleven columns: full 2×4 tiles (two per pair from the fifth pair on), 2×2
        // diagonal blocks and a last single column
        let eleven: Vec<&[f64]> = five.iter().chain(&five).copied().chain([cols[2].as_slice()]).collect();
        for k in [7, 11] {
            let m = cross_products_by(&eleven[..k], &w, &cols[1]);
            for a in 0..k {
                for b in 0..k {
                    let plain: f64 = (0..n).map(|i| w[i] * cols[1][i] * eleven[a][i] * eleven[b][i]).sum();
                    assert!(
                        (m.get(a, b) - plain).abs() < 1e-9 * plain.abs().max(1.0),
                        "{k}: {a} {b}"
                    );
                }
            }
        }
        // scattered ids, five columns: two vector groups, the second padded
        let five: Vec<&[f64]> = refs.iter().copied().chain([w.as_slice()]).collect();
        let sums = cluster_sums(&five, &cols[0], &ids, 5);
        assert_eq!(sums.len(), 25);
        for g in 0..5 {
            for j in 0..5 {
                let plain: f64 = (0..n)
                    .filter(|&i| ids[i] == g as u32)
                    .map(|i| cols[0][i] * five[j][i])
                    .sum();
                assert!(
                    (sums[g * 5 + j] - plain).abs() < 1e-9 * plain.abs().max(1.0),
                    "5 cols {g} {j}"
                );
            }
        }
        let hc1 = cross_products_by(&refs[1..], &cols[0], &w);
        for (a, b) in [(0, 0), (2, 1), (1, 0)] {
            let plain: f64 = (0..n)
                .map(|i| cols[0][i] * w[i] * refs[1 + a][i] * refs[1 + b][i])
                .sum();
            assert!(
                (hc1.get(a, b) - plain).abs() < 1e-9 * plain.abs().max(1.0),
                "by {a} {b}"
            );
        }
        let c = cross(&refs[..2], &refs[2..], Some(&w));
        for (p, q) in [(0, 0), (1, 1), (0, 1)] {
            let plain: f64 = (0..n).map(|i| w[i] * cols[p][i] * cols[q + 2][i]).sum();
            assert!((c[p * 2 + q] - plain).abs() < 1e-9 * plain.abs().max(1.0), "{p} {q}");
        }
        let p = sum_products(&cols[1], &cols[2]);
        let plain: f64 = (0..n).map(|i| cols[1][i] * cols[2][i]).sum();
        assert!((p - plain).abs() < 1e-9);
    }

    #[test]
    fn scattered_cluster_paths_give_the_same_sums() {
        // the vector path (where the CPU has one) and the portable tiles, on uneven row ranges
        let n = 1001;
        let cols: Vec<Vec<f64>> = (0..6).map(|j| column(n, 20 + j)).collect();
        let x: Vec<&[f64]> = cols[..5].iter().map(|c| c.as_slice()).collect();
        let ids: Vec<u32> = (0..n).map(|i| (i * 13 % 7) as u32).collect();
        let stride = 8;
        let mut tiles = vec![0.0; 7 * stride];
        let mut auto = vec![0.0; 7 * stride];
        for rows in [0..3, 3..501, 501..n] {
            add_scattered_tiles(&mut tiles, stride, &x, &cols[5], &ids, rows.clone());
            add_cluster_scores(&mut auto, stride, &x, &cols[5], &ids, rows);
        }
        assert_eq!(tiles, auto);
        assert!(tiles.chunks(stride).all(|row| row[5..].iter().all(|&v| v == 0.0)));
        let plain: f64 = (0..n).filter(|&i| ids[i] == 3).map(|i| cols[5][i] * cols[4][i]).sum();
        assert!((tiles[3 * stride + 4] - plain).abs() < 1e-12);
    }

    #[test]
    fn moments_match_two_pass_sums() {
        // a large mean (where Σx² − n x̄² would lose every digit) and weights with a run of zeros
        let n = TASK + 3 * BLOCK + 5;
        let x: Vec<f64> = column(n, 31).iter().map(|v| 1e8 + v).collect();
        let mut w: Vec<f64> = column(n, 32).iter().map(|v| v + 0.75).collect();
        w[BLOCK..3 * BLOCK].iter_mut().for_each(|v| *v = 0.0);
        for weights in [None, Some(w.as_slice())] {
            let wi = |i: usize| weights.map_or(1.0, |w| w[i]);
            let sw: f64 = (0..n).map(wi).sum();
            let mean = (0..n).map(|i| wi(i) * x[i]).sum::<f64>() / sw;
            let centred: f64 = (0..n).map(|i| wi(i) * (x[i] - mean) * (x[i] - mean)).sum();
            let raw: f64 = (0..n).map(|i| wi(i) * x[i] * x[i]).sum();
            let m = moments(&[&x, &x[..]], weights);
            assert_eq!(m[0], m[1]);
            assert!((m[0].sum_w - sw).abs() < 1e-9 * sw);
            assert!((m[0].mean - mean).abs() < 1e-12 * mean);
            assert!(
                (m[0].centred_ss - centred).abs() < 1e-9 * centred,
                "{} {centred}",
                m[0].centred_ss
            );
            assert!((m[0].sum_sq - raw).abs() < 1e-12 * raw);
        }
        let inf = moments(&[&[1.0, 1e200, 2.0][..]], None)[0];
        assert!(inf.sum_sq.is_infinite());
    }
}
