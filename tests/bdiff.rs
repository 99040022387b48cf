//! `fegpu bdiff`: exact against full enumeration on a tiny dataset (every assignment of the
//! group labels to units refitted by dense least squares in the test), roughly uniform p-values
//! under a true null, and the same answer from every backend and chunk size.

use fegpu::data::prepare::{ClusterVar, Design, Dropped};
use fegpu::demean::{CpuDemeaner, DemeanOptions};
use fegpu::fe::FixedEffect;
use fegpu::inference::permutation::{bdiff, BdiffOptions};
use fegpu::rng::Stream;

fn panel(seed: u64, firms: usize, years: usize, effect_gap: f64) -> (Design, Vec<f64>) {
    let mut s = Stream::new(seed, 4);
    let n = firms * years;
    let firm_ids: Vec<u32> = (0..n).map(|i| (i / years) as u32).collect();
    let year_ids: Vec<u32> = (0..n).map(|i| (i % years) as u32).collect();
    let group_of_firm: Vec<f64> = (0..firms).map(|f| if f % 2 == 0 { 1.0 } else { 0.0 }).collect();
    let fx: Vec<f64> = (0..firms).map(|_| s.normal()).collect();
    let x: Vec<f64> = (0..n).map(|_| s.normal()).collect();
    let group: Vec<f64> = firm_ids.iter().map(|&f| group_of_firm[f as usize]).collect();
    let y: Vec<f64> = (0..n)
        .map(|i| {
            (0.5 + effect_gap * group[i]) * x[i] + fx[firm_ids[i] as usize] + 0.2 * year_ids[i] as f64 + s.normal()
        })
        .collect();
    let design = Design {
        y_name: "y".into(),
        y,
        x_names: vec!["x".into()],
        x: vec![x],
        intercept: false,
        endog_names: vec![],
        endog: vec![],
        inst_names: vec![],
        inst: vec![],
        weights: None,
        weight_scale: 1.0,
        extra: vec![group.clone()],
        fes: vec![
            FixedEffect {
                name: "firm".into(),
                ids: firm_ids.clone(),
                levels: firms,
            },
            FixedEffect {
                name: "year".into(),
                ids: year_ids,
                levels: years,
            },
        ],
        clusters: vec![ClusterVar {
            name: "firm".into(),
            ids: firm_ids,
            levels: firms,
        }],
        nobs_raw: n,
        dropped: Dropped::default(),
    };
    (design, group)
}

fn opts(reps: usize) -> BdiffOptions {
    BdiffOptions {
        reps,
        seed: 5,
        bsample: false,
        demean: DemeanOptions {
            tol: 1e-13,
            max_iter: 100_000,
            ..Default::default()
        },
        memory_budget: 64 << 20,
        progress: false,
    }
}

/// Within-firm-and-year OLS slope of y on x for the rows of `firms` (dense: dummies via
/// two-way demeaning to machine precision by alternating projections until fixed).
fn slope(d: &Design, in_group: &dyn Fn(u32) -> bool) -> f64 {
    let rows: Vec<usize> = (0..d.nobs()).filter(|&i| in_group(d.fes[0].ids[i])).collect();
    let mut y: Vec<f64> = rows.iter().map(|&i| d.y[i]).collect();
    let mut x: Vec<f64> = rows.iter().map(|&i| d.x[0][i]).collect();
    for _ in 0..2000 {
        for k in 0..2 {
            let ids: Vec<u32> = rows.iter().map(|&i| d.fes[k].ids[i]).collect();
            let g = d.fes[k].levels;
            for v in [&mut y, &mut x] {
                let (mut s, mut c) = (vec![0.0; g], vec![0.0; g]);
                for (j, &l) in ids.iter().enumerate() {
                    s[l as usize] += v[j];
                    c[l as usize] += 1.0;
                }
                for (j, &l) in ids.iter().enumerate() {
                    v[j] -= s[l as usize] / c[l as usize];
                }
            }
        }
    }
    x.iter().zip(&y).map(|(a, b)| a * b).sum::<f64>() / x.iter().map(|a| a * a).sum::<f64>()
}

#[test]
fn permutation_p_value_is_exact_under_full_enumeration() {
    let (d, group) = panel(1, 10, 4, 0.6);
    let r = bdiff(&d, &group, Some((&d.clusters[0].ids, 10)), &opts(1000), &CpuDemeaner).unwrap();
    assert!(r.enumerated);
    assert_eq!(r.reps_used, 252); // C(10, 5)
                                  // brute force: every 5-of-10 assignment of firms to group 1
    let observed = slope(&d, &|f| f % 2 == 0) - slope(&d, &|f| f % 2 == 1);
    assert!(
        (observed - r.coefficients[0].difference).abs() < 1e-9,
        "{observed} vs {}",
        r.coefficients[0].difference
    );
    let mut at_least = 0;
    let mut count = 0;
    for mask in 0u32..1 << 10 {
        if mask.count_ones() != 5 {
            continue;
        }
        count += 1;
        let dd = slope(&d, &|f| mask >> f & 1 == 1) - slope(&d, &|f| mask >> f & 1 == 0);
        if if observed >= 0.0 {
            dd >= observed - 1e-9
        } else {
            dd <= observed + 1e-9
        } {
            at_least += 1;
        }
    }
    assert_eq!(count, 252);
    assert!(
        (r.coefficients[0].p - at_least as f64 / 252.0).abs() < 1e-12,
        "p {} vs enumeration {}",
        r.coefficients[0].p,
        at_least as f64 / 252.0
    );
}

#[test]
fn permutation_p_values_are_roughly_uniform_under_the_null() {
    // 200 datasets without a group difference; two-sided p-values by 99 permutations of firms
    let mut ps: Vec<f64> = (0..200)
        .map(|s| {
            let (d, group) = panel(100 + s, 16, 3, 0.0);
            bdiff(
                &d,
                &group,
                Some((&d.clusters[0].ids, 16)),
                &BdiffOptions { seed: s, ..opts(99) },
                &CpuDemeaner,
            )
            .unwrap()
            .coefficients[0]
                .p_two_sided
        })
        .collect();
    ps.sort_by(f64::total_cmp);
    // Kolmogorov–Smirnov distance to U(0,1); the 1% critical value for n = 200 is 0.115
    let ks = ps
        .iter()
        .enumerate()
        .map(|(i, &p)| ((i + 1) as f64 / 200.0 - p).abs().max((p - i as f64 / 200.0).abs()))
        .fold(0.0, f64::max);
    assert!(ks < 0.115, "KS distance {ks}");
}

#[test]
fn bdiff_does_not_depend_on_chunk_size_or_backend() {
    let (d, group) = panel(7, 30, 5, 0.3);
    let units = Some((d.clusters[0].ids.as_slice(), 30usize));
    let a = bdiff(&d, &group, units, &opts(40), &CpuDemeaner).unwrap();
    let small = BdiffOptions {
        memory_budget: 1,
        ..opts(40)
    };
    let b = bdiff(&d, &group, units, &small, &CpuDemeaner).unwrap();
    assert!(!a.enumerated);
    assert_eq!(a.differences, b.differences);
    if let Ok(g) = fegpu::demean::GpuDemeaner::new(fegpu::gpu::Precision::Df64) {
        let c = bdiff(&d, &group, units, &opts(40), &g).unwrap();
        for (u, v) in a.differences[0].iter().zip(&c.differences[0]) {
            assert!((u - v).abs() <= 1e-9 * u.abs().max(1e-3), "cpu {u} vs gpu {v}");
        }
        assert_eq!(a.coefficients[0].p, c.coefficients[0].p);
    } else if std::env::var_os("CI").is_some() {
        panic!("CI must have a GPU adapter (lavapipe)");
    }
}

#[test]
fn pairs_bootstrap_se_is_close_to_the_cluster_robust_se_and_chunk_invariant() {
    use fegpu::inference::bootstrap::{pairs_bootstrap, PairsOptions};
    let (d, _) = panel(21, 120, 4, 0.0);
    let o = PairsOptions {
        reps: 399,
        seed: 3,
        level: 0.9,
        demean: DemeanOptions {
            tol: 1e-12,
            max_iter: 100_000,
            ..Default::default()
        },
        memory_budget: 64 << 20,
        progress: false,
    };
    let r = pairs_bootstrap(&d, &o, &CpuDemeaner).unwrap();
    let r2 = pairs_bootstrap(
        &d,
        &PairsOptions {
            memory_budget: 1,
            ..o.clone()
        },
        &CpuDemeaner,
    )
    .unwrap();
    assert_eq!(r.draws, r2.draws, "replicates must not depend on the chunk size");
    // CRV1 standard error of the same model
    let fo = fegpu::estimate::FitOptions {
        vcov: fegpu::estimate::VcovSpec::Cluster(vec!["firm".into()]),
        ..Default::default()
    };
    let f = fegpu::estimate::fit_design(&d, "y ~ x | firm + year", &fo, &CpuDemeaner).unwrap();
    let (boot, crv) = (r.coefficients[0].std_error, f.coefficients[0].std_error);
    assert!((boot / crv - 1.0).abs() < 0.2, "bootstrap se {boot} vs CRV1 {crv}");
    let c = &r.coefficients[0];
    assert!(c.ci_low < c.estimate && c.estimate < c.ci_high);
}

#[test]
fn unit_sufficient_statistics_equal_the_general_replicate_engine() {
    use fegpu::inference::permutation::UnitStats;
    use fegpu::inference::replicate_betas;
    let (d, _) = panel(31, 40, 5, 0.2);
    let o = DemeanOptions {
        tol: 1e-13,
        max_iter: 100_000,
        ..Default::default()
    };
    let ids = d.clusters[0].ids.clone();
    let us = UnitStats::build(&d, &ids, 40, &CpuDemeaner, &o)
        .unwrap()
        .expect("firm + year qualifies");
    let mut s = Stream::new(8, 8);
    let fes: Vec<&FixedEffect> = d.fes.iter().collect();
    let cols = vec![d.y.clone(), d.x[0].clone()];
    for _ in 0..10 {
        // bootstrap-like multiplicities per firm (0..3)
        let m: Vec<f64> = (0..40).map(|_| s.below(4) as f64).collect();
        let w: Vec<f64> = ids.iter().map(|&u| m[u as usize]).collect();
        let fast = us.beta(&m).unwrap().unwrap();
        let general = replicate_betas(&fes, &cols, &[w], &o, &CpuDemeaner)
            .unwrap()
            .pop()
            .unwrap()
            .unwrap();
        assert!(
            (fast[0] - general[0]).abs() <= 1e-9 * general[0].abs().max(1e-6),
            "{} vs {}",
            fast[0],
            general[0]
        );
    }
}

/// The replicate engine's three CPU paths give the same coefficients: cross products from level
/// sums (one large effect + few-level ones), CG with one preconditioner shared by every
/// replicate (hard three-effect structures), and demeaning each replicate's rows afresh
/// (alternating projections at a tight tolerance, the reference here).
#[test]
fn replicate_engine_paths_agree() {
    use fegpu::demean::Solver;
    use fegpu::inference::{replicate_betas, Replicates};
    let mut s = Stream::new(41, 4);
    let n = 1_500;
    // a chain of bands (hard) plus years: worker, firm, year
    let worker: Vec<u32> = (0..n).map(|_| s.below(300)).collect();
    let firm: Vec<u32> = worker.iter().map(|&w| w / 6 + s.below(3)).collect();
    let year: Vec<u32> = (0..n).map(|_| s.below(6)).collect();
    let fx = |ids: &[u32], a: f64| -> Vec<f64> { ids.iter().map(|&g| (g as f64 * a).sin()).collect() };
    let (fw, ff) = (fx(&worker, 0.7), fx(&firm, 1.3));
    let x: Vec<f64> = (0..n).map(|i| s.normal() + fw[i]).collect();
    let y: Vec<f64> = (0..n)
        .map(|i| 0.5 * x[i] + fw[i] + ff[i] + 0.1 * year[i] as f64 + s.normal())
        .collect();
    let mk = FixedEffect::from_codes;
    let (d, _) = panel(1, 10, 3, 0.0);
    let design = Design {
        y,
        x: vec![x],
        extra: vec![],
        fes: vec![mk("worker", &worker), mk("firm", &firm), mk("year", &year)],
        clusters: vec![],
        nobs_raw: n,
        ..d
    };
    let ws: Vec<Vec<f64>> = (0..6)
        .map(|_| {
            (0..n)
                .map(|_| {
                    if s.uniform() < 0.3 {
                        0.0
                    } else {
                        1.0 + s.below(3) as f64
                    }
                })
                .collect()
        })
        .collect();
    let fes: Vec<&FixedEffect> = design.fes.iter().collect();
    let exact = DemeanOptions {
        tol: 1e-14,
        max_iter: 200_000,
        solver: Solver::Ap,
    };
    let o = DemeanOptions {
        tol: 1e-11,
        ..Default::default()
    };
    let shared = Replicates::new(&design, &o, &CpuDemeaner).unwrap();
    let reference = Replicates::new(&design, &exact, &CpuDemeaner).unwrap();
    let a = shared.betas(&ws, &CpuDemeaner).unwrap();
    let b = reference.betas(&ws, &CpuDemeaner).unwrap();
    for (u, v) in a.iter().zip(&b) {
        let (u, v) = (u.as_ref().unwrap()[0], v.as_ref().unwrap()[0]);
        assert!(
            (u - v).abs() < 1e-8 * v.abs().max(1e-3),
            "shared CG {u} vs per-replicate {v}"
        );
    }
    // one large effect (worker) beside years: level sums vs per-replicate CG
    let two: Vec<&FixedEffect> = vec![fes[0], fes[2]];
    let cols = vec![design.y.clone(), design.x[0].clone()];
    // (the level-sum path needs the large effect's rows contiguous: sort by worker)
    let order = fegpu::fe::index::sort_rows_by(&fes[0].ids, fes[0].levels, &(0..n).collect::<Vec<_>>());
    let perm = |v: &[f64]| -> Vec<f64> { order.iter().map(|&i| v[i]).collect() };
    let permfe = |f: &FixedEffect| FixedEffect {
        name: f.name.clone(),
        ids: order.iter().map(|&i| f.ids[i]).collect(),
        levels: f.levels,
    };
    let (wk, yr) = (permfe(two[0]), permfe(two[1]));
    let sorted_cols: Vec<Vec<f64>> = cols.iter().map(|c| perm(c)).collect();
    let sorted_ws: Vec<Vec<f64>> = ws.iter().map(|w| perm(w)).collect();
    let fast = replicate_betas(&[&wk, &yr], &sorted_cols, &sorted_ws, &o, &CpuDemeaner).unwrap();
    let slow = replicate_betas(&[&wk, &yr], &sorted_cols, &sorted_ws, &exact, &CpuDemeaner).unwrap();
    for (u, v) in fast.iter().zip(&slow) {
        let (u, v) = (u.as_ref().unwrap()[0], v.as_ref().unwrap()[0]);
        assert!(
            (u - v).abs() < 1e-9 * v.abs().max(1e-3),
            "level sums {u} vs demeaning {v}"
        );
    }
}

/// The complement Gram (full-sample sums minus the dropped rows) equals the direct level-sum
/// Gram to rounding, on raw columns and on full-sample residuals, with non-integer base
/// weights, two few-level effects, and replicates that empty whole runs.
#[test]
fn complement_gram_equals_the_direct_level_sums() {
    use fegpu::inference::complement::LevelTotals;
    use fegpu::inference::fwl::{LevelRuns, Scratch};
    let mut s = Stream::new(77, 4);
    let n = 3_000;
    // runs of 1..8 rows of the large effect, sorted; years and a 3-level sector beside it
    let mut large = Vec::with_capacity(n);
    let mut g = 0u32;
    while large.len() < n {
        let len = 1 + s.below(8) as usize;
        large.extend(std::iter::repeat(g).take(len.min(n - large.len())));
        g += 1;
    }
    let fe = |name: &str, ids: Vec<u32>| FixedEffect::from_codes(name, &ids);
    let big = fe("cell", large);
    let year = fe("year", (0..n).map(|_| s.below(6)).collect());
    let sector = fe("sector", (0..n).map(|_| s.below(3)).collect());
    let fes = vec![&big, &year, &sector];
    let runs = LevelRuns::new(&fes, 0, &[1, 2]).expect("contiguous runs");
    let base: Vec<f64> = (0..n).map(|_| 0.5 + s.uniform()).collect();
    let cols: Vec<Vec<f64>> = (0..4)
        .map(|c| {
            (0..n)
                .map(|i| s.normal() + (big.ids[i] % 5) as f64 * c as f64)
                .collect()
        })
        .collect();
    let totals = LevelTotals::new(&runs, &cols, &base);
    let mut scratch = (Scratch::default(), Default::default());
    for share in [0.02, 0.1, 0.4] {
        // drop whole runs for some replicates' rows, single rows for others
        let w: Vec<f64> = (0..n)
            .map(|i| if s.uniform() < share { 0.0 } else { base[i] })
            .collect();
        assert!(totals.prefers_complement(&w));
        let direct = runs.gram(&mut scratch.0, &cols, &w);
        let comp = runs.gram_complement(&totals, &mut scratch.1, &w);
        let scale = direct.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        for (a, b) in direct.iter().zip(&comp) {
            assert!(
                (a - b).abs() <= 1e-12 * scale,
                "direct {a} vs complement {b} (share {share})"
            );
        }
    }
    // two disjoint groups from one pass: each equal to its direct Gram
    let mut pair = Default::default();
    for share in [0.03, 0.1, 0.3] {
        let small: Vec<f64> = (0..n)
            .map(|i| if s.uniform() < share { base[i] } else { 0.0 })
            .collect();
        // the larger group leaves out the smaller one and a few rows of its own (pruned singletons)
        let large: Vec<f64> = (0..n)
            .map(|i| {
                if small[i] > 0.0 || s.uniform() < 0.02 {
                    0.0
                } else {
                    base[i]
                }
            })
            .collect();
        assert!(totals.suits_pair(&small, &large));
        assert!(!totals.suits_pair(&small, &base), "overlapping groups");
        let [gs, gl] = runs.gram_pair(&totals, &mut pair, &small, &large).expect("suited");
        assert!(
            runs.gram_pair(&totals, &mut pair, &large, &small).is_none(),
            "the larger group first"
        );
        for (mine, w) in [(gs, &small), (gl, &large)] {
            let direct = runs.gram(&mut scratch.0, &cols, w);
            // (a small group's runs hold one row or two: its Gram can be near zero, whose
            // rounding is that of the O(1) data it is summed from)
            let scale = direct.iter().fold(1.0f64, |a, v| a.max(v.abs()));
            for (a, b) in direct.iter().zip(&mine) {
                assert!((a - b).abs() <= 1e-12 * scale, "direct {a} vs pair {b} (share {share})");
            }
        }
    }
    // weights other than 0 or the base weight, or more rows dropped than kept: the direct path
    let doubled: Vec<f64> = base.iter().map(|b| 2.0 * b).collect();
    assert!(!totals.prefers_complement(&doubled));
    let mostly_out: Vec<f64> = (0..n).map(|i| if i % 3 == 0 { base[i] } else { 0.0 }).collect();
    assert!(!totals.prefers_complement(&mostly_out));
}

/// The block product (one matrix product over a block of replicates, gram_product) equals the
/// direct level-sum Gram of every weight vector to rounding: multiplicities, zeros, whole runs
/// emptied, permutation groups with pruned rows, two few-level effects and non-integer base
/// weights.
#[test]
fn block_product_grams_equal_the_direct_level_sums() {
    use fegpu::inference::complement::LevelTotals;
    use fegpu::inference::fwl::{LevelRuns, Scratch};
    use fegpu::inference::gram_product::GramProduct;
    use fegpu::linalg::partial_out_last;
    let mut s = Stream::new(78, 4);
    let n = 2_500;
    let mut large = Vec::with_capacity(n);
    let mut g = 0u32;
    while large.len() < n {
        let len = 1 + s.below(8) as usize;
        large.extend(std::iter::repeat(g).take(len.min(n - large.len())));
        g += 1;
    }
    let fe = |name: &str, ids: Vec<u32>| FixedEffect::from_codes(name, &ids);
    let big = fe("cell", large);
    let year = fe("year", (0..n).map(|_| s.below(6)).collect());
    let sector = fe("sector", (0..n).map(|_| s.below(3)).collect());
    let fes = vec![&big, &year, &sector];
    let runs = LevelRuns::new(&fes, 0, &[1, 2]).expect("contiguous runs");
    let base: Vec<f64> = (0..n)
        .map(|i| if i % 17 == 0 { 0.0 } else { 0.5 + s.uniform() })
        .collect();
    let cols: Vec<Vec<f64>> = (0..4)
        .map(|c| {
            (0..n)
                .map(|i| s.normal() + (big.ids[i] % 5) as f64 * c as f64)
                .collect()
        })
        .collect();
    let (c, m) = (cols.len(), cols.len() + 5 + 2);
    let totals = LevelTotals::new(&runs, &cols, &base);
    let product = GramProduct::new(&runs, &totals);
    let mut scratch = Scratch::default();
    // multiplicities 0..3 with some whole runs emptied; permutation groups (a random share at
    // the base weight, 3% of rows pruned)
    let mut ws: Vec<Vec<f64>> = (0..11)
        .map(|_| {
            (0..n)
                .map(|i| {
                    if big.ids[i] % 7 == 0 {
                        0.0
                    } else {
                        base[i] * s.below(4) as f64
                    }
                })
                .collect()
        })
        .collect();
    for share in [0.5, 0.2, 0.9] {
        ws.extend((0..3).map(|_| {
            (0..n)
                .map(|i| {
                    if s.uniform() < share && s.uniform() > 0.03 {
                        base[i]
                    } else {
                        0.0
                    }
                })
                .collect()
        }));
    }
    let refs: Vec<&[f64]> = ws.iter().map(|w| w.as_slice()).collect();
    let block = product.grams(&refs);
    assert_eq!(block.len(), ws.len());
    for (j, w) in ws.iter().enumerate() {
        let direct = runs.gram(&mut scratch, &cols, w);
        let mine = partial_out_last(&block[j], c, m);
        let scale = direct.iter().fold(1.0f64, |a, v| a.max(v.abs()));
        for (a, b) in direct.iter().zip(&mine) {
            assert!((a - b).abs() <= 1e-11 * scale, "weights {j}: direct {a} vs block {b}");
        }
    }
}
