//! A shard: one of K equal slices of a resampling run's replicates, so that K machines (a Slurm
//! job array, see `examples/slurm/`) can share one run.
//!
//! Replicate r's draws are Philox functions of (seed, r, unit) ([`super::replicates`]), never of
//! what was drawn before, so a shard can compute replicates `[I·T/K, (I+1)·T/K)` of the T the
//! whole run has without computing the others, and the shards' replicate statistics, put end to
//! end in shard order, are the single run's, bit for bit. Where a test enumerates every
//! assignment instead of drawing (bdiff with few units, the wild bootstrap with 2^G ≤ reps), the
//! enumeration list is what is sliced: T is then its length, and the result stays exact.
//!
//! On the command line a shard is written `I/K` with I counted from 1 (`--shard 1/4` …
//! `--shard 4/4`), the numbering of `sbatch --array=1-K`; internally the index counts from 0.

use std::fmt;
use std::ops::Range;

use crate::error::{Error, Result};

/// Shard `index` (from 0) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: usize,
    count: usize,
}

impl Shard {
    /// Shard `number` (from 1) of `count`; refused unless 1 ≤ number ≤ count.
    pub fn new(number: usize, count: usize) -> Result<Shard> {
        if count == 0 {
            return Err(Error::Usage(
                "--shard I/K: K (the number of shards) must be at least 1".into(),
            ));
        }
        if number == 0 || number > count {
            return Err(Error::Usage(format!(
                "--shard {number}/{count}: I counts shards from 1, so it must be between 1 and {count}"
            )));
        }
        Ok(Shard {
            index: number - 1,
            count,
        })
    }

    /// Parse `I/K` (I from 1).
    pub fn parse(s: &str) -> Result<Shard> {
        let bad = || {
            Error::Usage(format!(
                "--shard {s}: expected I/K, shard I (counted from 1) of K, e.g. --shard 2/8"
            ))
        };
        let (i, k) = s.split_once('/').ok_or_else(bad)?;
        let i: usize = i.trim().parse().map_err(|_| bad())?;
        let k: usize = k.trim().parse().map_err(|_| bad())?;
        Shard::new(i, k)
    }

    /// The shard's number, counted from 1.
    pub fn number(&self) -> usize {
        self.index + 1
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// The replicates this shard computes out of `total`: `[I·T/K, (I+1)·T/K)` with I from 0.
    /// The K ranges are disjoint, cover `0..total` in order, and differ in length by at most one.
    pub fn range(&self, total: usize) -> Range<usize> {
        let at = |i: usize| (i as u128 * total as u128 / self.count as u128) as usize;
        at(self.index)..at(self.index + 1)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.number(), self.count)
    }
}

/// The replicates of a run of `total` that `shard` computes (all of them without a shard).
pub fn range_of(shard: Option<Shard>, total: usize) -> Range<usize> {
    shard.map_or(0..total, |s| s.range(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ranges_tile_the_replicates_in_order() {
        for total in [0, 1, 2, 7, 999, 1000] {
            for k in 1..=9 {
                let mut next = 0;
                for i in 1..=k {
                    let r = Shard::new(i, k).unwrap().range(total);
                    assert_eq!(r.start, next, "{i}/{k} of {total}");
                    assert!(r.len() <= total / k + 1);
                    next = r.end;
                }
                assert_eq!(next, total);
            }
        }
    }

    #[test]
    fn shard_numbers_count_from_one_and_are_checked() {
        assert_eq!(Shard::parse("1/3").unwrap().range(9), 0..3);
        assert_eq!(Shard::parse(" 3 / 3 ").unwrap().range(9), 6..9);
        assert_eq!(Shard::parse("2/3").unwrap().to_string(), "2/3");
        for bad in ["0/3", "4/3", "1/0", "3", "a/b", "-1/3", "1/3/4"] {
            assert!(matches!(Shard::parse(bad), Err(Error::Usage(_))), "{bad}");
        }
    }
}
