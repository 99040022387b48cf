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
//! lose nothing: the result equals the direct path to rounding (a test holds them to 1e-12).

use super::fwl::{LevelRuns, Scratch};

/// Packed lower-triangle position of (p, q), as [`crate::demean::pair_of`].
fn tri(p: usize, q: usize) -> usize {
    if p >= q {
        p * (p + 1) / 2 + q
    } else {
        q * (q + 1) / 2 + p
    }
}

/// g += s · u u' over the non-zero entries `nz` (ascending) of u.
fn add_outer(g: &mut [f64], u: &[f64], nz: &[usize], s: f64) {
    for (j, &a) in nz.iter().enumerate() {
        let sa = s * u[a];
        let row = a * (a + 1) / 2;
        for &b in &nz[..=j] {
            g[row + b] += sa * u[b];
        }
    }
}

/// g += s · v v' (v dense).
fn add_outer_dense(g: &mut [f64], v: &[f64], s: f64) {
    for a in 0..v.len() {
        let sa = s * v[a];
        let row = a * (a + 1) / 2;
        for b in 0..=a {
            g[row + b] += sa * v[b];
        }
    }
}

/// The full-sample sums a complement Gram starts from, under the base weights.
pub struct LevelTotals {
    base: Vec<f64>,
    /// Variables of the Gram: columns, then dummies.
    c: usize,
    m: usize,
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

/// Per-thread buffers of the complement path.
#[derive(Default)]
pub struct RowBuffers {
    u: Vec<f64>,
    nz: Vec<usize>,
    dummies: Vec<usize>,
    kept: Vec<f64>,
}

impl RowBuffers {
    /// Fill u (dense, m entries) and its non-zero positions for row `i`.
    fn load(&mut self, runs: &LevelRuns, columns: &[Vec<f64>], m: usize, i: usize) {
        let c = columns.len();
        self.u.clear();
        self.u.resize(m, 0.0);
        self.nz.clear();
        for (p, col) in columns.iter().enumerate() {
            self.u[p] = col[i];
            if col[i] != 0.0 {
                self.nz.push(p);
            }
        }
        runs.dummies_of(c, i, &mut self.dummies);
        for &d in &self.dummies {
            self.u[d] = 1.0;
            self.nz.push(d);
        }
    }
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
        let mut t = LevelTotals {
            base: base.to_vec(),
            c,
            m,
            raw: vec![0.0; m * (m + 1) / 2],
            between: vec![0.0; m * (m + 1) / 2],
            run_of,
            run_start,
            run_sums: vec![0.0; runs_n * m],
            run_weight: vec![0.0; runs_n],
        };
        let mut buf = RowBuffers::default();
        for i in (0..n).filter(|&i| base[i] > 0.0) {
            buf.load(runs, columns, m, i);
            add_outer(&mut t.raw, &buf.u, &buf.nz, base[i]);
            let r = t.run_of[i] as usize;
            for &a in &buf.nz {
                t.run_sums[r * m + a] += base[i] * buf.u[a];
            }
            t.run_weight[r] += base[i];
        }
        for r in 0..runs_n {
            if t.run_weight[r] > 0.0 {
                add_outer_dense(&mut t.between, &t.run_sums[r * m..(r + 1) * m], 1.0 / t.run_weight[r]);
            }
        }
        t
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

    /// Swap run `r`'s full-sample between-run term in `btw` for the one of its rows kept by `w`.
    fn swap_run(&self, btw: &mut [f64], buf: &mut RowBuffers, runs: &LevelRuns, columns: &[Vec<f64>], w: &[f64], r: usize) {
        let m = self.m;
        add_outer_dense(btw, &self.run_sums[r * m..(r + 1) * m], -1.0 / self.run_weight[r]);
        buf.kept.clear();
        buf.kept.resize(m, 0.0);
        let mut wk = 0.0;
        for i in self.run_start[r]..self.run_start[r + 1] {
            if w[i] > 0.0 {
                buf.load(runs, columns, m, i);
                for &a in &buf.nz {
                    buf.kept[a] += w[i] * buf.u[a];
                }
                wk += w[i];
            }
        }
        if wk > 0.0 {
            let kept = std::mem::take(&mut buf.kept);
            add_outer_dense(btw, &kept, 1.0 / wk);
            buf.kept = kept;
        }
    }
}

impl LevelRuns<'_> {
    /// [`LevelRuns::gram`] of `w` (each w_i 0 or the base weight) from the full-sample sums
    /// minus the rows `w` drops (module doc).
    pub fn gram_complement(&self, totals: &LevelTotals, buf: &mut RowBuffers, columns: &[Vec<f64>], w: &[f64]) -> Vec<f64> {
        let m = totals.m;
        let mut g = totals.raw.clone();
        let mut btw = totals.between.clone();
        let mut last_run = usize::MAX;
        for i in 0..w.len() {
            let b = totals.base[i];
            if b <= 0.0 || w[i] != 0.0 {
                continue;
            }
            buf.load(self, columns, m, i);
            add_outer(&mut g, &buf.u, &buf.nz, -b);
            // a run's rows are contiguous: its dropped rows come one after another
            let r = totals.run_of[i] as usize;
            if r != last_run {
                last_run = r;
                totals.swap_run(&mut btw, buf, self, columns, w, r);
            }
        }
        for (a, b) in g.iter_mut().zip(&btw) {
            *a -= b;
        }
        debug_assert_eq!(tri(m - 1, m - 1) + 1, g.len());
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
            Some(t) if t.prefers_complement(w) => self.gram_complement(t, &mut scratch.1, columns, w),
            _ => self.gram(&mut scratch.0, columns, w),
        }
    }
}
