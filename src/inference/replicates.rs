//! Replicate draws from Philox4x32-10 (counter = (replicate, unit, stream, 0), key = seed; see
//! shared/DESIGN.md). Every random decision is made from integers, never from floats, so the
//! Rust and WGSL generators (shaders/philox.wgsl) agree bit for bit.

use crate::rng::philox4x32;

pub use crate::rng::stream;

fn key(seed: u64) -> [u32; 2] {
    [seed as u32, (seed >> 32) as u32]
}

/// The first Philox word for (replicate, unit) in `stream`.
pub fn draw(seed: u64, stream: u32, replicate: u32, unit: u32) -> u32 {
    philox4x32([replicate, unit, stream, 0], key(seed))[0]
}

/// Wild bootstrap weight distributions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WildWeights {
    /// ±1 with probability 1/2 each (from the top bit).
    Rademacher,
    /// Webb's six points ±√(1/2), ±1, ±√(3/2), each with probability 1/6 (multiply-shift).
    Webb,
}

/// The wild weight of cluster `g` in replicate `r`.
pub fn wild_weight(seed: u64, kind: WildWeights, r: u32, g: u32) -> f64 {
    let u = draw(seed, stream::WILD, r, g);
    match kind {
        WildWeights::Rademacher => {
            if u >> 31 == 1 {
                1.0
            } else {
                -1.0
            }
        }
        WildWeights::Webb => WEBB_POINTS[((u as u64 * 6) >> 32) as usize],
    }
}

/// Webb's six points, indexed by the multiply-shift draw in 0..6.
pub const WEBB_POINTS: [f64; 6] = [
    -1.224_744_871_391_589,
    -1.0,
    -std::f64::consts::FRAC_1_SQRT_2,
    std::f64::consts::FRAC_1_SQRT_2,
    1.0,
    1.224_744_871_391_589,
];

/// Which units fall in the first group of a permutation replicate: units are ordered by
/// (Philox key, unit index) and the first `n_first` are taken, so group sizes are kept exactly.
pub fn permutation_first_group(seed: u64, replicate: u32, units: usize, n_first: usize) -> Vec<bool> {
    let (mut scratch, mut first) = (DrawScratch::default(), Vec::new());
    permutation_first_group_into(seed, replicate, units, n_first, &mut scratch, &mut first);
    first
}

/// Buffers of [`permutation_first_group_into`], kept by the caller across replicates.
#[derive(Default)]
pub struct DrawScratch {
    draws: Vec<u32>,
    /// (draw, unit) as draw · 2³² + unit: ordered as the pairs are.
    keys: Vec<u64>,
}

/// [`permutation_first_group`] into buffers the caller keeps across replicates: the same draws
/// without allocations of the size of the sample per replicate. The draws come eight at a
/// time ([`crate::rng::philox_first_words`]); only those below a cut that the `n_first`-th
/// smallest of `units` uniform draws stays under but for a chance of about e⁻³² are ordered
/// (all of them when fewer than `n_first` are below it, so the set is always the one a full
/// sort would give).
pub fn permutation_first_group_into(
    seed: u64,
    replicate: u32,
    units: usize,
    n_first: usize,
    s: &mut DrawScratch,
    first: &mut Vec<bool>,
) {
    let k = n_first.min(units);
    crate::rng::philox_first_words(replicate, 0..units as u32, stream::PERMUTATION, key(seed), &mut s.draws);
    let keyed = |(u, &d): (usize, &u32)| (d as u64) << 32 | u as u64;
    let expected = k as f64 + 8.0 * (k as f64).sqrt() + 16.0;
    let cut = (expected / units.max(1) as f64 * 4_294_967_296.0).min(u32::MAX as f64) as u32;
    s.keys.clear();
    s.keys
        .extend(s.draws.iter().enumerate().filter(|(_, &d)| d <= cut).map(keyed));
    if s.keys.len() < k {
        s.keys.clear();
        s.keys.extend(s.draws.iter().enumerate().map(keyed));
    }
    // the k smallest keys, all distinct, in O(units)
    if k > 0 && k < s.keys.len() {
        s.keys.select_nth_unstable(k - 1);
    }
    first.clear();
    first.resize(units, false);
    for &key in &s.keys[..k] {
        first[(key & 0xffff_ffff) as usize] = true;
    }
}

/// Pairs (cluster) bootstrap multiplicities: `units` draws of a unit index by multiply-shift.
pub fn pairs_multiplicities(seed: u64, replicate: u32, units: usize) -> Vec<u32> {
    let mut m = vec![0u32; units];
    for j in 0..units as u32 {
        let u = draw(seed, stream::PAIRS, replicate, j);
        m[((u as u64 * units as u64) >> 32) as usize] += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_pure_functions_of_seed_replicate_and_unit() {
        assert_eq!(
            wild_weight(3, WildWeights::Webb, 5, 7),
            wild_weight(3, WildWeights::Webb, 5, 7)
        );
        let p = permutation_first_group(9, 2, 50, 20);
        assert_eq!(p.iter().filter(|&&b| b).count(), 20);
        assert_eq!(p, permutation_first_group(9, 2, 50, 20));
        assert_ne!(p, permutation_first_group(9, 3, 50, 20));
        assert_eq!(pairs_multiplicities(1, 0, 40).iter().sum::<u32>(), 40);
    }

    /// The first group is the `n_first` smallest (draw, unit) pairs of a full sort, whatever
    /// the share of units it takes.
    #[test]
    fn first_group_is_the_smallest_draws_of_a_full_sort() {
        for (units, n_first) in [
            (1, 0),
            (1, 1),
            (7, 3),
            (1000, 1),
            (1000, 70),
            (5000, 4999),
            (20_000, 1500),
        ] {
            for replicate in [0, 1, 977] {
                let mut pairs: Vec<(u32, u32)> = (0..units as u32)
                    .map(|u| (draw(42, stream::PERMUTATION, replicate, u), u))
                    .collect();
                pairs.sort_unstable();
                let mut want = vec![false; units];
                pairs[..n_first].iter().for_each(|&(_, u)| want[u as usize] = true);
                let got = permutation_first_group(42, replicate, units, n_first);
                assert_eq!(got, want, "{n_first} of {units}, replicate {replicate}");
            }
        }
    }

    #[test]
    fn rademacher_and_webb_have_the_right_moments() {
        let n = 40_000;
        for kind in [WildWeights::Rademacher, WildWeights::Webb] {
            let v: Vec<f64> = (0..n).map(|g| wild_weight(11, kind, 0, g)).collect();
            let mean = v.iter().sum::<f64>() / n as f64;
            let var = v.iter().map(|x| x * x).sum::<f64>() / n as f64;
            assert!(mean.abs() < 0.02, "{kind:?} mean {mean}");
            assert!((var - 1.0).abs() < 0.02, "{kind:?} variance {var}");
        }
    }
}
