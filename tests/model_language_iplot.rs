//! fixest's model language, issue 28, item 3's plot: `--iplot FILE.svg` draws the i()
//! coefficients against their (numeric) level with est ± t(0.975, G − 1)·se intervals and the
//! reference at zero (fixest's `iplot`). The figure's points carry their values, checked here
//! against the JSON coefficients of the same fit and a t quantile from the tables.

mod common;
mod model_language;

use fegpu::rng::Stream;
use model_language::{cells, coefficients, write_csv};
use serde_json::Value;

/// 60 firms over 8 periods, adopting at period 4, 6 or never (-1000).
fn data(name: &str) -> common::Scratch {
    let mut s = Stream::new(51, 0);
    let (mut y, mut firm, mut period, mut ttt, mut treated) = (vec![], vec![], vec![], vec![], vec![]);
    for f in 0..60u32 {
        let cohort = [Some(4i64), Some(6), None][(f % 3) as usize];
        let fe = s.normal();
        for p in 1..=8i64 {
            let t = cohort.map_or(-1000, |c| p - c);
            let effect = if cohort.is_some() && t >= 0 {
                1.0 + 0.25 * t as f64
            } else {
                0.0
            };
            y.push(fe + 0.1 * p as f64 + effect + s.normal());
            firm.push(f.to_string());
            period.push(p.to_string());
            ttt.push(t.to_string());
            treated.push(if cohort.is_some() { "1" } else { "0" }.to_string());
        }
    }
    write_csv(
        name,
        &[
            ("y".into(), cells(&y)),
            ("firm".into(), firm),
            ("period".into(), period),
            ("ttt".into(), ttt),
            ("treated".into(), treated),
        ],
    )
}

/// `name="value"` of an SVG element.
fn attr(element: &str, name: &str) -> f64 {
    let key = format!(" {name}=\"");
    let at = element.find(&key).unwrap_or_else(|| panic!("{name} in {element}")) + key.len();
    element[at..].split('"').next().unwrap().parse().unwrap()
}

fn text_attr<'a>(element: &'a str, name: &str) -> &'a str {
    let key = format!(" {name}=\"");
    let at = element.find(&key).unwrap() + key.len();
    element[at..].split('"').next().unwrap()
}

#[test]
fn event_study_plot_has_the_reference_at_zero_and_the_fits_intervals() {
    let data = data("iplot.csv");
    let plot = common::tmp_file("model-language", "event.svg");
    let out = common::fegpu(&[
        "fit",
        common::s(&data),
        "y ~ i(ttt, treated, ref = c(-1, -1000)) | firm + period",
        "--vcov",
        "cluster:firm",
        "--format",
        "json",
        "--backend",
        "cpu",
        "--iplot",
        common::s(&plot),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let m: Value = serde_json::from_slice::<Value>(&out.stdout).unwrap()["models"][0].clone();
    assert_eq!(m["df_t"].as_f64(), Some(59.0), "clustered by 60 firms");
    let t = 2.000995378; // t(0.975, 59), from the tables
    let svg = std::fs::read_to_string(&plot).unwrap();
    let zero_line = svg.lines().find(|l| l.contains("class=\"zero\"")).expect("a zero line");
    let zero = attr(zero_line, "data-y");
    // the reference: level -1, at zero, on the zero line
    let reference: Vec<&str> = svg.lines().filter(|l| l.contains("class=\"reference\"")).collect();
    assert_eq!(reference.len(), 1);
    assert_eq!(text_attr(reference[0], "data-level"), "-1");
    assert_eq!(attr(reference[0], "data-estimate"), 0.0);
    assert!(
        (attr(reference[0], "cy") - zero).abs() < 1e-3,
        "{} vs {zero}",
        reference[0]
    );
    // every coefficient drawn, with its interval, left to right by level
    let coefs = coefficients(&m);
    let points: Vec<&str> = svg.lines().filter(|l| l.contains("class=\"estimate\"")).collect();
    assert_eq!(points.len(), coefs.len());
    for (name, b, se) in &coefs {
        let level = name.strip_prefix("ttt::").unwrap().strip_suffix(":treated").unwrap();
        let at = format!("data-level=\"{level}\"");
        let p = points
            .iter()
            .find(|l| l.contains(&at))
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(attr(p, "data-estimate"), *b);
        let ci = svg
            .lines()
            .find(|l| l.contains("class=\"ci\"") && l.contains(&at))
            .unwrap();
        assert!((attr(ci, "data-lo") - (b - t * se)).abs() < 1e-8 * se, "{name}");
        assert!((attr(ci, "data-hi") - (b + t * se)).abs() < 1e-8 * se, "{name}");
    }
    let mut drawn: Vec<(f64, f64)> = svg
        .lines()
        .filter(|l| l.contains("<circle"))
        .map(|l| (text_attr(l, "data-level").parse::<f64>().unwrap(), attr(l, "cx")))
        .collect();
    drawn.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(
        drawn.windows(2).all(|w| w[0].1 < w[1].1),
        "numeric x axis in level order: {drawn:?}"
    );
    // no i() term, or a file type it cannot write: errors before any fit
    let bad = common::fegpu(&[
        "fit",
        common::s(&data),
        "y ~ treated | firm",
        "--iplot",
        common::s(&plot),
    ]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("i() term to plot"));
    let png = common::tmp_file("model-language", "event.png");
    let bad = common::fegpu(&["fit", common::s(&data), "y ~ i(ttt) | firm", "--iplot", common::s(&png)]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains(".svg"));
}
