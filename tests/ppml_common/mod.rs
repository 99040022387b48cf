#![allow(dead_code)]
//! What the fixest golden tests of Poisson and logit share (tests/ppml_golden.rs on the CPU,
//! tests/glm_gpu.rs on the GPU): one case's fit under fixest's conventions, and its
//! differences from fixest.

use std::path::Path;

use fegpu::data::load;
use fegpu::demean::DemeanOptions;
use fegpu::estimate::glm::Family;
use fegpu::estimate::{fit, FitOptions, FitResult, Ssc, VcovSpec};
use fegpu::formula;
use serde_json::Value;

/// 40 firms × 8 years: counts with zeros `y`, a binary `yb`, regressors `x1`, `x2`, and a group
/// `g` constant within firm (odd firms).
pub fn poisson_panel(dir: &std::path::Path) -> std::path::PathBuf {
    let mut t = String::from("firm,year,x1,x2,y,yb,g\n");
    let mut s = 7u64;
    let mut u = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    for f in 0..40 {
        let a = u() - 0.5;
        for y in 0..8 {
            let (x1, x2) = (u() * 2.0 - 1.0, u());
            let mu = (0.5 * x1 - 0.3 * x2 + a + 0.05 * y as f64).exp();
            // a Poisson draw by inversion
            let (mut k, mut p, v) = (0u32, (-mu).exp(), u());
            let mut c = p;
            while v > c && k < 50 {
                k += 1;
                p *= mu / k as f64;
                c += p;
            }
            t.push_str(&format!("{f},{y},{x1},{x2},{k},{},{}\n", (k > 1) as u8, f % 2));
        }
    }
    let p = dir.join("boot.csv");
    std::fs::write(&p, t).unwrap();
    p
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-300)
}

pub fn fixtures() -> (std::path::PathBuf, Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ppml");
    let v = serde_json::from_str(&std::fs::read_to_string(dir.join("fixest.json")).unwrap()).unwrap();
    (dir, v)
}

/// The fit of one fixture case (fixest's conventions: --ssc fixest, singletons kept).
pub fn fit_case(dir: &Path, case: &Value, demeaner: &dyn fegpu::demean::Demeaner) -> FitResult {
    fit_case_with(dir, case, demeaner, Ssc::Fixest)
}

/// [`fit_case`] under another small-sample convention.
pub fn fit_case_with(dir: &Path, case: &Value, demeaner: &dyn fegpu::demean::Demeaner, ssc: Ssc) -> FitResult {
    let s = |k: &str| case[k].as_str().map(String::from);
    let model = formula::parse(case["formula"].as_str().unwrap()).unwrap();
    let vcov = VcovSpec::parse(case["vcov"].as_str().unwrap()).unwrap();
    let opts = FitOptions {
        vcov,
        weights: s("weights"),
        ssc,
        keep_singletons: true,
        family: Family::parse(case["family"].as_str().unwrap()).unwrap(),
        offset: s("offset"),
        exposure: s("exposure"),
        glm_tol: 1e-12,
        demean: DemeanOptions {
            tol: 1e-13,
            max_iter: 100_000,
            ..Default::default()
        },
        ..Default::default()
    };
    let needs = fegpu::estimate::fit::prepare_options(&opts);
    let cols = fegpu::data::used_columns(&[&model], &needs);
    let table = load(dir.join(case["data"].as_str().unwrap()).to_str().unwrap(), &cols).unwrap();
    fit(&table, &model, &opts, demeaner).unwrap_or_else(|e| panic!("{}: {e}", case["name"]))
}

/// Differences from fixest beyond 1e-7 (coefficients, deviance, log-likelihood) and 1e-5
/// (standard errors, relative), one line each.
pub fn differences(case: &Value, r: &FitResult) -> Vec<String> {
    let name = case["name"].as_str().unwrap();
    let mut out = Vec::new();
    let check = |out: &mut Vec<String>, what: String, ours: f64, theirs: f64, rel: f64| {
        if !close(ours, theirs, rel) {
            out.push(format!("{name}: {what}: fegpu {ours:.12e} vs fixest {theirs:.12e}"));
        }
    };
    check(
        &mut out,
        "nobs".into(),
        r.nobs as f64,
        case["nobs"].as_f64().unwrap(),
        0.0,
    );
    let coef = case["coef"].as_object().unwrap();
    if r.coefficients.len() != coef.len() {
        out.push(format!(
            "{name}: {} coefficients vs fixest's {}",
            r.coefficients.len(),
            coef.len()
        ));
        return out;
    }
    for c in &r.coefficients {
        let Some(theirs) = coef.get(&c.name) else {
            out.push(format!("{name}: coefficient `{}` is not fixest's", c.name));
            continue;
        };
        check(
            &mut out,
            format!("coef {}", c.name),
            c.estimate,
            theirs.as_f64().unwrap(),
            1e-7,
        );
        check(
            &mut out,
            format!("se {}", c.name),
            c.std_error,
            case["se"][&c.name].as_f64().unwrap(),
            1e-5,
        );
        let p = case["pvalue"][&c.name].as_f64().unwrap();
        if (c.p - p).abs() > 1e-4 * p.max(1e-10) && (c.p - p).abs() > 1e-12 {
            out.push(format!("{name}: p {}: {} vs {p}", c.name, c.p));
        }
    }
    let g = r.glm.as_ref().expect("GLM statistics");
    check(
        &mut out,
        "deviance".into(),
        g.deviance,
        case["deviance"].as_f64().unwrap(),
        1e-7,
    );
    // fixest's weighted log-likelihood leaves ln Γ(y + 1) unweighted, and its null model
    // ignores the offset: those are compared where the definitions agree
    let plain = case["weights"].is_null() && case["offset"].is_null() && case["exposure"].is_null();
    if plain {
        check(
            &mut out,
            "loglik".into(),
            g.loglik,
            case["loglik"].as_f64().unwrap(),
            1e-7,
        );
        check(
            &mut out,
            "pseudo_r2".into(),
            g.pseudo_r2,
            case["pseudo_r2"].as_f64().unwrap(),
            1e-7,
        );
    }
    out
}
