//! Issue 14, items 1 and 6: input that overflows the sums (one huge value) and formulas that
//! estimate nothing are errors naming the column or the cause, with a non-zero exit; duplicated
//! terms and instruments are reported in a note; normal (and large but representable) data still
//! fit. Each case starts the real binary on a small CSV.

mod common;

use std::process::{Command, Output};

use fegpu::demean::{Absorb, CpuDemeaner, DemeanOptions, Demeaned, Demeaner};

fn fegpu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fegpu"))
        .args(args)
        .output()
        .expect("run fegpu")
}

fn tmpdir(name: &str) -> common::Scratch {
    common::tmpdir("nonfinite", name)
}

const COLUMNS: [&str; 7] = ["firm", "y", "x1", "x2", "z", "z2", "d"];

/// A written panel: it reads as its path; its scratch directory goes when it is dropped.
struct Panel {
    path: String,
    _dir: common::Scratch,
}

impl std::ops::Deref for Panel {
    type Target = str;
    fn deref(&self) -> &str {
        &self.path
    }
}

/// 6 firms × 6 rows with an endogenous `d` instrumented by `z`, `z2`; `edit(row, column, value)`
/// may replace any value.
fn panel(name: &str, edit: impl Fn(usize, &str, f64) -> f64) -> Panel {
    let mut s = COLUMNS.join(",") + "\n";
    for i in 0..36usize {
        let f = (i / 6) as f64;
        let x1 = ((i * 7) % 11) as f64 / 3.0;
        let x2 = ((i * 5) % 13) as f64 / 4.0 + 0.1 * f;
        let z = ((i * 3) % 7) as f64 + 0.5 * x1;
        let z2 = ((i * 11) % 9) as f64 - 0.2 * x2;
        let d = 0.8 * z - 0.3 * z2 + ((i * 13) % 5) as f64 * 0.2;
        let y = 1.0 + 0.5 * x1 - 0.25 * x2 + 0.7 * d + f + ((i * 17) % 7) as f64 * 0.1;
        let row = [f, y, x1, x2, z, z2, d];
        let cells: Vec<String> = COLUMNS
            .iter()
            .zip(row)
            .map(|(c, v)| format!("{:e}", edit(i, c, v)))
            .collect();
        s += &(cells.join(",") + "\n");
    }
    let dir = tmpdir(name);
    let p = dir.join("panel.csv");
    std::fs::write(&p, s).unwrap();
    Panel {
        path: p.to_str().unwrap().to_string(),
        _dir: dir,
    }
}

/// `column` set to `value` in row 3.
fn with_value(name: &str, column: &'static str, value: f64) -> Panel {
    panel(name, move |i, c, v| if i == 3 && c == column { value } else { v })
}

fn fit(file: &str, formula: &str, extra: &[&str]) -> Output {
    let mut args = vec!["fit", file, formula, "--backend", "cpu"];
    args.extend_from_slice(extra);
    fegpu(&args)
}

fn assert_fails_with(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got exit 0; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!err.contains("panicked"), "panic instead of an error: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr should mention {n:?}: {err}");
    }
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn json_ok(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn huge_dependent_variable_is_an_error_naming_it() {
    let f = with_value("y1e300", "y", 1e300);
    for formula in ["y ~ x1 + x2 | firm", "y ~ x1 + x2"] {
        assert_fails_with(&fit(&f, formula, &[]), &["column `y`", "1e300", "overflow"]);
    }
}

#[test]
fn huge_regressor_is_an_error_not_a_collinearity_drop() {
    let f = with_value("x1e200", "x1", 1e200);
    for formula in ["y ~ x1 + x2 | firm", "y ~ x1 + x2"] {
        let out = fit(&f, formula, &["--vcov", "hetero"]);
        assert_fails_with(&out, &["column `x1`", "1e200", "overflow", "rescale"]);
        assert!(!String::from_utf8_lossy(&out.stderr).contains("collinear"));
    }
}

#[test]
fn largest_doubles_are_an_error() {
    for col in ["y", "x2"] {
        let f = with_value(&format!("max-{col}"), col, 1.7e308);
        let out = fit(&f, "y ~ x1 + x2 | firm", &["--vcov", "cluster:firm"]);
        assert_fails_with(&out, &[&format!("column `{col}`"), "1.7e308", "overflow"]);
    }
}

#[test]
fn huge_instrument_in_an_iv_fit_is_an_error() {
    let f = with_value("iv-z", "z", 1e200);
    assert_fails_with(
        &fit(&f, "y ~ x1 | firm | d ~ z + z2", &[]),
        &["column `z`", "1e200", "overflow"],
    );
}

#[test]
fn variance_that_overflows_names_the_coefficient() {
    // every value representable and every sum of squares finite (≈1e202), but the sandwich's
    // Σ e² x² (≈1e400) is not
    let f = panel("meat", |_, c, v| if c == "x1" || c == "y" { v * 1e100 } else { v });
    let out = fit(&f, "y ~ x1 + x2 | firm", &["--vcov", "hetero"]);
    assert_fails_with(&out, &["column `x1`", "not finite"]);
    // the IV path: the second stage's sandwich overflows on the instrumented `d`
    let f = panel("meat-iv", |_, c, v| if c == "d" || c == "y" { v * 1e100 } else { v });
    let out = fit(&f, "y ~ x1 | firm | d ~ z + z2", &["--vcov", "hetero"]);
    assert_fails_with(&out, &["column `d`", "not finite"]);
}

#[test]
fn large_but_representable_data_still_fit() {
    let plain = panel("plain", |_, _, v| v);
    let base = json_ok(&fit(&plain, "y ~ x1 + x2 | firm", &["--format", "json"]));
    let b = base["models"][0]["coefficients"][0]["estimate"].as_f64().unwrap();
    assert!(b.is_finite() && base["models"][0]["coefficients"][0]["std_error"].as_f64().unwrap() > 0.0);
    // x1 × 1e100: its coefficient scales by 1e-100, nothing is dropped
    let big = panel("big", |_, c, v| if c == "x1" { v * 1e100 } else { v });
    let v = json_ok(&fit(&big, "y ~ x1 + x2 | firm", &["--format", "json"]));
    let c = &v["models"][0]["coefficients"][0];
    assert_eq!(c["name"], "x1");
    let scaled = c["estimate"].as_f64().unwrap() * 1e100;
    assert!((scaled - b).abs() < 1e-8 * b.abs().max(1.0), "{scaled} vs {b}");
    // a regressor that really is constant within firms is still dropped as collinear
    let fc = panel("firmconst", |i, c, v| if c == "x2" { (i / 6) as f64 * 2.0 } else { v });
    let v = json_ok(&fit(&fc, "y ~ x1 + x2 | firm", &["--format", "json"]));
    assert_eq!(v["models"][0]["collinear"][0]["name"], "x2");
}

#[test]
fn formulas_that_estimate_nothing_are_errors() {
    let f = panel("formulas", |_, _, v| v);
    for formula in ["y ~ 0", "y ~ -1"] {
        assert_fails_with(&fit(&f, formula, &[]), &["estimates nothing", "`y`"]);
    }
    for formula in ["y ~ y", "y ~ x1 + y | firm"] {
        assert_fails_with(&fit(&f, formula, &[]), &["dependent variable `y` is also a regressor"]);
    }
    assert_fails_with(
        &fit(&f, "y ~ x1 | firm | y ~ z", &[]),
        &["dependent variable `y` cannot be an endogenous"],
    );
    assert_fails_with(
        &fit(&f, "y ~ x1 | d ~ y", &[]),
        &["dependent variable `y` cannot be an instrument"],
    );
    // an intercept alone, or fixed effects alone, still estimate something
    json_ok(&fit(&f, "y ~ 1", &["--format", "json"]));
}

#[test]
fn duplicated_terms_and_instruments_are_noted() {
    let f = panel("dups", |_, _, v| v);
    let out = fit(&f, "y ~ x1 + x1 + x2 | firm | d ~ z + z2 + z", &["--format", "json"]);
    let v = json_ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    let notes = v["models"][0]["notes"].to_string();
    for needle in [
        "regressor `x1` appears more than once",
        "instrument `z` appears more than once",
    ] {
        assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
        assert!(notes.contains(needle), "JSON notes lack {needle:?}: {notes}");
    }
    let names: Vec<_> = v["models"][0]["coefficients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

/// The CPU demeaner with one demeaned value of `x1` turned infinite: an overflow inside a
/// demeaner must be an error naming the column, not a number in the table.
struct Overflowing;

impl Demeaner for Overflowing {
    fn name(&self) -> String {
        "overflowing".into()
    }
    fn demean(&self, p: &Absorb, cols: Vec<Vec<f64>>, o: &DemeanOptions) -> fegpu::error::Result<Demeaned> {
        let mut dm = CpuDemeaner.demean(p, cols, o)?;
        dm.columns[1][0] = f64::INFINITY;
        Ok(dm)
    }
    fn one_pass(&self, p: &Absorb, cols: &mut [Vec<f64>]) -> fegpu::error::Result<()> {
        CpuDemeaner.one_pass(p, cols)
    }
    fn alternating(&self, p: &Absorb, cols: Vec<Vec<f64>>, o: &DemeanOptions) -> fegpu::error::Result<Demeaned> {
        CpuDemeaner.alternating(p, cols, o)
    }
    fn krylov(&self, p: &Absorb, cols: Vec<Vec<f64>>, o: &DemeanOptions) -> fegpu::error::Result<Demeaned> {
        CpuDemeaner.krylov(p, cols, o)
    }
}

#[test]
fn overflow_inside_the_demeaner_names_the_column() {
    let n = 24;
    let firm: Vec<i64> = (0..n).map(|i| (i / 4) as i64).collect();
    let x1: Vec<f64> = (0..n).map(|i| ((i * 7) % 5) as f64).collect();
    let y: Vec<f64> = (0..n).map(|i| x1[i] + ((i * 3) % 4) as f64).collect();
    let cols = vec![
        polars::prelude::Column::new("firm".into(), firm),
        polars::prelude::Column::new("x1".into(), x1),
        polars::prelude::Column::new("y".into(), y),
    ];
    let table = fegpu::data::Table::new(polars::prelude::DataFrame::new(n, cols).unwrap(), "t".into());
    let model = fegpu::formula::parse("y ~ x1 | firm").unwrap();
    let opts = fegpu::estimate::FitOptions::default();
    assert!(fegpu::estimate::fit(&table, &model, &opts, &CpuDemeaner).is_ok());
    let e = fegpu::estimate::fit(&table, &model, &opts, &Overflowing)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("column `x1`") && e.contains("removing the fixed effects"),
        "{e}"
    );
}

/// Weights that are each finite but whose sum overflows: an error naming the weights column
/// (not a misleading overflow of `y`); the same weights at a sane scale fit.
#[test]
fn weights_whose_sum_overflows_are_an_error_naming_them() {
    // the firm column doubles as weights here: 1e308 for two firms' rows overflows the sum
    let huge = panel("weights", |_, c, v| if c == "firm" && v >= 4.0 { 1e308 } else { v });
    let out = fit(&huge, "y ~ x1 + x2", &["--weights", "firm"]);
    assert_fails_with(&out, &["weights `firm`", "sum overflow"]);
    let sane = panel("weights-ok", |_, c, v| if c == "firm" { v + 1.0 } else { v });
    json_ok(&fit(&sane, "y ~ x1 + x2", &["--weights", "firm", "--format", "json"]));
}
