//! `--iplot FILE.svg`: fixest's `iplot()` — the coefficients of a model's first `i()` term
//! against their level, each with its confidence interval est ± t(df)·se (df: the model's t
//! degrees of freedom, G − 1 when clustered), the first `ref` value drawn at zero with a
//! zero-width interval (fixest `R/coefplot.R`). The x axis is numeric when every level is a
//! number (an event study's time to treatment), else the levels in order. Every point and
//! interval carries its level and values as `data-` attributes, so the figure can be checked.

use std::path::Path;

use super::axis::axis;
use crate::error::{Error, Result};
use crate::estimate::FitResult;
use crate::formula::{Factor, IWith, Model, Value};
use crate::terms::Level;

/// One point of the plot.
#[derive(Debug, Clone, PartialEq)]
pub struct IPoint {
    pub label: String,
    /// The level as a number, when it is one.
    pub value: Option<f64>,
    pub estimate: f64,
    pub lo: f64,
    pub hi: f64,
    /// The reference (`ref`), drawn at zero.
    pub reference: bool,
}

/// The points of the first `i(f)` or `i(f, x)` term of `model` in its fit `r`, ordered by
/// level, at confidence `level` (0.95); the x-axis title with them.
pub fn points(model: &Model, r: &FitResult, level: f64) -> Result<(String, Vec<IPoint>)> {
    let term = model
        .rhs
        .iter()
        .find_map(|t| match t.factors.as_slice() {
            [Factor::I(i)] => Some(i),
            _ => None,
        })
        .ok_or_else(|| Error::Usage(format!("--iplot: `{}` has no i() term to plot", model.formula)))?;
    let suffix = match &term.with {
        None => String::new(),
        Some(IWith::Var(x)) => format!(":{x}"),
        Some(IWith::Factor(_)) => {
            return Err(Error::Usage(
                "--iplot draws i(f) and i(f, x); an interaction of two factors i(f, i.g) has no single axis".into(),
            ))
        }
    };
    let prefix = format!("{}::", term.var);
    let t = crate::stats::t_critical(1.0 - level, r.df_t);
    let mut out: Vec<IPoint> = r
        .coefficients
        .iter()
        .filter_map(|c| {
            let label = c.name.strip_prefix(&prefix)?.strip_suffix(suffix.as_str())?;
            (!label.contains("::")).then(|| IPoint {
                label: label.to_string(),
                value: label.parse().ok(),
                estimate: c.estimate,
                lo: c.estimate - t * c.std_error,
                hi: c.estimate + t * c.std_error,
                reference: false,
            })
        })
        .collect();
    if out.is_empty() {
        return Err(Error::Usage(format!(
            "--iplot: no coefficient of `{}` is left to plot",
            term.name()
        )));
    }
    if let Some(v) = term.refs.first() {
        let label = match v {
            Value::Num(x, _) => Level::Num(*x).label(),
            Value::Text(s) => s.clone(),
        };
        out.push(IPoint {
            value: label.parse().ok(),
            label,
            estimate: 0.0,
            lo: 0.0,
            hi: 0.0,
            reference: true,
        });
    }
    let numeric = out.iter().all(|p| p.value.is_some());
    if numeric {
        out.sort_by(|a, b| a.value.unwrap_or(0.0).total_cmp(&b.value.unwrap_or(0.0)));
    } else {
        out.sort_by(|a, b| a.label.as_bytes().cmp(b.label.as_bytes()));
        out.iter_mut().for_each(|p| p.value = None);
    }
    Ok((term.var.clone(), out))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The plot as SVG text.
pub fn svg(points: &[IPoint], title: &str, x_label: &str) -> String {
    let (w, h, left, right, top, bottom) = (760.0, 440.0, 70.0, 30.0, 40.0, 60.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let numeric = points.iter().all(|p| p.value.is_some());
    let xs: Vec<f64> = match numeric {
        true => points.iter().map(|p| p.value.unwrap_or(0.0)).collect(),
        false => (0..points.len()).map(|k| k as f64).collect(),
    };
    let (x_lo, x_hi) = xs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let pad = ((x_hi - x_lo) * 0.05).max(0.5);
    let xa = axis(x_lo - pad, x_hi + pad, pw);
    let x_of = |v: f64| left + (v - xa.lo) / (xa.hi - xa.lo) * pw;
    let (y_lo, y_hi) = points
        .iter()
        .flat_map(|p| [p.lo, p.hi, 0.0])
        .filter(|v| v.is_finite())
        .fold((0.0f64, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
    let ya = axis(y_lo, if y_hi > y_lo { y_hi } else { y_lo + 1.0 }, ph);
    let y_of = |v: f64| top + ph - (v - ya.lo) / (ya.hi - ya.lo) * ph;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        w / 2.0,
        esc(title)
    );
    // axes: y ticks with labels, x ticks (numbers) or level names
    let (x0, x1, yb) = (left, left + pw, top + ph);
    s.push_str(&format!(
        "<line x1=\"{x0}\" x2=\"{x0}\" y1=\"{top}\" y2=\"{yb}\" stroke=\"black\"/>\n<line x1=\"{x0}\" x2=\"{x1}\" y1=\"{yb}\" y2=\"{yb}\" stroke=\"black\"/>\n"
    ));
    for (t, label) in ya.ticks.iter().zip(&ya.labels) {
        let y = y_of(*t);
        s.push_str(&format!(
            "<line x1=\"{:.1}\" x2=\"{x0}\" y1=\"{y:.2}\" y2=\"{y:.2}\" stroke=\"black\"/>\n<text x=\"{:.1}\" y=\"{:.2}\" text-anchor=\"end\">{}</text>\n",
            x0 - 5.0,
            x0 - 8.0,
            y + 4.0,
            esc(label)
        ));
    }
    let ticks: Vec<(f64, String)> = match numeric {
        true => xa.ticks.iter().copied().zip(xa.labels.iter().cloned()).collect(),
        false => xs.iter().copied().zip(points.iter().map(|p| p.label.clone())).collect(),
    };
    for (t, label) in ticks {
        let x = x_of(t);
        s.push_str(&format!(
            "<line x1=\"{x:.2}\" x2=\"{x:.2}\" y1=\"{yb}\" y2=\"{:.1}\" stroke=\"black\"/>\n<text x=\"{x:.2}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            yb + 5.0,
            yb + 18.0,
            esc(&label)
        ));
    }
    s.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
        left + pw / 2.0,
        h - 15.0,
        esc(x_label)
    ));
    let zero = y_of(0.0);
    s.push_str(&format!(
        "<line class=\"zero\" data-y=\"{zero:.3}\" x1=\"{x0}\" x2=\"{x1}\" y1=\"{zero:.3}\" y2=\"{zero:.3}\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>\n"
    ));
    let mut line = String::new();
    for (p, &xv) in points.iter().zip(&xs) {
        let (x, y) = (x_of(xv), y_of(p.estimate));
        line.push_str(&format!("{x:.2},{y:.3} "));
        s.push_str(&format!(
            "<line class=\"ci\" data-level=\"{}\" data-lo=\"{:?}\" data-hi=\"{:?}\" x1=\"{x:.2}\" x2=\"{x:.2}\" y1=\"{:.3}\" y2=\"{:.3}\" stroke=\"#2c7bb6\" stroke-width=\"2\"/>\n",
            esc(&p.label),
            p.lo,
            p.hi,
            y_of(p.lo),
            y_of(p.hi)
        ));
        s.push_str(&format!(
            "<circle class=\"{}\" data-level=\"{}\" data-estimate=\"{:?}\" cx=\"{x:.2}\" cy=\"{y:.3}\" r=\"4\" fill=\"{}\"/>\n",
            if p.reference { "reference" } else { "estimate" },
            esc(&p.label),
            p.estimate,
            if p.reference { "white\" stroke=\"black" } else { "#2c7bb6" }
        ));
    }
    s.push_str(&format!(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#2c7bb6\" stroke-opacity=\"0.5\"/>\n</svg>\n",
        line.trim_end()
    ));
    s
}

/// Check, before any work, that `path` is an `.svg` file fegpu can write.
pub fn check_path(path: &Path) -> Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ext != "svg" {
        return Err(Error::io(
            path.display().to_string(),
            "--iplot writes an .svg file (PNG is not supported yet)",
        ));
    }
    super::output_target(path).map(drop)
}

/// Write the i() plot of `model`'s fit `r` to `path` (SVG, through a temporary file).
pub fn write(path: &Path, model: &Model, r: &FitResult) -> Result<()> {
    check_path(path)?;
    let (var, pts) = points(model, r, 0.95)?;
    let title = format!("Effect on {} and 95% confidence interval", r.depvar);
    super::write_atomic(path, &svg(&pts, &title, &var))
}
