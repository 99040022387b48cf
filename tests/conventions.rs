//! Conventions that differ between reghdfe and fixest are said, not silent: under `--ssc fixest`
//! a sample that lost singletons (reghdfe's rule, fixest keeps them) carries a note, which
//! `--keep-singletons` removes; and reghdfe's absorbed degrees of freedom give the first free
//! intercept one redundant level when an effect is nested in the cluster (its `estimate_dof`).

use std::process::Command;

mod common;

fn fegpu(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_fegpu"))
        .args(args)
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .expect("fegpu runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// A 3,000-row demo panel in a scratch directory of the test's own (tests run in parallel).
fn demo(name: &str) -> (common::Scratch, String) {
    let dir = common::tmpdir("conventions", name);
    let path = dir.join("demo.csv").to_string_lossy().into_owned();
    let out = Command::new(env!("CARGO_BIN_EXE_fegpu"))
        .args(["demo", "--rows", "3000", "--out", &path])
        .output()
        .unwrap();
    assert!(out.status.success());
    (dir, path)
}

#[test]
fn fixest_convention_says_when_singletons_were_dropped() {
    let (_dir, data) = demo("singletons");
    let fit = |extra: &[&str]| {
        let mut a = vec![
            "fit",
            &data,
            "qua ~ digtech | firm + year + firm^dest",
            "--ssc",
            "fixest",
            "--format",
            "json",
        ];
        a.extend_from_slice(extra);
        fegpu(&a)["models"][0].clone()
    };
    let dropped = fit(&[]);
    let singletons = dropped["dropped"]["singletons"].as_u64().unwrap();
    assert!(singletons > 0, "the demo has singletons");
    let notes = dropped["notes"].to_string();
    assert!(
        notes.contains("singleton") && notes.contains("--keep-singletons"),
        "{notes}"
    );
    let kept = fit(&["--keep-singletons"]);
    assert_eq!(kept["dropped"]["singletons"], 0);
    assert!(!kept["notes"].to_string().contains("singleton"));
    assert_eq!(
        kept["nobs"].as_u64().unwrap(),
        dropped["nobs"].as_u64().unwrap() + singletons
    );
    // the reghdfe convention is the default and says nothing
    let r = fegpu(&[
        "fit",
        &data,
        "qua ~ digtech | firm + year + firm^dest",
        "--format",
        "json",
    ]);
    assert!(!r["models"][0]["notes"].to_string().contains("singleton"));
}

#[test]
fn reghdfe_gives_the_first_free_intercept_a_redundant_level_when_one_is_nested() {
    let (_dir, data) = demo("nested");
    let fit = |formula: &str| {
        fegpu(&["fit", &data, formula, "--vcov", "cluster:firm", "--format", "json"])["models"][0].clone()
    };
    for formula in ["qua ~ digtech | firm + year", "qua ~ digtech | year + firm"] {
        let m = fit(formula);
        let fes = m["fixed_effects"].as_array().unwrap();
        let year = fes.iter().find(|f| f["name"] == "year").unwrap();
        let firm = fes.iter().find(|f| f["name"] == "firm").unwrap();
        assert_eq!(firm["nested"], true, "{formula}");
        assert_eq!(
            year["redundant"], 1,
            "{formula}: the constant sits in the nested firm effect"
        );
        assert_eq!(
            m["df_absorbed"].as_u64().unwrap(),
            year["levels"].as_u64().unwrap() - 1,
            "{formula}"
        );
    }
}
