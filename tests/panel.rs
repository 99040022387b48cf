//! `simulate` → `build-panel` → `fit` at `--scale small`: the panel has exactly the documented
//! columns, and the baseline model recovers the planted Digtech effect within its 95% interval;
//! bad raw input is refused with the file, column and row.

mod common;

use std::path::Path;
use std::process::Command;

use fegpu::data::Table;
use fegpu::demean::CpuDemeaner;
use fegpu::estimate::{fit, FitOptions, VcovSpec};
use fegpu::study::panel::{build_panel, schema, PanelOptions};
use fegpu::study::simulate::{simulate, Scale};

fn tmpdir(name: &str) -> common::Scratch {
    common::tmpdir("panel", name)
}

fn bin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fegpu")).args(args).output().unwrap()
}

#[test]
fn small_panel_recovers_the_planted_effect_and_matches_its_schema() {
    let dir = tmpdir("e2e");
    let truth = simulate(&dir, 11, Scale::Small, false).unwrap();
    let (df, report) = build_panel(&dir, &PanelOptions::default(), &CpuDemeaner).unwrap();
    assert!(report.rows > 1000, "{} rows", report.rows);
    // documented columns, in order
    let names: Vec<String> = df.get_column_names().iter().map(|s| s.to_string()).collect();
    let documented: Vec<String> = schema().into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(names, documented);
    // quality is standardised: within [0, 1]
    let t = Table::new(df.clone(), "panel".into());
    let qua = t.numeric("qua").unwrap();
    assert!(qua.iter().filter(|v| v.is_finite()).all(|v| (0.0..=1.0).contains(v)));
    assert!(qua.iter().filter(|v| v.is_finite()).count() > report.rows * 9 / 10);
    // the baseline of Table 1, column 5
    let model = fegpu::formula::parse(
        "qua ~ digtech + age + finance + profit + klratio + turnover + lnlp + lev + open + market + lnpergdp + xr | firm + year + firm^country",
    )
    .unwrap();
    let mut vars = model.variables();
    vars.push("country".into());
    let table = Table::new(df, "panel".into()).select(&vars).unwrap();
    let opts = FitOptions {
        vcov: VcovSpec::parse("cluster:country").unwrap(),
        ..Default::default()
    };
    let r = fit(&table, &model, &opts, &CpuDemeaner).unwrap();
    let c = r.coefficients.iter().find(|c| c.name == "digtech").unwrap();
    let planted = truth.planted["digtech_on_qua"];
    let t_crit = fegpu::stats::t_critical(0.05, r.df_t);
    eprintln!(
        "digtech {:.6} (se {:.6}), planted {:.6}, N {}",
        c.estimate, c.std_error, planted, r.nobs
    );
    assert!(
        (c.estimate - planted).abs() <= t_crit * c.std_error,
        "95% interval {} ± {} misses the planted {}",
        c.estimate,
        t_crit * c.std_error,
        planted
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn build_panel_cli_writes_the_panel_and_describes_it() {
    let dir = tmpdir("cli");
    let raw = dir.join("raw");
    let o = bin(&["simulate", "--out", raw.to_str().unwrap(), "--scale", "small", "--csv"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = dir.join("panel.csv");
    let o = bin(&[
        "build-panel",
        "--raw",
        raw.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--backend",
        "cpu",
        "--compare-loop",
        "--winsorize",
        "by-year",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    for step in [
        "match exports",
        "quality (batched)",
        "per-product loop",
        "competition strategy",
        "by year",
    ] {
        assert!(err.contains(step), "missing `{step}` in {err}");
    }
    // the per-product loop reproduces the batched quality estimates
    let at = err.find("max |Δλ| ").expect("the loop's difference is reported") + "max |Δλ| ".len();
    let diff: f64 = err[at..]
        .split(|c: char| c == ';' || c == ')' || c.is_whitespace())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(diff <= 1e-8, "batched and per-product quality differ by {diff}");
    assert!(out.exists());
    let o = bin(&["build-panel", "--describe"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    assert!(text.contains("qua") && text.contains("BW sigma"), "{text}");
    assert!(text.lines().count() > 60);
    let _ = std::fs::remove_dir_all(&dir);
}

fn expect_error(raw: &Path, out: &Path, needles: &[&str]) {
    let o = bin(&[
        "build-panel",
        "--raw",
        raw.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "should fail: {err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
    assert!(!out.exists(), "nothing may be written on failure");
}

#[test]
fn bad_raw_tables_are_refused_naming_file_column_and_row() {
    let dir = tmpdir("bad");
    let raw = dir.join("raw");
    simulate(&raw, 3, Scale::Small, true).unwrap();
    let out = dir.join("panel.parquet");
    let exports = std::fs::read_to_string(raw.join("exports.csv")).unwrap();
    // an HS code that is not one
    let mut lines: Vec<String> = exports.lines().map(String::from).collect();
    let hs_col = lines[0].split(',').position(|c| c == "hs8").unwrap();
    let mut f: Vec<String> = lines[1].split(',').map(String::from).collect();
    f[hs_col] = "8X".into();
    lines[1] = f.join(",");
    std::fs::write(raw.join("exports.csv"), lines.join("\n") + "\n").unwrap();
    expect_error(&raw, &out, &["hs8", "8X", "exports.csv", "row 1"]);
    // a missing column
    let dropped: Vec<String> = exports
        .lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split(',').collect();
            f.remove(f.len() - 2); // value_usd
            f.join(",")
        })
        .collect();
    std::fs::write(raw.join("exports.csv"), dropped.join("\n") + "\n").unwrap();
    expect_error(&raw, &out, &["value_usd", "exports.csv"]);
    std::fs::write(raw.join("exports.csv"), &exports).unwrap();
    // a year with exports but no survey records
    let firms = std::fs::read_to_string(raw.join("firms.csv")).unwrap();
    let year_col = firms
        .lines()
        .next()
        .unwrap()
        .split(',')
        .position(|c| c == "year")
        .unwrap();
    let kept: Vec<&str> = firms
        .lines()
        .filter(|l| l.split(',').nth(year_col) != Some("2011"))
        .collect();
    std::fs::write(raw.join("firms.csv"), kept.join("\n") + "\n").unwrap();
    expect_error(&raw, &out, &["2011", "firms.csv"]);
    // a missing raw table
    std::fs::write(raw.join("firms.csv"), &firms).unwrap();
    let cities = std::fs::read_to_string(raw.join("cities.csv")).unwrap();
    std::fs::remove_file(raw.join("cities.csv")).unwrap();
    expect_error(&raw, &out, &["cities"]);
    // a prefecture city listed twice
    let first = cities.lines().nth(1).unwrap();
    std::fs::write(raw.join("cities.csv"), format!("{cities}{first}\n")).unwrap();
    expect_error(&raw, &out, &["listed twice", "cities.csv"]);
    std::fs::write(raw.join("cities.csv"), &cities).unwrap();
    std::fs::remove_file(raw.join("regions.csv")).unwrap();
    expect_error(&raw, &out, &["regions"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn batched_streaming_of_raw_tables_gives_the_same_panel() {
    // the same raw CSV tables read in one batch and in batches of 500 lines (many batches,
    // groups split across batch boundaries) give bit-identical panels
    let dir = tmpdir("batches");
    let raw = dir.join("raw");
    let o = bin(&[
        "simulate",
        "--out",
        raw.to_str().unwrap(),
        "--scale",
        "small",
        "--csv",
        "--seed",
        "5",
    ]);
    assert!(o.status.success());
    let run = |out: &Path, batch: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_fegpu"))
            .args([
                "build-panel",
                "--raw",
                raw.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--backend",
                "cpu",
            ])
            .env("FEGPU_SCAN_BATCH", batch)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read(out).unwrap()
    };
    let whole = run(&dir.join("a.csv"), "100000000");
    let pieces = run(&dir.join("b.csv"), "500");
    assert!(whole.len() > 10_000);
    assert!(whole == pieces, "batching changed the panel");
    let _ = std::fs::remove_dir_all(&dir);
}
