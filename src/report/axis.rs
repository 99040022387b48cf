//! Axis ticks for the report's plots: round values (1, 2, 2.5 or 5 × 10^k apart) that cover
//! the data, as many as fit without their labels touching, and labels with just the decimals
//! the step needs (0.0005, 0.001, 0.0015 — not 0.0004158), in scientific notation only for
//! very small or very large steps.

/// A numeric axis: its domain (the outermost ticks, so the ticks cover the data) and ticks.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub lo: f64,
    pub hi: f64,
    pub ticks: Vec<f64>,
    pub labels: Vec<String>,
}

/// Average width of a label character at the plots' 12px sans-serif, in pixels (digits are
/// about 6.7px; the margin of error keeps neighbours apart).
const CHAR_PX: f64 = 7.5;
/// Blank space between two neighbouring labels, in pixels.
const GAP_PX: f64 = 12.0;

/// The round step for about `target` intervals over `span`: 1, 2, 2.5 or 5 × 10^k.
fn nice_step(span: f64, target: usize) -> f64 {
    let raw = span / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let unit = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .find(|&u| u * mag >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0);
    unit * mag
}

/// Ticks every `step` from the multiple at or below `lo` to the one at or above `hi`, each
/// rounded to the step's precision (so 0.1 + 0.2 prints as 0.3).
fn ticks_for(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let first = (lo / step + 1e-9).floor() as i64;
    let last = (hi / step - 1e-9).ceil() as i64;
    let digits = decimals(step) as i32;
    let round = |v: f64| {
        let s = 10f64.powi(digits.min(300));
        let r = (v * s).round() / s;
        if r == 0.0 {
            0.0
        } else {
            r
        }
    };
    (first..=last.max(first + 1)).map(|k| round(k as f64 * step)).collect()
}

/// Decimals a label needs to tell multiples of `step` apart (2.5 × 10^k needs one more).
fn decimals(step: f64) -> usize {
    let mag = step.log10().floor() as i32;
    let mantissa = step / 10f64.powi(mag);
    let extra = ((mantissa - mantissa.round()).abs() > 1e-6) as i32;
    (extra - mag).max(0) as usize
}

/// The label of tick `v` on an axis of step `step`.
pub fn tick_label(v: f64, step: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if step < 1e-4 || step >= 1e6 {
        // scientific: as many mantissa decimals as the step needs relative to v
        let mag = v.abs().log10().floor() as i32;
        let d = (mag - step.log10().floor() as i32).clamp(0, 6) as usize;
        return format!("{v:.d$e}");
    }
    let d = decimals(step);
    format!("{v:.d$}")
}

/// The axis for data in [lo, hi] drawn `width_px` wide: the most ticks (3 to 8) whose labels
/// fit side by side, on a round step. A degenerate range is widened around its value.
pub fn axis(lo: f64, hi: f64, width_px: f64) -> Axis {
    let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() {
        (lo, hi)
    } else {
        (0.0, 1.0)
    };
    if hi <= lo {
        let half = if lo == 0.0 { 1.0 } else { 0.1 * lo.abs() };
        lo -= half;
        hi += half;
    }
    let mut best: Option<Axis> = None;
    for target in (2..=7).rev() {
        let step = nice_step(hi - lo, target);
        let ticks = ticks_for(lo, hi, step);
        let labels: Vec<String> = ticks.iter().map(|&v| tick_label(v, step)).collect();
        let spacing = width_px / (ticks.len() - 1) as f64;
        let widest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(1) as f64 * CHAR_PX;
        let a = Axis {
            lo: ticks[0],
            hi: *ticks.last().expect("two ticks at least"),
            ticks,
            labels,
        };
        let fits = widest + GAP_PX <= spacing && a.ticks.len() <= 8;
        if fits {
            return a;
        }
        best = Some(a);
    }
    best.expect("one candidate at least")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distinct(labels: &[String]) -> bool {
        let mut l = labels.to_vec();
        l.sort();
        l.dedup();
        l.len() == labels.len()
    }

    #[test]
    fn small_coefficients_get_round_ticks_that_cover_them() {
        let a = axis(0.0003, 0.0021, 500.0);
        assert!(a.lo <= 0.0003 && a.hi >= 0.0021, "{a:?}");
        assert!((3..=8).contains(&a.ticks.len()), "{a:?}");
        assert!(distinct(&a.labels), "{a:?}");
        // round: every tick a whole multiple of a 1/2/2.5/5 × 10^k step
        let step = a.ticks[1] - a.ticks[0];
        let mantissa = step / 10f64.powf(step.log10().floor());
        assert!(
            [1.0, 2.0, 2.5, 5.0].iter().any(|m| (mantissa - m).abs() < 1e-9),
            "step {step}"
        );
        for t in &a.ticks {
            assert!(
                ((t / step) - (t / step).round()).abs() < 1e-6,
                "{t} not a multiple of {step}"
            );
        }
        assert_eq!(a.labels, ["0", "0.0005", "0.0010", "0.0015", "0.0020", "0.0025"]);
    }

    #[test]
    fn ticks_cover_ranges_of_every_scale_and_sign() {
        for (lo, hi) in [
            (-0.01557, 0.01081),
            (-0.004931, 0.009089),
            (0.0, 1.0),
            (-3.2, 41.0),
            (12_345.0, 98_765.0),
            (1e-7, 9e-7),
            (-2e-5, 3e-5),
            (5.0, 5.0),
        ] {
            let a = axis(lo, hi, 560.0);
            assert!(a.lo <= lo.min(hi) && a.hi >= hi.max(lo), "[{lo}, {hi}]: {a:?}");
            assert!((3..=8).contains(&a.ticks.len()), "[{lo}, {hi}]: {a:?}");
            assert!(distinct(&a.labels), "[{lo}, {hi}]: {a:?}");
            assert!(a.ticks.windows(2).all(|w| w[1] > w[0]));
        }
    }

    #[test]
    fn labels_do_not_overlap_on_narrow_axes() {
        for width in [160.0, 300.0, 560.0] {
            let a = axis(-0.01557, 0.01081, width);
            let spacing = width / (a.ticks.len() - 1) as f64;
            let widest = a.labels.iter().map(|l| l.len()).max().unwrap() as f64 * CHAR_PX;
            assert!(widest < spacing || a.ticks.len() <= 3, "{width}px: {a:?}");
        }
    }

    #[test]
    fn labels_are_short_and_exact() {
        assert_eq!(tick_label(0.30000000000000004, 0.1), "0.3");
        assert_eq!(tick_label(-0.0025, 0.0025), "-0.0025");
        assert_eq!(tick_label(20_000.0, 5_000.0), "20000");
        assert_eq!(tick_label(0.0, 0.5), "0");
        assert_eq!(tick_label(2e-5, 1e-5), "2e-5");
    }
}
