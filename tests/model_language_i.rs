//! fixest's model language, issue 28, item 3: `i()` against an explicit construction. A
//! simulated staggered adoption (cohorts treated at periods 4 and 6, never-treated firms coded
//! -1000 in the time to treatment) is fitted with `i(...)` and with the indicator columns the
//! test builds itself; coefficients and standard errors must agree to 1e-10 and the names be
//! fixest's (`ttt::-3:treated`, `ttt::2`, `g::1:h::0`), with fixest's references (`R/miscfuns.R`,
//! `i()` and `i_ref()`: a naked `i(f)` with fixed effects drops its first level, `i(f, x)` drops
//! none, `ref`/`keep` as given).

mod common;
mod model_language;

use fegpu::rng::Stream;
use model_language::{assert_same, cells, coefficients, dummy, fit, fit_error, times, write_csv};

struct Study {
    y: Vec<f64>,
    x: Vec<f64>,
    firm: Vec<u32>,
    period: Vec<u32>,
    ttt: Vec<i64>,
    treated: Vec<f64>,
    sector: Vec<&'static str>,
}

/// 60 firms over 8 periods: a third adopt at period 4, a third at 6, a third never
/// (time to treatment -1000, fixest's convention for the never-treated).
fn study(seed: u64) -> Study {
    let mut s = Stream::new(seed, 0);
    let (mut y, mut x, mut firm, mut period, mut ttt, mut treated, mut sector) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for f in 0..60u32 {
        let cohort = [Some(4i64), Some(6), None][(f % 3) as usize];
        let fe = s.normal();
        for p in 1..=8u32 {
            let t = cohort.map_or(-1000, |c| p as i64 - c);
            let d = f64::from(u8::from(cohort.is_some()));
            let effect = if cohort.is_some() && t >= 0 {
                1.0 + 0.3 * t as f64
            } else {
                0.0
            };
            let xi = s.normal();
            y.push(fe + 0.1 * p as f64 + 0.5 * xi + effect + s.normal());
            x.push(xi);
            firm.push(f);
            period.push(p);
            ttt.push(t);
            treated.push(d);
            sector.push(["mining", "Retail", "farming"][(f % 5 % 3) as usize]);
        }
    }
    Study {
        y,
        x,
        firm,
        period,
        ttt,
        treated,
        sector,
    }
}

fn base_columns(st: &Study) -> Vec<(String, Vec<String>)> {
    let ints = |v: &[u32]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        ("y".into(), cells(&st.y)),
        ("x".into(), cells(&st.x)),
        ("firm".into(), ints(&st.firm)),
        ("period".into(), ints(&st.period)),
        ("ttt".into(), st.ttt.iter().map(|t| t.to_string()).collect()),
        ("treated".into(), cells(&st.treated)),
        ("sector".into(), st.sector.iter().map(|s| s.to_string()).collect()),
    ]
}

/// The distinct values of `v`, sorted numerically.
fn levels(v: &[i64]) -> Vec<i64> {
    let mut l = v.to_vec();
    l.sort();
    l.dedup();
    l
}

/// Hand-built columns `h0, h1, …` for `levels` of `ttt` (times `slope` if given), the formula
/// fitting them and the names fixest gives them.
fn hand(
    st: &Study,
    levels: &[i64],
    slope: Option<(&str, &[f64])>,
    cols: &mut Vec<(String, Vec<String>)>,
) -> (String, Vec<(&'static str, String)>) {
    let mut names = Vec::new();
    let mut terms = Vec::new();
    for (k, l) in levels.iter().enumerate() {
        let h: &'static str = Box::leak(format!("h{}_{k}", cols.len()).into_boxed_str());
        let d = dummy(&st.ttt, l);
        let v = slope.map_or(d.clone(), |(_, x)| times(&d, x));
        cols.push((h.to_string(), cells(&v)));
        terms.push(h.to_string());
        names.push((
            h,
            match slope {
                Some((name, _)) => format!("ttt::{l}:{name}"),
                None => format!("ttt::{l}"),
            },
        ));
    }
    (terms.join(" + "), names)
}

#[test]
fn event_study_interaction_equals_hand_built_indicators() {
    let st = study(11);
    let mut cols = base_columns(&st);
    let all = levels(&st.ttt);
    assert_eq!(all[0], -1000);
    let kept: Vec<i64> = all.iter().copied().filter(|&l| l != -1 && l != -1000).collect();
    let (terms, names) = hand(&st, &kept, Some(("treated", &st.treated)), &mut cols);
    let data = write_csv("event.csv", &cols);
    let got = fit(
        &data,
        "y ~ x + i(ttt, treated, ref = c(-1, -1000)) | firm + period",
        &["--vcov", "cluster:firm"],
    );
    let want = fit(
        &data,
        &format!("y ~ x + {terms} | firm + period"),
        &["--vcov", "cluster:firm"],
    );
    assert_same(&got, &want, &names);
    let shown: Vec<String> = coefficients(&got).into_iter().map(|c| c.0).collect();
    assert!(shown.contains(&"ttt::-5:treated".to_string()) && shown.contains(&"ttt::4:treated".to_string()));
    // a single reference: -1000 × treated is all zeros and is then removed as collinear
    let got = fit(&data, "y ~ x + i(ttt, treated, ref = -1) | firm + period", &[]);
    let dropped = got["collinear"].to_string();
    assert!(dropped.contains("ttt::-1000:treated"), "{dropped}");
    // i(f, x) with a numeric x has no automatic reference: every level's slope
    let mut cols = base_columns(&st);
    let (terms, names) = hand(&st, &all, Some(("x", &st.x)), &mut cols);
    let data = write_csv("slopes.csv", &cols);
    let got = fit(&data, "y ~ i(ttt, x) | firm", &[]);
    let want = fit(&data, &format!("y ~ {terms} | firm"), &[]);
    assert_same(&got, &want, &names);
}

#[test]
fn naked_i_drops_its_first_level_and_ref_keep_choose_levels() {
    let st = study(12);
    let all = levels(&st.ttt);
    let cases: Vec<(&str, &str, Vec<i64>)> = vec![
        // with fixed effects (or an intercept) a naked i(f) drops its first observed level
        ("y ~ i(ttt) | firm", " | firm", all[1..].to_vec()),
        ("y ~ i(ttt)", "", all[1..].to_vec()),
        // without either, every level
        ("y ~ i(ttt) - 1", " - 1", all.clone()),
        (
            "y ~ i(ttt, ref = 0) | firm",
            " | firm",
            all.iter().copied().filter(|&l| l != 0).collect(),
        ),
        ("y ~ i(ttt, keep = c(-2, 0, 3)) | firm", " | firm", vec![-2, 0, 3]),
        (
            "y ~ i(ttt, ref = -1, keep = c(-2, -1, 3)) | firm",
            " | firm",
            vec![-2, 3],
        ),
    ];
    for (formula, rest, kept) in cases {
        let mut cols = base_columns(&st);
        let (terms, names) = hand(&st, &kept, None, &mut cols);
        let data = write_csv("naked.csv", &cols);
        let got = fit(&data, formula, &["--vcov", "hetero"]);
        let want = fit(&data, &format!("y ~ {terms}{rest}"), &["--vcov", "hetero"]);
        assert_same(&got, &want, &names);
    }
}

#[test]
fn i_of_text_and_factor_interactions_name_as_fixest() {
    let st = study(13);
    let mut cols = base_columns(&st);
    // text levels in byte order: Retail < farming < mining; a naked i() drops Retail
    let f = dummy(&st.sector, &"farming");
    let m = dummy(&st.sector, &"mining");
    cols.push(("hf".into(), cells(&f)));
    cols.push(("hm".into(), cells(&m)));
    // i(sector, i.treated): observed (sector, treated) pairs, by sector then treated; the
    // first pair (Retail, 0) is the automatic reference
    let mut pairs: Vec<(&str, i64)> = st
        .sector
        .iter()
        .zip(&st.treated)
        .map(|(s, t)| (*s, *t as i64))
        .collect();
    pairs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()).then(a.1.cmp(&b.1)));
    pairs.dedup();
    let mut pair_terms = Vec::new();
    let mut names: Vec<(&'static str, String)> =
        vec![("hf", "sector::farming".into()), ("hm", "sector::mining".into())];
    for (k, (s, t)) in pairs.iter().enumerate().skip(1) {
        let h: &'static str = Box::leak(format!("p{k}").into_boxed_str());
        let v: Vec<f64> = st
            .sector
            .iter()
            .zip(&st.treated)
            .map(|(a, b)| f64::from(u8::from(a == s && *b as i64 == *t)))
            .collect();
        cols.push((h.to_string(), cells(&v)));
        pair_terms.push(h);
        names.push((h, format!("sector::{s}:treated::{t}")));
    }
    let data = write_csv("text-i.csv", &cols);
    let got = fit(&data, "y ~ x + i(sector) | period", &[]);
    let want = fit(&data, "y ~ x + hf + hm | period", &[]);
    assert_same(&got, &want, &names);
    let got = fit(&data, "y ~ x + i(sector, i.treated) | period", &[]);
    let want = fit(&data, &format!("y ~ x + {} | period", pair_terms.join(" + ")), &[]);
    assert_same(&got, &want, &names);
    // text values name text levels; ref2 drops levels of the second factor
    let got = fit(&data, "y ~ x + i(sector, ref = \"Retail\") | period", &[]);
    assert_same(&got, &fit(&data, "y ~ x + hf + hm | period", &[]), &names);
    let got = fit(&data, "y ~ x + i(sector, i.treated, ref2 = 0) | period", &[]);
    let shown: Vec<String> = coefficients(&got).into_iter().map(|c| c.0).collect();
    assert_eq!(
        shown,
        [
            "x",
            "sector::Retail:treated::1",
            "sector::farming:treated::1",
            "sector::mining:treated::1"
        ]
    );
}

#[test]
fn i_errors_name_the_term_and_the_value() {
    let st = study(14);
    let data = write_csv("i-errors.csv", &base_columns(&st));
    let e = fit_error(&data, "y ~ i(ttt, ref = 77) | firm", &[]);
    assert!(
        e.contains("ref = 77") && e.contains("`ttt`") && e.contains("-1000"),
        "{e}"
    );
    let e = fit_error(&data, "y ~ i(ttt, keep = \"x\") | firm", &[]);
    assert!(e.contains("keep = \"x\""), "{e}");
    let e = fit_error(&data, "y ~ i(ttt, bogus = 1) | firm", &[]);
    assert!(
        e.contains("unknown argument `bogus`") && e.contains("character 12"),
        "{e}"
    );
    let e = fit_error(&data, "y ~ i(ttt, x, treated) | firm", &[]);
    assert!(e.contains("one variable besides"), "{e}");
    let e = fit_error(&data, "y ~ i(ttt, ref = ) | firm", &[]);
    assert!(e.contains("a number or a quoted text"), "{e}");
    let e = fit_error(&data, "y ~ i(ttt):x | firm", &[]);
    assert!(e.contains("i(f, x)"), "{e}");
}
