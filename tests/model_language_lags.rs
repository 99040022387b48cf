//! fixest's model language, issue 28, item 7: panel operators with `--panel ID,TIME`, against
//! lags the test looks up itself. Rows are shuffled (the lag follows time, not row order), units
//! miss some years (a lag across the gap is missing: gaps are not skipped, fixest `R/panel.R`),
//! and `x` is missing on some rows (a row whose own `x` is missing keeps its lag).

mod common;
mod model_language;

use std::collections::HashMap;

use fegpu::rng::Stream;
use model_language::{assert_same, cells, coefficients, fit, fit_error, write_csv};

struct Panel {
    id: Vec<u32>,
    year: Vec<i64>,
    x: Vec<f64>,
    y: Vec<f64>,
}

fn panel(seed: u64) -> Panel {
    let mut s = Stream::new(seed, 0);
    let mut rows: Vec<(u32, i64)> = Vec::new();
    for id in 0..40u32 {
        for year in 2000..2010i64 {
            // about one year in six is absent: gaps inside units
            if s.below(6) != 0 {
                rows.push((id, year));
            }
        }
    }
    // shuffle (Fisher–Yates on the stream)
    for i in (1..rows.len()).rev() {
        let j = s.below(i as u32 + 1) as usize;
        rows.swap(i, j);
    }
    let n = rows.len();
    let x: Vec<f64> = (0..n)
        .map(|i| {
            if i % 23 == 4 {
                f64::NAN
            } else {
                s.normal() + rows[i].1 as f64 * 0.05
            }
        })
        .collect();
    let y = (0..n).map(|_| s.normal()).collect();
    Panel {
        id: rows.iter().map(|r| r.0).collect(),
        year: rows.iter().map(|r| r.1).collect(),
        x,
        y,
    }
}

/// `v` on the row of the same unit `k` years earlier (missing where there is none).
fn lagged(p: &Panel, v: &[f64], k: i64) -> Vec<f64> {
    let at: HashMap<(u32, i64), usize> = (0..p.id.len()).map(|i| ((p.id[i], p.year[i]), i)).collect();
    (0..p.id.len())
        .map(|i| at.get(&(p.id[i], p.year[i] - k)).map_or(f64::NAN, |&j| v[j]))
        .collect()
}

fn opt(v: &[f64]) -> Vec<String> {
    v.iter()
        .map(|x| if x.is_nan() { String::new() } else { format!("{x:?}") })
        .collect()
}

#[test]
fn lags_leads_and_differences_equal_looked_up_columns() {
    let p = panel(41);
    // y depends on the lags so that the coefficients mean something
    let (l1, l2, f1) = (lagged(&p, &p.x, 1), lagged(&p, &p.x, 2), lagged(&p, &p.x, -1));
    let y: Vec<f64> = (0..p.y.len())
        .map(|i| p.y[i] + 0.5 * l1[i].max(-9.0).min(9.0) * (!l1[i].is_nan() as u8 as f64))
        .collect();
    let d1: Vec<f64> = p.x.iter().zip(&l1).map(|(a, b)| a - b).collect();
    let ints = |v: &[u32]| v.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    let data = write_csv(
        "lags.csv",
        &[
            ("y".into(), cells(&y)),
            ("x".into(), opt(&p.x)),
            ("id".into(), ints(&p.id)),
            ("year".into(), p.year.iter().map(|t| t.to_string()).collect()),
            ("lx1".into(), opt(&l1)),
            ("lx2".into(), opt(&l2)),
            ("fx1".into(), opt(&f1)),
            ("dx1".into(), opt(&d1)),
        ],
    );
    let panel = ["--panel", "id,year", "--vcov", "cluster:id"];
    let cases: Vec<(&str, &str, Vec<(&str, String)>)> = vec![
        ("y ~ l(x, 1) | id", "y ~ lx1 | id", vec![("lx1", "l(x, 1)".into())]),
        (
            "y ~ l(x, 1:2) | id + year",
            "y ~ lx1 + lx2 | id + year",
            vec![("lx1", "l(x, 1)".into()), ("lx2", "l(x, 2)".into())],
        ),
        (
            "y ~ l(x, 0:2) | id",
            "y ~ x + lx1 + lx2 | id",
            vec![("lx1", "l(x, 1)".into()), ("lx2", "l(x, 2)".into())],
        ),
        (
            "y ~ f(x) + d(x)",
            "y ~ fx1 + dx1",
            vec![("fx1", "f(x, 1)".into()), ("dx1", "d(x, 1)".into())],
        ),
    ];
    for (formula, hand, names) in cases {
        let got = fit(&data, formula, &panel);
        let want = fit(&data, hand, &panel);
        assert_same(&got, &want, &names);
    }
    // the row's own missing x does not drop it from a lag-only model
    let got = fit(&data, "y ~ l(x, 1) | id", &panel);
    let own_x = fit(&data, "y ~ x + l(x, 1) | id", &panel);
    assert!(got["nobs"].as_u64() > own_x["nobs"].as_u64());
    assert_eq!(coefficients(&got)[0].0, "l(x, 1)");
}

#[test]
fn panel_misuse_is_an_error_naming_it() {
    let p = panel(42);
    let mut id = p.id.clone();
    let mut year = p.year.clone();
    // a repeated (unit, year) pair
    id[5] = id[9];
    year[5] = year[9];
    let data = write_csv(
        "lag-errors.csv",
        &[
            ("y".into(), cells(&p.y)),
            ("x".into(), opt(&p.x)),
            ("id".into(), id.iter().map(|k| k.to_string()).collect()),
            ("year".into(), year.iter().map(|t| t.to_string()).collect()),
            ("half".into(), year.iter().map(|t| format!("{}.5", t)).collect()),
        ],
    );
    let e = fit_error(&data, "y ~ l(x, 1)", &["--panel", "id,year"]);
    assert!(
        e.contains("rows 6 and 10") && e.contains(&format!("id = {}", id[9])),
        "{e}"
    );
    let e = fit_error(&data, "y ~ l(x, 1)", &[]);
    assert!(e.contains("--panel ID,TIME") && e.contains("l(x, 1)"), "{e}");
    let e = fit_error(&data, "y ~ l(x, 1)", &["--panel", "id,half"]);
    assert!(e.contains("`half`") && e.contains("whole numbers"), "{e}");
    let e = fit_error(&data, "y ~ l(x, 1)", &["--panel", "id"]);
    assert!(e.contains("--panel firm,year"), "{e}");
    let e = fit_error(&data, "y ~ l(x, 1.5)", &["--panel", "id,year"]);
    assert!(e.contains("whole number"), "{e}");
}
