//! Benchmarks of the exact CPU path (run with `cargo bench --bench fit`).
//!
//! * the demo panel fit: ~130,000 firm-year-destination rows, 12 regressors, firm + year +
//!   firm×destination effects, clustered by destination (the study's Table 1, column 5);
//! * a 10-million-row panel with the same three effects (`--big`, or `FEGPU_BENCH_BIG=1`).
//!
//! Times are wall-clock, warm (the first, cold fit is reported separately), median of
//! `--reps` runs. `--file F` times a file instead (used by scripts/peers/ to compare peers on the
//! very same data): load once, then fit.

use std::time::Instant;

use fegpu::data::{demo, load, Table};
use fegpu::demean::CpuDemeaner;
use fegpu::estimate::{fit, FitOptions, VcovSpec};
use fegpu::formula;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench(label: &str, table: &Table, f: &str, reps: usize) {
    let model = formula::parse(f).unwrap();
    let opts = FitOptions {
        vcov: VcovSpec::parse("cluster:dest").unwrap(),
        ..Default::default()
    };
    let t = Instant::now();
    let first = fit(table, &model, &opts, &CpuDemeaner).unwrap();
    let cold = t.elapsed().as_secs_f64();
    let mut times = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let r = fit(table, &model, &opts, &CpuDemeaner).unwrap();
        times.push(t.elapsed().as_secs_f64());
        assert_eq!(
            r.coefficients[0].estimate.to_bits(),
            first.coefficients[0].estimate.to_bits(),
            "fits must be deterministic"
        );
    }
    println!(
        "{label:<28} rows {:>10}  nobs {:>10}  regressors {:>2}  FEs {}  sweeps {:>4}  cold {:>8.3} s  warm median {:>8.3} s  ({} reps)  backend {}",
        first.nobs_raw,
        first.nobs,
        first.coefficients.len(),
        first.fixed_effects.len(),
        first.iterations,
        cold,
        median(times),
        reps,
        first.backend
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let reps: usize = get("--reps").and_then(|v| v.parse().ok()).unwrap_or(5);
    let f = get("--formula").unwrap_or_else(|| demo::MAIN_FORMULA.to_string());
    if let Some(file) = get("--file") {
        let model = formula::parse(&f).unwrap();
        let mut cols = model.variables();
        cols.push("dest".into());
        let t = Instant::now();
        let table = load(&file, &cols).unwrap();
        println!("load {file}: {:.3} s", t.elapsed().as_secs_f64());
        bench(&file, &table, &f, reps);
        return;
    }
    let t = Instant::now();
    let table = Table::new(
        demo::demo_frame(demo::DEMO_ROWS, demo::DEMO_SEED).unwrap(),
        "demo".into(),
    );
    println!("generate demo panel: {:.3} s", t.elapsed().as_secs_f64());
    bench("demo panel (Table 1 col 5)", &table, &f, reps);
    if args.iter().any(|a| a == "--big") || std::env::var("FEGPU_BENCH_BIG").is_ok() {
        let t = Instant::now();
        let big = Table::new(demo::demo_frame(10_000_000, 7).unwrap(), "demo-10M".into());
        println!("generate 10M-row panel: {:.3} s", t.elapsed().as_secs_f64());
        bench("10M rows, 3 FEs", &big, &f, reps.min(3));
    }
}
