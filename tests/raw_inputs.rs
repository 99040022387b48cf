//! Every raw table of the study is required, and empty inputs say what is wrong: a missing
//! `imports` or `supply_chain` table stops `build-panel` with a message naming it (it used to
//! print "0 digital import lines" and exit 0), and a CSV with a header but no rows is reported as
//! such, not as a type error further down.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fegpu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fegpu"))
        .args(args)
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .expect("fegpu runs")
}

fn scratch(tag: &str) -> common::Scratch {
    common::tmpdir("raw", tag)
}

fn simulate(dir: &Path) {
    let out = fegpu(&["simulate", "--out", dir.to_str().unwrap(), "--scale", "small"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `build-panel` on `dir`, writing `dir/panel.parquet`: (that path, the run).
fn build_panel(dir: &Path) -> (PathBuf, Output) {
    let panel = dir.join("panel.parquet");
    let out = fegpu(&[
        "build-panel",
        "--raw",
        dir.to_str().unwrap(),
        "--out",
        panel.to_str().unwrap(),
    ]);
    (panel, out)
}

#[test]
fn a_missing_raw_table_is_an_error_naming_it() {
    for table in ["imports", "supply_chain"] {
        let dir = scratch(table);
        simulate(&dir);
        std::fs::remove_file(dir.join(format!("{table}.parquet"))).unwrap();
        let (panel, out) = build_panel(&dir);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{table}: exit 0 without the table");
        assert!(err.contains(table) && err.contains("no "), "{table}: {err}");
        assert!(!panel.exists(), "{table}: a panel was written");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_header_only_file_says_it_has_no_rows() {
    let dir = scratch("empty");
    let f = dir.join("empty.csv");
    std::fs::write(&f, "y,x\n").unwrap();
    let out = fegpu(&["fit", f.to_str().unwrap(), "y ~ x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("header but no rows") && err.contains("empty.csv"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn text_in_a_numeric_raw_column_names_the_file_column_row_and_cell() {
    let dir = scratch("text");
    let out = fegpu(&["simulate", "--out", dir.to_str().unwrap(), "--scale", "small", "--csv"]);
    assert!(out.status.success());
    let firms = dir.join("firms.csv");
    let text = std::fs::read_to_string(&firms).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let year = lines[0].split(',').position(|h| h == "year").unwrap();
    let mut cells: Vec<String> = lines[3].split(',').map(String::from).collect();
    cells[year] = "n/a-text".into();
    lines[3] = cells.join(",");
    std::fs::write(&firms, lines.join("\n") + "\n").unwrap();
    let (_, out) = build_panel(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for needle in ["`year`", "firms.csv", "holds text", "row 3", "n/a-text"] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    assert!(!err.contains("regressor"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
