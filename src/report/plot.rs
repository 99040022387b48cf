//! Plots of replicate distributions: a histogram of the bootstrap or permutation statistics with
//! the observed value marked, written as SVG by hand (no plotting dependency: the figure is a
//! few dozen rectangles). `.png` gets the same bars and observed line rasterised and encoded by
//! the `png` crate (no text — the SVG has labels).

use std::path::Path;

use crate::error::{Error, Result};

/// Range and counts of a 40-bin histogram of the finite draws, padded 5% and covering the
/// observed value.
fn binned(draws: &[f64], observed: f64) -> Result<(f64, f64, Vec<usize>, usize)> {
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
        counts[(((v - lo) / (hi - lo)) * bins as f64)
            .floor()
            .clamp(0.0, bins as f64 - 1.0) as usize] += 1;
    }
    Ok((lo, hi, counts, finite.len()))
}

/// Write a histogram of `draws` with a vertical line at `observed` to `path` (.svg).
pub fn histogram_svg(path: &Path, draws: &[f64], observed: f64, title: &str, x_label: &str) -> Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ext == "png" {
        return histogram_png(path, draws, observed);
    }
    if ext != "svg" {
        return Err(Error::Usage(format!(
            "--plot {}: expected a .svg or .png file",
            path.display()
        )));
    }
    let (lo, hi, counts, n_finite) = binned(draws, observed)?;
    let bins = counts.len();
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
        n_finite
    ));
    super::write_bytes_atomic(path, svg.as_bytes())
}

/// The histogram as a PNG: bars, the observed value as a vertical line, and the x axis.
pub fn histogram_png(path: &Path, draws: &[f64], observed: f64) -> Result<()> {
    let (w, h) = (640usize, 400usize);
    let (lo, hi, counts, _) = binned(draws, observed)?;
    let bins = counts.len();
    let max = *counts.iter().max().unwrap() as f64;
    let (left, right, top, bottom) = (40usize, 20usize, 20usize, 30usize);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let mut px = vec![[255u8, 255, 255]; w * h];
    let mut fill = |x0: usize, x1: usize, y0: usize, y1: usize, c: [u8; 3]| {
        for y in y0.min(h)..y1.min(h) {
            for x in x0.min(w)..x1.min(w) {
                px[y * w + x] = c;
            }
        }
    };
    for (b, &c) in counts.iter().enumerate() {
        let bh = (c as f64 / max * ph as f64).round() as usize;
        let x0 = left + b * pw / bins;
        let x1 = left + (b + 1) * pw / bins;
        fill(x0 + 1, x1, top + ph - bh, top + ph, [141, 160, 203]);
    }
    fill(left, left + pw, top + ph, top + ph + 1, [0, 0, 0]);
    let xo = left + ((observed - lo) / (hi - lo) * pw as f64).round() as usize;
    fill(xo.saturating_sub(1), xo + 1, top, top + ph, [217, 95, 2]);
    let rgb: Vec<u8> = px.iter().flatten().copied().collect();
    let png = encode_png(w as u32, h as u32, &rgb).map_err(|e| Error::io(path.display().to_string(), e))?;
    super::write_bytes_atomic(path, &png)
}

/// An 8-bit RGB image as PNG bytes (the `png` crate: filtered and deflated scanlines).
fn encode_png(w: u32, h: u32, rgb: &[u8]) -> std::result::Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

/// One row of a coefficient plot: label, estimate, 95% interval, planted truth.
pub struct CoefRow {
    pub label: String,
    pub estimate: f64,
    pub lo: f64,
    pub hi: f64,
    pub truth: Option<f64>,
}

/// A coefficient plot (SVG text): one horizontal 95% interval per row, the estimate as a dot,
/// the planted truth as an orange tick, a dashed zero line; rows whose interval misses the
/// truth are drawn in red.
pub fn coefficient_svg(rows: &[CoefRow], title: &str) -> String {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let (w, left, right, top, row_h) = (760.0, 260.0, 30.0, 40.0, 22.0);
    let h = top + row_h * rows.len().max(1) as f64 + 40.0;
    let finite = rows
        .iter()
        .flat_map(|r| [r.lo, r.hi, r.truth.unwrap_or(r.estimate), 0.0])
        .filter(|v| v.is_finite());
    let (mut lo, mut hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !(hi > lo) {
        lo -= 1.0;
        hi += 1.0;
    }
    let pad = 0.05 * (hi - lo);
    let (lo, hi) = (lo - pad, hi + pad);
    let pw = w - left - right;
    let x = |v: f64| left + (v - lo) / (hi - lo) * pw;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        w / 2.0,
        esc(title)
    );
    let x0 = x(0.0);
    s.push_str(&format!(
        "<line x1=\"{x0:.1}\" x2=\"{x0:.1}\" y1=\"{top}\" y2=\"{:.1}\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>\n",
        h - 35.0
    ));
    for (i, r) in rows.iter().enumerate() {
        let y = top + row_h * (i as f64 + 0.5);
        let miss = r.truth.is_some_and(|t| t < r.lo || t > r.hi);
        let colour = if miss { "#d7191c" } else { "#2c7bb6" };
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            left - 8.0,
            y + 4.0,
            esc(&r.label)
        ));
        if r.lo.is_finite() && r.hi.is_finite() {
            s.push_str(&format!(
                "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{colour}\" stroke-width=\"2\"/>\n",
                x(r.lo),
                x(r.hi)
            ));
        }
        if r.estimate.is_finite() {
            s.push_str(&format!(
                "<circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"3.5\" fill=\"{colour}\"/>\n",
                x(r.estimate)
            ));
        }
        if let Some(t) = r.truth {
            s.push_str(&format!(
                "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#fdae61\" stroke-width=\"3\"/>\n",
                x(t),
                x(t),
                y - 7.0,
                y + 7.0
            ));
        }
    }
    let yb = h - 20.0;
    for k in 0..=4 {
        let v = lo + (hi - lo) * k as f64 / 4.0;
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{yb:.1}\" text-anchor=\"middle\">{}</text>\n",
            x(v),
            super::table::fmt_num(v)
        ));
    }
    s.push_str("</svg>\n");
    s
}
