//! Running a table: each column's fit on its sample, the split tests (Fisher permutation of the
//! group difference, sharded or merged), the few-cluster wild bootstrap, counts, and the
//! recovery notes against the planted truth.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use polars::prelude::DataFrame;
use serde::Serialize;

use super::spec::*;

use crate::data::load::Table;
use crate::data::{prepare, used_columns, PrepareOptions};
use crate::demean::{DemeanOptions, Demeaner};
use crate::error::{Error, Result};
use crate::estimate::vcov::VcovSpec;
use crate::estimate::{fit, FitOptions, FitResult};
use crate::inference::permutation::{assemble, bdiff, bdiff_draws, BdiffOptions, BdiffResult};
use crate::inference::replicates::WildWeights;
use crate::inference::shard::Shard;
use crate::inference::wild::{wild_bootstrap, WildOptions};
use crate::report::table::fmt_num;
use crate::resampling::shard_file::{Fingerprint, SplitPart};
use crate::stats::t_critical;
use crate::study::paper::PaperColumn;

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
pub(super) struct Ctx<'a> {
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
pub(super) fn split_bdiff(
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
pub(super) fn estimate_column(
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
        let needs = PrepareOptions {
            clusters: vcov.cluster_vars().to_vec(),
            ..Default::default()
        };
        let table = Table::new(sub, "panel".into()).select(&used_columns(&[&model], &needs))?;
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
pub(super) fn few_clusters(
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
pub(super) fn split_test(cx: &Ctx, col: &ColumnSpec, split: &str, key: &str) -> SplitTest {
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
        // a unit may be an interaction (`country^year`: whole destination-years move together)
        let needs = PrepareOptions {
            extra: vec![split.to_string()],
            clusters: unit.cloned().into_iter().collect(),
            ..Default::default()
        };
        let table = Table::new(sub, "panel".into()).select(&used_columns(&[&model], &needs))?;
        let design = prepare(&table, &model, &needs)?;
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
pub(super) fn recovery(columns: &[ColumnResult], splits: &[SplitTest]) -> String {
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

pub(super) fn count_units(
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
