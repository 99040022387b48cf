//! Pairs (cluster) bootstrap: each replicate draws G clusters with replacement (Philox
//! multiply-shift draws; a pure function of seed, replicate and draw), weights every
//! observation by its cluster's multiplicity, drops singletons as reghdfe would on the
//! resampled data, and refits through the batched demeaning engine. Reported: bootstrap
//! standard errors (standard deviation of the replicate estimates) and percentile intervals.
//! [`pairs_draws`] computes the replicates of one shard ([`super::shard`]) or all of them;
//! [`assemble`] turns all replicates into the result, for a single run and `fegpu merge` alike.

use serde::{Deserialize, Serialize};

use super::permutation::drop_weighted_singletons;
use super::replicates::pairs_multiplicities;
use super::shard::{range_of, Shard};
use crate::data::prepare::Design;
use crate::demean::{DemeanOptions, Demeaner};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct PairsOptions {
    pub reps: usize,
    pub seed: u64,
    pub level: f64,
    pub demean: DemeanOptions,
    pub memory_budget: u64,
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PairsRow {
    pub name: String,
    pub estimate: f64,
    pub std_error: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PairsResult {
    pub coefficients: Vec<PairsRow>,
    pub reps_requested: usize,
    pub reps_used: usize,
    pub reps_failed: usize,
    pub clusters: usize,
    pub level: f64,
    pub seed: u64,
    #[serde(skip)]
    pub draws: Vec<Vec<f64>>,
}

/// What the full-sample fit contributes to a [`PairsResult`]; with the replicates' estimates,
/// everything [`assemble`] needs (a shard file stores it, `crate::resampling`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairsObserved {
    pub names: Vec<String>,
    pub estimate: Vec<f64>,
    pub reps: usize,
    pub clusters: usize,
    pub level: f64,
    pub seed: u64,
}

/// The full-sample fit and the replicates `first..first + estimates.len()` of a run: per
/// replicate every coefficient, or `None` where the resampled model was collinear.
#[derive(Debug, Clone, PartialEq)]
pub struct PairsDraws {
    pub observed: PairsObserved,
    pub first: usize,
    pub estimates: Vec<Option<Vec<f64>>>,
}

/// Empirical quantile with linear interpolation (type 7).
fn quantile(sorted: &[f64], p: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * p;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Run the pairs cluster bootstrap; `design.clusters[0]` are the resampling units.
pub fn pairs_bootstrap(design: &Design, opts: &PairsOptions, demeaner: &dyn Demeaner) -> Result<PairsResult> {
    assemble(&pairs_draws(design, opts, None, demeaner)?)
}

/// The clusters the pairs bootstrap draws: the design's first cluster variable.
pub(crate) fn resampled_clusters(design: &Design) -> Result<&crate::data::prepare::ClusterVar> {
    design
        .clusters
        .first()
        .ok_or_else(|| Error::Usage("the pairs bootstrap needs a cluster variable (--cluster VAR)".into()))
}

/// The full-sample fit and the replicates of `shard` (all of them with `None`); [`assemble`]
/// turns them into the result.
pub fn pairs_draws(
    design: &Design,
    opts: &PairsOptions,
    shard: Option<Shard>,
    demeaner: &dyn Demeaner,
) -> Result<PairsDraws> {
    let cl = resampled_clusters(design)?;
    let n = design.nobs();
    let g = cl.levels;
    let k = design.x.len();
    let mut shared = super::Replicates::new(design, &opts.demean, demeaner)?;
    // the full-sample sums of the block product (level-sum path)
    shared.prepare_complement();
    let shared = shared;
    let (all_fes, base_w) = (&shared.all_fes, &shared.base_w);
    let fit = |ws: &[Vec<f64>]| shared.betas(ws, demeaner);
    let estimate = fit(std::slice::from_ref(base_w))?.pop().flatten().ok_or_else(|| {
        Error::Estimation(format!(
            "the pairs bootstrap needs every regressor: {}",
            super::collinear_reason(design, &opts.demean, demeaner)
        ))
    })?;
    let unit_stats = super::permutation::UnitStats::build(design, &cl.ids, g, demeaner, &opts.demean)?;
    let device_draws = shared.on_device() && unit_stats.is_none();
    let per_rep = if device_draws {
        64
    } else if demeaner.batches_lanes() {
        n as u64 * 8
    } else {
        (k as u64 + 1) * n as u64 * 8
    };
    let chunk = ((opts.memory_budget / per_rep.max(1)) as usize).clamp(1, 4096);
    let range = range_of(shard, opts.reps);
    let mut estimates: Vec<Option<Vec<f64>>> = Vec::with_capacity(range.len());
    let progress = crate::progress::Progress::replicates("boot", range.len(), opts.progress);
    let mut r0 = range.start;
    while r0 < range.end {
        let r1 = (r0 + chunk).min(range.end);
        if device_draws {
            let d = crate::demean::resident::Draws::Pairs {
                seed: opts.seed,
                clusters: &cl.ids,
                n_clusters: g,
                replicates: r0 as u32..r1 as u32,
            };
            estimates.extend(shared.drawn_betas(&d, demeaner)?);
        } else {
            let mults: Vec<Vec<u32>> = (r0..r1).map(|r| pairs_multiplicities(opts.seed, r as u32, g)).collect();
            // Sufficient statistics per cluster when the effects allow (see UnitStats); replicates
            // where a few-level effect has a singleton go through the general engine.
            let mut results: Vec<Option<Option<Vec<f64>>>> = vec![None; mults.len()];
            if let Some(us) = &unit_stats {
                for (r, m) in mults.iter().enumerate() {
                    let mf: Vec<f64> = m.iter().map(|&v| v as f64).collect();
                    if let Ok(b) = us.beta(&mf) {
                        results[r] = Some(b);
                    }
                }
            }
            let todo: Vec<usize> = (0..mults.len()).filter(|&r| results[r].is_none()).collect();
            let ws: Vec<Vec<f64>> = todo
                .iter()
                .map(|&r| {
                    let m = &mults[r];
                    let mut w: Vec<f64> = (0..n).map(|i| base_w[i] * m[cl.ids[i] as usize] as f64).collect();
                    drop_weighted_singletons(all_fes, &mut w);
                    w
                })
                .collect();
            if !ws.is_empty() {
                for (j, b) in fit(&ws)?.into_iter().enumerate() {
                    results[todo[j]] = Some(b);
                }
            }
            estimates.extend(results.into_iter().map(|b| b.flatten()));
        }
        r0 = r1;
        progress.set(r0 - range.start);
    }
    progress.finish();
    shared.report_times();
    let observed = PairsObserved {
        names: design.x_names.clone(),
        estimate,
        reps: opts.reps,
        clusters: g,
        level: opts.level,
        seed: opts.seed,
    };
    Ok(PairsDraws {
        observed,
        first: range.start,
        estimates,
    })
}

/// Standard errors and percentile intervals from the full-sample fit and every replicate of
/// the run, in replicate order (a single run and `fegpu merge` both end here).
pub fn assemble(draws: &PairsDraws) -> Result<PairsResult> {
    let o = &draws.observed;
    let k = o.names.len();
    let mut by_coef: Vec<Vec<f64>> = vec![Vec::with_capacity(draws.estimates.len()); k];
    for b in draws.estimates.iter().flatten() {
        b.iter().enumerate().for_each(|(c, v)| by_coef[c].push(*v));
    }
    let used = draws.estimates.iter().filter(|b| b.is_some()).count();
    if used < 2 {
        return Err(Error::Estimation(
            "fewer than two bootstrap replicates could be estimated".into(),
        ));
    }
    let alpha = 1.0 - o.level;
    let coefficients = (0..k)
        .map(|c| {
            let d = &by_coef[c];
            let mean = d.iter().sum::<f64>() / d.len() as f64;
            let sd = (d.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (d.len() - 1) as f64).sqrt();
            let mut s = d.clone();
            s.sort_by(f64::total_cmp);
            PairsRow {
                name: o.names[c].clone(),
                estimate: o.estimate[c],
                std_error: sd,
                ci_low: quantile(&s, alpha / 2.0),
                ci_high: quantile(&s, 1.0 - alpha / 2.0),
            }
        })
        .collect();
    Ok(PairsResult {
        coefficients,
        reps_requested: o.reps,
        reps_used: used,
        reps_failed: draws.estimates.len() - used,
        clusters: o.clusters,
        level: o.level,
        seed: o.seed,
        draws: by_coef,
    })
}
