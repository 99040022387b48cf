//! Singleton pruning of a permutation replicate's two groups in the work of the smaller one.
//!
//! Without resampling, every row with base weight lies in exactly one of the two groups, so the
//! larger group's count in a level is the full sample's minus the smaller group's: only levels
//! the smaller group touches (or that hold one row in the full sample) can leave the larger
//! group a singleton. Each group is then pruned by a work list — a row alone in a level stays
//! alone until it is removed, so the rows removed are those [`drop_weighted_singletons`]
//! removes, whatever the order — and a level left with one row finds it through a level → rows
//! index. The cost is that of the smaller group, not of the sample.
//!
//! [`drop_weighted_singletons`]: super::permutation::drop_weighted_singletons

use crate::fe::FixedEffect;

/// What every replicate of one test shares.
pub struct PairPruner<'a> {
    fes: Vec<&'a FixedEffect>,
    /// Rows with base weight per level, per effect.
    total: Vec<Vec<u32>>,
    /// Rows of each level (CSR: `start[k][l]..start[k][l + 1]` into `rows[k]`).
    start: Vec<Vec<u32>>,
    rows: Vec<Vec<u32>>,
    /// Levels with one row in the full sample.
    lonely: Vec<(usize, u32)>,
}

/// Per-thread buffers, reused across replicates: `counts` stays zero and `large` equal to the
/// full sample's counts between replicates.
#[derive(Default)]
pub struct PruneScratch {
    counts: Vec<Vec<u32>>,
    large: Vec<Vec<u32>>,
    touched: Vec<(usize, u32)>,
    small_rows: Vec<u32>,
    work: Vec<u32>,
}

impl<'a> PairPruner<'a> {
    /// `fes` may leave out effects nested in another one (a row alone in a coarse level is
    /// alone in its finer level too): the pruning is the same.
    pub fn new(fes: Vec<&'a FixedEffect>, base: &[f64]) -> PairPruner<'a> {
        let mut total: Vec<Vec<u32>> = fes.iter().map(|f| vec![0; f.levels]).collect();
        for (k, f) in fes.iter().enumerate() {
            for (i, &g) in f.ids.iter().enumerate() {
                total[k][g as usize] += (base[i] > 0.0) as u32;
            }
        }
        let mut start = Vec::with_capacity(fes.len());
        let mut rows = Vec::with_capacity(fes.len());
        for f in &fes {
            let mut s = vec![0u32; f.levels + 1];
            for &g in &f.ids {
                s[g as usize + 1] += 1;
            }
            for l in 0..f.levels {
                s[l + 1] += s[l];
            }
            let mut next = s.clone();
            let mut r = vec![0u32; f.ids.len()];
            for (i, &g) in f.ids.iter().enumerate() {
                r[next[g as usize] as usize] = i as u32;
                next[g as usize] += 1;
            }
            start.push(s);
            rows.push(r);
        }
        let lonely = total
            .iter()
            .enumerate()
            .flat_map(|(k, t)| (0..t.len()).filter(move |&l| t[l] == 1).map(move |l| (k, l as u32)))
            .collect();
        PairPruner {
            fes,
            total,
            start,
            rows,
            lonely,
        }
    }

    /// The row of level `l` of effect `k` that still has weight in `w` (the level's count is 1).
    fn last_row(&self, k: usize, l: u32, w: &[f64]) -> u32 {
        let (a, b) = (
            self.start[k][l as usize] as usize,
            self.start[k][l as usize + 1] as usize,
        );
        *self.rows[k][a..b]
            .iter()
            .find(|&&i| w[i as usize] > 0.0)
            .expect("a level counted once has a row with weight")
    }

    /// Remove the rows of `work` and every row left alone by their removal from `w`,
    /// decrementing `counts`; `changed` records the levels touched.
    fn drain(&self, w: &mut [f64], counts: &mut [Vec<u32>], work: &mut Vec<u32>, changed: &mut Vec<(usize, u32)>) {
        while let Some(i) = work.pop() {
            let i = i as usize;
            if w[i] == 0.0 {
                continue;
            }
            w[i] = 0.0;
            for (k, f) in self.fes.iter().enumerate() {
                let l = f.ids[i];
                let c = &mut counts[k][l as usize];
                *c -= 1;
                changed.push((k, l));
                if *c == 1 {
                    work.push(self.last_row(k, l, w));
                }
            }
        }
    }

    /// Prune singletons from both groups' weights `w` (every row with base weight positive in
    /// exactly one of them); the same rows as [`super::permutation::drop_weighted_singletons`]
    /// on each.
    pub fn prune(&self, w: &mut [Vec<f64>; 2], s: &mut PruneScratch) {
        if self.fes.is_empty() {
            return;
        }
        if s.counts.len() != self.fes.len() {
            s.counts = self.total.iter().map(|t| vec![0; t.len()]).collect();
            s.large = self.total.clone();
        }
        let ones = |v: &[f64]| v.iter().filter(|&&x| x > 0.0).count();
        let small = if ones(&w[0]) <= ones(&w[1]) { 0 } else { 1 };
        let [w0, w1] = w;
        let (ws, wl) = if small == 0 { (w0, w1) } else { (w1, w0) };
        s.small_rows.clear();
        s.small_rows
            .extend((0..ws.len() as u32).filter(|&i| ws[i as usize] > 0.0));
        s.touched.clear();
        for &i in &s.small_rows {
            for (k, f) in self.fes.iter().enumerate() {
                let l = f.ids[i as usize];
                s.counts[k][l as usize] += 1;
                s.large[k][l as usize] -= 1;
                s.touched.push((k, l));
            }
        }
        // the larger group's singletons: in levels the smaller one touches, or lonely ones
        s.work.clear();
        for &(k, l) in s.touched.iter().chain(&self.lonely) {
            if s.large[k][l as usize] == 1 {
                s.work.push(self.last_row(k, l, wl));
            }
        }
        let mut changed = std::mem::take(&mut s.touched);
        self.drain(wl, &mut s.large, &mut s.work, &mut changed);
        // the smaller group's
        s.work.clear();
        for &i in &s.small_rows {
            if self
                .fes
                .iter()
                .enumerate()
                .any(|(k, f)| s.counts[k][f.ids[i as usize] as usize] == 1)
            {
                s.work.push(i);
            }
        }
        self.drain(ws, &mut s.counts, &mut s.work, &mut changed);
        for &(k, l) in &changed {
            s.counts[k][l as usize] = 0;
            s.large[k][l as usize] = self.total[k][l as usize];
        }
        s.touched = changed;
    }
}
