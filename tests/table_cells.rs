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

/// A printed cell as a number: parentheses, significance stars (plain, Markdown-escaped or as a
/// LaTeX superscript) and brackets removed.
fn parse_cell(cell: &str) -> f64 {
    let c = cell.replace("$^{", "").replace("}$", "").replace('\\', "");
    c.trim_matches(|ch: char| "()*[],".contains(ch))
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {cell:?}"))
}

/// Printed with four significant digits (or more): within half a unit of the fourth digit.
fn close_relative(printed: f64, exact: f64, what: &str) {
    assert!(
        (printed - exact).abs() <= 5e-4 * exact.abs(),
        "{what}: printed {printed}, fitted {exact}"
    );
}

/// 400 rows, 20 clusters `cl` (group `grp` = cl mod 2), a 10-level effect `fe`, a regressor `x`,
/// and outcomes on a tiny (`ys`, slope 6.5e-13) and a huge (`yb`, slope 6.5e11) scale.
fn scaled_data(path: &std::path::Path) {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut unif = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    };
    let mut csv = String::from("ys,yb,x,fe,cl,grp\n");
    for i in 0..400 {
        let (x, e) = (unif() * 2.0, unif());
        let base = 0.65 * x + 0.1 * e + 0.01 * (i % 10) as f64;
        csv.push_str(&format!(
            "{:e},{:e},{x},{},{},{}\n",
            base * 1e-12,
            base * 1e12,
            i % 10,
            i % 20,
            (i % 20) % 2
        ));
    }
    std::fs::write(path, csv).unwrap();
}

/// Issue 25: a coefficient of 6.5e-13 printed as `0.00000000***`. Every table format must show
/// the fitted estimate and standard error to four significant digits, on tiny and huge scales.
#[test]
fn tiny_and_huge_estimates_keep_their_digits_in_every_table_format() {
    let dir = std::env::temp_dir().join(format!("fegpu-cells-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("scaled.csv");
    scaled_data(&data);
    let data = data.to_string_lossy().into_owned();
    for formula in ["ys ~ x | fe", "yb ~ x | fe"] {
        let args = |f: &'static str| vec!["fit", data.as_str(), formula, "--vcov", "cluster:cl", "--format", f];
        let json: serde_json::Value = serde_json::from_str(&fegpu(&args("json"))).unwrap();
        let c = &json["models"][0]["coefficients"][0];
        let (est, se) = (c["estimate"].as_f64().unwrap(), c["std_error"].as_f64().unwrap());
        for format in ["text", "markdown", "latex", "csv"] {
            let table = fegpu(&args(format));
            let lines: Vec<&str> = table.lines().collect();
            let at = lines
                .iter()
                .position(|l| cells(l, format).first().map(String::as_str) == Some("x"))
                .unwrap_or_else(|| panic!("{format}: no row x in {table}"));
            let what = format!("{formula} {format}");
            close_relative(
                parse_cell(&cells(lines[at], format)[1]),
                est,
                &format!("{what} estimate"),
            );
            let se_cells = cells(lines[at + 1], format);
            let se_cell = se_cells.iter().rev().find(|s| !s.is_empty()).unwrap();
            close_relative(parse_cell(se_cell), se, &format!("{what} s.e."));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The text output of `boot` (wild and pairs) and `bdiff` on the tiny scale: the estimates,
/// standard errors, interval bounds and differences are the JSON's to four significant digits.
#[test]
fn tiny_estimates_keep_their_digits_in_boot_and_bdiff_text() {
    let dir = std::env::temp_dir().join(format!("fegpu-cells-boot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("scaled.csv");
    scaled_data(&data);
    let d = data.to_str().unwrap();
    let f = "ys ~ x | fe";
    let run = |args: &[&str], format: &str| fegpu(&[args, &["--format", format]].concat());
    let row = |text: &str, name: &str| -> Vec<f64> {
        let l = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row {name}: {text}"));
        l.split_whitespace().skip(1).map(parse_cell).collect()
    };

    let wild = [
        "boot",
        d,
        f,
        "--cluster",
        "cl",
        "--reps",
        "199",
        "--weights-type",
        "webb",
    ];
    let v: serde_json::Value = serde_json::from_str(&run(&wild, "json")).unwrap();
    let text = run(&wild, "text");
    let est_line = text.lines().find(|l| l.trim_start().starts_with("estimate")).unwrap();
    let est = parse_cell(est_line.split_whitespace().nth(1).unwrap());
    close_relative(est, v["wild"]["estimate"].as_f64().unwrap(), "wild estimate");
    let ci_line = text.lines().find(|l| l.contains("confidence interval")).unwrap();
    let inside = &ci_line[ci_line.find('[').unwrap()..];
    let bounds: Vec<f64> = inside.split_whitespace().map(parse_cell).collect();
    for (k, b) in bounds.iter().enumerate() {
        close_relative(*b, v["wild"]["ci"][k].as_f64().unwrap(), "wild interval");
    }

    let pairs = ["boot", d, f, "--cluster", "cl", "--kind", "pairs", "--reps", "50"];
    let v: serde_json::Value = serde_json::from_str(&run(&pairs, "json")).unwrap();
    let printed = row(&run(&pairs, "text"), "x");
    let c = &v["pairs"]["coefficients"][0];
    for (k, key) in ["estimate", "std_error", "ci_low", "ci_high"].iter().enumerate() {
        close_relative(printed[k], c[key].as_f64().unwrap(), &format!("pairs {key}"));
    }

    let bdiff = ["bdiff", d, f, "--group", "grp", "--unit", "cl", "--reps", "99"];
    let v: serde_json::Value = serde_json::from_str(&run(&bdiff, "json")).unwrap();
    let printed = row(&run(&bdiff, "text"), "x");
    let c = &v["bdiff"]["coefficients"][0];
    for (k, key) in ["estimate_group1", "estimate_group0", "difference"].iter().enumerate() {
        close_relative(printed[k], c[key].as_f64().unwrap(), &format!("bdiff {key}"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
