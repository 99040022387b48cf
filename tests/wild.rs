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
    let signs: Vec<Vec<f64>> = (0..1u32 << g)
        .map(|b| (0..g).map(|c| if b >> c & 1 == 1 { -1.0 } else { 1.0 }).collect())
        .collect();
    brute_t_with(cols, y, j, ids, g, &signs)
}

/// Brute-force WCR with the given cluster weight vectors: the restricted residuals of cluster c
/// multiplied by `v[c]`, and each bootstrap sample's dense t of column j.
fn brute_t_with(cols: &[Vec<f64>], y: &[f64], j: usize, ids: &[u32], g: usize, vectors: &[Vec<f64>]) -> Vec<f64> {
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
    vectors
        .iter()
        .map(|v| {
            let ys: Vec<f64> = (0..n)
                .map(|i| fitted[i] + restricted.resid[i] * v[ids[i] as usize])
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

/// The fixture with a column `c3` = c mod 3: three clusters (2^3 = 8 sign vectors, 6^3 = 216
/// Webb vectors), written to a file of its own.
fn three_cluster_csv(name: &str) -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wild");
    let text = std::fs::read_to_string(dir.join("wild.csv")).unwrap();
    let mut lines = text.lines();
    let mut csv = format!("{},c3\n", lines.next().unwrap());
    for l in lines {
        let c: u32 = l.rsplit(',').next().unwrap().parse().unwrap();
        csv.push_str(&format!("{l},{}\n", c % 3));
    }
    let path = std::env::temp_dir().join(format!("fegpu-wild3-{name}-{}.csv", std::process::id()));
    std::fs::write(&path, csv).unwrap();
    path
}

fn design_at(path: &Path, formula: &str, cluster: &str) -> Design {
    let m = fegpu::formula::parse(formula).unwrap();
    let mut cols = m.variables();
    cols.push(cluster.into());
    let t = load(path.to_str().unwrap(), &cols).unwrap();
    prepare(
        &t,
        &m,
        &PrepareOptions {
            clusters: vec![cluster.into()],
            ..Default::default()
        },
    )
    .unwrap()
}

/// The regressors and a dummy for every level of the (single) fixed effect, no intercept.
fn with_dummies(d: &Design) -> Vec<Vec<f64>> {
    let fe = &d.fes[0];
    let mut cols = d.x.clone();
    for lv in 0..fe.levels as u32 {
        cols.push(fe.ids.iter().map(|&v| if v == lv { 1.0 } else { 0.0 }).collect());
    }
    cols
}

/// Sorted ratios t*/t (the small-sample factor cancels) and the share of |t*| > |t|.
fn sorted_ratios(t_boot: &[f64], t: f64) -> Vec<f64> {
    let mut r: Vec<f64> = t_boot.iter().map(|b| b / t).collect();
    r.sort_by(f64::total_cmp);
    r
}

fn share_beyond(ratios: &[f64]) -> f64 {
    ratios.iter().filter(|r| r.abs() > 1.0 + 1e-10).count() as f64 / ratios.len() as f64
}

/// With 3 clusters, Webb weights and --reps ≥ 6^3 = 216, the draws are the 216 distinct weight
/// vectors, each exactly once: brute force over those vectors gives the same bootstrap t's, the
/// distribution is the same whatever the seed, and the p-value is the enumeration's.
#[test]
fn webb_with_three_clusters_enumerates_all_216_vectors() {
    let path = three_cluster_csv("webb");
    let d = design_at(&path, "y ~ x1 + x2 | f", "c3");
    let _ = std::fs::remove_file(&path);
    let cl = &d.clusters[0];
    assert_eq!(cl.levels, 3);
    let cols = with_dummies(&d);
    let pts = fegpu::inference::replicates::WEBB_POINTS;
    let vectors: Vec<Vec<f64>> = (0..216usize)
        .map(|b| (0..3u32).map(|c| pts[b / 6usize.pow(c) % 6]).collect())
        .collect();
    let t_obs = dense_t(&cols, &d.y, 0, &cl.ids, 3);
    let brute = sorted_ratios(&brute_t_with(&cols, &d.y, 0, &cl.ids, 3, &vectors), t_obs);
    let mut seen: Option<Vec<f64>> = None;
    for seed in [11, 12_345] {
        let mut o = opts("x1", WildWeights::Webb, 999);
        o.seed = seed;
        let r = wild_bootstrap(&d, &o, &CpuDemeaner).unwrap();
        assert!(r.full_enumeration, "seed {seed}: 216 <= 999 vectors must be enumerated");
        assert_eq!((r.reps, r.t_boot.len()), (216, 216), "seed {seed}");
        let fast = sorted_ratios(&r.t_boot, r.t);
        for (a, b) in brute.iter().zip(&fast) {
            assert!(
                (a - b).abs() <= 1e-8 * a.abs().max(1.0),
                "seed {seed}: brute {a} vs fast {b}"
            );
        }
        assert_eq!(r.p, share_beyond(&fast));
        assert!(
            (r.p - share_beyond(&brute)).abs() < 1e-12,
            "p {} vs brute {}",
            r.p,
            share_beyond(&brute)
        );
        match &seen {
            None => seen = Some(r.t_boot.clone()),
            Some(first) => assert_eq!(first, &r.t_boot, "the enumeration does not depend on the seed"),
        }
    }
}

/// With 3 clusters and Rademacher weights there are 8 sign vectors: --reps 999 uses each once,
/// the p-value is theirs, and the result carries a warning that 8 draws cannot resolve a 5% test
/// (and suggests Webb weights).
#[test]
fn rademacher_with_three_clusters_enumerates_8_and_warns() {
    let path = three_cluster_csv("rad");
    let d = design_at(&path, "y ~ x1 + x2 | f", "c3");
    let _ = std::fs::remove_file(&path);
    let cl = &d.clusters[0];
    let cols = with_dummies(&d);
    let t_obs = dense_t(&cols, &d.y, 0, &cl.ids, 3);
    let brute = sorted_ratios(&brute_t(&cols, &d.y, 0, &cl.ids, 3), t_obs);
    let mut o = opts("x1", WildWeights::Rademacher, 999);
    o.level = Some(0.95);
    let r = wild_bootstrap(&d, &o, &CpuDemeaner).unwrap();
    assert!(r.full_enumeration);
    assert_eq!((r.reps, r.t_boot.len(), r.distinct_draws), (8, 8, 8));
    let fast = sorted_ratios(&r.t_boot, r.t);
    for (a, b) in brute.iter().zip(&fast) {
        assert!((a - b).abs() <= 1e-8 * a.abs().max(1.0), "brute {a} vs fast {b}");
    }
    assert!((r.p - share_beyond(&brute)).abs() < 1e-12);
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    let w = &r.warnings[0];
    assert!(w.contains("8 distinct") && w.contains("webb"), "{w}");
    // Webb weights on the same data: 216 vectors, no warning
    let mut o = opts("x1", WildWeights::Webb, 999);
    o.level = Some(0.95);
    let r = wild_bootstrap(&d, &o, &CpuDemeaner).unwrap();
    assert_eq!((r.reps, r.distinct_draws), (216, 216));
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

/// Shards of an enumerated Webb run each take their slice of the 216 vectors; merged, they are
/// the single run's draws, p and interval.
#[test]
fn sharded_webb_enumeration_merges_to_the_single_run() {
    use fegpu::inference::shard::Shard;
    use fegpu::inference::wild::{assemble, wild_draws, WildDraws};
    let path = three_cluster_csv("shard");
    let d = design_at(&path, "y ~ x1 + x2 | f", "c3");
    let _ = std::fs::remove_file(&path);
    let mut o = opts("x1", WildWeights::Webb, 999);
    o.level = Some(0.9);
    let single = wild_draws(&d, &o, None, &CpuDemeaner).unwrap();
    assert_eq!((single.observed.total, single.draws.len()), (216, 216));
    for k in [2, 5] {
        let mut draws = Vec::new();
        for i in 1..=k {
            let part = wild_draws(&d, &o, Some(Shard::new(i, k).unwrap()), &CpuDemeaner).unwrap();
            assert_eq!(part.first, draws.len(), "shard {i}/{k}");
            assert_eq!(part.observed, single.observed);
            draws.extend(part.draws);
        }
        let merged = WildDraws {
            observed: single.observed.clone(),
            first: 0,
            draws,
        };
        assert_eq!(merged, single, "{k} shards");
        let (a, b) = (assemble(&merged), assemble(&single));
        assert_eq!((a.p, a.ci, a.reps), (b.p, b.ci, b.reps));
    }
}

fn fegpu_out(args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fegpu"))
        .args(args)
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .expect("fegpu runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("panicked"), "{err}");
    out
}

/// On the command line the few-draws warning is on stderr, in the text output and in the JSON,
/// and every format says how many distinct draws were used.
#[test]
fn few_distinct_draws_are_loud_in_every_format() {
    let path = three_cluster_csv("cli");
    let p = path.to_str().unwrap();
    let run = |extra: &[&str]| {
        let base = ["boot", p, "y ~ x1 + x2 | f", "--cluster", "c3", "--reps", "999"];
        fegpu_out(&[&base[..], extra].concat())
    };
    let text = run(&[]);
    let (out, err) = (
        String::from_utf8_lossy(&text.stdout),
        String::from_utf8_lossy(&text.stderr),
    );
    assert!(out.contains("WARNING") && out.contains("webb"), "text: {out}");
    assert!(out.contains("8 distinct"), "text: {out}");
    assert!(err.contains("WARNING"), "stderr: {err}");
    let json = run(&["--format", "json"]);
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["wild"]["reps"], 8);
    assert_eq!(v["wild"]["distinct_draws"], 8);
    assert_eq!(v["wild"]["warnings"].as_array().map(Vec::len), Some(1), "{}", v["wild"]);
    assert!(String::from_utf8_lossy(&json.stderr).contains("WARNING"));
    // Webb weights: all 216 vectors, said in both formats, no warning
    let webb = run(&["--weights-type", "webb"]);
    let out = String::from_utf8_lossy(&webb.stdout);
    assert!(out.contains("216 distinct") && !out.contains("WARNING"), "text: {out}");
    assert!(!String::from_utf8_lossy(&webb.stderr).contains("WARNING"));
    let json = run(&["--weights-type", "webb", "--format", "json"]);
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["wild"]["reps"], 216);
    assert_eq!(v["wild"]["distinct_draws"], 216);
    assert_eq!(v["wild"]["full_enumeration"], true);
    assert_eq!(v["wild"]["warnings"].as_array().map(Vec::len), Some(0));
    let _ = std::fs::remove_file(&path);
}
