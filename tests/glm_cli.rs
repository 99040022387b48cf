//! `fegpu fit --family poisson|logit` from the command line: bad input is an error naming the
//! cause (and the column and row where there is one), with a non-zero exit and no output file;
//! good input gives the GLM keys of the JSON contract and the table's GLM rows.

mod common;

use common::{fegpu, ok, s, tmpdir};

/// y (counts with zeros), yb (0/1), x, g (5 groups), e (exposure) and bad columns.
fn data(dir: &std::path::Path) -> String {
    let mut t = String::from("y,yb,x,g,e,eneg,yneg,yzero\n");
    for i in 0..60 {
        let x = ((i * 7) % 11) as f64 / 5.0;
        let y = (i / 5 + i) % 4;
        t.push_str(&format!(
            "{y},{},{x},{},{},{},{},0\n",
            (i * 5) % 3 % 2,
            i % 5,
            1.0 + (i % 4) as f64,
            if i == 17 { 0.0 } else { 1.0 },
            if i == 23 { -1 } else { y as i64 },
        ));
    }
    let p = dir.join("glm.csv");
    std::fs::write(&p, t).unwrap();
    s(&p).to_string()
}

fn err(args: &[&str]) -> String {
    let o = fegpu(args);
    assert!(!o.status.success(), "fegpu {args:?} should fail");
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn bad_input_names_its_cause_and_writes_nothing() {
    let d = tmpdir("glm", "bad");
    let csv = data(&d);
    let out = d.join("out.json");
    let o = s(&out);
    let cases: [(&[&str], &[&str]); 7] = [
        (
            &["yneg ~ x | g", "--family", "poisson"],
            &["yneg", "non-negative", "row 24", "-1"],
        ),
        (
            &["y ~ x | g", "--family", "logit"],
            &["`y`", "0 or 1", "row 3", "has 2"],
        ),
        (
            &["y ~ x | g", "--family", "poisson", "--exposure", "eneg"],
            &["eneg", "positive", "row 18"],
        ),
        (&["yzero ~ x | g", "--family", "poisson"], &["yzero", "zero"]),
        (&["y ~ x | g", "--offset", "x"], &["--family"]),
        (&["y ~ x | g", "--family", "probit"], &["probit"]),
        (
            &["y ~ x | g", "--family", "poisson", "--separation", "simplex"],
            &["simplex"],
        ),
    ];
    for (args, needles) in cases {
        let mut a = vec!["fit", csv.as_str()];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--format", "json", "--output", o]);
        let e = err(&a);
        for n in needles {
            assert!(e.contains(n), "{args:?}: `{n}` not in: {e}");
        }
        assert!(!e.contains("panicked"), "{e}");
        assert!(!out.exists(), "{args:?} wrote {o}");
    }
}

#[test]
fn json_and_table_carry_the_glm_statistics() {
    let d = tmpdir("glm", "good");
    let csv = data(&d);
    let json: serde_json::Value = serde_json::from_slice(&ok(&[
        "fit",
        &csv,
        "y ~ x | g",
        "--family",
        "poisson",
        "--vcov",
        "hetero",
        "--exposure",
        "e",
        "--format",
        "json",
    ]))
    .unwrap();
    let m = &json["models"][0];
    assert_eq!(m["family"], "poisson");
    for k in ["deviance", "null_deviance", "loglik", "ll_null", "pseudo_r2"] {
        assert!(m[k].as_f64().is_some_and(f64::is_finite), "{k}: {}", m[k]);
    }
    assert_eq!(m["separated"], 0);
    assert_eq!(m["exposure"], "e");
    assert_eq!(m["converged"], true);
    assert!(m["irls_iterations"].as_u64().unwrap() >= 2);
    let ols: serde_json::Value = serde_json::from_slice(&ok(&["fit", &csv, "y ~ x | g", "--format", "json"])).unwrap();
    assert_eq!(ols["models"][0]["family"], "gaussian");
    assert!(ols["models"][0].get("deviance").is_none());
    let text = String::from_utf8(ok(&["fit", &csv, "yb ~ x | g", "yb ~ x", "--family", "logit"])).unwrap();
    for row in ["Family", "logit", "Pseudo R2", "Log-likelihood", "Deviance"] {
        assert!(text.contains(row), "`{row}` not in:\n{text}");
    }
    // GLMs alone: no R² rows, and the default convention named as ppmlhdfe's
    assert!(!text.contains("Adj. R2") && text.contains("ppmlhdfe"), "{text}");
}
