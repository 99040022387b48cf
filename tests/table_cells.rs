//! Printed tables against the fitted numbers: in every text format the coefficient cell, the
//! standard error below it, N and R² must be the JSON's values at the printed precision, so a
//! table that shows the wrong column, row or rounding fails here.

use std::process::Command;

fn fegpu(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_fegpu"))
        .args(args)
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .expect("fegpu runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The cells of a table line in `format` (first cell is the row label).
fn cells(line: &str, format: &str) -> Vec<String> {
    let parts: Vec<&str> = match format {
        "markdown" => line.trim().trim_matches('|').split('|').collect(),
        "latex" => line.trim().trim_end_matches("\\\\").split('&').collect(),
        "csv" => line.split(',').collect(),
        _ => {
            let label_end = line.find(|c: char| c.is_whitespace()).unwrap_or(line.len());
            let (label, rest) = line.split_at(label_end);
            std::iter::once(label).chain(rest.split_whitespace()).collect()
        }
    };
    parts.iter().map(|s| s.trim().to_string()).collect()
}

fn number(cell: &str) -> f64 {
    cell.trim_matches(|c: char| c == '(' || c == ')' || c == '*')
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {cell:?}"))
}

fn close(printed: f64, exact: f64, what: &str) {
    // 4 significant digits are printed
    assert!(
        (printed - exact).abs() <= 5e-4 * exact.abs() + 1e-12,
        "{what}: printed {printed}, fitted {exact}"
    );
}

#[test]
fn every_table_format_prints_the_fitted_values() {
    let dir = std::env::temp_dir().join(format!("fegpu-cells-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("demo.csv").to_string_lossy().into_owned();
    fegpu(&["demo", "--rows", "3000", "--out", &data]);
    let formula = "qua ~ digtech + age + finance | firm + year";
    let args = |f: &'static str| vec!["fit", data.as_str(), formula, "--vcov", "cluster:dest", "--format", f];
    let json: serde_json::Value = serde_json::from_str(&fegpu(&args("json"))).unwrap();
    let m = &json["models"][0];
    for format in ["text", "markdown", "latex", "csv"] {
        let table = fegpu(&args(format));
        let lines: Vec<&str> = table.lines().collect();
        for c in m["coefficients"].as_array().unwrap() {
            let name = c["name"].as_str().unwrap();
            let at = lines
                .iter()
                .position(|l| cells(l, format).first().map(String::as_str) == Some(name))
                .unwrap_or_else(|| panic!("{format}: no row {name}"));
            let est = number(&cells(lines[at], format)[1]);
            let se_cells = cells(lines[at + 1], format);
            let se = number(se_cells.iter().rev().find(|s| !s.is_empty()).unwrap());
            close(
                est,
                c["estimate"].as_f64().unwrap(),
                &format!("{format} {name} estimate"),
            );
            close(se, c["std_error"].as_f64().unwrap(), &format!("{format} {name} s.e."));
        }
        let row = |label: &str| {
            let l = lines
                .iter()
                .find(|l| cells(l, format).first().map(String::as_str) == Some(label))
                .unwrap_or_else(|| panic!("{format}: no row {label}"));
            number(&cells(l, format)[1])
        };
        assert_eq!(row("N"), m["nobs"].as_f64().unwrap(), "{format} N");
        let r2 = row("R2");
        assert!((r2 - m["r2"].as_f64().unwrap()).abs() <= 5e-5, "{format} R2 {r2}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
