//! `fegpu boot --kind pairs --family poisson|logit`: each replicate equals a fit on the data
//! with every drawn cluster's rows copied as often as it was drawn (the definition of the pairs
//! bootstrap), with the same draws as the linear engine; and the command runs end to end.

mod common;
mod ppml_common;

use ppml_common::poisson_panel as csv;

use fegpu::data::prepare::{prepare, ClusterVar, Design, PrepareOptions};
use fegpu::demean::CpuDemeaner;
use fegpu::estimate::glm::{fit_glm, Family};
use fegpu::estimate::FitOptions;
use fegpu::fe::FixedEffect;
use fegpu::inference::bootstrap::PairsOptions;
use fegpu::inference::glm_pairs::glm_pairs_draws;
use fegpu::inference::replicates::pairs_multiplicities;

/// `d` with row i copied m[cluster(i)] times, levels renumbered.
fn copied(d: &Design, m: &[u32]) -> Design {
    let cl = &d.clusters[0];
    let rows: Vec<usize> = (0..d.nobs())
        .flat_map(|i| std::iter::repeat_n(i, m[cl.ids[i] as usize] as usize))
        .collect();
    let pick = |v: &[f64]| rows.iter().map(|&i| v[i]).collect::<Vec<f64>>();
    let mut out = d.clone();
    out.y = pick(&d.y);
    out.x = d.x.iter().map(|c| pick(c)).collect();
    out.weights = None;
    out.fes = d
        .fes
        .iter()
        .map(|f| FixedEffect::from_codes(&f.name, &rows.iter().map(|&i| f.ids[i]).collect::<Vec<_>>()))
        .collect();
    let ids: Vec<u32> = rows.iter().map(|&i| cl.ids[i]).collect();
    let c = FixedEffect::from_codes("firm", &ids);
    out.clusters = vec![ClusterVar {
        name: cl.name.clone(),
        ids: c.ids,
        levels: c.levels,
    }];
    out
}

#[test]
fn each_replicate_is_the_fit_on_the_copied_clusters() {
    let dir = common::tmpdir("glm-boot", "lib");
    let path = csv(&dir);
    for (family, f) in [
        (Family::Poisson, "y ~ x1 + x2 | firm + year"),
        (Family::Logit, "yb ~ x1 + x2 | year"),
    ] {
        let model = fegpu::formula::parse(f).unwrap();
        let fit = FitOptions {
            family,
            glm_tol: 1e-12,
            ..Default::default()
        };
        let popts = PrepareOptions {
            clusters: vec!["firm".into()],
            ..fegpu::estimate::fit::prepare_options(&fit)
        };
        let table = fegpu::data::load(path.to_str().unwrap(), &fegpu::data::used_columns(&[&model], &popts)).unwrap();
        let design = prepare(&table, &model, &popts).unwrap();
        let opts = PairsOptions {
            reps: 6,
            seed: 11,
            level: 0.95,
            demean: fegpu::demean::DemeanOptions {
                tol: 1e-12,
                ..Default::default()
            },
            memory_budget: 1 << 20,
            progress: false,
        };
        let draws = glm_pairs_draws(&design, &opts, &fit, None, &CpuDemeaner).unwrap();
        let g = design.clusters[0].levels;
        let mut compared = 0;
        for (r, est) in draws.estimates.iter().enumerate() {
            let m = pairs_multiplicities(opts.seed, r as u32, g);
            let fit_opts = FitOptions {
                demean: opts.demean,
                ..fit.clone()
            };
            let direct = fit_glm(copied(&design, &m), f, &fit_opts, &CpuDemeaner);
            let (Some(b), Ok(direct)) = (est, direct) else {
                continue;
            };
            for (a, c) in b.iter().zip(&direct.coefficients) {
                assert!(
                    (a - c.estimate).abs() <= 1e-8 * c.estimate.abs().max(1e-3),
                    "{family:?} replicate {r}: {a} vs {}",
                    c.estimate
                );
            }
            compared += 1;
        }
        assert!(compared >= 4, "{family:?}: {compared} replicates compared");
    }
}

#[test]
fn the_command_reports_bootstrap_errors_and_refuses_the_wild_kind() {
    let dir = common::tmpdir("glm-boot", "cli");
    let p = csv(&dir);
    let data = p.to_str().unwrap();
    let out = common::ok(&[
        "boot",
        data,
        "y ~ x1 + x2 | firm + year",
        "--cluster",
        "firm",
        "--kind",
        "pairs",
        "--family",
        "poisson",
        "--reps",
        "30",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let text = v.to_string();
    assert!(text.contains("x1") && text.contains("std_error"), "{text}");
    let e = common::fegpu(&[
        "boot",
        data,
        "y ~ x1 | firm",
        "--cluster",
        "firm",
        "--family",
        "poisson",
    ]);
    assert!(!e.status.success());
    assert!(String::from_utf8_lossy(&e.stderr).contains("--kind pairs"));
}
