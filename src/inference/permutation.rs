//! `fegpu bdiff`: the Fisher permutation test of the difference between two groups'
//! coefficients (Stata's `bdiff`, Lian Yujun; as used in the study's Tables 5, 6 and 8).
//!
//! The model is fitted on each group (with every fixed effect and reghdfe's singleton rule
//! applied within the group). A replicate reassigns the group labels at random across units —
//! observations, or whole firms/clusters with `--unit VAR`, which panel data need — keeping the
//! group sizes, refits both groups and records d* = β*_A − β*_B. With `--bsample` each replicate
//! first resamples units with replacement (pairs bootstrap), then permutes. Each replicate is a
//! pair of weight vectors (membership × multiplicity), so all replicates go through the batched
//! demeaning engine (CPU in parallel, or the GPU) in memory-sized chunks, and the draws are
//! Philox functions of (seed, replicate, unit): results do not depend on backend or chunking.
//!
//! p-values: one-sided in the direction of the observed difference (bdiff's empirical p: the
//! share of d* at least as large as d when d ≥ 0, at least as small when d < 0), and two-sided
//! (share of |d*| ≥ |d|). When the number of distinct assignments is at most `reps` (and no
//! resampling), every assignment is enumerated once and the p-values are exact.
//!
//! [`bdiff_draws`] computes the observed fit and the replicates of one shard (`--shard I/K`,
//! [`super::shard`]; all replicates without one, and the enumeration list is what is sliced);
//! [`assemble`] turns the observed fit and all replicates into the p-values, for a single run and
//! for `fegpu merge` alike.

use rayon::prelude::*;

use serde::{Deserialize, Serialize};

use super::prune::{PairPruner, PruneScratch};
use super::replicates::{pairs_multiplicities, permutation_first_group, permutation_first_group_into, DrawScratch};
use super::shard::{range_of, Shard};
use crate::data::prepare::{Design, Dropped};
use crate::demean::{DemeanOptions, Demeaner};
use crate::error::{Error, Result};
use crate::fe::dof::effects_to_project;
use crate::fe::FixedEffect;
use crate::linalg::{cholesky_drop, cholesky_inverse, Mat};

#[derive(Debug, Clone)]
pub struct BdiffOptions {
    pub reps: usize,
    pub seed: u64,
    pub bsample: bool,
    pub demean: DemeanOptions,
    /// Bytes of demeaned columns held at once (replicates are processed in chunks).
    pub memory_budget: u64,
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BdiffRow {
    pub name: String,
    pub estimate_group1: f64,
    pub estimate_group0: f64,
    pub difference: f64,
    pub p: f64,
    pub p_two_sided: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BdiffResult {
    pub coefficients: Vec<BdiffRow>,
    pub reps_requested: usize,
    pub reps_used: usize,
    pub reps_failed: usize,
    pub enumerated: bool,
    pub units: usize,
    pub units_group1: usize,
    pub nobs_group1: usize,
    pub nobs_group0: usize,
    /// Rows read, and the rows dropped on the way to the sample by cause (as `fit` reports them).
    pub nobs_raw: usize,
    pub dropped: Dropped,
    pub seed: u64,
    pub bsample: bool,
    /// Replicate differences, one vector per coefficient (for plots).
    #[serde(skip)]
    pub differences: Vec<Vec<f64>>,
}

/// What the observed fit and the design contribute to a [`BdiffResult`]: with the replicates'
/// differences, everything [`assemble`] needs (a shard file stores it, `crate::resampling`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BdiffObserved {
    pub names: Vec<String>,
    pub estimate_group1: Vec<f64>,
    pub estimate_group0: Vec<f64>,
    pub reps_requested: usize,
    /// Replicates of the whole run: `reps`, or the number of assignments when they are enumerated.
    pub total: usize,
    pub enumerated: bool,
    pub units: usize,
    pub units_group1: usize,
    pub nobs_group1: usize,
    pub nobs_group0: usize,
    /// Rows read and rows dropped by cause (absent from shard files of earlier versions).
    #[serde(default)]
    pub nobs_raw: usize,
    #[serde(default)]
    pub dropped: Dropped,
    pub seed: u64,
    pub bsample: bool,
}

/// The observed fit and the replicates `first..first + differences.len()` of a run: per
/// replicate d* = β*₁ − β*₀ for every coefficient, or `None` where a group was collinear.
#[derive(Debug, Clone, PartialEq)]
pub struct BdiffDraws {
    pub observed: BdiffObserved,
    pub first: usize,
    pub differences: Vec<Option<Vec<f64>>>,
}

/// Set the weight of singletons (among rows with positive weight) to zero, iteratively.
///
/// The rows removed are the same whatever the order (a row alone in a level stays alone until
/// it is removed), so one pass removes every row that is a singleton when it is reached, and
/// another pass is needed only if a level left with exactly one row during the pass still has
/// it: levels that start at one row lose it when it is reached, so those are the only ones
/// that can hold a singleton after the pass.
pub fn drop_weighted_singletons(fes: &[&FixedEffect], w: &mut [f64]) {
    if fes.is_empty() {
        return;
    }
    let mut counts: Vec<Vec<u32>> = fes.iter().map(|f| vec![0; f.levels]).collect();
    for (k, f) in fes.iter().enumerate() {
        for (i, &g) in f.ids.iter().enumerate() {
            if w[i] > 0.0 {
                counts[k][g as usize] += 1;
            }
        }
    }
    let mut left_one: Vec<(usize, u32)> = Vec::new();
    loop {
        left_one.clear();
        for i in 0..w.len() {
            if w[i] > 0.0 && fes.iter().enumerate().any(|(k, f)| counts[k][f.ids[i] as usize] == 1) {
                w[i] = 0.0;
                for (k, f) in fes.iter().enumerate() {
                    let c = &mut counts[k][f.ids[i] as usize];
                    *c -= 1;
                    if *c == 1 {
                        left_one.push((k, f.ids[i]));
                    }
                }
            }
        }
        if !left_one.iter().any(|&(k, g)| counts[k][g as usize] == 1) {
            return;
        }
    }
}

/// Fill one replicate's weight vectors `w` (group 1, group 0): the base weight times the
/// unit's multiplicity on the side `in_first` puts the unit (singletons not yet pruned).
fn group_weights(
    unit_ids: &[u32],
    base_w: &[f64],
    in_first: &dyn Fn(usize) -> bool,
    mult: Option<&[u32]>,
    w: &mut [Vec<f64>; 2],
) {
    let n = unit_ids.len();
    for v in w.iter_mut() {
        v.clear();
        v.resize(n, 0.0);
    }
    for i in 0..n {
        let u = unit_ids[i] as usize;
        let m = mult.map_or(1.0, |m| m[u] as f64);
        w[if in_first(u) { 0 } else { 1 }][i] = base_w[i] * m;
    }
}

/// Per-thread buffers of a streamed replicate's fit ([`bdiff_draws`]).
#[derive(Default)]
struct PairScratch {
    w: [Vec<f64>; 2],
    prune: PruneScratch,
    level: super::LevelScratch,
}

/// Sufficient statistics per permutation unit, for the common panel case where every fixed
/// effect is either nested in the unit (firm, firm×destination when firms are permuted) or has
/// few levels (year). The nested effects are partialled out once — whole units move between
/// groups, so their within-unit projection never changes — and the few-level effects become
/// dummies. A group's normal equations are then the sum of its units' cross-product matrices
/// of z = √w (ỹ, X̃, D̃), and partialling the dummies out of that small matrix gives exactly the
/// coefficients the full fixed-effect regression would: each replicate costs O(units · p²)
/// instead of a demeaning of every column.
pub struct UnitStats {
    k: usize,
    p: usize,
    /// Lower-triangle (packed, row by row) p×p cross products per unit: the upper half is
    /// never read, so summing it per replicate would only double the work.
    stats: Vec<Vec<f64>>,
    /// Observations per unit at each level of the few-level effects (flattened).
    counts: Vec<Vec<u32>>,
    levels: usize,
}

/// Most dummy columns the unit path accepts for effects not nested in the unit.
const MAX_DUMMIES: usize = 64;

impl UnitStats {
    /// Whether the shortcut applies: every effect nested in the unit or few-level.
    pub fn applies(design: &Design, unit_ids: &[u32]) -> bool {
        let levels: usize = design
            .fes
            .iter()
            .filter(|f| !crate::fe::dof::nested_in(f, unit_ids))
            .map(|f| f.levels)
            .sum();
        levels <= MAX_DUMMIES && !design.fes.is_empty()
    }

    pub fn build(
        design: &Design,
        unit_ids: &[u32],
        n_units: usize,
        demeaner: &dyn Demeaner,
        opts: &DemeanOptions,
    ) -> Result<Option<UnitStats>> {
        let n = design.nobs();
        if !UnitStats::applies(design, unit_ids) {
            return Ok(None);
        }
        let (nested, others): (Vec<&FixedEffect>, Vec<&FixedEffect>) =
            design.fes.iter().partition(|f| crate::fe::dof::nested_in(f, unit_ids));
        let levels: usize = others.iter().map(|f| f.levels).sum();
        let k = design.x.len();
        let mut cols: Vec<Vec<f64>> = Vec::with_capacity(1 + k + levels);
        cols.push(design.y.clone());
        cols.extend(design.x.iter().cloned());
        for f in &others {
            for l in 0..f.levels as u32 {
                cols.push(f.ids.iter().map(|&v| if v == l { 1.0 } else { 0.0 }).collect());
            }
        }
        let w = design.weights.as_deref();
        if !nested.is_empty() {
            let owned: Vec<FixedEffect> = nested.iter().map(|f| (*f).clone()).collect();
            let keep = effects_to_project(&owned);
            let project: Vec<&FixedEffect> = keep.into_iter().map(|i| nested[i]).collect();
            cols = demeaner
                .demean(&crate::demean::Absorb::new(project, w), cols, opts)?
                .columns;
        }
        let p = cols.len();
        let mut stats = vec![vec![0.0; p * (p + 1) / 2]; n_units];
        let mut counts = vec![vec![0u32; levels]; n_units];
        let mut z = vec![0.0; p];
        for i in 0..n {
            let u = unit_ids[i] as usize;
            let sw = w.map_or(1.0, |w| w[i].sqrt());
            for (zc, c) in z.iter_mut().zip(&cols) {
                *zc = sw * c[i];
            }
            let s = &mut stats[u];
            for a in 0..p {
                let za = z[a];
                if za == 0.0 {
                    continue;
                }
                let row = a * (a + 1) / 2;
                for b in 0..=a {
                    s[row + b] += za * z[b];
                }
            }
            let mut off = 0;
            for f in &others {
                counts[u][off + f.ids[i] as usize] += 1;
                off += f.levels;
            }
        }
        Ok(Some(UnitStats {
            k,
            p,
            stats,
            counts,
            levels,
        }))
    }

    /// Coefficients for a group given each unit's multiplier (0 = out of the group). `Err(())`
    /// when a few-level effect has a singleton level in this group (the caller then uses the
    /// general engine, which applies reghdfe's singleton rule); `Ok(None)` when singular.
    pub fn beta(&self, mult: &[f64]) -> std::result::Result<Option<Vec<f64>>, ()> {
        let (p, k) = (self.p, self.k);
        let mut cnt = vec![0.0f64; self.levels];
        let mut s = vec![0.0; p * (p + 1) / 2];
        for (u, &m) in mult.iter().enumerate() {
            if m == 0.0 {
                continue;
            }
            for (c, &v) in cnt.iter_mut().zip(&self.counts[u]) {
                *c += m * v as f64;
            }
            for (a, &v) in s.iter_mut().zip(&self.stats[u]) {
                *a += m * v;
            }
        }
        if cnt.iter().any(|&c| c == 1.0) {
            return Err(());
        }
        let get = |a: usize, b: usize| {
            if a >= b {
                s[a * (a + 1) / 2 + b]
            } else {
                s[b * (b + 1) / 2 + a]
            }
        };
        let d_idx: Vec<usize> = (1 + k..p).collect();
        let x_idx: Vec<usize> = (1..1 + k).collect();
        // Sdd⁻¹ on the non-redundant dummies
        let mut sdd = Mat::zeros(d_idx.len());
        for (r, &a) in d_idx.iter().enumerate() {
            for (c, &b) in d_idx.iter().enumerate() {
                sdd.set(r, c, get(a, b));
            }
        }
        let chol = cholesky_drop(&sdd, 1e-10);
        let kept: Vec<usize> = chol.kept.iter().map(|&r| d_idx[r]).collect();
        let sdd_inv = cholesky_inverse(&chol.l);
        // partial the dummies out of [y, X]
        let resid = |a: usize, b: usize| -> f64 {
            let mut v = get(a, b);
            for (r, &da) in kept.iter().enumerate() {
                for (c, &db) in kept.iter().enumerate() {
                    v -= get(a, da) * sdd_inv.get(r, c) * get(db, b);
                }
            }
            v
        };
        let mut xx = Mat::zeros(k);
        let mut xy = vec![0.0; k];
        for (r, &a) in x_idx.iter().enumerate() {
            xy[r] = resid(a, 0);
            for (c, &b) in x_idx.iter().enumerate().take(r + 1) {
                let v = resid(a, b);
                xx.set(r, c, v);
                xx.set(c, r, v);
            }
        }
        let c = cholesky_drop(&xx, 1e-10);
        Ok(c.dropped.is_empty().then(|| cholesky_inverse(&c.l).mul_vec(&xy)))
    }
}

/// Number of ways to choose `k` of `n`, saturating.
fn binomial(n: usize, k: usize) -> u128 {
    let k = k.min(n - k.min(n));
    let mut r: u128 = 1;
    for i in 0..k {
        r = r.saturating_mul((n - i) as u128) / (i as u128 + 1);
        if r > u64::MAX as u128 {
            return u128::MAX;
        }
    }
    r
}

/// All k-subsets of 0..n (n ≤ 63) as bit masks, in increasing order (Gosper's hack).
fn subsets(n: usize, k: usize) -> Vec<u64> {
    if k == 0 {
        return vec![0];
    }
    let mut out = Vec::new();
    let mut s: u64 = (1u64 << k) - 1;
    while s < (1u64 << n) {
        out.push(s);
        let c = s & s.wrapping_neg();
        let r = s + c;
        s = (((r ^ s) >> 2) / c) | r;
    }
    out
}

/// The permuted units of a run: each row's unit (the row itself without `--unit`), each unit's
/// group (0/1, constant within a unit) and how many units are in group 1.
pub struct Units {
    pub ids: Vec<u32>,
    pub count: usize,
    pub group: Vec<f64>,
    pub first: usize,
}

impl Units {
    /// Checked: the group is 0/1, constant within a unit, and both groups are present.
    pub fn of(group: &[f64], units: Option<(&[u32], usize)>, n: usize) -> Result<Units> {
        if let Some(bad) = group.iter().position(|&g| g != 0.0 && g != 1.0) {
            return Err(Error::Usage(format!(
                "the group variable must be 0/1; row {} of the estimation sample has {}",
                bad + 1,
                group[bad]
            )));
        }
        let (unit_ids, n_units): (Vec<u32>, usize) = match units {
            Some((ids, u)) => (ids.to_vec(), u),
            None => ((0..n as u32).collect(), n),
        };
        // group must be constant within a unit
        let mut unit_group = vec![-1.0f64; n_units];
        for i in 0..n {
            let u = unit_ids[i] as usize;
            if unit_group[u] < 0.0 {
                unit_group[u] = group[i];
            } else if unit_group[u] != group[i] {
                return Err(Error::Usage(
                    "the group variable varies within a unit: with --unit VAR the group must be constant within each unit"
                        .into(),
                ));
            }
        }
        let n1 = unit_group.iter().filter(|&&g| g == 1.0).count();
        if n1 == 0 || n1 == n_units {
            return Err(Error::Usage(
                "both groups must be present (the group variable is constant in the sample)".into(),
            ));
        }
        Ok(Units {
            ids: unit_ids,
            count: n_units,
            group: unit_group,
            first: n1,
        })
    }

    /// Whether the run enumerates every assignment instead of drawing `reps` of them (without
    /// resampling, at most 63 units and no more assignments than `reps`), and then the
    /// assignments as bit masks over the units.
    pub fn enumeration(&self, reps: usize, bsample: bool) -> Option<Vec<u64>> {
        let all = !bsample && self.count <= 63 && binomial(self.count, self.first) <= reps as u128;
        all.then(|| subsets(self.count, self.first))
    }
}

/// Run the permutation test. `group` is 1/0 per row; `units` maps rows to units (`None`: each
/// row is a unit).
pub fn bdiff(
    design: &Design,
    group: &[f64],
    units: Option<(&[u32], usize)>,
    opts: &BdiffOptions,
    demeaner: &dyn Demeaner,
) -> Result<BdiffResult> {
    assemble(&bdiff_draws(design, group, units, opts, None, demeaner)?)
}

/// The observed fit and the replicates of `shard` (all of them with `None`); [`assemble`] turns
/// them into the result.
pub fn bdiff_draws(
    design: &Design,
    group: &[f64],
    units: Option<(&[u32], usize)>,
    opts: &BdiffOptions,
    shard: Option<Shard>,
    demeaner: &dyn Demeaner,
) -> Result<BdiffDraws> {
    let n = design.nobs();
    let all_units = Units::of(group, units, n)?;
    let enumeration = all_units.enumeration(opts.reps, opts.bsample);
    let Units {
        ids: unit_ids,
        count: n_units,
        group: unit_group,
        first: n1,
    } = all_units;
    let mut shared = super::Replicates::new(design, &opts.demean, demeaner)?;
    // the full-sample sums: the larger group's Gram by complement, and the block product
    shared.prepare_complement();
    let shared = shared;
    let (all_fes, base_w) = (&shared.all_fes, &shared.base_w);
    let k = design.x.len();

    // weight vectors of one replicate: (group 1, group 0)
    let weights_for = |in_first: &dyn Fn(usize) -> bool, mult: Option<&[u32]>| -> [Vec<f64>; 2] {
        let mut w = [Vec::new(), Vec::new()];
        group_weights(&unit_ids, base_w, in_first, mult, &mut w);
        drop_weighted_singletons(all_fes, &mut w[0]);
        drop_weighted_singletons(all_fes, &mut w[1]);
        w
    };
    let general = |ws: &[Vec<f64>]| -> Result<Vec<Option<Vec<f64>>>> { shared.betas(ws, demeaner) };
    let unit_stats = match units {
        Some(_) => UnitStats::build(design, &unit_ids, n_units, demeaner, &opts.demean)?,
        None => None,
    };
    // A replicate: the group-1 membership of every unit and optional multiplicities.
    let betas_of = |pairs: &[(Vec<bool>, Option<Vec<u32>>)]| -> Result<Vec<Option<Vec<f64>>>> {
        let mut out: Vec<Option<Option<Vec<f64>>>> = vec![None; 2 * pairs.len()];
        let mut fallback = Vec::new();
        for (r, (first, mult)) in pairs.iter().enumerate() {
            if let Some(us) = &unit_stats {
                let m = |u: usize, g1: bool| {
                    if first[u] == g1 {
                        mult.as_ref().map_or(1.0, |m| m[u] as f64)
                    } else {
                        0.0
                    }
                };
                let m1: Vec<f64> = (0..n_units).map(|u| m(u, true)).collect();
                let m0: Vec<f64> = (0..n_units).map(|u| m(u, false)).collect();
                if let (Ok(a), Ok(b)) = (us.beta(&m1), us.beta(&m0)) {
                    out[2 * r] = Some(a);
                    out[2 * r + 1] = Some(b);
                    continue;
                }
            }
            fallback.push(r);
        }
        if !fallback.is_empty() {
            // the replicates' weight vectors (draws, singleton pruning) in parallel
            let ws: Vec<Vec<f64>> = fallback
                .par_iter()
                .map(|&r| weights_for(&|u| pairs[r].0[u], pairs[r].1.as_deref()))
                .collect::<Vec<[Vec<f64>; 2]>>()
                .into_iter()
                .flatten()
                .collect();
            for (j, b) in general(&ws)?.into_iter().enumerate() {
                out[2 * fallback[j / 2] + j % 2] = Some(b);
            }
        }
        Ok(out.into_iter().map(|b| b.flatten()).collect())
    };

    // On the CPU's level-sum path a replicate is weighted, pruned and fitted in one go on
    // per-thread buffers (nothing of the sample's size is allocated per replicate), both groups
    // from one pass; the observed split goes the same way, so an enumerated replicate equal to
    // it gives the same numbers.
    let streamed = unit_stats.is_none() && shared.on_level_sums();
    // without resampling the groups split the sample: prune both in the smaller one's work
    let pruner = (streamed && !opts.bsample).then(|| PairPruner::new(shared.fes.clone(), base_w));
    let fit_pair = |first: &[bool], mult: Option<&[u32]>, s: &mut PairScratch| -> [Option<Vec<f64>>; 2] {
        group_weights(&unit_ids, base_w, &|u| first[u], mult, &mut s.w);
        match &pruner {
            Some(p) => p.prune(&mut s.w, &mut s.prune),
            None => s.w.iter_mut().for_each(|w| drop_weighted_singletons(all_fes, w)),
        }
        shared.level_pair_betas(&s.w, &mut s.level).unwrap_or_default()
    };

    // observed
    let obs_w = weights_for(&|u| unit_group[u] == 1.0, None);
    let nobs1 = obs_w[0].iter().filter(|&&w| w > 0.0).count();
    let nobs0 = obs_w[1].iter().filter(|&&w| w > 0.0).count();
    let obs_first: Vec<bool> = (0..n_units).map(|u| unit_group[u] == 1.0).collect();
    // a regressor absorbed by the fixed effects within a group is pure rounding in the engines'
    // cross products (no raw spread to judge it by there): the groups' own fits decide first
    for (label, w) in [("1", &obs_w[0]), ("0", &obs_w[1])] {
        if let Some(why) = group_problem(design, w, label, &opts.demean, demeaner) {
            return Err(Error::Estimation(format!(
                "{why}; the groups' coefficients cannot be compared"
            )));
        }
    }
    let obs = if streamed {
        fit_pair(&obs_first, None, &mut PairScratch::default()).to_vec()
    } else {
        betas_of(&[(obs_first, None)])?
    };
    let (b1, b0) = match (&obs[0], &obs[1]) {
        (Some(a), Some(b)) => (a.clone(), b.clone()),
        _ => {
            let why: Vec<String> = [("1", &obs[0], &obs_w[0]), ("0", &obs[1], &obs_w[1])]
                .into_iter()
                .filter(|(_, fit, _)| fit.is_none())
                .map(|(label, _, w)| {
                    group_problem(design, w, label, &opts.demean, demeaner)
                        .unwrap_or_else(|| format!("a regressor is collinear within group {label}"))
                })
                .collect();
            return Err(Error::Estimation(format!(
                "{}; the groups' coefficients cannot be compared",
                why.join("; ")
            )));
        }
    };

    // replicates
    let enumerate = enumeration.is_some();
    let masks: Vec<u64> = enumeration.unwrap_or_default();
    let total = if enumerate { masks.len() } else { opts.reps };
    // host memory per replicate: its two weight vectors, plus its demeaned columns unless the
    // backend returns only cross products (GPU)
    // replicates drawn on the device: nothing of size n per replicate on the host
    let device_draws = shared.on_device() && unit_stats.is_none() && !enumerate;
    let per_rep = if device_draws {
        64
    } else if demeaner.batches_lanes() || shared.on_level_sums() {
        2 * n as u64 * 8
    } else {
        2 * (k as u64 + 1) * n as u64 * 8
    };
    let chunk = ((opts.memory_budget / per_rep.max(1)) as usize).clamp(1, 4096);
    // the group-1 units of replicate r
    let assign = |r: usize, order: &mut DrawScratch, first: &mut Vec<bool>| {
        if enumerate {
            first.clear();
            first.extend((0..n_units).map(|u| masks[r] >> u & 1 == 1));
        } else {
            permutation_first_group_into(opts.seed, r as u32, n_units, n1, order, first);
        }
    };
    // Pairs without resampling as blocks of one dense product when the cost model says so
    // (balanced groups; gram_product), else one replicate at a time on per-thread buffers.
    let smaller = nobs1.min(nobs0);
    let product = shared
        .product()
        .filter(|p| streamed && !opts.bsample && super::gram_product::block_pays(n, smaller, p.shape()));
    let blocks = |reps: std::ops::Range<usize>, product: &super::gram_product::GramProduct| -> Vec<Option<Vec<f64>>> {
        let made: Vec<[Vec<f64>; 2]> = reps
            .into_par_iter()
            .map_init(
                || (DrawScratch::default(), Vec::new(), PairScratch::default()),
                |(order, first, s), r| {
                    assign(r, order, first);
                    group_weights(&unit_ids, base_w, &|u| first[u], None, &mut s.w);
                    match &pruner {
                        Some(p) => p.prune(&mut s.w, &mut s.prune),
                        None => s.w.iter_mut().for_each(|w| drop_weighted_singletons(all_fes, w)),
                    }
                    s.w.clone()
                },
            )
            .collect();
        let ws: Vec<&[f64]> = made.iter().flatten().map(|w| w.as_slice()).collect();
        product.betas(&ws, opts.memory_budget / 2)
    };
    let stream = |reps: std::ops::Range<usize>| -> Vec<Option<Vec<f64>>> {
        reps.into_par_iter()
            .map_init(
                || (DrawScratch::default(), Vec::new(), PairScratch::default()),
                |(order, first, s), r| {
                    assign(r, order, first);
                    let mult = opts.bsample.then(|| pairs_multiplicities(opts.seed, r as u32, n_units));
                    fit_pair(first, mult.as_deref(), s)
                },
            )
            .flatten_iter()
            .collect()
    };
    let range = range_of(shard, total);
    let mut diffs: Vec<Option<Vec<f64>>> = Vec::with_capacity(range.len());
    let progress = crate::progress::Progress::replicates("bdiff", range.len(), opts.progress);
    let mut r0 = range.start;
    while r0 < range.end {
        let r1 = (r0 + chunk).min(range.end);
        let bs = if device_draws {
            let draws = crate::demean::resident::Draws::Permutation {
                seed: opts.seed,
                units: &unit_ids,
                n_units,
                first: n1,
                bsample: opts.bsample,
                replicates: r0 as u32..r1 as u32,
                key_mask: u32::MAX,
            };
            shared.drawn_betas(&draws, demeaner)?
        } else if let Some(p) = &product {
            blocks(r0..r1, p)
        } else if streamed && !device_draws {
            stream(r0..r1)
        } else {
            let pairs: Vec<(Vec<bool>, Option<Vec<u32>>)> = (r0..r1)
                .into_par_iter()
                .map(|r| {
                    if enumerate {
                        let m = masks[r];
                        ((0..n_units).map(|u| m >> u & 1 == 1).collect(), None)
                    } else {
                        let first = permutation_first_group(opts.seed, r as u32, n_units, n1);
                        let mult = opts.bsample.then(|| pairs_multiplicities(opts.seed, r as u32, n_units));
                        (first, mult)
                    }
                })
                .collect();
            betas_of(&pairs)?
        };
        for pair in bs.chunks(2) {
            diffs.push(match (&pair[0], &pair[1]) {
                (Some(a), Some(b)) => Some((0..k).map(|c| a[c] - b[c]).collect()),
                _ => None,
            });
        }
        r0 = r1;
        progress.set(r0 - range.start);
    }
    progress.finish();
    shared.report_times();
    let observed = BdiffObserved {
        names: design.x_names.clone(),
        estimate_group1: b1,
        estimate_group0: b0,
        reps_requested: opts.reps,
        total,
        enumerated: enumerate,
        units: n_units,
        units_group1: n1,
        nobs_group1: nobs1,
        nobs_group0: nobs0,
        nobs_raw: design.nobs_raw,
        dropped: design.dropped.clone(),
        seed: opts.seed,
        bsample: opts.bsample,
    };
    Ok(BdiffDraws {
        observed,
        first: range.start,
        differences: diffs,
    })
}

/// The test's result from the observed fit and every replicate of the run, in replicate order
/// (a single run and `fegpu merge` both end here). p-values: see the module doc; differences
/// within 1e-12 (relative) of the observed one count as at least as extreme.
pub fn assemble(draws: &BdiffDraws) -> Result<BdiffResult> {
    let o = &draws.observed;
    let k = o.names.len();
    let mut diffs: Vec<Vec<f64>> = vec![Vec::with_capacity(draws.differences.len()); k];
    for d in draws.differences.iter().flatten() {
        for c in 0..k {
            diffs[c].push(d[c]);
        }
    }
    let used = draws.differences.iter().filter(|d| d.is_some()).count();
    if used == 0 {
        return Err(Error::Estimation(
            "every replicate failed (a regressor is collinear within a permuted group)".into(),
        ));
    }
    let coefficients = (0..k)
        .map(|c| {
            let d = o.estimate_group1[c] - o.estimate_group0[c];
            let tol = 1e-12 * d.abs().max(1e-300);
            let one = if d >= 0.0 {
                diffs[c].iter().filter(|&&x| x >= d - tol).count()
            } else {
                diffs[c].iter().filter(|&&x| x <= d + tol).count()
            };
            let two = diffs[c].iter().filter(|&&x| x.abs() >= d.abs() - tol).count();
            BdiffRow {
                name: o.names[c].clone(),
                estimate_group1: o.estimate_group1[c],
                estimate_group0: o.estimate_group0[c],
                difference: d,
                p: one as f64 / used as f64,
                p_two_sided: two as f64 / used as f64,
            }
        })
        .collect();
    Ok(BdiffResult {
        coefficients,
        reps_requested: o.reps_requested,
        reps_used: used,
        reps_failed: draws.differences.len() - used,
        enumerated: o.enumerated,
        units: o.units,
        units_group1: o.units_group1,
        nobs_group1: o.nobs_group1,
        nobs_group0: o.nobs_group0,
        nobs_raw: o.nobs_raw,
        dropped: o.dropped.clone(),
        seed: o.seed,
        bsample: o.bsample,
        differences: diffs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    /// The pruning as first written: whole passes until one changes nothing.
    fn prune_by_passes(fes: &[&FixedEffect], w: &mut [f64]) {
        let mut counts: Vec<Vec<u32>> = fes.iter().map(|f| vec![0; f.levels]).collect();
        for (k, f) in fes.iter().enumerate() {
            for (i, &g) in f.ids.iter().enumerate() {
                counts[k][g as usize] += (w[i] > 0.0) as u32;
            }
        }
        let mut changed = true;
        while changed {
            changed = false;
            for i in 0..w.len() {
                if w[i] > 0.0 && fes.iter().enumerate().any(|(k, f)| counts[k][f.ids[i] as usize] == 1) {
                    w[i] = 0.0;
                    changed = true;
                    for (k, f) in fes.iter().enumerate() {
                        counts[k][f.ids[i] as usize] -= 1;
                    }
                }
            }
        }
    }

    /// Sparse random effects (many singletons and chains of them): cells nested in firms, and
    /// a year-like effect; base weights with zeros.
    fn sparse_design(s: &mut Stream, n: usize) -> (Vec<FixedEffect>, Vec<f64>) {
        let cell: Vec<u32> = (0..n).map(|_| s.below(n as u32 / 2)).collect();
        let firm: Vec<u32> = cell.iter().map(|&c| c / 3).collect();
        let year: Vec<u32> = (0..n).map(|_| s.below(40)).collect();
        let fe = |name: &str, ids: Vec<u32>| FixedEffect::from_codes(name, &ids);
        let base: Vec<f64> = (0..n).map(|_| if s.below(10) == 0 { 0.0 } else { 1.0 }).collect();
        (vec![fe("firm", firm), fe("year", year), fe("cell", cell)], base)
    }

    #[test]
    fn singleton_pruning_equals_repeated_passes() {
        let mut s = Stream::new(5, 2);
        for _ in 0..30 {
            let (fes, base) = sparse_design(&mut s, 400);
            let refs: Vec<&FixedEffect> = fes.iter().collect();
            let mut w: Vec<f64> = base.iter().map(|&b| if s.below(3) == 0 { 0.0 } else { b }).collect();
            let mut reference = w.clone();
            drop_weighted_singletons(&refs, &mut w);
            prune_by_passes(&refs, &mut reference);
            assert_eq!(w, reference);
        }
    }

    #[test]
    fn pair_pruning_equals_pruning_each_group() {
        let mut s = Stream::new(6, 2);
        for rep in 0..40 {
            let (fes, base) = sparse_design(&mut s, 500);
            let all: Vec<&FixedEffect> = fes.iter().collect();
            // firm is nested in cell: the pruner may leave it out
            let projected = if rep % 2 == 0 {
                vec![&fes[1], &fes[2]]
            } else {
                all.clone()
            };
            let pruner = PairPruner::new(projected, &base);
            let share = [2, 5, 50][rep % 3];
            let mut scratch = PruneScratch::default();
            for _ in 0..3 {
                let first: Vec<bool> = (0..500).map(|_| s.below(share) == 0).collect();
                let mut w = [Vec::new(), Vec::new()];
                let ids: Vec<u32> = (0..500).collect();
                group_weights(&ids, &base, &|u| first[u], None, &mut w);
                let mut reference = w.clone();
                pruner.prune(&mut w, &mut scratch);
                for r in reference.iter_mut() {
                    drop_weighted_singletons(&all, r);
                }
                assert_eq!(w, reference, "replicate {rep}, one in {share} rows in group 1");
            }
        }
    }

    #[test]
    fn gosper_enumerates_every_subset_once() {
        let s = subsets(6, 3);
        assert_eq!(s.len(), 20);
        assert!(s.iter().all(|m| m.count_ones() == 3));
        let mut u = s.clone();
        u.dedup();
        assert_eq!(u.len(), 20);
        assert_eq!(binomial(6, 3), 20);
        assert_eq!(binomial(70, 35), u128::MAX);
    }
}

/// What stops group `label` (its rows: weight `w > 0`) from being estimated on its own, in
/// words — no rows left once its singletons are dropped, or regressors its own fit drops
/// (absorbed by the fixed effects within the group, or collinear) — or `None`.
fn group_problem(
    design: &Design,
    w: &[f64],
    label: &str,
    opts: &DemeanOptions,
    demeaner: &dyn Demeaner,
) -> Option<String> {
    let rows: Vec<usize> = (0..w.len()).filter(|&i| w[i] > 0.0).collect();
    if rows.is_empty() {
        return Some(format!(
            "group {label} has no observations once its singletons are dropped (each of its rows is alone in a level of a fixed effect within the group)"
        ));
    }
    let take = |v: &[f64]| rows.iter().map(|&i| v[i]).collect::<Vec<f64>>();
    let codes = |f: &FixedEffect| rows.iter().map(|&i| f.ids[i]).collect::<Vec<u32>>();
    let group = Design {
        y: take(&design.y),
        x: design.x.iter().map(|c| take(c)).collect(),
        weights: Some(take(w)),
        fes: design
            .fes
            .iter()
            .map(|f| FixedEffect::from_codes(&f.name, &codes(f)))
            .collect(),
        clusters: vec![],
        extra: vec![],
        nobs_raw: rows.len(),
        ..design.clone()
    };
    super::collinear_problem(&group, opts, demeaner).map(|why| format!("in group {label}, {why}"))
}
