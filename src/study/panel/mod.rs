//! `fegpu build-panel`: the firm-year-destination analysis panel from the raw tables.
//!
//! Data flow (each step prints its counts): match customs exporters and importers to survey
//! firms ([`super::matching`]) → aggregate export lines to firm × HS6 × destination × year flows
//! → export quality for all products in one batched job ([`super::quality`]) → aggregate to
//! firm-year-destination (value-weighted quality Qua and unit price) → product dynamics, export
//! volatility, core/non-core quality → digital patents and network positions
//! ([`super::patents`]) → digital imports → controls, instruments, split variables → competition
//! strategy from batched per-firm price regressions → supplier links → winsorisation.
//! Every column is documented in `data/panel_schema.csv` (`fegpu build-panel --describe`).

mod build;
mod customs;

pub use build::build_panel;

use std::collections::{BTreeMap, HashSet};

use crate::data::load;
use crate::error::{Error, Result};
use crate::linalg::{cholesky_drop, cholesky_inverse, Mat};

/// The panel's documented columns: name, definition, source, unit.
pub const SCHEMA: &str = include_str!("../../../data/panel_schema.csv");

/// How continuous variables are winsorised at the 1st and 99th percentiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Winsorize {
    /// Percentiles over the whole panel (the study's choice).
    Pooled,
    /// Percentiles within each year.
    ByYear,
    /// No winsorisation.
    None,
}

/// Where σ comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SigmaSource {
    /// Broda–Weinstein (2006) by HS3 (the study's choice).
    Bw,
    /// Per-product 2SLS with the firm's price in its other markets as instrument; BW fallback.
    Estimate,
}

#[derive(Debug, Clone)]
pub struct PanelOptions {
    pub winsorize: Winsorize,
    pub sigma: SigmaSource,
    /// Also time the quality step as a loop of per-product fits.
    pub compare_loop: bool,
}

impl Default for PanelOptions {
    fn default() -> Self {
        PanelOptions {
            winsorize: Winsorize::Pooled,
            sigma: SigmaSource::Bw,
            compare_loop: false,
        }
    }
}

/// Counts and timings of a build.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PanelReport {
    pub steps: Vec<(String, String)>,
    pub seconds: Vec<(String, f64)>,
    pub rows: usize,
    pub firms: usize,
    pub products: usize,
    pub quality_batched_s: f64,
    pub quality_loop_s: Option<f64>,
    pub quality_loop_max_diff: Option<f64>,
    #[serde(skip)]
    pub export_match: super::matching::MatchReport,
}

impl PanelReport {
    fn step(&mut self, name: &str, what: String, t0: std::time::Instant) {
        eprintln!("  {name:<22} {what}");
        self.steps.push((name.into(), what));
        self.seconds.push((name.into(), t0.elapsed().as_secs_f64()));
    }
}

/// The schema rows (name, definition, source, unit).
pub fn schema() -> Vec<[String; 4]> {
    SCHEMA
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f = split_csv(l);
            [f[0].clone(), f[1].clone(), f[2].clone(), f[3].clone()]
        })
        .collect()
}

fn split_csv(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for ch in line.chars() {
        match ch {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    while out.len() < 4 {
        out.push(String::new());
    }
    out
}

/// The schema as an aligned text table.
pub fn describe() -> String {
    let rows = schema();
    let w = rows.iter().map(|r| r[0].chars().count()).max().unwrap_or(4);
    let mut s = format!("{:<w$}  {:<10} {:<26} definition\n", "column", "unit", "source");
    for r in rows {
        s.push_str(&format!("{:<w$}  {:<10} {:<26} {}\n", r[0], r[3], r[2], r[1]));
    }
    s
}

/// Survey record of one firm-year (the first record where the survey has duplicates).
#[derive(Debug, Clone)]
struct FirmRecord {
    province: String,
    /// Prefecture city (Table 2's instruments are per city).
    city: String,
    industry: String,
    founded: f64,
    assets: f64,
    fixed: f64,
    employees: f64,
    interest: f64,
    profit: f64,
    revenue: f64,
    output: f64,
    liabilities: f64,
}

fn need_years(t: &load::Table, col: &str, path: &str) -> Result<Vec<i64>> {
    t.numeric(col)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            if v.is_finite() {
                Ok(v as i64)
            } else {
                Err(Error::column(
                    col,
                    format!("missing or non-numeric in {path}, row {}", i + 1),
                ))
            }
        })
        .collect()
}

fn need_strings(t: &load::Table, col: &str, path: &str) -> Result<Vec<String>> {
    t.strings(col)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| v.ok_or_else(|| Error::column(col, format!("missing in {path}, row {}", i + 1))))
        .collect()
}

/// Quantile (linear interpolation between order statistics, numpy's default) of sorted data.
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let h = (sorted.len() - 1) as f64 * p;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Clamp `v` to its 1st and 99th percentiles, within each group when `groups` is given
/// (missing values stay missing).
pub fn winsorize(v: &mut [f64], groups: Option<&[i64]>) {
    let mut by: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for i in 0..v.len() {
        by.entry(groups.map_or(0, |g| g[i])).or_default().push(i);
    }
    for rows in by.values() {
        let mut s: Vec<f64> = rows.iter().map(|&i| v[i]).filter(|x| x.is_finite()).collect();
        if s.len() < 3 {
            continue;
        }
        s.sort_by(f64::total_cmp);
        let (lo, hi) = (quantile(&s, 0.01), quantile(&s, 0.99));
        for &i in rows {
            if v[i].is_finite() {
                v[i] = v[i].clamp(lo, hi);
            }
        }
    }
}

/// Product dynamics of one firm-destination between t−1 and t (Table 10): counts of kept, new
/// and dropped HS6 products, the transition rate (new + dropped)/(products at t + at t−1), and
/// the quality of each set measured as Qua is (eq. 8; the paper: "使用已建立的出口产品质量评估
/// 方法"): r-Qua weighted by export value, kept and new products with their values at t, dropped
/// products with their values at t−1, their last year.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dynamics {
    pub keep: f64,
    pub added: f64,
    pub dropped: f64,
    pub trans: f64,
    pub qual_keep: f64,
    pub qual_in: f64,
    pub qual_out: f64,
}

impl Dynamics {
    /// `prev` and `now` map each HS6 product to its (r-Qua, export value) in t−1 and t.
    pub fn between(prev: &BTreeMap<u32, (f64, f64)>, now: &BTreeMap<u32, (f64, f64)>) -> Dynamics {
        // Σ v r / Σ v over the products with a standardised quality
        let weighted = |v: Vec<(f64, f64)>| {
            let (wq, w) = v
                .iter()
                .filter(|(r, _)| r.is_finite())
                .fold((0.0, 0.0), |(a, b), (r, x)| (a + x * r, b + x));
            if w > 0.0 {
                wq / w
            } else {
                f64::NAN
            }
        };
        let kept: Vec<(f64, f64)> = now
            .iter()
            .filter(|(g, _)| prev.contains_key(g))
            .map(|(_, q)| *q)
            .collect();
        let added: Vec<(f64, f64)> = now
            .iter()
            .filter(|(g, _)| !prev.contains_key(g))
            .map(|(_, q)| *q)
            .collect();
        let dropped: Vec<(f64, f64)> = prev
            .iter()
            .filter(|(g, _)| !now.contains_key(g))
            .map(|(_, q)| *q)
            .collect();
        let (k, a, d) = (kept.len() as f64, added.len() as f64, dropped.len() as f64);
        Dynamics {
            keep: k,
            added: a,
            dropped: d,
            trans: (a + d) / (now.len() + prev.len()) as f64,
            qual_keep: weighted(kept),
            qual_in: weighted(added),
            qual_out: weighted(dropped),
        }
    }

    /// qual_sub1 = 1[quality(new) > quality(dropped)], qual_sub2 = quality(new) − quality(dropped).
    pub fn substitution(&self) -> (f64, f64) {
        let d = self.qual_in - self.qual_out;
        (
            if d.is_finite() {
                (d > 0.0) as u8 as f64
            } else {
                f64::NAN
            },
            d,
        )
    }
}

/// Export volatility per firm-destination-year: |g_t − mean_t g|, where g_t = Δ ln export value
/// between consecutive years of that firm-destination (Mao & Wang 2023's deviation form);
/// NaN in a spell's first year and for firm-destinations with fewer than two growth rates.
pub fn volatility(series: &[(i64, f64)]) -> Vec<f64> {
    let mut g = vec![f64::NAN; series.len()];
    for k in 1..series.len() {
        if series[k].0 == series[k - 1].0 + 1 && series[k].1 > 0.0 && series[k - 1].1 > 0.0 {
            g[k] = series[k].1.ln() - series[k - 1].1.ln();
        }
    }
    let fin: Vec<f64> = g.iter().copied().filter(|x| x.is_finite()).collect();
    if fin.len() < 2 {
        return vec![f64::NAN; series.len()];
    }
    let m = fin.iter().sum::<f64>() / fin.len() as f64;
    g.iter().map(|x| (x - m).abs()).collect()
}

/// Second export-volatility measure (Table 11 (3)–(4); "overseas-sales stability" after Duan et
/// al. 2022, whose formula the paper does not give): for each year t of a firm's series of total
/// export value (all destinations, sorted by year), the coefficient of variation SD/mean of its
/// values in the years t−2, t−1, t that it exports, with at least two such years (NaN
/// otherwise). It varies within a firm over time, so the firm fixed effect does not absorb it;
/// higher means less stable overseas sales, as Vol.
pub fn sales_stability(series: &[(i64, f64)]) -> Vec<f64> {
    series
        .iter()
        .map(|&(t, _)| {
            let w: Vec<f64> = series
                .iter()
                .filter(|(y, v)| (t - 2..=t).contains(y) && *v > 0.0)
                .map(|(_, v)| *v)
                .collect();
            if w.len() < 2 {
                return f64::NAN;
            }
            let n = w.len() as f64;
            let m = w.iter().sum::<f64>() / n;
            (w.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n).sqrt() / m
        })
        .collect()
}

/// Table 7's classification of every firm with enough destinations: per firm-destination the
/// mean over its years of the row's relative log unit price, regressed ([`strategy`]) on the
/// destination's [ln distance, ln GDP, ln GDP per capita] (means over the panel years) from
/// `place`; a destination `place` does not know is left out. `prices` gives (firm, destination,
/// relative log price) per firm-year-destination. The panel build (step 8) and the simulator's
/// planted values of Table 8 (which must be over the groups the table's columns run on) both
/// classify with this.
pub fn firm_strategies<F: Ord + Copy, D: Ord + Copy>(
    prices: impl IntoIterator<Item = (F, D, f64)>,
    place: impl Fn(D) -> Option<[f64; 3]>,
) -> BTreeMap<F, u8> {
    let mut firm_dest: BTreeMap<(F, D), (f64, usize)> = BTreeMap::new(); // price sum, years
    for (f, d, p) in prices {
        let e = firm_dest.entry((f, d)).or_default();
        e.0 += p;
        e.1 += 1;
    }
    let mut per_firm: BTreeMap<F, Vec<[f64; 5]>> = BTreeMap::new();
    for ((f, d), (ps, n)) in firm_dest {
        if let Some([dist, gdp, gdppc]) = place(d) {
            per_firm
                .entry(f)
                .or_default()
                .push([dist, gdp, gdppc, ps / n as f64, 0.0]);
        }
    }
    per_firm
        .iter()
        .filter_map(|(f, rows)| strategy(rows).map(|(c, _, _)| (*f, c)))
        .collect()
}

/// Competition strategy of one firm (Table 7) from OLS of its destination prices on ln distance,
/// ln GDP and ln GDP per capita: 4 strong quality (β_dist > 0, p < 0.1), 2 weak quality
/// (β_dist > 0), 3 strong price (β_dist < 0, p < 0.1), 1 weak price. Returns (category, β, p);
/// `None` with fewer than 6 destinations or a singular design.
pub fn strategy(rows: &[[f64; 5]]) -> Option<(u8, f64, f64)> {
    let n = rows.len();
    if n < 6 {
        return None;
    }
    let mut xtx = Mat::zeros(4);
    let mut xty = [0.0; 4];
    for r in rows {
        let x = [1.0, r[0], r[1], r[2]];
        for a in 0..4 {
            xty[a] += x[a] * r[3];
            for b in 0..4 {
                xtx.set(a, b, xtx.get(a, b) + x[a] * x[b]);
            }
        }
    }
    let ch = cholesky_drop(&xtx, 1e-10);
    if ch.kept.len() < 4 {
        return None;
    }
    let inv = cholesky_inverse(&ch.l);
    let beta = inv.mul_vec(&xty);
    let rss: f64 = rows
        .iter()
        .map(|r| {
            let f = beta[0] + beta[1] * r[0] + beta[2] * r[1] + beta[3] * r[2];
            (r[3] - f).powi(2)
        })
        .sum();
    let df = (n - 4) as f64;
    let se = (rss / df * inv.get(1, 1)).sqrt();
    let p = if se > 0.0 {
        crate::stats::t_two_sided_p(beta[1] / se, df)
    } else {
        0.0
    };
    let strong = p < 0.1;
    let cat = match (beta[1] > 0.0, strong) {
        (true, true) => 4,
        (true, false) => 2,
        (false, true) => 3,
        (false, false) => 1,
    };
    Some((cat, beta[1], p))
}

/// Controls of a firm-year (STUDY.md): Age = ln(year − founding + 1), Finance = interest/assets,
/// Profit = operating profit/revenue, Klratio = ln(fixed assets/employees), Turnover =
/// revenue/assets, lnLP = ln(output/employees), Lev = liabilities/assets. Non-positive
/// denominators give NaN (the row then drops from models that use the control).
fn firm_controls(r: &FirmRecord, year: i64) -> [f64; 7] {
    let div = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let ln = |v: f64| if v > 0.0 { v.ln() } else { f64::NAN };
    [
        ln(year as f64 - r.founded + 1.0),
        div(r.interest, r.assets),
        div(r.profit, r.revenue),
        ln(div(r.fixed, r.employees)),
        div(r.revenue, r.assets),
        ln(div(r.output, r.employees)),
        div(r.liabilities, r.assets),
    ]
}

/// Table 12's 26 keywords for tangible digital products in Chinese customs product names. The
/// paper selects 26 "representative tangible product keywords" after OECD (2020) and CAICT's
/// digital-economy white papers without listing them; these are ours, chosen the same way:
/// chips and components, computers and their peripherals, communication equipment, displays,
/// sensors and digital imaging.
pub const DIGITAL_KEYWORDS: [&str; 26] = [
    "集成电路",
    "芯片",
    "半导体",
    "晶体管",
    "二极管",
    "处理器",
    "存储器",
    "印刷电路",
    "计算机",
    "服务器",
    "显示器",
    "液晶",
    "触摸屏",
    "打印机",
    "扫描仪",
    "路由器",
    "交换机",
    "调制解调器",
    "通信",
    "手机",
    "基站",
    "光纤",
    "传感器",
    "摄像",
    "数码",
    "数字",
];

/// HS chapters where the tariff nomenclature (《进出口税则商品及品目注释》) classes tangible digital
/// goods: 84 (computers and office machines), 85 (electronic and communication equipment,
/// components) and 90 (optical, measuring and sensing instruments, displays).
pub const DIGITAL_HS_CHAPTERS: [&str; 3] = ["84", "85", "90"];

/// Is an imported HS8 line a digital product? As the paper (§四(五)3): a line whose product name
/// holds one of [`DIGITAL_KEYWORDS`], less the lines wrongly classed as digital by their name —
/// those whose HS code lies outside [`DIGITAL_HS_CHAPTERS`] (a plastic tray "for integrated
/// circuits" in chapter 39, a textbook on "digital" circuits in chapter 49) — merged with the
/// OECD ICT goods (HS6 code in `ict`).
pub fn is_digital_import(hs8: &str, name: &str, ict: &HashSet<String>) -> bool {
    let by_code = hs8.get(..6).is_some_and(|h| ict.contains(h));
    let by_name = DIGITAL_KEYWORDS.iter().any(|k| name.contains(k))
        && hs8.get(..2).is_some_and(|c| DIGITAL_HS_CHAPTERS.contains(&c));
    by_code || by_name
}

fn ict_codes() -> HashSet<String> {
    include_str!("../../../data/ict_goods_hs2017.csv")
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .map(|s| s.trim().to_string())
        .collect()
}

type Key3 = (i64, i64, u32); // firm, year, destination index

/// One firm-year-destination's products, accumulated flow by flow.
#[derive(Debug, Clone)]
pub struct Destination {
    pub value: f64,
    wq: f64,
    wq_v: f64,
    wp: f64,
    wr: f64,
    wr_v: f64,
    /// r-Qua of the firm's core product here (NaN if not exported here).
    pub core_q: f64,
    non_wq: f64,
    non_v: f64,
    /// HS6 product → (r-Qua, export value).
    pub products: BTreeMap<u32, (f64, f64)>,
}

impl Destination {
    pub fn new() -> Destination {
        Destination {
            value: 0.0,
            wq: 0.0,
            wq_v: 0.0,
            wp: 0.0,
            wr: 0.0,
            wr_v: 0.0,
            core_q: f64::NAN,
            non_wq: 0.0,
            non_v: 0.0,
            products: BTreeMap::new(),
        }
    }

    /// Add product `g` with export value `v`, standardised quality `r` (NaN when its product
    /// has no spread), log price relative to its product-year mean (Table 7), standardised unit
    /// price `r_price` ([`standardised_prices`]; NaN without spread), and whether it is the
    /// firm's core product that year.
    pub fn add(&mut self, g: u32, v: f64, r: f64, rel_price: f64, r_price: f64, core: bool) {
        self.value += v;
        self.wp += v * rel_price;
        if r_price.is_finite() {
            self.wr += v * r_price;
            self.wr_v += v;
        }
        self.products.insert(g, (r, v));
        if r.is_finite() {
            self.wq += v * r;
            self.wq_v += v;
            if core {
                self.core_q = r;
            } else {
                self.non_wq += v * r;
                self.non_v += v;
            }
        }
    }

    /// Qua = Σ_g (v_g / Σ v) r-Qua_g over products with a standardised quality.
    pub fn qua(&self) -> f64 {
        if self.wq_v > 0.0 {
            self.wq / self.wq_v
        } else {
            f64::NAN
        }
    }

    /// Table 3's Price: Σ_g (v_g / Σ v) r-Price_g over products with a standardised price, as
    /// Qua ("以产品出口金额为权重，将出口产品单位价格累加至企业—年份—目的国层面").
    pub fn price(&self) -> f64 {
        if self.wr_v > 0.0 {
            self.wr / self.wr_v
        } else {
            f64::NAN
        }
    }

    /// Value-weighted log unit price relative to each product's mean that year (Table 7's
    /// competition strategy regressions).
    pub fn rel_log_price(&self) -> f64 {
        self.wp / self.value
    }

    /// Value-weighted r-Qua of the non-core products.
    pub fn qua_noncore(&self) -> f64 {
        if self.non_v > 0.0 {
            self.non_wq / self.non_v
        } else {
            f64::NAN
        }
    }
}

impl Default for Destination {
    fn default() -> Self {
        Destination::new()
    }
}

/// Table 3's unit price of each flow standardised within its HS6 product as quality is (the
/// paper prices "with the logic of the quality measure"): r-Price = (ln p − min_g)/(max_g −
/// min_g) over the product's flows, unit-free (products are priced per kilogram, per piece, …)
/// and in [0, 1]; NaN for a product with a single price. `product` indexes products from 0.
pub fn standardised_prices(ln_p: &[f64], product: &[u32]) -> Vec<f64> {
    let groups = product.iter().max().map_or(0, |m| *m as usize + 1);
    super::quality::min_max_within(ln_p, product, groups)
}

/// The numeric variables winsorised at their 1st/99th percentiles: every continuous or count
/// variable — outcomes, Digtech and its variants, controls, instruments, mechanism and network
/// variables — as the paper (§三: "对所有数值型变量进行了1%至99%分位数的截尾处理"). Identifiers,
/// years, 0/1 indicators and category codes are not numeric measures and are left as they are
/// (clamping an indicator with under 1% of ones would turn them all into zeros), and neither
/// are Table 2's instruments, fixed functions of the cities' 1984 records and broadband users
/// that clamping at the sample's percentiles would make depend on the sample. 截尾 is read as
/// winsorising, not as dropping the tails: the paper loses only 10 of 129,843 rows between
/// Table 1's columns (1) and (2), singletons, where trimming 2% of each variable would have
/// dropped thousands.
pub const WINSORIZED: &[&str] = &[
    "qua",
    "price",
    "value",
    "n_products",
    "qua_core",
    "qua_noncore",
    "digquantity",
    "digtech",
    "digtech_a",
    "digtech_co",
    "digtech_in",
    "digtech2",
    "digtech_l1",
    "digtech_l2",
    "age",
    "finance",
    "profit",
    "klratio",
    "turnover",
    "lnlp",
    "lev",
    "open",
    "market",
    "lnpergdp",
    "xr",
    "quant_keep",
    "quant_in",
    "quant_out",
    "trans",
    "qual_keep",
    "qual_in",
    "qual_out",
    "qual_sub2",
    "vol",
    "vol2",
    "dig_kinds",
    "dig_counties",
    "dig_value",
    "degree",
    "ci",
    "digtech_supplier",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_is_value_weighted_over_products() {
        let mut d = Destination::new();
        d.add(1, 300.0, 0.9, 0.2, 0.5, true);
        d.add(2, 100.0, 0.1, -0.2, 1.0, false);
        d.add(3, 100.0, f64::NAN, 0.0, f64::NAN, false); // a product without spread
        assert!((d.qua() - (300.0 * 0.9 + 100.0 * 0.1) / 400.0).abs() < 1e-12);
        assert!((d.rel_log_price() - (300.0 * 0.2 - 100.0 * 0.2) / 500.0).abs() < 1e-12);
        assert!((d.price() - (300.0 * 0.5 + 100.0 * 1.0) / 400.0).abs() < 1e-12);
        assert_eq!(d.core_q, 0.9);
        assert!((d.qua_noncore() - 0.1).abs() < 1e-12);
        assert_eq!(d.products.len(), 3);
        assert!(Destination::new().qua().is_nan());
    }

    #[test]
    fn winsorisation_clamps_at_percentiles() {
        let mut v: Vec<f64> = (0..101).map(|i| i as f64).collect();
        v[100] = 1e9;
        v[0] = f64::NAN;
        winsorize(&mut v, None);
        // 100 finite values 1..=99, 1e9: p1 = 1 + .99·1 = 1.99, p99 = 99 + .01·(1e9 − 99)
        assert!(v[0].is_nan());
        assert!((v[1] - 1.99).abs() < 1e-9);
        assert!((v[100] - (99.0 + 0.01 * (1e9 - 99.0))).abs() < 1e-3);
        assert_eq!(v[50], 50.0);
        // by group: each group clamped at its own percentiles
        let mut w = vec![0.0, 1.0, 2.0, 100.0, 101.0, 102.0];
        winsorize(&mut w, Some(&[1, 1, 1, 2, 2, 2]));
        assert!((w[0] - 0.02).abs() < 1e-12 && (w[5] - 101.98).abs() < 1e-12);
    }

    #[test]
    fn product_dynamics_on_a_hand_made_sequence() {
        // equal values: the value-weighted means are simple means here
        let prev: BTreeMap<u32, (f64, f64)> = [(1, (0.2, 1.0)), (2, (0.4, 1.0)), (3, (0.9, 1.0))]
            .into_iter()
            .collect();
        let now: BTreeMap<u32, (f64, f64)> = [(2, (0.5, 1.0)), (4, (0.8, 1.0)), (5, (0.6, 1.0))]
            .into_iter()
            .collect();
        let d = Dynamics::between(&prev, &now);
        assert_eq!((d.keep, d.added, d.dropped), (1.0, 2.0, 2.0));
        assert!((d.trans - 4.0 / 6.0).abs() < 1e-12);
        assert!((d.qual_keep - 0.5).abs() < 1e-12);
        assert!((d.qual_in - 0.7).abs() < 1e-12);
        assert!((d.qual_out - 0.55).abs() < 1e-12);
        let (s1, s2) = d.substitution();
        assert_eq!(s1, 1.0);
        assert!((s2 - 0.15).abs() < 1e-12);
        // nothing dropped: substitution undefined
        let same = Dynamics::between(&now, &now);
        assert!(same.substitution().0.is_nan());
        assert_eq!(same.trans, 0.0);
    }

    #[test]
    fn volatility_is_the_absolute_deviation_of_growth() {
        let e = std::f64::consts::E;
        // values e^0, e^1, e^3, (gap), e^3: growth 1, 2 → mean 1.5 → |dev| .5, .5
        let v = volatility(&[(2008, 1.0), (2009, e), (2010, e.powi(3)), (2012, e.powi(3))]);
        assert!(v[0].is_nan() && v[3].is_nan());
        assert!((v[1] - 0.5).abs() < 1e-12 && (v[2] - 0.5).abs() < 1e-12);
        assert!(volatility(&[(2008, 1.0), (2009, 2.0)]).iter().all(|x| x.is_nan()));
    }

    #[test]
    fn sales_stability_is_the_cv_over_three_years() {
        // 2008 alone: NaN; 2009 {1, 3}: sd 1, mean 2 → 0.5; 2010 {1, 3, 2}: sd √(2/3), mean 2;
        // 2013 {2013 only, 2011 missing and 2012 missing}: NaN
        let v = sales_stability(&[(2008, 1.0), (2009, 3.0), (2010, 2.0), (2013, 5.0)]);
        assert!(v[0].is_nan() && v[3].is_nan());
        assert!((v[1] - 0.5).abs() < 1e-12);
        assert!((v[2] - (2.0f64 / 3.0).sqrt() / 2.0).abs() < 1e-12);
    }

    #[test]
    fn competition_classification_on_known_slopes() {
        let mut s = crate::rng::Stream::new(3, 4);
        let firm = |slope: f64, noise: f64, s: &mut crate::rng::Stream| -> Vec<[f64; 5]> {
            (0..30)
                .map(|_| {
                    let (d, g, c) = (7.0 + 2.0 * s.uniform(), 25.0 + s.normal(), 9.0 + s.normal());
                    [d, g, c, slope * d + 0.1 * g - 0.2 * c + noise * s.normal(), 0.0]
                })
                .collect()
        };
        assert_eq!(strategy(&firm(0.5, 0.1, &mut s)).unwrap().0, 4);
        assert_eq!(strategy(&firm(-0.5, 0.1, &mut s)).unwrap().0, 3);
        let weak = strategy(&firm(0.001, 5.0, &mut s)).unwrap();
        assert!(weak.0 == 2 || weak.0 == 1);
        assert!(weak.2 >= 0.1);
        assert!(strategy(&firm(0.5, 0.1, &mut s)[..5]).is_none());
        // slope recovered
        let (_, b, _) = strategy(&firm(0.3, 0.01, &mut s)).unwrap();
        assert!((b - 0.3).abs() < 0.01);
    }

    #[test]
    fn firm_controls_follow_the_study_definitions() {
        let r = FirmRecord {
            province: "广东".into(),
            city: "深圳市".into(),
            industry: "C39".into(),
            founded: 2000.0,
            assets: 1000.0,
            fixed: 400.0,
            employees: 20.0,
            interest: 20.0,
            profit: 60.0,
            revenue: 1200.0,
            output: 1100.0,
            liabilities: 550.0,
        };
        let c = firm_controls(&r, 2010);
        let want = [11f64.ln(), 0.02, 0.05, 20f64.ln(), 1.2, 55f64.ln(), 0.55];
        for (a, b) in c.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        let bad = FirmRecord { employees: 0.0, ..r };
        assert!(firm_controls(&bad, 2010)[3].is_nan());
    }

    #[test]
    fn digital_imports_by_code_or_keyword() {
        let ict = ict_codes();
        let code = ict.iter().next().unwrap().clone();
        assert!(is_digital_import(&format!("{code}00"), "塑料制品", &ict));
        assert!(is_digital_import("85340090", "印刷电路板", &ict));
        // a keyword outside the digital goods' chapters is excluded
        assert!(!is_digital_import("39000000", "集成电路板", &ict));
        assert!(!is_digital_import("39000000", "塑料制品", &ict));
        assert_eq!(DIGITAL_KEYWORDS.len(), 26);
    }

    #[test]
    fn schema_parses() {
        let s = schema();
        assert!(s.len() > 40);
        assert!(s.iter().all(|r| !r[0].is_empty() && !r[1].is_empty()));
    }
}
