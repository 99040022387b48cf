//! Resampling inference. A replicate is a set of draws that is a pure function of (seed,
//! replicate, unit) through Philox ([`replicates`]), so results never depend on thread count,
//! batch size or device. [`wild`]: the restricted wild cluster bootstrap (WCR) of one
//! coefficient with every fixed effect absorbed, by the fast algorithm of Roodman, MacKinnon,
//! Nielsen & Webb (2019), whose cost per replicate does not grow with N.

pub mod bootstrap;
pub mod permutation;
pub mod replicates;
pub mod wild;

use rayon::prelude::*;

use crate::demean::{Absorb, DemeanOptions, Demeaner};
use crate::error::Result;
use crate::fe::index::compact;
use crate::fe::FixedEffect;
use crate::linalg::{cholesky_drop, cholesky_inverse, Mat};

/// Weighted least squares of `x` on `y` over rows with positive weight: β, or `None` when
/// singular (a regressor without variation in this replicate).
pub fn wls(y: &[f64], x: &[Vec<f64>], w: &[f64]) -> Option<Vec<f64>> {
    wls_first(y, x, w, x.len())
}

/// [`wls`] that needs only the first `keep` regressors: later ones (dummies of a few-level
/// fixed effect) may be dropped as collinear; β of the first `keep` is returned.
fn wls_first(y: &[f64], x: &[Vec<f64>], w: &[f64], keep: usize) -> Option<Vec<f64>> {
    let k = x.len();
    let mut a = Mat::zeros(k);
    let mut b = vec![0.0; k];
    // column by column: contiguous dot products with four independent partial sums, which the
    // compiler turns into SIMD (a single running sum cannot be reordered); zero weights add 0
    let dot = |u: &[f64], v: &[f64]| {
        let mut acc = [0.0f64; 4];
        let (cu, cv) = (u.chunks_exact(4), v.chunks_exact(4));
        let tail: f64 = cu.remainder().iter().zip(cv.remainder()).map(|(p, q)| p * q).sum();
        for (a, b) in cu.zip(cv) {
            for j in 0..4 {
                acc[j] += a[j] * b[j];
            }
        }
        (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
    };
    for p in 0..k {
        let wx: Vec<f64> = x[p].iter().zip(w).map(|(v, wi)| v * wi).collect();
        b[p] = dot(&wx, y);
        for q in 0..=p {
            let v = dot(&wx, &x[q]);
            a.a[p * k + q] = v;
            a.a[q * k + p] = v;
        }
    }
    let c = cholesky_drop(&a, 1e-10);
    // every one of the first `keep` must survive; they are then the first `keep` kept columns
    if c.kept.len() < keep || c.kept[..keep].iter().enumerate().any(|(i, &j)| i != j) {
        return None;
    }
    let sub: Vec<f64> = c.kept.iter().map(|&j| b[j]).collect();
    let mut beta = cholesky_inverse(&c.l).mul_vec(&sub);
    beta.truncate(keep);
    Some(beta)
}

/// Warm start for the replicate engine: the columns demeaned once on the full sample (weights
/// `w`). Demeaning a replicate's subsample of them gives exactly what demeaning the raw columns
/// would — they differ by D·α̂, which lies in the span of the subsample's fixed effects — but
/// the sweeps start next to the answer instead of far from it.
///
/// The convergence test is relative to a column's spread, which demeaning shrinks; the returned
/// options scale the tolerance by the smallest ratio of spreads (raw / demeaned) over the
/// columns, so every column is held to at least the accuracy the raw columns would get.
pub fn warm_start(
    fes: &[&FixedEffect],
    columns: &[Vec<f64>],
    w: &[f64],
    opts: &DemeanOptions,
    demeaner: &dyn Demeaner,
) -> Result<(Vec<Vec<f64>>, DemeanOptions)> {
    if fes.is_empty() {
        return Ok((columns.to_vec(), *opts));
    }
    let dm = demeaner
        .demean(&Absorb::new(fes.to_vec(), Some(w)), columns.to_vec(), opts)?
        .columns;
    let spread = |c: &[f64]| {
        let sw: f64 = w.iter().sum();
        let m = c.iter().zip(w).map(|(a, b)| a * b).sum::<f64>() / sw;
        (c.iter().zip(w).map(|(a, b)| b * (a - m) * (a - m)).sum::<f64>() / sw).sqrt()
    };
    let ratio = columns
        .iter()
        .zip(&dm)
        .map(|(raw, d)| {
            let (r, s) = (spread(raw), spread(d));
            if s > 0.0 && r.is_finite() {
                (r / s).max(1.0)
            } else {
                1.0
            }
        })
        .fold(f64::INFINITY, f64::min);
    let tol = opts.tol * if ratio.is_finite() { ratio } else { 1.0 };
    Ok((dm, DemeanOptions { tol, ..*opts }))
}

/// [`wls`] from the weighted cross products of (y, x…) (lower triangle, see
/// [`crate::demean::pair_of`]): β, or `None` when singular.
pub fn wls_from_gram(g: &[f64], c: usize) -> Option<Vec<f64>> {
    let k = c - 1;
    let at = |p: usize, q: usize| {
        if p >= q {
            g[p * (p + 1) / 2 + q]
        } else {
            g[q * (q + 1) / 2 + p]
        }
    };
    let mut a = Mat::zeros(k);
    let mut b = vec![0.0; k];
    for p in 0..k {
        b[p] = at(p + 1, 0);
        for q in 0..k {
            a.a[p * k + q] = at(p + 1, q + 1);
        }
    }
    let ch = cholesky_drop(&a, 1e-10);
    ch.dropped.is_empty().then(|| cholesky_inverse(&ch.l).mul_vec(&b))
}

/// The replicate engine: for each weight vector, demean `columns` (y first, then the
/// regressors) on the fixed effects and return the weighted least-squares coefficients.
/// Backends that batch lanes (GPU) get all weight vectors at once over the full rows; the CPU
/// instead drops each replicate's zero-weight rows first (a permutation group or the clusters a
/// bootstrap did not draw), which halves its work, and runs the replicates in parallel.
pub fn replicate_betas(
    fes: &[&FixedEffect],
    columns: &[Vec<f64>],
    weights: &[Vec<f64>],
    opts: &DemeanOptions,
    demeaner: &dyn Demeaner,
) -> Result<Vec<Option<Vec<f64>>>> {
    if fes.is_empty() {
        return Ok(weights.iter().map(|w| wls(&columns[0], &columns[1..], w)).collect());
    }
    if demeaner.batches_lanes() {
        let grams = demeaner.gram_batch(fes, columns, weights, opts)?;
        return Ok(grams.par_iter().map(|g| wls_from_gram(g, columns.len())).collect());
    }
    let split = few_level_split(fes);
    weights
        .par_iter()
        .map(|w| {
            let rows: Vec<usize> = (0..w.len()).filter(|&i| w[i] > 0.0).collect();
            if rows.is_empty() {
                return Ok(None);
            }
            if let Some((large, small)) = &split {
                return exact_with_dummies(fes, *large, small, columns, w, &rows, opts, demeaner);
            }
            let sub_fes: Vec<FixedEffect> = fes
                .iter()
                .map(|f| {
                    let (ids, levels) = compact(&f.ids, f.levels, &rows);
                    FixedEffect {
                        name: f.name.clone(),
                        ids,
                        levels,
                    }
                })
                .collect();
            let sub_w: Vec<f64> = rows.iter().map(|&i| w[i]).collect();
            let sub_cols: Vec<Vec<f64>> = columns.iter().map(|c| rows.iter().map(|&i| c[i]).collect()).collect();
            let refs: Vec<&FixedEffect> = sub_fes.iter().collect();
            let d = demeaner.demean(&Absorb::new(refs, Some(&sub_w)), sub_cols, opts)?;
            Ok(wls(&d.columns[0], &d.columns[1..], &sub_w))
        })
        .collect()
}

/// Most dummy columns [`exact_with_dummies`] adds.
const MAX_DUMMIES: usize = 64;

/// One effect with many levels and the others with few (the study's firm×destination + year):
/// returns (the large effect, the small ones) when the small ones need at most
/// [`MAX_DUMMIES`] dummies.
fn few_level_split(fes: &[&FixedEffect]) -> Option<(usize, Vec<usize>)> {
    if fes.len() < 2 {
        return None;
    }
    let large = (0..fes.len()).max_by_key(|&k| fes[k].levels)?;
    let small: Vec<usize> = (0..fes.len()).filter(|&k| k != large).collect();
    let dummies: usize = small.iter().map(|&k| fes[k].levels.saturating_sub(1)).sum();
    (dummies <= MAX_DUMMIES).then_some((large, small))
}

/// A replicate's β without iterating (Frisch–Waugh–Lovell): demean by the large effect alone,
/// which is exact in one pass, and carry the few-level effects as dummy regressors (one level
/// of each dropped; dummies collinear with the large effect are dropped too). Equal to the
/// alternating-projections answer, without its tolerance.
#[allow(clippy::too_many_arguments)]
fn exact_with_dummies(
    fes: &[&FixedEffect],
    large: usize,
    small: &[usize],
    columns: &[Vec<f64>],
    w: &[f64],
    rows: &[usize],
    opts: &DemeanOptions,
    demeaner: &dyn Demeaner,
) -> Result<Option<Vec<f64>>> {
    let (ids, levels) = compact(&fes[large].ids, fes[large].levels, rows);
    let big = FixedEffect {
        name: fes[large].name.clone(),
        ids,
        levels,
    };
    let sub_w: Vec<f64> = rows.iter().map(|&i| w[i]).collect();
    let mut cols: Vec<Vec<f64>> = columns.iter().map(|c| rows.iter().map(|&i| c[i]).collect()).collect();
    for &s in small {
        let (ids, levels) = compact(&fes[s].ids, fes[s].levels, rows);
        for level in 1..levels as u32 {
            cols.push(ids.iter().map(|&l| (l == level) as u8 as f64).collect());
        }
    }
    let d = demeaner.demean(&Absorb::new(vec![&big], Some(&sub_w)), cols, opts)?;
    let k = columns.len() - 1;
    Ok(wls_first(&d.columns[0], &d.columns[1..], &sub_w, k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demean::CpuDemeaner;
    use crate::rng::Stream;

    /// The dummy path (large effect demeaned exactly, year as dummies) equals alternating
    /// projections on both effects, on subsamples with zero-weight rows and unequal weights.
    #[test]
    fn few_level_effects_as_dummies_equal_alternating_projections() {
        let mut s = Stream::new(8, 3);
        let n = 3000;
        let big = FixedEffect {
            name: "firm".into(),
            ids: (0..n).map(|_| s.below(300)).collect(),
            levels: 300,
        };
        let year = FixedEffect {
            name: "year".into(),
            ids: (0..n).map(|_| s.below(7)).collect(),
            levels: 7,
        };
        let x1: Vec<f64> = (0..n).map(|i| s.normal() + 0.1 * year.ids[i] as f64).collect();
        let x2: Vec<f64> = (0..n).map(|i| s.normal() + 0.01 * big.ids[i] as f64).collect();
        let y: Vec<f64> = (0..n)
            .map(|i| 0.5 * x1[i] - 0.3 * x2[i] + 0.2 * year.ids[i] as f64 + s.normal())
            .collect();
        let columns = vec![y, x1, x2];
        let fes = vec![&year, &big];
        assert_eq!(few_level_split(&fes), Some((1, vec![0])));
        let opts = DemeanOptions {
            tol: 1e-13,
            max_iter: 100_000,
        };
        for rep in 0..4 {
            let w: Vec<f64> = (0..n)
                .map(|_| if s.uniform() < 0.3 { 0.0 } else { 0.5 + s.uniform() })
                .collect();
            let rows: Vec<usize> = (0..n).filter(|&i| w[i] > 0.0).collect();
            let exact = exact_with_dummies(&fes, 1, &[0], &columns, &w, &rows, &opts, &CpuDemeaner)
                .unwrap()
                .unwrap();
            let d = CpuDemeaner
                .demean(&Absorb::new(fes.clone(), Some(&w)), columns.clone(), &opts)
                .unwrap();
            let map = wls(&d.columns[0], &d.columns[1..], &w).unwrap();
            for (a, b) in exact.iter().zip(&map) {
                assert!((a - b).abs() < 1e-9, "replicate {rep}: {a} vs {b}");
            }
        }
        // too many small levels: no split
        let many = FixedEffect {
            name: "many".into(),
            ids: (0..n as u32).map(|i| i % 100).collect(),
            levels: 100,
        };
        assert_eq!(few_level_split(&[&big, &many]), None);
        assert_eq!(few_level_split(&[&big]), None);
    }
}
