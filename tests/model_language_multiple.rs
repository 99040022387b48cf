//! fixest's model language, issue 28, item 5: multiple estimation in one formula. `sw()`,
//! `sw0()`, `csw()`, `csw0()` in the right-hand side and the fixed-effect part and `c(y1, y2)`
//! give one model per combination in fixest's order (fixed effects, then outcome, then
//! right-hand side), each equal to the formula the test writes out by hand and fits alone.

mod common;
mod model_language;

use fegpu::rng::Stream;
use model_language::{assert_same, cells, fit_error, write_csv};
use serde_json::Value;

fn data(name: &str) -> common::Scratch {
    let mut s = Stream::new(31, 0);
    let n = 400;
    let f: Vec<u32> = (0..n).map(|_| s.below(20)).collect();
    let g: Vec<u32> = (0..n).map(|_| s.below(7)).collect();
    let x: Vec<Vec<f64>> = (0..3).map(|_| (0..n).map(|_| s.normal()).collect()).collect();
    let y: Vec<f64> = (0..n)
        .map(|i| x[0][i] - 0.5 * x[1][i] + 0.2 * x[2][i] + f[i] as f64 * 0.1 + s.normal())
        .collect();
    let y2: Vec<f64> = (0..n).map(|i| 0.3 * x[0][i] + g[i] as f64 * 0.2 + s.normal()).collect();
    let ints = |v: &[u32]| v.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    write_csv(
        name,
        &[
            ("y".into(), cells(&y)),
            ("y2".into(), cells(&y2)),
            ("x1".into(), cells(&x[0])),
            ("x2".into(), cells(&x[1])),
            ("x3".into(), cells(&x[2])),
            ("f".into(), ints(&f)),
            ("g".into(), ints(&g)),
        ],
    )
}

fn models(data: &std::path::Path, formula: &str) -> Vec<Value> {
    let out = common::fegpu(&["fit", common::s(data), formula, "--format", "json", "--backend", "cpu"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["models"].as_array().unwrap().clone()
}

#[test]
fn stepwise_calls_give_fixests_models_in_fixests_order() {
    let data = data("order.csv");
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("y ~ x1 + sw(x2, x3)", vec!["y ~ x1 + x2", "y ~ x1 + x3"]),
        (
            "y ~ x1 + sw0(x2, x3) | f",
            vec!["y ~ x1 | f", "y ~ x1 + x2 | f", "y ~ x1 + x3 | f"],
        ),
        ("y ~ csw(x1, x2 + x3) | f", vec!["y ~ x1 | f", "y ~ x1 + x2 + x3 | f"]),
        (
            "c(y, y2) ~ csw0(x1, x2) | sw(f, g)",
            vec![
                "y ~ 1 | f",
                "y ~ x1 | f",
                "y ~ x1 + x2 | f",
                "y2 ~ 1 | f",
                "y2 ~ x1 | f",
                "y2 ~ x1 + x2 | f",
                "y ~ 1 | g",
                "y ~ x1 | g",
                "y ~ x1 + x2 | g",
                "y2 ~ 1 | g",
                "y2 ~ x1 | g",
                "y2 ~ x1 + x2 | g",
            ],
        ),
        ("y ~ x1 | f + csw0(g)", vec!["y ~ x1 | f", "y ~ x1 | f + g"]),
    ];
    for (formula, want) in cases {
        let got = models(&data, formula);
        assert_eq!(got.len(), want.len(), "{formula}");
        for (m, w) in got.iter().zip(&want) {
            let alone = models(&data, w);
            assert_eq!(m["depvar"], alone[0]["depvar"], "{formula} → {w}");
            assert_eq!(
                m["fixed_effects"].to_string(),
                alone[0]["fixed_effects"].to_string(),
                "{formula} → {w}"
            );
            assert_same(m, &alone[0], &[]);
        }
    }
}

#[test]
fn misplaced_or_repeated_calls_are_errors_pointing_at_them() {
    let data = data("misuse.csv");
    let e = fit_error(&data, "y ~ sw(x1, x2) + csw(x3)", &[]);
    assert!(e.contains("character 18") && e.contains("only one"), "{e}");
    let e = fit_error(&data, "sw(y, y2) ~ x1", &[]);
    assert!(e.contains("c(y1, y2)"), "{e}");
    let e = fit_error(&data, "y ~ sw(x1, ) | f", &[]);
    assert!(e.contains("argument 2"), "{e}");
    // commands that estimate one model say so
    let out = common::fegpu(&[
        "boot",
        common::s(&data),
        "y ~ sw(x1, x2)",
        "--cluster",
        "f",
        "--kind",
        "wild",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("only `fegpu fit`"), "{err}");
}
