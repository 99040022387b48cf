//! The `fegpu` command line: argument parsing only; every subcommand calls library functions.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use fegpu::backend::{choose, Backend, Workload};
use fegpu::data::{demo, load};
use fegpu::demean::{DemeanOptions, Solver};
use fegpu::estimate::{fit, fit_last, FitOptions, Ssc, VcovSpec};
use fegpu::formula;
use fegpu::gpu::{list_adapters, Precision};
use fegpu::report::{render, Format, Stat};
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
    /// Raw tables (firms, exports, imports, patents, countries, regions, supply_chain). Without
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
    /// `auto` runs the study on the CPU: measured on an H100, its ~50 fits are too small to
    /// gain and its permutation tests are exact on the CPU without iterating; `gpu` sends every
    /// demeaning to the GPU.
    #[arg(long, value_enum, default_value = "auto")]
    backend: Backend,
    #[arg(long, value_enum, default_value = "df64")]
    precision: Precision,
    /// Replications of each permutation test.
    #[arg(long, default_value_t = 1000)]
    reps: usize,
    #[arg(long, default_value_t = 20_230_323)]
    seed: u64,
    /// The tables as data (JSON; default: the study's thirteen tables, data/replicate_spec.json).
    #[arg(long)]
    spec: Option<PathBuf>,
}

#[derive(clap::Args)]
struct BuildPanelArgs {
    /// Directory with the raw tables (firms, exports, imports, patents, countries, regions,
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
    #[arg(long, value_enum, default_value = "auto")]
    backend: Backend,
    #[arg(long, value_enum, default_value = "df64")]
    precision: Precision,
}

#[derive(clap::Args)]
struct SimulateArgs {
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 20_230_323)]
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
    #[arg(long, default_value_t = 1000)]
    reps: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Permutation unit: `obs`, or a variable whose units move together (firm, cluster).
    #[arg(long, default_value = "obs")]
    unit: String,
    /// Resample units with replacement before permuting (bdiff's bsample).
    #[arg(long)]
    bsample: bool,
    #[arg(long)]
    weights: Option<String>,
    #[arg(long, value_enum, default_value = "auto")]
    backend: Backend,
    #[arg(long, value_enum, default_value = "df64")]
    precision: Precision,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Draw the permutation distribution of the first regressor's difference (FILE.svg|png).
    #[arg(long)]
    plot: Option<PathBuf>,
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
    #[arg(long, default_value_t = 0.0)]
    null: f64,
    #[arg(long, default_value_t = 999)]
    reps: usize,
    #[arg(long, value_enum, default_value = "rademacher")]
    weights_type: fegpu::inference::replicates::WildWeights,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Confidence level of the interval obtained by inverting the bootstrap test (0 = none).
    #[arg(long, default_value_t = 0.95)]
    level: f64,
    #[arg(long)]
    weights: Option<String>,
    #[arg(long, default_value = "reghdfe")]
    ssc: String,
    #[arg(long, value_enum, default_value = "auto")]
    backend: Backend,
    #[arg(long, value_enum, default_value = "df64")]
    precision: Precision,
    /// text or json
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Draw the bootstrap distribution with the observed statistic (FILE.svg|png).
    #[arg(long)]
    plot: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BootKind {
    Pairs,
    Wild,
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
    #[arg(long, default_value_t = demo::DEMO_ROWS)]
    rows: usize,
    /// Bootstrap weight vectors demeaned in one batch.
    #[arg(long, default_value_t = 1)]
    replicates: usize,
    /// cpu, gpu, or auto (= both, the GPU when an adapter opens).
    #[arg(long, value_enum, default_value = "auto")]
    backend: Backend,
    #[arg(long, value_enum, default_value = "df64")]
    precision: Precision,
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
    #[arg(long, default_value_t = 1e-8, value_parser = positive_tol)]
    tol: f64,
    /// Maximum demeaning iterations.
    #[arg(long, default_value_t = 10_000)]
    maxiter: usize,
    /// How the fixed effects are projected out: auto (exact paths where the structure allows,
    /// else conjugate gradients climbing Jacobi → two-effect block / Schwarz), ap (alternating
    /// projections), cg-jacobi, cg-block2, cg-schwarz.
    #[arg(long, value_enum, default_value = "auto")]
    solver: Solver,
    /// Keep singleton observations (reghdfe's keepsingletons).
    #[arg(long)]
    keep_singletons: bool,
    /// Where the demeaning runs: auto (the backend measured faster for the command: the GPU for large resident replicate work on real hardware, else the CPU; see README), cpu, gpu.
    #[arg(long, value_enum, default_value = "auto")]
    backend: Backend,
    /// GPU arithmetic: df64 (f32 pairs, any adapter) or f64 (needs SHADER_F64).
    #[arg(long, value_enum, default_value = "df64")]
    precision: Precision,
    /// For IV models: `second` (2SLS with diagnostics) or `first` (the first-stage regressions
    /// as a table, one column per endogenous regressor).
    #[arg(long, value_enum, default_value = "second")]
    stage: Stage,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Stage {
    First,
    Second,
}

/// `--tol`: a finite positive number.
fn positive_tol(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("the tolerance must be a finite positive number, not {s}"))
    }
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
    #[arg(long, default_value_t = demo::DEMO_ROWS)]
    rows: usize,
    #[arg(long, default_value_t = demo::DEMO_SEED)]
    seed: u64,
}

/// Write `text` to `path` through a temporary file (never a half-written table).
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let shown = path.display().to_string();
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|f| f.to_str()).unwrap_or("out"),
        std::process::id()
    ));
    std::fs::write(&tmp, text).map_err(|e| Error::io(tmp.display().to_string(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(shown, e)
    })
}

fn run_fit(a: FitArgs) -> Result<()> {
    if !(a.tol > 0.0) {
        return Err(Error::Usage(format!("--tol must be positive (got {})", a.tol)));
    }
    let vcov = VcovSpec::parse(&a.vcov)?;
    let ssc = Ssc::parse(&a.ssc)?;
    let mut models: Vec<formula::Model> = a.formulas.iter().map(|f| formula::parse(f)).collect::<Result<_>>()?;
    if a.stage == Stage::First {
        if !models.iter().any(|m| m.iv.is_some()) {
            return Err(Error::Usage(
                "--stage first needs a formula with an IV part (`| endog ~ instruments`)".into(),
            ));
        }
        models = models.iter().flat_map(first_stage_models).collect();
    }
    // Read only the columns some model, the weights or the clusters use.
    let mut columns: Vec<String> = Vec::new();
    let mut add = |c: &str| {
        if !columns.iter().any(|x| x == c) {
            columns.push(c.to_string());
        }
    };
    for m in &models {
        m.variables().iter().for_each(|v| add(v));
    }
    if let Some(w) = &a.weights {
        add(w);
    }
    for c in vcov.cluster_vars() {
        c.split('^').for_each(|v| add(v.trim()));
    }
    let table = load(&a.data, &columns)?;
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
        ..FitOptions::default()
    };
    let demeaner = choose(a.backend, a.precision, Workload::Fit, &mut |n| eprintln!("note: {n}"))?;
    let mut results = Vec::new();
    let mut table = Some(table);
    for (k, m) in models.iter().enumerate() {
        let r = if k + 1 == models.len() {
            fit_last(table.take().expect("the table"), m, &opts, demeaner.as_ref())?
        } else {
            fit(table.as_ref().expect("the table"), m, &opts, demeaner.as_ref())?
        };
        for n in &r.notes {
            eprintln!("note ({}): {n}", m.formula);
        }
        results.push(r);
    }
    let text = render(&results, a.format, a.stat)?;
    match &a.output {
        Some(p) => write_atomically(p, &text),
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| Error::io("stdout", e)),
    }
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
    let (cpu, gpu) = match a.backend {
        Backend::Cpu => (true, false),
        Backend::Gpu => (false, true),
        Backend::Auto => (true, !list_adapters().is_empty()),
    };
    let rows = fegpu::bench::run(a.rows, a.replicates, a.precision, cpu, gpu)?;
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

/// Refuse a plot path we cannot write before spending time on replicates.
fn check_plot_path(p: &Option<PathBuf>) -> Result<()> {
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
    }
    Ok(())
}

/// The OLS model of a resampling command, with its replicate count checked.
fn resampling_model(f: &str, reps: usize, cmd: &str) -> Result<formula::Model> {
    let model = formula::parse(f)?;
    if model.iv.is_some() {
        return Err(Error::Usage(format!("fegpu {cmd} supports OLS formulas only")));
    }
    if reps == 0 {
        return Err(Error::Usage("--reps must be positive".into()));
    }
    Ok(model)
}

fn run_boot(a: BootArgs) -> Result<()> {
    check_plot_path(&a.plot)?;
    use fegpu::data::{prepare, PrepareOptions};
    use fegpu::inference::wild::{wild_bootstrap, WildOptions};
    let model = resampling_model(&a.formula, a.reps, "boot")?;
    if !(0.0..1.0).contains(&a.level) {
        return Err(Error::Usage(format!("--level must be in [0, 1) (got {})", a.level)));
    }
    let mut columns = model.variables();
    a.cluster.split('^').for_each(|c| columns.push(c.trim().to_string()));
    columns.extend(a.weights.iter().cloned());
    let table = load(&a.data, &columns)?;
    let design = prepare(
        &table,
        &model,
        &PrepareOptions {
            weights: a.weights.clone(),
            clusters: vec![a.cluster.clone()],
            ..Default::default()
        },
    )?;
    let param = a
        .param
        .clone()
        .or_else(|| model.rhs.first().map(|t| t.name()))
        .ok_or_else(|| Error::Usage("the model has no regressor to test".into()))?;
    let workload = match a.kind {
        BootKind::Wild => Workload::Fit,
        BootKind::Pairs => Workload::Replicates {
            cells: design.nobs() * (design.x.len() + 1),
            vectors: a.reps,
            resident: fegpu::inference::resident_on_device(
                &design,
                &DemeanOptions::default(),
                design.clusters.first().map(|c| c.ids.as_slice()),
            ),
        },
    };
    let demeaner = choose(a.backend, a.precision, workload, &mut |n| eprintln!("note: {n}"))?;
    let opts = WildOptions {
        coefficient: param,
        null: a.null,
        reps: a.reps,
        weights: a.weights_type,
        seed: a.seed,
        level: (a.level > 0.0).then_some(a.level),
        ssc: Ssc::parse(&a.ssc)?,
        demean: DemeanOptions::default(),
    };
    if a.kind == BootKind::Pairs {
        use fegpu::inference::bootstrap::{pairs_bootstrap, PairsOptions};
        let level = if a.level > 0.0 { a.level } else { 0.95 };
        let popts = PairsOptions {
            reps: a.reps,
            seed: a.seed,
            level,
            demean: DemeanOptions::default(),
            memory_budget: 512 << 20,
            progress: true,
        };
        let r = pairs_bootstrap(&design, &popts, demeaner.as_ref())?;
        if let Some(p) = &a.plot {
            let c = r
                .coefficients
                .iter()
                .position(|c| c.name == opts.coefficient)
                .unwrap_or(0);
            fegpu::report::plot::histogram_svg(
                p,
                &r.draws[c],
                r.coefficients[c].estimate,
                &format!(
                    "Pairs bootstrap of {} ({} replicates)",
                    r.coefficients[c].name, r.reps_used
                ),
                &r.coefficients[c].name,
            )?;
        }
        if a.format == Format::Json {
            #[derive(serde::Serialize)]
            struct Out<'a> {
                formula: &'a str,
                kind: &'a str,
                cluster: &'a str,
                backend: String,
                #[serde(skip_serializing_if = "Option::is_none")]
                df64_selftest: Option<fegpu::gpu::selftest::Status>,
                pairs: &'a fegpu::inference::bootstrap::PairsResult,
            }
            let out = Out {
                formula: &a.formula,
                kind: "pairs",
                cluster: &a.cluster,
                backend: demeaner.name(),
                df64_selftest: demeaner.df64_selftest(),
                pairs: &r,
            };
            print_json(&out)?;
        } else {
            println!(
                "Pairs cluster bootstrap ({} clusters of {}), {} replicates used ({} failed), seed {}",
                r.clusters, a.cluster, r.reps_used, r.reps_failed, r.seed
            );
            println!(
                "{:<16} {:>14} {:>14} {:>14} {:>14}",
                "",
                "estimate",
                "boot s.e.",
                format!("{:.0}% low", level * 100.0),
                "high"
            );
            for c in &r.coefficients {
                println!(
                    "{:<16} {:>14.6} {:>14.6} {:>14.6} {:>14.6}",
                    c.name, c.estimate, c.std_error, c.ci_low, c.ci_high
                );
            }
        }
        return Ok(());
    }
    let r = wild_bootstrap(&design, &opts, demeaner.as_ref())?;
    if let Some(p) = &a.plot {
        fegpu::report::plot::histogram_svg(
            p,
            &r.t_boot,
            r.t,
            &format!("Wild cluster bootstrap t of {} ({} replicates)", r.coefficient, r.reps),
            "t*",
        )?;
    }
    match a.format {
        Format::Json => {
            #[derive(serde::Serialize)]
            struct Out<'a> {
                formula: &'a str,
                kind: &'a str,
                backend: String,
                #[serde(skip_serializing_if = "Option::is_none")]
                df64_selftest: Option<fegpu::gpu::selftest::Status>,
                wild: &'a fegpu::inference::wild::WildResult,
            }
            let out = Out {
                formula: &a.formula,
                kind: "wild",
                backend: demeaner.name(),
                df64_selftest: demeaner.df64_selftest(),
                wild: &r,
            };
            print_json(&out)?;
        }
        _ => {
            println!(
                "Wild cluster bootstrap (WCR, {:?} weights) of `{}` in {}",
                r.weights, r.coefficient, a.formula
            );
            println!(
                "  estimate {:.6}   H0: {} = {}   t = {:.4}",
                r.estimate, r.coefficient, r.null, r.t
            );
            println!(
                "  bootstrap p-value {:.4}   ({} replicates{}, {} clusters, seed {})",
                r.p,
                r.reps,
                if r.full_enumeration { ", full enumeration" } else { "" },
                r.clusters,
                r.seed
            );
            if let (Some((lo, hi)), Some(level)) = (r.ci, r.level) {
                println!(
                    "  {:.0}% confidence interval (test inversion): [{lo:.6}, {hi:.6}]",
                    level * 100.0
                );
            }
        }
    }
    Ok(())
}

fn run_bdiff(a: BdiffArgs) -> Result<()> {
    check_plot_path(&a.plot)?;
    use fegpu::data::{prepare, PrepareOptions};
    use fegpu::inference::permutation::{bdiff, BdiffOptions};
    let model = resampling_model(&a.formula, a.reps, "bdiff")?;
    let mut columns = model.variables();
    columns.push(a.group.clone());
    let unit = (a.unit != "obs").then(|| a.unit.clone());
    columns.extend(unit.iter().cloned());
    columns.extend(a.weights.iter().cloned());
    let table = load(&a.data, &columns)?;
    let popts = PrepareOptions {
        weights: a.weights.clone(),
        clusters: unit.iter().cloned().collect(),
        extra: vec![a.group.clone()],
        ..Default::default()
    };
    let design = prepare(&table, &model, &popts)?;
    let units = design.clusters.first().map(|c| (c.ids.as_slice(), c.levels));
    let workload = Workload::Replicates {
        cells: design.nobs() * (design.x.len() + 1),
        vectors: 2 * a.reps,
        resident: fegpu::inference::resident_on_device(&design, &DemeanOptions::default(), units.map(|u| u.0)),
    };
    let demeaner = choose(a.backend, a.precision, workload, &mut |n| eprintln!("note: {n}"))?;
    let opts = BdiffOptions {
        reps: a.reps,
        seed: a.seed,
        bsample: a.bsample,
        demean: DemeanOptions::default(),
        memory_budget: 512 << 20,
        progress: true,
    };
    let t = std::time::Instant::now();
    let r = bdiff(&design, &design.extra[0], units, &opts, demeaner.as_ref())?;
    let secs = t.elapsed().as_secs_f64();
    if let Some(p) = &a.plot {
        let c = &r.coefficients[0];
        fegpu::report::plot::histogram_svg(
            p,
            &r.differences[0],
            c.difference,
            &format!(
                "Permutation distribution of the {} difference ({} replicates)",
                c.name, r.reps_used
            ),
            &format!("{} (group 1) − {} (group 0)", c.name, c.name),
        )?;
    }
    match a.format {
        Format::Json => {
            #[derive(serde::Serialize)]
            struct Out<'a> {
                formula: &'a str,
                group: &'a str,
                unit: &'a str,
                backend: String,
                #[serde(skip_serializing_if = "Option::is_none")]
                df64_selftest: Option<fegpu::gpu::selftest::Status>,
                seconds: f64,
                bdiff: &'a fegpu::inference::permutation::BdiffResult,
            }
            let out = Out {
                formula: &a.formula,
                group: &a.group,
                unit: &a.unit,
                backend: demeaner.name(),
                df64_selftest: demeaner.df64_selftest(),
                seconds: secs,
                bdiff: &r,
            };
            print_json(&out)?;
        }
        _ => {
            println!(
                "Permutation test of coefficient differences ({} = 1 minus {} = 0), unit: {}",
                a.group, a.group, a.unit
            );
            println!(
                "{:<16} {:>14} {:>14} {:>14} {:>10} {:>10}",
                "", "group 1", "group 0", "difference", "p", "p (2-sided)"
            );
            for c in &r.coefficients {
                println!(
                    "{:<16} {:>14.6} {:>14.6} {:>14.6} {:>10.4} {:>10.4}",
                    c.name, c.estimate_group1, c.estimate_group0, c.difference, c.p, c.p_two_sided
                );
            }
            println!(
                "N = {} / {}; {} replicates used{} ({} failed), {} units ({} in group 1), seed {}{}; {:.2} s on {}",
                r.nobs_group1,
                r.nobs_group0,
                r.reps_used,
                if r.enumerated {
                    " (all assignments enumerated: exact)"
                } else {
                    ""
                },
                r.reps_failed,
                r.units,
                r.units_group1,
                r.seed,
                if r.bsample { ", bootstrap-resampled" } else { "" },
                secs,
                demeaner.name()
            );
            println!("p: share of permuted differences at least as extreme as the observed one, in its direction (bdiff); p (2-sided): |d*| >= |d|.");
        }
    }
    Ok(())
}

/// Peak resident memory of this process (Linux `VmHWM`), for the raw-data steps' reports.
fn peak_memory() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l["VmHWM:".len()..].trim().to_string())
        })
        .unwrap_or_else(|| "n/a".into())
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
    let demeaner = choose(a.backend, a.precision, Workload::Fit, &mut |m| eprintln!("{m}"))?;
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
    let demeaner = choose(a.backend, a.precision, Workload::Fit, &mut |m| eprintln!("{m}"))?;
    let opts = replicate::Options {
        raw: a.raw,
        panel: a.panel,
        out: a.out.clone(),
        scale: a.scale,
        seed: a.seed,
        reps: a.reps,
        spec: a.spec,
    };
    let rep = replicate::run(&opts, demeaner.as_ref())?;
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
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Fit(a) => run_fit(a),
        Cmd::Demo(a) => run_demo(a),
        Cmd::Devices(a) => run_devices(a),
        Cmd::Bench(a) => run_bench(a),
        Cmd::Boot(a) => run_boot(a),
        Cmd::Bdiff(a) => run_bdiff(a),
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
