//! The pairs (cluster) bootstrap of a Poisson or logit model: the same draws as the linear
//! one ([`super::replicates::pairs_multiplicities`], a pure function of seed, replicate and
//! draw), each replicate refitted by IRLS with its clusters' multiplicities as frequency
//! weights ([`crate::estimate::glm::refit`]: the separation checks run on every resample, so
//! a replicate in which a regressor separates is not reported as a number). Replicates run in
//! parallel; a replicate that cannot be estimated counts as failed, as in the linear engine.

use rayon::prelude::*;

use super::bootstrap::{PairsDraws, PairsObserved, PairsOptions};
use super::replicates::pairs_multiplicities;
use super::shard::{range_of, Shard};
use crate::data::prepare::Design;
use crate::demean::Demeaner;
use crate::error::{Error, Result};
use crate::estimate::glm::refit;
use crate::estimate::FitOptions;

/// The full-sample fit and the replicates of `shard` (all with `None`); `design.clusters[0]`
/// are the resampling units, `fit` the family and IRLS settings.
pub fn glm_pairs_draws(
    design: &Design,
    opts: &PairsOptions,
    fit: &FitOptions,
    shard: Option<Shard>,
    demeaner: &dyn Demeaner,
) -> Result<PairsDraws> {
    let cl = super::bootstrap::resampled_clusters(design)?;
    let fit = FitOptions {
        demean: opts.demean,
        ..fit.clone()
    };
    let estimate = refit(design.clone(), &fit, demeaner)?.ok_or_else(|| {
        Error::Estimation(format!(
            "the {} pairs bootstrap needs every regressor on the full sample: fit it with `fegpu fit --family {}` to see which was removed or why IRLS did not converge",
            fit.family.name(),
            fit.family.name()
        ))
    })?;
    let range = range_of(shard, opts.reps);
    let progress = crate::progress::Progress::replicates("boot", range.len(), opts.progress);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let estimates: Vec<Option<Vec<f64>>> = range
        .clone()
        .into_par_iter()
        .map(|r| {
            let m = pairs_multiplicities(opts.seed, r as u32, cl.levels);
            let b = refit(resampled(design, &cl.ids, &m), &fit, demeaner);
            progress.set(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
            b
        })
        .collect::<Result<_>>()?;
    progress.finish();
    Ok(PairsDraws {
        observed: PairsObserved {
            names: design.x_names.clone(),
            estimate,
            reps: opts.reps,
            clusters: cl.levels,
            level: opts.level,
            seed: opts.seed,
        },
        first: range.start,
        estimates,
    })
}

/// `design` with each row weighted by its cluster's multiplicity `m` (rows of undrawn clusters
/// leave).
fn resampled(design: &Design, clusters: &[u32], m: &[u32]) -> Design {
    let w: Vec<f64> = (0..design.nobs())
        .map(|i| design.weights.as_ref().map_or(1.0, |w| w[i]) * m[clusters[i] as usize] as f64)
        .collect();
    let keep: Vec<bool> = w.iter().map(|&v| v > 0.0).collect();
    let mut d = design.clone();
    d.weights = Some(w);
    d.retain(&keep);
    d
}
