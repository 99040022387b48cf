//! Replicate cross products without demeaning, for the common panel structure of one large
//! effect beside few-level ones (the study's firm×destination + year; the structure
//! [`crate::demean::strategy::few_level_split`] recognises).
//!
//! A replicate only needs the weighted Gram of its demeaned columns (y first). With the large
//! effect's levels as contiguous runs of rows (the design is sorted by its largest effect), the
//! columns are demeaned by their run means over the rows with positive weight (gathered once),
//! their Gram formed by contiguous dot products, the few-level effects' dummies enter through
//! per-row and per-run sums (Σ w d ṽ, and Σ w d d' − Σ_g s_g s_g' / W_g), and partialling the
//! dummies out (Frisch–Waugh–Lovell, pivoted Cholesky dropping dummies the large effect absorbs)
//! leaves exactly the Gram the exact demeaning path would produce. No column is copied, no
//! level index rebuilt, no dummy materialised: the level structure and the full-sample
//! residual columns (the warm start, whose within-level means are near zero, so the
//! subtraction loses nothing) are shared by every replicate.

use crate::fe::FixedEffect;
use crate::linalg::dot;

/// Per-thread buffers of [`LevelRuns::gram`], reused across replicates (no allocation, no
/// page faults per replicate).
#[derive(Default)]
pub struct Scratch {
    rows: Vec<usize>,
    ws: Vec<f64>,
    starts: Vec<usize>,
    inv: Vec<f64>,
    demeaned: Vec<Vec<f64>>,
    weighted: Vec<Vec<f64>>,
}

/// The shared part: the large effect (its levels contiguous) and the dummies' positions.
pub struct LevelRuns<'a> {
    pub(super) large: &'a FixedEffect,
    small: Vec<&'a FixedEffect>,
    /// first dummy index of each small effect (its level 0 has none)
    dummy_offset: Vec<usize>,
    pub(super) dummies: usize,
}

impl<'a> LevelRuns<'a> {
    /// `None` unless every level of `fes[large]` is one contiguous run of rows.
    pub fn new(fes: &[&'a FixedEffect], large: usize, small: &[usize]) -> Option<LevelRuns<'a>> {
        let big = fes[large];
        if !big.in_runs() {
            return None;
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

    /// Number of few-level effects (each gives a row at most one dummy).
    pub(super) fn small_effects(&self) -> usize {
        self.small.len()
    }

    /// Row `i`'s dummy positions in a Gram whose first `c` variables are the columns (ascending:
    /// the small effects' dummies are laid out in effect order).
    pub(super) fn dummies_of(&self, c: usize, i: usize, out: &mut Vec<usize>) {
        out.clear();
        for (f, &off) in self.small.iter().zip(&self.dummy_offset) {
            let l = f.ids[i] as usize;
            if l > 0 {
                out.push(c + off + l - 1);
            }
        }
    }

    /// Lower-triangle weighted Gram (in [`crate::demean::pair_of`] order) of `columns`
    /// demeaned on every effect under weights `w`.
    ///
    /// The rows with weight are gathered once (they keep the large effect's runs contiguous),
    /// each column is demeaned by its run means, and the column block is formed by
    /// contiguous dot products; the dummies' blocks come from per-row and per-run sums
    /// (a dummy's cross product with a demeaned column needs no demeaning of the dummy: the
    /// column is already orthogonal to every level of the large effect).
    pub fn gram(&self, scratch: &mut Scratch, columns: &[Vec<f64>], w: &[f64]) -> Vec<f64> {
        let c = columns.len();
        let m = c + self.dummies;
        let Scratch {
            rows,
            ws,
            starts,
            inv,
            demeaned,
            weighted,
        } = scratch;
        rows.clear();
        rows.extend((0..w.len()).filter(|&i| w[i] > 0.0));
        ws.clear();
        ws.extend(rows.iter().map(|&i| w[i]));
        starts.clear();
        starts.push(0);
        for j in 1..rows.len() {
            if self.large.ids[rows[j]] != self.large.ids[rows[j - 1]] {
                starts.push(j);
            }
        }
        starts.push(rows.len());
        // demeaned columns and their weighted copies, over the rows with weight, column by
        // column (contiguous streams); the runs' inverse weights are shared by every column
        inv.clear();
        inv.extend(starts.windows(2).map(|r| {
            let sw: f64 = ws[r[0]..r[1]].iter().sum();
            if sw > 0.0 {
                1.0 / sw
            } else {
                0.0
            }
        }));
        demeaned.resize_with(c, Vec::new);
        weighted.resize_with(c, Vec::new);
        for ((col, out), wout) in columns.iter().zip(demeaned.iter_mut()).zip(weighted.iter_mut()) {
            out.clear();
            out.extend(rows.iter().map(|&i| col[i]));
            for (r, &iv) in starts.windows(2).zip(inv.iter()) {
                let run = &mut out[r[0]..r[1]];
                let mean = run.iter().zip(&ws[r[0]..r[1]]).map(|(v, w)| v * w).sum::<f64>() * iv;
                run.iter_mut().for_each(|v| *v -= mean);
            }
            wout.clear();
            wout.extend(out.iter().zip(ws.iter()).map(|(a, b)| a * b));
        }
        let (rows, ws, starts, demeaned, weighted) = (&*rows, &*ws, &*starts, &demeaned[..c], &weighted[..c]);
        let mut g = vec![0.0; m * (m + 1) / 2];
        let tri = crate::linalg::packed;
        for p in 0..c {
            for q in 0..=p {
                g[tri(p, q)] = dot(&weighted[p], &demeaned[q]);
            }
        }
        if self.dummies > 0 {
            self.dummy_blocks(&mut g, c, rows, ws, starts, weighted);
        }
        crate::linalg::partial_out_last(&g, c, m)
    }

    /// Fill the dummy rows of the packed Gram `g`: dummy × column (Σ w d ṽ) and dummy × dummy
    /// (Σ w d d' − Σ_runs s s' / W, s the run's weighted dummy sums).
    fn dummy_blocks(
        &self,
        g: &mut [f64],
        c: usize,
        rows: &[usize],
        ws: &[f64],
        starts: &[usize],
        weighted: &[Vec<f64>],
    ) {
        let tri = crate::linalg::packed;
        let dummy_of = |k: usize, i: usize| -> Option<usize> {
            let l = self.small[k].ids[i] as usize;
            (l > 0).then(|| c + self.dummy_offset[k] + l - 1)
        };
        let mut run_sums: Vec<(usize, f64)> = Vec::new();
        for r in starts.windows(2) {
            run_sums.clear();
            let mut wrun = 0.0;
            for j in r[0]..r[1] {
                let i = rows[j];
                wrun += ws[j];
                for k in 0..self.small.len() {
                    let Some(d) = dummy_of(k, i) else { continue };
                    // (d > every column index: its row of the packed triangle is contiguous)
                    let row = &mut g[d * (d + 1) / 2..d * (d + 1) / 2 + c];
                    for (gp, wv) in row.iter_mut().zip(weighted) {
                        *gp += wv[j];
                    }
                    for k2 in 0..=k {
                        if let Some(e) = dummy_of(k2, i) {
                            g[tri(d, e)] += ws[j];
                        }
                    }
                    match run_sums.iter_mut().find(|(x, _)| *x == d) {
                        Some(e) => e.1 += ws[j],
                        None => run_sums.push((d, ws[j])),
                    }
                }
            }
            if wrun > 0.0 {
                for a in 0..run_sums.len() {
                    for b in 0..=a {
                        g[tri(run_sums[a].0, run_sums[b].0)] -= run_sums[a].1 * run_sums[b].1 / wrun;
                    }
                }
            }
        }
    }
}
