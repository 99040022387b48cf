//! The patterns the simulator plants so that each of the study's tables has something to find
//! (issue 15), and the planted value each table's column should recover.
//!
//! Effects are set on the study's quality scale (Qua, min-max standardised within product) near
//! the paper's estimates (data/paper_values.json) and converted to log quality λ with
//! [`QUA_TO_LOG`]; the exact effect on Qua of each row is recomputed from the simulated flows
//! (standardisation depends on each product's spread), so the recorded truths are exact for the
//! simulated data, not the round numbers below.
//!
//! What a column should recover is not one number when effects are heterogeneous: fixed-effects
//! OLS weights each row's effect by its residual variance of Digtech. So the truth of a column
//! is the same regression run on the planted part of quality (no noise, no controls): the
//! within-pair, within-year projection of the planted component on the column's regressors, over
//! the rows the column keeps ([`projection`]). Channels correlated with Digtech (digital imports,
//! the co-applicant network, lags) enter that planted part, so the truths account for them.

use std::collections::{BTreeMap, HashMap};

/// λ per unit of Qua: the standardised quality divides λ by its product's spread (about 4.3 in
/// the simulated world), so an effect e on Qua is planted as e × 4.3 on λ.
pub const QUA_TO_LOG: f64 = 4.3;

/// Digtech's direct effect on Qua, the part common to every row. The channels that rise with
/// Digtech (more co-applicants and structural holes, digital imports, its lags) add about
/// 0.003 to what a regression of Qua on Digtech finds, so the direct part is set below zero to
/// bring Table 1 (5)'s planted value near the paper's 0.0012.
pub const BASE: f64 = -0.0018;
/// Table 5 (1)-(2): digital industry C39 0.0010 vs digitalising 0.0015.
pub const C39: f64 = -0.0004;
pub const NOT_C39: f64 = 0.0001;
/// Table 5 (3)-(4): weak IPR provinces 0.0028 vs strong 0.0013.
pub const WEAK_IPR: f64 = 0.0014;
pub const STRONG_IPR: f64 = -0.0001;
/// Table 6 (1)-(2): destinations in the year's NRI top 10% 0.0003 vs the rest 0.0014.
pub const NRI_TOP: f64 = -0.0008;
pub const NRI_OTHER: f64 = 0.0003;
/// Table 6 (3)-(4): high patent quality (firm Digtech2 above the median) 0.0040 vs low −0.0010.
pub const PQ_HIGH: f64 = 0.0025;
pub const PQ_LOW: f64 = -0.0025;
/// Table 8, by planted competition strategy (index = Table 7's code): 4 strong quality 0.0066,
/// 2 weak quality, 3 strong price 0.0031, 1 weak price (quality 0.0031 vs price 0.0001). The
/// table's columns run on Table 7's classification, a noisy reading of these groups, so its
/// planted values are over the classified groups ([`Row::strategy`]) and mix these.
pub const STRATEGY: [f64; 5] = [0.0, -0.0015, 0.0010, 0.0015, 0.0050];
/// Table 4 (1): firm-destination pairs exported in every year 0.0033.
pub const CONTINUING: f64 = 0.0017;
pub const NOT_CONTINUING: f64 = -0.0010;
/// Table 11 (1)-(2): volatile firm-destinations 0.0034 vs stable 0.0006.
pub const VOL_HIGH: f64 = 0.0018;
pub const VOL_LOW: f64 = -0.0008;
/// Table 4 (2)-(3): Digtech of t−1 and t−2 on Qua at t.
pub const LAG1: f64 = 0.0014;
pub const LAG2: f64 = 0.0029;
/// Table 13 (3): the supplier's Digtech on the client's Qua.
pub const SUPPLIER: f64 = 0.0291;
/// Table 13 (1): per co-applicant (Degree counts a firm's distinct co-applicants).
pub const DEGREE_PER_TIE: f64 = 0.0009;
/// Table 13 (2): per unit of structural holes, CI = 1 − Burt's constraint (higher is better
/// placed, as the paper reads its positive CI coefficient).
pub const HOLES: f64 = 0.0076;
/// Table 12 (2): dig_kinds and its interaction with Digtech on Qua.
pub const DIG_KINDS: f64 = 0.0112;
pub const DIG_KINDS_X_DIGTECH: f64 = 0.0005;
/// Table 10: a product new to a firm-destination gets this much more quality per unit of
/// Digtech (new products of digital innovators are better: qual_in, qual_sub1/2 > 0).
pub const NEW_PRODUCT: f64 = 0.0048;

/// What the row's Digtech effect depends on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Traits {
    pub c39: bool,
    /// In C35–C38 or C40 (Table 5's digitalising side; firms of other industries are in neither).
    pub digitalising: bool,
    pub weak_ipr: bool,
    pub nri_top: bool,
    /// Patent quality class as the panel measures it (`None`: no patents).
    pub pq_high: Option<bool>,
    /// Planted competition strategy (Table 7's code).
    pub strategy: u8,
    /// A stable destination of a firm exporting in every year: exported every year.
    pub continuing: bool,
    /// A firm-destination with volatile sales.
    pub volatile: bool,
}

/// Digtech's effect on Qua in a row with these traits: the common part plus one deviation per
/// heterogeneity the paper reports (additive, so each split recovers its own contrast).
pub fn digtech_effect(t: &Traits) -> f64 {
    let pick = |c: bool, a: f64, b: f64| if c { a } else { b };
    BASE + pick(t.c39, C39, NOT_C39)
        + pick(t.weak_ipr, WEAK_IPR, STRONG_IPR)
        + pick(t.nri_top, NRI_TOP, NRI_OTHER)
        + t.pq_high.map_or(0.0, |h| pick(h, PQ_HIGH, PQ_LOW))
        + STRATEGY[t.strategy as usize]
        + pick(t.continuing, CONTINUING, NOT_CONTINUING)
        + pick(t.volatile, VOL_HIGH, VOL_LOW)
}

/// One firm-year-destination of the simulated panel as the truth computation needs it: the
/// regressors as the panel will measure them, the groups of the split columns, and the planted
/// part of Qua and of the unit price.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub pair: (usize, usize),
    pub year: i64,
    pub dig: f64,
    pub dig_l1: f64,
    pub dig_l2: f64,
    pub dig_a: f64,
    pub dig_co: f64,
    pub dig_in: f64,
    /// NaN outside the co-applicant network (as the panel).
    pub degree: f64,
    pub ci: f64,
    /// ln(1 + digital HS8 products imported), 0 for non-importers.
    pub dig_kinds: f64,
    /// NaN without a supplier.
    pub dig_sup: f64,
    /// Table 2's instruments of the firm's city in this year (as the panel's `iv_post`,
    /// `iv_telephone`).
    pub iv_post: f64,
    pub iv_telephone: f64,
    /// Table 10's planted quality of the products kept and added since t−1 (value-weighted
    /// means of their planted r-Qua) and new less dropped; NaN where the pair was not exported
    /// in t−1.
    pub qual_keep: f64,
    pub qual_in: f64,
    pub qual_sub2: f64,
    pub traits: Traits,
    /// Exported to this destination in every panel year (the panel's `continuing`).
    pub continuing: bool,
    /// The panel's `vol_high` (None where Vol is missing).
    pub vol_high: Option<bool>,
    /// The firm's competition strategy as Table 7 classifies it from the simulated prices (the
    /// panel's `strategy`; None: too few destinations). Table 8's columns run on these groups,
    /// which mix the planted ones (`traits.strategy`), so its planted values are over them.
    pub strategy: Option<u8>,
    /// Planted part of Qua and of Table 3's standardised unit price.
    pub qua: f64,
    pub price: f64,
}

/// The regressors winsorised at their pooled 1st/99th percentiles over the rows, as the panel
/// winsorises its columns (the planted parts of the outcomes keep the values the data were
/// generated from): the truths are the regressions on the regressors the panel measures.
pub fn winsorize_regressors(rows: &mut [Row]) {
    let fields: [fn(&mut Row) -> &mut f64; 10] = [
        |r| &mut r.dig,
        |r| &mut r.dig_l1,
        |r| &mut r.dig_l2,
        |r| &mut r.dig_a,
        |r| &mut r.dig_co,
        |r| &mut r.dig_in,
        |r| &mut r.degree,
        |r| &mut r.ci,
        |r| &mut r.dig_kinds,
        |r| &mut r.dig_sup,
    ];
    for field in fields {
        let mut v: Vec<f64> = rows.iter_mut().map(|r| *field(r)).collect();
        crate::study::panel::winsorize(&mut v, None);
        for (r, x) in rows.iter_mut().zip(v) {
            *field(r) = x;
        }
    }
}

/// The coefficients of `y` on `xs` over the rows `keep` selects, after removing firm-destination
/// and year means (alternating projections): what fixed-effects OLS on the planted part of the
/// outcome estimates. `None` when too few rows or a singular design.
pub fn projection(
    rows: &[Row],
    keep: impl Fn(&Row) -> bool,
    y: fn(&Row) -> f64,
    xs: &[fn(&Row) -> f64],
) -> Option<Vec<f64>> {
    let mut cols = demeaned(rows, keep, y, xs)?;
    let k = xs.len();
    let yv = cols.pop()?;
    let mut a = vec![vec![0.0; k + 1]; k];
    for (i, row) in a.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            let cj = if j < k { &cols[j] } else { &yv };
            *v = cols[i].iter().zip(cj).map(|(p, q)| p * q).sum();
        }
    }
    solve(a)
}

/// The just-identified 2SLS coefficient of `y` on `x` with instrument `z`, fixed effects as in
/// [`projection`]: z̃'ỹ / z̃'x̃, what 2SLS on the planted part of the outcome estimates (the
/// instrument moves everything Digtech moves, so this is not the OLS truth). `None` when too
/// few rows or the instrument does not move `x`.
pub fn iv_projection(
    rows: &[Row],
    keep: impl Fn(&Row) -> bool,
    y: fn(&Row) -> f64,
    x: fn(&Row) -> f64,
    z: fn(&Row) -> f64,
) -> Option<f64> {
    let cols = demeaned(rows, keep, y, &[x, z])?;
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>();
    let (zx, zy) = (dot(&cols[1], &cols[0]), dot(&cols[1], &cols[2]));
    let zz = dot(&cols[1], &cols[1]);
    let xx = dot(&cols[0], &cols[0]);
    (zx.abs() > 1e-12 * (zz * xx).sqrt().max(1e-300)).then(|| zy / zx)
}

/// The columns `xs` then `y` over the kept rows where all are finite, with firm-destination and
/// year means removed. `None` when the rows are too few for `xs.len()` regressors.
fn demeaned(
    rows: &[Row],
    keep: impl Fn(&Row) -> bool,
    y: fn(&Row) -> f64,
    xs: &[fn(&Row) -> f64],
) -> Option<Vec<Vec<f64>>> {
    let sel: Vec<&Row> = rows
        .iter()
        .filter(|r| keep(r) && y(r).is_finite() && xs.iter().all(|x| x(r).is_finite()))
        .collect();
    if sel.len() <= xs.len() + 2 {
        return None;
    }
    let mut pairs: HashMap<(usize, usize), usize> = HashMap::new();
    let pair: Vec<usize> = sel
        .iter()
        .map(|r| {
            let n = pairs.len();
            *pairs.entry(r.pair).or_insert(n)
        })
        .collect();
    let year: Vec<usize> = sel.iter().map(|r| (r.year - 2000).max(0) as usize).collect();
    let mut cols: Vec<Vec<f64>> = xs.iter().map(|x| sel.iter().map(|r| x(r)).collect()).collect();
    cols.push(sel.iter().map(|r| y(r)).collect());
    for c in &mut cols {
        demean_two_way(c, &pair, pairs.len(), &year);
    }
    Some(cols)
}

/// Remove pair and year means by alternating projections (the panel is nearly balanced within
/// pairs, so a few sweeps converge), until the means removed fall below 1e-9 of the column's
/// size: the truths need far fewer digits than the estimates' standard errors.
fn demean_two_way(v: &mut [f64], pair: &[usize], n_pairs: usize, year: &[usize]) {
    let n_years = year.iter().max().map_or(0, |m| m + 1);
    let size = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    for _ in 0..50 {
        let mut change = 0.0f64;
        for (ids, levels) in [(pair, n_pairs), (year, n_years)] {
            let (mut sum, mut cnt) = (vec![0.0; levels], vec![0usize; levels]);
            for (x, &g) in v.iter().zip(ids) {
                sum[g] += x;
                cnt[g] += 1;
            }
            for (x, &g) in v.iter_mut().zip(ids) {
                let m = sum[g] / cnt[g] as f64;
                change = change.max(m.abs());
                *x -= m;
            }
        }
        if change <= 1e-9 * size {
            break;
        }
    }
}

/// Gauss–Jordan on the augmented normal equations [X'X | X'y].
fn solve(mut a: Vec<Vec<f64>>) -> Option<Vec<f64>> {
    let k = a.len();
    for c in 0..k {
        let p = (c..k).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[p][c].abs() < 1e-12 {
            return None;
        }
        a.swap(c, p);
        for i in 0..k {
            if i != c {
                let f = a[i][c] / a[c][c];
                for j in c..=k {
                    a[i][j] -= f * a[c][j];
                }
            }
        }
    }
    Some((0..k).map(|i| a[i][k] / a[i][i]).collect())
}

/// The truth of every column the specification checks (keys of `truth.json`'s `planted`, named
/// in `data/replicate_spec.json`), the planted constants (`plant_*`, on Qua), and the signs of
/// the patterns planted without a magnitude (`sign:*`, ±1).
pub fn truths(rows: &[Row]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let qua: fn(&Row) -> f64 = |r| r.qua;
    let dig: fn(&Row) -> f64 = |r| r.dig;
    let mut put = |key: &str, keep: &dyn Fn(&Row) -> bool, y: fn(&Row) -> f64, xs: &[fn(&Row) -> f64]| {
        if let Some(b) = projection(rows, keep, y, xs) {
            out.insert(key.to_string(), b[0]);
        }
    };
    put("digtech_on_qua", &|_| true, qua, &[dig]);
    put("digtech_on_price", &|_| true, |r| r.price, &[dig]);
    put("digtech_a_on_qua", &|_| true, qua, &[|r| r.dig_a]);
    put("digtech_co_on_qua", &|_| true, qua, &[|r| r.dig_co]);
    put("digtech_in_on_qua", &|_| true, qua, &[|r| r.dig_in]);
    put("digtech_l1_on_qua", &|_| true, qua, &[|r| r.dig_l1]);
    put("digtech_l2_on_qua", &|_| true, qua, &[|r| r.dig_l2]);
    put("digtech_on_qua_continuing", &|r| r.continuing, qua, &[dig]);
    put("digtech_on_qua_c39", &|r| r.traits.c39, qua, &[dig]);
    put("digtech_on_qua_digitalising", &|r| r.traits.digitalising, qua, &[dig]);
    put("digtech_on_qua_strong_ipr", &|r| !r.traits.weak_ipr, qua, &[dig]);
    put("digtech_on_qua_weak_ipr", &|r| r.traits.weak_ipr, qua, &[dig]);
    put("digtech_on_qua_nri_top10", &|r| r.traits.nri_top, qua, &[dig]);
    put("digtech_on_qua_nri_other", &|r| !r.traits.nri_top, qua, &[dig]);
    put(
        "digtech_on_qua_pq_high",
        &|r| r.traits.pq_high == Some(true),
        qua,
        &[dig],
    );
    put(
        "digtech_on_qua_pq_low",
        &|r| r.traits.pq_high == Some(false),
        qua,
        &[dig],
    );
    // Table 8: over the classified groups its columns run on (the planted effect follows the
    // planted strategy, so each group's value mixes those of the planted groups it holds)
    put("digtech_on_qua_strong_quality", &|r| r.strategy == Some(4), qua, &[dig]);
    put("digtech_on_qua_strong_price", &|r| r.strategy == Some(3), qua, &[dig]);
    put(
        "digtech_on_qua_quality",
        &|r| matches!(r.strategy, Some(2 | 4)),
        qua,
        &[dig],
    );
    put(
        "digtech_on_qua_price",
        &|r| matches!(r.strategy, Some(1 | 3)),
        qua,
        &[dig],
    );
    put("digtech_on_qua_vol_high", &|r| r.vol_high == Some(true), qua, &[dig]);
    put("digtech_on_qua_vol_low", &|r| r.vol_high == Some(false), qua, &[dig]);
    put("supplier_digtech_on_qua", &|_| true, qua, &[|r| r.dig_sup]);
    put("digtech_on_qual_keep", &|_| true, |r| r.qual_keep, &[dig]);
    put("digtech_on_qual_in", &|_| true, |r| r.qual_in, &[dig]);
    put("digtech_on_qual_sub2", &|_| true, |r| r.qual_sub2, &[dig]);
    let network = |r: &Row| r.degree.is_finite() && r.ci.is_finite();
    put("degree_on_qua", &network, qua, &[|r| r.degree, dig]);
    put("ci_on_qua", &network, qua, &[|r| r.ci, dig]);
    if let Some(b) = projection(
        rows,
        |r| r.dig_kinds > 0.0,
        qua,
        &[dig, |r| r.dig_kinds, |r| r.dig * r.dig_kinds],
    ) {
        out.insert("digtech_x_dig_kinds_on_qua".into(), b[2]);
    }
    // Table 2: 2SLS with each instrument
    for (key, z) in [
        ("digtech_on_qua_iv_post", (|r| r.iv_post) as fn(&Row) -> f64),
        ("digtech_on_qua_iv_telephone", |r| r.iv_telephone),
    ] {
        if let Some(b) = iv_projection(rows, |_| true, qua, dig, z) {
            out.insert(key.to_string(), b);
        }
    }
    // the row shares the simulator aims at the paper's (Tables 4, 5, 12)
    let share = |f: fn(&Row) -> bool| rows.iter().filter(|r| f(r)).count() as f64 / rows.len().max(1) as f64;
    out.insert("share_rows_continuing".into(), share(|r| r.continuing));
    out.insert("share_rows_weak_ipr".into(), share(|r| r.traits.weak_ipr));
    out.insert("share_rows_digtech_a".into(), share(|r| r.dig_a.is_finite()));
    out.insert(
        "share_rows_industry_groups".into(),
        share(|r| r.traits.c39 || r.traits.digitalising),
    );
    out.insert("share_rows_digital_importers".into(), share(|r| r.dig_kinds > 0.0));
    out.insert("share_rows_nri_top10".into(), share(|r| r.traits.nri_top));
    for (k, v) in constants() {
        out.insert(k, v);
    }
    out
}

/// The planted constants (on Qua) and the planted signs of patterns without a magnitude.
fn constants() -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = [
        ("plant_base", BASE),
        ("plant_c39", C39),
        ("plant_not_c39", NOT_C39),
        ("plant_weak_ipr", WEAK_IPR),
        ("plant_strong_ipr", STRONG_IPR),
        ("plant_nri_top10", NRI_TOP),
        ("plant_nri_other", NRI_OTHER),
        ("plant_pq_high", PQ_HIGH),
        ("plant_pq_low", PQ_LOW),
        ("plant_strong_quality", STRATEGY[4]),
        ("plant_weak_quality", STRATEGY[2]),
        ("plant_strong_price", STRATEGY[3]),
        ("plant_weak_price", STRATEGY[1]),
        ("plant_continuing", CONTINUING),
        ("plant_not_continuing", NOT_CONTINUING),
        ("plant_volatile", VOL_HIGH),
        ("plant_stable", VOL_LOW),
        ("plant_lag1", LAG1),
        ("plant_lag2", LAG2),
        ("plant_supplier", SUPPLIER),
        ("plant_degree_per_tie", DEGREE_PER_TIE),
        ("plant_holes", HOLES),
        ("plant_dig_kinds", DIG_KINDS),
        ("plant_dig_kinds_x_digtech", DIG_KINDS_X_DIGTECH),
        ("plant_new_product", NEW_PRODUCT),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), *v))
    .collect();
    // Table 10: products persist and enter more with Digtech, new ones beat dropped ones; Table 11:
    // firm-wide sales shocks shrink with Digtech; Table 12: digital imports rise with Digtech
    for (k, s) in SIGNS {
        v.push((format!("sign:{k}"), *s));
    }
    v
}

/// Patterns planted by direction only (their size follows from the simulated mechanism).
pub const SIGNS: &[(&str, f64)] = &[
    ("quant_keep", 1.0),
    ("quant_in", 1.0),
    ("quant_out", -1.0),
    ("qual_sub1", 1.0),
    ("vol2", -1.0),
    ("dig_kinds", 1.0),
    ("dig_counties", 1.0),
    ("dig_value", 1.0),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The projection recovers a variance-weighted average of heterogeneous slopes and removes
    /// pair and year effects.
    #[test]
    fn projection_recovers_planted_slopes_through_fixed_effects() {
        let mut s = crate::rng::Stream::new(3, 1);
        let mut rows = vec![];
        for p in 0..200 {
            let a = s.normal();
            for year in 2008..2015 {
                let dig = s.uniform() * 2.0 + 0.3 * (year - 2008) as f64;
                let slope = if p % 2 == 0 { 0.01 } else { 0.03 };
                rows.push(Row {
                    pair: (p, 0),
                    year,
                    dig,
                    qua: a + 0.1 * (year - 2008) as f64 + slope * dig,
                    traits: Traits {
                        c39: p % 2 == 0,
                        ..Default::default()
                    },
                    ..Default::default()
                });
            }
        }
        let b = |keep: fn(&Row) -> bool| projection(&rows, keep, |r| r.qua, &[|r| r.dig]).unwrap()[0];
        assert!((b(|r| r.traits.c39) - 0.01).abs() < 1e-9);
        assert!((b(|r| !r.traits.c39) - 0.03).abs() < 1e-9);
        let all = b(|_| true);
        assert!(all > 0.015 && all < 0.025, "{all}");
    }

    /// 2SLS on the planted part: an effect the instrument moves besides x (as lagged Digtech)
    /// enters the IV value in proportion to the instrument's pull on it, while x's own noise
    /// does not; OLS gives something else.
    #[test]
    fn iv_projection_counts_what_the_instrument_moves() {
        let mut s = crate::rng::Stream::new(5, 2);
        let mut rows = vec![];
        for p in 0..600 {
            let a = s.normal();
            let slope = 0.5 + s.uniform();
            for year in 2008..2015 {
                let z = slope * (year - 2008) as f64;
                let w = 0.5 * z;
                let dig = z + s.normal();
                rows.push(Row {
                    pair: (p, 0),
                    year,
                    dig,
                    iv_post: z,
                    qua: a + 0.1 * (year - 2008) as f64 + 0.01 * dig + 0.03 * w,
                    ..Default::default()
                });
            }
        }
        let iv = iv_projection(&rows, |_| true, |r| r.qua, |r| r.dig, |r| r.iv_post).unwrap();
        // z̃'x̃ = z̃'z̃ exactly in expectation; the noise of x leaves a small sampling error
        assert!((iv - 0.025).abs() < 0.002, "{iv}");
        let ols = projection(&rows, |_| true, |r| r.qua, &[|r| r.dig]).unwrap()[0];
        assert!(ols < 0.02, "{ols}");
        let none = iv_projection(&rows, |_| true, |r| r.qua, |r| r.dig, |_| 1.0);
        assert!(
            none.is_none(),
            "an instrument absorbed by the fixed effects moves nothing"
        );
    }

    /// Table 8's planted values are over the groups its columns run on, Table 7's classification
    /// (`Row::strategy`), not over the planted strategies the effects follow: here a third of
    /// the firms have strong and weak swapped and a third quality and price as well, so the two
    /// differ by far more than the projection's precision.
    #[test]
    fn strategy_truths_are_over_the_classified_groups() {
        let mut s = crate::rng::Stream::new(7, 3);
        let mut rows = vec![];
        for p in 0..400 {
            let planted = [1u8, 2, 3, 4][p % 4];
            // a third classified as planted, a third with strong and weak swapped, a third with
            // quality and price swapped and strong and weak too
            let classified = match (p / 4) % 3 {
                0 => planted,
                1 => [0, 3, 4, 1, 2][planted as usize],
                _ => [0, 4, 3, 2, 1][planted as usize],
            };
            let a = s.normal();
            for year in 2008..2015 {
                let dig = s.uniform() * 2.0 + 0.2 * (year - 2008) as f64;
                rows.push(Row {
                    pair: (p, 0),
                    year,
                    dig,
                    qua: a + 0.1 * (year - 2008) as f64 + STRATEGY[planted as usize] * dig,
                    traits: Traits {
                        strategy: planted,
                        ..Default::default()
                    },
                    strategy: Some(classified),
                    ..Default::default()
                });
            }
        }
        let t = truths(&rows);
        let over = |keep: &dyn Fn(&Row) -> bool| projection(&rows, keep, |r| r.qua, &[|r| r.dig]).unwrap()[0];
        let cases: [(&str, &dyn Fn(u8) -> bool); 4] = [
            ("strong_quality", &|c| c == 4),
            ("strong_price", &|c| c == 3),
            ("quality", &|c| matches!(c, 2 | 4)),
            ("price", &|c| matches!(c, 1 | 3)),
        ];
        for (name, group) in cases {
            let truth = t[&format!("digtech_on_qua_{name}")];
            let classified = over(&|r| r.strategy.is_some_and(group));
            let planted = over(&|r| group(r.traits.strategy));
            assert!((truth - classified).abs() < 1e-12, "{name}: {truth} vs {classified}");
            assert!(
                (classified - planted).abs() > 5e-4,
                "{name}: the test must tell the groups apart ({classified} vs {planted})"
            );
        }
        // an unclassified firm is in no group
        let mut unclassified = rows.clone();
        unclassified.iter_mut().for_each(|r| r.strategy = None);
        assert!(!truths(&unclassified).contains_key("digtech_on_qua_quality"));
    }

    #[test]
    fn deviations_add_to_the_common_effect() {
        let low = Traits {
            strategy: 1,
            ..Default::default()
        };
        let high = Traits { strategy: 4, ..low };
        assert!((digtech_effect(&high) - digtech_effect(&low) - (STRATEGY[4] - STRATEGY[1])).abs() < 1e-15);
    }
}
