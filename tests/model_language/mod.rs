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

/// A CSV written by fegpu (`--save`, `--predict-out`): header and cells (empty: missing, NaN).
pub fn read_csv(path: &std::path::Path) -> (Vec<String>, Vec<Vec<f64>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(str::to_string).collect();
    let rows = lines
        .map(|l| l.split(',').map(|c| c.parse().unwrap_or(f64::NAN)).collect())
        .collect();
    (header, rows)
}

/// The golden values of R's fixest for `--save`, `--predict` and `--fsplit`
/// (`scripts/reference/make_fixest_save.R`) and the files they were computed on.
pub fn fixest_save_fixture() -> (std::path::PathBuf, Value) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model_language");
    let json = std::fs::read_to_string(dir.join("fixest_save.json")).unwrap();
    (dir, serde_json::from_str(&json).unwrap())
}

/// `got` matches fixest's `want` (`names`, `estimate`, `std_error`, `nobs` of the fixture):
/// estimates to 1e-8 and standard errors to 1e-6, relative.
pub fn assert_fixest(got: &Value, want: &Value, what: &str) {
    let g = coefficients(got);
    let names: Vec<&str> = want["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        g.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
        names,
        "{what}: names"
    );
    for (k, (name, b, se)) in g.iter().enumerate() {
        let (b0, se0) = (
            want["estimate"][k].as_f64().unwrap(),
            want["std_error"][k].as_f64().unwrap(),
        );
        assert!(
            (b - b0).abs() <= 1e-8 * b0.abs().max(1.0),
            "{what} {name}: {b} vs fixest {b0}"
        );
        assert!(
            (se - se0).abs() <= 1e-6 * se0.abs(),
            "{what} {name}: se {se} vs fixest {se0}"
        );
    }
    assert_eq!(got["nobs"], want["nobs"], "{what}: N");
}
