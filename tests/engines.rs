//! The replicate engines held to each other: every replicate solved on its own (`single`)
//! against the block engines (`block`: replicate Grams as one dense product for one large
//! effect beside few-level ones, gram_product; replicates as lanes of one solve where the
//! effects need CG). `FEGPU_ENGINE` forces the engine, so these checks live in one test
//! function (the variable is process-wide). Same seed, same draws: the replicate estimates
//! must agree to rounding and the p-values exactly.

use fegpu::data::prepare::{ClusterVar, Design, Dropped};
use fegpu::demean::{CpuDemeaner, DemeanOptions};
use fegpu::fe::FixedEffect;
use fegpu::inference::bootstrap::{pairs_bootstrap, PairsOptions};
use fegpu::inference::permutation::{bdiff, BdiffOptions};
use fegpu::rng::Stream;

/// A study-shaped panel: cells (firm × destination) of 1 to 6 rows, sorted, beside years;
/// three regressors, optional weights, clusters of about four cells.
fn cells(seed: u64, n: usize, weights: bool) -> Design {
    let mut s = Stream::new(seed, 6);
    let mut cell = Vec::with_capacity(n);
    let mut g = 0u32;
    while cell.len() < n {
        let len = 1 + s.below(6) as usize;
        cell.extend(std::iter::repeat(g).take(len.min(n - cell.len())));
        g += 1;
    }
    let year: Vec<u32> = (0..n).map(|_| s.below(8)).collect();
    let cfx: Vec<f64> = (0..g).map(|_| s.normal()).collect();
    let x: Vec<Vec<f64>> = (0..3)
        .map(|j| {
            (0..n)
                .map(|i| s.normal() + 0.3 * j as f64 * cfx[cell[i] as usize])
                .collect()
        })
        .collect();
    let y: Vec<f64> = (0..n)
        .map(|i| x[0][i] - 0.5 * x[1][i] + 0.2 * x[2][i] + cfx[cell[i] as usize] + 0.1 * year[i] as f64 + s.normal())
        .collect();
    let cluster: Vec<u32> = cell.iter().map(|&c| c / 4).collect();
    let clusters = *cluster.last().unwrap() as usize + 1;
    Design {
        y_name: "y".into(),
        y,
        x_names: vec!["x1".into(), "x2".into(), "x3".into()],
        x,
        intercept: false,
        endog_names: vec![],
        endog: vec![],
        inst_names: vec![],
        inst: vec![],
        weights: weights.then(|| (0..n).map(|_| 0.5 + s.uniform()).collect()),
        weight_scale: 1.0,
        extra: vec![],
        fes: vec![
            FixedEffect::from_codes("cell", &cell),
            FixedEffect::from_codes("year", &year),
        ],
        clusters: vec![ClusterVar {
            name: "cluster".into(),
            ids: cluster,
            levels: clusters,
        }],
        nobs_raw: n,
        dropped: Dropped::default(),
    }
}

fn demean() -> DemeanOptions {
    DemeanOptions {
        tol: 1e-12,
        max_iter: 100_000,
        ..Default::default()
    }
}

fn same(what: &str, single: &[Vec<f64>], block: &[Vec<f64>]) {
    assert_eq!(single.len(), block.len(), "{what}: coefficients");
    for (c, (a, b)) in single.iter().zip(block).enumerate() {
        assert_eq!(a.len(), b.len(), "{what}: replicates used for coefficient {c}");
        let scale = a.iter().fold(1e-300f64, |m, v| m.max(v.abs()));
        for (r, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-10 * scale,
                "{what}: replicate {r} of coefficient {c}: single {x}, block {y}"
            );
        }
    }
}

fn with_engine<T>(engine: &str, f: impl FnOnce() -> T) -> T {
    std::env::set_var("FEGPU_ENGINE", engine);
    let out = f();
    std::env::remove_var("FEGPU_ENGINE");
    out
}

#[test]
fn block_engines_give_the_per_replicate_answers() {
    for (seed, weights) in [(1u64, false), (2, true)] {
        let d = cells(seed, 3_000, weights);
        let n = d.nobs();
        let mut s = Stream::new(seed, 7);
        for share in [0.5, 0.14] {
            let group: Vec<f64> = (0..n).map(|_| (s.uniform() < share) as u8 as f64).collect();
            let o = BdiffOptions {
                reps: 60,
                seed: 9,
                bsample: false,
                demean: demean(),
                memory_budget: 64 << 20,
                progress: false,
            };
            let what = format!("bdiff, weights {weights}, group share {share}");
            let single = with_engine("single", || bdiff(&d, &group, None, &o, &CpuDemeaner).unwrap());
            let block = with_engine("block", || bdiff(&d, &group, None, &o, &CpuDemeaner).unwrap());
            assert_eq!(single.reps_used, block.reps_used, "{what}");
            same(&what, &single.differences, &block.differences);
            for (a, b) in single.coefficients.iter().zip(&block.coefficients) {
                assert_eq!(
                    (a.p, a.p_two_sided),
                    (b.p, b.p_two_sided),
                    "{what}: p-values of {}",
                    a.name
                );
            }
        }
        let o = PairsOptions {
            reps: 60,
            seed: 4,
            level: 0.95,
            demean: demean(),
            memory_budget: 64 << 20,
            progress: false,
        };
        let what = format!("pairs, weights {weights}");
        let single = with_engine("single", || pairs_bootstrap(&d, &o, &CpuDemeaner).unwrap());
        let block = with_engine("block", || pairs_bootstrap(&d, &o, &CpuDemeaner).unwrap());
        assert_eq!(single.reps_used, block.reps_used, "{what}");
        same(&what, &single.draws, &block.draws);
    }
}
