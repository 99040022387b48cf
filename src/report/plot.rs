//! Plots of replicate distributions: a histogram of the bootstrap or permutation statistics with
//! the observed value marked, written as SVG by hand (no plotting dependency: the figure is a
//! few dozen rectangles). `.png` gets the same bars and observed line rasterised and encoded by
//! the `png` crate (no text — the SVG has labels).

use std::path::Path;

use super::axis::{axis, Axis};
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

/// Counts of `bins` equal bins over [lo, hi] of the finite draws (outside values clamp to the
/// end bins).
fn counts_over(finite: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<usize> {
    let mut counts = vec![0usize; bins];
    for v in finite {
        counts[(((v - lo) / (hi - lo)) * bins as f64)
            .floor()
            .clamp(0.0, bins as f64 - 1.0) as usize] += 1;
    }
    counts
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Tick marks, labels and the axis line of an x axis at `y` (labels below, `x_of` placing).
fn x_axis_svg(axis: &Axis, x_of: &dyn Fn(f64) -> f64, y: f64, grid_top: Option<f64>) -> String {
    let mut s = format!(
        "<line x1=\"{:.2}\" x2=\"{:.2}\" y1=\"{y}\" y2=\"{y}\" stroke=\"black\"/>\n",
        x_of(axis.lo),
        x_of(axis.hi)
    );
    for (t, label) in axis.ticks.iter().zip(&axis.labels) {
        let x = x_of(*t);
        if let Some(top) = grid_top {
            s.push_str(&format!(
                "<line x1=\"{x:.2}\" x2=\"{x:.2}\" y1=\"{top}\" y2=\"{y}\" stroke=\"#e4e4e4\"/>\n"
            ));
        }
        s.push_str(&format!(
            "<line x1=\"{x:.2}\" x2=\"{x:.2}\" y1=\"{y}\" y2=\"{}\" stroke=\"black\"/>\n<text x=\"{x:.2}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            y + 5.0,
            y + 18.0,
            esc(label)
        ));
    }
    s
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
    super::write_bytes_atomic(path, histogram_svg_text(draws, observed, title, x_label)?.as_bytes())
}

/// The histogram's SVG text: round ticks on both axes, margins wide enough for the outermost
/// labels, the observed value's label on whichever side of its line has room.
pub fn histogram_svg_text(draws: &[f64], observed: f64, title: &str, x_label: &str) -> Result<String> {
    let finite: Vec<f64> = draws.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return Err(Error::Estimation("no finite replicate statistic to plot".into()));
    }
    let (w, h, left, right, top, bottom) = (680.0, 420.0, 70.0, 45.0, 44.0, 62.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let dlo = finite.iter().copied().fold(f64::INFINITY, f64::min).min(observed);
    let dhi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max).max(observed);
    let xa = axis(dlo, dhi, pw);
    let bins = 40;
    let counts = counts_over(&finite, xa.lo, xa.hi, bins);
    let ya = axis(0.0, *counts.iter().max().unwrap() as f64, ph);
    let x_of = |v: f64| left + (v - xa.lo) / (xa.hi - xa.lo) * pw;
    let y_of = |c: f64| top + ph - c / ya.hi * ph;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        w / 2.0,
        esc(title)
    );
    // y axis: counts, with light grid lines
    for (t, label) in ya.ticks.iter().zip(&ya.labels) {
        let y = y_of(*t);
        svg.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{:.2}\" y1=\"{y:.2}\" y2=\"{y:.2}\" stroke=\"#e4e4e4\"/>\n<line x1=\"{}\" x2=\"{left}\" y1=\"{y:.2}\" y2=\"{y:.2}\" stroke=\"black\"/>\n<text x=\"{}\" y=\"{:.2}\" text-anchor=\"end\">{}</text>\n",
            left + pw,
            left - 5.0,
            left - 8.0,
            y + 4.0,
            esc(label)
        ));
    }
    svg.push_str(&format!(
        "<line x1=\"{left}\" x2=\"{left}\" y1=\"{top}\" y2=\"{}\" stroke=\"black\"/>\n",
        top + ph
    ));
    for (b, &c) in counts.iter().enumerate() {
        let y = y_of(c as f64);
        let x0 = left + b as f64 / bins as f64 * pw;
        svg.push_str(&format!(
            "<rect x=\"{x0:.2}\" y=\"{y:.2}\" width=\"{:.2}\" height=\"{:.2}\" fill=\"#8da0cb\" stroke=\"white\" stroke-width=\"0.5\"/>\n",
            pw / bins as f64,
            top + ph - y
        ));
    }
    let xo = x_of(observed);
    let text = format!("observed {}", crate::report::table::fmt_num(observed));
    // the label goes right of the line unless it would run past the plot
    let room_right = left + pw - xo;
    let (tx, anchor) = if room_right >= text.chars().count() as f64 * 7.0 + 6.0 {
        (xo + 4.0, "start")
    } else {
        (xo - 4.0, "end")
    };
    svg.push_str(&format!(
        "<line x1=\"{xo:.2}\" x2=\"{xo:.2}\" y1=\"{top}\" y2=\"{}\" stroke=\"#d95f02\" stroke-width=\"2\"/>\n<text x=\"{tx:.2}\" y=\"{}\" fill=\"#d95f02\" text-anchor=\"{anchor}\">{}</text>\n",
        top + ph,
        top + 12.0,
        esc(&text)
    ));
    svg.push_str(&x_axis_svg(&xa, &x_of, top + ph, None));
    svg.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n<text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">replicates (n = {})</text>\n</svg>\n",
        left + pw / 2.0,
        h - 12.0,
        esc(x_label),
        top + ph / 2.0,
        top + ph / 2.0,
        finite.len()
    ));
    Ok(svg)
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
    let (w, left, right, top, row_h) = (760.0, 260.0, 45.0, 40.0, 22.0);
    let h = top + row_h * rows.len().max(1) as f64 + 48.0;
    let finite = rows
        .iter()
        .flat_map(|r| [r.lo, r.hi, r.estimate, r.truth.unwrap_or(r.estimate), 0.0])
        .filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let pw = w - left - right;
    let xa = axis(lo, hi, pw);
    let x = |v: f64| left + (v - xa.lo) / (xa.hi - xa.lo) * pw;
    let y_axis = h - 40.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        w / 2.0,
        esc(title)
    );
    s.push_str(&x_axis_svg(&xa, &x, y_axis, Some(top - 6.0)));
    let x0 = x(0.0);
    s.push_str(&format!(
        "<line x1=\"{x0:.1}\" x2=\"{x0:.1}\" y1=\"{}\" y2=\"{y_axis:.1}\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>\n",
        top - 6.0
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
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each `<text>`'s horizontal extent, estimated from its anchor and length (7px a
    /// character at 12px, 8px at the 14px title).
    fn text_extents(svg: &str) -> Vec<(f64, f64, String)> {
        svg.split("<text ")
            .skip(1)
            .filter(|t| !t.contains("rotate("))
            .map(|t| {
                let attr = |name: &str| {
                    t.split(&format!("{name}=\""))
                        .nth(1)
                        .map(|r| r.split('"').next().unwrap().to_string())
                };
                let x: f64 = attr("x").unwrap().parse().unwrap();
                let body = t.split('>').nth(1).unwrap().split('<').next().unwrap().to_string();
                let px = if attr("font-size").is_some() { 8.0 } else { 7.0 };
                let w = body.chars().count() as f64 * px;
                let (a, b) = match attr("text-anchor").as_deref() {
                    Some("middle") => (x - w / 2.0, x + w / 2.0),
                    Some("end") => (x - w, x),
                    _ => (x, x + w),
                };
                (a, b, body)
            })
            .collect()
    }

    #[test]
    fn histogram_labels_stay_inside_the_figure() {
        // the permutation distribution of a small coefficient, observed near either edge
        let draws: Vec<f64> = (0..1000)
            .map(|i| -0.01557 + 0.02638 * ((i * 7919) % 1000) as f64 / 1000.0)
            .collect();
        for observed in [0.01081, -0.0155, 0.0004158] {
            let svg = histogram_svg_text(&draws, observed, "NRI: permutation distribution", "digtech").unwrap();
            for (a, b, body) in text_extents(&svg) {
                assert!(a >= 0.0 && b <= 680.0, "`{body}` spans {a:.0}..{b:.0} px of 680");
            }
            // round tick labels, no long decimals
            assert!(svg.contains(">0.005<") || svg.contains(">0.010<"), "{svg}");
            assert!(!svg.contains("0.004211"), "{svg}");
        }
    }

    #[test]
    fn coefficient_plot_labels_stay_inside_the_figure() {
        let rows = vec![
            CoefRow {
                label: "NRI top 10%".into(),
                estimate: 0.0021,
                lo: -0.0049,
                hi: 0.0091,
                truth: Some(0.0012),
            },
            CoefRow {
                label: "Other".into(),
                estimate: 0.0017,
                lo: 0.0008,
                hi: 0.0026,
                truth: Some(0.0012),
            },
        ];
        let svg = coefficient_svg(&rows, "Table 6");
        for (a, b, body) in text_extents(&svg) {
            assert!(a >= 0.0 && b <= 760.0, "`{body}` spans {a:.0}..{b:.0} px of 760");
        }
        // round ticks (every 0.0025 here), none at the data's own values
        assert!(svg.contains(">0.0050<") && svg.contains(">-0.0025<"), "{svg}");
        assert!(!svg.contains(">0.0091<") && !svg.contains("-0.0049"), "{svg}");
    }
}
