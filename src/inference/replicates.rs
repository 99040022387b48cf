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
    let (mut order, mut first) = (Vec::new(), Vec::new());
    permutation_first_group_into(seed, replicate, units, n_first, &mut order, &mut first);
    first
}

/// [`permutation_first_group`] into buffers the caller keeps across replicates (`order` is
/// scratch): the same draws without two allocations of the size of the sample per replicate.
pub fn permutation_first_group_into(
    seed: u64,
    replicate: u32,
    units: usize,
    n_first: usize,
    order: &mut Vec<(u32, u32)>,
    first: &mut Vec<bool>,
) {
    order.clear();
    order.extend((0..units as u32).map(|u| (draw(seed, stream::PERMUTATION, replicate, u), u)));
    // the n_first smallest (draw, unit) pairs — all distinct, so the set is the one a full sort
    // would give — in O(units)
    let k = n_first.min(units);
    if k > 0 && k < units {
        order.select_nth_unstable(k - 1);
    }
    first.clear();
    first.resize(units, false);
    for &(_, u) in &order[..k] {
        first[u as usize] = true;
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
