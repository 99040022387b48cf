//! Results → table cells. Coefficients carry significance stars (* p<0.10, ** p<0.05,
//! *** p<0.01, the convention of the reference study and of fixest's `etable`) and their
//! standard error or t statistic in parentheses; then one row per fixed effect (Yes/No), N, adj
//! R² and within R²; notes state the variance estimator and the small-sample convention.

use super::Stat;
use crate::estimate::FitResult;

/// A table as cells: header, body sections (separated by rules), and notes.
#[derive(Debug, Clone)]
pub struct Grid {
    pub header: Vec<String>,
    pub sections: Vec<Vec<Vec<String>>>,
    pub notes: Vec<String>,
}

/// Significance stars for a p-value.
pub fn stars(p: f64) -> &'static str {
    if p < 0.01 {
        "***"
    } else if p < 0.05 {
        "**"
    } else if p < 0.1 {
        "*"
    } else {
        ""
    }
}

/// Four significant digits, at least three decimals (0.0012 → "0.001200", 1.23456 → "1.235");
/// in scientific notation where eight decimals would show fewer than four significant digits
/// or the number is 10⁹ or more in magnitude (6.5e-13 → "6.500e-13", not "0.00000000").
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() { "NA".into() } else { format!("{v}") };
    }
    if v == 0.0 {
        return "0.000".into();
    }
    let mag = v.abs().log10().floor() as i32;
    let decimals = (3 - mag).clamp(3, 8) as usize;
    fmt_fixed(v, decimals, 4)
}

/// From this magnitude on, numbers are printed in scientific notation ([`fmt_fixed`]).
const SCIENTIFIC_FROM: f64 = 1e9;

/// Scientific notation with four significant digits and a signed exponent of at least two
/// digits, as R and fixest print it: 6.5e-13 → "6.500e-13", -12345678901.0 → "-1.235e+10".
pub fn fmt_sci(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let s = format!("{v:.3e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

/// `v` with `decimals` decimals, unless that shows fewer than `min_sig` significant digits of a
/// non-zero number (0.00000000 for 6.5e-13) or `v` is 10⁹ or more in magnitude: then
/// [`fmt_sci`]. Zero and non-finite values print as fixed notation does.
pub fn fmt_fixed(v: f64, decimals: usize, min_sig: usize) -> String {
    let fixed = format!("{v:.decimals$}");
    if !v.is_finite() || v == 0.0 {
        return fixed;
    }
    let significant = fixed
        .chars()
        .filter(char::is_ascii_digit)
        .skip_while(|&c| c == '0')
        .count();
    if significant < min_sig || v.abs() >= SCIENTIFIC_FROM {
        fmt_sci(v)
    } else {
        fixed
    }
}

/// A GLM's rows (family, pseudo R², log-likelihood, deviance, separated observations); empty
/// cells for linear models beside it.
fn glm_rows(results: &[FitResult]) -> Vec<Vec<String>> {
    let row = |label: &str, f: &dyn Fn(&crate::estimate::glm::GlmStats) -> String| {
        let mut r = vec![label.to_string()];
        r.extend(results.iter().map(|m| m.glm.as_ref().map(f).unwrap_or_default()));
        r
    };
    let mut family = vec!["Family".to_string()];
    family.extend(results.iter().map(|m| m.family.name().to_string()));
    vec![
        family,
        row("Pseudo R2", &|g| fmt_r2(g.pseudo_r2)),
        row("Log-likelihood", &|g| fmt_num(g.loglik)),
        row("Deviance", &|g| fmt_num(g.deviance)),
        row("Separated obs.", &|g| g.separated.to_string()),
    ]
}

fn fmt_r2(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "NA".into()
    }
}

impl Grid {
    pub fn build(results: &[FitResult], stat: Stat) -> Grid {
        let m = results.len();
        let mut header = vec![String::new()];
        header.extend((1..=m).map(|i| format!("({i})")));
        let depvars = {
            let mut row = vec!["Dependent variable".to_string()];
            row.extend(results.iter().map(|r| r.depvar.clone()));
            row
        };

        // Coefficient names in order of first appearance across models.
        let mut names: Vec<String> = Vec::new();
        for r in results {
            for c in &r.coefficients {
                if !names.contains(&c.name) {
                    names.push(c.name.clone());
                }
            }
        }
        let mut coef_rows = Vec::new();
        for name in &names {
            let mut est = vec![name.clone()];
            let mut par = vec![String::new()];
            for r in results {
                match r.coefficients.iter().find(|c| &c.name == name) {
                    Some(c) => {
                        est.push(format!("{}{}", fmt_num(c.estimate), stars(c.p)));
                        let s = match stat {
                            Stat::Se => c.std_error,
                            Stat::T => c.t,
                        };
                        par.push(format!("({})", fmt_num(s)));
                    }
                    None => {
                        est.push(String::new());
                        par.push(String::new());
                    }
                }
            }
            coef_rows.push(est);
            coef_rows.push(par);
        }

        let mut fe_names: Vec<String> = Vec::new();
        for r in results {
            for f in &r.fixed_effects {
                if !fe_names.contains(&f.name) {
                    fe_names.push(f.name.clone());
                }
            }
        }
        let fe_rows: Vec<Vec<String>> = fe_names
            .iter()
            .map(|f| {
                let mut row = vec![format!("{f} FE")];
                row.extend(results.iter().map(|r| {
                    if r.fixed_effects.iter().any(|x| &x.name == f) {
                        "Yes".into()
                    } else {
                        "No".into()
                    }
                }));
                row
            })
            .collect();

        let stat_row = |label: &str, f: &dyn Fn(&FitResult) -> String| {
            let mut row = vec![label.to_string()];
            row.extend(results.iter().map(f));
            row
        };
        let mut fit_rows = vec![stat_row("N", &|r| r.nobs.to_string())];
        // R² rows only where a linear model has them (a GLM reports its pseudo R² below)
        if results.iter().any(|r| r.glm.is_none()) {
            fit_rows.extend([
                stat_row("R2", &|r| fmt_r2(r.r2)),
                stat_row("Adj. R2", &|r| fmt_r2(r.adj_r2)),
                stat_row("Within R2", &|r| r.within_r2.map(fmt_r2).unwrap_or_default()),
            ]);
        }

        let mut head = vec![depvars];
        if let Some(var) = results.iter().find_map(|r| r.sample.as_ref().map(|s| s.var.clone())) {
            head.push(stat_row(&format!("Sample ({var})"), &|r| {
                r.sample.as_ref().map(|s| s.shown()).unwrap_or_default()
            }));
        }
        let mut sections = vec![head, coef_rows];
        if !fe_rows.is_empty() {
            sections.push(fe_rows);
        }
        sections.push(fit_rows);
        if results.iter().any(|r| r.glm.is_some()) {
            sections.push(glm_rows(results));
        }
        if results.iter().any(|r| r.iv.is_some()) {
            sections.push(iv_rows(results));
        }

        let mut notes = Vec::new();
        let what = match stat {
            Stat::Se => "Standard errors",
            Stat::T => "t statistics",
        };
        let mut vcovs: Vec<String> = Vec::new();
        for r in results {
            let d = describe_vcov(r);
            if !vcovs.contains(&d) {
                vcovs.push(d);
            }
        }
        notes.push(format!("{what} in parentheses; {}.", vcovs.join("; ")));
        // a GLM under the default convention follows ppmlhdfe (crate::estimate::glm)
        let mut sscs: Vec<&str> = results
            .iter()
            .map(|r| match (r.glm.is_some(), r.ssc) {
                (true, crate::estimate::Ssc::Reghdfe) => "ppmlhdfe (--ssc reghdfe)",
                _ => r.ssc.name(),
            })
            .collect();
        sscs.dedup();
        notes.push(format!(
            "Small-sample convention: {}. * p<0.10, ** p<0.05, *** p<0.01.",
            sscs.join(", ")
        ));
        // a model whose demeaning did not converge says so in the table itself, whatever the format
        for (j, r) in results.iter().enumerate() {
            for n in r.notes.iter().filter(|n| n.starts_with("WARNING")) {
                notes.push(if results.len() > 1 {
                    format!("({}) {n}", j + 1)
                } else {
                    n.clone()
                });
            }
        }
        Grid {
            header,
            sections,
            notes,
        }
    }
}

fn with_p(v: Option<f64>, p: Option<f64>) -> String {
    match (v, p) {
        (Some(v), Some(p)) => format!("{} [{}]", fmt_num(v), fmt_p(p)),
        (Some(v), None) => fmt_num(v),
        _ => String::new(),
    }
}

fn fmt_p(p: f64) -> String {
    if p < 0.0001 {
        "<0.0001".into()
    } else {
        format!("{p:.4}")
    }
}

/// Weak-identification and overidentification rows of IV models (p-values in brackets).
fn iv_rows(results: &[FitResult]) -> Vec<Vec<String>> {
    let row = |label: &str, f: &dyn Fn(&crate::estimate::iv::IvDiagnostics) -> String| {
        let mut r = vec![label.to_string()];
        r.extend(results.iter().map(|m| m.iv.as_ref().map(f).unwrap_or_default()));
        r
    };
    let cv = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_default();
    let mut rows = vec![
        row("KP rk LM [p]", &|iv| with_p(iv.kp_lm, iv.kp_lm_p)),
        row("KP rk Wald F", &|iv| iv.kp_wald_f.map(fmt_num).unwrap_or_default()),
        row("CD Wald F", &|iv| fmt_num(iv.cragg_donald_f)),
        row("Stock-Yogo 10% size", &|iv| cv(iv.stock_yogo.size_10)),
        row("Stock-Yogo 15% size", &|iv| cv(iv.stock_yogo.size_15)),
        row("Stock-Yogo 20% size", &|iv| cv(iv.stock_yogo.size_20)),
        row("Stock-Yogo 25% size", &|iv| cv(iv.stock_yogo.size_25)),
    ];
    if results
        .iter()
        .any(|r| r.iv.as_ref().is_some_and(|iv| iv.stock_yogo.bias_05.is_some()))
    {
        rows.push(row("Stock-Yogo 5% rel. bias", &|iv| cv(iv.stock_yogo.bias_05)));
        rows.push(row("Stock-Yogo 10% rel. bias", &|iv| cv(iv.stock_yogo.bias_10)));
        rows.push(row("Stock-Yogo 20% rel. bias", &|iv| cv(iv.stock_yogo.bias_20)));
        rows.push(row("Stock-Yogo 30% rel. bias", &|iv| cv(iv.stock_yogo.bias_30)));
    }
    rows.push(row("Hansen J / Sargan [p]", &|iv| with_p(iv.hansen_j, iv.hansen_j_p)));
    rows.push(row("Anderson-Rubin F [p]", &|iv| {
        with_p(Some(iv.anderson_rubin.f), Some(iv.anderson_rubin.f_p))
    }));
    let mut endog: Vec<String> = Vec::new();
    for r in results {
        for e in r.iv.iter().flat_map(|iv| iv.endogenous.iter()) {
            if !endog.contains(e) {
                endog.push(e.clone());
            }
        }
    }
    // The first-stage block: coefficients on the excluded instruments, partial R², F.
    let mut instruments: Vec<String> = Vec::new();
    for r in results {
        for z in r.iv.iter().flat_map(|iv| iv.instruments.iter()) {
            if !instruments.contains(z) {
                instruments.push(z.clone());
            }
        }
    }
    for e in &endog {
        let stage =
            |iv: &crate::estimate::iv::IvDiagnostics| iv.first_stage.iter().find(|f| &f.endogenous == e).cloned();
        for z in &instruments {
            let coef = |iv: &crate::estimate::iv::IvDiagnostics| {
                stage(iv).and_then(|f| f.coefficients.iter().find(|c| &c.name == z).cloned())
            };
            rows.push(row(&format!("First stage {e}: {z}"), &|iv| {
                coef(iv)
                    .map(|c| format!("{}{}", fmt_num(c.estimate), stars(c.p)))
                    .unwrap_or_default()
            }));
            rows.push(row("", &|iv| {
                coef(iv)
                    .map(|c| format!("({})", fmt_num(c.std_error)))
                    .unwrap_or_default()
            }));
        }
        rows.push(row(&format!("First stage {e}: partial R2"), &|iv| {
            stage(iv).map(|f| fmt_r2(f.partial_r2)).unwrap_or_default()
        }));
        rows.push(row(&format!("First stage {e}: F [p]"), &|iv| {
            stage(iv).map(|f| with_p(Some(f.f), Some(f.f_p))).unwrap_or_default()
        }));
    }
    rows
}

fn describe_vcov(r: &FitResult) -> String {
    if r.clusters.is_empty() {
        match r.vcov.as_str() {
            "hetero" => "heteroskedasticity-robust (HC1)".into(),
            _ => "iid".into(),
        }
    } else {
        let parts: Vec<String> = r
            .clusters
            .iter()
            .map(|c| format!("{} ({} clusters)", c.name, c.clusters))
            .collect();
        format!("clustered by {}", parts.join(" and "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_numbers_keep_their_fixed_notation() {
        for (v, want) in [
            (1.23456, "1.235"),
            (0.0012, "0.001200"),
            (-0.5, "-0.5000"),
            (12.5, "12.500"),
            (0.0, "0.000"),
            (123456.789, "123456.789"),
            (1.5e-5, "0.00001500"),
            (9.99996e-6, "0.00001000"),
            (-2.5e-4, "-0.0002500"),
            (999_999_999.0, "999999999.000"),
        ] {
            assert_eq!(fmt_num(v), want, "{v:e}");
        }
        assert_eq!(fmt_num(f64::NAN), "NA");
        assert_eq!(fmt_fixed(0.249208, 6, 3), "0.249208");
        assert_eq!(fmt_fixed(0.0003, 6, 3), "0.000300");
        assert_eq!(fmt_fixed(0.0, 4, 1), "0.0000");
        assert_eq!(fmt_fixed(0.0004, 4, 1), "0.0004");
        assert_eq!(fmt_fixed(f64::NAN, 6, 3), "NaN");
    }

    /// Issue 25: numbers with no (or too few) significant digits in fixed notation, and very
    /// large ones, are printed in scientific notation.
    #[test]
    fn tiny_and_huge_numbers_switch_to_scientific_notation() {
        for (v, want) in [
            (6.5e-13, "6.500e-13"),
            (-6.5e-13, "-6.500e-13"),
            (1.5e-6, "1.500e-06"),
            (9.99996e-7, "1.000e-06"),
            (1e-300, "1.000e-300"),
            (1e9, "1.000e+09"),
            (-1.23456e15, "-1.235e+15"),
            (6.5e11, "6.500e+11"),
        ] {
            assert_eq!(fmt_num(v), want, "{v:e}");
        }
        assert_eq!(fmt_fixed(6.5e-13, 6, 3), "6.500e-13");
        assert_eq!(fmt_fixed(0.0000123, 6, 3), "1.230e-05");
        assert_eq!(fmt_fixed(0.00004, 4, 1), "4.000e-05");
        assert_eq!(fmt_fixed(2.5e10, 6, 3), "2.500e+10");
    }
}
