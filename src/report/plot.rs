//! Plots of replicate distributions: a histogram of the bootstrap or permutation statistics with
//! the observed value marked, written as SVG by hand (no plotting dependency: the figure is a
//! few dozen rectangles). PNG output is not implemented; `.png` is refused with a clear message.

use std::path::Path;

use crate::error::{Error, Result};

/// Write a histogram of `draws` with a vertical line at `observed` to `path` (.svg).
pub fn histogram_svg(path: &Path, draws: &[f64], observed: f64, title: &str, x_label: &str) -> Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ext != "svg" {
        return Err(Error::Usage(format!(
            "--plot {}: only .svg is supported",
            path.display()
        )));
    }
    let finite: Vec<f64> = draws.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return Err(Error::Estimation("no finite replicate statistic to plot".into()));
    }
    let mut lo = finite.iter().copied().fold(f64::INFINITY, f64::min).min(observed);
    let mut hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max).max(observed);
    if hi <= lo {
        lo -= 0.5;
        hi += 0.5;
    }
    let pad = 0.05 * (hi - lo);
    let (lo, hi) = (lo - pad, hi + pad);
    let bins = 40;
    let mut counts = vec![0usize; bins];
    for v in &finite {
        let b = (((v - lo) / (hi - lo)) * bins as f64)
            .floor()
            .clamp(0.0, bins as f64 - 1.0) as usize;
        counts[b] += 1;
    }
    let max = *counts.iter().max().unwrap() as f64;
    let (w, h, left, right, top, bottom) = (640.0, 400.0, 60.0, 20.0, 40.0, 50.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let x_of = |v: f64| left + (v - lo) / (hi - lo) * pw;
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        w / 2.0,
        esc(title)
    );
    for (b, &c) in counts.iter().enumerate() {
        let bh = c as f64 / max * ph;
        let x0 = left + b as f64 / bins as f64 * pw;
        svg.push_str(&format!(
            "<rect x=\"{x0:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{bh:.2}\" fill=\"#8da0cb\" stroke=\"white\" stroke-width=\"0.5\"/>\n",
            top + ph - bh,
            pw / bins as f64
        ));
    }
    let xo = x_of(observed);
    svg.push_str(&format!(
        "<line x1=\"{xo:.2}\" x2=\"{xo:.2}\" y1=\"{top}\" y2=\"{}\" stroke=\"#d95f02\" stroke-width=\"2\"/>\n<text x=\"{:.2}\" y=\"{}\" fill=\"#d95f02\">observed {}</text>\n",
        top + ph,
        xo + 4.0,
        top + 12.0,
        crate::report::table::fmt_num(observed)
    ));
    svg.push_str(&format!(
        "<line x1=\"{left}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"black\"/>\n",
        left + pw,
        top + ph,
        top + ph
    ));
    for t in 0..=4 {
        let v = lo + (hi - lo) * t as f64 / 4.0;
        svg.push_str(&format!(
            "<text x=\"{:.2}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            x_of(v),
            top + ph + 16.0,
            crate::report::table::fmt_num(v)
        ));
    }
    svg.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n<text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">replicates (n = {})</text>\n</svg>\n",
        left + pw / 2.0,
        h - 10.0,
        esc(x_label),
        top + ph / 2.0,
        top + ph / 2.0,
        finite.len()
    ));
    let tmp = path.with_extension(format!("svg.tmp-{}", std::process::id()));
    std::fs::write(&tmp, svg).map_err(|e| Error::io(tmp.display().to_string(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path.display().to_string(), e))
}
