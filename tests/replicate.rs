//! `fegpu replicate --scale small` end to end: every table file exists with its columns, the
//! planted Digtech effect is recovered in Table 1, the report and timing are written; a failing
//! specification is reported in its table while the others still run, and the exit code says so.

mod common;

use std::process::Command;

fn tmpdir(name: &str) -> common::Scratch {
    common::tmp_path("replicate", name)
}

fn bin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fegpu")).args(args).output().unwrap()
}

#[test]
fn small_replication_writes_every_table_and_recovers_the_planted_effect() {
    let out = tmpdir("small");
    let o = bin(&[
        "replicate",
        "--scale",
        "small",
        "--out",
        out.to_str().unwrap(),
        "--reps",
        "99",
        "--backend",
        "cpu",
    ]);
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{stderr}");
    // progress per stage and Table 1 at the end
    assert!(
        stderr.contains("table 13") && stderr.contains("build panel"),
        "{stderr}"
    );
    assert!(
        // variables as the paper names them (the specification's labels), the paper's numbers
        stdout.contains("Digtech") && stdout.contains("Planted truth") && stdout.contains("Paper: Digtech"),
        "{stdout}"
    );
    let expected_headers: [(&str, &[&str]); 5] = [
        ("1", &["(1)", "(2)", "(3)", "(4)", "(5)"]),
        ("2", &["IV_Post", "IV_Telephone"]),
        ("5", &["Digital (C39)", "Digitalising", "Strong IPR", "Weak IPR"]),
        ("7", &["Strategy", "Firms"]),
        ("13", &["Degree", "Structural holes", "Supplier Digtech"]),
    ];
    for id in 1..=13 {
        for ext in ["md", "tex", "csv"] {
            let p = out.join(format!("table{id}.{ext}"));
            let text = std::fs::read_to_string(&p).unwrap_or_else(|_| panic!("{} missing", p.display()));
            assert!(text.len() > 50, "{} is empty", p.display());
        }
    }
    for (id, cols) in expected_headers {
        let csv = std::fs::read_to_string(out.join(format!("table{id}.csv"))).unwrap();
        let header = csv.lines().next().unwrap();
        for c in cols {
            assert!(header.contains(c), "table {id}: `{c}` not in header `{header}`");
        }
    }
    let p5 = std::fs::read_to_string(out.join("table5.csv")).unwrap();
    assert!(p5.contains("Permutation p"), "{p5}");
    let iv = std::fs::read_to_string(out.join("table2.md")).unwrap();
    assert!(iv.contains("KP rk LM") && iv.contains("CD Wald F"), "{iv}");
    // results.json: Table 1's planted effect is recovered
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["failures"], 0);
    assert_eq!(json["tables"].as_array().unwrap().len(), 13);
    let t1 = &json["tables"][0];
    assert_eq!(t1["id"], "1");
    for col in t1["columns"].as_array().unwrap().iter().skip(1) {
        let (est, truth) = (col["estimate"].as_f64().unwrap(), col["truth"].as_f64().unwrap());
        assert_eq!(
            col["covers_truth"], true,
            "Table 1 {}: {est} vs truth {truth}",
            col["label"]
        );
    }
    // (2) is estimated on (3)'s sample (the paper prints one N for (2)-(5))
    let t1_cols = t1["columns"].as_array().unwrap();
    assert!(
        t1_cols[1]["sample"]
            .as_str()
            .is_some_and(|s| s.contains("age > -inf") && s.contains("lev > -inf")),
        "{}",
        t1_cols[1]["sample"]
    );
    assert_eq!(t1_cols[1]["result"]["nobs"], t1_cols[2]["result"]["nobs"]);
    // Table 1's numbers are the fit command's on the written panel (same formula and variance)
    for col in t1["columns"].as_array().unwrap() {
        if !col["sample"].is_null() {
            continue;
        }
        let r = &col["result"];
        let panel = out.join("panel.parquet");
        let vcov = r["vcov"].as_str().unwrap();
        let f = bin(&[
            "fit",
            panel.to_str().unwrap(),
            col["formula"].as_str().unwrap(),
            "--vcov",
            vcov,
            "--format",
            "json",
            "--backend",
            "cpu",
        ]);
        assert!(f.status.success(), "{}", String::from_utf8_lossy(&f.stderr));
        let refit: serde_json::Value = serde_json::from_slice(&f.stdout).unwrap();
        let c = refit["models"][0]["coefficients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == col["param"])
            .unwrap()
            .clone();
        for (key, mine) in [("estimate", "estimate"), ("std_error", "std_error")] {
            let (a, b) = (c[key].as_f64().unwrap(), col[mine].as_f64().unwrap());
            assert!(
                (a - b).abs() <= 1e-10 * b.abs(),
                "Table 1 {}: {key} refit {a} vs table {b}",
                col["label"]
            );
        }
        assert_eq!(refit["models"][0]["nobs"], r["nobs"]);
    }
    let splits = json["tables"][4]["splits"].as_array().unwrap();
    assert_eq!(splits.len(), 2);
    assert!(splits
        .iter()
        .all(|s| s["p"].as_f64().is_some_and(|p| (0.0..=1.0).contains(&p))));
    // report and timing
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("Table 13") && html.contains("permutation distribution"));
    let timing = std::fs::read_to_string(out.join("timing.csv")).unwrap();
    assert!(
        timing.starts_with("stage,seconds,backend") && timing.lines().count() > 15,
        "{timing}"
    );
    assert!(out.join("raw/truth.json").exists() && out.join("panel.parquet").exists());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_failing_specification_is_reported_and_the_rest_still_runs() {
    let out = tmpdir("fail");
    std::fs::create_dir_all(&out).unwrap();
    let spec = out.join("spec.json");
    std::fs::write(
        &spec,
        r#"{
  "macros": { "FE": "firm + year + firm^country" },
  "tables": [
    { "id": "A", "title": "works", "columns": [ { "label": "ok", "formula": "qua ~ digtech | {FE}" } ] },
    { "id": "B", "title": "fails", "columns": [
        { "label": "empty", "formula": "qua ~ digtech | {FE}", "sample": "year > 3000" },
        { "label": "fine", "formula": "qua ~ digtech" } ] }
  ]
}"#,
    )
    .unwrap();
    let o = bin(&[
        "replicate",
        "--scale",
        "small",
        "--out",
        out.to_str().unwrap(),
        "--spec",
        spec.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a failed column must fail the run: {stderr}");
    assert!(stderr.contains("1 specification(s) failed"), "{stderr}");
    let a = std::fs::read_to_string(out.join("tableA.md")).unwrap();
    assert!(a.contains("digtech"));
    let b = std::fs::read_to_string(out.join("tableB.md")).unwrap();
    assert!(b.contains("`empty` failed") && b.contains("fine"), "{b}");
    // a malformed spec is refused before anything runs
    std::fs::write(
        &spec,
        r#"{"tables":[{"id":"1","title":"t","columns":[{"label":"a","formula":"y ~ {NOPE}"}]}]}"#,
    )
    .unwrap();
    let o = bin(&[
        "replicate",
        "--scale",
        "small",
        "--out",
        out.join("x").to_str().unwrap(),
        "--spec",
        spec.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("NOPE"), "{stderr}");
    assert!(!out.join("x").exists());
    let _ = std::fs::remove_dir_all(&out);
}
