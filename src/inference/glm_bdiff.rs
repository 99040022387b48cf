//! The permutation test of group differences (`bdiff`) for a Poisson or logit model: the
//! linear engine's assignments (the same seed gives the same permuted groups and, with
//! `--bsample`, the same multiplicities; small designs are enumerated the same way), each
//! group of each replicate refitted by IRLS after the separation checks
//! ([`crate::estimate::glm::refit`]). Replicates run in parallel; one whose group cannot be
//! estimated counts as failed, as in the linear engine.

use rayon::prelude::*;

use super::permutation::{BdiffDraws, BdiffObserved, BdiffOptions, Units};
use super::replicates::{pairs_multiplicities, permutation_first_group};
use super::shard::{range_of, Shard};
use crate::data::prepare::Design;
use crate::demean::Demeaner;
use crate::error::{Error, Result};
use crate::estimate::glm::refit;
use crate::estimate::FitOptions;

/// The observed fit and the replicates of `shard` (all with `None`).
pub fn glm_bdiff_draws(
    design: &Design,
    group: &[f64],
    units: Option<(&[u32], usize)>,
    opts: &BdiffOptions,
    fit: &FitOptions,
    shard: Option<Shard>,
    demeaner: &dyn Demeaner,
) -> Result<BdiffDraws> {
    let u = Units::of(group, units, design.nobs())?;
    let fit = FitOptions {
        demean: opts.demean,
        ..fit.clone()
    };
    let masks = u.enumeration(opts.reps, opts.bsample);
    // the group-g rows of an assignment (group-1 membership per unit), weighted by multiplicity
    let group_fit = |first: &[bool], mult: Option<&[u32]>, g1: bool| -> Result<Option<Vec<f64>>> {
        let w: Vec<f64> = (0..design.nobs())
            .map(|i| {
                let unit = u.ids[i] as usize;
                let m = if first[unit] == g1 {
                    mult.map_or(1.0, |m| m[unit] as f64)
                } else {
                    0.0
                };
                design.weights.as_ref().map_or(1.0, |w| w[i]) * m
            })
            .collect();
        let keep: Vec<bool> = w.iter().map(|&v| v > 0.0).collect();
        let mut d = design.clone();
        d.weights = Some(w);
        d.retain(&keep);
        refit(d, &fit, demeaner)
    };
    let observed: Vec<bool> = u.group.iter().map(|&g| g == 1.0).collect();
    let (b1, b0) = match (group_fit(&observed, None, true)?, group_fit(&observed, None, false)?) {
        (Some(a), Some(b)) => (a, b),
        (a, _) => {
            return Err(Error::Estimation(format!(
                "group {} cannot be estimated on its own (a regressor is removed or IRLS does not converge: fit it with `fegpu fit --family {} --subset` to see why); the groups' coefficients cannot be compared",
                if a.is_none() { 1 } else { 0 },
                fit.family.name()
            )))
        }
    };
    let count = |g1: bool| {
        (0..design.nobs())
            .filter(|&i| observed[u.ids[i] as usize] == g1)
            .count()
    };
    let total = masks.as_ref().map_or(opts.reps, |m| m.len());
    let range = range_of(shard, total);
    let progress = crate::progress::Progress::replicates("bdiff", range.len(), opts.progress);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let differences: Vec<Option<Vec<f64>>> = range
        .clone()
        .into_par_iter()
        .map(|r| {
            let first: Vec<bool> = match &masks {
                Some(m) => (0..u.count).map(|k| m[r] >> k & 1 == 1).collect(),
                None => permutation_first_group(opts.seed, r as u32, u.count, u.first),
            };
            let mult = opts.bsample.then(|| pairs_multiplicities(opts.seed, r as u32, u.count));
            let a = group_fit(&first, mult.as_deref(), true)?;
            let b = group_fit(&first, mult.as_deref(), false)?;
            progress.set(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
            Ok(match (a, b) {
                (Some(a), Some(b)) => Some(a.iter().zip(&b).map(|(x, y)| x - y).collect()),
                _ => None,
            })
        })
        .collect::<Result<_>>()?;
    progress.finish();
    Ok(BdiffDraws {
        observed: BdiffObserved {
            names: design.x_names.clone(),
            estimate_group1: b1,
            estimate_group0: b0,
            reps_requested: opts.reps,
            total,
            enumerated: masks.is_some(),
            units: u.count,
            units_group1: u.first,
            nobs_group1: count(true),
            nobs_group0: count(false),
            nobs_raw: design.nobs_raw,
            dropped: design.dropped.clone(),
            seed: opts.seed,
            bsample: opts.bsample,
        },
        first: range.start,
        differences,
    })
}
