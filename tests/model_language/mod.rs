//! Helpers of the model-language tests (`tests/model_language_*.rs`): fit through the CLI and
//! compare a construct with its hand-built equivalent.
#![allow(dead_code)]

use serde_json::Value;

use super::common::{fegpu, s, tmp_file, Scratch};

/// The first model of `fegpu fit DATA FORMULA ARGS --format json`.
pub fn fit(data: &std::path::Path, formula: &str, args: &[&str]) -> Value {
    let mut all = vec!["fit", s(data), formula, "--format", "json", "--backend", "cpu"];
    all.extend_from_slice(args);
    let out = fegpu(&all);
    assert!(
        out.status.success(),
        "{formula}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["models"][0].clone()
}

pub fn coefficients(m: &Value) -> Vec<(String, f64, f64)> {
    m["coefficients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["estimate"].as_f64().unwrap(),
                c["std_error"].as_f64().unwrap(),
            )
        })
        .collect()
}

pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-10 * b.abs().max(1.0)
}

/// `got` (the construct) equals `want` (the hand-built fit) coefficient by coefficient, with
/// `want`'s names renamed by `names` (hand-built column → fixest's name), and has those names
/// in that order.
pub fn assert_same(got: &Value, want: &Value, names: &[(&str, String)]) {
    let (g, w) = (coefficients(got), coefficients(want));
    let renamed: Vec<String> = w
        .iter()
        .map(|(n, _, _)| names.iter().find(|(h, _)| h == n).map_or(n.clone(), |(_, f)| f.clone()))
        .collect();
    let got_names: Vec<&String> = g.iter().map(|c| &c.0).collect();
    assert_eq!(got_names, renamed.iter().collect::<Vec<_>>(), "names");
    for ((name, b, se), (_, b0, se0)) in g.iter().zip(&w) {
        assert!(close(*b, *b0), "{name}: estimate {b} vs hand-built {b0}");
        assert!(close(*se, *se0), "{name}: std. error {se} vs hand-built {se0}");
    }
    assert_eq!(got["nobs"], want["nobs"]);
}

/// `fegpu fit DATA FORMULA ARGS`, which must fail without panicking; its standard error.
pub fn fit_error(data: &std::path::Path, formula: &str, args: &[&str]) -> String {
    let mut all = vec!["fit", s(data), formula, "--backend", "cpu"];
    all.extend_from_slice(args);
    let out = fegpu(&all);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{formula} {args:?} succeeded");
    assert!(!err.contains("panicked"), "{formula}: {err}");
    err
}

/// A CSV file of `columns` (name, cells as text).
pub fn write_csv(name: &str, columns: &[(String, Vec<String>)]) -> Scratch {
    let path = tmp_file("model-language", name);
    let n = columns[0].1.len();
    let mut text = columns.iter().map(|c| c.0.clone()).collect::<Vec<_>>().join(",");
    text.push('\n');
    for i in 0..n {
        text.push_str(&columns.iter().map(|c| c.1[i].clone()).collect::<Vec<_>>().join(","));
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// Numbers as CSV cells (shortest round-trip form: read back exactly).
pub fn cells(v: &[f64]) -> Vec<String> {
    v.iter().map(|x| format!("{x:?}")).collect()
}

/// 0/1 indicator of `level` in `values`.
pub fn dummy<T: PartialEq>(values: &[T], level: &T) -> Vec<f64> {
    values.iter().map(|v| f64::from(u8::from(v == level))).collect()
}

pub fn times(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x * y).collect()
}
