//! `bdiff`'s replicates against brute force: for a few replicates, the group assignment is
//! rebuilt from the documented Philox draws (`permutation_first_group`, and the pairs
//! multiplicities with `--bsample`, as repeated rows), each group is written to its own CSV
//! and fitted by the `fit` command, and β₁ − β₀ must equal the engine's replicate difference.

mod common;

use std::path::Path;
use std::process::Command;

use fegpu::data::{load, prepare, PrepareOptions};
use fegpu::demean::{CpuDemeaner, DemeanOptions};
use fegpu::inference::permutation::{bdiff, BdiffOptions};
use fegpu::inference::replicates::{pairs_multiplicities, permutation_first_group};
use fegpu::rng::Stream;

const FORMULA: &str = "y ~ x1 + x2 | firm + year";

fn dir() -> common::Scratch {
    common::tmpdir("bdiff-brute", "run")
}

/// 40 firms × 12 rows over 6 years, a 0/1 group, no missing values and no singletons.
fn rows() -> Vec<[f64; 6]> {
    let mut s = Stream::new(17, 3);
    (0..480)
        .map(|i| {
            let (firm, year) = ((i / 12) as f64, (i % 6) as f64);
            let x1 = s.normal() + 0.1 * firm;
            let x2 = s.normal();
            let g = ((i * 7) % 3 == 0) as u8 as f64;
            let y = 0.5 * x1 - 0.3 * x2 + 0.4 * g * x1 + 0.05 * firm + 0.1 * year + s.normal();
            [y, x1, x2, firm, year, g]
        })
        .collect()
}

fn write(path: &Path, rows: &[[f64; 6]]) {
    let mut s = String::from("y,x1,x2,firm,year,g\n");
    for r in rows {
        s.push_str(&format!(
            "{:e},{:e},{:e},{},{},{}\n",
            r[0], r[1], r[2], r[3], r[4], r[5]
        ));
    }
    std::fs::write(path, s).unwrap();
}

fn fit_betas(path: &Path) -> Vec<f64> {
    let out = Command::new(env!("CARGO_BIN_EXE_fegpu"))
        .args([
            "fit",
            path.to_str().unwrap(),
            FORMULA,
            "--format",
            "json",
            "--tol",
            "1e-12",
        ])
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["models"][0]["coefficients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["estimate"].as_f64().unwrap())
        .collect()
}

#[test]
fn observation_level_replicates_equal_refits_of_the_drawn_groups() {
    let d = dir();
    let data = rows();
    let file = d.join("data.csv");
    write(&file, &data);
    let cols: Vec<String> = ["y", "x1", "x2", "firm", "year", "g"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let table = load(file.to_str().unwrap(), &cols).unwrap();
    let model = fegpu::formula::parse(FORMULA).unwrap();
    let popts = PrepareOptions {
        extra: vec!["g".into()],
        ..Default::default()
    };
    let design = prepare(&table, &model, &popts).unwrap();
    assert_eq!(
        design.nobs(),
        data.len(),
        "no row may leave the sample (units are its rows)"
    );
    let n1 = data.iter().filter(|r| r[5] == 1.0).count();
    for bsample in [false, true] {
        let opts = BdiffOptions {
            reps: 4,
            seed: 11,
            bsample,
            demean: DemeanOptions {
                tol: 1e-12,
                ..Default::default()
            },
            memory_budget: 64 << 20,
            progress: false,
        };
        let r = bdiff(&design, &design.extra[0], None, &opts, &CpuDemeaner).unwrap();
        assert_eq!(r.reps_failed, 0);
        for rep in 0..3u32 {
            let first = permutation_first_group(11, rep, data.len(), n1);
            let mult = if bsample {
                pairs_multiplicities(11, rep, data.len())
            } else {
                vec![1; data.len()]
            };
            let group = |g1: bool| -> Vec<[f64; 6]> {
                let mut out = Vec::new();
                for (u, row) in data.iter().enumerate() {
                    if first[u] == g1 {
                        out.extend(std::iter::repeat_n(*row, mult[u] as usize));
                    }
                }
                out
            };
            let (f1, f0) = (d.join("g1.csv"), d.join("g0.csv"));
            write(&f1, &group(true));
            write(&f0, &group(false));
            let (b1, b0) = (fit_betas(&f1), fit_betas(&f0));
            for c in 0..2 {
                let want = b1[c] - b0[c];
                let got = r.differences[c][rep as usize];
                assert!(
                    (got - want).abs() <= 1e-8 * want.abs().max(1e-3),
                    "bsample {bsample}, replicate {rep}, coefficient {c}: engine {got}, refit {want}"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&d);
}
