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
//! O(|E|), not O(N), and the full-sample sums are formed once per design. For a permutation
//! pair ([`LevelRuns::gram_pair`]) only the dropped rows are read: the smaller group's Gram is
//! its rows' within-run scatter, and the larger group's is the full sample's minus the smaller
//! group's minus, per touched run, the scatter between the run's groups (kept, pruned as
//! singletons, smaller: one rank-one term per group merged) and that of its pruned rows. The
//! columns are the full-sample residuals (the warm start), so the run
//! sums are near zero and the subtractions cancel little: the result equals the direct path to
//! rounding (a test holds them to 1e-12; on the study, p-values and replicate counts are
//! unchanged and the observed NRI difference moves by 4e-15 of itself, the sums being added in
//! another order).

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
    pub(super) base: Vec<f64>,
    /// Variables of the Gram: columns, then dummies.
    pub(super) c: usize,
    pub(super) m: usize,
    /// u of every row, row-major (m entries each): the columns, then 0/1 dummies.
    pub(super) u: Vec<f64>,
    /// Σ b u u' over the rows with base weight (packed m×m).
    pub(super) raw: Vec<f64>,
    /// Σ_runs S S' / W over the full sample (packed m×m).
    pub(super) between: Vec<f64>,
    /// Run index of every row, and each run's first row (plus the end).
    pub(super) run_of: Vec<u32>,
    pub(super) run_start: Vec<usize>,
    /// S (m entries) and W of every run.
    pub(super) run_sums: Vec<f64>,
    pub(super) run_weight: Vec<f64>,
    /// Rows with base weight in every run.
    pub(super) run_rows: Vec<u32>,
    /// The full sample's Gram before the dummies are partialled out: raw − between.
    pub(super) full: Vec<f64>,
}

/// Per-thread buffers of the complement paths.
#[derive(Default)]
pub struct RowBuffers {
    kept: Vec<f64>,
    /// The rows the larger group of a pair drops, in order.
    dropped: Vec<u32>,
    /// The pair's rank-one terms ([`PairTerms`]).
    terms: PairTerms,
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
            run_rows: vec![0; runs_n],
            full: Vec::new(),
        };
        for i in (0..n).filter(|&i| base[i] > 0.0) {
            let ui = &t.u[i * m..(i + 1) * m];
            add_outer(&mut t.raw, ui, base[i]);
            let r = t.run_of[i] as usize;
            for (s, &v) in t.run_sums[r * m..(r + 1) * m].iter_mut().zip(ui) {
                *s += base[i] * v;
            }
            t.run_weight[r] += base[i];
            t.run_rows[r] += 1;
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
        t.full = t.raw.iter().zip(&t.between).map(|(a, b)| a - b).collect();
        t
    }

    /// Whether `small` and `large` suit [`LevelRuns::gram_pair`]: every weight 0 or the base
    /// weight, no row in both, and `large` keeping more rows than it drops.
    pub fn suits_pair(&self, small: &[f64], large: &[f64]) -> bool {
        self.pair_dropped(small, large, &mut Vec::new())
    }

    /// [`LevelTotals::suits_pair`] in one pass that also lists the rows with base weight
    /// `large` drops (in order) into `dropped`; it stops once `large` drops half the rows.
    fn pair_dropped(&self, small: &[f64], large: &[f64], dropped: &mut Vec<u32>) -> bool {
        dropped.clear();
        let mut kept = 0usize;
        for (i, ((&s, &l), &b)) in small.iter().zip(large).zip(&self.base).enumerate() {
            if (s != 0.0 && (s != b || l != 0.0)) || (l != 0.0 && l != b) {
                return false;
            }
            if l != 0.0 {
                kept += 1;
            } else if b > 0.0 {
                dropped.push(i as u32);
                if 2 * dropped.len() > small.len() {
                    return false;
                }
            }
        }
        dropped.len() < kept
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

/// The rank-one terms x y' (row-major, m entries each) whose sums give a pair's Grams:
/// Σ_s x y' is the smaller group's Gram G_s, and G_l = G_full − G_s − Σ_l x y'.
#[derive(Default)]
pub struct PairTerms {
    xs: Vec<f64>,
    ys: Vec<f64>,
    xl: Vec<f64>,
    yl: Vec<f64>,
    /// One run's means: the smaller group's rows, the pruned rows, the larger group's rows,
    /// and of the groups merged so far ([`LevelTotals::pair_run`]).
    means: [Vec<f64>; 4],
}

impl PairTerms {
    fn clear(&mut self) {
        for v in [&mut self.xs, &mut self.ys, &mut self.xl, &mut self.yl] {
            v.clear();
        }
    }

    /// The term (x − c)(`scale` · (x − c))' of the smaller group (`small`) or of the larger
    /// group's loss.
    fn push_centred(&mut self, small: bool, x: &[f64], c: &[f64], scale: f64) {
        let (xs, ys) = if small {
            (&mut self.xs, &mut self.ys)
        } else {
            (&mut self.xl, &mut self.yl)
        };
        xs.extend(x.iter().zip(c).map(|(a, b)| a - b));
        ys.extend(x.iter().zip(c).map(|(a, b)| scale * (a - b)));
    }
}

/// Rows [`LevelRuns::gram_pair`] asks the memory for before it reaches them.
const AHEAD: usize = 12;

impl LevelTotals {
    /// Ask the memory for row `i` (u, its run's sums) before it is needed.
    fn prefetch_row(&self, i: usize) {
        let m = self.m;
        for line in self.u[i * m..(i + 1) * m].chunks(8) {
            prefetch(line.as_ptr());
        }
        let r = self.run_of[i] as usize;
        for line in self.run_sums[r * m..(r + 1) * m].chunks(8) {
            prefetch(line.as_ptr());
        }
    }

    /// One run's terms of [`LevelRuns::gram_pair`], from the rows `dropped` (this run's rows
    /// the larger group drops). The smaller group's part of the run is its rows' within-run
    /// scatter Σ b (u − s̄)(u − s̄)'. The larger group's Gram loses, beyond the smaller group's,
    /// the pruned rows' scatter about their mean p̄ (nothing for a single pruned row) and the
    /// scatter between the run's groups (kept, pruned, smaller): l l'/w_l + p p'/w_p + s s'/w_s
    /// − S S'/W with l = S − s − p, which merging the groups one at a time writes as one
    /// rank-one term per merge, (w_a w_b / (w_a + w_b)) (ā − b̄)(ā − b̄)'.
    fn pair_run(&self, t: &mut PairTerms, small: &[f64], r: usize, dropped: &[u32]) {
        let m = self.m;
        let mut means = std::mem::take(&mut t.means);
        for v in means.iter_mut() {
            v.clear();
            v.resize(m, 0.0);
        }
        let [s_mean, p_mean, l_mean, merged] = &mut means;
        let (mut ws, mut wp, mut np) = (0.0, 0.0, 0usize);
        for &i in dropped {
            let (i, b) = (i as usize, self.base[i as usize]);
            let (sum, w) = if small[i] > 0.0 {
                (&mut *s_mean, &mut ws)
            } else {
                (&mut *p_mean, &mut wp)
            };
            sum.iter_mut()
                .zip(&self.u[i * m..(i + 1) * m])
                .for_each(|(a, v)| *a += b * v);
            *w += b;
            np += (small[i] == 0.0) as usize;
        }
        let (big, wbig) = (&self.run_sums[r * m..(r + 1) * m], self.run_weight[r]);
        let wl = wbig - ws - wp;
        for ((l, bg), (sm, pm)) in l_mean.iter_mut().zip(big).zip(s_mean.iter().zip(p_mean.iter())) {
            *l = (bg - sm - pm) / wl;
        }
        s_mean.iter_mut().for_each(|v| *v /= ws);
        p_mean.iter_mut().for_each(|v| *v /= wp);
        for &i in dropped {
            let (i, b) = (i as usize, self.base[i as usize]);
            let u = &self.u[i * m..(i + 1) * m];
            if small[i] > 0.0 {
                t.push_centred(true, u, s_mean, b);
            } else if np > 1 {
                t.push_centred(false, u, p_mean, b);
            }
        }
        let kept = self.run_rows[r] as usize > dropped.len();
        let groups = [(kept, wl, &*l_mean), (wp > 0.0, wp, &*p_mean), (ws > 0.0, ws, &*s_mean)];
        let mut w = 0.0;
        for (_, wg, mean) in groups.into_iter().filter(|g| g.0) {
            if w > 0.0 {
                t.push_centred(false, merged, mean, w * wg / (w + wg));
                merged
                    .iter_mut()
                    .zip(mean)
                    .for_each(|(a, b)| *a = (w * *a + wg * b) / (w + wg));
            } else {
                merged.copy_from_slice(mean);
            }
            w += wg;
        }
        t.means = means;
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
    /// row in both; `large` dropping fewer rows than it keeps — `None` otherwise,
    /// [`LevelTotals::suits_pair`]) from the rows `large` drops alone: the smaller group's Gram
    /// is summed from its rows' within-run scatter, the larger group's is the full sample's
    /// minus the smaller group's and minus what each touched run loses
    /// ([`LevelTotals::pair_run`]; the larger group's rows are never read). The terms are summed
    /// as matrix products X'Y ([`crate::linalg::cross_packed`]). Equal to [`LevelRuns::gram`]
    /// of each to rounding.
    pub fn gram_pair(
        &self,
        totals: &LevelTotals,
        buf: &mut RowBuffers,
        small: &[f64],
        large: &[f64],
    ) -> Option<[Vec<f64>; 2]> {
        let m = totals.m;
        if !totals.pair_dropped(small, large, &mut buf.dropped) {
            return None;
        }
        buf.terms.clear();
        let mut j = 0;
        while j < buf.dropped.len() {
            let r = totals.run_of[buf.dropped[j] as usize];
            let end = j + buf.dropped[j..]
                .iter()
                .take_while(|&&i| totals.run_of[i as usize] == r)
                .count();
            // the rows lie far apart in the sample: ask for later ones while these are summed
            let n = buf.dropped.len();
            for &i in &buf.dropped[(j + AHEAD).min(n)..(end + AHEAD).min(n)] {
                totals.prefetch_row(i as usize);
            }
            totals.pair_run(&mut buf.terms, small, r as usize, &buf.dropped[j..end]);
            j = end;
        }
        let t = &buf.terms;
        let gs = crate::linalg::cross_packed(&t.xs, &t.ys, m);
        let loss = crate::linalg::cross_packed(&t.xl, &t.yl, m);
        let gl: Vec<f64> = totals
            .full
            .iter()
            .zip(&gs)
            .zip(&loss)
            .map(|((f, s), l)| f - s - l)
            .collect();
        let c = totals.c;
        Some([
            crate::linalg::partial_out_last(&gs, c, m),
            crate::linalg::partial_out_last(&gl, c, m),
        ])
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
