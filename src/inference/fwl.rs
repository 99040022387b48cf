//! Replicate cross products without demeaning, for the common panel structure of one large
//! effect beside few-level ones (the study's firm×destination + year; the structure
//! [`crate::demean::strategy::few_level_split`] recognises).
//!
//! A replicate only needs the weighted Gram of its demeaned columns (y first). With the large
//! effect's levels as contiguous runs of rows (the design is sorted by its largest effect), the
//! Gram of the columns and the few-level effects' dummies, demeaned by the large effect, is
//!
//!   G̃ = Σ_i w_i v_i v_i' − Σ_g S_g S_g' / W_g,   S_g = Σ_{i∈g} w_i v_i,  W_g = Σ_{i∈g} w_i,
//!
//! accumulated in one pass over the rows with positive weight, and partialling the dummies out
//! of G̃ (Frisch–Waugh–Lovell, pivoted Cholesky dropping dummies the large effect absorbs)
//! leaves exactly the Gram the exact demeaning path would produce. No column is copied, no
//! level index rebuilt, no dummy materialised: the level structure and the full-sample
//! residual columns (the warm start, whose within-level means are near zero, so the
//! subtraction loses nothing) are shared by every replicate.

use crate::fe::FixedEffect;
use crate::linalg::{cholesky_drop, cholesky_inverse, Mat};

/// The shared part: the large effect (its levels contiguous) and the dummies' positions.
pub struct LevelRuns<'a> {
    large: &'a FixedEffect,
    small: Vec<&'a FixedEffect>,
    /// first dummy index of each small effect (its level 0 has none)
    dummy_offset: Vec<usize>,
    dummies: usize,
}

impl<'a> LevelRuns<'a> {
    /// `None` unless every level of `fes[large]` is one contiguous run of rows.
    pub fn new(fes: &[&'a FixedEffect], large: usize, small: &[usize]) -> Option<LevelRuns<'a>> {
        let big = fes[large];
        let mut seen = vec![false; big.levels];
        let mut prev = u32::MAX;
        for &g in &big.ids {
            if g != prev {
                if seen[g as usize] {
                    return None;
                }
                seen[g as usize] = true;
                prev = g;
            }
        }
        let mut dummy_offset = Vec::new();
        let mut dummies = 0;
        for &k in small {
            dummy_offset.push(dummies);
            dummies += fes[k].levels.saturating_sub(1);
        }
        Some(LevelRuns {
            large: big,
            small: small.iter().map(|&k| fes[k]).collect(),
            dummy_offset,
            dummies,
        })
    }

    /// Lower-triangle weighted Gram (in [`crate::demean::pair_of`] order) of `columns`
    /// demeaned on every effect under weights `w`.
    pub fn gram(&self, columns: &[Vec<f64>], w: &[f64]) -> Vec<f64> {
        let c = columns.len();
        let m = c + self.dummies;
        // full m×m lower triangle, row-major packed: index p(p+1)/2 + q
        let tri = |p: usize, q: usize| p * (p + 1) / 2 + q;
        let mut g = vec![0.0; m * (m + 1) / 2];
        let mut s = vec![0.0; m];
        let mut v = vec![0.0; c];
        let mut present: Vec<usize> = Vec::with_capacity(self.small.len());
        let mut wsum = 0.0;
        let ids = &self.large.ids;
        let n = ids.len();
        let flush = |g: &mut Vec<f64>, s: &mut Vec<f64>, wsum: &mut f64| {
            if *wsum > 0.0 {
                let inv = 1.0 / *wsum;
                for p in 0..m {
                    let sp = s[p] * inv;
                    if sp != 0.0 {
                        for q in 0..=p {
                            g[tri(p, q)] -= sp * s[q];
                        }
                    }
                }
            }
            s.iter_mut().for_each(|x| *x = 0.0);
            *wsum = 0.0;
        };
        for i in 0..n {
            if i > 0 && ids[i] != ids[i - 1] {
                flush(&mut g, &mut s, &mut wsum);
            }
            let wi = w[i];
            if wi <= 0.0 {
                continue;
            }
            for (j, col) in columns.iter().enumerate() {
                v[j] = col[i];
            }
            for p in 0..c {
                let wp = wi * v[p];
                s[p] += wp;
                let row = tri(p, 0);
                for q in 0..=p {
                    g[row + q] += wp * v[q];
                }
            }
            present.clear();
            for (k, fe) in self.small.iter().enumerate() {
                let l = fe.ids[i] as usize;
                if l > 0 {
                    present.push(c + self.dummy_offset[k] + l - 1);
                }
            }
            for (a, &d) in present.iter().enumerate() {
                s[d] += wi;
                for p in 0..c {
                    g[tri(d, p)] += wi * v[p];
                }
                for &e in &present[..=a] {
                    let (hi, lo) = if d >= e { (d, e) } else { (e, d) };
                    g[tri(hi, lo)] += wi;
                }
            }
            wsum += wi;
        }
        flush(&mut g, &mut s, &mut wsum);
        partial_out_dummies(&g, c, m)
    }
}

/// The c×c block of the packed Gram `g` (m×m) after partialling out its last m − c
/// variables, in packed lower-triangle order.
fn partial_out_dummies(g: &[f64], c: usize, m: usize) -> Vec<f64> {
    let at = |p: usize, q: usize| {
        if p >= q {
            g[p * (p + 1) / 2 + q]
        } else {
            g[q * (q + 1) / 2 + p]
        }
    };
    let mut out: Vec<f64> = (0..c)
        .flat_map(|p| (0..=p).map(move |q| (p, q)))
        .map(|(p, q)| at(p, q))
        .collect();
    let t = m - c;
    if t == 0 {
        return out;
    }
    let mut dd = Mat::zeros(t);
    for a in 0..t {
        for b in 0..t {
            dd.set(a, b, at(c + a, c + b));
        }
    }
    let ch = cholesky_drop(&dd, 1e-10);
    if ch.kept.is_empty() {
        return out;
    }
    let inv = cholesky_inverse(&ch.l);
    // B = dd⁻¹ (kept) × cross products of the kept dummies with each column
    let cross: Vec<Vec<f64>> = (0..c)
        .map(|p| ch.kept.iter().map(|&a| at(c + a, p)).collect())
        .collect();
    let solved: Vec<Vec<f64>> = cross.iter().map(|x| inv.mul_vec(x)).collect();
    let mut k = 0;
    for p in 0..c {
        for q in 0..=p {
            out[k] -= cross[p].iter().zip(&solved[q]).map(|(a, b)| a * b).sum::<f64>();
            k += 1;
        }
    }
    out
}
