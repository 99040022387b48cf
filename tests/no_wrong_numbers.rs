//! Issue 25, "No wrong number with exit 0", through the binary: formula terms read as fixest
//! reads them (`x:x` is `x`, a repeated term is used once, with a note), negative option values
//! read (`--null -0.3`) or refused in words (`--reps -5`), `bench --replicates 0` refused,
//! `build-panel --winsorize none` says that nothing is winsorised, and `simulate` leaves no
//! table of the other format for `build-panel` to mix in. (The shard-file checks are in
//! `tests/shard.rs`.)

mod common;

use std::path::Path;
use std::process::Output;

use common::{fegpu, ok, s};

fn tmpdir(name: &str) -> common::Scratch {
    common::tmpdir("issue25", name)
}

/// 40 rows: y, x, z and a 4-level `f`, with y quadratic in x (so x and x² differ).
fn data(dir: &Path) -> String {
    let mut t = String::from("y,x,z,f\n");
    for i in 0..40 {
        let x = (i % 7) as f64 * 0.5 + (i % 3) as f64 * 0.1;
        let z = ((i * 5) % 11) as f64 * 0.3;
        let y = 1.0 + 0.4 * x + 0.3 * x * x - 0.2 * z + ((i * 13) % 5) as f64 * 0.1;
        t.push_str(&format!("{y},{x},{z},{}\n", i % 4));
    }
    let p = dir.join("d.csv");
    std::fs::write(&p, t).unwrap();
    s(&p).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A refusal: non-zero exit that is not a panic (101), nothing on stdout, `needles` on stderr.
fn assert_refused(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "accepted; stderr: {err}");
    assert_ne!(o.status.code(), Some(101), "panic: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(o.stdout.is_empty(), "stdout: {}", String::from_utf8_lossy(&o.stdout));
    for n in needles {
        assert!(err.contains(n), "stderr should mention {n:?}: {err}");
    }
}

/// `x:x`, `x*x` and `x:z:x` were fitted as x², x + x² and x²z; fixest and R read them as x, x
/// and x:z. The fits are now those of `y ~ x` and `y ~ x:z`, with a note on stderr, and a term
/// written twice is used once with a note.
#[test]
fn repeated_factors_and_terms_fit_as_fixest_reads_them() {
    let d = tmpdir("terms");
    let f = data(&d);
    // the coefficients (names, estimates, standard errors) and the stderr of a fit
    let fit = |formula: &str| {
        let o = fegpu(&["fit", &f, formula, "--format", "json"]);
        assert!(o.status.success(), "{formula}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let coefs: Vec<(String, f64, f64)> = v["models"][0]["coefficients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let n = c["name"].as_str().unwrap().to_string();
                (n, c["estimate"].as_f64().unwrap(), c["std_error"].as_f64().unwrap())
            })
            .collect();
        (coefs, stderr(&o))
    };
    let (x, _) = fit("y ~ x | f");
    let (xz, _) = fit("y ~ x:z | f");
    let (xzx, _) = fit("y ~ x + z + x:z | f");
    for (formula, want, note) in [
        ("y ~ x:x | f", &x, "read as `x`"),
        ("y ~ x*x | f", &x, "appears more than once"),
        ("y ~ x + x | f", &x, "appears more than once"),
        ("y ~ x:z:x | f", &xz, "read as `x:z`"),
        ("y ~ x*z + z:x + x | f", &xzx, "appears more than once"),
    ] {
        let (coefs, err) = fit(formula);
        assert_eq!(&coefs, want, "{formula}");
        assert!(err.contains(note), "{formula}: no note {note:?} in {err}");
    }
    assert_refused(&fegpu(&["fit", &f, "y ~ y:y | f"]), &["also a regressor"]);
}

/// `--null -0.3` was refused by clap ("unexpected argument", with a tip that did not work);
/// negative numbers are now values, and where a negative value is out of range it is refused
/// in words.
#[test]
fn negative_option_values_are_read_and_checked() {
    let d = tmpdir("negative");
    let f = data(&d);
    let boot = |extra: &[&str]| {
        let mut a = vec!["boot", f.as_str(), "y ~ x + z", "--cluster", "f", "--reps", "99"];
        a.extend(extra);
        fegpu(&a)
    };
    let spaced = boot(&["--null", "-0.3", "--format", "json"]);
    assert!(spaced.status.success(), "{}", stderr(&spaced));
    let joined = boot(&["--null=-0.3", "--format", "json"]);
    assert_eq!(spaced.stdout, joined.stdout, "--null -0.3 and --null=-0.3 differ");
    assert_refused(&boot(&["--level", "-0.5"]), &["--level must be in [0, 1)", "-0.5"]);
    assert_refused(
        &fegpu(&["fit", &f, "y ~ x | f", "--maxiter", "0"]),
        &["--maxiter 0", "at least one iteration"],
    );
    for (args, needle) in [
        (
            vec!["fit", f.as_str(), "y ~ x | f", "--maxiter", "-5"],
            "-5 is negative",
        ),
        (
            vec!["fit", f.as_str(), "y ~ x | f", "--tol", "-1"],
            "between 1e-14 and 1",
        ),
        (
            vec!["boot", f.as_str(), "y ~ x", "--cluster", "f", "--reps", "-5"],
            "-5 is negative",
        ),
        (
            vec!["boot", f.as_str(), "y ~ x", "--cluster", "f", "--seed", "-1"],
            "-1 is negative",
        ),
        (
            vec!["bdiff", f.as_str(), "y ~ x", "--group", "f", "--reps", "-100"],
            "-100 is negative",
        ),
        (vec!["demo", "--out", "x.csv", "--rows", "-3"], "-3 is negative"),
        (vec!["bench", "--rows", "-3"], "-3 is negative"),
        (vec!["replicate", "--reps", "-2"], "-2 is negative"),
    ] {
        let o = fegpu(&args);
        assert_refused(&o, &[needle]);
        assert!(!stderr(&o).contains("tip:"), "{args:?}: {}", stderr(&o));
    }
}

/// `bench --replicates 0` ran one replicate and reported it; it is refused.
#[test]
fn bench_refuses_zero_replicates() {
    assert_refused(
        &fegpu(&["bench", "--rows", "2000", "--replicates", "0", "--backend", "cpu"]),
        &["--replicates 0", "at least one"],
    );
}

/// `simulate --csv` into a directory holding an earlier Parquet simulation left the Parquet
/// tables there, and `build-panel` read them (Parquet first) beside the new ones. Simulate now
/// removes the other format's tables, with a note.
#[test]
fn simulate_removes_the_other_formats_stale_tables() {
    let d = tmpdir("stale");
    let raw = d.join("raw");
    ok(&["simulate", "--out", s(&raw), "--scale", "small", "--seed", "1"]);
    let o = fegpu(&["simulate", "--out", s(&raw), "--scale", "small", "--seed", "2", "--csv"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stale: Vec<String> = std::fs::read_dir(&raw)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    assert!(stale.is_empty(), "stale Parquet tables left: {stale:?}");
    assert!(stderr(&o).contains("note: removed"), "{}", stderr(&o));
}

/// `build-panel --winsorize none` printed "winsorised at 1%/99% (off)"; it says the panel is
/// not winsorised.
#[test]
fn build_panel_says_when_winsorising_is_off() {
    let d = tmpdir("winsorize");
    let raw = d.join("raw");
    ok(&["simulate", "--out", s(&raw), "--scale", "small", "--csv"]);
    let out = d.join("panel.csv");
    let o = fegpu(&[
        "build-panel",
        "--raw",
        s(&raw),
        "--out",
        s(&out),
        "--backend",
        "cpu",
        "--winsorize",
        "none",
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("winsorised at"), "{err}");
    assert!(err.contains("not winsorised"), "{err}");
}

/// `boot --kind pairs` names the regressor that makes the full-sample model collinear (it said
/// only "the model is collinear"), and GPU failures suggest the CPU or f64 (issue 25, smaller
/// items).
#[test]
fn pairs_bootstrap_names_the_collinear_regressor() {
    let f = common::tmp_file("pairs-collinear", "panel.csv");
    let mut text = String::from("y,x1,x2,firm,year\n");
    for i in 0..120 {
        let (firm, year) = (i % 12, i / 12);
        let x1 = ((i * 37) % 17) as f64 * 0.3;
        let y = 0.5 * x1 + ((i * 11) % 7) as f64 * 0.2 + firm as f64 * 0.1;
        text += &format!("{y},{x1},{},{firm},{year}\n", firm as f64 * 2.0 + 1.0);
    }
    std::fs::write(&*f, text).unwrap();
    let o = common::fegpu(&[
        "boot",
        common::s(&f),
        "y ~ x1 + x2 | firm + year",
        "--cluster",
        "firm",
        "--kind",
        "pairs",
        "--reps",
        "19",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected a refusal: {err}");
    assert!(
        err.contains("`x2`") && err.contains("collinear with the fixed effects"),
        "{err}"
    );
}

/// bdiff names the regressor that is collinear within a group, and says when a group is left
/// with no rows once its singletons are dropped (both read "a regressor is collinear within one
/// of the groups").
#[test]
fn bdiff_names_what_fails_within_a_group() {
    let f = common::tmp_file("bdiff-collinear", "panel.csv");
    let mut text = String::from("y,x1,x2,firm,year,g\n");
    for i in 0..160 {
        let (firm, year) = (i % 16, i / 16);
        let g = firm % 2;
        let x1 = ((i * 37) % 17) as f64 * 0.3;
        // within group 1, x2 varies by firm only: absorbed by the firm effect there
        let x2 = if g == 1 {
            firm as f64 * 0.5
        } else {
            ((i * 13) % 11) as f64 * 0.4
        };
        let y = 0.5 * x1 + 0.2 * x2 + ((i * 11) % 7) as f64 * 0.2;
        text += &format!("{y},{x1},{x2},{firm},{year},{g}\n");
    }
    std::fs::write(&*f, text).unwrap();
    let o = common::fegpu(&[
        "bdiff",
        common::s(&f),
        "y ~ x1 + x2 | firm + year",
        "--group",
        "g",
        "--reps",
        "19",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected a refusal: {err}");
    assert!(err.contains("in group 1") && err.contains("`x2`"), "{err}");
}
