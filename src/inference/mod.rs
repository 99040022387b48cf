//! Resampling inference. A replicate is a set of draws that is a pure function of (seed,
//! replicate, unit) through Philox ([`replicates`]), so results never depend on thread count,
//! batch size or device. [`wild`]: the restricted wild cluster bootstrap (WCR) of one
//! coefficient with every fixed effect absorbed, by the fast algorithm of Roodman, MacKinnon,
//! Nielsen & Webb (2019), whose cost per replicate does not grow with N.

pub mod bootstrap;

pub mod complement;
pub mod fwl;
pub mod glm_bdiff;
pub mod glm_pairs;
pub mod gram_product;
pub mod permutation;
pub mod prune;
pub mod replicates;
pub mod shard;
pub mod wild;

use rayon::prelude::*;

use crate::data::prepare::Design;
use crate::demean::precond::Preconditioner;
use crate::demean::{Absorb, DemeanOptions, Demeaner};
use crate::error::Result;
use crate::fe::dof::effects_to_project;
use crate::fe::index::compact;
use crate::fe::FixedEffect;
use crate::linalg::{cholesky_drop, cholesky_inverse, Mat};

/// Weighted least squares of `x` on `y` over rows with positive weight: β, or `None` when
/// singular (a regressor without variation in this replicate).
pub fn wls(y: &[f64], x: &[Vec<f64>], w: &[f64]) -> Option<Vec<f64>> {
    let k = x.len();
    let mut a = Mat::zeros(k);
    let mut b = vec![0.0; k];
    // column by column: contiguous, SIMD-friendly dot products (zero weights add 0)
    for p in 0..k {
        let wx: Vec<f64> = x[p].iter().zip(w).map(|(v, wi)| v * wi).collect();
        b[p] = crate::linalg::dot(&wx, y);
        for q in 0..=p {
            let v = crate::linalg::dot(&wx, &x[q]);
            a.a[p * k + q] = v;
            a.a[q * k + p] = v;
        }
    }
    let c = cholesky_drop(&a, 1e-10);
    c.dropped.is_empty().then(|| cholesky_inverse(&c.l).mul_vec(&b))
}

/// Per-thread buffers of [`Replicates::level_beta`], reused across replicates.
pub type LevelScratch = (fwl::Scratch, complement::RowBuffers);

/// What every replicate of one model shares: the effects to project (nested ones left out,
/// see [`crate::fe::dof::effects_to_project`]), all effects (for singleton pruning), the base
/// weights, and the columns (y first) already demeaned on the full sample.
///
/// Warm start: a replicate demeans those full-sample residuals, not the raw columns. The two
/// differ by D·α̂, which lies in the span of the replicate's fixed effects, so the result is the
/// same, but the sweeps start next to the answer. The convergence test is relative to a
/// column's spread, which demeaning shrinks; the tolerance is scaled by the smallest ratio of
/// spreads (raw / demeaned), so every column gets at least the accuracy the raw columns would.
pub struct Replicates<'a> {
    pub fes: Vec<&'a FixedEffect>,
    pub all_fes: Vec<&'a FixedEffect>,
    pub base_w: Vec<f64>,
    columns: Vec<Vec<f64>>,
    opts: DemeanOptions,
    /// For structures CG solves on the CPU: the factored preconditioner of the full sample,
    /// built once and used by every replicate (a preconditioner stays valid, if less sharp,
    /// under other weights).
    shared: Option<Preconditioner>,
    /// On a GPU, for the structures it solves exactly: the columns and levels kept on the
    /// device, and replicate weights drawn there ([`crate::demean::resident`]).
    device: Option<crate::demean::resident::DeviceReplicates>,
    /// On the CPU, for one large effect beside few-level ones: the level runs, and the
    /// full-sample sums a replicate's Gram by complement starts from ([`complement`]; formed
    /// on request, [`Replicates::prepare_complement`]).
    level: Option<(fwl::LevelRuns<'a>, Option<complement::LevelTotals>)>,
}

impl<'a> Replicates<'a> {
    pub fn new(design: &'a Design, opts: &DemeanOptions, demeaner: &dyn Demeaner) -> Result<Replicates<'a>> {
        let fes: Vec<&FixedEffect> = effects_to_project(&design.fes)
            .into_iter()
            .map(|k| &design.fes[k])
            .collect();
        let all_fes: Vec<&FixedEffect> = design.fes.iter().collect();
        let w: Vec<f64> = design.weights.clone().unwrap_or_else(|| vec![1.0; design.nobs()]);
        let mut columns = vec![design.y.clone()];
        columns.extend(design.x.iter().cloned());
        if fes.is_empty() {
            return Ok(Replicates {
                fes,
                all_fes,
                base_w: w,
                columns,
                opts: *opts,
                shared: None,
                device: None,
                level: None,
            });
        }
        let dm = demeaner
            .demean(&Absorb::new(fes.clone(), Some(&w)), columns.clone(), opts)?
            .columns;
        let spread = |c: &[f64]| {
            let sw: f64 = w.iter().sum();
            let m = c.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() / sw;
            (c.iter().zip(&w).map(|(a, b)| b * (a - m) * (a - m)).sum::<f64>() / sw).sqrt()
        };
        let ratio = columns
            .iter()
            .zip(&dm)
            .map(|(raw, d)| {
                let (r, s) = (spread(raw), spread(d));
                if s > 0.0 && r.is_finite() {
                    (r / s).max(1.0)
                } else {
                    1.0
                }
            })
            .fold(f64::INFINITY, f64::min);
        let tol = opts.tol * if ratio.is_finite() { ratio } else { 1.0 };
        let shared = shared_preconditioner(&fes, &w, opts, demeaner)?;
        let device = match demeaner.gpu() {
            Some(gpu) if opts.solver == crate::demean::Solver::Auto || fes.len() == 1 => {
                let cols: Vec<&[f64]> = dm.iter().map(|c| c.as_slice()).collect();
                crate::demean::resident::DeviceReplicates::new(gpu, &fes, &cols, &w)?
            }
            _ => None,
        };
        let level = device
            .is_none()
            .then(|| level_runs(&fes, opts, demeaner).map(|runs| (runs, None)))
            .flatten();
        Ok(Replicates {
            fes,
            all_fes,
            base_w: w,
            columns: dm,
            opts: DemeanOptions { tol, ..*opts },
            shared,
            device,
            level,
        })
    }

    /// Whether replicate weights are drawn on the device ([`Replicates::drawn_betas`]).
    pub fn on_device(&self) -> bool {
        self.device.is_some()
    }

    /// β of every weight vector `draws` makes, drawn and solved on the device (only when
    /// [`Replicates::on_device`]).
    pub fn drawn_betas(
        &self,
        draws: &crate::demean::resident::Draws,
        demeaner: &dyn Demeaner,
    ) -> Result<Vec<Option<Vec<f64>>>> {
        let (Some(dev), Some(gpu)) = (&self.device, demeaner.gpu()) else {
            return Err(crate::Error::Usage(
                "replicate draws on the device need the GPU engine".into(),
            ));
        };
        let grams = dev.grams(gpu, draws)?;
        Ok(grams.par_iter().map(|g| wls_from_gram(g, self.columns.len())).collect())
    }

    /// With `FEGPU_TIMING`, print the device's per-phase times (nothing off the device).
    pub fn report_times(&self) {
        if let (Some(d), Some(_)) = (&self.device, std::env::var_os("FEGPU_TIMING")) {
            eprintln!("{}", d.times.lock().unwrap().line());
            eprintln!("timing: device kernels: {}", crate::demean::resident::kernel_times());
        }
    }

    /// Form the full-sample sums of the complement paths, for weight vectors that keep or
    /// drop rows at their base weight (a permutation test's groups). They hold every row's
    /// columns and dummies once more (N × (columns + dummies) values), so only callers whose
    /// replicates drop few rows ask for them. Nothing off the CPU's level-sum path.
    pub fn prepare_complement(&mut self) {
        if let Some((runs, totals @ None)) = self.level.as_mut() {
            *totals = Some(complement::LevelTotals::new(runs, &self.columns, &self.base_w));
        }
    }

    /// Whether replicates run on the CPU's level-sum path ([`Replicates::level_beta`]).
    pub fn on_level_sums(&self) -> bool {
        self.level.is_some()
    }

    /// β of one weight vector on the CPU's level-sum path (direct or by complement, whichever
    /// is cheaper for `w`); `None` when that path does not serve this design.
    pub fn level_beta(&self, w: &[f64], scratch: &mut LevelScratch) -> Option<Option<Vec<f64>>> {
        let (runs, totals) = self.level.as_ref()?;
        let g = runs.gram_auto(totals.as_ref(), scratch, &self.columns, w);
        Some(wls_from_gram(&g, self.columns.len()))
    }

    /// β of two disjoint groups (a permutation replicate's, `w[0]` and `w[1]`) on the CPU's
    /// level-sum path: both Grams from one pass over the rows the larger group drops when the
    /// weights allow ([`complement::LevelTotals::suits_pair`]; `w[0]` is tried as the smaller
    /// group first), else each on its own. `None` when that path does not serve this design.
    pub fn level_pair_betas(&self, w: &[Vec<f64>; 2], scratch: &mut LevelScratch) -> Option<[Option<Vec<f64>>; 2]> {
        let (runs, Some(totals)) = self.level.as_ref()? else {
            return Some([self.level_beta(&w[0], scratch)?, self.level_beta(&w[1], scratch)?]);
        };
        let c = self.columns.len();
        for (s, l) in [(0, 1), (1, 0)] {
            if let Some([gs, gl]) = runs.gram_pair(totals, &mut scratch.1, &w[s], &w[l]) {
                let (bs, bl) = (wls_from_gram(&gs, c), wls_from_gram(&gl, c));
                return Some(if s == 0 { [bs, bl] } else { [bl, bs] });
            }
        }
        Some([self.level_beta(&w[0], scratch)?, self.level_beta(&w[1], scratch)?])
    }

    /// The block product of the CPU's level-sum path ([`gram_product`]), once the full-sample
    /// sums are formed ([`Replicates::prepare_complement`]).
    pub fn product(&self) -> Option<gram_product::GramProduct<'_>> {
        match self.level.as_ref()? {
            (runs, Some(totals)) => Some(gram_product::GramProduct::new(runs, totals)),
            _ => None,
        }
    }

    /// β of every weight vector (see [`replicate_betas`]).
    pub fn betas(&self, weights: &[Vec<f64>], demeaner: &dyn Demeaner) -> Result<Vec<Option<Vec<f64>>>> {
        if self.device.is_some() {
            return self.drawn_betas(&crate::demean::resident::Draws::Given(weights), demeaner);
        }
        let block = gram_product::forced_block().unwrap_or(weights.len() >= BLOCK_FROM);
        if let Some(product) = block.then(|| self.product()).flatten() {
            let refs: Vec<&[f64]> = weights.iter().map(|w| w.as_slice()).collect();
            return Ok(product.betas(&refs, BLOCK_MEMORY));
        }
        if self.level.is_some() {
            return Ok(weights
                .par_iter()
                .map_init(LevelScratch::default, |s, w| self.level_beta(w, s).flatten())
                .collect());
        }
        if let Some(m) = &self.shared {
            return Ok(shared_cg_betas(&self.fes, &self.columns, weights, &self.opts, m)?);
        }
        replicate_betas(&self.fes, &self.columns, weights, &self.opts, demeaner)
    }
}

/// Weight vectors from which [`Replicates::betas`] runs the block product: fewer fill a block
/// too little to pay for its pass over every row.
const BLOCK_FROM: usize = 8;

/// Bytes of weights a block of the product holds (by replicate and by row).
const BLOCK_MEMORY: u64 = 256 << 20;

/// Whether replicates of `design` run on the device engine ([`crate::demean::resident`]): a structure it
/// solves exactly (one effect to project, or one large beside few-level ones, under
/// `--solver auto`) and no per-unit shortcut ([`permutation::UnitStats`], for `units`) that
/// the host runs instead.
pub fn resident_on_device(design: &Design, opts: &DemeanOptions, units: Option<&[u32]>) -> bool {
    let fes: Vec<&FixedEffect> = effects_to_project(&design.fes)
        .into_iter()
        .map(|k| &design.fes[k])
        .collect();
    let solved = match fes.len() {
        0 => false,
        1 => true,
        _ => opts.solver == crate::demean::Solver::Auto && crate::demean::strategy::few_level_split(&fes).is_some(),
    };
    solved && !units.is_some_and(|u| permutation::UnitStats::applies(design, u))
}

/// The level runs of the CPU's level-sum path (the structure [`replicate_betas`] serves from
/// [`fwl::LevelRuns`]), built once for every replicate.
fn level_runs<'a>(
    fes: &[&'a FixedEffect],
    opts: &DemeanOptions,
    demeaner: &dyn Demeaner,
) -> Option<fwl::LevelRuns<'a>> {
    if demeaner.batches_lanes() || opts.solver != crate::demean::Solver::Auto {
        return None;
    }
    let (large, small) = crate::demean::strategy::few_level_split(fes)?;
    fwl::LevelRuns::new(fes, large, &small)
}

/// The preconditioner replicates share: built on the CPU for structures that need CG (two or
/// more effects to project, not one large beside few-level ones), from the base weights.
fn shared_preconditioner(
    fes: &[&FixedEffect],
    w: &[f64],
    opts: &DemeanOptions,
    demeaner: &dyn Demeaner,
) -> Result<Option<Preconditioner>> {
    use crate::demean::strategy::{few_level_split, ladder};
    use crate::demean::Solver;
    let cg = matches!(opts.solver, Solver::Auto | Solver::CgBlock2 | Solver::CgSchwarz);
    if demeaner.batches_lanes()
        || fes.len() < 2
        || !cg
        || (opts.solver == Solver::Auto && few_level_split(fes).is_some())
    {
        return Ok(None);
    }
    let kind = *ladder(opts.solver, fes.len()).last().expect("a rung");
    Ok(Some(Preconditioner::factored(kind, fes, Some(w), &[Some(w)])?))
}

/// β of every weight vector by CG over its rows with weight (the level numbering kept, so the
/// shared preconditioner `m` applies unchanged), replicates in parallel.
fn shared_cg_betas(
    fes: &[&FixedEffect],
    columns: &[Vec<f64>],
    weights: &[Vec<f64>],
    opts: &DemeanOptions,
    m: &Preconditioner,
) -> Result<Vec<Option<Vec<f64>>>> {
    use crate::demean::cpu::CpuOps;
    use crate::demean::krylov::{pcg, FeOps};
    weights
        .par_iter()
        .map(|w| {
            // the rows with weight only (a permutation group, the clusters a bootstrap drew):
            // the levels keep their numbers, so the shared preconditioner applies unchanged,
            // and each pass over the data reads only those rows
            // (`FEGPU_ENGINE=single`: every row, as before issue 26, for the benchmarks)
            let all_rows = gram_product::forced_block() == Some(false);
            let rows: Vec<usize> = (0..w.len()).filter(|&i| all_rows || w[i] > 0.0).collect();
            if rows.is_empty() {
                return Ok(None);
            }
            let sub_fes: Vec<FixedEffect> = fes
                .iter()
                .map(|f| FixedEffect {
                    name: f.name.clone(),
                    ids: rows.iter().map(|&i| f.ids[i]).collect(),
                    levels: f.levels,
                })
                .collect();
            let sub_refs: Vec<&FixedEffect> = sub_fes.iter().collect();
            let w = take(w, &rows);
            let mut cols: Vec<Vec<f64>> = columns.iter().map(|c| take(c, &rows)).collect();
            let mut ops = CpuOps::new(&sub_refs, Some(&w), &mut cols);
            let mut alpha = ops.zeros()?;
            let o = pcg(&mut ops, m, &mut alpha, opts.tol, opts.max_iter, None)?;
            if o.converged.iter().any(|&c| !c) {
                return Err(crate::Error::Estimation(format!(
                    "a replicate's demeaning did not converge in {} iterations (tolerance {:e}); no resampling result is reported",
                    opts.max_iter, opts.tol
                )));
            }
            ops.finish(&alpha)?;
            drop(ops);
            Ok(wls(&cols[0], &cols[1..], &w))
        })
        .collect()
}

/// The entries of `v` at `rows`.
fn take(v: &[f64], rows: &[usize]) -> Vec<f64> {
    rows.iter().map(|&i| v[i]).collect()
}

/// [`wls`] from the weighted cross products of (y, x…) (lower triangle, see
/// [`crate::demean::pair_of`]): β, or `None` when singular.
pub fn wls_from_gram(g: &[f64], c: usize) -> Option<Vec<f64>> {
    let k = c - 1;
    let at = |p: usize, q: usize| {
        if p >= q {
            g[p * (p + 1) / 2 + q]
        } else {
            g[q * (q + 1) / 2 + p]
        }
    };
    let mut a = Mat::zeros(k);
    let mut b = vec![0.0; k];
    for p in 0..k {
        b[p] = at(p + 1, 0);
        for q in 0..k {
            a.a[p * k + q] = at(p + 1, q + 1);
        }
    }
    let ch = cholesky_drop(&a, 1e-10);
    ch.dropped.is_empty().then(|| cholesky_inverse(&ch.l).mul_vec(&b))
}

/// The replicate engine: for each weight vector, demean `columns` (y first, then the
/// regressors) on the fixed effects and return the weighted least-squares coefficients.
/// Backends that batch lanes (GPU) get all weight vectors at once over the full rows. On the
/// CPU, one large effect beside few-level ones needs no demeaning at all: each replicate's
/// cross products come from level sums ([`fwl::LevelRuns`]). Otherwise the CPU drops each
/// replicate's zero-weight rows first (a permutation group or the clusters a
/// bootstrap did not draw), which halves its work, and runs the replicates in parallel.
pub fn replicate_betas(
    fes: &[&FixedEffect],
    columns: &[Vec<f64>],
    weights: &[Vec<f64>],
    opts: &DemeanOptions,
    demeaner: &dyn Demeaner,
) -> Result<Vec<Option<Vec<f64>>>> {
    if fes.is_empty() {
        return Ok(weights.iter().map(|w| wls(&columns[0], &columns[1..], w)).collect());
    }
    if demeaner.batches_lanes() {
        let grams = demeaner.gram_batch(fes, columns, weights, opts)?;
        return Ok(grams.par_iter().map(|g| wls_from_gram(g, columns.len())).collect());
    }
    // one large effect beside few-level ones: cross products from level sums, no demeaning
    if opts.solver == crate::demean::Solver::Auto {
        if let Some(runs) = crate::demean::strategy::few_level_split(fes)
            .and_then(|(large, small)| fwl::LevelRuns::new(fes, large, &small))
        {
            return Ok(weights
                .par_iter()
                .map_init(fwl::Scratch::default, |s, w| {
                    wls_from_gram(&runs.gram(s, columns, w), columns.len())
                })
                .collect());
        }
    }
    weights
        .par_iter()
        .map(|w| {
            let rows: Vec<usize> = (0..w.len()).filter(|&i| w[i] > 0.0).collect();
            if rows.is_empty() {
                return Ok(None);
            }
            let sub_fes: Vec<FixedEffect> = fes
                .iter()
                .map(|f| {
                    let (ids, levels) = compact(&f.ids, f.levels, &rows);
                    FixedEffect {
                        name: f.name.clone(),
                        ids,
                        levels,
                    }
                })
                .collect();
            let sub_w = take(w, &rows);
            let sub_cols: Vec<Vec<f64>> = columns.iter().map(|c| take(c, &rows)).collect();
            let refs: Vec<&FixedEffect> = sub_fes.iter().collect();
            let d = demeaner.demean(&Absorb::new(refs, Some(&sub_w)), sub_cols, opts)?;
            Ok(wls(&d.columns[0], &d.columns[1..], &sub_w))
        })
        .collect()
}

/// Why the full-sample model of `design` cannot be estimated, in words: the regressors a fit
/// drops, named with the reason (fixest's rules, [`crate::estimate::fit_design`]).
pub(crate) fn collinear_reason(design: &Design, demean: &DemeanOptions, demeaner: &dyn Demeaner) -> String {
    collinear_problem(design, demean, demeaner).unwrap_or_else(|| "the model is collinear".into())
}

/// The regressors a fit of `design` drops, named with the reason, or the fit's error; `None`
/// when every regressor is estimated.
pub(crate) fn collinear_problem(design: &Design, demean: &DemeanOptions, demeaner: &dyn Demeaner) -> Option<String> {
    let opts = crate::estimate::FitOptions {
        demean: *demean,
        ..Default::default()
    };
    match crate::estimate::fit_design(design, "", &opts, demeaner) {
        Ok(r) if !r.collinear.is_empty() => {
            let named: Vec<String> = r
                .collinear
                .iter()
                .map(|d| format!("`{}` is {}", d.name, d.reason))
                .collect();
            Some(format!("{}; remove it from the formula", named.join(", ")))
        }
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    }
}
