//! Sums over observations as single passes over memory: the cross products of OLS, the
//! residuals, and the pieces of every variance estimator.
//!
//! Rows are cut into tasks of [`TASK`] rows (run in parallel) and tasks into blocks of
//! [`BLOCK`] rows: a block of every column (14 columns × 2,048 rows × 8 bytes ≈ 230 KB) is
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
    (0..n.div_ceil(TASK)).map(|t| t * TASK..((t + 1) * TASK).min(n)).collect()
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

/// `Σ_i w_i a_i b_i` for every pair of `cols` (`w = 1` when unweighted), as a symmetric matrix.
pub fn cross_products(cols: &[&[f64]], weights: Option<&[f64]>) -> Mat {
    let k = cols.len();
    let n = cols.first().map_or(0, |c| c.len());
    let len = k * (k + 1) / 2;
    let parts: Vec<Vec<f64>> = tasks(n)
        .into_par_iter()
        .map(|range| {
            let mut acc = vec![0.0; len];
            let mut wa = vec![0.0; BLOCK];
            for r0 in range.clone().step_by(BLOCK) {
                let r1 = (r0 + BLOCK).min(range.end);
                for a in 0..k {
                    let ca = &cols[a][r0..r1];
                    let left: &[f64] = match weights {
                        Some(w) => {
                            for ((o, x), wi) in wa.iter_mut().zip(ca).zip(&w[r0..r1]) {
                                *o = wi * x;
                            }
                            &wa[..r1 - r0]
                        }
                        None => ca,
                    };
                    for b in 0..=a {
                        acc[packed(a, b)] += dot(left, &cols[b][r0..r1]);
                    }
                }
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

/// `Σ_i u_i v_i` in the blocked order.
pub fn sum_products(u: &[f64], v: &[f64]) -> f64 {
    let parts: Vec<f64> = tasks(u.len())
        .into_par_iter()
        .map(|r| dot(&u[r.clone()], &v[r]))
        .collect();
    parts.into_iter().sum()
}

/// Residuals `y − Σ_j β_j x_j`, block by block (each block of `y` is updated in cache).
pub fn residuals(y: &[f64], x: &[&[f64]], beta: &[f64]) -> Vec<f64> {
    let mut resid = y.to_vec();
    resid.par_chunks_mut(TASK).enumerate().for_each(|(t, chunk)| {
        let base = t * TASK;
        for (b, block) in chunk.chunks_mut(BLOCK).enumerate() {
            let (r0, len) = (base + b * BLOCK, block.len());
            for (xj, &bj) in x.iter().zip(beta) {
                for (r, v) in block.iter_mut().zip(&xj[r0..r0 + len]) {
                    *r -= bj * v;
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
/// ones do not multiply their memory.
pub fn cluster_sums(x: &[&[f64]], s: &[f64], ids: &[u32], levels: usize) -> Vec<f64> {
    let k = x.len();
    let n = s.len();
    let width = (levels * k).max(1);
    let parts = (n / TASK).clamp(1, 64).min(((1usize << 25) / width).max(1));
    let size = n.div_ceil(parts).max(1);
    let sums: Vec<Vec<f64>> = (0..parts)
        .into_par_iter()
        .map(|p| {
            let (lo, hi) = (p * size, ((p + 1) * size).min(n));
            let mut acc = vec![0.0; width];
            for r0 in (lo..hi).step_by(BLOCK) {
                let r1 = (r0 + BLOCK).min(hi);
                for (j, xj) in x.iter().enumerate() {
                    for ((&g, si), v) in ids[r0..r1].iter().zip(&s[r0..r1]).zip(&xj[r0..r1]) {
                        acc[g as usize * k + j] += si * v;
                    }
                }
            }
            acc
        })
        .collect();
    add_in_order(sums, width)
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
                let plain: f64 = (0..n).filter(|&i| ids[i] == g as u32).map(|i| cols[3][i] * cols[j + 1][i]).sum();
                assert!((sums[g * 2 + j] - plain).abs() < 1e-9, "{g} {j}");
            }
        }
        let p = sum_products(&cols[1], &cols[2]);
        let plain: f64 = (0..n).map(|i| cols[1][i] * cols[2][i]).sum();
        assert!((p - plain).abs() < 1e-9);
    }
}
