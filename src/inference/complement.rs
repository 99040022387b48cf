//! Replicate Grams by complement, for the [`LevelRuns`] structure (one large effect beside
//! few-level ones) when a replicate keeps most rows at their base weight and drops the rest —
//! the larger group of an observation-level permutation test, where the smaller group is a
//! few thousand rows.
//!
//! With u = (the columns, the few-level dummies) and b the base weights, the Gram the direct
//! path ([`LevelRuns::gram`]) builds for weights w is, before the dummies are partialled out,
//!
//! G(w) = Σ_{w_i > 0} w_i u_i u_i' − Σ_runs S_g S_g' / W_g,   S_g = Σ_{i ∈ g, w_i > 0} w_i u_i,
//!
//! the within-run centring written as sums. When every w_i is 0 or b_i, both terms are the
//! full sample's minus what the dropped rows E take away: their outer products, and the
//! between-run terms of the runs they touch, recomputed from those runs' kept rows. The work is
//! O(|E|), not O(N), and the full-sample sums are formed once per design. The columns are the
//! full-sample residuals (the warm start), so the run sums are near zero and the subtractions
//! cancel little: the result equals the direct path to rounding (a test holds them to 1e-12;
//! on the study, p-values and replicate counts are unchanged and the observed NRI difference
//! moves by 1e-13 of itself, the sums being added in another order).

use super::fwl::{LevelRuns, Scratch};

/// g += s · u u' (packed lower triangle), skipping the zero entries of u (the dummies a row
/// does not have): adding s · 0 changes nothing.
fn add_outer(g: &mut [f64], u: &[f64], s: f64) {
    for (a, &ua) in u.iter().enumerate() {
        if ua == 0.0 {
            continue;
        }
        let sa = s * ua;
        let row = &mut g[a * (a + 1) / 2..a * (a + 1) / 2 + a + 1];
        for (gb, &ub) in row.iter_mut().zip(u) {
            *gb += sa * ub;
        }
    }
}

/// gs += b · u u' and gl −= b · u u' (a row moving from the larger group's sums to the
/// smaller group's), skipping the zero entries of u.
fn add_outer_both(gs: &mut [f64], gl: &mut [f64], u: &[f64], b: f64) {
    for (a, &ua) in u.iter().enumerate() {
        if ua == 0.0 {
            continue;
        }
        let sa = b * ua;
        let span = a * (a + 1) / 2..a * (a + 1) / 2 + a + 1;
        for ((s, l), &ub) in gs[span.clone()].iter_mut().zip(&mut gl[span]).zip(u) {
            let v = sa * ub;
            *s += v;
            *l -= v;
        }
    }
}

/// g += s · v v' − t · x x' (packed lower triangle, dense): one run's between-run term
/// swapped for another.
fn swap_outer(g: &mut [f64], v: &[f64], s: f64, x: &[f64], t: f64) {
    for a in 0..v.len() {
        let (sa, ta) = (s * v[a], t * x[a]);
        let row = &mut g[a * (a + 1) / 2..a * (a + 1) / 2 + a + 1];
        for ((gb, &vb), &xb) in row.iter_mut().zip(v).zip(x) {
            *gb += sa * vb - ta * xb;
        }
    }
}

/// The full-sample sums a complement Gram starts from, under the base weights.
pub struct LevelTotals {
    base: Vec<f64>,
    /// Variables of the Gram: columns, then dummies.
    c: usize,
    m: usize,
    /// u of every row, row-major (m entries each): the columns, then 0/1 dummies.
    u: Vec<f64>,
    /// Σ b u u' over the rows with base weight (packed m×m).
    raw: Vec<f64>,
    /// Σ_runs S S' / W over the full sample (packed m×m).
    between: Vec<f64>,
    /// Run index of every row, and each run's first row (plus the end).
    run_of: Vec<u32>,
    run_start: Vec<usize>,
    /// S (m entries) and W of every run.
    run_sums: Vec<f64>,
    run_weight: Vec<f64>,
}

/// Per-thread buffers of the complement paths.
#[derive(Default)]
pub struct RowBuffers {
    kept: Vec<f64>,
    small: Vec<f64>,
    large: Vec<f64>,
    runs: Vec<u32>,
}

impl LevelTotals {
    pub fn new(runs: &LevelRuns, columns: &[Vec<f64>], base: &[f64]) -> LevelTotals {
        let (n, c) = (base.len(), columns.len());
        let m = c + runs.dummies;
        let ids = &runs.large.ids;
        let mut run_start = vec![0];
        let mut run_of = Vec::with_capacity(n);
        for i in 0..n {
            if i > 0 && ids[i] != ids[i - 1] {
                run_start.push(i);
            }
            run_of.push((run_start.len() - 1) as u32);
        }
        run_start.push(n);
        let runs_n = run_start.len() - 1;
        let mut u = vec![0.0; n * m];
        let mut dummies = Vec::new();
        for (i, row) in u.chunks_exact_mut(m).enumerate() {
            for (p, col) in columns.iter().enumerate() {
                row[p] = col[i];
            }
            runs.dummies_of(c, i, &mut dummies);
            for &d in &dummies {
                row[d] = 1.0;
            }
        }
        let mut t = LevelTotals {
            base: base.to_vec(),
            c,
            m,
            u,
            raw: vec![0.0; m * (m + 1) / 2],
            between: vec![0.0; m * (m + 1) / 2],
            run_of,
            run_start,
            run_sums: vec![0.0; runs_n * m],
            run_weight: vec![0.0; runs_n],
        };
        for i in (0..n).filter(|&i| base[i] > 0.0) {
            let ui = &t.u[i * m..(i + 1) * m];
            add_outer(&mut t.raw, ui, base[i]);
            let r = t.run_of[i] as usize;
            for (s, &v) in t.run_sums[r * m..(r + 1) * m].iter_mut().zip(ui) {
                *s += base[i] * v;
            }
            t.run_weight[r] += base[i];
        }
        let zero = vec![0.0; m];
        for r in 0..runs_n {
            if t.run_weight[r] > 0.0 {
                swap_outer(
                    &mut t.between,
                    &t.run_sums[r * m..(r + 1) * m],
                    1.0 / t.run_weight[r],
                    &zero,
                    0.0,
                );
            }
        }
        t
    }

    /// Whether `small` and `large` suit [`LevelRuns::gram_pair`]: every weight 0 or the base
    /// weight, no row in both, and `large` keeping more rows than it drops.
    pub fn suits_pair(&self, small: &[f64], large: &[f64]) -> bool {
        let base_or_zero = small
            .iter()
            .zip(large)
            .zip(&self.base)
            .all(|((&s, &l), &b)| s == 0.0 || (s == b && l == 0.0));
        base_or_zero && self.prefers_complement(large)
    }

    /// Whether `w` only keeps or drops rows at their base weight and drops fewer rows than it
    /// keeps (then the complement is the cheaper path).
    pub fn prefers_complement(&self, w: &[f64]) -> bool {
        let (mut kept, mut dropped) = (0usize, 0usize);
        for (&wi, &bi) in w.iter().zip(&self.base) {
            if wi == 0.0 {
                dropped += (bi > 0.0) as usize;
            } else if wi == bi {
                kept += 1;
            } else {
                return false;
            }
        }
        dropped < kept
    }

    /// Swap run `r`'s full-sample between-run term in `btw` for the one of its rows `w` keeps
    /// (summed afresh, not subtracted, so a run that keeps few rows loses nothing).
    fn swap_run(&self, btw: &mut [f64], kept: &mut Vec<f64>, w: &[f64], r: usize) {
        let m = self.m;
        kept.clear();
        kept.resize(m, 0.0);
        let mut wk = 0.0;
        for i in self.run_start[r]..self.run_start[r + 1] {
            if w[i] > 0.0 {
                for (k, &v) in kept.iter_mut().zip(&self.u[i * m..(i + 1) * m]) {
                    *k += w[i] * v;
                }
                wk += w[i];
            }
        }
        let s = if wk > 0.0 { 1.0 / wk } else { 0.0 };
        swap_outer(
            btw,
            kept,
            s,
            &self.run_sums[r * m..(r + 1) * m],
            1.0 / self.run_weight[r],
        );
    }
}

/// The sums [`LevelRuns::gram_pair`] builds: both groups' raw Grams and between-run terms.
struct PairGrams {
    gs: Vec<f64>,
    gl: Vec<f64>,
    btw_s: Vec<f64>,
    btw_l: Vec<f64>,
}

impl LevelTotals {
    /// Ask the memory for run `r`'s rows (u, weights) before they are needed.
    fn prefetch_run(&self, r: usize) {
        let (a, b) = (self.run_start[r], self.run_start[r + 1]);
        let rows = &self.u[a * self.m..b * self.m];
        for line in rows.chunks(8).take(24) {
            prefetch(line.as_ptr());
        }
        prefetch(&self.run_sums[r * self.m]);
        prefetch(&self.base[a]);
    }

    /// One run of [`LevelRuns::gram_pair`]: its rows read once.
    fn pair_run(&self, g: &mut PairGrams, buf: &mut RowBuffers, small: &[f64], large: &[f64], r: usize) {
        let m = self.m;
        for v in [&mut buf.small, &mut buf.large] {
            v.clear();
            v.resize(m, 0.0);
        }
        let (mut ws, mut wl) = (0.0, 0.0);
        for i in self.run_start[r]..self.run_start[r + 1] {
            let b = self.base[i];
            if b <= 0.0 {
                continue;
            }
            let u = &self.u[i * m..(i + 1) * m];
            if large[i] > 0.0 {
                for (k, &v) in buf.large.iter_mut().zip(u) {
                    *k += large[i] * v;
                }
                wl += large[i];
            } else if small[i] > 0.0 {
                for (k, &v) in buf.small.iter_mut().zip(u) {
                    *k += small[i] * v;
                }
                ws += small[i];
                add_outer_both(&mut g.gs, &mut g.gl, u, b);
            } else {
                add_outer(&mut g.gl, u, -b);
            }
        }
        let inv = |w: f64| if w > 0.0 { 1.0 / w } else { 0.0 };
        add_outer(&mut g.btw_s, &buf.small, inv(ws));
        let t = &self.run_sums[r * m..(r + 1) * m];
        swap_outer(&mut g.btw_l, &buf.large, inv(wl), t, 1.0 / self.run_weight[r]);
    }
}

/// A hint that `p` will be read soon (no effect on results; nothing on other targets).
#[inline]
fn prefetch(p: *const f64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and reads nothing the program sees, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

impl LevelRuns<'_> {
    /// The Grams of two disjoint groups `small` and `large` (each w_i 0 or the base weight, no
    /// row in both; `large` dropping fewer rows than it keeps) in one pass over the runs
    /// `large` drops rows from: each run's rows are read once, a dropped row's outer product is
    /// added to the smaller group's Gram (when it is the smaller group's) and taken from the
    /// larger's full-sample sums, and the run's between-run terms are formed for both groups.
    /// The runs are listed first so the next ones can be fetched from memory while one is
    /// summed (they lie far apart in the sample). Equal to [`LevelRuns::gram`] of each to
    /// rounding.
    pub fn gram_pair(&self, totals: &LevelTotals, buf: &mut RowBuffers, small: &[f64], large: &[f64]) -> [Vec<f64>; 2] {
        let m = totals.m;
        let mut runs = std::mem::take(&mut buf.runs);
        runs.clear();
        for i in 0..large.len() {
            if large[i] == 0.0 && totals.base[i] > 0.0 {
                let r = totals.run_of[i];
                if runs.last() != Some(&r) {
                    runs.push(r);
                }
            }
        }
        let mut g = PairGrams {
            gs: vec![0.0; m * (m + 1) / 2],
            gl: totals.raw.clone(),
            btw_s: vec![0.0; m * (m + 1) / 2],
            btw_l: totals.between.clone(),
        };
        const AHEAD: usize = 6;
        for (j, &r) in runs.iter().enumerate() {
            if let Some(&next) = runs.get(j + AHEAD) {
                totals.prefetch_run(next as usize);
            }
            totals.pair_run(&mut g, buf, small, large, r as usize);
        }
        buf.runs = runs;
        let PairGrams {
            mut gs,
            mut gl,
            btw_s,
            btw_l,
        } = g;
        for (g, btw) in [(&mut gs, &btw_s), (&mut gl, &btw_l)] {
            for (a, b) in g.iter_mut().zip(btw) {
                *a -= b;
            }
        }
        let c = totals.c;
        [
            crate::linalg::partial_out_last(&gs, c, m),
            crate::linalg::partial_out_last(&gl, c, m),
        ]
    }

    /// [`LevelRuns::gram`] of `w` (each w_i 0 or the base weight) from the full-sample sums
    /// minus the rows `w` drops (module doc).
    pub fn gram_complement(&self, totals: &LevelTotals, buf: &mut RowBuffers, w: &[f64]) -> Vec<f64> {
        let m = totals.m;
        let mut g = totals.raw.clone();
        let mut btw = totals.between.clone();
        let mut last_run = usize::MAX;
        for i in 0..w.len() {
            let b = totals.base[i];
            if b <= 0.0 || w[i] != 0.0 {
                continue;
            }
            add_outer(&mut g, &totals.u[i * m..(i + 1) * m], -b);
            // a run's rows are contiguous: its dropped rows come one after another
            let r = totals.run_of[i] as usize;
            if r != last_run {
                last_run = r;
                totals.swap_run(&mut btw, &mut buf.kept, w, r);
            }
        }
        for (a, b) in g.iter_mut().zip(&btw) {
            *a -= b;
        }
        crate::linalg::partial_out_last(&g, totals.c, m)
    }

    /// The Gram of `w` by whichever path is cheaper: the complement when `w` drops fewer rows
    /// than it keeps at their base weight (and `totals` are given), else the direct one. The
    /// choice depends on `w` alone, so results do not depend on batching.
    pub fn gram_auto(
        &self,
        totals: Option<&LevelTotals>,
        scratch: &mut (Scratch, RowBuffers),
        columns: &[Vec<f64>],
        w: &[f64],
    ) -> Vec<f64> {
        match totals {
            Some(t) if t.prefers_complement(w) => self.gram_complement(t, &mut scratch.1, w),
            _ => self.gram(&mut scratch.0, columns, w),
        }
    }
}
