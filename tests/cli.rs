//! The `fegpu` binary: bad input gives a clear one-line error and a non-zero exit (never a
//! panic, never a half-written file); good input gives the table formats and the JSON contract.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn fegpu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fegpu"))
        .args(args)
        .output()
        .expect("run fegpu")
}

fn tmpdir(name: &str) -> common::Scratch {
    common::tmpdir("cli", name)
}

/// A small panel: 4 firms × 5 years, a text column and a level-constant regressor.
fn small_csv(dir: &Path) -> String {
    let mut s = String::from("firm,year,y,x,z,name,w,firmconst,neg\n");
    for f in 0..4 {
        for t in 0..5 {
            let x = (f * 7 + t * 3) as f64 % 5.0 + 0.1 * t as f64;
            let z = ((f + 1) * (t + 2)) as f64 / 3.0;
            let y = 1.0 + 0.5 * x - 0.2 * z + f as f64 + ((f * 13 + t * 5) % 7) as f64 * 0.1;
            s.push_str(&format!(
                "{f},{},{y},{x},{z},n{f},{},{},{}\n",
                2010 + t,
                1.0 + t as f64,
                f * 2,
                -(t as f64) - 1.0
            ));
        }
    }
    let p = dir.join("small.csv");
    std::fs::write(&p, s).unwrap();
    p.to_str().unwrap().to_string()
}

fn assert_clean_failure(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, got success; stderr: {err}");
    assert!(!err.contains("panicked"), "panic instead of an error: {err}");
    assert!(err.contains(needle), "stderr should mention {needle:?}: {err}");
    assert!(
        out.stdout.is_empty(),
        "nothing should be printed on stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn missing_column_is_named() {
    let d = tmpdir("missing");
    let f = small_csv(&d);
    assert_clean_failure(&fegpu(&["fit", &f, "y ~ x + nope | firm"]), "column `nope`: not found");
}

#[test]
/// A text column is a factor on the right-hand side (issue 28: `y ~ x + name | year` gives one
/// dummy per name, tests/model_language_factors.rs); transforming it is refused by name.
fn text_regressor_is_refused_by_name_where_it_cannot_be_a_factor() {
    let d = tmpdir("text");
    let f = small_csv(&d);
    assert_clean_failure(
        &fegpu(&["fit", &f, "y ~ x + log(name) | year"]),
        "column `name`: holds text, so `log(name)` cannot be computed",
    );
}

#[test]
fn all_rows_dropped_is_an_error() {
    let d = tmpdir("alldrop");
    let f = small_csv(&d);
    // log of a column that is never positive: every row is dropped as non-finite
    assert_clean_failure(&fegpu(&["fit", &f, "y ~ x + log(neg) | firm"]), "20 non-finite");
    // firm is its own singleton structure with the interaction firm^year: every row is a singleton
    assert_clean_failure(&fegpu(&["fit", &f, "y ~ x | firm^year"]), "singletons");
}

#[test]
fn syntax_error_points_at_the_character() {
    let out = fegpu(&["fit", "demo", "qua ~ digtech + + age"]);
    assert_clean_failure(&out, "formula error at character 17");
    assert!(String::from_utf8_lossy(&out.stderr).contains("^"));
}

#[test]
fn fixed_effect_absorbing_the_regressor_is_an_error() {
    let d = tmpdir("absorbed");
    let f = small_csv(&d);
    assert_clean_failure(
        &fegpu(&["fit", &f, "y ~ firmconst | firm"]),
        "no regressor is left to estimate: `firmconst` (collinear with the fixed effects)",
    );
    // with another regressor left, it is dropped with a note and the fit goes on
    let out = fegpu(&["fit", &f, "y ~ x + firmconst | firm"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`firmconst` was removed"));
}

#[test]
fn bad_options_and_files_are_errors() {
    let d = tmpdir("opts");
    let f = small_csv(&d);
    assert_clean_failure(
        &fegpu(&["fit", &f, "y ~ x | firm", "--vcov", "clustered"]),
        "unknown --vcov",
    );
    assert_clean_failure(&fegpu(&["fit", &f, "y ~ x | firm", "--ssc", "stata"]), "unknown --ssc");
    assert_clean_failure(&fegpu(&["fit", "/nonexistent/panel.csv", "y ~ x"]), "no such file");
    let odd = d.join("panel.xlsx");
    std::fs::write(&odd, "x").unwrap();
    assert_clean_failure(&fegpu(&["fit", odd.to_str().unwrap(), "y ~ x"]), "unknown file type");
    assert_clean_failure(
        &fegpu(&["fit", &f, "y ~ x | firm", "--vcov", "cluster:nope"]),
        "column `nope`",
    );
    // x both exogenous and endogenous: the second stage is not identified
    assert_clean_failure(
        &fegpu(&["fit", &f, "y ~ x | year | x ~ z"]),
        "second stage is collinear",
    );
    let neg = d.join("neg.csv");
    std::fs::write(&neg, "y,x,w,g\n1,2,1,0\n2,3,-1,0\n3,5,1,1\n4,4,2,1\n").unwrap();
    assert_clean_failure(
        &fegpu(&["fit", neg.to_str().unwrap(), "y ~ x | g", "--weights", "w"]),
        "row 2 has -1",
    );
}

#[test]
fn failed_run_writes_no_output_file() {
    let d = tmpdir("nowrite");
    let f = small_csv(&d);
    let out_file = d.join("table.md");
    let out = fegpu(&[
        "fit",
        &f,
        "y ~ x | firm",
        "y ~ nope | firm",
        "--output",
        out_file.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(!out_file.exists(), "a failed run must not leave a table behind");
}

#[test]
fn json_output_follows_the_contract() {
    let d = tmpdir("json");
    let f = small_csv(&d);
    let out = fegpu(&[
        "fit",
        &f,
        "y ~ x + z | firm + year",
        "y ~ x | firm",
        "--vcov",
        "cluster:firm",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    for m in models {
        for key in [
            "formula",
            "nobs",
            "coefficients",
            "r2",
            "adj_r2",
            "within_r2",
            "rmse",
            "vcov",
            "ssc",
            "fixed_effects",
            "dropped",
            "df_absorbed",
            "iterations",
            "backend",
        ] {
            assert!(m.get(key).is_some(), "JSON model lacks `{key}`");
        }
        for c in m["coefficients"].as_array().unwrap() {
            for key in ["name", "estimate", "std_error", "t", "p"] {
                assert!(c.get(key).is_some(), "coefficient lacks `{key}`");
            }
        }
        for fe in m["fixed_effects"].as_array().unwrap() {
            assert!(fe["name"].is_string() && fe["levels"].is_u64());
        }
        assert!(m["dropped"]["missing"].is_u64() && m["dropped"]["singletons"].is_u64());
        assert_eq!(m["vcov"], "cluster:firm");
        assert_eq!(m["ssc"], "reghdfe");
    }
    // full f64 precision: the printed estimate is the shortest round-trip form of an f64
    // (≥ 15 significant digits for this generic value), not a rounded one
    let text = String::from_utf8_lossy(&out.stdout);
    let at = text.find("\"estimate\":").expect("an estimate") + "\"estimate\":".len();
    let token: String = text[at..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '-' | '.' | 'e' | 'E' | '+'))
        .collect();
    let mantissa = token.split(['e', 'E']).next().unwrap();
    let digits = mantissa
        .trim_start_matches(['-', '0', '.'])
        .chars()
        .filter(|c| c.is_ascii_digit())
        .count();
    assert!(
        digits >= 15,
        "estimate printed as {token} ({digits} significant digits)"
    );
    let est = models[0]["coefficients"][0]["estimate"].as_f64().unwrap();
    assert_eq!(token.parse::<f64>().unwrap(), est);
}

#[test]
fn table_formats_and_output_file() {
    let d = tmpdir("formats");
    let f = small_csv(&d);
    let fits = ["fit", &f, "y ~ x | firm", "y ~ x + z | firm + year", "--vcov", "hetero"];
    let text = fegpu(&fits);
    let t = String::from_utf8_lossy(&text.stdout);
    assert!(t.contains("(1)") && t.contains("(2)") && t.contains("firm FE") && t.contains("Adj. R2"));
    assert!(t.contains("heteroskedasticity-robust") && t.contains("Small-sample convention: reghdfe"));
    let md = fegpu(&[&fits[..], &["--format", "markdown"]].concat());
    assert!(String::from_utf8_lossy(&md.stdout).contains("|:---|"));
    let tex = fegpu(&[&fits[..], &["--format", "latex", "--stat", "t"]].concat());
    let tex = String::from_utf8_lossy(&tex.stdout);
    assert!(tex.contains("\\begin{tabular}") && tex.contains("\\toprule") && tex.contains("t statistics"));
    let csv = fegpu(&[&fits[..], &["--format", "csv"]].concat());
    assert!(String::from_utf8_lossy(&csv.stdout).starts_with(",(1),(2)"));
    let out_file = d.join("t.tex");
    let o = fegpu(
        &[
            &fits[..],
            &["--format", "latex", "--output", out_file.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(o.status.success() && o.stdout.is_empty());
    assert!(std::fs::read_to_string(&out_file).unwrap().contains("\\bottomrule"));
}

#[test]
fn demo_file_round_trips_through_parquet_and_csv() {
    let d = tmpdir("demo");
    let pq = d.join("demo.parquet");
    let csv = d.join("demo.csv");
    for p in [&pq, &csv] {
        let o = fegpu(&["demo", "--out", p.to_str().unwrap(), "--rows", "3000"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let f = "qua ~ digtech + age + lnlp | firm + year + firm^dest";
    let a = fegpu(&[
        "fit",
        pq.to_str().unwrap(),
        f,
        "--vcov",
        "cluster:dest",
        "--format",
        "json",
    ]);
    let b = fegpu(&[
        "fit",
        csv.to_str().unwrap(),
        f,
        "--vcov",
        "cluster:dest",
        "--format",
        "json",
    ]);
    assert!(
        a.status.success() && b.status.success(),
        "{}",
        String::from_utf8_lossy(&b.stderr)
    );
    let va: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    let vb: serde_json::Value = serde_json::from_slice(&b.stdout).unwrap();
    assert_eq!(va["models"][0]["nobs"], vb["models"][0]["nobs"]);
    let ea = va["models"][0]["coefficients"][0]["estimate"].as_f64().unwrap();
    let eb = vb["models"][0]["coefficients"][0]["estimate"].as_f64().unwrap();
    assert!((ea - eb).abs() <= 1e-12 * ea.abs(), "parquet {ea} vs csv {eb}");
    // missing values in lnlp are counted
    assert!(va["models"][0]["dropped"]["missing"].as_u64().is_some());
}

#[test]
fn devices_lists_adapters_or_says_none() {
    let out = fegpu(&["devices"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("adapter") || text.contains("no GPU adapter"), "{text}");
}

#[test]
fn backend_gpu_without_adapter_is_an_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_fegpu"))
        .args(["fit", "demo", "qua ~ digtech | firm + year", "--backend", "gpu"])
        .env("WGPU_BACKEND", "vulkan")
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .output()
        .unwrap();
    assert_clean_failure(&out, "no GPU adapter found");
}

#[test]
fn backend_gpu_gives_the_cpu_answer() {
    let d = tmpdir("gpu");
    let f = small_csv(&d);
    let run = |backend: &str| {
        fegpu(&[
            "fit",
            &f,
            "y ~ x + z | firm + year",
            "--vcov",
            "cluster:firm",
            "--backend",
            backend,
            "--format",
            "json",
        ])
    };
    let cpu = run("cpu");
    let gpu = run("gpu");
    if !gpu.status.success() {
        let err = String::from_utf8_lossy(&gpu.stderr);
        assert!(
            std::env::var_os("CI").is_none() && err.contains("no GPU adapter"),
            "GPU run failed: {err}"
        );
        return;
    }
    let c: serde_json::Value = serde_json::from_slice(&cpu.stdout).unwrap();
    let g: serde_json::Value = serde_json::from_slice(&gpu.stdout).unwrap();
    assert!(g["models"][0]["backend"].as_str().unwrap().starts_with("gpu:"));
    for (a, b) in c["models"][0]["coefficients"]
        .as_array()
        .unwrap()
        .iter()
        .zip(g["models"][0]["coefficients"].as_array().unwrap())
    {
        for key in ["estimate", "std_error"] {
            let (u, v) = (a[key].as_f64().unwrap(), b[key].as_f64().unwrap());
            assert!((u - v).abs() <= 1e-7 * u.abs(), "{key}: cpu {u} vs gpu {v}");
        }
    }
}

fn iv_csv() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/iv/panel_iv.csv")
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn iv_with_fewer_instruments_than_endogenous_is_an_error() {
    assert_clean_failure(
        &fegpu(&["fit", &iv_csv(), "y ~ x1 | f1 | d1 + d2 ~ z1"]),
        "only 1 excluded instrument(s)",
    );
}

#[test]
fn iv_instrument_absorbed_by_fixed_effects_is_an_error() {
    let d = tmpdir("ivabs");
    let mut s = String::from("y,d,z,zf,f\n");
    for i in 0..60 {
        let f = i % 6;
        s.push_str(&format!(
            "{},{},{},{},{f}\n",
            (i as f64 * 0.7).sin() + f as f64,
            (i as f64 * 1.3).cos(),
            (i as f64 * 0.37).sin(),
            f * 3
        ));
    }
    let p = d.join("ivabs.csv");
    std::fs::write(&p, s).unwrap();
    assert_clean_failure(
        &fegpu(&["fit", p.to_str().unwrap(), "y ~ 1 | f | d ~ zf"]),
        "instrument `zf` is absorbed by the fixed effects",
    );
}

#[test]
fn iv_collinear_instrument_is_dropped_and_reported() {
    let d = tmpdir("ivcol");
    let src = std::fs::read_to_string(iv_csv()).unwrap();
    let mut out = String::new();
    for (k, line) in src.lines().enumerate() {
        if k == 0 {
            out.push_str(&format!("{line},z4\n"));
        } else {
            let cells: Vec<f64> = line.split(',').map(|c| c.parse().unwrap()).collect();
            out.push_str(&format!("{line},{}\n", cells[4] + 2.0 * cells[5])); // z1 + 2 z2
        }
    }
    let p = d.join("ivcol.csv");
    std::fs::write(&p, out).unwrap();
    let o = fegpu(&[
        "fit",
        p.to_str().unwrap(),
        "y ~ x1 | f1 | d1 ~ z1 + z2 + z4",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("instrument `z4` was removed"));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["models"][0]["iv"]["instruments"], serde_json::json!(["z1", "z2"]));
    for key in [
        "kp_lm",
        "kp_lm_p",
        "kp_wald_f",
        "cragg_donald_f",
        "stock_yogo",
        "hansen_j",
        "hansen_j_p",
        "first_stage",
    ] {
        assert!(v["models"][0]["iv"].get(key).is_some(), "iv JSON lacks {key}");
    }
}

#[test]
fn iv_first_stage_table() {
    let o = fegpu(&[
        "fit",
        &iv_csv(),
        "y ~ x1 | f1 | d1 + d2 ~ z1 + z2 + z3",
        "--stage",
        "first",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    assert_eq!(models[0]["depvar"], "d1");
    assert_eq!(models[1]["depvar"], "d2");
    let names: Vec<&str> = models[0]["coefficients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["x1", "z1", "z2", "z3"]);
}

#[test]
fn boot_and_bdiff_commands_run_and_plot() {
    let d = tmpdir("boot");
    let wild = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wild/wild.csv");
    let w = wild.to_str().unwrap();
    let svg = d.join("t.svg");
    let o = fegpu(&[
        "boot",
        w,
        "y ~ x1 + x2 | f",
        "--cluster",
        "c",
        "--reps",
        "1999",
        "--plot",
        svg.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["wild"]["full_enumeration"], true);
    assert!(v["wild"]["p"].as_f64().unwrap() < 0.2);
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    let o = fegpu(&[
        "boot",
        w,
        "y ~ x1 + x2 | f",
        "--cluster",
        "c",
        "--kind",
        "pairs",
        "--reps",
        "50",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("boot s.e."));
    assert_clean_failure(
        &fegpu(&["boot", w, "y ~ x1 | f", "--cluster", "c", "--plot", "x.gif"]),
        "expected a .svg or .png",
    );
    let png = d.join("t.png");
    let o = fegpu(&[
        "boot",
        w,
        "y ~ x1 + x2 | f",
        "--cluster",
        "c",
        "--reps",
        "999",
        "--plot",
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_png_histogram(&png);
    assert_clean_failure(
        &fegpu(&["boot", w, "y ~ x1 | f", "--cluster", "c", "--param", "nope"]),
        "`nope` is not a regressor",
    );
    // bdiff on a 0/1 group that is constant within clusters
    let src = std::fs::read_to_string(&wild).unwrap();
    let mut out = String::new();
    for (k, line) in src.lines().enumerate() {
        if k == 0 {
            out.push_str(&format!("{line},g\n"));
        } else {
            let c: u32 = line.rsplit(',').next().unwrap().parse().unwrap();
            out.push_str(&format!("{line},{}\n", c % 2));
        }
    }
    let p = d.join("g.csv");
    std::fs::write(&p, out).unwrap();
    let o = fegpu(&[
        "bdiff",
        p.to_str().unwrap(),
        "y ~ x1 + x2 | f",
        "--group",
        "g",
        "--unit",
        "c",
        "--reps",
        "500",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["bdiff"]["enumerated"], true); // C(10, 5) = 252 <= 500
    assert_eq!(v["bdiff"]["reps_used"], 252);
    assert_clean_failure(
        &fegpu(&["bdiff", p.to_str().unwrap(), "y ~ x1 | f", "--group", "x2"]),
        "must be 0/1",
    );
}

/// A demeaning that cannot converge in the iterations allowed is a WARNING in the table of every
/// format and `converged: false` with the final residual in JSON; `--solver` and `--tol` take
/// only valid values.
#[test]
fn non_convergence_is_loud_in_every_format() {
    let dir = tmpdir("nonconv");
    let data = dir.join("difficult.csv");
    let d = data.to_str().unwrap();
    assert!(fegpu(&["demo", "--design", "difficult", "--rows", "4000", "--out", d])
        .status
        .success());
    let f = "y ~ x1 + x2 | id_indiv + id_firm + id_year";
    let slow = ["--solver", "cg-jacobi", "--maxiter", "2"];
    for format in ["text", "markdown", "latex", "csv"] {
        let out = fegpu(&[&["fit", d, f, "--format", format][..], &slow[..]].concat());
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("WARNING") && text.contains("did not converge"),
            "{format}: {text}"
        );
    }
    let out = fegpu(&[&["fit", d, f, "--format", "json"][..], &slow[..]].concat());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = &v["models"][0];
    assert_eq!(m["converged"], false);
    assert_eq!(m["solver"], "cg");
    assert!(m["demean_residual"].as_f64().unwrap() > 1e-8);
    // converged: the same fields, residual within the tolerance
    let out = fegpu(&["fit", d, f, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = &v["models"][0];
    assert_eq!(m["converged"], true);
    assert!(m["demean_residual"].as_f64().unwrap() <= 1e-8);
    assert!(m["preconditioner"].as_str().unwrap().starts_with("jacobi"));
    for bad in [["--tol", "nan"], ["--tol", "0"], ["--tol", "inf"], ["--solver", "fast"]] {
        let out = fegpu(&[&["fit", d, f][..], &bad[..]].concat());
        assert!(!out.status.success(), "{bad:?} was accepted");
    }
}

/// A histogram PNG decodes (by the `png` crate's decoder, checksums included) to a 640×400 RGB
/// image with the bars' blue and the observed value's orange line on white.
fn assert_png_histogram(path: &std::path::Path) {
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut reader = png::Decoder::new(file).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(
        (info.width, info.height, info.color_type),
        (640, 400, png::ColorType::Rgb)
    );
    let count = |c: [u8; 3]| buf.chunks(3).filter(|p| *p == c).count();
    assert!(count([141, 160, 203]) > 5_000, "bars");
    assert!(count([217, 95, 2]) >= 2 * 300, "observed line");
    assert!(count([255, 255, 255]) > 100_000, "background");
}
