//! `fegpu bdiff --family poisson|logit`: the observed group estimates are the groups' own
//! GLM fits (`fit --family … --subset`), each replicate's difference is the difference of the
//! two groups' fits under the linear engine's permuted assignment, and the command runs.

mod common;
mod ppml_common;

use fegpu::data::prepare::{prepare, PrepareOptions};
use fegpu::demean::CpuDemeaner;
use fegpu::estimate::glm::{fit_glm, Family};
use fegpu::estimate::FitOptions;
use fegpu::inference::glm_bdiff::glm_bdiff_draws;
use fegpu::inference::permutation::BdiffOptions;
use fegpu::inference::replicates::permutation_first_group;

const F: &str = "y ~ x1 + x2 | year";

#[test]
fn observed_estimates_are_the_groups_own_fits() {
    let dir = common::tmpdir("glm-bdiff", "cli");
    let p = ppml_common::poisson_panel(&dir);
    let data = p.to_str().unwrap();
    let json = |args: &[&str]| -> serde_json::Value { serde_json::from_slice(&common::ok(args)).unwrap() };
    let b = json(&[
        "bdiff", data, F, "--group", "g", "--unit", "firm", "--family", "poisson", "--reps", "40", "--format", "json",
    ]);
    let row = |name: &str| {
        b["bdiff"]["coefficients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()
            .clone()
    };
    for (g, key) in [("1", "estimate_group1"), ("0", "estimate_group0")] {
        let sub = format!("g == {g}");
        let f = json(&[
            "fit", data, F, "--family", "poisson", "--subset", &sub, "--format", "json",
        ]);
        for c in f["models"][0]["coefficients"].as_array().unwrap() {
            let ours = row(c["name"].as_str().unwrap())[key].as_f64().unwrap();
            let theirs = c["estimate"].as_f64().unwrap();
            assert!(
                (ours - theirs).abs() <= 1e-7 * theirs.abs(),
                "group {g} {}: {ours} vs {theirs}",
                c["name"]
            );
        }
    }
    let p1 = row("x1")["p"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p1));
}

#[test]
fn each_replicate_is_the_difference_of_the_permuted_groups_fits() {
    let dir = common::tmpdir("glm-bdiff", "lib");
    let path = ppml_common::poisson_panel(&dir);
    let model = fegpu::formula::parse(F).unwrap();
    let fit = FitOptions {
        family: Family::Poisson,
        glm_tol: 1e-12,
        demean: fegpu::demean::DemeanOptions {
            tol: 1e-12,
            ..Default::default()
        },
        ..Default::default()
    };
    let popts = PrepareOptions {
        clusters: vec!["firm".into()],
        extra: vec!["g".into()],
        ..fegpu::estimate::fit::prepare_options(&fit)
    };
    let table = fegpu::data::load(path.to_str().unwrap(), &fegpu::data::used_columns(&[&model], &popts)).unwrap();
    let design = prepare(&table, &model, &popts).unwrap();
    let units = &design.clusters[0];
    let opts = BdiffOptions {
        reps: 5,
        seed: 3,
        bsample: false,
        demean: fit.demean,
        memory_budget: 1 << 20,
        progress: false,
    };
    let d = glm_bdiff_draws(
        &design,
        &design.extra[0],
        Some((&units.ids, units.levels)),
        &opts,
        &fit,
        None,
        &CpuDemeaner,
    )
    .unwrap();
    assert!(!d.observed.enumerated);
    let n1 = d.observed.units_group1;
    for (r, diff) in d.differences.iter().enumerate() {
        let first = permutation_first_group(opts.seed, r as u32, units.levels, n1);
        let fit_group = |g1: bool| {
            let keep: Vec<bool> = units.ids.iter().map(|&u| first[u as usize] == g1).collect();
            let mut g = design.clone();
            g.retain(&keep);
            fit_glm(g, F, &fit, &CpuDemeaner).unwrap()
        };
        let (a, b) = (fit_group(true), fit_group(false));
        let diff = diff.as_ref().expect("every replicate estimates");
        for (k, v) in diff.iter().enumerate() {
            let want = a.coefficients[k].estimate - b.coefficients[k].estimate;
            assert!(
                (v - want).abs() <= 1e-8 * want.abs().max(1e-3),
                "replicate {r} {k}: {v} vs {want}"
            );
        }
    }
}
