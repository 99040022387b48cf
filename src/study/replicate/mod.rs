//! `fegpu replicate`: the study's thirteen tables from raw data in one command.
//!
//! The tables are data ([`Spec`], `data/replicate_spec.json`; `--spec FILE` takes a researcher's
//! own): each column is a fixest formula with an optional sample filter, a split variable (the
//! column is then estimated on split == 1 and split == 0, with a Fisher permutation p-value of
//! the difference, as Stata's `bdiff`), a coefficient of interest and the name of a planted
//! value in the simulator's `truth.json`. One failing column (a split with too few
//! observations, say) is reported in its table and the rest still run; the run fails at the end
//! if anything failed.
//!
//! The specification follows the paper: a table or column `note` records each choice made
//! where the paper is ambiguous (printed under the table), `panel` lays consecutive columns out
//! as a panel of their own (Table 10's A and B), `labels` names variables as the paper does. Each
//! column is matched to the paper's published numbers (`data/paper_values.json`,
//! [`crate::study::paper`]) by `TABLE:LABEL`, and the tables show them beside ours. A column
//! clustered on fewer than [`FEW_CLUSTERS`] clusters also gets the restricted wild cluster
//! bootstrap p-value ([`crate::inference::wild`]), since its clustered t-test over-rejects.
//!
//! Outputs in `--out`: `tableN.{md,tex,csv}` in the paper's layout, `results.json` with every
//! result, `report.html` (each table with its own coefficient plot against the planted truth and
//! its permutation distributions, then the timing; SVG inline), `timing.{md,csv}` (seconds and
//! backend per stage), the panel, and, when the data were simulated, `raw/` with `truth.json`.
//!
//! The permutation tests can be spread over machines ([`Sharding`]): `--shard I/K` builds the
//! data, skips the columns' fits and computes shard I of every split test's replicates
//! ([`SplitReplicates::Shard`]) into `out/shard_I.json` (`crate::resampling::shard_file`, one
//! part per test keyed by table, column, split and unit, with the test's sample fingerprint);
//! `--merge FILE...` runs the whole study with each test's replicates read from the K files
//! ([`SplitReplicates::Merged`]) after checking they are this run's (seed, reps, scale, the
//! specification's hash, each test's sample). The p-values then come from the same `assemble`
//! as a single run's, so the tables and plots are the single run's byte for byte.
//!
//! Files: [`spec`] (the specification and sample filters), [`run`] (a table's columns and split
//! tests), [`render`] (tables, timing and report.html); this file drives a run (simulate or read,
//! build the panel, run every table, write the outputs atomically, shard and merge).

mod render;
mod run;
mod spec;

pub use render::*;
pub use run::*;
pub use spec::*;

pub use crate::report::write_atomic;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use polars::prelude::DataFrame;
use serde::Serialize;

use crate::data::load::{self};
use crate::demean::Demeaner;
use crate::error::{Error, Result};
use crate::inference::shard::Shard;
use crate::resampling::shard_file::{self};
use crate::resampling::ReplicateSpec;

/// Seconds and backend of one stage.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub stage: String,
    pub seconds: f64,
    pub backend: String,
}

/// Everything a run produced (written as `results.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Replication {
    pub raw: String,
    pub simulated: bool,
    pub backend: String,
    pub reps: usize,
    pub seed: u64,
    pub panel_rows: usize,
    pub tables: Vec<TableResult>,
    pub timing: Vec<Stage>,
    pub truth: BTreeMap<String, f64>,
    pub failures: usize,
    pub total_seconds: f64,
    /// Regressors shown as the "Controls" row.
    pub controls: Vec<String>,
}

/// Load `truth.json` of a simulated raw directory (its `planted` values), if present.
pub fn load_truth(raw: &Path) -> Result<Option<BTreeMap<String, f64>>> {
    let p = raw.join("truth.json");
    if !p.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&p).map_err(|e| Error::io(p.display().to_string(), e))?;
    let t: crate::study::simulate::Truth = serde_json::from_str(&text)
        .map_err(|e| Error::io(p.display().to_string(), format!("not a truth file: {e}")))?;
    Ok(Some(t.planted))
}

/// Read a panel (Parquet or CSV) fully.
pub fn read_panel(path: &Path) -> Result<DataFrame> {
    let source = path.display().to_string();
    let t = load::load(&source, &load::column_names(&source)?)?;
    Ok(t.frame().clone())
}

/// What `fegpu replicate` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Raw tables; `None` simulates them into `out/raw` first.
    pub raw: Option<PathBuf>,
    /// A panel built earlier (skips matching and the panel build).
    pub panel: Option<PathBuf>,
    pub out: PathBuf,
    pub scale: crate::study::simulate::Scale,
    pub seed: u64,
    pub reps: usize,
    pub spec: Option<PathBuf>,
    pub sharding: Sharding,
}

/// Splitting the permutation tests over machines: `--shard I/K` computes shard I's replicates
/// of every split test and writes `out/shard_I.json` (no tables); `--merge FILE...` runs the
/// study with the tests' replicates taken from the K shard files (README, "Sharding").
#[derive(Debug, Clone, Default)]
pub enum Sharding {
    #[default]
    None,
    Shard(Shard),
    Merge(Vec<PathBuf>),
}

/// The split tests' replicates for `o.sharding` (merged shard files checked against `key`).
fn split_replicates(o: &Options, key: &ReplicateSpec) -> Result<SplitReplicates> {
    Ok(match &o.sharding {
        Sharding::None => SplitReplicates::All,
        Sharding::Shard(s) => SplitReplicates::Shard(*s, Arc::new(Mutex::new(Vec::new()))),
        Sharding::Merge(paths) => {
            let files = shard_file::read_run(paths)?;
            files[0].check_spec(&crate::resampling::Spec::Replicate(key.clone()))?;
            SplitReplicates::Merged(Arc::new(shard_file::merge_splits(&files)?))
        }
    })
}

/// Write shard `shard`'s file (its split tests' replicates) into `o.out`.
fn write_shard(
    o: &Options,
    key: ReplicateSpec,
    rows: usize,
    replicates: &SplitReplicates,
    backend: &str,
    seconds: f64,
) -> Result<PathBuf> {
    let SplitReplicates::Shard(shard, sink) = replicates else {
        return Err(Error::Usage("not a shard run".into()));
    };
    let tests = std::mem::take(&mut *sink.lock().expect("the shard's tests"));
    let data = o
        .panel
        .as_ref()
        .or(o.raw.as_ref())
        .map_or("simulated".into(), |p| p.display().to_string());
    let file = shard_file::ShardFile::replicate(key, rows, data, *shard, backend.into(), seconds, tests);
    let path = o.out.join(format!("shard_{}.json", shard.number()));
    shard_file::write(&path, &file)?;
    Ok(path)
}

fn stage(stages: &mut Vec<Stage>, name: &str, t0: Instant, backend: &str) {
    let s = t0.elapsed().as_secs_f64();
    eprintln!("[{s:>7.2} s] {name} ({backend})");
    stages.push(Stage {
        stage: name.to_string(),
        seconds: s,
        backend: backend.to_string(),
    });
}

/// Run the whole replication and write its outputs into `o.out`, which afterwards holds this
/// run's results and nothing else ([`crate::report::directory`]: a lock, a staging directory
/// renamed into place, `manifest.json` last). Shard runs write only their shard file, so the
/// shards of one run can share a directory.
pub fn run(o: &Options, demeaner: &dyn Demeaner) -> Result<Replication> {
    if matches!(o.sharding, Sharding::Shard(_)) {
        return run_into(o, &o.out, demeaner);
    }
    let inputs: Vec<&Path> = [o.raw.as_deref(), o.panel.as_deref()].into_iter().flatten().collect();
    let dir = crate::report::directory::OutputDir::claim(&o.out, &inputs)?;
    // a spec kept inside --out survives: it is copied to the same place in the new directory
    if let Some(rel) = o.spec.as_deref().and_then(|s| s.strip_prefix(&o.out).ok()) {
        let copy = dir.staging().join(rel);
        if let Some(parent) = copy.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent.display().to_string(), e))?;
        }
        let spec = o.spec.as_deref().unwrap();
        std::fs::copy(spec, &copy).map_err(|e| Error::io(spec.display().to_string(), e))?;
    }
    let staged = Options {
        out: dir.staging().to_path_buf(),
        ..o.clone()
    };
    let rep = run_into(&staged, &o.out, demeaner)?;
    write_manifest(o, &staged.out, &rep)?;
    dir.commit()?;
    Ok(rep)
}

/// `manifest.json`: what produced the directory, with hashes of its inputs, written last.
fn write_manifest(o: &Options, staging: &Path, rep: &Replication) -> Result<()> {
    let mut inputs = serde_json::Map::new();
    let raw = o.raw.clone().unwrap_or_else(|| staging.join("raw"));
    let mut files: Vec<PathBuf> = match &o.panel {
        Some(p) => vec![p.clone()],
        None => std::fs::read_dir(&raw)
            .map_err(|e| Error::io(raw.display().to_string(), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect(),
    };
    files.extend(o.spec.iter().cloned());
    files.sort();
    for f in files {
        let shown = f.strip_prefix(staging).map(Path::to_path_buf).unwrap_or(f.clone());
        inputs.insert(shown.display().to_string(), shard_file::file_hash(&f)?.into());
    }
    let manifest = serde_json::json!({
        "fegpu": env!("CARGO_PKG_VERSION"),
        "command": "replicate",
        "seed": o.seed,
        "reps": o.reps,
        "scale": format!("{:?}", o.scale),
        "spec": o.spec.as_ref().map(|p| p.display().to_string()),
        "simulated": rep.simulated,
        "backend": rep.backend,
        "inputs_fnv1a": inputs,
        "failures": rep.failures,
        "completed": true,
    });
    let text =
        serde_json::to_string_pretty(&manifest).map_err(|e| Error::Data(format!("writing manifest.json: {e}")))?;
    write_atomic(&staging.join("manifest.json"), &text)
}

/// [`run`] into `o.out` (the staging directory); paths recorded in the results name
/// `final_out` instead.
fn run_into(o: &Options, final_out: &Path, demeaner: &dyn Demeaner) -> Result<Replication> {
    let start = Instant::now();
    let (spec_text, spec_source) = match &o.spec {
        Some(p) => (
            std::fs::read_to_string(p).map_err(|e| Error::io(p.display().to_string(), e))?,
            p.display().to_string(),
        ),
        None => (DEFAULT_SPEC.to_string(), "the built-in specification".to_string()),
    };
    let spec = Spec::parse(&spec_text, &spec_source)?;
    let key = ReplicateSpec {
        seed: o.seed,
        reps: o.reps,
        scale: format!("{:?}", o.scale),
        tables: shard_file::text_hash(&spec_text),
    };
    // the split tests are permutation tests at 5%: as `bdiff`, at least 1/α − 1 = 19 replicates
    let min = crate::resampling::min_reps(&crate::resampling::Spec::Replicate(key.clone()));
    if o.reps < min {
        return Err(Error::Usage(format!(
            "fegpu replicate --reps {} is too few: the permutation tests need at least {min} replicates (their p-values move in steps of 1/(B + 1), so a 5% test can only reject with B >= 19)",
            o.reps
        )));
    }
    let replicates = split_replicates(o, &key)?;
    std::fs::create_dir_all(&o.out).map_err(|e| Error::io(o.out.display().to_string(), e))?;
    let backend = demeaner.name();
    let mut stages = Vec::new();

    // data
    let (raw, simulated) = match (&o.raw, &o.panel) {
        (Some(r), _) => (r.clone(), false),
        (None, Some(p)) => (p.parent().map(Path::to_path_buf).unwrap_or_default(), false),
        (None, None) => {
            let t0 = Instant::now();
            let dir = o.out.join("raw");
            eprintln!(
                "simulating the study's raw data ({:?} scale, seed {}) into {}",
                o.scale,
                o.seed,
                dir.display()
            );
            crate::study::simulate::simulate(&dir, o.seed, o.scale, false)?;
            stage(&mut stages, "simulate raw data", t0, "cpu");
            (dir, true)
        }
    };
    let truth = load_truth(&raw)?.unwrap_or_default();
    let simulated = simulated || !truth.is_empty();
    let df = match &o.panel {
        Some(p) => {
            let t0 = Instant::now();
            let df = read_panel(p)?;
            stage(&mut stages, "read panel", t0, "cpu");
            df
        }
        None => {
            let t0 = Instant::now();
            eprintln!("building the panel from {}", raw.display());
            let (mut df, rep) = crate::study::panel::build_panel(&raw, &Default::default(), demeaner)?;
            for (name, s) in &rep.seconds {
                stages.push(Stage {
                    stage: format!("panel: {name}"),
                    seconds: *s,
                    backend: if name.starts_with("quality") {
                        backend.clone()
                    } else {
                        "cpu".into()
                    },
                });
            }
            load::save(&mut df, &o.out.join("panel.parquet"))?;
            stage(&mut stages, "build panel (total)", t0, &backend);
            df
        }
    };

    // tables
    let ropts = RunOptions {
        reps: o.reps,
        seed: o.seed,
        replicates,
        paper: Arc::new(crate::study::paper::by_spec_match(crate::study::paper::PAPER_VALUES)?),
    };
    let mut tables = Vec::new();
    for t in &spec.tables {
        let t0 = Instant::now();
        let r = run_table(&df, &spec, t, &truth, &ropts, demeaner);
        let what = if t.counts.is_some() {
            "counts".to_string()
        } else {
            format!(
                "{} columns{}{}",
                r.columns.len(),
                if r.splits.is_empty() {
                    String::new()
                } else {
                    format!(", {} permutation tests × {} reps", r.splits.len(), o.reps)
                },
                if r.failures > 0 {
                    format!(", {} FAILED", r.failures)
                } else {
                    String::new()
                }
            )
        };
        stage(&mut stages, &format!("table {}: {what}", t.id), t0, &backend);
        tables.push(r);
    }

    if let SplitReplicates::Shard(..) = &ropts.replicates {
        let secs = start.elapsed().as_secs_f64();
        let path = write_shard(o, key, df.height(), &ropts.replicates, &backend, secs)?;
        eprintln!(
            "wrote {}; combine the shards with `fegpu replicate --merge`",
            path.display()
        );
        return Ok(Replication {
            raw: raw.display().to_string(),
            simulated,
            backend,
            reps: o.reps,
            seed: o.seed,
            panel_rows: df.height(),
            tables: vec![],
            timing: stages,
            truth,
            failures: 0,
            total_seconds: secs,
            controls: spec.control_names(),
        });
    }

    // outputs
    let t0 = Instant::now();
    let controls = spec.control_names();
    write_tables(&o.out, &tables, &controls)?;
    let failures: usize = tables.iter().map(|t| t.failures).sum();
    stage(&mut stages, "write tables", t0, "cpu");
    let shown_raw = match raw.strip_prefix(&o.out) {
        Ok(rest) => final_out.join(rest),
        Err(_) => raw.clone(),
    };
    let rep = Replication {
        raw: shown_raw.display().to_string(),
        simulated,
        backend: backend.clone(),
        reps: o.reps,
        seed: o.seed,
        panel_rows: df.height(),
        tables,
        timing: stages,
        truth,
        failures,
        total_seconds: start.elapsed().as_secs_f64(),
        controls,
    };
    let (md, csv) = timing_tables(&rep.timing);
    write_atomic(&o.out.join("timing.md"), &md)?;
    write_atomic(&o.out.join("timing.csv"), &csv)?;
    let json = serde_json::to_string_pretty(&rep).map_err(|e| Error::Data(format!("writing results.json: {e}")))?;
    write_atomic(&o.out.join("results.json"), &json)?;
    write_atomic(&o.out.join("report.html"), &html_report(&rep, &o.out)?)?;
    Ok(rep)
}
