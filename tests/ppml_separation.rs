//! Separation with known answers: small constructed data sets (tests/fixtures/ppml/separation,
//! README there) whose separated rows follow from the construction and were confirmed by a
//! linear program (scripts/reference/check_separation.py). For each: the estimation sample is
//! exactly the non-separated rows (same N, and the same estimates as a fit on the data with
//! those rows deleted), and with the responsible check switched off the sample differs — so
//! each test fails when its detection is off.

use std::path::{Path, PathBuf};

use fegpu::data::load;
use fegpu::demean::{CpuDemeaner, DemeanOptions};
use fegpu::estimate::glm::{Family, SeparationChecks};
use fegpu::estimate::{fit, FitOptions, FitResult};
use fegpu::formula;
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ppml/separation")
}

fn spec(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join(format!("{name}.json"))).unwrap()).unwrap()
}

fn run(csv: &Path, spec: &Value, checks: &str, keep_singletons: bool) -> FitResult {
    let model = formula::parse(spec["formula"].as_str().unwrap()).unwrap();
    let opts = FitOptions {
        family: Family::parse(spec["family"].as_str().unwrap()).unwrap(),
        separation: SeparationChecks::parse(checks).unwrap(),
        keep_singletons,
        glm_tol: 1e-12,
        glm_iter: 1000,
        demean: DemeanOptions {
            tol: 1e-13,
            ..Default::default()
        },
        ..Default::default()
    };
    let table = load(csv.to_str().unwrap(), &model.variables()).unwrap();
    fit(&table, &model, &opts, &CpuDemeaner).unwrap()
}

/// The fixture's CSV without the given 1-based data rows, in a temporary file.
fn without_rows(name: &str, rows: &[u64]) -> PathBuf {
    let text = std::fs::read_to_string(dir().join(format!("{name}.csv"))).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(k, _)| *k == 0 || !rows.contains(&(*k as u64)))
        .map(|(_, l)| l)
        .collect();
    let out = std::env::temp_dir().join(format!("fegpu-sep-{}-{name}.csv", std::process::id()));
    std::fs::write(&out, kept.join("\n") + "\n").unwrap();
    out
}

fn rows(v: &Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|r| r.as_u64().unwrap()).collect()
}

/// Separated rows found exactly; `off` is the `--separation` setting that misses them.
fn check(name: &str, off: &str) {
    let s = spec(name);
    let e = &s["expected"];
    let csv = dir().join(format!("{name}.csv"));
    let r = run(&csv, &s, "fe,relu", false);
    assert_eq!(r.nobs as u64, e["n_remaining"].as_u64().unwrap(), "{name}: N");
    let separated = rows(&e["drop_separated"]).len();
    assert_eq!(r.dropped.separated, separated, "{name}: separated count");
    let kept = run(&csv, &s, "fe,relu", true);
    assert_eq!(
        kept.nobs as u64,
        e["n_remaining_keep_singletons"].as_u64().unwrap(),
        "{name}: N keeping singletons"
    );
    // the same sample as the data without the expected rows, fitted with no check at all
    let clean = without_rows(name, &rows(&e["drop_rows"]));
    let c = run(&clean, &s, "none", true);
    std::fs::remove_file(&clean).ok();
    assert_eq!(c.nobs, r.nobs, "{name}: clean N");
    assert_eq!(
        r.coefficients.len(),
        c.coefficients.len(),
        "{name}: {:?} vs {:?}",
        r.notes,
        c.notes
    );
    for (a, b) in r.coefficients.iter().zip(&c.coefficients) {
        assert_eq!(a.name, b.name);
        assert!(
            (a.estimate - b.estimate).abs() <= 1e-8 * (1.0 + b.estimate.abs()),
            "{name}: {} {} vs {}",
            a.name,
            a.estimate,
            b.estimate
        );
        assert!(
            (a.std_error - b.std_error).abs() <= 1e-6 * b.std_error,
            "{name}: se {}",
            a.name
        );
    }
    assert!(r.converged, "{name}: {:?}", r.notes);
    // with the responsible check off, the separated rows stay in
    let missed = run(&csv, &s, off, false);
    assert!(
        missed.nobs as u64 > e["n_remaining"].as_u64().unwrap(),
        "{name}: `--separation {off}` should miss them"
    );
}

#[test]
fn an_all_zero_level_is_separated() {
    check("a_fe_all_zero", "none");
}

#[test]
fn removal_repeats_through_singletons() {
    check("b_singleton_recursion", "none");
}

#[test]
fn logit_removal_repeats_through_all_one_levels() {
    check("b_logit_recursion", "none");
}

#[test]
fn a_regressor_separates_with_and_without_effects() {
    check("c_regressor", "fe");
    check("c_regressor_nofe", "fe");
    let r = run(&dir().join("c_regressor.csv"), &spec("c_regressor"), "fe,relu", false);
    assert!(
        r.collinear.iter().any(|d| d.name == "x"),
        "x is omitted after the drop: {:?}",
        r.collinear
    );
}

#[test]
fn only_a_regressor_and_effect_combination_separates() {
    check("d_combination", "fe");
}
