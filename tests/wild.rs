//! The restricted wild cluster bootstrap (WCR, `fegpu boot --kind wild`):
//! * against brute force: every one of the 2^10 Rademacher sign vectors turned into a bootstrap
//!   sample and re-estimated by dense least squares with explicit fixed-effect dummies (so the
//!   effects are absorbed again in every replicate, which the fast algorithm must reproduce);
//! * against pyfixest's `wildboottest` (scripts/reference/make_wild_golden.py): identical p under
//!   full enumeration up to the identity pair, which wildboottest counts or not by rounding noise
//!   (|t*| = |t| exactly), and within Monte Carlo error with Webb weights.

use std::path::Path;

use fegpu::data::{load, prepare, Design, PrepareOptions};
use fegpu::demean::{CpuDemeaner, DemeanOptions};
use fegpu::estimate::Ssc;
use fegpu::inference::replicates::WildWeights;
use fegpu::inference::wild::{wild_bootstrap, WildOptions};
use fegpu::linalg::{cholesky_drop, cholesky_inverse, Mat};
use serde_json::Value;

fn design(formula: &str) -> Design {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wild");
    let m = fegpu::formula::parse(formula).unwrap();
    let mut cols = m.variables();
    cols.push("c".into());
    let t = load(dir.join("wild.csv").to_str().unwrap(), &cols).unwrap();
    prepare(
        &t,
        &m,
        &PrepareOptions {
            clusters: vec!["c".into()],
            ..Default::default()
        },
    )
    .unwrap()
}

fn opts(param: &str, weights: WildWeights, reps: usize) -> WildOptions {
    WildOptions {
        coefficient: param.into(),
        null: 0.0,
        reps,
        weights,
        seed: 11,
        level: None,
        ssc: Ssc::Reghdfe,
        demean: DemeanOptions {
            tol: 1e-14,
            max_iter: 100_000,
            ..Default::default()
        },
    }
}

/// Dense OLS with dummies: (β_j, CRV1 t of β_j) for outcome `y`.
fn dense_t(cols: &[Vec<f64>], y: &[f64], j: usize, ids: &[u32], g: usize) -> f64 {
    let n = y.len();
    let k = cols.len();
    let mut xtx = Mat::zeros(k);
    for a in 0..k {
        for b in 0..k {
            xtx.set(a, b, (0..n).map(|i| cols[a][i] * cols[b][i]).sum());
        }
    }
    let inv = cholesky_inverse(&cholesky_drop(&xtx, 0.0).l);
    let beta = inv.mul_vec(
        &(0..k)
            .map(|a| (0..n).map(|i| cols[a][i] * y[i]).sum())
            .collect::<Vec<f64>>(),
    );
    let e: Vec<f64> = (0..n)
        .map(|i| y[i] - (0..k).map(|a| beta[a] * cols[a][i]).sum::<f64>())
        .collect();
    let mut score = vec![0.0; g];
    for i in 0..n {
        let row: Vec<f64> = (0..k).map(|a| cols[a][i]).collect();
        score[ids[i] as usize] += inv.mul_vec(&row)[j] * e[i];
    }
    let q = (n as f64 - 1.0) / (n - k) as f64 * g as f64 / (g as f64 - 1.0);
    beta[j] / (q * score.iter().map(|s| s * s).sum::<f64>()).sqrt()
}

/// Brute-force WCR: the restricted fit (y on every column but `j`), its residuals' signs flipped
/// cluster by cluster for all 2^G sign vectors, and each bootstrap sample's dense t of column j.
fn brute_t(cols: &[Vec<f64>], y: &[f64], j: usize, ids: &[u32], g: usize) -> Vec<f64> {
    let n = y.len();
    let others: Vec<Vec<f64>> = cols
        .iter()
        .enumerate()
        .filter(|(c, _)| *c != j)
        .map(|(_, v)| v.clone())
        .collect();
    let names: Vec<String> = (0..others.len()).map(|c| c.to_string()).collect();
    let restricted = fegpu::estimate::ols::solve(&names, &others, y, None, None, 0.0);
    let fitted: Vec<f64> = (0..n).map(|i| y[i] - restricted.resid[i]).collect();
    (0..1u32 << g)
        .map(|b| {
            let ys: Vec<f64> = (0..n)
                .map(|i| fitted[i] + restricted.resid[i] * if b >> ids[i] & 1 == 1 { -1.0 } else { 1.0 })
                .collect();
            dense_t(cols, &ys, j, ids, g)
        })
        .collect()
}

#[test]
fn wcr_equals_brute_force_with_dummies_when_effects_cut_across_clusters() {
    let d = design("y ~ x1 + x2 | f");
    let cl = &d.clusters[0];
    let g = cl.levels;
    let fe = &d.fes[0];
    // regressors + dummies for every level (no intercept)
    let mut cols = d.x.clone();
    for lv in 0..fe.levels as u32 {
        cols.push(fe.ids.iter().map(|&v| if v == lv { 1.0 } else { 0.0 }).collect());
    }
    for (j, param) in ["x1", "x2"].iter().enumerate() {
        let r = wild_bootstrap(&d, &opts(param, WildWeights::Rademacher, 9999), &CpuDemeaner).unwrap();
        assert!(r.full_enumeration && r.reps == 1 << g);
        let mut brute: Vec<f64> = brute_t(&cols, &d.y, j, &cl.ids, g).iter().map(|t| t.abs()).collect();
        let mut fast: Vec<f64> = r.t_boot.iter().map(|t| t.abs()).collect();
        brute.sort_by(f64::total_cmp);
        fast.sort_by(f64::total_cmp);
        for (a, b) in brute.iter().zip(&fast) {
            assert!((a - b).abs() <= 1e-9 * a.max(1.0), "{param}: brute {a} vs fast {b}");
        }
        let t_obs = dense_t(&cols, &d.y, j, &cl.ids, g);
        assert!(
            (t_obs - r.t).abs() <= 1e-9 * t_obs.abs(),
            "{param}: observed t {t_obs} vs {}",
            r.t
        );
    }
}

#[test]
fn wcr_agrees_with_wildboottest() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wild");
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("wildboottest.json")).unwrap()).unwrap();
    for case in golden["cases"].as_array().unwrap() {
        let d = design(case["formula"].as_str().unwrap());
        let param = case["param"].as_str().unwrap();
        let kind = if case["weights_type"] == "webb" {
            WildWeights::Webb
        } else {
            WildWeights::Rademacher
        };
        let reps = case["reps"].as_u64().unwrap() as usize;
        let r = wild_bootstrap(&d, &opts(param, kind, reps), &CpuDemeaner).unwrap();
        let theirs = case["p"].as_f64().unwrap();
        let what = format!("{} {param} {kind:?}", case["formula"]);
        if r.full_enumeration {
            let tie = 2.0 / r.reps as f64;
            assert!(
                (theirs - r.p).abs() < 1e-12 || (theirs - r.p - tie).abs() < 1e-12,
                "{what}: p {} vs wildboottest {theirs}",
                r.p
            );
        } else {
            let se = (theirs * (1.0 - theirs) / reps as f64).sqrt();
            assert!(
                (theirs - r.p).abs() <= 4.0 * se + 1e-3,
                "{what}: p {} vs wildboottest {theirs} (MC se {se})",
                r.p
            );
        }
        if case["fe_nested_in_cluster"] == false {
            // both count every fixed-effect level in the small-sample factor here
            let t = case["t"].as_f64().unwrap();
            assert!((r.t - t).abs() <= 1e-8 * t.abs(), "{what}: t {} vs {t}", r.t);
        }
    }
}

#[test]
fn wcr_confidence_interval_brackets_the_estimate_and_inverts_the_test() {
    let d = design("y ~ x1 + x2 | f");
    let mut o = opts("x1", WildWeights::Webb, 1999);
    o.level = Some(0.9);
    let r = wild_bootstrap(&d, &o, &CpuDemeaner).unwrap();
    let (lo, hi) = r.ci.unwrap();
    assert!(lo < r.estimate && r.estimate < hi);
    // just inside the bounds the test does not reject at 10%; well outside it does
    for (b, inside) in [
        (lo + 1e-3 * (hi - lo), true),
        (hi - 1e-3 * (hi - lo), true),
        (lo - 0.5 * (hi - lo), false),
        (hi + 0.5 * (hi - lo), false),
    ] {
        let mut oo = opts("x1", WildWeights::Webb, 1999);
        oo.null = b;
        let p = wild_bootstrap(&d, &oo, &CpuDemeaner).unwrap().p;
        assert_eq!(p > 0.1, inside, "β0 = {b}: p = {p}");
    }
}

/// With observation weights and two effects (f cuts across the clusters, fn is nested in them),
/// every bootstrap t relative to the observed t equals brute force: WLS as OLS on √w-scaled rows,
/// the restricted residuals' signs flipped cluster by cluster, all 2^G sign vectors. (Ratios
/// t*/t: the small-sample factor, which differs between conventions for nested effects, cancels.)
#[test]
fn wcr_with_weights_and_two_effects_equals_brute_force() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wild");
    let text = std::fs::read_to_string(dir.join("wild.csv")).unwrap();
    let mut lines = text.lines();
    let mut csv = format!("{},w\n", lines.next().unwrap());
    for (i, l) in lines.enumerate() {
        csv.push_str(&format!("{l},{}\n", 0.5 + (i % 7) as f64 * 0.25));
    }
    let tmp = std::env::temp_dir().join(format!("fegpu-wild-weights-{}.csv", std::process::id()));
    std::fs::write(&tmp, csv).unwrap();
    let m = fegpu::formula::parse("y ~ x1 + x2 | f + fn").unwrap();
    let mut cols = m.variables();
    cols.extend(["c".to_string(), "w".to_string()]);
    let t = load(tmp.to_str().unwrap(), &cols).unwrap();
    let popts = PrepareOptions {
        clusters: vec!["c".into()],
        weights: Some("w".into()),
        ..Default::default()
    };
    let d = prepare(&t, &m, &popts).unwrap();
    let _ = std::fs::remove_file(&tmp);
    let cl = &d.clusters[0];
    let g = cl.levels;
    let sw: Vec<f64> = d.weights.as_ref().unwrap().iter().map(|w| w.sqrt()).collect();
    // √w-scaled regressors and dummies: every level of f, all but the first of fn
    let scale = |v: &[f64]| -> Vec<f64> { v.iter().zip(&sw).map(|(a, s)| a * s).collect() };
    let mut dense: Vec<Vec<f64>> = d.x.iter().map(|x| scale(x)).collect();
    for (k, fe) in d.fes.iter().enumerate() {
        for lv in (k as u32)..fe.levels as u32 {
            let dummy: Vec<f64> = fe.ids.iter().map(|&v| if v == lv { 1.0 } else { 0.0 }).collect();
            dense.push(scale(&dummy));
        }
    }
    let y = scale(&d.y);
    for (j, param) in ["x1"].iter().enumerate() {
        let r = wild_bootstrap(&d, &opts(param, WildWeights::Rademacher, 9999), &CpuDemeaner).unwrap();
        assert!(r.full_enumeration && r.reps == 1 << g);
        let t_obs = dense_t(&dense, &y, j, &cl.ids, g);
        let mut brute: Vec<f64> = brute_t(&dense, &y, j, &cl.ids, g)
            .iter()
            .map(|t| (t / t_obs).abs())
            .collect();
        let mut fast: Vec<f64> = r.t_boot.iter().map(|t| (t / r.t).abs()).collect();
        brute.sort_by(f64::total_cmp);
        fast.sort_by(f64::total_cmp);
        for (a, b) in brute.iter().zip(&fast) {
            assert!((a - b).abs() <= 1e-8 * a.max(1.0), "{param}: brute {a} vs fast {b}");
        }
    }
}
