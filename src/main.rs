//! The `fegpu` command line: argument parsing only; every subcommand calls library functions.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use fegpu::backend::{choose, Backend, Workload};
use fegpu::data::{demo, load};
use fegpu::demean::{DemeanOptions, Solver};
use fegpu::estimate::{fit, fit_last, FitOptions, Ssc, VcovSpec};
use fegpu::formula;
use fegpu::gpu::{list_adapters, Precision};
use fegpu::inference::shard::Shard;
use fegpu::report::{render, Format, Stat};
use fegpu::resampling::{self, BdiffSpec, BootKind, BootSpec, Output, Request, Spec};
use fegpu::{Error, Result};

#[derive(Parser)]
#[command(
    name = "fegpu",
    version,
    about = "High-dimensional fixed-effect regressions (reghdfe/fixest conventions), exact on the CPU"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Estimate one or more models and print them as one table (one column per model).
    Fit(FitArgs),
    /// Write the built-in demo panel (the data set `demo`) to a Parquet or CSV file.
    Demo(DemoArgs),
    /// List the GPU adapters wgpu can use (name, API, type, f64 support, memory limits).
    Devices(DevicesArgs),
    /// Time batched demeaning of the demo panel on the CPU and the GPU.
    Bench(BenchArgs),
    /// Bootstrap inference for one model: the restricted wild cluster bootstrap (WCR).
    Boot(BootArgs),
    /// Permutation test of the difference between two groups' coefficients (Stata's bdiff).
    Bdiff(BdiffArgs),
    /// Combine the shard files of a `bdiff` or `boot` run (`--shard I/K`) into its output,
    /// identical to the run done at once.
    Merge(MergeArgs),
    /// Simulate the study's raw databases (survey, customs exports, patents) with truth.json.
    Simulate(SimulateArgs),
    /// Match customs exporters to survey firms (name within year, then phone + postcode).
    Match(RawArgs),
    /// Digital patents per firm-year from the raw patent records (CNIPA 2023 table).
    Patents(RawArgs),
    /// Build the firm-year-destination analysis panel (matching, patents, batched export
    /// quality, controls, mechanism and split variables) from the raw tables.
    BuildPanel(BuildPanelArgs),
    /// Replicate the study end to end: simulate (or read) the raw data, build the panel, run
    /// all thirteen tables, write tables, JSON, an HTML report and a timing table.
    Replicate(ReplicateArgs),
}

#[derive(clap::Args)]
struct ReplicateArgs {
    /// Raw tables (firms, exports, imports, patents, countries, regions, cities, supply_chain). Without
    /// it (and without --panel) the data are simulated first.
    #[arg(long)]
    raw: Option<PathBuf>,
    /// Use a panel built earlier with `fegpu build-panel` instead of raw data.
    #[arg(long, conflicts_with = "raw")]
    panel: Option<PathBuf>,
    /// Output directory.
    #[arg(long, default_value = "replication")]
    out: PathBuf,
    /// Size of the simulated data when --raw is not given.
    #[arg(long, value_enum, default_value = "paper")]
    scale: fegpu::study::simulate::Scale,
    /// (`auto` runs the study on the CPU: measured on an H100, its ~50 fits are too small to
    /// gain and its permutation tests are exact on the CPU without iterating; `gpu` sends every
    /// demeaning to the GPU.)
    #[command(flatten)]
    device: DeviceArgs,
    /// Replications of each permutation test.
    #[arg(long, default_value_t = 1000, allow_negative_numbers = true, value_parser = whole::<usize>)]
    reps: usize,
    #[arg(long, default_value_t = 20_230_323, allow_negative_numbers = true, value_parser = whole::<u64>)]
    seed: u64,
    /// The tables as data (JSON; default: the study's thirteen tables, data/replicate_spec.json).
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Compute only shard I of K of every permutation test's replicates (I counted from 1) and
    /// write them to OUT/shard_I.json (no tables); combine the K files with --merge.
    #[arg(long, value_parser = shard_arg, conflicts_with = "merge")]
    shard: Option<Shard>,
    /// Run the study with the permutation tests' replicates taken from these K shard files
    /// (written by --shard with the same options).
    #[arg(long, num_args = 1..)]
    merge: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct BuildPanelArgs {
    /// Directory with the raw tables (firms, exports, imports, patents, countries, regions, cities,
    /// supply_chain; .parquet or .csv).
    #[arg(long, required_unless_present = "describe")]
    raw: Option<PathBuf>,
    /// The panel file (.parquet or .csv); written atomically.
    #[arg(long, required_unless_present = "describe")]
    out: Option<PathBuf>,
    /// Print the panel's columns (name, unit, source, definition) and exit.
    #[arg(long)]
    describe: bool,
    /// Winsorise continuous variables at 1%/99%: pooled (the study), by-year, or none.
    #[arg(long, value_enum, default_value = "pooled")]
    winsorize: fegpu::study::panel::Winsorize,
    /// σ per product: bw (Broda–Weinstein by HS3, the study) or estimate (2SLS, BW fallback).
    #[arg(long, value_enum, default_value = "bw")]
    sigma: fegpu::study::panel::SigmaSource,
    /// Also run the quality step as a loop of per-product fits and report both timings.
    #[arg(long)]
    compare_loop: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(clap::Args)]
struct SimulateArgs {
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 20_230_323, allow_negative_numbers = true, value_parser = whole::<u64>)]
    seed: u64,
    #[arg(long, value_enum, default_value = "paper")]
    scale: fegpu::study::simulate::Scale,
    /// Write CSV instead of Parquet.
    #[arg(long)]
    csv: bool,
}

#[derive(clap::Args)]
struct RawArgs {
    /// Directory with firms, exports and patents tables (.parquet or .csv).
    #[arg(long)]
    raw: PathBuf,
    /// Write the result table here (.parquet or .csv).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct BdiffArgs {
    data: String,
    formula: String,
    /// The 0/1 group variable.
    #[arg(long)]
    group: String,
    #[arg(long, default_value_t = 1000, allow_negative_numbers = true, value_parser = whole::<usize>)]
    reps: usize,
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = whole::<u64>)]
    seed: u64,
    /// Permutation unit: `obs`, or a variable whose units move together (firm, cluster).
    #[arg(long, default_value = "obs")]
    unit: String,
    /// Resample units with replacement before permuting (bdiff's bsample).
    #[arg(long)]
    bsample: bool,
    #[arg(long)]
    weights: Option<String>,
    /// gaussian (OLS), poisson or logit: each group of each replicate refitted by IRLS after
    /// the separation checks.
    #[arg(long, default_value = "gaussian")]
    family: String,
    #[command(flatten)]
    device: DeviceArgs,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Draw the permutation distribution of the first regressor's difference (FILE.svg|png).
    #[arg(long)]
    plot: Option<PathBuf>,
    #[command(flatten)]
    sharding: ShardArgs,
}

/// `--shard I/K --out FILE` of the resampling commands.
#[derive(clap::Args)]
struct ShardArgs {
    /// Compute only shard I of K of the replicates (I counted from 1, e.g. 2/8) and write them
    /// to --out; `fegpu merge` combines the K shard files into this command's output.
    #[arg(long, value_parser = shard_arg)]
    shard: Option<Shard>,
    /// The shard file to write (with --shard).
    #[arg(long, requires = "shard")]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct BootArgs {
    /// Data file or `demo`.
    data: String,
    /// One fixest-style formula (OLS).
    formula: String,
    /// Cluster variable.
    #[arg(long)]
    cluster: String,
    /// `wild`: restricted wild cluster bootstrap (Roodman, MacKinnon, Nielsen & Webb 2019);
    /// `pairs`: cluster (pairs) bootstrap standard errors and percentile intervals.
    #[arg(long, value_enum, default_value = "wild")]
    kind: BootKind,
    /// Coefficient to test (default: the first regressor).
    #[arg(long)]
    param: Option<String>,
    /// Value of the coefficient under the null.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    null: f64,
    #[arg(long, default_value_t = 999, allow_negative_numbers = true, value_parser = whole::<usize>)]
    reps: usize,
    #[arg(long, value_enum, default_value = "rademacher")]
    weights_type: fegpu::inference::replicates::WildWeights,
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = whole::<u64>)]
    seed: u64,
    /// Confidence level of the interval obtained by inverting the bootstrap test (0 = none).
    #[arg(long, default_value_t = 0.95, allow_negative_numbers = true)]
    level: f64,
    #[arg(long)]
    weights: Option<String>,
    #[arg(long, default_value = "reghdfe")]
    ssc: String,
    /// gaussian (OLS), or with --kind pairs poisson or logit: each replicate refitted by IRLS
    /// after the separation checks.
    #[arg(long, default_value = "gaussian")]
    family: String,
    #[command(flatten)]
    device: DeviceArgs,
    /// text or json
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Draw the bootstrap distribution with the observed statistic (FILE.svg|png).
    #[arg(long)]
    plot: Option<PathBuf>,
    #[command(flatten)]
    sharding: ShardArgs,
}

#[derive(clap::Args)]
struct MergeArgs {
    /// The shard files (`--shard I/K --out FILE`), all K of them, in any order.
    #[arg(required = true)]
    shards: Vec<PathBuf>,
    /// Output format, as the command's own --format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Draw the replicate distribution, as the command's own --plot (FILE.svg|png).
    #[arg(long)]
    plot: Option<PathBuf>,
}

#[derive(clap::Args)]
struct DevicesArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Run the df64 self-test on the adapter fegpu uses (or read its cached outcome;
    /// FEGPU_SELFTEST=force re-runs it) and print every check.
    #[arg(long)]
    selftest: bool,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Rows of the demo panel.
    #[arg(long, default_value_t = demo::DEMO_ROWS, allow_negative_numbers = true, value_parser = whole::<usize>)]
    rows: usize,
    /// Bootstrap weight vectors demeaned in one batch (at least 1).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = whole::<usize>)]
    replicates: usize,
    /// (`bench`: auto = both, the GPU when an adapter opens.)
    #[command(flatten)]
    device: DeviceArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct FitArgs {
    /// Data: a .csv/.tsv/.parquet file, or `demo` for the built-in study-shaped panel.
    data: String,
    /// fixest-style formulas, e.g. "y ~ x1 + log(x2) | firm + year + firm^dest".
    #[arg(required = true)]
    formulas: Vec<String>,
    /// Variance: iid, hetero (HC1), or cluster:VAR[+VAR] (one- or multi-way).
    #[arg(long, default_value = "iid")]
    vcov: String,
    /// Observation weights (analytic weights, as fixest's `weights` and reghdfe's `aweight`).
    #[arg(long)]
    weights: Option<String>,
    /// Small-sample convention: reghdfe (default) or fixest.
    #[arg(long, default_value = "reghdfe")]
    ssc: String,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// What goes in parentheses: standard errors or t statistics.
    #[arg(long, value_enum, default_value = "se")]
    stat: Stat,
    /// Write the table to FILE instead of standard output.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Demeaning tolerance: CG stops when the fixed-effect normal equations' residual is below
    /// TOL relative to their right-hand side (alternating projections: change per sweep).
    #[arg(long, default_value_t = 1e-8, allow_negative_numbers = true, value_parser = positive_tol)]
    tol: f64,
    /// Maximum demeaning iterations.
    #[arg(long, default_value_t = 10_000, allow_negative_numbers = true, value_parser = whole::<usize>)]
    maxiter: usize,
    /// How the fixed effects are projected out: auto (exact paths where the structure allows,
    /// else conjugate gradients climbing Jacobi → two-effect block / Schwarz), ap (alternating
    /// projections), cg-jacobi, cg-block2, cg-schwarz.
    #[arg(long, value_enum, default_value = "auto")]
    solver: Solver,
    /// Keep singleton observations (reghdfe's keepsingletons).
    #[arg(long)]
    keep_singletons: bool,
    /// Use only the rows where EXPR holds, decided before missing values and factor references
    /// (fixest's `subset`): comparisons of a column with a number or a quoted text (`==`, `!=`,
    /// `<`, `<=`, `>`, `>=`), `col in (a, b)`, joined by `&`, `|` and parentheses, e.g.
    /// `--subset 'year >= 2000 & industry != "B"'`.
    #[arg(long, value_name = "EXPR", allow_hyphen_values = true)]
    subset: Option<String>,
    /// The panel's unit and time variables, for the lag operators `l(x, k)`, `f(x, k)`,
    /// `d(x, k)` (time in whole numbers; one period is the GCD of its gaps).
    #[arg(long, value_name = "ID,TIME")]
    panel: Option<String>,
    /// Draw the first model's i() coefficients against their level with 95% confidence
    /// intervals, the reference at zero (fixest's iplot; the event-study picture), as SVG.
    #[arg(long, value_name = "FILE.svg")]
    iplot: Option<PathBuf>,
    /// Write, per row of the estimation sample, its row in the input (from 1), the fitted value,
    /// the residual and each fixed effect's value (fixest's fixef() normalisation), as Parquet
    /// or CSV; several models write FILE_1, FILE_2, … (numbered as the table's columns).
    #[arg(long, value_name = "FILE.parquet|csv")]
    save: Option<PathBuf>,
    /// Predict the rows of NEWDATA (a data file) with each model: Xβ plus the fixed effects'
    /// values (an unseen fixed-effect level gives a missing value, an unseen factor level is an
    /// error); written to --predict-out.
    #[arg(long, value_name = "NEWDATA", requires = "predict_out")]
    predict: Option<String>,
    /// Where --predict writes (Parquet or CSV): `row` (of NEWDATA, from 1) and `prediction`;
    /// several models write FILE_1, FILE_2, ….
    #[arg(long, value_name = "FILE.parquet|csv", requires = "predict")]
    predict_out: Option<PathBuf>,
    /// One model per value of VAR (fixest's split), in VAR's level order; rows where VAR is
    /// missing are left out. The table has a "Sample" row.
    #[arg(long, value_name = "VAR", conflicts_with = "fsplit")]
    split: Option<String>,
    /// As --split, with the full sample (rows where VAR is not missing) first (fixest's fsplit).
    #[arg(long, value_name = "VAR")]
    fsplit: Option<String>,
    #[command(flatten)]
    device: DeviceArgs,
    /// For IV models: `second` (2SLS with diagnostics) or `first` (the first-stage regressions
    /// as a table, one column per endogenous regressor).
    #[arg(long, value_enum, default_value = "second")]
    stage: Stage,
    /// The model: gaussian (OLS), poisson (PPML, log link; y ≥ 0) or logit (y ∈ {0, 1}),
    /// the GLMs estimated by IRLS with separated observations removed first.
    #[arg(long, default_value = "gaussian")]
    family: String,
    /// GLM: a column added to the linear predictor with coefficient 1 (fixest's `offset`).
    #[arg(long, value_name = "VAR")]
    offset: Option<String>,
    /// GLM: a positive column whose log is added to the linear predictor (ppmlhdfe's `exposure`).
    #[arg(long, value_name = "VAR")]
    exposure: Option<String>,
    /// GLM: IRLS stops when the deviance changes by less than TOL relative (fixest's glm.tol).
    #[arg(long, default_value_t = 1e-8, allow_negative_numbers = true, value_parser = positive_tol)]
    glm_tol: f64,
    /// GLM: IRLS iteration limit (non-convergence is a WARNING and `converged: false`).
    #[arg(long, default_value_t = 100, allow_negative_numbers = true, value_parser = whole::<usize>)]
    glm_iter: usize,
    /// GLM: separation checks before the fit: fe (fixed-effect levels with all-zero — logit:
    /// all-equal — outcomes, recursively), relu (Poisson: the iterative rectifier for
    /// separation by regressors and effects together), `fe,relu` (default) or none.
    #[arg(long, default_value = "fe,relu")]
    separation: String,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Stage {
    First,
    Second,
}

/// `--tol`: a number f64 arithmetic can reach (`demean::MIN_TOL` to 1).
fn positive_tol(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    fegpu::demean::strategy::check_tol(v)
        .map(|_| v)
        .map_err(|e| e.to_string())
}

/// A whole-number option (`--reps`, `--seed`, `--maxiter`, `--rows`). Negative numbers reach
/// it (the options allow them, so that `--null -0.3` reads) and are refused as out of range.
fn whole<T: std::str::FromStr>(s: &str) -> std::result::Result<T, String> {
    let t = s.trim();
    if t.starts_with('-') && t[1..].parse::<f64>().is_ok() {
        return Err(format!("{t} is negative: expected a whole number, 0 or more"));
    }
    t.parse()
        .map_err(|_| format!("`{s}` is not a whole number (0, 1, 2, ...), or is too large"))
}

/// The first-stage regressions of an IV model: each endogenous regressor on the exogenous
/// regressors and the excluded instruments, with the same fixed effects.
fn first_stage_models(m: &formula::Model) -> Vec<formula::Model> {
    let Some(iv) = &m.iv else { return vec![m.clone()] };
    iv.endogenous
        .iter()
        .map(|e| {
            let mut rhs = m.rhs.clone();
            rhs.extend(iv.instruments.iter().cloned());
            formula::Model {
                formula: format!(
                    "first stage of {}: {} on exogenous regressors and instruments",
                    m.formula,
                    e.name()
                ),
                lhs: e.clone(),
                rhs,
                intercept: m.intercept,
                fixed_effects: m.fixed_effects.clone(),
                iv: None,
                notes: Vec::new(),
            }
        })
        .collect()
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Output file (.parquet or .csv).
    #[arg(long)]
    out: PathBuf,
    /// Which panel: the study-shaped demo, fixest's published "difficult" benchmark design,
    /// or a worker–firm–year panel with low mobility (src/data/hard.rs).
    #[arg(long, value_enum, default_value = "study")]
    design: DemoDesign,
    /// Number of rows.
    #[arg(long, default_value_t = demo::DEMO_ROWS, allow_negative_numbers = true, value_parser = whole::<usize>)]
    rows: usize,
    #[arg(long, default_value_t = demo::DEMO_SEED, allow_negative_numbers = true, value_parser = whole::<u64>)]
    seed: u64,
}

/// Where demeaning runs and in which GPU arithmetic (every command that estimates takes these).
#[derive(clap::Args, Clone, Copy)]
struct DeviceArgs {
    /// Where the demeaning runs: auto (the backend measured faster for the command: the GPU for
    /// large resident replicate work on real hardware, else the CPU; see README), cpu, gpu.
    #[arg(long, value_enum, default_value = "auto")]
    backend: Backend,
    /// GPU arithmetic: df64 (f32 pairs, any adapter, verified by a start-up self-test) or f64
    /// (needs SHADER_F64).
    #[arg(long, value_enum, default_value = "df64")]
    precision: Precision,
}

fn run_fit(a: FitArgs) -> Result<()> {
    if !(a.tol > 0.0) {
        return Err(Error::Usage(format!("--tol must be positive (got {})", a.tol)));
    }
    if a.maxiter == 0 {
        return Err(Error::Usage(
            "--maxiter 0: the demeaning needs at least one iteration to converge".into(),
        ));
    }
    let vcov = VcovSpec::parse(&a.vcov)?;
    let ssc = Ssc::parse(&a.ssc)?;
    if let Some(p) = &a.output {
        fegpu::report::output_target(p)?;
    }
    if let Some(p) = &a.iplot {
        fegpu::report::iplot::check_path(p)?;
    }
    for p in a.save.iter().chain(&a.predict_out) {
        fegpu::data::load::check_output(p)?;
    }
    // one formula may stand for several (fixest's sw(), csw(), c(y1, y2))
    let mut models: Vec<formula::Model> = a
        .formulas
        .iter()
        .map(|f| formula::parse_all(f))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    if a.iplot.is_some() {
        let has_i = |m: &formula::Model| {
            m.rhs
                .iter()
                .any(|t| matches!(t.factors.as_slice(), [formula::Factor::I(_)]))
        };
        if !models.iter().any(has_i) {
            return Err(Error::Usage(format!(
                "--iplot: no formula has an i() term to plot ({})",
                a.formulas.join("; ")
            )));
        }
    }
    let subset = a.subset.as_deref().map(fegpu::data::Subset::parse).transpose()?;
    let panel = match a
        .panel
        .as_deref()
        .map(|p| p.split(',').map(str::trim).collect::<Vec<_>>())
    {
        None => None,
        Some(parts) if parts.len() == 2 && parts.iter().all(|p| !p.is_empty()) => {
            Some((parts[0].to_string(), parts[1].to_string()))
        }
        Some(_) => {
            return Err(Error::Usage(
                "--panel takes the unit and the time variable separated by a comma: --panel firm,year".into(),
            ))
        }
    };
    if a.stage == Stage::First {
        if !models.iter().any(|m| m.iv.is_some()) {
            return Err(Error::Usage(
                "--stage first needs a formula with an IV part (`| endog ~ instruments`)".into(),
            ));
        }
        models = models.iter().flat_map(first_stage_models).collect();
    }
    let family = fegpu::estimate::glm::Family::parse(&a.family)?;
    if family == fegpu::estimate::glm::Family::Gaussian && (a.offset.is_some() || a.exposure.is_some()) {
        return Err(Error::Usage(
            "--offset and --exposure belong to a GLM: add --family poisson or --family logit".into(),
        ));
    }
    if a.glm_iter == 0 {
        return Err(Error::Usage("--glm-iter 0: IRLS needs at least one iteration".into()));
    }
    let separation = fegpu::estimate::glm::SeparationChecks::parse(&a.separation)?;
    if family != fegpu::estimate::glm::Family::Gaussian && (a.save.is_some() || a.predict.is_some()) {
        return Err(Error::Usage(format!(
            "--save and --predict write a linear model's fitted values and effects; with --family {} they are not available yet",
            family.name()
        )));
    }
    let opts = FitOptions {
        vcov,
        weights: a.weights.clone(),
        ssc,
        demean: DemeanOptions {
            tol: a.tol,
            max_iter: a.maxiter,
            solver: a.solver,
        },
        keep_singletons: a.keep_singletons,
        subset,
        panel,
        family,
        offset: a.offset.clone(),
        exposure: a.exposure.clone(),
        glm_tol: a.glm_tol,
        glm_iter: a.glm_iter,
        separation,
        ..FitOptions::default()
    };
    // Read only the columns some model, the weights, the clusters, the offsets or the split use.
    let needs = fegpu::estimate::fit::prepare_options(&opts);
    let mut columns = fegpu::data::used_columns(&models.iter().collect::<Vec<_>>(), &needs);
    let split = a.split.as_deref().or(a.fsplit.as_deref());
    columns.extend(split.filter(|v| !columns.iter().any(|c| c == v)).map(str::to_string));
    let table = load(&a.data, &columns)?;
    fegpu::timing::lap("read");
    let samples = fegpu::data::split::samples(&table, split, a.fsplit.is_some(), opts.subset.as_ref())?;
    let demeaner = choose(a.device.backend, a.device.precision, Workload::Fit, &mut |n| {
        eprintln!("note: {n}")
    })?;
    // the models in fixest's order: sample, then the formula's own order
    let jobs: Vec<(&formula::Model, FitOptions, &fegpu::data::split::Sample)> = samples
        .iter()
        .flat_map(|s| models.iter().map(move |m| (m, s)))
        .map(|(m, s)| {
            (
                m,
                FitOptions {
                    subset: s.subset.clone(),
                    ..opts.clone()
                },
                s,
            )
        })
        .collect();
    let keep_table = a.save.is_some() || a.predict.is_some();
    let mut results = Vec::new();
    let mut table = Some(table);
    for (k, (m, opts, s)) in jobs.iter().enumerate() {
        let mut r = if k + 1 == jobs.len() && !keep_table {
            fit_last(table.take().expect("the table"), m, opts, demeaner.as_ref())?
        } else {
            fit(table.as_ref().expect("the table"), m, opts, demeaner.as_ref())?
        };
        r.sample = s.label.clone();
        for n in &r.notes {
            eprintln!("note ({}): {n}", m.formula);
        }
        results.push(r);
    }
    if keep_table {
        let fits: Vec<(&formula::Model, &FitOptions)> = jobs.iter().map(|(m, o, _)| (*m, o)).collect();
        let out = fegpu::fitted::Outputs {
            save: a.save.as_deref(),
            predict: a.predict.as_deref().zip(a.predict_out.as_deref()),
        };
        fegpu::fitted::write_outputs(
            table.as_ref().expect("the table"),
            &fits,
            &mut results,
            &out,
            demeaner.as_ref(),
        )?;
    }
    if let Some(p) = &a.iplot {
        // the first model whose i() term can be drawn (else the first model's error says why)
        let k = (0..models.len())
            .find(|&k| fegpu::report::iplot::points(&models[k], &results[k], 0.95).is_ok())
            .unwrap_or(0);
        fegpu::report::iplot::write(p, &models[k], &results[k])?;
    }
    fegpu::timing::lap("report");
    let text = render(&results, a.format, a.stat, fegpu::timing::snapshot().as_ref())?;
    match &a.output {
        Some(p) => fegpu::report::write_atomic(p, &text)?,
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| Error::io("stdout", e))?,
    }
    fegpu::timing::finish();
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DemoDesign {
    Study,
    Difficult,
    Mobility,
}

fn run_demo(a: DemoArgs) -> Result<()> {
    let mut df = match a.design {
        DemoDesign::Study => demo::demo_frame(a.rows, a.seed)?,
        DemoDesign::Difficult => fegpu::data::hard::difficult_frame(a.rows, a.seed)?,
        DemoDesign::Mobility => fegpu::data::hard::mobility_frame(a.rows, a.seed)?,
    };
    fegpu::data::load::save(&mut df, &a.out)?;
    eprintln!("wrote {} rows to {}", df.height(), a.out.display());
    Ok(())
}

fn run_devices(a: DevicesArgs) -> Result<()> {
    if a.selftest {
        print_selftest(a.json)?;
    }
    let rows = list_adapters();
    if a.json {
        print_json(&rows)?;
        return Ok(());
    }
    if rows.is_empty() {
        println!("no GPU adapter found (install a Vulkan, Metal or DX12 driver; on Linux without a GPU: mesa-vulkan-drivers)");
        return Ok(());
    }
    println!(
        "{:<40} {:<8} {:<14} {:>4} {:>16} {:>16}  df64 self-test",
        "adapter", "api", "type", "f64", "max buffer", "max storage bind"
    );
    for r in rows {
        println!(
            "{:<40} {:<8} {:<14} {:>4} {:>16} {:>16}  {}",
            r.name,
            r.backend,
            r.device_type,
            if r.shader_f64 { "yes" } else { "no" },
            r.max_buffer_size,
            r.max_storage_buffer_binding_size,
            r.df64_selftest.as_str()
        );
    }
    Ok(())
}

/// `devices --selftest`: the df64 self-test of the adapter a df64 GPU run would use, check by
/// check (to stderr under --json, so stdout stays one JSON document).
fn print_selftest(json: bool) -> Result<()> {
    use fegpu::demean::GpuDemeaner;
    let out = |line: String| if json { eprintln!("{line}") } else { println!("{line}") };
    let g = match GpuDemeaner::new(Precision::Df64) {
        Ok(g) => g,
        Err(e) => {
            out(format!("df64 self-test: {e}"));
            return Ok(());
        }
    };
    let info = &g.context().info;
    let Some(t) = &g.context().df64_selftest else {
        return Ok(());
    };
    out(format!(
        "df64 self-test on {} ({:?}, driver {} {}): {}{}",
        info.name,
        info.backend,
        info.driver,
        info.driver_info,
        t.status.as_str(),
        if t.from_cache {
            " (cached; FEGPU_SELFTEST=force re-runs it)"
        } else {
            ""
        }
    ));
    for c in &t.checks {
        out(format!(
            "  {:<6} {}: {}",
            if c.passed { "ok" } else { "FAILED" },
            c.name,
            c.detail
        ));
    }
    if g.precision() != Precision::Df64 {
        out("  df64 runs on this adapter use native f64 instead".into());
    }
    out(String::new());
    Ok(())
}

fn run_bench(a: BenchArgs) -> Result<()> {
    let (cpu, gpu) = match a.device.backend {
        Backend::Cpu => (true, false),
        Backend::Gpu => (false, true),
        Backend::Auto => (true, !list_adapters().is_empty()),
    };
    let rows = fegpu::bench::run(a.rows, a.replicates, a.device.precision, cpu, gpu)?;
    if a.json {
        print_json(&rows)?;
    } else {
        print!("{}", fegpu::bench::render(&rows));
    }
    Ok(())
}

/// Print a serialisable result as pretty JSON on standard output.
fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).map_err(|e| Error::Data(e.to_string()))?
    );
    Ok(())
}

/// `--shard I/K` (I from 1).
fn shard_arg(s: &str) -> std::result::Result<Shard, String> {
    Shard::parse(s).map_err(|e| e.to_string())
}

/// What a resampling command does with its run: a shard file, or the result (and plot).
fn resampling_output(cmd: &str, sharding: ShardArgs, format: Format, plot: Option<PathBuf>) -> Result<Output> {
    // refused on shards too, so a shard run fails exactly where the single run would
    resampling::check_format(format, cmd)?;
    match (sharding.shard, sharding.out) {
        (Some(_), _) if plot.is_some() => Err(Error::Usage(
            "--plot draws the whole run's distribution: give it to `fegpu merge`, not to a shard".into(),
        )),
        (Some(shard), Some(out)) => Ok(Output::Shard { shard, out }),
        (Some(_), None) => Err(Error::Usage(
            "--shard needs --out FILE (the shard file to write)".into(),
        )),
        (None, _) => Ok(Output::Result { format, plot }),
    }
}

/// Run a resampling request and print its result.
fn run_resampling(req: Request) -> Result<()> {
    let text = resampling::run(&req)?;
    if let Output::Shard { shard, out } = &req.output {
        eprintln!(
            "wrote shard {shard} to {}; combine the shards with `fegpu merge`",
            out.display()
        );
    }
    print!("{text}");
    Ok(())
}

fn run_boot(a: BootArgs) -> Result<()> {
    let spec = Spec::Boot(BootSpec {
        formula: a.formula,
        cluster: a.cluster,
        kind: a.kind,
        param: a.param,
        null: a.null,
        reps: a.reps,
        weights_type: a.weights_type,
        seed: a.seed,
        level: a.level,
        weights: a.weights,
        ssc: a.ssc,
        family: fegpu::estimate::glm::Family::parse(&a.family)?,
    });
    run_resampling(Request {
        data: a.data,
        spec,
        backend: a.device.backend,
        precision: a.device.precision,
        output: resampling_output("boot", a.sharding, a.format, a.plot)?,
    })
}

fn run_bdiff(a: BdiffArgs) -> Result<()> {
    let spec = Spec::Bdiff(BdiffSpec {
        formula: a.formula,
        group: a.group,
        unit: a.unit,
        bsample: a.bsample,
        weights: a.weights,
        reps: a.reps,
        seed: a.seed,
        family: fegpu::estimate::glm::Family::parse(&a.family)?,
    });
    run_resampling(Request {
        data: a.data,
        spec,
        backend: a.device.backend,
        precision: a.device.precision,
        output: resampling_output("bdiff", a.sharding, a.format, a.plot)?,
    })
}

fn run_merge(a: MergeArgs) -> Result<()> {
    print!("{}", resampling::merge(&a.shards, a.format, a.plot.as_deref())?);
    Ok(())
}

/// Peak resident memory of this process (Linux `VmHWM`), for the raw-data steps' reports.
fn peak_memory() -> String {
    fegpu::report::peak_rss_kb().map_or_else(|| "n/a".into(), |kb| format!("{kb} kB"))
}

fn run_simulate(a: SimulateArgs) -> Result<()> {
    let t = std::time::Instant::now();
    let truth = fegpu::study::simulate::simulate(&a.out, a.seed, a.scale, a.csv)?;
    eprintln!(
        "simulated into {} in {:.1} s: {} customs links, {} intermediaries, {} firm-years with digital patents; peak memory {}",
        a.out.display(),
        t.elapsed().as_secs_f64(),
        truth.links.len(),
        truth.intermediaries.len(),
        truth.digital_applications.len(),
        peak_memory()
    );
    Ok(())
}

fn run_match(a: RawArgs) -> Result<()> {
    let (links, report) = fegpu::study::matching::match_customs(&a.raw)?;
    print!("{}", fegpu::study::matching::render_report(&report));
    eprintln!("peak memory {}", peak_memory());
    if let Some(out) = &a.out {
        use polars::prelude::{Column, DataFrame};
        let mut df = DataFrame::new(
            links.len(),
            vec![
                Column::new(
                    "customs_name".into(),
                    links.iter().map(|l| l.customs_name.clone()).collect::<Vec<_>>(),
                ),
                Column::new("year".into(), links.iter().map(|l| l.year).collect::<Vec<_>>()),
                Column::new("firm_id".into(), links.iter().map(|l| l.firm_id).collect::<Vec<_>>()),
                Column::new("step".into(), links.iter().map(|l| l.step).collect::<Vec<_>>()),
            ],
        )
        .map_err(|e| Error::Data(e.to_string()))?;
        fegpu::data::load::save(&mut df, out)?;
    }
    Ok(())
}

fn run_patents(a: RawArgs) -> Result<()> {
    let fy = fegpu::study::patents::firm_year_patents(&a.raw)?;
    let mut df = fegpu::study::patents::patent_frame(&fy)?;
    let total: u32 = fy.values().map(|e| e.digital).sum();
    println!(
        "{} firm-years with patents; {} digital applications (counted once per applicant firm); peak memory {}",
        fy.len(),
        total,
        peak_memory()
    );
    if let Some(out) = &a.out {
        fegpu::data::load::save(&mut df, out)?;
    }
    Ok(())
}

fn run_build_panel(a: BuildPanelArgs) -> Result<()> {
    use fegpu::study::panel;
    if a.describe {
        print!("{}", panel::describe());
        return Ok(());
    }
    let (raw, out) = (a.raw.unwrap(), a.out.unwrap());
    fegpu::data::load::check_output(&out)?;
    let t = std::time::Instant::now();
    let demeaner = choose(a.device.backend, a.device.precision, Workload::Fit, &mut |m| {
        eprintln!("{m}")
    })?;
    eprintln!("building the panel from {}", raw.display());
    let opts = panel::PanelOptions {
        winsorize: a.winsorize,
        sigma: a.sigma,
        compare_loop: a.compare_loop,
    };
    let (mut df, report) = panel::build_panel(&raw, &opts, demeaner.as_ref())?;
    fegpu::data::load::save(&mut df, &out)?;
    eprintln!(
        "wrote {} ({} rows, {} firms) in {:.1} s; peak memory {}",
        out.display(),
        report.rows,
        report.firms,
        t.elapsed().as_secs_f64(),
        peak_memory()
    );
    Ok(())
}

fn run_replicate(a: ReplicateArgs) -> Result<()> {
    use fegpu::replicate;
    // auto → CPU (see --backend): the study's fits and its permutation tests run on the CPU
    let demeaner = choose(a.device.backend, a.device.precision, Workload::Fit, &mut |m| {
        eprintln!("{m}")
    })?;
    let opts = replicate::Options {
        raw: a.raw,
        panel: a.panel,
        out: a.out.clone(),
        scale: a.scale,
        seed: a.seed,
        reps: a.reps,
        spec: a.spec,
        sharding: match (a.shard, a.merge.is_empty()) {
            (Some(s), _) => replicate::Sharding::Shard(s),
            (None, false) => replicate::Sharding::Merge(a.merge),
            (None, true) => replicate::Sharding::None,
        },
    };
    let rep = replicate::run(&opts, demeaner.as_ref())?;
    if let replicate::Sharding::Shard(_) = opts.sharding {
        return Ok(()); // its file is written
    }
    if let Some(t) = rep.tables.first() {
        println!("{}", fegpu::report::writers::text(&replicate::grid(t, &rep.controls)));
    }
    eprintln!(
        "wrote {} tables, results.json, report.html and timing.md to {} in {:.1} s; peak memory {}",
        rep.tables.len(),
        a.out.display(),
        rep.total_seconds,
        peak_memory()
    );
    if rep.failures > 0 {
        return Err(Error::Estimation(format!(
            "{} specification(s) failed; each is reported in its table (see {}/report.html)",
            rep.failures,
            a.out.display()
        )));
    }
    Ok(())
}

fn main() -> ExitCode {
    // Mesa's Vulkan drivers print "error: XDG_RUNTIME_DIR is invalid or not set" on stderr when
    // probed without it (headless servers, cron, CI), which reads like a failure of fegpu: give
    // them the temporary directory (before any thread starts).
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    fegpu::memory::tune_allocator();
    let cli = Cli::parse();
    fegpu::timing::start();
    let result = match cli.cmd {
        Cmd::Fit(a) => run_fit(a),
        Cmd::Demo(a) => run_demo(a),
        Cmd::Devices(a) => run_devices(a),
        Cmd::Bench(a) => run_bench(a),
        Cmd::Boot(a) => run_boot(a),
        Cmd::Bdiff(a) => run_bdiff(a),
        Cmd::Merge(a) => run_merge(a),
        Cmd::Simulate(a) => run_simulate(a),
        Cmd::Match(a) => run_match(a),
        Cmd::Patents(a) => run_patents(a),
        Cmd::BuildPanel(a) => run_build_panel(a),
        Cmd::Replicate(a) => run_replicate(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
