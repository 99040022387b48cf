//! fixest's model language, issue 28, item 5: `--split VAR` and `--fsplit VAR`. Each model
//! must equal the same formula fitted alone on the rows `--subset` keeps for its sample (the
//! full sample: rows where VAR is not missing), in fixest's order (sample, then the formula's
//! own models), with the sample named in the JSON and in a "Sample" row of the table.

mod common;
mod model_language;

use fegpu::rng::Stream;
use model_language::{assert_same, cells, write_csv};

/// fixest's `fsplit = ~s` of `y ~ csw(x, ind) | f`: the full sample (rows where `s` is not
/// missing), then each value; clustered by `f` with `--ssc fixest`, as fixest's defaults.
#[test]
fn fsplit_is_fixests() {
    let (dir, golden) = model_language::fixest_save_fixture();
    let data = dir.join("save_data.csv");
    let args = [
        "--fsplit",
        "s",
        "--vcov",
        "cluster:f",
        "--ssc",
        "fixest",
        "--tol",
        "1e-13",
    ];
    let got = models(&data, "y ~ csw(x, ind) | f", &args);
    let want = golden["fsplit"].as_array().unwrap();
    assert_eq!(got.len(), want.len());
    for (k, (m, w)) in got.iter().zip(want).enumerate() {
        let shown = m["sample"]["value"].as_str().unwrap_or("Full sample");
        assert_eq!(shown, w["sample"], "model {}", k + 1);
        model_language::assert_fixest(m, &w["fit"], &format!("model {} ({shown})", k + 1));
    }
}
use serde_json::Value;

fn data(name: &str) -> common::Scratch {
    let mut s = Stream::new(41, 0);
    let n = 500;
    let f: Vec<u32> = (0..n).map(|i| (i % 25) as u32).collect();
    let x1: Vec<f64> = (0..n).map(|_| s.normal()).collect();
    let x2: Vec<f64> = (0..n).map(|_| s.normal()).collect();
    let part: Vec<String> = (0..n)
        .map(|i| {
            if i % 37 == 5 {
                String::new()
            } else {
                ["q", "p"][s.below(2) as usize].into()
            }
        })
        .collect();
    let size: Vec<String> = (0..n).map(|_| ["1", "2", "10"][s.below(3) as usize].into()).collect();
    let y: Vec<f64> = (0..n)
        .map(|i| {
            let slope = if part[i] == "p" { 1.0 } else { 0.4 };
            slope * x1[i] - 0.3 * x2[i] + 0.1 * f[i] as f64 + s.normal()
        })
        .collect();
    write_csv(
        name,
        &[
            ("y".into(), cells(&y)),
            ("x1".into(), cells(&x1)),
            ("x2".into(), cells(&x2)),
            ("f".into(), f.iter().map(|k| k.to_string()).collect()),
            ("part".into(), part),
            ("size".into(), size),
        ],
    )
}

fn models(data: &std::path::Path, formula: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["fit", common::s(data), formula, "--format", "json", "--backend", "cpu"];
    all.extend_from_slice(args);
    let v: Value = serde_json::from_slice(&common::ok(&all)).unwrap();
    v["models"].as_array().unwrap().clone()
}

#[test]
fn split_and_fsplit_give_one_model_per_sample_in_fixests_order() {
    let data = data("split.csv");
    let formula = "y ~ csw(x1, x2) | f";
    let each = ["y ~ x1 | f", "y ~ x1 + x2 | f"];
    for (flag, samples) in [
        ("--split", vec![("p", "part == \"p\""), ("q", "part == \"q\"")]),
        (
            "--fsplit",
            vec![
                ("", "part in (\"p\", \"q\")"),
                ("p", "part == \"p\""),
                ("q", "part == \"q\""),
            ],
        ),
    ] {
        let got = models(&data, formula, &[flag, "part"]);
        assert_eq!(got.len(), samples.len() * each.len(), "{flag}");
        let mut k = 0;
        for (value, subset) in &samples {
            for f in each {
                let alone = models(&data, f, &["--subset", subset]);
                assert_same(&got[k], &alone[0], &[]);
                let want = if value.is_empty() {
                    Value::Null
                } else {
                    Value::from(*value)
                };
                assert_eq!(got[k]["sample"]["var"], "part");
                assert_eq!(got[k]["sample"]["value"], want, "{flag} model {}", k + 1);
                k += 1;
            }
        }
    }
    // the full sample leaves out the rows where the split variable is missing
    let full = models(&data, "y ~ x1 | f", &["--fsplit", "part"]);
    let all = models(&data, "y ~ x1 | f", &[]);
    assert_eq!(all[0]["nobs"].as_u64().unwrap() - full[0]["nobs"].as_u64().unwrap(), 14);
}

#[test]
fn numeric_values_are_in_numeric_order_and_the_user_subset_applies_within() {
    let data = data("numeric.csv");
    let got = models(&data, "y ~ x1 + x2 | f", &["--split", "size", "--subset", "x1 > -1"]);
    let values: Vec<&str> = got.iter().map(|m| m["sample"]["value"].as_str().unwrap()).collect();
    assert_eq!(values, ["1", "2", "10"]);
    for (m, v) in got.iter().zip(values) {
        let alone = models(
            &data,
            "y ~ x1 + x2 | f",
            &["--subset", &format!("x1 > -1 & size == {v}")],
        );
        assert_same(m, &alone[0], &[]);
    }
    // the table names the samples in a row of its own
    let out = common::ok(&[
        "fit",
        common::s(&data),
        "y ~ x1",
        "--fsplit",
        "part",
        "--backend",
        "cpu",
    ]);
    let text = String::from_utf8_lossy(&out);
    let row = text
        .lines()
        .find(|l| l.starts_with("Sample (part)"))
        .expect("a Sample row");
    let cells: Vec<&str> = row["Sample (part)".len()..]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(cells, ["Full sample", "p", "q"], "{text}");
    // a split variable that is not in the file is an error naming it
    let e = model_language::fit_error(&data, "y ~ x1", &["--split", "nope"]);
    assert!(e.contains("nope"), "{e}");
}
