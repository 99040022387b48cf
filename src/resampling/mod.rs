//! The resampling commands — `fegpu bdiff`, `fegpu boot` (wild and pairs) and `fegpu merge` —
//! as library functions; `main.rs` only turns arguments into a [`Request`].
//!
//! Every run takes the same two steps. [`compute`] loads the data, fits the observed model and
//! computes a range of replicate statistics ([`Draws`]: all of the run's replicates, or one
//! shard's). [`finish`] turns the observed fit and *all* replicates into the result (through the
//! engines' `assemble` functions, which hold the p-value, standard-error and interval code) and
//! renders it (`crate::report::resampling`). A shard (`--shard I/K`) stops after the first step
//! and writes its draws to a shard file ([`shard_file`]); `fegpu merge` reads the K files (each
//! checked field by field, `shard_check`), checks that they are the K parts of one run, puts
//! their replicates end to end and calls the same [`finish`]. The replicate draws are functions
//! of (seed, replicate, unit) only, so the merged output is the single run's, byte for byte —
//! except bdiff's wall-clock `seconds`, which differs between any two runs: merge reports the
//! shards' total.

mod shard_check;
pub mod shard_file;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::backend::{choose, Backend, Workload};
use crate::data::{load, prepare_taking, used_columns, PrepareOptions};
use crate::demean::DemeanOptions;
use crate::error::{Error, Result};
use crate::estimate::Ssc;
use crate::formula;
use crate::gpu::Precision;
use crate::inference::bootstrap::{self, PairsDraws, PairsOptions};
use crate::inference::permutation::{self, BdiffDraws, BdiffOptions};
use crate::inference::replicates::WildWeights;
use crate::inference::shard::Shard;
use crate::inference::wild::{self, WildDraws, WildOptions};
use crate::report::{resampling as render, Format};

/// Which bootstrap `fegpu boot` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootKind {
    /// Cluster (pairs) bootstrap standard errors and percentile intervals.
    Pairs,
    /// Restricted wild cluster bootstrap (Roodman, MacKinnon, Nielsen & Webb 2019).
    Wild,
}

/// The options of `fegpu bdiff` that decide its result (every shard of a run has the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BdiffSpec {
    pub formula: String,
    /// The 0/1 group variable.
    pub group: String,
    /// `obs`, or the variable whose units are permuted together.
    pub unit: String,
    pub bsample: bool,
    pub weights: Option<String>,
    pub reps: usize,
    pub seed: u64,
    /// `--family`: gaussian (OLS), poisson or logit (each group refitted by IRLS).
    #[serde(default)]
    pub family: crate::estimate::glm::Family,
}

/// The options of `fegpu boot` that decide its result (every shard of a run has the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootSpec {
    pub formula: String,
    pub cluster: String,
    pub kind: BootKind,
    /// The tested coefficient; `None`: the first regressor.
    pub param: Option<String>,
    pub null: f64,
    pub reps: usize,
    pub weights_type: WildWeights,
    pub seed: u64,
    /// Interval level in [0, 1); 0: no wild interval, and 95% pairs intervals.
    pub level: f64,
    pub weights: Option<String>,
    pub ssc: String,
    /// `--family`: gaussian (OLS) or, for the pairs bootstrap, poisson or logit (IRLS).
    #[serde(default)]
    pub family: crate::estimate::glm::Family,
}

/// The options of `fegpu replicate` that decide its permutation tests (its shards run
/// through `crate::replicate`, not through [`run`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicateSpec {
    pub seed: u64,
    pub reps: usize,
    /// The simulated data's scale (used when the data are simulated).
    pub scale: String,
    /// FNV-1a hash of the table specification's text.
    pub tables: String,
}

/// What a run computes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum Spec {
    Bdiff(BdiffSpec),
    Boot(BootSpec),
    Replicate(ReplicateSpec),
}

/// What to do with a run.
#[derive(Debug, Clone)]
pub enum Output {
    /// Print the result in `format` (and draw the replicate distribution to `plot`).
    Result { format: Format, plot: Option<PathBuf> },
    /// Compute the replicates of `shard` only and write them to the shard file `out`.
    Shard { shard: Shard, out: PathBuf },
}

/// One `fegpu bdiff` or `fegpu boot` invocation.
#[derive(Debug, Clone)]
pub struct Request {
    /// A data file or `demo`.
    pub data: String,
    pub spec: Spec,
    pub backend: Backend,
    pub precision: Precision,
    pub output: Output,
}

/// The observed fit and a range of replicate statistics of one run.
#[derive(Debug, Clone, PartialEq)]
pub enum Draws {
    Bdiff(BdiffDraws),
    Wild(WildDraws),
    Pairs(PairsDraws),
}

/// What [`compute`] returns: the draws, the estimation sample's fingerprint, the backend's name
/// and the seconds the engine took.
#[derive(Debug, Clone)]
pub struct Computed {
    pub draws: Draws,
    pub sample: shard_file::Fingerprint,
    pub backend: String,
    pub seconds: f64,
}

/// Run a request: the rendered result (for standard output), or, for a shard, an empty string
/// once its file is written.
pub fn run(req: &Request) -> Result<String> {
    match &req.output {
        Output::Result { format, plot } => {
            check_format(*format, spec_command(&req.spec))?;
            check_plot_path(plot.as_deref())?;
            let c = compute(req, None)?;
            finish(&req.spec, &c.draws, &c.backend, c.seconds, *format, plot.as_deref())
        }
        Output::Shard { shard, out } => {
            shard_file::check_writable(out)?;
            let c = compute(req, Some(*shard))?;
            shard_file::write(out, &shard_file::ShardFile::new(req, *shard, &c))?;
            Ok(String::new())
        }
    }
}

/// The observed fit and the replicates of `shard` (all of them with `None`).
pub fn compute(req: &Request, shard: Option<Shard>) -> Result<Computed> {
    check_spec(&req.spec)?;
    match &req.spec {
        Spec::Bdiff(s) => compute_bdiff(req, s, shard),
        Spec::Boot(s) => compute_boot(req, s, shard),
        Spec::Replicate(_) => Err(Error::Usage("`fegpu replicate` runs its own shards".into())),
    }
}

/// The result from the observed fit and every replicate of the run, rendered in `format`
/// (and plotted): the one way from replicate statistics to output, for single runs and merges.
pub fn finish(
    spec: &Spec,
    draws: &Draws,
    backend: &str,
    seconds: f64,
    format: Format,
    plot: Option<&Path>,
) -> Result<String> {
    match (spec, draws) {
        (Spec::Bdiff(s), Draws::Bdiff(d)) => {
            let r = permutation::assemble(d)?;
            if let Some(p) = plot {
                render::bdiff_plot(p, &r)?;
            }
            let labels = render::BdiffLabels {
                formula: &s.formula,
                group: &s.group,
                unit: &s.unit,
                backend,
            };
            render::bdiff(&labels, seconds, &r, format)
        }
        (Spec::Boot(s), Draws::Wild(d)) => {
            let r = wild::assemble(d);
            if let Some(p) = plot {
                render::wild_plot(p, &r)?;
            }
            render::wild(&s.formula, backend, &r, format)
        }
        (Spec::Boot(s), Draws::Pairs(d)) => {
            let r = bootstrap::assemble(d)?;
            if let Some(p) = plot {
                render::pairs_plot(p, &tested_coefficient(s)?, &r)?;
            }
            render::pairs(&s.formula, &s.cluster, backend, &r, format)
        }
        _ => Err(Error::Usage(
            "the replicate statistics do not belong to this command".into(),
        )),
    }
}

fn compute_bdiff(req: &Request, s: &BdiffSpec, shard: Option<Shard>) -> Result<Computed> {
    let model = resampling_model(&s.formula, s.reps, "bdiff")?;
    let unit = (s.unit != "obs").then(|| s.unit.clone());
    let fit_opts = crate::estimate::FitOptions {
        family: s.family,
        weights: s.weights.clone(),
        ..Default::default()
    };
    let popts = PrepareOptions {
        clusters: unit.iter().cloned().collect(),
        extra: vec![s.group.clone()],
        ..crate::estimate::fit::prepare_options(&fit_opts)
    };
    let mut table = load(&req.data, &used_columns(&[&model], &popts))?;
    let design = prepare_taking(&mut table, &model, &popts)?;
    drop(table);
    check_groups(&s.group, &design.extra[0])?;
    let units = design.clusters.first().map(|c| (c.ids.as_slice(), c.levels));
    let workload = Workload::Replicates {
        cells: design.nobs() * (design.x.len() + 1),
        vectors: 2 * s.reps,
        resident: crate::inference::resident_on_device(&design, &DemeanOptions::default(), units.map(|u| u.0)),
    };
    let demeaner = choose(req.backend, req.precision, workload, &mut |n| eprintln!("note: {n}"))?;
    let opts = BdiffOptions {
        reps: s.reps,
        seed: s.seed,
        bsample: s.bsample,
        demean: DemeanOptions::default(),
        memory_budget: 512 << 20,
        progress: true,
    };
    let t = Instant::now();
    let d = if s.family == crate::estimate::glm::Family::Gaussian {
        permutation::bdiff_draws(&design, &design.extra[0], units, &opts, shard, demeaner.as_ref())?
    } else {
        let group = &design.extra[0];
        crate::inference::glm_bdiff::glm_bdiff_draws(&design, group, units, &opts, &fit_opts, shard, demeaner.as_ref())?
    };
    Ok(Computed {
        draws: Draws::Bdiff(d),
        sample: shard_file::Fingerprint::of(&design),
        backend: demeaner.name(),
        seconds: t.elapsed().as_secs_f64(),
    })
}

fn compute_boot(req: &Request, s: &BootSpec, shard: Option<Shard>) -> Result<Computed> {
    let model = resampling_model(&s.formula, s.reps, "boot")?;
    if !(0.0..1.0).contains(&s.level) {
        return Err(Error::Usage(format!("--level must be in [0, 1) (got {})", s.level)));
    }
    let glm = s.family != crate::estimate::glm::Family::Gaussian;
    if glm && s.kind == BootKind::Wild {
        return Err(Error::Usage(format!(
            "--family {}: the wild bootstrap is for linear models; use --kind pairs",
            s.family.name()
        )));
    }
    let fit_opts = crate::estimate::FitOptions {
        family: s.family,
        weights: s.weights.clone(),
        ..Default::default()
    };
    let popts = PrepareOptions {
        clusters: vec![s.cluster.clone()],
        ..crate::estimate::fit::prepare_options(&fit_opts)
    };
    let mut table = load(&req.data, &used_columns(&[&model], &popts))?;
    let design = prepare_taking(&mut table, &model, &popts)?;
    drop(table);
    check_clusters(s, &design)?;
    let param = tested_coefficient(s)?;
    let workload = match s.kind {
        BootKind::Wild => Workload::Fit,
        BootKind::Pairs => Workload::Replicates {
            cells: design.nobs() * (design.x.len() + 1),
            vectors: s.reps,
            resident: crate::inference::resident_on_device(
                &design,
                &DemeanOptions::default(),
                design.clusters.first().map(|c| c.ids.as_slice()),
            ),
        },
    };
    let demeaner = choose(req.backend, req.precision, workload, &mut |n| eprintln!("note: {n}"))?;
    let t = Instant::now();
    let draws = match s.kind {
        BootKind::Pairs if glm => Draws::Pairs(crate::inference::glm_pairs::glm_pairs_draws(
            &design,
            &pairs_options(s),
            &fit_opts,
            shard,
            demeaner.as_ref(),
        )?),
        BootKind::Pairs => Draws::Pairs(bootstrap::pairs_draws(
            &design,
            &pairs_options(s),
            shard,
            demeaner.as_ref(),
        )?),
        BootKind::Wild => Draws::Wild(wild::wild_draws(
            &design,
            &wild_options(s, param)?,
            shard,
            demeaner.as_ref(),
        )?),
    };
    Ok(Computed {
        draws,
        sample: shard_file::Fingerprint::of(&design),
        backend: demeaner.name(),
        seconds: t.elapsed().as_secs_f64(),
    })
}

/// The coefficient `boot` tests (and plots): `--param`, else the formula's first regressor.
pub fn tested_coefficient(s: &BootSpec) -> Result<String> {
    if let Some(p) = &s.param {
        return Ok(p.clone());
    }
    formula::parse(&s.formula)?
        .rhs
        .first()
        .map(|t| t.name())
        .ok_or_else(|| Error::Usage("the model has no regressor to test".into()))
}

fn wild_options(s: &BootSpec, coefficient: String) -> Result<WildOptions> {
    Ok(WildOptions {
        coefficient,
        null: s.null,
        reps: s.reps,
        weights: s.weights_type,
        seed: s.seed,
        level: (s.level > 0.0).then_some(s.level),
        ssc: Ssc::parse(&s.ssc)?,
        demean: DemeanOptions::default(),
    })
}

fn pairs_options(s: &BootSpec) -> PairsOptions {
    PairsOptions {
        reps: s.reps,
        seed: s.seed,
        level: if s.level > 0.0 { s.level } else { 0.95 },
        demean: DemeanOptions::default(),
        memory_budget: 512 << 20,
        progress: true,
    }
}

/// The OLS model of a resampling command, with its replicate count checked; the formula's
/// notes (terms used once) go to stderr.
fn resampling_model(f: &str, reps: usize, cmd: &str) -> Result<formula::Model> {
    let model = formula::parse(f)?;
    for n in &model.notes {
        eprintln!("note ({f}): {n}");
    }
    if model.iv.is_some() {
        return Err(Error::Usage(format!("fegpu {cmd} supports OLS formulas only")));
    }
    if reps == 0 {
        return Err(Error::Usage("--reps must be positive".into()));
    }
    Ok(model)
}

/// Refuse a plot path we cannot write before spending time on replicates.
pub fn check_plot_path(p: Option<&Path>) -> Result<()> {
    if let Some(p) = p {
        let ext = p
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        if ext != "svg" && ext != "png" {
            return Err(Error::Usage(format!(
                "--plot {}: expected a .svg or .png file",
                p.display()
            )));
        }
        crate::report::output_target(p)?;
    }
    Ok(())
}

/// Merge the shard files at `paths` into the single run's output (see [`shard_file::merge`]).
pub fn merge(paths: &[PathBuf], format: Format, plot: Option<&Path>) -> Result<String> {
    check_format(format, "merge")?;
    check_plot_path(plot)?;
    let m = shard_file::merge(paths)?;
    check_spec(&m.spec)?;
    finish(&m.spec, &m.draws, &m.backend, m.seconds, format, plot)
}

/// The command a spec belongs to, for messages.
fn spec_command(spec: &Spec) -> &'static str {
    match spec {
        Spec::Bdiff(_) => "bdiff",
        Spec::Boot(_) => "boot",
        Spec::Replicate(_) => "replicate",
    }
}

/// `bdiff`, `boot` and `merge` print a text table or the JSON contract; the table formats of
/// `fegpu fit` (markdown, latex, csv) are refused rather than silently printed as text.
pub fn check_format(format: Format, cmd: &str) -> Result<()> {
    let name = match format {
        Format::Text | Format::Json => return Ok(()),
        Format::Markdown => "markdown",
        Format::Latex => "latex",
        Format::Csv => "csv",
    };
    Err(Error::Usage(format!(
        "fegpu {cmd} --format {name} is not supported: {cmd} prints `text` or `json` (the table formats are `fegpu fit`'s)"
    )))
}

/// The p-value level the replicate count must resolve: 5%, or 1 − `--level` when boot's
/// interval asks for a smaller one.
fn test_size(spec: &Spec) -> f64 {
    match spec {
        Spec::Boot(b) if b.level > 0.0 && b.level < 1.0 => (1.0 - b.level).min(0.05),
        _ => 0.05,
    }
}

/// The fewest replicates a run may ask for: with B replicates a resampling p-value moves in
/// steps of 1/(B + 1), so a test (or an interval) at size α can only reject when B ≥ 1/α − 1:
/// 19 at 5%, 99 at 1% (`--level 0.99`). Exact enumeration is unaffected: when the distinct
/// assignments are fewer than `--reps`, all of them are used.
pub fn min_reps(spec: &Spec) -> usize {
    let alpha = test_size(spec);
    ((1.0 / alpha - 1.0) - 1e-6).ceil().max(19.0) as usize
}

/// Options that no data can make valid, refused before any work (on single runs, shards and
/// merges alike).
pub fn check_spec(spec: &Spec) -> Result<()> {
    let (reps, cmd) = match spec {
        Spec::Bdiff(b) => (b.reps, "bdiff"),
        Spec::Boot(b) => {
            if !b.null.is_finite() {
                return Err(Error::Usage(format!(
                    "--null must be a finite number (got {}): the bootstrap imposes the null value on the model",
                    b.null
                )));
            }
            if !(0.0..1.0).contains(&b.level) {
                return Err(Error::Usage(format!("--level must be in [0, 1) (got {})", b.level)));
            }
            (b.reps, "boot")
        }
        Spec::Replicate(_) => return Ok(()),
    };
    let min = min_reps(spec);
    if reps < min {
        let alpha = test_size(spec);
        return Err(Error::Usage(format!(
            "fegpu {cmd} --reps {reps} is too few: at least {min} replicates are needed. With B replicates the p-value moves in steps of 1/(B + 1), so a test at the {}% level can only reject with B >= 1/alpha - 1 = {min}{}",
            (alpha * 100.0 * 1000.0).round() / 1000.0,
            if cmd == "boot" { " (--level sets alpha = 1 - level when below 5%)" } else { "" }
        )));
    }
    Ok(())
}

/// `boot` resamples (pairs) or sign-flips (wild) whole clusters: with one cluster every
/// replicate is the sample itself (pairs: standard error 0) or its mirror image (wild: t* = ±t,
/// p = 0 and a zero-width interval), so at least two clusters are required.
fn check_clusters(s: &BootSpec, design: &crate::data::Design) -> Result<()> {
    let g = design.clusters.first().map_or(0, |c| c.levels);
    if g < 2 {
        return Err(Error::Usage(format!(
            "fegpu boot --cluster {}: the estimation sample has {g} cluster{}; the cluster bootstrap needs at least 2 (with one cluster every replicate redraws or sign-flips the whole sample, giving a standard error of 0 or a p-value of 0 that mean nothing)",
            s.cluster,
            if g == 1 { "" } else { "s" }
        )));
    }
    Ok(())
}

/// Both groups of `bdiff` must have observations in the estimation sample (after missing
/// values and singletons are dropped).
fn check_groups(group: &str, values: &[f64]) -> Result<()> {
    let ones = values.iter().filter(|&&g| g == 1.0).count();
    let zeros = values.iter().filter(|&&g| g == 0.0).count();
    if ones + zeros != values.len() {
        return Ok(()); // not 0/1: the engine names the offending row
    }
    let empty = match (ones, zeros) {
        (0, _) => 1,
        (_, 0) => 0,
        _ => return Ok(()),
    };
    Err(Error::Usage(format!(
        "fegpu bdiff --group {group}: group {empty} ({group} = {empty}) is empty in the estimation sample ({} observations, all with {group} = {}, after dropping missing values and singletons); bdiff compares the two groups' coefficients and needs observations in both",
        values.len(),
        1 - empty
    )))
}
