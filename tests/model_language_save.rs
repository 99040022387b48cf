//! fixest's model language, issue 28, item 8: `fegpu fit --save` and `--predict`. The saved
//! fitted values, residuals and fixed-effect values must equal explicit dummy-variable OLS
//! built here by hand with fixest's `fixef()` normalisation (every level of the first effect a
//! dummy; of the second, every level but the one of each connected set's first row in the
//! file), weighted and unweighted; predictions of new rows must equal Xβ plus those values,
//! with an unseen fixed-effect level missing and an unseen factor level an error.

mod common;
mod model_language;

use fegpu::rng::Stream;
use model_language::{cells, read_csv, write_csv};

/// A file with two connected sets of (f, g) levels: f 0-13 meet g 0-3, f 14-19 meet g 4-5;
/// the second set starts on the file's third row. Row 11 has a missing x.
struct Data {
    y: Vec<f64>,
    x: Vec<f64>,
    w: Vec<f64>,
    f: Vec<u32>,
    g: Vec<u32>,
    ind: Vec<&'static str>,
}

fn data() -> Data {
    let mut s = Stream::new(7, 0);
    let n = 360;
    let f: Vec<u32> = (0..n).map(|i| ((i * 7) % 20) as u32).collect();
    let g: Vec<u32> = f
        .iter()
        .map(|&f| if f < 14 { s.below(4) } else { 4 + s.below(2) })
        .collect();
    let ind: Vec<&str> = (0..n).map(|_| ["A", "B", "C"][s.below(3) as usize]).collect();
    let x: Vec<f64> = (0..n).map(|_| s.normal()).collect();
    let w: Vec<f64> = (0..n).map(|_| 0.5 + s.uniform()).collect();
    let y = (0..n)
        .map(|i| {
            let ind_effect = match ind[i] {
                "A" => 0.0,
                "B" => 1.0,
                _ => -0.5,
            };
            0.7 * x[i] + 0.3 * f[i] as f64 - 0.4 * g[i] as f64 + ind_effect + s.normal()
        })
        .collect();
    Data { y, x, w, f, g, ind }
}

fn write(d: &Data, name: &str) -> common::Scratch {
    let mut x = cells(&d.x);
    x[11] = String::new();
    let ints = |v: &[u32]| v.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    write_csv(
        name,
        &[
            ("y".into(), cells(&d.y)),
            ("x".into(), x),
            ("w".into(), cells(&d.w)),
            ("f".into(), ints(&d.f)),
            ("g".into(), ints(&d.g)),
            ("ind".into(), d.ind.iter().map(|s| s.to_string()).collect()),
        ],
    )
}

/// Weighted least squares by the normal equations (Gaussian elimination, partial pivoting).
fn wls(cols: &[Vec<f64>], y: &[f64], w: &[f64]) -> Vec<f64> {
    let k = cols.len();
    let mut a = vec![vec![0.0; k + 1]; k];
    for p in 0..k {
        for q in 0..k {
            a[p][q] = (0..y.len()).map(|i| w[i] * cols[p][i] * cols[q][i]).sum();
        }
        a[p][k] = (0..y.len()).map(|i| w[i] * cols[p][i] * y[i]).sum();
    }
    for c in 0..k {
        let piv = (c..k).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs())).unwrap();
        a.swap(c, piv);
        for r in 0..k {
            if r != c {
                let m = a[r][c] / a[c][c];
                for j in c..=k {
                    a[r][j] -= m * a[c][j];
                }
            }
        }
    }
    (0..k).map(|c| a[c][k] / a[c][c]).collect()
}

/// The hand-built fit on the rows `rows`: (β of x, β of indB and indC, f's values, g's values).
fn dummy_ols(d: &Data, rows: &[usize], weighted: bool) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let col = |v: &dyn Fn(usize) -> f64| rows.iter().map(|&i| v(i)).collect::<Vec<f64>>();
    let mut cols = vec![
        col(&|i| d.x[i]),
        col(&|i| f64::from(u8::from(d.ind[i] == "B"))),
        col(&|i| f64::from(u8::from(d.ind[i] == "C"))),
    ];
    for l in 0..20 {
        cols.push(col(&|i| f64::from(u8::from(d.f[i] == l))));
    }
    // fixest's references: g's level on the first row of each connected set (its first row and the first row of the second set)
    let second = rows.iter().copied().find(|&i| d.f[i] >= 14).unwrap();
    let refs = [d.g[rows[0]], d.g[second]];
    assert!(d.f[rows[0]] < 14 && second > 0, "the design of the test");
    let g_kept: Vec<u32> = (0..6).filter(|l| !refs.contains(l)).collect();
    for &l in &g_kept {
        cols.push(col(&|i| f64::from(u8::from(d.g[i] == l))));
    }
    let y = col(&|i| d.y[i]);
    let w = if weighted {
        col(&|i| d.w[i])
    } else {
        vec![1.0; rows.len()]
    };
    let b = wls(&cols, &y, &w);
    let mut g = vec![0.0; 6];
    for (k, &l) in g_kept.iter().enumerate() {
        g[l as usize] = b[23 + k];
    }
    (b[..3].to_vec(), b[3..23].to_vec(), g)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-8 * b.abs().max(1.0)
}

#[test]
fn saved_values_are_dummy_ols_with_fixests_references() {
    let d = data();
    let file = write(&d, "save.csv");
    for weighted in [false, true] {
        let out = common::tmp_file("model-language", &format!("saved-{weighted}.csv"));
        let mut args = vec![
            "fit",
            common::s(&file),
            "y ~ x + ind | f + g",
            "--save",
            common::s(&out),
        ];
        args.extend(["--backend", "cpu", "--format", "json"]);
        if weighted {
            args.extend(["--weights", "w"]);
        }
        let json: serde_json::Value = serde_json::from_slice(&common::ok(&args)).unwrap();
        let notes = json["models"][0]["notes"].to_string();
        assert!(notes.contains("fixef()") && notes.contains("`g` 2"), "{notes}");
        let (header, saved) = read_csv(&out);
        assert_eq!(header, ["row", "fitted", "residual", "fe_f", "fe_g"]);
        let rows: Vec<usize> = (0..d.y.len()).filter(|&i| i != 11).collect();
        assert_eq!(saved.len(), rows.len());
        let (beta, fv, gv) = dummy_ols(&d, &rows, weighted);
        for (r, &i) in saved.iter().zip(&rows) {
            assert_eq!(r[0], (i + 1) as f64, "row numbers count the input's rows from 1");
            let ind = match d.ind[i] {
                "B" => beta[1],
                "C" => beta[2],
                _ => 0.0,
            };
            let (a, b) = (fv[d.f[i] as usize], gv[d.g[i] as usize]);
            let fitted = beta[0] * d.x[i] + ind + a + b;
            assert!(close(r[3], a), "row {}: fe_f {} vs dummy OLS {a}", i + 1, r[3]);
            assert!(close(r[4], b), "row {}: fe_g {} vs dummy OLS {b}", i + 1, r[4]);
            assert!(close(r[1], fitted), "row {}: fitted {} vs {fitted}", i + 1, r[1]);
            assert!(close(r[2], d.y[i] - fitted), "row {}: residual", i + 1);
        }
    }
}

#[test]
fn predictions_are_x_beta_plus_the_effects_and_unseen_levels_are_handled() {
    let d = data();
    let file = write(&d, "predict.csv");
    let new = write_csv(
        "new.csv",
        &[
            (
                "x".into(),
                vec!["0.5".into(), "1".into(), "-2".into(), "".into(), "3".into()],
            ),
            (
                "f".into(),
                vec!["3".into(), "99".into(), "15".into(), "3".into(), "16".into()],
            ),
            (
                "g".into(),
                vec!["2".into(), "2".into(), "5".into(), "1".into(), "4".into()],
            ),
            (
                "ind".into(),
                vec!["B".into(), "A".into(), "C".into(), "A".into(), "A".into()],
            ),
        ],
    );
    let out = common::tmp_file("model-language", "pred.csv");
    common::ok(&[
        "fit",
        common::s(&file),
        "y ~ x + ind | f + g",
        "--predict",
        common::s(&new),
        "--predict-out",
        common::s(&out),
        "--backend",
        "cpu",
    ]);
    let (header, p) = read_csv(&out);
    assert_eq!(header, ["row", "prediction"]);
    let rows: Vec<usize> = (0..d.y.len()).filter(|&i| i != 11).collect();
    let (beta, fv, gv) = dummy_ols(&d, &rows, false);
    let want = [
        0.5 * beta[0] + beta[1] + fv[3] + gv[2],
        f64::NAN, // f = 99 was never seen
        -2.0 * beta[0] + beta[2] + fv[15] + gv[5],
        f64::NAN, // x missing
        3.0 * beta[0] + fv[16] + gv[4],
    ];
    assert_eq!(p.len(), want.len());
    for (k, (r, w)) in p.iter().zip(want).enumerate() {
        assert_eq!(r[0], (k + 1) as f64);
        assert!(
            (w.is_nan() && r[1].is_nan()) || close(r[1], w),
            "new row {}: {} vs {w}",
            k + 1,
            r[1]
        );
    }
    // an unseen factor level is an error naming the column, the level and the row; nothing is
    // written (an existing file is left as it was)
    let bad = write_csv(
        "bad.csv",
        &[
            ("x".into(), vec!["1".into(), "2".into()]),
            ("f".into(), vec!["3".into(), "3".into()]),
            ("g".into(), vec!["1".into(), "1".into()]),
            ("ind".into(), vec!["A".into(), "Q".into()]),
        ],
    );
    let before = std::fs::read(&out).unwrap();
    let saved = common::tmp_file("model-language", "not-written.csv");
    let o = common::fegpu(&[
        "fit",
        common::s(&file),
        "y ~ x + ind | f + g",
        "--predict",
        common::s(&bad),
        "--predict-out",
        common::s(&out),
        "--save",
        common::s(&saved),
        "--backend",
        "cpu",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && !err.contains("panicked"), "{err}");
    assert!(
        err.contains("column `ind`") && err.contains("`Q`") && err.contains("row 2"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        before,
        "the earlier predictions are untouched"
    );
    assert!(!saved.exists(), "--save wrote nothing either");
}

#[test]
fn several_models_write_one_numbered_file_each() {
    let d = data();
    let file = write(&d, "numbered.csv");
    let dir = common::tmpdir("model-language", "numbered");
    let out = dir.join("fit.csv");
    common::ok(&[
        "fit",
        common::s(&file),
        "y ~ csw(x, ind) | f",
        "--save",
        common::s(&out),
        "--backend",
        "cpu",
    ]);
    assert!(!out.exists());
    for k in [1, 2] {
        let (header, rows) = read_csv(&dir.join(format!("fit_{k}.csv")));
        assert_eq!(header, ["row", "fitted", "residual", "fe_f"]);
        assert_eq!(rows.len(), d.y.len() - 1);
    }
    let leftovers: Vec<_> = std::fs::read_dir(&*dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "no temporary file left: {leftovers:?}");
}

/// The values must be fixest's: `fixef()` per row (its normalisation, three effects included:
/// fixest's heuristic references), `fitted()`, `resid()` and `predict(newdata)`, with the
/// coefficients under fixest's own conventions (clustered by the first effect, `--ssc fixest`).
#[test]
fn saved_and_predicted_values_are_fixests() {
    let (dir, golden) = model_language::fixest_save_fixture();
    let data = dir.join("save_data.csv");
    let new = dir.join("save_new.csv");
    let cases = [
        ("two", "y ~ x + ind | f + g", false),
        ("two_weighted", "y ~ x + ind | f + g", true),
        ("three", "y ~ x | f + g + h", false),
    ];
    for (key, formula, weighted) in cases {
        let want = &golden[key];
        let out = common::tmp_file("model-language", &format!("fixest-{key}.csv"));
        let pred = common::tmp_file("model-language", &format!("fixest-{key}-pred.csv"));
        let mut args = vec!["fit", common::s(&data), formula, "--save", common::s(&out)];
        if key == "two" {
            args.extend(["--predict", common::s(&new), "--predict-out", common::s(&pred)]);
        }
        args.extend(["--vcov", "cluster:f", "--ssc", "fixest", "--tol", "1e-13"]);
        args.extend(["--format", "json", "--backend", "cpu"]);
        if weighted {
            args.extend(["--weights", "w"]);
        }
        let json: serde_json::Value = serde_json::from_slice(&common::ok(&args)).unwrap();
        model_language::assert_fixest(&json["models"][0], &want["fit"], key);
        let (header, rows) = read_csv(&out);
        for (c, name) in header.iter().enumerate().skip(1) {
            let fixest = want[name.as_str()]
                .as_array()
                .unwrap_or_else(|| panic!("{key}: {name}"));
            for (r, v) in rows.iter().zip(fixest) {
                let v = v.as_f64().unwrap();
                assert!(close(r[c], v), "{key} row {}: {name} {} vs fixest {v}", r[0], r[c]);
            }
        }
        if key == "two" {
            let (_, p) = read_csv(&pred);
            for (r, v) in p.iter().zip(golden["predict"].as_array().unwrap()) {
                match v.as_f64() {
                    Some(v) => assert!(close(r[1], v), "prediction {}: {} vs fixest {v}", r[0], r[1]),
                    None => assert!(r[1].is_nan(), "prediction {}: {} vs fixest NA", r[0], r[1]),
                }
            }
        }
    }
}
