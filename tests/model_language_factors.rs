//! fixest's model language, issue 28, items 1–2: factor regressors (text columns, `factor(x)`,
//! `f:x`, `f*x`) against an explicit construction. For every construct the test builds the
//! dummy (or dummy × slope) columns itself, writes them beside the data as plain numeric
//! columns, fits the numeric-only formula through the CLI and requires the same coefficients
//! and standard errors (1e-10 relative) under the names fixest gives (variable + level, the
//! first level in byte order, or numerically for `factor(num)`, as reference; see
//! shared/refs/MODEL-LANGUAGE.md and `src/terms/mod.rs`).

mod common;
mod model_language;

use common::{fegpu, s, tmp_file};
use fegpu::rng::Stream;
use model_language::{assert_same, cells, coefficients, dummy, fit, fit_error, times, write_csv};

/// A small panel with a text industry whose byte order (`B` < `Z` < `a` < `b`) differs from its
/// order of first appearance and from a case-blind order, numeric years whose numeric order
/// differs from their text order (9 < 10 < 100), 30 firms, a region constant within firms
/// (nested in the firm effect) and a region that is not.
struct Panel {
    n: usize,
    y: Vec<f64>,
    x: Vec<f64>,
    ind: Vec<&'static str>,
    year: Vec<i64>,
    firm: Vec<u32>,
    region: Vec<&'static str>,
}

const INDUSTRIES: [&str; 4] = ["b", "B", "a", "Z"];
const YEARS: [i64; 4] = [100, 9, 10, 1000];

fn panel(seed: u64, n: usize) -> Panel {
    let mut s = Stream::new(seed, 0);
    let firm: Vec<u32> = (0..n).map(|_| s.below(30)).collect();
    let ind: Vec<&str> = (0..n).map(|_| INDUSTRIES[s.below(4) as usize]).collect();
    let year: Vec<i64> = (0..n).map(|_| YEARS[s.below(4) as usize]).collect();
    let region: Vec<&str> = firm
        .iter()
        .map(|&f| ["north", "south", "east"][(f % 3) as usize])
        .collect();
    let x: Vec<f64> = (0..n).map(|_| s.normal()).collect();
    let effect = |l: &str| INDUSTRIES.iter().position(|&k| k == l).unwrap() as f64 * 0.7;
    let y = (0..n)
        .map(|i| {
            let slope = 0.5 + 0.3 * effect(ind[i]);
            slope * x[i] + effect(ind[i]) + 0.01 * year[i] as f64 + 0.2 * firm[i] as f64 + s.normal()
        })
        .collect();
    Panel {
        n,
        y,
        x,
        ind,
        year,
        firm,
        region,
    }
}

/// Write the panel and the extra numeric columns `extra` (name, values) as a CSV.
fn write(p: &Panel, extra: &[(String, Vec<f64>)], name: &str) -> common::Scratch {
    let path = tmp_file("model-language", name);
    let mut text = String::from("y,x,ind,year,firm,region");
    for (n, _) in extra {
        text.push_str(&format!(",{n}"));
    }
    text.push('\n');
    for i in 0..p.n {
        text.push_str(&format!(
            "{:?},{:?},{},{},{},{}",
            p.y[i], p.x[i], p.ind[i], p.year[i], p.firm[i], p.region[i]
        ));
        for (_, v) in extra {
            text.push_str(&format!(",{:?}", v[i]));
        }
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// The levels in byte order (the reference is the first).
fn byte_sorted(levels: &[&'static str]) -> Vec<&'static str> {
    let mut l = levels.to_vec();
    l.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    l
}

#[test]
fn text_regressor_is_dummies_with_the_first_byte_ordered_level_as_reference() {
    let p = panel(1, 600);
    let levels = byte_sorted(&INDUSTRIES);
    assert_eq!(levels, ["B", "Z", "a", "b"]);
    let extra: Vec<(String, Vec<f64>)> = levels[1..]
        .iter()
        .enumerate()
        .map(|(k, l)| (format!("h{k}"), dummy(&p.ind, l)))
        .collect();
    let data = write(&p, &extra, "text.csv");
    let names: Vec<(&str, String)> = levels[1..]
        .iter()
        .enumerate()
        .map(|(k, l)| (["h0", "h1", "h2"][k], format!("ind{l}")))
        .collect();
    for (fe, vcov) in [("| firm", "cluster:firm"), ("", "hetero"), ("| firm + year", "iid")] {
        let got = fit(&data, &format!("y ~ x + ind {fe}"), &["--vcov", vcov]);
        let want = fit(&data, &format!("y ~ x + h0 + h1 + h2 {fe}"), &["--vcov", vcov]);
        assert_same(&got, &want, &names);
        if fe.is_empty() {
            assert_eq!(coefficients(&got)[0].0, "(Intercept)");
        }
    }
}

#[test]
fn numeric_factor_sorts_levels_numerically() {
    let p = panel(2, 500);
    // numeric order 9 < 10 < 100 < 1000 (text order would put 10 first)
    let extra: Vec<(String, Vec<f64>)> = [10i64, 100, 1000]
        .iter()
        .map(|l| (format!("y{l}"), dummy(&p.year, l)))
        .collect();
    let data = write(&p, &extra, "numfactor.csv");
    let names: Vec<(&str, String)> = [("y10", 10), ("y100", 100), ("y1000", 1000)]
        .iter()
        .map(|(h, l)| (*h, format!("factor(year){l}")))
        .collect();
    let got = fit(&data, "y ~ x + factor(year) | firm", &[]);
    let want = fit(&data, "y ~ x + y10 + y100 + y1000 | firm", &[]);
    assert_same(&got, &want, &names);
}

#[test]
fn factor_interactions_follow_the_coding_rule() {
    let p = panel(3, 700);
    let levels = byte_sorted(&INDUSTRIES);
    let d: Vec<Vec<f64>> = levels.iter().map(|l| dummy(&p.ind, l)).collect();
    let mut extra: Vec<(String, Vec<f64>)> = Vec::new();
    for k in 0..4 {
        extra.push((format!("d{k}"), d[k].clone()));
        extra.push((format!("s{k}"), times(&d[k], &p.x)));
    }
    let data = write(&p, &extra, "inter.csv");
    let mut names: Vec<(&str, String)> = Vec::new();
    let hand = ["d0", "d1", "d2", "d3"];
    let slope = ["s0", "s1", "s2", "s3"];
    for k in 0..4 {
        names.push((hand[k], format!("ind{}", levels[k])));
        names.push((slope[k], format!("ind{}:x", levels[k])));
    }
    // f*x = f + x + f:x: the first level dropped from both
    let got = fit(&data, "y ~ ind*x | firm", &["--vcov", "cluster:firm"]);
    let want = fit(
        &data,
        "y ~ d1 + d2 + d3 + x + s1 + s2 + s3 | firm",
        &["--vcov", "cluster:firm"],
    );
    assert_same(&got, &want, &names);
    // f:x alone: every level's slope
    let got = fit(&data, "y ~ ind:x | firm", &[]);
    let want = fit(&data, "y ~ s0 + s1 + s2 + s3 | firm", &[]);
    assert_same(&got, &want, &names);
    // x + f:x: the first slope dropped
    let got = fit(&data, "y ~ x + ind:x | firm", &[]);
    let want = fit(&data, "y ~ x + s1 + s2 + s3 | firm", &[]);
    assert_same(&got, &want, &names);
    // x:f keeps the term's order in the names
    let got = fit(&data, "y ~ x:ind | firm", &[]);
    let x_first: Vec<(&str, String)> = (0..4).map(|k| (slope[k], format!("x:ind{}", levels[k]))).collect();
    let want = fit(&data, "y ~ s0 + s1 + s2 + s3 | firm", &[]);
    assert_same(&got, &want, &x_first);
    // no intercept and no fixed effect: the first factor keeps every level
    let got = fit(&data, "y ~ ind + x - 1", &[]);
    let want = fit(&data, "y ~ d0 + d1 + d2 + d3 + x - 1", &[]);
    assert_same(&got, &want, &names);
}

#[test]
fn factor_nested_in_a_fixed_effect_loses_its_columns_with_a_note() {
    let p = panel(4, 500);
    let data = write(&p, &[], "nested.csv");
    let got = fit(&data, "y ~ x + region | firm", &[]);
    let want = fit(&data, "y ~ x | firm", &[]);
    assert_same(&got, &want, &[]);
    let dropped: Vec<&str> = got["collinear"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    // levels east < north < south: east is the reference, the two others are absorbed
    assert_eq!(dropped, ["regionnorth", "regionsouth"]);
    assert!(got["notes"].to_string().contains("regionnorth"), "{}", got["notes"]);
}

#[test]
fn categorical_misuse_is_an_error_naming_the_term() {
    let p = panel(5, 100);
    let data = write(&p, &[], "errors.csv");
    for (formula, needle) in [("y ~ log(ind)", "`ind`"), ("ind ~ x", "dependent variable `ind`")] {
        let out = fegpu(&["fit", s(&data), formula, "--backend", "cpu"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{formula}");
        assert!(err.contains(needle), "{formula}: {err}");
        assert!(!err.contains("panicked"), "{formula}: {err}");
    }
    // a column of numbers with one text cell is a typo more likely than categories: used bare
    // it is an error naming the cell; factor() makes it categories on purpose
    let code: Vec<String> = (0..p.n)
        .map(|i| if i == 7 { "3x".into() } else { (i % 3).to_string() })
        .collect();
    let data = write_csv(
        "mixed.csv",
        &[
            ("y".into(), cells(&p.y)),
            ("x".into(), cells(&p.x)),
            ("code".into(), code.clone()),
        ],
    );
    let err = fit_error(&data, "y ~ x + code", &[]);
    assert!(
        err.contains("`code`") && err.contains("row 8") && err.contains("\"3x\"") && err.contains("factor("),
        "{err}"
    );
    let names: Vec<String> = coefficients(&fit(&data, "y ~ x + factor(code)", &[]))
        .into_iter()
        .map(|c| c.0)
        .collect();
    // text levels in byte order: "0" < "1" < "2" < "3x"
    assert_eq!(
        names,
        ["(Intercept)", "x", "factor(code)1", "factor(code)2", "factor(code)3x"]
    );
}
