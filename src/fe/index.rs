//! One fixed effect as a dense id per observation (`ids[i]` in `0..levels`), plus the helpers that
//! build ids: interacting several codes (`a^b`) and compacting codes after rows are dropped.

use crate::data::factor::{FastMap, MISSING_CODE};

/// A fixed effect over the estimation sample: `ids[i] ∈ 0..levels`, every level used.
#[derive(Debug, Clone)]
pub struct FixedEffect {
    pub name: String,
    pub ids: Vec<u32>,
    pub levels: usize,
}

impl FixedEffect {
    /// The effect `name` with any codes per observation, renumbered densely in order of first
    /// appearance (so every level is used).
    pub fn from_codes(name: &str, codes: &[u32]) -> Self {
        let levels = codes.iter().max().map_or(0, |&m| m as usize + 1);
        let (ids, levels) = compact(codes, levels, &(0..codes.len()).collect::<Vec<_>>());
        FixedEffect {
            name: name.into(),
            ids,
            levels,
        }
    }

    /// Whether every level is one contiguous run of rows (a sample sorted by the effect, as
    /// [`crate::data::prepare`] sorts by its largest effect).
    pub fn in_runs(&self) -> bool {
        let mut seen = vec![false; self.levels];
        let mut prev = u32::MAX;
        for &g in &self.ids {
            if g != prev {
                if std::mem::replace(&mut seen[g as usize], true) {
                    return false;
                }
                prev = g;
            }
        }
        true
    }

    /// Observations per level.
    pub fn counts(&self) -> Vec<u32> {
        let mut c = vec![0u32; self.levels];
        for &g in &self.ids {
            c[g as usize] += 1;
        }
        c
    }

    /// Sum of weights per level (counts when unweighted).
    pub fn weight_sums(&self, weights: Option<&[f64]>) -> Vec<f64> {
        match weights {
            Some(w) => level_sums(&self.ids, self.levels, |i| w[i]),
            None => level_sums(&self.ids, self.levels, |_| 1.0),
        }
    }
}

/// Codes of the interaction of several categorical columns (fixest's `a^b`): one level per
/// observed combination, numbered in order of first appearance; missing if any part is missing.
pub fn interact(parts: &[(&[u32], usize)]) -> (Vec<u32>, usize) {
    match parts {
        [] => (Vec::new(), 0),
        [(codes, levels)] => (codes.to_vec(), *levels),
        [first, rest @ ..] => {
            let mut acc = interact_pair(*first, rest[0]);
            for next in &rest[1..] {
                acc = interact_pair((&acc.0, acc.1), *next);
            }
            acc
        }
    }
}

/// Two-way interaction, numbered by first appearance. A panel whose `a` levels come in
/// contiguous runs (sorted by firm) needs only a table of `b`'s levels, stamped per run; else,
/// when the grid of combinations is small next to the data (firm × year, firm × destination)
/// a dense table replaces the hash map: one random access per row instead of a hash and probe.
fn interact_pair(a: (&[u32], usize), b: (&[u32], usize)) -> (Vec<u32>, usize) {
    interact_runs(a, b).unwrap_or_else(|| interact_table(a, b))
}

/// [`interact_pair`] when every level of `a` is one run of rows (rows missing either part do
/// not break a run); `None` as soon as a level of `a` reappears after its run.
fn interact_runs((a, ga): (&[u32], usize), (b, gb): (&[u32], usize)) -> Option<(Vec<u32>, usize)> {
    let mut seen = vec![false; ga];
    // per level of b: (the run that last met it, its code there)
    let mut slot = vec![(0u32, 0u32); gb];
    let mut codes = Vec::with_capacity(a.len());
    let (mut prev, mut run, mut next) = (MISSING_CODE, 0u32, 0u32);
    for (&x, &y) in a.iter().zip(b) {
        if x == MISSING_CODE || y == MISSING_CODE {
            codes.push(MISSING_CODE);
            continue;
        }
        if x != prev {
            if std::mem::replace(&mut seen[x as usize], true) {
                return None;
            }
            prev = x;
            run += 1;
        }
        let s = &mut slot[y as usize];
        if s.0 != run {
            *s = (run, next);
            next += 1;
        }
        codes.push(s.1);
    }
    Some((codes, next as usize))
}

/// [`interact_pair`] through a dense table of the grid or, for a large grid, a hash map.
fn interact_table((a, ga): (&[u32], usize), (b, gb): (&[u32], usize)) -> (Vec<u32>, usize) {
    let cells = ga as u128 * gb as u128;
    if cells <= (8 * a.len() as u128).max(1 << 20) {
        let mut table = vec![u32::MAX; cells as usize];
        let mut next = 0u32;
        let codes = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| {
                if x == MISSING_CODE || y == MISSING_CODE {
                    return MISSING_CODE;
                }
                let slot = &mut table[x as usize * gb + y as usize];
                if *slot == u32::MAX {
                    *slot = next;
                    next += 1;
                }
                *slot
            })
            .collect();
        return (codes, next as usize);
    }
    let mut map: FastMap<u64, u32> = FastMap::default();
    let codes = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            if x == MISSING_CODE || y == MISSING_CODE {
                MISSING_CODE
            } else {
                let n = map.len() as u32;
                *map.entry((x as u64) << 32 | y as u64).or_insert(n)
            }
        })
        .collect();
    (codes, map.len())
}

/// `Σ_{i: ids_i = g} value(i)` for every level `g`. Consecutive rows of one level are summed
/// in a register and stored once (on rows sorted by this effect, every row but a run's last
/// skips the memory round trip that would otherwise chain the additions).
pub fn level_sums(ids: &[u32], levels: usize, value: impl Fn(usize) -> f64) -> Vec<f64> {
    let mut s = vec![0.0; levels];
    let Some(&first) = ids.first() else {
        return s;
    };
    let (mut cur, mut acc) = (first as usize, 0.0);
    for (i, &g) in ids.iter().enumerate() {
        let g = g as usize;
        if g != cur {
            s[cur] += acc;
            cur = g;
            acc = 0.0;
        }
        acc += value(i);
    }
    s[cur] += acc;
    s
}

/// The codes of `rows` (in that order), renumbered densely in order of first appearance.
pub fn compact(codes: &[u32], levels: usize, rows: &[usize]) -> (Vec<u32>, usize) {
    let mut remap = vec![u32::MAX; levels];
    let mut next = 0u32;
    let out = rows
        .iter()
        .map(|&i| {
            let r = &mut remap[codes[i] as usize];
            if *r == u32::MAX {
                *r = next;
                next += 1;
            }
            *r
        })
        .collect();
    (out, next as usize)
}

/// `rows` stably sorted by `codes` (counting sort, O(N + levels)). Sorting the estimation
/// sample by its largest fixed effect makes that effect's group sums stream through memory
/// instead of jumping around it, which is where demeaning spends its time on big panels.
pub fn sort_rows_by(codes: &[u32], levels: usize, rows: &[usize]) -> Vec<usize> {
    let mut start = vec![0usize; levels + 1];
    for &i in rows {
        start[codes[i] as usize + 1] += 1;
    }
    for g in 0..levels {
        start[g + 1] += start[g];
    }
    let mut out = vec![0usize; rows.len()];
    for &i in rows {
        let s = &mut start[codes[i] as usize];
        out[*s] = i;
        *s += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interaction_has_one_level_per_observed_pair() {
        let a: (&[u32], usize) = (&[0, 0, 1, 1, MISSING_CODE], 2);
        let b: (&[u32], usize) = (&[0, 1, 0, 1, 0], 2);
        let (c, n) = interact(&[a, b]);
        assert_eq!(n, 4);
        assert_eq!(c, vec![0, 1, 2, 3, MISSING_CODE]);
    }

    #[test]
    fn dense_and_hashed_interactions_number_alike() {
        // the same data declared with few levels (dense table) and with a huge level count
        // (hash map) must give the same first-appearance codes
        let a: Vec<u32> = (0..1000u32).map(|i| (i * 37 + i / 7) % 50).collect();
        let mut b: Vec<u32> = (0..1000u32).map(|i| (i * 11 + i / 3) % 40).collect();
        b[17] = MISSING_CODE;
        let dense = interact(&[(&a, 50), (&b, 40)]);
        let hashed = interact(&[(&a, 1 << 24), (&b, 1 << 12)]);
        assert_eq!(dense, hashed);
        assert_eq!(dense.0[17], MISSING_CODE);
        let three = interact(&[(&a, 50), (&b, 40), (&a, 50)]);
        assert_eq!(three.1, dense.1);
    }

    #[test]
    fn interactions_over_runs_number_as_the_table_does() {
        // a in runs (a panel sorted by firm), with missing values inside a run
        let a: Vec<u32> = (0..2000u32)
            .map(|i| if i % 97 == 5 { MISSING_CODE } else { i / 23 })
            .collect();
        let mut b: Vec<u32> = (0..2000u32).map(|i| (i * 11 + i / 3) % 40).collect();
        b[100] = MISSING_CODE;
        let runs = interact_runs((&a, 87), (&b, 40)).expect("a comes in runs");
        assert_eq!(runs, interact_table((&a, 87), (&b, 40)));
        assert_eq!(interact(&[(&a, 87), (&b, 40)]), runs);
        // a level that comes back after its run: the table decides
        let mut back = a.clone();
        back[1999] = 0;
        assert_eq!(interact_runs((&back, 87), (&b, 40)), None);
        assert_eq!(
            interact(&[(&back, 87), (&b, 40)]),
            interact_table((&back, 87), (&b, 40))
        );
    }

    #[test]
    fn compact_renumbers_used_levels() {
        let (c, n) = compact(&[3, 1, 3, 0], 4, &[0, 2, 3]);
        assert_eq!((c, n), (vec![0, 0, 1], 2));
    }

    #[test]
    fn rows_sorted_stably_by_level() {
        assert_eq!(sort_rows_by(&[2, 0, 2, 1, 0], 3, &[0, 1, 2, 3, 4]), vec![1, 4, 3, 0, 2]);
        assert_eq!(sort_rows_by(&[2, 0, 2, 1, 0], 3, &[0, 2, 3]), vec![3, 0, 2]);
    }
}
