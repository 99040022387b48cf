//! One fixed effect as a dense id per observation (`ids[i]` in `0..levels`), plus the helpers that
//! build ids: interacting several codes (`a^b`) and compacting codes after rows are dropped.

use crate::data::load::{FastMap, MISSING_CODE};

/// A fixed effect over the estimation sample: `ids[i] ∈ 0..levels`, every level used.
#[derive(Debug, Clone)]
pub struct FixedEffect {
    pub name: String,
    pub ids: Vec<u32>,
    pub levels: usize,
}

impl FixedEffect {
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
        let mut s = vec![0.0; self.levels];
        match weights {
            Some(w) => {
                for (&g, &wi) in self.ids.iter().zip(w) {
                    s[g as usize] += wi;
                }
            }
            None => {
                for &g in &self.ids {
                    s[g as usize] += 1.0;
                }
            }
        }
        s
    }
}

/// Codes of the interaction of several categorical columns (fixest's `a^b`): one level per
/// observed combination; missing if any part is missing.
pub fn interact(parts: &[(Vec<u32>, usize)]) -> (Vec<u32>, usize) {
    match parts {
        [] => (Vec::new(), 0),
        [one] => one.clone(),
        [first, rest @ ..] => {
            let mut acc = first.clone();
            for next in rest {
                let mut map: FastMap<u64, u32> = FastMap::default();
                let codes = acc
                    .0
                    .iter()
                    .zip(&next.0)
                    .map(|(&a, &b)| {
                        if a == MISSING_CODE || b == MISSING_CODE {
                            MISSING_CODE
                        } else {
                            let key = (a as u64) << 32 | b as u64;
                            let n = map.len() as u32;
                            *map.entry(key).or_insert(n)
                        }
                    })
                    .collect();
                acc = (codes, map.len());
            }
            acc
        }
    }
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
        let a = (vec![0, 0, 1, 1, MISSING_CODE], 2);
        let b = (vec![0, 1, 0, 1, 0], 2);
        let (c, n) = interact(&[a, b]);
        assert_eq!(n, 4);
        assert_eq!(c, vec![0, 1, 2, 3, MISSING_CODE]);
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
