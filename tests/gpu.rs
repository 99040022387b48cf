//! The GPU backend against the CPU reference, on every adapter CI has (lavapipe there). Random
//! problems with skewed group sizes (one level holding half the rows, many of size 2), 1 to 4
//! fixed effects, an interacted effect, weights, zero weights and a batch of 64 weight vectors:
//! coefficients and standard errors must agree within 1e-7 relative, demeaned columns within
//! 1e-9 of their scale. Both precisions (df64 on f32 hardware arithmetic; native f64 where the
//! adapter has it) are checked.
//!
//! Without an adapter these tests skip with a message, except under CI (`CI` set), where a
//! missing adapter is a failure: CI installs Mesa's lavapipe so every shader really runs.

use fegpu::data::prepare::{ClusterVar, Design, Dropped};
use fegpu::demean::gpu::cpu_demean_batch;
use fegpu::demean::{CpuDemeaner, DemeanOptions, GpuDemeaner};
use fegpu::estimate::{fit_design, FitOptions, FitResult, Ssc, VcovSpec};
use fegpu::fe::index::interact;
use fegpu::fe::FixedEffect;
use fegpu::gpu::Precision;
use fegpu::rng::Stream;

fn gpu(precision: Precision) -> Option<GpuDemeaner> {
    match GpuDemeaner::new(precision) {
        Ok(g) => Some(g),
        Err(e) => {
            let msg = e.to_string();
            let no_adapter = msg.contains("no GPU adapter");
            if !no_adapter || (std::env::var_os("CI").is_some() && precision == Precision::Df64) {
                panic!("the GPU backend must work here: {msg}");
            }
            eprintln!("skipping GPU test ({precision:?}): {msg}");
            None
        }
    }
}

/// One level with half the rows, then many levels of size 2, then random levels.
fn skewed(s: &mut Stream, n: usize, random_levels: u32) -> Vec<u32> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let v = if i % 2 == 0 {
            0
        } else if i % 4 == 1 {
            1 + (i as u32 / 4)
        } else {
            1 + n as u32 / 4 + 1 + s.below(random_levels)
        };
        ids.push(v);
    }
    ids
}

fn fe(name: &str, codes: Vec<u32>) -> FixedEffect {
    // dense renumbering
    let n = codes.len();
    let levels = *codes.iter().max().unwrap() as usize + 1;
    let (ids, levels) = fegpu::fe::index::compact(&codes, levels, &(0..n).collect::<Vec<_>>());
    FixedEffect {
        name: name.into(),
        ids,
        levels,
    }
}

struct Problem {
    design: Design,
}

fn problem(seed: u64, n: usize, n_fe: usize, weights: bool, interacted: bool) -> Problem {
    let mut s = Stream::new(seed, 9);
    let mut fes = vec![fe("skewed", skewed(&mut s, n, 37))];
    for k in 1..n_fe {
        let g = [13u32, 7, 29, 5][k % 4];
        fes.push(fe(&format!("f{k}"), (0..n).map(|_| s.below(g)).collect()));
    }
    if interacted {
        let z: Vec<u32> = (0..n).map(|_| s.below(4)).collect();
        let (ids, levels) = interact(&[(&fes[1].ids, fes[1].levels), (&z, 4)]);
        fes.push(FixedEffect {
            name: "f1^z".into(),
            ids,
            levels,
        });
    }
    let k = 3;
    let x: Vec<Vec<f64>> = (0..k)
        .map(|j| {
            (0..n)
                .map(|i| s.normal() * (1.0 + j as f64) + 0.5 * (fes[0].ids[i] % 5) as f64)
                .collect()
        })
        .collect();
    let y: Vec<f64> = (0..n)
        .map(|i| 1.0 + 0.7 * x[0][i] - 0.4 * x[1][i] + 0.1 * x[2][i] + (fes[0].ids[i] % 11) as f64 * 0.3 + s.normal())
        .collect();
    let w = weights.then(|| (0..n).map(|_| 0.25 + 3.0 * s.uniform()).collect());
    let cl = ClusterVar {
        name: "cl".into(),
        ids: (0..n).map(|_| s.below(40)).collect(),
        levels: 40,
    };
    Problem {
        design: Design {
            y_name: "y".into(),
            y,
            x_names: (1..=k).map(|j| format!("x{j}")).collect(),
            x,
            intercept: false,
            endog_names: vec![],
            endog: vec![],
            inst_names: vec![],
            inst: vec![],
            weights: w,
            weight_scale: 1.0,
            extra: vec![],
            fes,
            clusters: vec![cl],
            nobs_raw: n,
            dropped: Dropped::default(),
        },
    }
}

fn fit_with(d: &Design, vcov: &str, demeaner: &dyn fegpu::demean::Demeaner) -> FitResult {
    let opts = FitOptions {
        vcov: VcovSpec::parse(vcov).unwrap(),
        ssc: Ssc::Reghdfe,
        demean: DemeanOptions {
            tol: 1e-10,
            max_iter: 100_000,
            ..Default::default()
        },
        ..Default::default()
    };
    fit_design(d, "y ~ x1 + x2 + x3", &opts, demeaner).unwrap()
}

fn assert_fits_agree(what: &str, cpu: &FitResult, gpu: &FitResult) {
    assert_eq!(cpu.coefficients.len(), gpu.coefficients.len());
    for (a, b) in cpu.coefficients.iter().zip(&gpu.coefficients) {
        for (name, u, v) in [
            ("estimate", a.estimate, b.estimate),
            ("std_error", a.std_error, b.std_error),
        ] {
            let rel = (u - v).abs() / u.abs().max(1e-300);
            assert!(
                rel <= 1e-7,
                "{what}: {} {name}: cpu {u:e} vs gpu {v:e} (rel {rel:e})",
                a.name
            );
        }
    }
    assert!(gpu.backend.starts_with("gpu:"), "{}", gpu.backend);
}

#[test]
fn gpu_matches_cpu_on_skewed_groups_with_one_to_four_effects() {
    for precision in [Precision::Df64, Precision::F64] {
        let Some(g) = gpu(precision) else { continue };
        for n_fe in 1..=4 {
            let p = problem(10 + n_fe as u64, 3000, n_fe, n_fe % 2 == 0, false);
            let cpu = fit_with(&p.design, "cluster:cl", &CpuDemeaner);
            let gpu = fit_with(&p.design, "cluster:cl", &g);
            assert_fits_agree(&format!("{precision:?}, {n_fe} effects"), &cpu, &gpu);
        }
    }
}

#[test]
fn gpu_matches_cpu_with_interacted_effect_weights_and_hetero_vcov() {
    for precision in [Precision::Df64, Precision::F64] {
        let Some(g) = gpu(precision) else { continue };
        let p = problem(21, 4000, 2, true, true);
        let cpu = fit_with(&p.design, "hetero", &CpuDemeaner);
        let gpu = fit_with(&p.design, "hetero", &g);
        assert_fits_agree(&format!("{precision:?} interacted"), &cpu, &gpu);
    }
}

#[test]
fn gpu_batch_of_64_weight_vectors_with_zero_weights_matches_cpu() {
    let Some(g) = gpu(Precision::Df64) else { return };
    let p = problem(33, 1500, 3, false, false);
    let d = &p.design;
    let n = d.nobs();
    let mut s = Stream::new(5, 5);
    // bootstrap-like multiplicities 0..3 (zeros included: empty levels must not poison results)
    let weights: Vec<Vec<f64>> = (0..64).map(|_| (0..n).map(|_| s.below(4) as f64).collect()).collect();
    let mut columns = vec![d.y.clone()];
    columns.extend(d.x.iter().cloned());
    let fes: Vec<&FixedEffect> = d.fes.iter().collect();
    let opts = DemeanOptions {
        tol: 1e-11,
        max_iter: 100_000,
        ..Default::default()
    };
    let on_gpu = g.demean_batch(&fes, &columns, &weights, &opts).unwrap();
    let on_cpu = cpu_demean_batch(&fes, &columns, &weights, &opts).unwrap();
    assert_eq!(on_gpu.len(), 64);
    for (r, (a, b)) in on_cpu.iter().zip(&on_gpu).enumerate() {
        assert!(b.not_converged.is_empty(), "replicate {r} did not converge on the GPU");
        for (j, (ca, cb)) in a.columns.iter().zip(&b.columns).enumerate() {
            // compare only where the weight is positive: zero-weight rows are not in the sample
            let scale = ca
                .iter()
                .zip(&weights[r])
                .filter(|(_, w)| **w > 0.0)
                .map(|(v, _)| v * v)
                .sum::<f64>()
                .sqrt()
                .max(1e-300);
            let diff = ca
                .iter()
                .zip(cb)
                .zip(&weights[r])
                .filter(|(_, w)| **w > 0.0)
                .map(|((u, v), _)| (u - v) * (u - v))
                .sum::<f64>()
                .sqrt();
            assert!(
                diff <= 1e-9 * scale,
                "replicate {r}, column {j}: |cpu - gpu| = {diff:e} vs scale {scale:e}"
            );
        }
    }
    // the cross products formed on the device equal those of the CPU's demeaned columns, and
    // give the same coefficients
    let grams = g.gram_batch(&fes, &columns, &weights, &opts).unwrap();
    assert_eq!(grams.len(), 64);
    for (r, (gg, d)) in grams.iter().zip(&on_cpu).enumerate() {
        let want = fegpu::demean::weighted_gram(&d.columns, &weights[r]);
        assert_eq!(gg.len(), columns.len() * (columns.len() + 1) / 2);
        for (k, (a, b)) in gg.iter().zip(&want).enumerate() {
            let (p, q) = fegpu::demean::pair_of(k);
            let scale = (want[p * (p + 1) / 2 + p] * want[q * (q + 1) / 2 + q])
                .sqrt()
                .max(1e-300);
            assert!(
                (a - b).abs() <= 1e-9 * scale,
                "replicate {r}, pair ({p},{q}): {a} vs {b}"
            );
        }
        let b_gpu = fegpu::inference::wls_from_gram(gg, columns.len()).unwrap();
        let b_cpu = fegpu::inference::wls(&d.columns[0], &d.columns[1..], &weights[r]).unwrap();
        for (a, b) in b_gpu.iter().zip(&b_cpu) {
            assert!((a - b).abs() <= 1e-8 * (1.0 + b.abs()), "replicate {r}: β {a} vs {b}");
        }
    }
}

#[test]
fn devices_are_listed() {
    let rows = fegpu::gpu::list_adapters();
    if rows.is_empty() && std::env::var_os("CI").is_some() {
        panic!("CI must see at least one adapter (lavapipe)");
    }
    for r in &rows {
        assert!(!r.name.is_empty());
        assert!(r.max_storage_buffer_binding_size > 0);
    }
}

#[test]
fn gpu_batches_split_by_memory_budget_give_the_same_numbers() {
    let Some(mut g) = gpu(Precision::Df64) else { return };
    let p = problem(44, 800, 2, false, false);
    let d = &p.design;
    let n = d.nobs();
    let mut s = Stream::new(6, 6);
    let weights: Vec<Vec<f64>> = (0..5).map(|_| (0..n).map(|_| 0.5 + s.uniform()).collect()).collect();
    let columns = vec![d.y.clone(), d.x[0].clone()];
    let fes: Vec<&FixedEffect> = d.fes.iter().collect();
    let opts = DemeanOptions {
        tol: 1e-11,
        max_iter: 100_000,
        ..Default::default()
    };
    let whole = g.demean_batch(&fes, &columns, &weights, &opts).unwrap();
    // room for two replicates per batch: three copies of each lane plus the weights
    g.memory_budget = 2 * (n as u64 * 8) * (3 * columns.len() as u64 + 1);
    let split = g.demean_batch(&fes, &columns, &weights, &opts).unwrap();
    // a binding that holds one column: columns are demeaned in separate groups
    g.binding_limit = n as u64 * 8;
    let by_column = g.demean_batch(&fes, &columns, &weights, &opts).unwrap();
    assert_eq!(whole.len(), split.len());
    assert_eq!(whole.len(), by_column.len());
    for ((a, b), c) in whole.iter().zip(&split).zip(&by_column) {
        assert_eq!(a.columns.len(), c.columns.len());
        for ((ca, cb), cc) in a.columns.iter().zip(&b.columns).zip(&c.columns) {
            assert!(
                ca.iter().zip(cb).all(|(u, v)| u.to_bits() == v.to_bits()),
                "lanes must not depend on how the batch is split"
            );
            assert!(
                ca.iter().zip(cc).all(|(u, v)| u.to_bits() == v.to_bits()),
                "lanes must not depend on how columns are grouped"
            );
        }
    }
}

#[test]
fn philox_on_the_device_matches_the_rust_generator_bit_for_bit() {
    let Some(g) = gpu(Precision::Df64) else { return };
    let mut counters = vec![
        [0u32; 4],
        [u32::MAX; 4],
        [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
    ];
    let mut keys = vec![[0u32; 2], [u32::MAX; 2], [0xa4093822, 0x299f31d0]];
    // replicate x unit counters under several seeds, as the resampling kernels use them
    for seed in [1u64, 42, 0xDEAD_BEEF_CAFE] {
        for r in 0..16u32 {
            for u in [0u32, 1, 2, 1000, 65_535, 1 << 20] {
                counters.push([r, u, 7, 0]);
                keys.push([seed as u32, (seed >> 32) as u32]);
            }
        }
    }
    let device = fegpu::gpu::random::philox_on_device(g.context(), &counters, &keys).unwrap();
    for ((c, k), d) in counters.iter().zip(&keys).zip(&device) {
        assert_eq!(*d, fegpu::rng::philox4x32(*c, *k), "counter {c:x?} key {k:x?}");
    }
    // the published known answers, on the device too
    assert_eq!(device[0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
    assert_eq!(device[1], [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]);
    assert_eq!(device[2], [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]);
}

#[test]
fn gpu_iv_matches_cpu_iv() {
    let Some(g) = gpu(Precision::Df64) else { return };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/iv");
    let model = fegpu::formula::parse("y ~ x1 | f1 + f2 | d1 + d2 ~ z1 + z2 + z3").unwrap();
    let mut cols = model.variables();
    cols.push("c".into());
    let table = fegpu::data::load(dir.join("panel_iv.csv").to_str().unwrap(), &cols).unwrap();
    let opts = FitOptions {
        vcov: VcovSpec::parse("cluster:c").unwrap(),
        demean: DemeanOptions {
            tol: 1e-10,
            max_iter: 100_000,
            ..Default::default()
        },
        ..Default::default()
    };
    let cpu = fegpu::estimate::fit(&table, &model, &opts, &CpuDemeaner).unwrap();
    let on_gpu = fegpu::estimate::fit(&table, &model, &opts, &g).unwrap();
    assert_fits_agree("IV", &cpu, &on_gpu);
    let (a, b) = (cpu.iv.unwrap(), on_gpu.iv.unwrap());
    for (u, v) in [
        (a.kp_lm.unwrap(), b.kp_lm.unwrap()),
        (a.cragg_donald_f, b.cragg_donald_f),
        (a.hansen_j.unwrap(), b.hansen_j.unwrap()),
    ] {
        assert!((u - v).abs() <= 1e-7 * u.abs(), "cpu {u} vs gpu {v}");
    }
}

#[test]
fn replicate_decisions_on_the_device_match_the_rust_draws() {
    use fegpu::inference::replicates::{draw, stream, wild_weight, WildWeights};
    let Some(g) = gpu(Precision::Df64) else { return };
    for seed in [1u64, 99, 0x1234_5678_9ABC] {
        let mut counters = Vec::new();
        for r in 0..32u32 {
            for unit in [0u32, 1, 7, 150, 4095] {
                for (st, range) in [(stream::WILD, 150u32), (stream::PAIRS, 3000), (stream::PERMUTATION, 7)] {
                    counters.push([r, unit, st, range]);
                }
            }
        }
        let dev = fegpu::gpu::random::decisions_on_device(g.context(), &counters, seed).unwrap();
        for (c, d) in counters.iter().zip(&dev) {
            let u = draw(seed, c[2], c[0], c[1]);
            assert_eq!(d[3], u, "raw word, counter {c:?}");
            assert_eq!(
                d[2],
                ((u as u64 * c[3] as u64) >> 32) as u32,
                "multiply-shift, counter {c:?}"
            );
            if c[2] == stream::WILD {
                let rad = wild_weight(seed, WildWeights::Rademacher, c[0], c[1]);
                assert_eq!(rad > 0.0, d[0] == 1);
                let webb = wild_weight(seed, WildWeights::Webb, c[0], c[1]);
                let points = fegpu::inference::replicates::WEBB_POINTS;
                assert_eq!(webb, points[d[1] as usize]);
            }
        }
    }
}

/// The resident replicate engine (weights drawn on the device, one exact pass, device cross
/// products) against the host engine (host draws, singleton pruning, CPU demeaning): every
/// replicate's statistic agrees, for observation- and unit-level permutations, with and
/// without resampling, the pairs bootstrap, one and two effects, weights, and batches split
/// by a tiny memory budget.
#[test]
fn replicates_drawn_on_the_device_match_the_host_engine() {
    use fegpu::inference::bootstrap::{pairs_bootstrap, PairsOptions};
    use fegpu::inference::permutation::{bdiff, BdiffOptions};
    let Some(mut g) = gpu(Precision::Df64) else { return };
    let demean = DemeanOptions {
        tol: 1e-11,
        max_iter: 100_000,
        ..Default::default()
    };
    let close = |what: &str, a: &[Vec<f64>], b: &[Vec<f64>]| {
        assert_eq!(a.len(), b.len(), "{what}: coefficients");
        for (ca, cb) in a.iter().zip(b) {
            assert_eq!(ca.len(), cb.len(), "{what}: replicates used");
            let scale = cb.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for (r, (x, y)) in ca.iter().zip(cb).enumerate() {
                assert!((x - y).abs() <= 1e-7 * scale, "{what}: replicate {r}: gpu {x} cpu {y}");
            }
        }
    };
    for (n_fe, weights, budget) in [(2, false, 2u64 << 30), (2, true, 1 << 20), (1, true, 2 << 30)] {
        g.memory_budget = budget;
        let d = problem(11 + n_fe as u64, 3000, n_fe, weights, false).design;
        let group: Vec<f64> = d.fes[0].ids.iter().map(|&l| (l % 3 == 0) as u8 as f64).collect();
        let unit_group: Vec<f64> = d.clusters[0].ids.iter().map(|&c| (c % 2) as f64).collect();
        let units = (d.clusters[0].ids.as_slice(), d.clusters[0].levels);
        for (label, grp, unit, bsample) in [
            ("obs", &group, None, false),
            ("obs bsample", &group, None, true),
            ("cluster units", &unit_group, Some(units), false),
        ] {
            let o = BdiffOptions {
                reps: 40,
                seed: 7,
                bsample,
                demean,
                memory_budget: 512 << 20,
                progress: false,
            };
            let gpu_r = bdiff(&d, grp, unit, &o, &g).unwrap();
            let cpu_r = bdiff(&d, grp, unit, &o, &CpuDemeaner).unwrap();
            let what = format!("bdiff {label}, {n_fe} effects, weights {weights}");
            assert!(
                !gpu_r.enumerated && gpu_r.reps_used > 30,
                "{what}: {} used",
                gpu_r.reps_used
            );
            close(&what, &gpu_r.differences, &cpu_r.differences);
        }
        let o = PairsOptions {
            reps: 40,
            seed: 3,
            level: 0.95,
            demean,
            memory_budget: 512 << 20,
            progress: false,
        };
        let gpu_p = pairs_bootstrap(&d, &o, &g).unwrap();
        let cpu_p = pairs_bootstrap(&d, &o, &CpuDemeaner).unwrap();
        close(
            &format!("pairs, {n_fe} effects, weights {weights}"),
            &gpu_p.draws,
            &cpu_p.draws,
        );
    }
}

/// Ties at the permutation threshold: with keys cut to their top 8 bits every key is shared by
/// many units, so the device's radix select must take the tied units in unit order, as the
/// host's sort of (key, unit) does. The device-drawn weights must equal those the host builds.
#[test]
fn device_permutations_break_ties_at_the_threshold_in_unit_order() {
    use fegpu::demean::resident::{DeviceReplicates, Draws};
    use fegpu::inference::replicates::{draw, stream};
    let Some(g) = gpu(Precision::Df64) else { return };
    let d = problem(5, 3000, 2, true, false).design;
    let project: Vec<&FixedEffect> = d.fes.iter().collect();
    let w = d.weights.clone().unwrap();
    let mut cols: Vec<&[f64]> = vec![&d.y];
    cols.extend(d.x.iter().map(|c| c.as_slice()));
    let engine = DeviceReplicates::new(&g, &project, &cols, &w)
        .unwrap()
        .expect("resident structure");
    let (seed, n, first, mask) = (42u64, d.y.len(), 1000usize, 0xFF00_0000u32);
    let units: Vec<u32> = (0..n as u32).collect();
    let mut ties = 0;
    let mut host = Vec::new();
    for r in 0..6u32 {
        let mut order: Vec<(u32, u32)> = units
            .iter()
            .map(|&u| (draw(seed, stream::PERMUTATION, r, u) & mask, u))
            .collect();
        order.sort();
        ties += (order[first - 1].0 == order[first].0) as usize;
        let mut member = vec![false; n];
        order[..first].iter().for_each(|&(_, u)| member[u as usize] = true);
        host.push(
            w.iter()
                .zip(&member)
                .map(|(wi, &m)| if m { *wi } else { 0.0 })
                .collect::<Vec<f64>>(),
        );
        host.push(
            w.iter()
                .zip(&member)
                .map(|(wi, &m)| if m { 0.0 } else { *wi })
                .collect::<Vec<f64>>(),
        );
    }
    assert!(ties >= 5, "the mask must put ties at the threshold ({ties} of 6)");
    let want = engine.grams(&g, &Draws::Given(&host)).unwrap();
    let perm = Draws::Permutation {
        seed,
        units: &units,
        n_units: n,
        first,
        bsample: false,
        replicates: 0..6,
        key_mask: mask,
    };
    let got = engine.grams(&g, &perm).unwrap();
    for (v, (a, b)) in got.iter().zip(&want).enumerate() {
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x - y).abs() <= 1e-12 * y.abs().max(1.0),
                "weight vector {v}: device {x}, host {y}"
            );
        }
    }
}

/// A state–year panel (48 states × 17 years, 816 rows, four regressors): the shape on which
/// `bdiff --reps 1000 --backend gpu` asked lavapipe for a 262,144,000-byte key histogram
/// (65,536 buckets × 4 bytes per replicate in one batch) and stopped. Batches are now sized
/// from every buffer against the adapter's binding limit.
fn state_year_panel() -> Design {
    let mut s = Stream::new(816, 3);
    let (states, years) = (48u32, 17u32);
    let n = (states * years) as usize;
    let state: Vec<u32> = (0..n as u32).map(|i| i / years).collect();
    let year: Vec<u32> = (0..n as u32).map(|i| i % years).collect();
    let x: Vec<Vec<f64>> = (0..4)
        .map(|j| (0..n).map(|i| s.normal() + 0.2 * (state[i] % (3 + j)) as f64).collect())
        .collect();
    let y: Vec<f64> = (0..n)
        .map(|i| 0.5 * x[0][i] - x[1][i] + 0.3 * x[2][i] + 0.1 * x[3][i] + 0.05 * year[i] as f64 + s.normal())
        .collect();
    let mut d = problem(1, n, 1, false, false).design;
    d.y = y;
    d.x_names = (1..=4).map(|j| format!("x{j}")).collect();
    d.x = x;
    d.fes = vec![fe("state", state.clone()), fe("year", year)];
    d.clusters[0] = fegpu::data::prepare::ClusterVar {
        name: "state".into(),
        ids: state,
        levels: states as usize,
    };
    d
}

#[test]
fn a_thousand_replicates_fit_the_adapters_binding_limit() {
    use fegpu::inference::bootstrap::{pairs_bootstrap, PairsOptions};
    use fegpu::inference::permutation::{bdiff, BdiffOptions};
    let Some(mut g) = gpu(Precision::Df64) else { return };
    let d = state_year_panel();
    let group: Vec<f64> = (0..d.nobs()).map(|i| (d.fes[0].ids[i] % 2) as f64).collect();
    let demean = DemeanOptions {
        tol: 1e-11,
        max_iter: 100_000,
        ..Default::default()
    };
    let bd = BdiffOptions {
        reps: 1000,
        seed: 5,
        bsample: false,
        demean,
        memory_budget: 512 << 20,
        progress: false,
    };
    let pairs = PairsOptions {
        reps: 1000,
        seed: 5,
        level: 0.95,
        demean,
        memory_budget: 512 << 20,
        progress: false,
    };
    let cpu_b = bdiff(&d, &group, None, &bd, &CpuDemeaner).unwrap();
    let cpu_p = pairs_bootstrap(&d, &pairs, &CpuDemeaner).unwrap();
    // the adapter's own limit (lavapipe: 128 MiB), then one that splits every buffer further
    for limit in [g.binding_limit, 3 << 20] {
        g.binding_limit = limit;
        let b = bdiff(&d, &group, None, &bd, &g)
            .unwrap_or_else(|e| panic!("bdiff, 1000 replicates, binding limit {limit}: {e}"));
        assert_eq!(b.reps_used, 1000, "binding limit {limit}");
        let p = pairs_bootstrap(&d, &pairs, &g)
            .unwrap_or_else(|e| panic!("pairs, 1000 replicates, binding limit {limit}: {e}"));
        for (what, got, want) in [
            ("bdiff", &b.differences, &cpu_b.differences),
            ("pairs", &p.draws, &cpu_p.draws),
        ] {
            for (c, (a, e)) in got.iter().zip(want.iter()).enumerate() {
                assert_eq!(a.len(), e.len(), "{what}: replicates of coefficient {c}");
                let scale = e.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                for (r, (x, y)) in a.iter().zip(e).enumerate() {
                    assert!(
                        (x - y).abs() <= 1e-7 * scale,
                        "{what}, binding limit {limit}: replicate {r} of coefficient {c}: gpu {x} cpu {y}"
                    );
                }
            }
        }
        for (c, (a, e)) in b.coefficients.iter().zip(&cpu_b.coefficients).enumerate() {
            assert_eq!(
                (a.p, a.p_two_sided),
                (e.p, e.p_two_sided),
                "bdiff p-values of coefficient {c}"
            );
        }
    }
}
