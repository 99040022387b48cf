//! Singleton removal (Correia 2015, "Singletons, cluster-robust standard errors and fixed
//! effects"; reghdfe's default): an observation alone in its level of any fixed effect is
//! perfectly fitted and only inflates the degrees of freedom. Dropping it can create new
//! singletons, so we repeat until none remain.

/// Mark singletons as not kept, iterating to a fixed point. `fes` holds each effect's codes and
/// level count over all rows; only rows with `keep[i]` take part. Returns how many were dropped.
pub fn drop_singletons(fes: &[(&[u32], usize)], keep: &mut [bool]) -> usize {
    if fes.is_empty() {
        return 0;
    }
    let mut counts: Vec<Vec<u32>> = fes.iter().map(|(_, g)| vec![0u32; *g]).collect();
    for (k, (ids, _)) in fes.iter().enumerate() {
        for (i, &g) in ids.iter().enumerate() {
            if keep[i] {
                counts[k][g as usize] += 1;
            }
        }
    }
    let mut dropped = 0;
    loop {
        let mut changed = false;
        for i in 0..keep.len() {
            if !keep[i] {
                continue;
            }
            if fes
                .iter()
                .enumerate()
                .any(|(k, (ids, _))| counts[k][ids[i] as usize] == 1)
            {
                keep[i] = false;
                dropped += 1;
                changed = true;
                for (k, (ids, _)) in fes.iter().enumerate() {
                    counts[k][ids[i] as usize] -= 1;
                }
            }
        }
        if !changed {
            return dropped;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn singletons_are_dropped_iteratively() {
        // fe1: obs 0 alone in level 2 -> drop; then obs 1 is alone in fe2 level 1 -> drop too.
        let fe1 = vec![2u32, 0, 0, 1, 1];
        let fe2 = vec![1u32, 1, 0, 0, 0];
        let mut keep = vec![true; 5];
        let n = drop_singletons(&[(&fe1, 3), (&fe2, 2)], &mut keep);
        // after dropping obs 0 and 1, obs 2 is alone in fe1 level 0 -> dropped as well.
        assert_eq!(n, 3);
        assert_eq!(keep, vec![false, false, false, true, true]);
    }
}
