//! The output of `fegpu bdiff` and `fegpu boot` (and so of `fegpu merge`): JSON for
//! `--format json` (the contract: keys and nesting as documented in the README), the text table
//! for every other format, and the histogram of the replicate distribution for `--plot`.

use std::fmt::Write;
use std::path::Path;

use serde::Serialize;

use super::plot::histogram_svg;
use super::table::fmt_fixed;
use super::Format;
use crate::error::{Error, Result};
use crate::inference::bootstrap::PairsResult;
use crate::inference::permutation::BdiffResult;
use crate::inference::wild::WildResult;

/// An estimate, standard error or interval bound in the text output: six decimals, or
/// scientific notation where they would show fewer than three significant digits (or the value
/// is huge) — never a non-zero value printed as 0.000000.
fn est(v: f64) -> String {
    fmt_fixed(v, 6, 3)
}

/// A t statistic or p-value in the text output: four decimals, or scientific notation where a
/// non-zero value would print as 0.0000 (or is huge).
fn stat(v: f64) -> String {
    fmt_fixed(v, 4, 1)
}

/// Pretty JSON with a final newline.
fn json<T: Serialize>(value: &T) -> Result<String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Data(e.to_string()))?;
    Ok(text + "\n")
}

/// `fegpu bdiff`'s output.
/// The bdiff run's model and grouping, as the user gave them.
pub struct BdiffLabels<'a> {
    pub formula: &'a str,
    pub group: &'a str,
    pub unit: &'a str,
    pub backend: &'a str,
}

pub fn bdiff(s: &BdiffLabels, seconds: f64, r: &BdiffResult, format: Format) -> Result<String> {
    let backend = s.backend;
    if format == Format::Json {
        #[derive(Serialize)]
        struct Out<'a> {
            formula: &'a str,
            group: &'a str,
            unit: &'a str,
            backend: &'a str,
            seconds: f64,
            bdiff: &'a BdiffResult,
        }
        return json(&Out {
            formula: s.formula,
            group: s.group,
            unit: s.unit,
            backend,
            seconds,
            bdiff: r,
        });
    }
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Permutation test of coefficient differences ({} = 1 minus {} = 0), unit: {}",
        s.group, s.group, s.unit
    );
    let _ = writeln!(
        o,
        "{:<16} {:>14} {:>14} {:>14} {:>10} {:>10}",
        "", "group 1", "group 0", "difference", "p", "p (2-sided)"
    );
    for c in &r.coefficients {
        let _ = writeln!(
            o,
            "{:<16} {:>14} {:>14} {:>14} {:>10} {:>10}",
            c.name,
            est(c.estimate_group1),
            est(c.estimate_group0),
            est(c.difference),
            stat(c.p),
            stat(c.p_two_sided)
        );
    }
    let _ = writeln!(
        o,
        "N = {} / {}; {} replicates used{} ({} failed), {} units ({} in group 1), seed {}{}; {:.2} s on {}",
        r.nobs_group1,
        r.nobs_group0,
        r.reps_used,
        if r.enumerated {
            " (all assignments enumerated: exact)"
        } else {
            ""
        },
        r.reps_failed,
        r.units,
        r.units_group1,
        r.seed,
        if r.bsample { ", bootstrap-resampled" } else { "" },
        seconds,
        backend
    );
    let d = &r.dropped;
    if d.missing + d.nonfinite + d.zero_weight + d.singletons > 0 {
        let _ = writeln!(
            o,
            "Dropped {} of {} rows: {} with a missing value, {} non-finite, {} zero weight, {} singletons.",
            d.missing + d.nonfinite + d.zero_weight + d.singletons,
            r.nobs_raw,
            d.missing,
            d.nonfinite,
            d.zero_weight,
            d.singletons
        );
    }
    o.push_str("p: share of permuted differences at least as extreme as the observed one, in its direction (bdiff); p (2-sided): |d*| >= |d|.\n");
    if r.reps_failed > 0 {
        let _ = writeln!(
            o,
            "WARNING: {} of {} replicates could not be estimated (a regressor collinear within a permuted group) and are left out; the p-values use the other {}.",
            r.reps_failed,
            r.reps_failed + r.reps_used,
            r.reps_used
        );
    }
    Ok(o)
}

/// The permutation distribution of the first regressor's difference.
pub fn bdiff_plot(path: &Path, r: &BdiffResult) -> Result<()> {
    let c = &r.coefficients[0];
    histogram_svg(
        path,
        &r.differences[0],
        c.difference,
        &format!(
            "Permutation distribution of the {} difference ({} replicates)",
            c.name, r.reps_used
        ),
        &format!("{} (group 1) − {} (group 0)", c.name, c.name),
    )
}

/// `fegpu boot --kind wild`'s output. Its warnings (too few distinct draws) go to stderr as
/// well, whatever the format, and are the last lines of the text (JSON: `warnings`).
pub fn wild(formula: &str, backend: &str, r: &WildResult, format: Format) -> Result<String> {
    for w in &r.warnings {
        eprintln!("{w}");
    }
    if format == Format::Json {
        #[derive(Serialize)]
        struct Out<'a> {
            formula: &'a str,
            kind: &'a str,
            backend: &'a str,
            wild: &'a WildResult,
        }
        return json(&Out {
            formula,
            kind: "wild",
            backend,
            wild: r,
        });
    }
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Wild cluster bootstrap (WCR, {:?} weights) of `{}` in {}",
        r.weights, r.coefficient, formula
    );
    let _ = writeln!(
        o,
        "  estimate {}   H0: {} = {}   t = {}",
        est(r.estimate),
        r.coefficient,
        r.null,
        stat(r.t)
    );
    let _ = writeln!(
        o,
        "  bootstrap p-value {}   ({} replicates, {} distinct{}, {} clusters, seed {})",
        stat(r.p),
        r.reps,
        r.distinct_draws,
        if r.full_enumeration { ", full enumeration" } else { "" },
        r.clusters,
        r.seed
    );
    if let (Some((lo, hi)), Some(level)) = (r.ci, r.level) {
        let _ = writeln!(
            o,
            "  {:.0}% confidence interval (test inversion): [{}, {}]",
            level * 100.0,
            est(lo),
            est(hi)
        );
    }
    for w in &r.warnings {
        let _ = writeln!(o, "{w}");
    }
    Ok(o)
}

/// The bootstrap t statistics with the observed t.
pub fn wild_plot(path: &Path, r: &WildResult) -> Result<()> {
    histogram_svg(
        path,
        &r.t_boot,
        r.t,
        &format!("Wild cluster bootstrap t of {} ({} replicates)", r.coefficient, r.reps),
        "t*",
    )
}

/// `fegpu boot --kind pairs`'s output.
pub fn pairs(formula: &str, cluster: &str, backend: &str, r: &PairsResult, format: Format) -> Result<String> {
    if format == Format::Json {
        #[derive(Serialize)]
        struct Out<'a> {
            formula: &'a str,
            kind: &'a str,
            cluster: &'a str,
            backend: &'a str,
            pairs: &'a PairsResult,
        }
        return json(&Out {
            formula,
            kind: "pairs",
            cluster,
            backend,
            pairs: r,
        });
    }
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Pairs cluster bootstrap ({} clusters of {}), {} replicates used ({} failed), seed {}",
        r.clusters, cluster, r.reps_used, r.reps_failed, r.seed
    );
    let _ = writeln!(
        o,
        "{:<16} {:>14} {:>14} {:>14} {:>14}",
        "",
        "estimate",
        "boot s.e.",
        format!("{:.0}% low", r.level * 100.0),
        "high"
    );
    for c in &r.coefficients {
        let _ = writeln!(
            o,
            "{:<16} {:>14} {:>14} {:>14} {:>14}",
            c.name,
            est(c.estimate),
            est(c.std_error),
            est(c.ci_low),
            est(c.ci_high)
        );
    }
    Ok(o)
}

/// The bootstrap distribution of coefficient `param` (the first if there is none of that name).
pub fn pairs_plot(path: &Path, param: &str, r: &PairsResult) -> Result<()> {
    let c = r.coefficients.iter().position(|c| c.name == param).unwrap_or(0);
    histogram_svg(
        path,
        &r.draws[c],
        r.coefficients[c].estimate,
        &format!(
            "Pairs bootstrap of {} ({} replicates)",
            r.coefficients[c].name, r.reps_used
        ),
        &r.coefficients[c].name,
    )
}
