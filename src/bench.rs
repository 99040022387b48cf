//! `fegpu bench`: batched demeaning of the demo panel (13 columns: the outcome and the 12
//! regressors of the study's main model; firm, year and firm×destination effects) under B
//! bootstrap weight vectors, on the CPU and on the GPU, with the time per fit and the memory
//! throughput the sweeps achieve. Speed is measured here and in `benches/`, never in tests.

use std::time::Instant;

use crate::data::{demo, prepare, PrepareOptions, Table};
use crate::demean::gpu::cpu_demean_batch;
use crate::demean::{DemeanOptions, Demeaned, GpuDemeaner};
use crate::error::{Error, Result};
use crate::fe::dof::effects_to_project;
use crate::fe::FixedEffect;
use crate::formula;
use crate::gpu::Precision;
use crate::rng::philox4x32;

/// One line of the bench table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchRow {
    pub rows: usize,
    pub columns: usize,
    pub replicates: usize,
    pub backend: String,
    pub adapter: String,
    pub seconds: f64,
    pub seconds_per_fit: f64,
    pub sweeps: usize,
    /// Bytes the sweeps must move (32 per observation, lane and projection) over the time.
    pub gb_per_s: f64,
    pub nominal_gb_per_s: Option<f64>,
    /// Largest |GPU − CPU| over all demeaned values, relative to the column's scale.
    pub max_rel_diff_vs_cpu: Option<f64>,
    /// The resident engine's seconds per phase (upload, draws, solve, reduce, read-back).
    pub phases: Option<String>,
    /// The process's peak resident memory after this row (kB; cumulative over the rows).
    pub peak_rss_kb: Option<u64>,
}

/// Nominal memory bandwidth of a few well-known adapters (vendor data sheets), GB/s.
pub fn nominal_bandwidth(name: &str) -> Option<f64> {
    let n = name.to_ascii_lowercase();
    [
        ("h200", 4800.0),
        ("h100", 3350.0),
        ("a100", 2039.0),
        ("rtx 4090", 1008.0),
        ("rtx 3090", 936.0),
        ("l40s", 864.0),
        ("a10", 600.0),
        ("t4", 320.0),
    ]
    .iter()
    .find(|(k, _)| n.contains(k))
    .map(|(_, v)| *v)
}

/// Bootstrap multiplicities (Poisson(1) approximated by the number of successes of 4 draws
/// with probability 1/4), a pure function of (seed, replicate, observation).
pub fn bootstrap_weights(seed: u64, replicates: usize, n: usize) -> Vec<Vec<f64>> {
    (0..replicates)
        .map(|r| {
            (0..n)
                .map(|i| {
                    let u = philox4x32([r as u32, i as u32, 7, 0], [seed as u32, (seed >> 32) as u32]);
                    u.iter().filter(|&&v| v < u32::MAX / 4).count() as f64
                })
                .collect()
        })
        .collect()
}

fn gbps(rows: usize, lanes: usize, projections: usize, sweeps: usize, seconds: f64) -> f64 {
    32.0 * rows as f64 * lanes as f64 * projections as f64 * sweeps as f64 / seconds / 1e9
}

/// Run the benchmark: CPU always (unless `gpu_only`), GPU when an adapter opens. `replicates`
/// weight vectors are demeaned in one batch (1: the unweighted columns); 0 is refused.
pub fn run(
    rows: usize,
    replicates: usize,
    precision: Precision,
    with_cpu: bool,
    with_gpu: bool,
) -> Result<Vec<BenchRow>> {
    if replicates == 0 {
        return Err(Error::Usage(
            "fegpu bench --replicates 0: the bench demeans at least one weight vector (1: the unweighted columns; B > 1: B bootstrap weight vectors)".into(),
        ));
    }
    let table = Table::new(demo::demo_frame(rows, demo::DEMO_SEED)?, "demo".into());
    let model = formula::parse(demo::MAIN_FORMULA)?;
    let design = prepare(&table, &model, &PrepareOptions::default())?;
    let n = design.nobs();
    let mut columns = vec![design.y.clone()];
    columns.extend(design.x.iter().cloned());
    let project: Vec<&FixedEffect> = effects_to_project(&design.fes)
        .into_iter()
        .map(|k| &design.fes[k])
        .collect();
    let weights = if replicates <= 1 {
        vec![vec![1.0; n]]
    } else {
        bootstrap_weights(1, replicates, n)
    };
    let opts = DemeanOptions::default();
    let lanes = columns.len() * weights.len();
    let mut out = Vec::new();
    let mut cpu_result: Option<Vec<Demeaned>> = None;
    if with_cpu {
        let t = Instant::now();
        let r = cpu_demean_batch(&project, &columns, &weights, &opts)?;
        let s = t.elapsed().as_secs_f64();
        let sweeps = r.iter().map(|d| d.iterations).max().unwrap_or(0);
        out.push(BenchRow {
            rows: n,
            columns: columns.len(),
            replicates: weights.len(),
            backend: "cpu".into(),
            adapter: format!("{} threads", rayon::current_num_threads()),
            seconds: s,
            seconds_per_fit: s / weights.len() as f64,
            sweeps,
            gb_per_s: gbps(n, lanes, project.len(), sweeps, s),
            nominal_gb_per_s: None,
            max_rel_diff_vs_cpu: None,
            phases: None,
            peak_rss_kb: crate::report::peak_rss_kb(),
        });
        cpu_result = Some(r);
    }
    if with_gpu {
        let g = GpuDemeaner::new(precision)?;
        // warm-up: pipelines and first allocation
        g.demean_batch(&project, &columns[..1], &weights[..1], &opts)?;
        let t = Instant::now();
        let r = g.demean_batch(&project, &columns, &weights, &opts)?;
        let s = t.elapsed().as_secs_f64();
        let sweeps = r.iter().map(|d| d.iterations).max().unwrap_or(0);
        let diff = cpu_result.as_ref().map(|c| {
            let mut worst = 0.0f64;
            // rows a replicate leaves out (weight 0) have no demeaned value to agree on
            for ((a, b), w) in c.iter().zip(&r).zip(&weights) {
                for (ca, cb) in a.columns.iter().zip(&b.columns) {
                    let scale = (ca.iter().map(|v| v * v).sum::<f64>() / ca.len() as f64)
                        .sqrt()
                        .max(1e-300);
                    for ((u, v), wi) in ca.iter().zip(cb).zip(w) {
                        if *wi > 0.0 {
                            worst = worst.max((u - v).abs() / scale);
                        }
                    }
                }
            }
            worst
        });
        let info = &g.context().info;
        let row = |backend: String, s: f64, diff: Option<f64>| BenchRow {
            rows: n,
            columns: columns.len(),
            replicates: weights.len(),
            backend,
            adapter: format!("{} ({:?})", info.name, info.backend),
            seconds: s,
            seconds_per_fit: s / weights.len() as f64,
            sweeps,
            gb_per_s: gbps(n, lanes, project.len(), sweeps, s),
            nominal_gb_per_s: nominal_bandwidth(&info.name),
            max_rel_diff_vs_cpu: diff,
            phases: None,
            peak_rss_kb: crate::report::peak_rss_kb(),
        };
        out.push(row(format!("gpu ({:?})", precision).to_lowercase(), s, diff));
        if weights.len() > 1 {
            // what the replicate engine runs: the same sweeps, then only each replicate's
            // cross products come back (β per replicate), not its demeaned columns
            let t = Instant::now();
            let grams = g.gram_batch(&project, &columns, &weights, &opts)?;
            let s = t.elapsed().as_secs_f64();
            let cpu_grams = cpu_result.as_ref().map(|c| crate::demean::grams_of(c, &weights));
            let diff = cpu_grams.as_ref().map(|want| gram_gap(&grams, want));
            out.push(row(format!("gpu ({:?}) X'WX", precision).to_lowercase(), s, diff));
            out.extend(resident_row(
                &g,
                &project,
                &columns,
                &weights,
                cpu_grams.as_deref(),
                row,
            )?);
        }
    }
    Ok(out)
}

/// Largest gap between two sets of cross products, relative to √(g_pp g_qq).
fn gram_gap(got: &[Vec<f64>], want: &[Vec<f64>]) -> f64 {
    let mut worst = 0.0f64;
    for (gg, want) in got.iter().zip(want) {
        for (k, (u, v)) in gg.iter().zip(want).enumerate() {
            let (p, q) = crate::demean::pair_of(k);
            let scale = (want[p * (p + 1) / 2 + p] * want[q * (q + 1) / 2 + q])
                .sqrt()
                .max(1e-300);
            worst = worst.max((u - v).abs() / scale);
        }
    }
    worst
}

/// The resident replicate engine on the same weight vectors (columns and levels uploaded once,
/// one exact pass, cross products on the device), with its time per phase. Its weights come
/// from the host here, so `draws` is their upload.
fn resident_row(
    g: &GpuDemeaner,
    project: &[&FixedEffect],
    columns: &[Vec<f64>],
    weights: &[Vec<f64>],
    cpu_grams: Option<&[Vec<f64>]>,
    row: impl Fn(String, f64, Option<f64>) -> BenchRow,
) -> Result<Option<BenchRow>> {
    let t = Instant::now();
    let ones = vec![1.0; columns[0].len()];
    let Some(mut engine) = crate::demean::resident::DeviceReplicates::new(
        g,
        project,
        &columns.iter().map(|c| c.as_slice()).collect::<Vec<_>>(),
        &ones,
    )?
    else {
        return Ok(None);
    };
    engine.timed = true;
    let grams = engine.grams(g, &crate::demean::resident::Draws::Given(weights))?;
    let s = t.elapsed().as_secs_f64();
    let p = *engine.times.lock().unwrap();
    let mut r = row("gpu resident".into(), s, cpu_grams.map(|want| gram_gap(&grams, want)));
    r.sweeps = 1;
    r.gb_per_s = p.bytes_solved / (p.solve + p.reduce).max(1e-12) / 1e9;
    r.phases = Some(p.line().trim_start_matches("timing: device replicates: ").to_string());
    r.peak_rss_kb = crate::report::peak_rss_kb();
    Ok(Some(r))
}

/// The bench table as text.
pub fn render(rows: &[BenchRow]) -> String {
    let mut s = format!(
        "{:>9} {:>7} {:>10} {:<18} {:<34} {:>9} {:>12} {:>7} {:>9} {:>9} {:>12} {:>9}\n",
        "rows",
        "columns",
        "replicates",
        "backend",
        "adapter",
        "seconds",
        "s per fit",
        "sweeps",
        "GB/s",
        "nominal",
        "|gpu-cpu|",
        "peak MB"
    );
    for r in rows {
        s.push_str(&format!(
            "{:>9} {:>7} {:>10} {:<18} {:<34} {:>9.3} {:>12.6} {:>7} {:>9.2} {:>9} {:>12} {:>9}\n",
            r.rows,
            r.columns,
            r.replicates,
            r.backend,
            r.adapter.chars().take(34).collect::<String>(),
            r.seconds,
            r.seconds_per_fit,
            r.sweeps,
            r.gb_per_s,
            r.nominal_gb_per_s
                .map(|v| format!("{v:.0}"))
                .unwrap_or_else(|| "n/a".into()),
            r.max_rel_diff_vs_cpu
                .map(|v| format!("{v:.1e}"))
                .unwrap_or_else(|| "-".into()),
            r.peak_rss_kb
                .map(|kb| format!("{}", kb / 1024))
                .unwrap_or_else(|| "n/a".into()),
        ));
    }
    for r in rows.iter().filter(|r| r.phases.is_some()) {
        s.push_str(&format!("{}: {}\n", r.backend, r.phases.as_deref().unwrap_or_default()));
    }
    s
}
