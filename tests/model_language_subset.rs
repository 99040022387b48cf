//! fixest's model language, issue 28, items 6 and 9: `--subset EXPR` equals fitting the rows
//! the test keeps itself (written to a second file), with factor references decided on the
//! subset (fixest applies `subset` before anything else); syntax errors point at the
//! character; a used column whose name the file repeats is an error naming its positions.

mod common;
mod model_language;

use common::{fegpu, s, tmp_file};
use fegpu::rng::Stream;
use model_language::{assert_same, cells, coefficients, fit, fit_error, write_csv};

struct Rows {
    y: Vec<f64>,
    x: Vec<f64>,
    year: Vec<Option<i64>>,
    ind: Vec<&'static str>,
    firm: Vec<u32>,
}

fn rows(seed: u64, n: usize) -> Rows {
    let mut s = Stream::new(seed, 0);
    let mut r = Rows {
        y: vec![],
        x: vec![],
        year: vec![],
        ind: vec![],
        firm: vec![],
    };
    for i in 0..n {
        let ind = ["A", "B", "C", "D"][s.below(4) as usize];
        let year = (i % 17 != 5).then(|| 1995 + s.below(10) as i64);
        let x = s.normal();
        r.y.push(0.4 * x + (ind.as_bytes()[0] - b'A') as f64 * 0.3 + s.normal());
        r.x.push(x);
        r.year.push(year);
        r.ind.push(ind);
        r.firm.push(s.below(25));
    }
    r
}

fn csv(r: &Rows, keep: impl Fn(usize) -> bool, name: &str) -> common::Scratch {
    let idx: Vec<usize> = (0..r.y.len()).filter(|&i| keep(i)).collect();
    let pick = |v: &[f64]| cells(&idx.iter().map(|&i| v[i]).collect::<Vec<_>>());
    write_csv(
        name,
        &[
            ("y".into(), pick(&r.y)),
            ("x".into(), pick(&r.x)),
            (
                "year".into(),
                idx.iter()
                    .map(|&i| r.year[i].map_or(String::new(), |y| y.to_string()))
                    .collect(),
            ),
            ("ind".into(), idx.iter().map(|&i| r.ind[i].to_string()).collect()),
            ("firm".into(), idx.iter().map(|&i| r.firm[i].to_string()).collect()),
        ],
    )
}

#[test]
fn subset_equals_fitting_the_kept_rows() {
    let r = rows(21, 900);
    let all = csv(&r, |_| true, "all.csv");
    let cases: Vec<(&str, Box<dyn Fn(usize) -> bool>)> = vec![
        (
            "year >= 2000 & ind != \"A\"",
            Box::new(|i| r.year[i].is_some_and(|y| y >= 2000) && r.ind[i] != "A"),
        ),
        (
            "(year < 1997 | year > 2002) & ind in (\"B\", \"C\")",
            Box::new(|i| r.year[i].is_some_and(|y| !(1997..=2002).contains(&y)) && ["B", "C"].contains(&r.ind[i])),
        ),
        ("x > -0.5 | ind == 'D'", Box::new(|i| r.x[i] > -0.5 || r.ind[i] == "D")),
    ];
    for (expr, keep) in cases {
        let kept = csv(&r, keep, "kept.csv");
        // year in the formula: rows with a missing year leave the sample either way
        let formula = "y ~ x + ind + year | firm";
        let got = fit(&all, formula, &["--subset", expr, "--vcov", "cluster:firm"]);
        let want = fit(&kept, formula, &["--vcov", "cluster:firm"]);
        assert_same(&got, &want, &[]);
        assert!(got["dropped"]["subset"].as_u64().unwrap() > 0, "{expr}");
    }
    // the reference comes from the subset: without A, B is the first level
    let got = fit(&all, "y ~ x + ind | firm", &["--subset", "ind != 'A'"]);
    let names: Vec<String> = coefficients(&got).into_iter().map(|c| c.0).collect();
    assert_eq!(names, ["x", "indC", "indD"]);
}

#[test]
fn subset_errors_point_at_the_character_or_name_the_column() {
    let r = rows(22, 100);
    let all = csv(&r, |_| true, "errs.csv");
    let e = fit_error(&all, "y ~ x", &["--subset", "year = 2000"]);
    assert!(e.contains("character 6") && e.contains("`==`"), "{e}");
    let e = fit_error(&all, "y ~ x", &["--subset", "year >= 2000 &"]);
    assert!(e.contains("character 15"), "{e}");
    let e = fit_error(&all, "y ~ x", &["--subset", "ind == 3"]);
    assert!(e.contains("`ind`") && e.contains("quote"), "{e}");
    let e = fit_error(&all, "y ~ x", &["--subset", "nosuch > 1"]);
    assert!(e.contains("`nosuch`"), "{e}");
    let e = fit_error(&all, "y ~ x", &["--subset", "year > 3000"]);
    assert!(e.contains("outside --subset"), "{e}");
}

#[test]
fn a_repeated_column_name_is_an_error_naming_its_positions() {
    let path = tmp_file("model-language", "dup.csv");
    std::fs::write(&path, "y,x,z,x\n1,2,3,4\n2,3,1,5\n3,1,2,7\n4,5,6,1\n").unwrap();
    let e = fit_error(&path, "y ~ x", &[]);
    assert!(e.contains("`x`") && e.contains("columns 2 and 4"), "{e}");
    // an unused repeated name is harmless
    let out = fegpu(&["fit", s(&path), "y ~ z", "--backend", "cpu"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
