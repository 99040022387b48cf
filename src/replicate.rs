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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use polars::prelude::{BooleanChunked, DataFrame, NewChunkedArray};
use serde::{Deserialize, Serialize};

use crate::data::load::{self, Table};
use crate::data::{prepare, PrepareOptions};
use crate::demean::{DemeanOptions, Demeaner};
use crate::error::{Error, Result};
use crate::estimate::vcov::VcovSpec;
use crate::estimate::{fit, FitOptions, FitResult};
use crate::inference::permutation::{assemble, bdiff, bdiff_draws, BdiffOptions, BdiffResult};
use crate::inference::replicates::WildWeights;
use crate::inference::shard::Shard;
use crate::inference::wild::{wild_bootstrap, WildOptions};
use crate::report::table::{fmt_num, Grid};
use crate::report::{writers, Stat};
use crate::resampling::shard_file::{self, Fingerprint, SplitPart};
use crate::resampling::ReplicateSpec;
use crate::study::paper::PaperColumn;

/// The shipped specification of the study's tables.
pub const DEFAULT_SPEC: &str = include_str!("../data/replicate_spec.json");

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Spec {
    #[serde(default)]
    pub about: String,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub macros: BTreeMap<String, String>,
    /// Variable names as the paper writes them (`digtech` → `Digtech`), for the displayed
    /// tables; results.json keeps the names.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub tables: Vec<TableSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Defaults {
    #[serde(default = "default_vcov")]
    pub vcov: String,
    /// Regressors shown as one "Controls: Yes/No" row instead of coefficient by coefficient
    /// (the paper's layout; macros allowed). The JSON keeps every coefficient.
    #[serde(default)]
    pub controls: Option<String>,
    #[serde(default = "default_param")]
    pub param: String,
}

fn default_vcov() -> String {
    "cluster:country".into()
}
fn default_param() -> String {
    "digtech".into()
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            vcov: default_vcov(),
            controls: None,
            param: default_param(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TableSpec {
    pub id: String,
    pub title: String,
    /// Printed under the table: the choices made where the paper is ambiguous.
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub columns: Vec<ColumnSpec>,
    #[serde(default)]
    pub counts: Option<CountsSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ColumnSpec {
    pub label: String,
    pub formula: String,
    #[serde(default)]
    pub sample: Option<String>,
    #[serde(default)]
    pub vcov: Option<String>,
    #[serde(default)]
    pub param: Option<String>,
    #[serde(default)]
    pub split: Option<String>,
    #[serde(default)]
    pub split_labels: Option<[String; 2]>,
    /// Permutation unit of the split test: `obs` (bdiff's default) or a variable whose units
    /// move together (e.g. `firm_id` for a firm-level split). When the split varies within a
    /// unit, observations are permuted instead and the table says so.
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub truth: Option<String>,
    /// The planted values of a split column's two sides (split == 1, split == 0), in place of
    /// `truth`, where the simulator plants a different effect on each side.
    #[serde(default)]
    pub split_truth: Option<[String; 2]>,
    /// A pattern the simulator plants by direction only: a `sign:*` key of truth.json (±1).
    #[serde(default)]
    pub planted_sign: Option<String>,
    /// The panel of the table the column belongs to (consecutive columns with one name form a
    /// panel, laid out as its own block: Table 10's Panels A and B).
    #[serde(default)]
    pub panel: Option<String>,
    /// Printed under the table, after the column's label.
    #[serde(default)]
    pub note: Option<String>,
}

/// Distinct units per level of a categorical variable (Table 7's firm counts).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CountsSpec {
    pub variable: String,
    pub unit: String,
    pub levels: Vec<(f64, String)>,
    #[serde(default)]
    pub truth: Vec<String>,
}

impl Spec {
    /// Parse a specification (JSON) and check it: known macros, parseable formulas and vcov,
    /// well-formed sample filters.
    pub fn parse(text: &str, source: &str) -> Result<Spec> {
        let spec: Spec = serde_json::from_str(text)
            .map_err(|e| Error::Usage(format!("{source}: not a valid specification: {e}")))?;
        if spec.tables.is_empty() {
            return Err(Error::Usage(format!("{source}: the specification has no tables")));
        }
        for t in &spec.tables {
            for c in &t.columns {
                let where_ = format!("{source}, table {} column `{}`", t.id, c.label);
                let f = spec
                    .expand(&c.formula)
                    .map_err(|e| Error::Usage(format!("{where_}: {e}")))?;
                crate::formula::parse(&f).map_err(|e| Error::Usage(format!("{where_}: {e}")))?;
                VcovSpec::parse(c.vcov.as_deref().unwrap_or(&spec.defaults.vcov))
                    .map_err(|e| Error::Usage(format!("{where_}: {e}")))?;
                if let Some(s) = &c.sample {
                    parse_filter(s).map_err(|e| Error::Usage(format!("{where_}: {e}")))?;
                }
            }
            if t.columns.is_empty() && t.counts.is_none() {
                return Err(Error::Usage(format!(
                    "{source}, table {}: no columns and no counts",
                    t.id
                )));
            }
        }
        Ok(spec)
    }

    /// The variables collapsed into the "Controls" row.
    pub fn control_names(&self) -> Vec<String> {
        self.defaults
            .controls
            .as_deref()
            .and_then(|c| self.expand(c).ok())
            .map(|c| {
                c.split('+')
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A variable or interaction (`digtech:vol2`) as the paper writes it (`labels`; `×` joins
    /// the factors of an interaction); names without a label are kept.
    pub fn display(&self, name: &str) -> String {
        display_name(&self.labels, name)
    }

    /// Expand `{NAME}` macros.
    pub fn expand(&self, formula: &str) -> std::result::Result<String, String> {
        let mut out = String::new();
        let mut rest = formula;
        while let Some(i) = rest.find('{') {
            out.push_str(&rest[..i]);
            let Some(j) = rest[i..].find('}') else {
                return Err(format!("unclosed `{{` in `{formula}`"));
            };
            let name = &rest[i + 1..i + j];
            match self.macros.get(name) {
                Some(v) => out.push_str(v),
                None => return Err(format!("unknown macro {{{name}}} in `{formula}`")),
            }
            rest = &rest[i + j + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// `name` (a variable or an interaction `a:b`) with each factor relabelled by `labels`.
fn display_name(labels: &BTreeMap<String, String>, name: &str) -> String {
    name.split(':')
        .map(|v| labels.get(v).cloned().unwrap_or_else(|| v.to_string()))
        .collect::<Vec<_>>()
        .join("×")
}

/// One clause `var op value` of a sample filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub var: String,
    pub op: String,
    pub value: f64,
}

/// Parse `a == 1 & b >= 2.5` (ops ==, !=, >=, <=, >, <).
pub fn parse_filter(s: &str) -> std::result::Result<Vec<Clause>, String> {
    s.split('&')
        .map(|c| {
            let c = c.trim();
            for op in ["==", "!=", ">=", "<=", ">", "<"] {
                if let Some(i) = c.find(op) {
                    let var = c[..i].trim();
                    let val = c[i + op.len()..].trim();
                    if var.is_empty() || !var.chars().all(|ch| ch.is_alphanumeric() || ch == '_') {
                        return Err(format!("sample clause `{c}`: `{var}` is not a variable name"));
                    }
                    let value: f64 = val
                        .parse()
                        .map_err(|_| format!("sample clause `{c}`: `{val}` is not a number"))?;
                    return Ok(Clause {
                        var: var.to_string(),
                        op: op.to_string(),
                        value,
                    });
                }
            }
            Err(format!(
                "sample clause `{c}`: expected `variable op number` with op one of == != >= <= > <"
            ))
        })
        .collect()
}

fn holds(op: &str, x: f64, v: f64) -> bool {
    match op {
        "==" => x == v,
        "!=" => x != v,
        ">=" => x >= v,
        "<=" => x <= v,
        ">" => x > v,
        _ => x < v,
    }
}

/// Rows of `df` where every clause holds (missing values fail every clause).
pub fn filter_rows(df: &DataFrame, clauses: &[Clause], source: &str) -> Result<DataFrame> {
    if clauses.is_empty() {
        return Ok(df.clone());
    }
    let t = Table::new(df.clone(), source.to_string());
    let mut mask = vec![true; df.height()];
    for c in clauses {
        let v = t.numeric(&c.var)?;
        for (m, x) in mask.iter_mut().zip(&v) {
            *m &= x.is_finite() && holds(&c.op, *x, c.value);
        }
    }
    let mask = BooleanChunked::from_slice("mask".into(), &mask);
    df.filter(&mask)
        .map_err(|e| Error::Data(format!("{source}: filtering rows: {e}")))
}

/// t critical value for a two-sided test at `alpha` (bisection on the tail).
pub fn t_critical(alpha: f64, df: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, 1000.0);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if crate::stats::t_two_sided_p(mid, df) > alpha {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// One estimated column.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnResult {
    pub label: String,
    pub formula: String,
    pub sample: Option<String>,
    pub param: String,
    pub estimate: Option<f64>,
    pub std_error: Option<f64>,
    pub ci95: Option<[f64; 2]>,
    pub truth: Option<f64>,
    /// Whether the 95% interval contains the planted truth (simulated data only).
    pub covers_truth: Option<bool>,
    /// The planted direction (±1) of a pattern planted without a magnitude.
    pub planted_sign: Option<f64>,
    pub error: Option<String>,
    pub result: Option<FitResult>,
    /// The panel of the table (`ColumnSpec::panel`).
    pub panel: Option<String>,
    pub note: Option<String>,
    /// The split test this column is one side of: (index into the table's `splits`, side 1 or 0).
    pub split_test: Option<(usize, u8)>,
    /// The paper's published numbers for this column (`data/paper_values.json`).
    pub paper: Option<PaperColumn>,
    /// The wild cluster bootstrap check of a clustered column with few clusters.
    pub few_clusters: Option<FewClusters>,
}

/// Below this many clusters a clustered t-test over-rejects (Cameron, Gelbach & Miller 2008;
/// MacKinnon & Webb 2018): such a column also gets the restricted wild cluster bootstrap.
pub const FEW_CLUSTERS: usize = 30;

/// The restricted wild cluster bootstrap (WCR) p-value of H0: param = 0 for a column clustered
/// on fewer than [`FEW_CLUSTERS`] clusters, beside its clustered t-test.
#[derive(Debug, Clone, Serialize)]
pub struct FewClusters {
    pub cluster: String,
    pub clusters: usize,
    pub p: Option<f64>,
    pub reps: usize,
    /// `webb` with 12 clusters or fewer (Rademacher weights have too few distinct draws),
    /// `rademacher` otherwise.
    pub weights: String,
    pub full_enumeration: bool,
    /// Why there is no bootstrap p-value (IV columns: the WCR is implemented for OLS).
    pub error: Option<String>,
}

/// The permutation test of one split.
#[derive(Debug, Clone, Serialize)]
pub struct SplitTest {
    pub label: String,
    pub split: String,
    pub param: String,
    pub difference: f64,
    pub p: f64,
    pub reps: usize,
    /// Replications that could not be estimated (left out of `p`, and said so in the notes).
    pub failed: usize,
    /// What was permuted (`obs` or the unit variable).
    pub unit: String,
    pub note: Option<String>,
    pub error: Option<String>,
    #[serde(skip)]
    pub draws: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CountRow {
    pub level: f64,
    pub label: String,
    pub units: usize,
    /// Share of `units` among the units of all the levels, in percent.
    pub share_pct: f64,
    /// Panel rows at this level (the paper's 样本数, observations).
    pub rows: usize,
    pub truth: Option<f64>,
    pub paper: Option<PaperColumn>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableResult {
    pub id: String,
    pub title: String,
    pub note: Option<String>,
    /// The specification's display labels (`Spec::labels`), for the table files.
    #[serde(skip)]
    pub labels: BTreeMap<String, String>,
    /// On simulated data: what the simulator planted for this table and whether the estimates
    /// recovered it ([`recovery`]).
    pub recovery: Option<String>,
    pub columns: Vec<ColumnResult>,
    pub splits: Vec<SplitTest>,
    pub counts: Vec<CountRow>,
    pub seconds: f64,
    pub failures: usize,
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Replicates of each permutation test and of each few-cluster wild bootstrap.
    pub reps: usize,
    pub seed: u64,
    pub replicates: SplitReplicates,
    /// The paper's columns by `spec_match` ([`crate::study::paper::by_spec_match`]).
    pub paper: Arc<BTreeMap<String, PaperColumn>>,
}

/// What every column of a run shares.
struct Ctx<'a> {
    df: &'a DataFrame,
    spec: &'a Spec,
    truth: &'a BTreeMap<String, f64>,
    opts: &'a RunOptions,
    demeaner: &'a dyn Demeaner,
}

/// Where the split tests' permutation replicates come from (`--shard`, `--merge`).
#[derive(Debug, Clone, Default)]
pub enum SplitReplicates {
    /// Computed here, all of them.
    #[default]
    All,
    /// Only the shard's, collected for its shard file; the columns are not fitted.
    Shard(Shard, Arc<Mutex<Vec<SplitPart>>>),
    /// Taken from the merged shard files, by test key, with the test's estimation sample.
    Merged(Arc<BTreeMap<String, (Fingerprint, crate::inference::permutation::BdiffDraws)>>),
}

/// The permutation test `key` on `design`, its replicates as `opts.replicates` says.
fn split_bdiff(
    key: &str,
    design: &crate::data::Design,
    units: Option<(&[u32], usize)>,
    bopts: &BdiffOptions,
    opts: &RunOptions,
    demeaner: &dyn Demeaner,
) -> Result<BdiffResult> {
    let group = &design.extra[0];
    match &opts.replicates {
        SplitReplicates::All => bdiff(design, group, units, bopts, demeaner),
        SplitReplicates::Shard(shard, sink) => {
            let d = bdiff_draws(design, group, units, bopts, Some(*shard), demeaner)?;
            let part = SplitPart::new(key.to_string(), Fingerprint::of(design), &d);
            sink.lock().expect("the shard's tests").push(part);
            assemble(&d) // this shard's replicates alone: never written
        }
        SplitReplicates::Merged(tests) => {
            let (sample, d) = tests
                .get(key)
                .ok_or_else(|| Error::Usage(format!("the shard files have no test `{key}`")))?;
            if *sample != Fingerprint::of(design) {
                return Err(Error::Usage(format!(
                    "test `{key}`: the shards were computed on another estimation sample"
                )));
            }
            assemble(d)
        }
    }
}

/// Estimate one column of table `table` on the panel: `label` is the column's label in the
/// table (a split side's label), `side` the split clause and side of a split column.
fn estimate_column(
    cx: &Ctx,
    table: &str,
    col: &ColumnSpec,
    side: Option<(Clause, usize)>,
    label: String,
) -> ColumnResult {
    let spec = cx.spec;
    let formula = spec.expand(&col.formula).unwrap_or_else(|_| col.formula.clone());
    let param = col.param.clone().unwrap_or_else(|| spec.defaults.param.clone());
    let extra_filter = side.as_ref().map(|(c, _)| c.clone());
    let mut sample = col.sample.clone();
    if let Some(c) = &extra_filter {
        let s = format!("{} {} {}", c.var, c.op, c.value);
        sample = Some(match sample {
            Some(x) => format!("{x} & {s}"),
            None => s,
        });
    }
    let key = match (&side, &col.split_truth) {
        (Some((c, _)), Some(keys)) => Some(&keys[usize::from(c.value == 0.0)]),
        _ => col.truth.as_ref(),
    };
    let planted = key.and_then(|k| cx.truth.get(k)).copied();
    let mut out = ColumnResult {
        paper: cx.opts.paper.get(&format!("{table}:{label}")).cloned(),
        label,
        formula: formula.clone(),
        sample: sample.clone(),
        param: param.clone(),
        estimate: None,
        std_error: None,
        ci95: None,
        truth: planted,
        covers_truth: None,
        planted_sign: col.planted_sign.as_ref().and_then(|k| cx.truth.get(k)).copied(),
        error: None,
        result: None,
        panel: col.panel.clone(),
        note: col.note.clone(),
        split_test: side.as_ref().map(|(c, k)| (*k, c.value as u8)),
        few_clusters: None,
    };
    let run = || -> Result<(FitResult, Table, crate::formula::Model)> {
        let model = crate::formula::parse(&formula)?;
        let vcov = VcovSpec::parse(col.vcov.as_deref().unwrap_or(&spec.defaults.vcov))?;
        let mut clauses = match &col.sample {
            Some(s) => parse_filter(s).map_err(Error::Usage)?,
            None => vec![],
        };
        clauses.extend(extra_filter.clone());
        let sub = filter_rows(cx.df, &clauses, "panel")?;
        let mut vars = model.variables();
        for c in vcov.cluster_vars() {
            for v in c.split('^') {
                if !vars.iter().any(|x| x == v.trim()) {
                    vars.push(v.trim().to_string());
                }
            }
        }
        let table = Table::new(sub, "panel".into()).select(&vars)?;
        let opts = FitOptions {
            vcov,
            ..Default::default()
        };
        let r = fit(&table, &model, &opts, cx.demeaner)?;
        Ok((r, table, model))
    };
    match run() {
        Ok((r, table, model)) => {
            if let Some(c) = r.coefficients.iter().find(|c| c.name == param) {
                let t = t_critical(0.05, r.df_t);
                let ci = [c.estimate - t * c.std_error, c.estimate + t * c.std_error];
                out.estimate = Some(c.estimate);
                out.std_error = Some(c.std_error);
                out.ci95 = Some(ci);
                out.covers_truth = planted.map(|v| ci[0] <= v && v <= ci[1]);
                out.few_clusters = match r.clusters.as_slice() {
                    [g] if g.clusters < FEW_CLUSTERS => {
                        Some(few_clusters(cx, &table, &model, &g.name, g.clusters, &param))
                    }
                    _ => None,
                };
            } else {
                out.error = Some(format!(
                    "`{param}` is not among the estimated coefficients (dropped as collinear?)"
                ));
            }
            out.result = Some(r);
        }
        Err(e) => out.error = Some(e.to_string()),
    }
    out
}

/// The WCR bootstrap of H0: `param` = 0 on the column's sample, clustered on `cluster` (`g`
/// clusters): Webb's six-point weights with 12 clusters or fewer, Rademacher otherwise (fully
/// enumerated when 2^G ≤ reps), the fits' small-sample convention.
fn few_clusters(
    cx: &Ctx,
    table: &Table,
    model: &crate::formula::Model,
    cluster: &str,
    g: usize,
    param: &str,
) -> FewClusters {
    let weights = if g <= 12 {
        WildWeights::Webb
    } else {
        WildWeights::Rademacher
    };
    let run = || -> Result<crate::inference::wild::WildResult> {
        let popts = PrepareOptions {
            clusters: vec![cluster.to_string()],
            ..Default::default()
        };
        let design = prepare(table, model, &popts)?;
        let wopts = WildOptions {
            coefficient: param.to_string(),
            null: 0.0,
            reps: cx.opts.reps,
            weights,
            seed: cx.opts.seed,
            level: None,
            ssc: FitOptions::default().ssc,
            demean: DemeanOptions::default(),
        };
        wild_bootstrap(&design, &wopts, cx.demeaner)
    };
    let r = run();
    FewClusters {
        cluster: cluster.to_string(),
        clusters: g,
        p: r.as_ref().ok().map(|w| w.p),
        reps: r.as_ref().map_or(cx.opts.reps, |w| w.reps),
        weights: format!("{weights:?}").to_lowercase(),
        full_enumeration: r.as_ref().is_ok_and(|w| w.full_enumeration),
        error: r.err().map(|e| e.to_string()),
    }
}

/// Permutation test of the difference in `param` between split == 1 and split == 0; `key`
/// names the test in shard files.
fn split_test(cx: &Ctx, col: &ColumnSpec, split: &str, key: &str) -> SplitTest {
    let (df, spec, opts, demeaner) = (cx.df, cx.spec, cx.opts, cx.demeaner);
    let param = col.param.clone().unwrap_or_else(|| spec.defaults.param.clone());
    let mut out = SplitTest {
        label: col.label.clone(),
        split: split.to_string(),
        param: param.clone(),
        difference: f64::NAN,
        p: f64::NAN,
        reps: opts.reps,
        failed: 0,
        unit: "obs".into(),
        note: None,
        error: None,
        draws: vec![],
    };
    let wanted = col.unit.clone().filter(|u| u != "obs");
    let run = |unit: Option<&String>| -> Result<(f64, f64, Vec<f64>, usize)> {
        let formula = spec.expand(&col.formula).map_err(Error::Usage)?;
        let model = crate::formula::parse(&formula)?;
        let clauses = match &col.sample {
            Some(s) => parse_filter(s).map_err(Error::Usage)?,
            None => vec![],
        };
        let sub = filter_rows(df, &clauses, "panel")?;
        let mut vars = model.variables();
        vars.push(split.to_string());
        // a unit may be an interaction (`country^year`: whole destination-years move together)
        vars.extend(unit.iter().flat_map(|u| u.split('^').map(|v| v.trim().to_string())));
        let table = Table::new(sub, "panel".into()).select(&vars)?;
        let design = prepare(
            &table,
            &model,
            &PrepareOptions {
                extra: vec![split.to_string()],
                clusters: unit.cloned().into_iter().collect(),
                ..Default::default()
            },
        )?;
        let units = match design.clusters.first() {
            Some(c) => {
                // the split must be constant within a unit
                let mut first = vec![f64::NAN; c.levels];
                for (&u, &g) in c.ids.iter().zip(&design.extra[0]) {
                    let f = &mut first[u as usize];
                    if f.is_nan() {
                        *f = g;
                    } else if *f != g {
                        return Err(Error::Usage(format!("{split} varies within {}", c.name)));
                    }
                }
                Some((c.ids.as_slice(), c.levels))
            }
            None => None,
        };
        let bopts = BdiffOptions {
            reps: opts.reps,
            seed: opts.seed,
            bsample: false,
            demean: DemeanOptions::default(),
            memory_budget: 512 << 20,
            progress: false,
        };
        let key = format!("{key} unit {}", unit.map_or("obs", |u| u.as_str()));
        let r = split_bdiff(&key, &design, units, &bopts, opts, demeaner)?;
        let k = r
            .coefficients
            .iter()
            .position(|c| c.name == param)
            .ok_or_else(|| Error::Estimation(format!("`{param}` is not among the estimated coefficients")))?;
        Ok((
            r.coefficients[k].difference,
            r.coefficients[k].p,
            r.differences[k].clone(),
            r.reps_failed,
        ))
    };
    let mut result = run(wanted.as_ref());
    if let (Err(Error::Usage(m)), Some(u)) = (&result, &wanted) {
        if m.contains("varies within") {
            out.note = Some(format!("{split} varies within {u}; observations were permuted instead"));
            result = run(None);
        } else {
            out.unit = u.clone();
        }
    } else if let Some(u) = &wanted {
        out.unit = u.clone();
    }
    match result {
        Ok((d, p, draws, failed)) => {
            out.difference = d;
            out.p = p;
            out.draws = draws;
            out.failed = failed;
        }
        Err(e) => out.error = Some(e.to_string()),
    }
    out
}

/// Run one table of the specification on the panel.
pub fn run_table(
    df: &DataFrame,
    spec: &Spec,
    t: &TableSpec,
    truth: &BTreeMap<String, f64>,
    opts: &RunOptions,
    demeaner: &dyn Demeaner,
) -> TableResult {
    let t0 = Instant::now();
    let cx = Ctx {
        df,
        spec,
        truth,
        opts,
        demeaner,
    };
    let mut res = TableResult {
        id: t.id.clone(),
        title: t.title.clone(),
        note: t.note.clone(),
        labels: spec.labels.clone(),
        recovery: None,
        columns: vec![],
        splits: vec![],
        counts: vec![],
        seconds: 0.0,
        failures: 0,
    };
    let shard = matches!(opts.replicates, SplitReplicates::Shard(..));
    for (c, col) in t.columns.iter().enumerate() {
        match &col.split {
            None if shard => {}
            None => res
                .columns
                .push(estimate_column(&cx, &t.id, col, None, col.label.clone())),
            Some(split) => {
                let labels = col
                    .split_labels
                    .clone()
                    .unwrap_or_else(|| [format!("{split} = 1"), format!("{split} = 0")]);
                let test = res.splits.len();
                for (g, label) in [(1.0, &labels[0]), (0.0, &labels[1])].into_iter().filter(|_| !shard) {
                    let clause = Clause {
                        var: split.clone(),
                        op: "==".into(),
                        value: g,
                    };
                    res.columns
                        .push(estimate_column(&cx, &t.id, col, Some((clause, test)), label.clone()));
                }
                let key = format!("table {} column {} ({}) split {split}", t.id, c + 1, col.label);
                res.splits.push(split_test(&cx, col, split, &key));
            }
        }
    }
    if let Some(c) = &t.counts {
        match count_units(df, c, truth, &opts.paper, &t.id) {
            Ok(rows) => res.counts = rows,
            Err(e) => res.columns.push(ColumnResult {
                label: "counts".into(),
                formula: String::new(),
                sample: None,
                param: c.variable.clone(),
                estimate: None,
                std_error: None,
                ci95: None,
                truth: None,
                covers_truth: None,
                planted_sign: None,
                error: Some(e.to_string()),
                result: None,
                panel: None,
                note: None,
                split_test: None,
                paper: None,
                few_clusters: None,
            }),
        }
    }
    res.failures = res.columns.iter().filter(|c| c.error.is_some()).count()
        + res.splits.iter().filter(|s| s.error.is_some()).count();
    if !truth.is_empty() && t.counts.is_none() {
        res.recovery = Some(recovery(&res.columns, &res.splits));
    }
    res.seconds = t0.elapsed().as_secs_f64();
    res
}

/// Whether a table's estimates recovered what the simulator planted: per planted value, in how
/// many of the columns that carry it the estimate has the planted sign and the 95% interval
/// covers it; per pattern planted by direction only, whether the estimate has it; per split
/// test whose sides carry planted values, the planted and estimated differences; a table with
/// nothing planted says that its mechanism is not planted.
fn recovery(columns: &[ColumnResult], splits: &[SplitTest]) -> String {
    let mut parts: Vec<String> = columns
        .iter()
        .filter(|c| c.estimate.is_some())
        .filter_map(|c| {
            let est = c.estimate.unwrap();
            if let Some(v) = c.truth {
                let covered = if c.covers_truth == Some(true) {
                    "covers it"
                } else {
                    "misses it"
                };
                let sign = if est.signum() == v.signum() {
                    "sign recovered"
                } else {
                    "SIGN NOT RECOVERED"
                };
                Some(format!(
                    "{}: planted {}, {sign}, the 95% interval {covered}",
                    c.label,
                    fmt_num(v)
                ))
            } else {
                c.planted_sign.map(|s| {
                    let sign = if est.signum() == s.signum() {
                        "recovered"
                    } else {
                        "NOT RECOVERED"
                    };
                    format!("{}: planted sign {}, {sign}", c.label, if s > 0.0 { "+" } else { "−" })
                })
            }
        })
        .collect();
    for (k, t) in splits.iter().enumerate() {
        let side = |g: u8| {
            columns
                .iter()
                .find(|c| c.split_test == Some((k, g)))
                .and_then(|c| c.truth)
        };
        if let (Some(a), Some(b)) = (side(1), side(0)) {
            let planted = a - b;
            let sign = if t.difference.signum() == planted.signum() {
                "sign recovered"
            } else {
                "SIGN NOT RECOVERED"
            };
            parts.push(format!(
                "{} difference: planted {}, estimated {} (p = {:.3}), {sign}",
                t.label,
                fmt_num(planted),
                fmt_num(t.difference),
                t.p
            ));
        }
    }
    if parts.is_empty() {
        return "Not planted: the simulator plants no effect for this table's mechanism, so its estimates are not checked against a truth.".into();
    }
    let unplanted: Vec<&str> = columns
        .iter()
        .filter(|c| c.truth.is_none() && c.planted_sign.is_none())
        .map(|c| c.label.as_str())
        .collect();
    let rest = if unplanted.is_empty() {
        String::new()
    } else {
        format!(" Not planted (not checked): {}.", unplanted.join(", "))
    };
    format!("Recovery on simulated data: {}.{rest}", parts.join("; "))
}

fn count_units(
    df: &DataFrame,
    c: &CountsSpec,
    truth: &BTreeMap<String, f64>,
    paper: &BTreeMap<String, PaperColumn>,
    table: &str,
) -> Result<Vec<CountRow>> {
    let t = Table::new(df.clone(), "panel".into());
    let v = t.numeric(&c.variable)?;
    let u = t.numeric(&c.unit)?;
    let mut out: Vec<CountRow> = c
        .levels
        .iter()
        .enumerate()
        .map(|(k, (level, label))| {
            let at: Vec<i64> = v
                .iter()
                .zip(&u)
                .filter(|(x, _)| **x == *level)
                .map(|(_, id)| *id as i64)
                .collect();
            let units: std::collections::BTreeSet<i64> = at.iter().copied().collect();
            CountRow {
                level: *level,
                label: label.clone(),
                units: units.len(),
                share_pct: f64::NAN,
                rows: at.len(),
                truth: c.truth.get(k).and_then(|name| truth.get(name)).copied(),
                paper: paper.get(&format!("{table}:counts level {level}")).cloned(),
            }
        })
        .collect();
    let total: usize = out.iter().map(|r| r.units).sum();
    for r in &mut out {
        r.share_pct = 100.0 * r.units as f64 / total as f64;
    }
    Ok(out)
}

/// A table in the paper's layout, one [`Grid`] per panel (one for a table without panels; the
/// panel's name heads its first column): the coefficient table of the panel's columns (labels
/// as headers, variables as the paper names them), then the Controls row, permutation p-values
/// of split differences, wild-bootstrap p-values of columns with few clusters, the planted
/// truth and whether each 95% interval covers it, then the paper's published numbers. The notes
/// (the table's and its columns', failures, tests, few clusters) follow the last panel.
pub fn grids(t: &TableResult, controls: &[String]) -> Vec<Grid> {
    if !t.counts.is_empty() {
        return vec![counts_grid(t)];
    }
    let ok: Vec<&ColumnResult> = t.columns.iter().filter(|c| c.result.is_some()).collect();
    let mut panels: Vec<(Option<String>, Vec<&ColumnResult>)> = Vec::new();
    for c in ok {
        match panels.last_mut() {
            Some((p, cols)) if *p == c.panel => cols.push(c),
            _ => panels.push((c.panel.clone(), vec![c])),
        }
    }
    if panels.is_empty() {
        panels.push((None, vec![]));
    }
    let mut out: Vec<Grid> = panels
        .iter()
        .map(|(name, cols)| {
            let mut g = columns_grid(t, cols, controls);
            if let Some(n) = name {
                g.header[0] = n.clone();
            }
            g
        })
        .collect();
    let mut notes = vec![format!("Table {}: {}.", t.id, t.title)];
    for g in &mut out {
        for n in g.notes.drain(..) {
            if !notes.contains(&n) {
                notes.push(n);
            }
        }
    }
    notes.extend(table_notes(t));
    out.last_mut().expect("one panel at least").notes = notes;
    out
}

/// The table's first panel (the whole table when it has no panels), as [`grids`] lays it out.
pub fn grid(t: &TableResult, controls: &[String]) -> Grid {
    grids(t, controls).swap_remove(0)
}

/// Table 7's layout: per level its code, units, their share, rows, then the planted units and
/// the paper's units, share and rows.
fn counts_grid(t: &TableResult) -> Grid {
    let has_truth = t.counts.iter().any(|c| c.truth.is_some());
    let has_paper = t.counts.iter().any(|c| c.paper.is_some());
    let mut header: Vec<String> = ["Strategy", "Code", "Firms", "Share (%)", "Observations"]
        .map(String::from)
        .to_vec();
    if has_truth {
        header.push("Simulated firms (truth)".into());
    }
    if has_paper {
        header.extend(["Paper: firms", "Paper: share (%)", "Paper: observations"].map(String::from));
    }
    let rows = t
        .counts
        .iter()
        .map(|c| {
            let mut r = vec![
                c.label.clone(),
                format!("{}", c.level),
                c.units.to_string(),
                format!("{:.2}", c.share_pct),
                c.rows.to_string(),
            ];
            if has_truth {
                r.push(c.truth.map_or(String::new(), |v| format!("{v:.0}")));
            }
            if has_paper {
                let cell = |key: &str, decimals: usize| {
                    let v = c.paper.as_ref().and_then(|p| p.extra.get(key)?.as_f64());
                    v.map_or(String::new(), |v| format!("{v:.decimals$}"))
                };
                r.extend([cell("firms", 0), cell("share_pct", 2), cell("obs", 0)]);
            }
            r
        })
        .collect();
    let mut notes = vec![format!("Table {}: {}.", t.id, t.title)];
    notes.extend(t.note.clone());
    Grid {
        header,
        sections: vec![rows],
        notes,
    }
}

/// The coefficient table of `cols` with the rows below it (see [`grids`]); its notes are the
/// estimator's (clustering, small-sample convention, warnings).
fn columns_grid(t: &TableResult, cols: &[&ColumnResult], controls: &[String]) -> Grid {
    let results: Vec<FitResult> = cols
        .iter()
        .map(|c| {
            let mut r = c.result.clone().unwrap();
            r.coefficients.retain(|k| !controls.contains(&k.name));
            r
        })
        .collect();
    if results.is_empty() {
        return Grid {
            header: vec![String::new()],
            sections: vec![],
            notes: vec![],
        };
    }
    let mut g = Grid::build(&results, Stat::T);
    for (k, c) in cols.iter().enumerate() {
        g.header[k + 1] = c.label.clone();
    }
    relabel(&mut g, &t.labels);
    let mut extra = Vec::new();
    if !controls.is_empty() {
        extra.push(row("Controls", cols, |c| {
            let r = c.result.as_ref().unwrap();
            let has = r.coefficients.iter().any(|k| controls.contains(&k.name));
            (if has { "Yes" } else { "No" }).to_string()
        }));
    }
    if !t.splits.is_empty() {
        // the p-value under the first column of each split pair
        extra.push(row("Permutation p (difference)", cols, |c| match c.split_test {
            Some((k, 1)) => {
                let s = &t.splits[k];
                if s.error.is_some() {
                    "failed".into()
                } else {
                    format!("{:.3}", s.p)
                }
            }
            _ => String::new(),
        }));
    }
    if cols.iter().any(|c| c.few_clusters.is_some()) {
        extra.push(row(
            &format!("Wild bootstrap p (< {FEW_CLUSTERS} clusters)"),
            cols,
            |c| {
                c.few_clusters.as_ref().map_or(String::new(), |w| match w.p {
                    Some(p) => format!("{p:.3} (G={})", w.clusters),
                    None => format!("n/a (G={})", w.clusters),
                })
            },
        ));
    }
    if cols.iter().any(|c| c.truth.is_some()) {
        extra.push(row("Planted truth", cols, |c| c.truth.map_or(String::new(), fmt_num)));
        extra.push(row("95% CI covers truth", cols, |c| match c.covers_truth {
            Some(true) => "yes".into(),
            Some(false) => "NO ⚑".into(),
            None => String::new(),
        }));
    }
    if !extra.is_empty() {
        g.sections.push(extra);
    }
    if cols.iter().any(|c| c.paper.is_some()) {
        g.sections.push(paper_rows(cols));
    }
    g
}

/// A row labelled `label` with one cell per column.
fn row(label: &str, cols: &[&ColumnResult], cell: impl Fn(&ColumnResult) -> String) -> Vec<String> {
    std::iter::once(label.to_string())
        .chain(cols.iter().map(|c| cell(c)))
        .collect()
}

/// Dependent variables and coefficient names as the paper writes them.
fn relabel(g: &mut Grid, labels: &BTreeMap<String, String>) {
    let show = |name: &str| display_name(labels, name);
    if let Some(depvars) = g.sections.first_mut().and_then(|s| s.first_mut()) {
        for c in depvars.iter_mut().skip(1) {
            *c = show(c);
        }
    }
    if let Some(coefs) = g.sections.get_mut(1) {
        for r in coefs.iter_mut().step_by(2) {
            r[0] = show(&r[0]);
        }
    }
}

/// The paper's numbers for `cols`: each printed coefficient (as the paper names it) with its t
/// statistic, then N, Adj. R² and the difference p-value where printed.
fn paper_rows(cols: &[&ColumnResult]) -> Vec<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    for p in cols.iter().filter_map(|c| c.paper.as_ref()) {
        for (name, ..) in p.coefficients() {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let mut rows = Vec::new();
    for name in &names {
        let coef = |c: &ColumnResult| {
            c.paper
                .as_ref()
                .and_then(|p| p.coefficients().into_iter().find(|k| &k.0 == name))
        };
        rows.push(row(&format!("Paper: {name}"), cols, |c| {
            coef(c).map_or(String::new(), |k| PaperColumn::coef_cell(k.1, &k.3))
        }));
        rows.push(row("", cols, |c| {
            coef(c).map_or(String::new(), |k| PaperColumn::t_cell(k.2))
        }));
    }
    let paper = |c: &ColumnResult| c.paper.clone();
    rows.push(row("Paper: N", cols, |c| {
        paper(c).and_then(|p| p.n).map_or(String::new(), |n| n.to_string())
    }));
    rows.push(row("Paper: Adj. R2", cols, |c| {
        paper(c).and_then(|p| p.r2).map_or(String::new(), |r| format!("{r:.3}"))
    }));
    rows.push(row("Paper: p (difference)", cols, |c| {
        let first = matches!(c.split_test, Some((_, 1)) | None);
        paper(c)
            .and_then(|p| p.p)
            .filter(|_| first)
            .map_or(String::new(), |p| format!("{p:.3}"))
    }));
    // further printed statistics (Table 2's weak-identification tests), as printed
    let mut keys: Vec<String> = Vec::new();
    for p in cols.iter().filter_map(|c| c.paper.as_ref()) {
        keys.extend(
            p.extra
                .keys()
                .filter(|k| !keys.contains(k))
                .cloned()
                .collect::<Vec<_>>(),
        );
    }
    for key in &keys {
        rows.push(row(&format!("Paper: {}", PaperColumn::extra_label(key)), cols, |c| {
            let v = c.paper.as_ref().and_then(|p| p.extra.get(key)?.as_f64());
            v.map_or(String::new(), |v| v.to_string())
        }));
    }
    // a statistic the paper prints for none of these columns gets no row
    rows.retain(|r| r[1..].iter().any(|c| !c.is_empty()));
    rows
}

/// The notes after a table's coefficient rows: the specification's notes, failures, the split
/// tests, and the few-cluster bootstrap.
fn table_notes(t: &TableResult) -> Vec<String> {
    let mut notes: Vec<String> = t.note.iter().cloned().collect();
    for c in t.columns.iter().filter(|c| c.note.is_some()) {
        notes.push(format!("{}: {}", c.label, c.note.as_ref().unwrap()));
    }
    for c in t.columns.iter().filter(|c| c.error.is_some()) {
        notes.push(format!("Column `{}` failed: {}", c.label, c.error.as_ref().unwrap()));
    }
    for s in t.splits.iter().filter(|s| s.error.is_some()) {
        notes.push(format!(
            "Permutation test `{}` failed: {}",
            s.label,
            s.error.as_ref().unwrap()
        ));
    }
    for s in t.splits.iter().filter(|s| s.error.is_none()) {
        notes.push(format!(
            "`{}`: difference in {} between {} = 1 and 0 is {}, Fisher permutation p = {:.3} ({} replications, permuting {}).{}",
            s.label,
            s.param,
            s.split,
            fmt_num(s.difference),
            s.p,
            s.reps,
            if s.unit == "obs" { "observations".to_string() } else { format!("whole {}", s.unit) },
            s.note.as_ref().map_or(String::new(), |n| format!(" Note: {n}."))
        ));
        if s.failed > 0 {
            notes.push(format!(
                "WARNING: `{}`: {} of {} replications could not be estimated (a regressor collinear within a permuted group) and are left out of its p-value.",
                s.label, s.failed, s.reps
            ));
        }
    }
    notes.extend(few_clusters_note(t));
    notes.extend(t.recovery.clone());
    if t.columns.iter().any(|c| c.paper.is_some()) {
        notes.push("Paper: the published coefficient (t statistic), N, Adj. R2 and difference p-value of the corresponding column (data/paper_values.json).".into());
    }
    notes
}

/// What the wild-bootstrap row means, and which columns could not have it.
fn few_clusters_note(t: &TableResult) -> Option<String> {
    let few: Vec<(&ColumnResult, &FewClusters)> = t
        .columns
        .iter()
        .filter_map(|c| c.few_clusters.as_ref().map(|w| (c, w)))
        .collect();
    let (_, w) = few.first()?;
    let mut n = format!(
        "Fewer than {FEW_CLUSTERS} clusters: clustered t-tests over-reject, so these columns also show the restricted wild cluster bootstrap p-value of H0: coefficient = 0 (Roodman et al. 2019; {} replications; Webb weights with 12 clusters or fewer, Rademacher otherwise), clustered by {}.",
        w.reps, w.cluster
    );
    for (c, w) in few.iter().filter(|(_, w)| w.error.is_some()) {
        n.push_str(&format!(" {}: no bootstrap ({}).", c.label, w.error.as_ref().unwrap()));
    }
    Some(n)
}

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

pub use crate::report::write_atomic;

/// Write every table's files; returns the paths written.
pub fn write_tables(out: &Path, tables: &[TableResult], controls: &[String]) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for t in tables {
        let g = grids(t, controls);
        for (ext, text) in [
            ("md", panels(&g, writers::markdown)),
            ("tex", panels(&g, writers::latex)),
            ("csv", panels(&g, writers::csv)),
        ] {
            let p = out.join(format!("table{}.{ext}", t.id));
            write_atomic(&p, &text)?;
            written.push(p);
        }
    }
    Ok(written)
}

/// A table's panels laid out one after another by `writer`.
fn panels(grids: &[Grid], writer: fn(&Grid) -> String) -> String {
    grids.iter().map(writer).collect::<Vec<_>>().join("\n")
}

/// The timing table as Markdown and CSV.
pub fn timing_tables(stages: &[Stage]) -> (String, String) {
    let mut md = String::from("| stage | seconds | backend |\n|:---|---:|:---|\n");
    let mut csv = String::from("stage,seconds,backend\n");
    for s in stages {
        md.push_str(&format!("| {} | {:.2} | {} |\n", s.stage, s.seconds, s.backend));
        csv.push_str(&format!("\"{}\",{:.3},\"{}\"\n", s.stage, s.seconds, s.backend));
    }
    // "panel: …" rows are parts of "build panel (total)"
    let total: f64 = stages
        .iter()
        .filter(|s| !s.stage.starts_with("panel: "))
        .map(|s| s.seconds)
        .sum();
    md.push_str(&format!("| **total** | {total:.2} | |\n"));
    (md, csv)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_spec_parses_and_expands() {
        let s = Spec::parse(DEFAULT_SPEC, "data/replicate_spec.json").unwrap();
        assert_eq!(s.tables.len(), 13);
        let ids: Vec<&str> = s.tables.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(
            ids,
            (1..=13)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
        );
        assert_eq!(s.expand("y ~ x | {FE}").unwrap(), "y ~ x | firm + year + firm^country");
        assert!(s.expand("y ~ {NOPE}").is_err());
    }

    #[test]
    fn every_paper_column_names_a_column_of_the_shipped_spec() {
        let s = Spec::parse(DEFAULT_SPEC, "data/replicate_spec.json").unwrap();
        let mut labels = std::collections::BTreeSet::new();
        for t in &s.tables {
            for c in &t.columns {
                let shown = c.split_labels.clone().map_or(vec![c.label.clone()], Vec::from);
                labels.extend(shown.iter().map(|l| format!("{}:{l}", t.id)));
            }
            for (level, _) in t.counts.iter().flat_map(|c| &c.levels) {
                labels.insert(format!("{}:counts level {level}", t.id));
            }
        }
        let paper = crate::study::paper::by_spec_match(crate::study::paper::PAPER_VALUES).unwrap();
        let unknown: Vec<&String> = paper.keys().filter(|k| !labels.contains(*k)).collect();
        assert!(unknown.is_empty(), "paper columns matching no column: {unknown:?}");
        let printed: serde_json::Value = serde_json::from_str(crate::study::paper::PAPER_VALUES).unwrap();
        let columns = printed["tables"].as_object().unwrap().values().flat_map(|t| {
            t["panels"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|p| p["columns"].as_array().unwrap())
        });
        assert_eq!(
            paper.len(),
            columns.count(),
            "every printed column of the paper is matched"
        );
        assert_eq!(s.display("digtech:vol2"), "Digtech×Vol2");
        assert_eq!(s.display("trans"), "trans");
    }

    #[test]
    fn bad_specs_are_refused_with_the_place() {
        let bad = r#"{"tables":[{"id":"1","title":"t","columns":[{"label":"a","formula":"y ~ ~ x"}]}]}"#;
        let e = Spec::parse(bad, "mine.json").unwrap_err().to_string();
        assert!(
            e.contains("mine.json") && e.contains("table 1") && e.contains("`a`"),
            "{e}"
        );
        let bad =
            r#"{"tables":[{"id":"2","title":"t","columns":[{"label":"b","formula":"y ~ x","sample":"x => 1"}]}]}"#;
        assert!(Spec::parse(bad, "m").is_err());
        assert!(Spec::parse("{", "m").is_err());
        assert!(Spec::parse(r#"{"tables":[]}"#, "m").is_err());
    }

    #[test]
    fn filters_parse_and_apply() {
        let c = parse_filter("a == 1 & b >= 2.5").unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].op, ">=");
        assert!(parse_filter("a ~ 1").is_err());
        assert!(parse_filter("a == x").is_err());
        let df = DataFrame::new(
            3,
            vec![
                polars::prelude::Column::new("a".into(), vec![1.0, 1.0, f64::NAN]),
                polars::prelude::Column::new("b".into(), vec![3.0, 1.0, 3.0]),
            ],
        )
        .unwrap();
        assert_eq!(filter_rows(&df, &c, "t").unwrap().height(), 1);
    }

    #[test]
    fn t_critical_values() {
        assert!((t_critical(0.05, 1e9) - 1.959964).abs() < 1e-4);
        assert!((t_critical(0.05, 10.0) - 2.228139).abs() < 1e-4);
    }
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

/// The coefficient of interest of each of `t`'s estimated columns that `keep`, labelled
/// `prefix` + the column's label.
fn coefficient_rows(
    t: &TableResult,
    prefix: &str,
    keep: impl Fn(&ColumnResult) -> bool,
) -> Vec<crate::report::plot::CoefRow> {
    t.columns
        .iter()
        .filter(|c| keep(c))
        .filter_map(|c| {
            let (e, ci) = (c.estimate?, c.ci95?);
            Some(crate::report::plot::CoefRow {
                label: format!("{prefix}{}", c.label),
                estimate: e,
                lo: ci[0],
                hi: ci[1],
                truth: c.truth,
            })
        })
        .collect()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The HTML report: summary, then each table with its own coefficient plot (so a table's small
/// effects are not squashed by another's wide intervals) and permutation distributions, then
/// the timing. `coefficients.svg` keeps the one-plot overview of the Digtech columns.
fn html_report(rep: &Replication, out: &Path) -> Result<String> {
    let mut h = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>fegpu replication</title>\n<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}table{border-collapse:collapse;margin:1em 0}th,td{padding:2px 10px;text-align:right;border-bottom:1px solid #eee}thead th{border-bottom:2px solid #333}tbody th{text-align:left;font-weight:normal}.flag{color:#c00;font-weight:bold}.note{font-size:90%;color:#444;margin:2px 0}h2{margin-top:2em}</style></head><body>\n<h1>Digital technology innovation and export quality — replication</h1>\n",
    );
    h.push_str(&summary_html(rep));
    let overview: Vec<_> = rep
        .tables
        .iter()
        .flat_map(|t| coefficient_rows(t, &format!("T{} ", t.id), |c| c.param == "digtech" || c.truth.is_some()))
        .collect();
    let svg = crate::report::plot::coefficient_svg(
        &overview,
        "Estimates with 95% intervals (orange tick: planted truth; red: interval misses it)",
    );
    write_atomic(&out.join("coefficients.svg"), &svg)?;
    for t in &rep.tables {
        h.push_str(&format!(
            "<h2 id=\"table{}\">Table {}. {}</h2>\n",
            t.id,
            t.id,
            esc(&t.title)
        ));
        h.push_str(&panels(&grids(t, &rep.controls), writers::html));
        let rows = coefficient_rows(t, "", |_| true);
        if !rows.is_empty() {
            let title = format!(
                "Table {}: estimates with 95% intervals (orange tick: planted truth)",
                t.id
            );
            h.push_str(&crate::report::plot::coefficient_svg(&rows, &title));
        }
        h.push_str(&permutation_plots(t, out)?);
    }
    h.push_str(&timing_html(&rep.timing));
    h.push_str("</body></html>\n");
    Ok(h)
}

/// The report's opening paragraphs: data, backend, failures, intervals missing the truth.
fn summary_html(rep: &Replication) -> String {
    let mut h = format!(
        "<p>Data: {} ({}). Panel: {} firm-year-destination rows. Backend: {}. Permutation tests: {} replications, seed {}. Total time {:.1} s. {}</p>\n<p>Each table sets the paper's published numbers (\"Paper:\" rows, data/paper_values.json) beside ours; its notes say where the paper is ambiguous and what we chose.</p>\n",
        esc(&rep.raw),
        if rep.simulated { "simulated; planted effects from truth.json are set beside the estimates" } else { "researcher's data" },
        rep.panel_rows,
        esc(&rep.backend),
        rep.reps,
        rep.seed,
        rep.total_seconds,
        if rep.failures > 0 { format!("<span class=\"flag\">{} specification(s) failed; see the table notes.</span>", rep.failures) } else { "All specifications ran.".into() }
    );
    let misses: Vec<String> = rep
        .tables
        .iter()
        .flat_map(|t| {
            let missing = t.columns.iter().filter(|c| c.covers_truth == Some(false));
            missing.map(move |c| format!("Table {} {}", t.id, c.label))
        })
        .collect();
    if rep.simulated {
        h.push_str(&format!(
            "<p>{}</p>\n",
            if misses.is_empty() {
                "Every 95% interval with a planted truth covers it.".to_string()
            } else {
                format!("<span class=\"flag\">95% intervals missing the planted truth: {}</span> (about one in twenty is expected by chance)", esc(&misses.join(", ")))
            }
        ));
    }
    h
}

/// The permutation distribution of each of `t`'s split tests (also written as SVG files).
fn permutation_plots(t: &TableResult, out: &Path) -> Result<String> {
    let mut h = String::new();
    for (k, s) in t.splits.iter().enumerate().filter(|(_, s)| !s.draws.is_empty()) {
        let p = out.join(format!("permutation_table{}_{}.svg", t.id, k + 1));
        crate::report::plot::histogram_svg(
            &p,
            &s.draws,
            s.difference,
            &format!(
                "{}: permutation distribution of the {} difference (p = {:.3})",
                s.label, s.param, s.p
            ),
            &format!("{} ({} = 1) − {} ({} = 0)", s.param, s.split, s.param, s.split),
        )?;
        h.push_str(&std::fs::read_to_string(&p).map_err(|e| Error::io(p.display().to_string(), e))?);
    }
    Ok(h)
}

/// The timing table, after the results.
fn timing_html(stages: &[Stage]) -> String {
    let mut h = String::from(
        "<h2>Timing</h2>\n<table><thead><tr><th>stage</th><th>seconds</th><th>backend</th></tr></thead><tbody>\n",
    );
    for s in stages {
        h.push_str(&format!(
            "<tr><th>{}</th><td>{:.2}</td><td>{}</td></tr>\n",
            esc(&s.stage),
            s.seconds,
            esc(&s.backend)
        ));
    }
    h.push_str("</tbody></table>\n");
    h
}
