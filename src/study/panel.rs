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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use polars::prelude::{Column, DataFrame};

use super::matching::{match_table, raw_file, MatchReport};
use super::names::normalise_name;
use super::patents::{firm_year_patents, FirmYear};
use super::quality::{self, Flows, SigmaTable};
use crate::data::load;
use crate::demean::Demeaner;
use crate::error::{Error, Result};
use crate::linalg::{cholesky_drop, cholesky_inverse, Mat};

/// The panel's documented columns: name, definition, source, unit.
pub const SCHEMA: &str = include_str!("../../data/panel_schema.csv");

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
    pub export_match: MatchReport,
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
/// the mean standardised quality of each set (kept and new at t, dropped at t−1).
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
    pub fn between(prev: &BTreeMap<u32, f64>, now: &BTreeMap<u32, f64>) -> Dynamics {
        let mean = |v: Vec<f64>| {
            let v: Vec<f64> = v.into_iter().filter(|x| x.is_finite()).collect();
            if v.is_empty() {
                f64::NAN
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let kept: Vec<f64> = now
            .iter()
            .filter(|(g, _)| prev.contains_key(g))
            .map(|(_, q)| *q)
            .collect();
        let added: Vec<f64> = now
            .iter()
            .filter(|(g, _)| !prev.contains_key(g))
            .map(|(_, q)| *q)
            .collect();
        let dropped: Vec<f64> = prev
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
            qual_keep: mean(kept),
            qual_in: mean(added),
            qual_out: mean(dropped),
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

/// Digital-product keywords in Chinese customs product names.
pub const DIGITAL_KEYWORDS: [&str; 10] = [
    "集成电路",
    "计算机",
    "通信",
    "数字",
    "传感器",
    "芯片",
    "半导体",
    "电子计算",
    "服务器",
    "数据",
];

/// Is an imported HS8 line a digital product (OECD/UNCTAD ICT HS6 code or a digital keyword)?
pub fn is_digital_import(hs8: &str, name: &str, ict: &HashSet<String>) -> bool {
    hs8.get(..6).is_some_and(|h| ict.contains(h)) || DIGITAL_KEYWORDS.iter().any(|k| name.contains(k))
}

fn ict_codes() -> HashSet<String> {
    include_str!("../../data/ict_goods_hs2017.csv")
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
    /// r-Qua of the firm's core product here (NaN if not exported here).
    pub core_q: f64,
    non_wq: f64,
    non_v: f64,
    /// HS6 product → r-Qua.
    pub products: BTreeMap<u32, f64>,
}

impl Destination {
    pub fn new() -> Destination {
        Destination {
            value: 0.0,
            wq: 0.0,
            wq_v: 0.0,
            wp: 0.0,
            core_q: f64::NAN,
            non_wq: 0.0,
            non_v: 0.0,
            products: BTreeMap::new(),
        }
    }

    /// Add product `g` with export value `v`, standardised quality `r` (NaN when its product
    /// has no spread), log price relative to its product-year mean, and whether it is the
    /// firm's core product that year.
    pub fn add(&mut self, g: u32, v: f64, r: f64, rel_price: f64, core: bool) {
        self.value += v;
        self.wp += v * rel_price;
        self.products.insert(g, r);
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

    /// Value-weighted relative log unit price.
    pub fn price(&self) -> f64 {
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

/// Customs lines summed per identity (name), year, HS8 code, country and, for imports, product
/// name: the raw lines never sit in memory together.
struct CustomsGroups {
    path: String,
    name: Vec<Option<String>>,
    year: Vec<i64>,
    hs: Vec<Option<String>>,
    country: Vec<Option<String>>,
    product: Vec<Option<String>>,
    /// Sums over the lines with positive, finite value (and quantity).
    value: Vec<f64>,
    quantity: Vec<f64>,
    ok: Vec<usize>,
    lines: Vec<usize>,
}

impl CustomsGroups {
    fn len(&self) -> usize {
        self.year.len()
    }
}

/// Stream a customs table through polars and sum its lines per group (see [`CustomsGroups`]).
fn customs_groups(path: &str, quantity: bool, product: bool) -> Result<CustomsGroups> {
    use polars::prelude::{col, len, lit, when, DataType};
    let mut columns = vec!["customs_name", "year", "hs8", "country", "value_usd"];
    if quantity {
        columns.push("quantity");
    }
    if product {
        columns.push("product_name");
    }
    let v = col("value_usd").cast(DataType::Float64);
    let mut ok = v.clone().gt(lit(0.0)).and(v.clone().lt(lit(f64::INFINITY)));
    if quantity {
        let q = col("quantity").cast(DataType::Float64);
        ok = ok.and(q.clone().gt(lit(0.0))).and(q.lt(lit(f64::INFINITY)));
    }
    let ok = ok.fill_null(lit(false));
    let mut keys = vec![
        col("customs_name").cast(DataType::String),
        col("year").cast(DataType::Float64),
        col("hs8").cast(DataType::String),
        col("country").cast(DataType::String),
    ];
    if product {
        keys.push(col("product_name").cast(DataType::String));
    }
    let mut aggs = vec![
        when(ok.clone()).then(v).otherwise(lit(0.0)).sum().alias("value"),
        ok.clone().cast(DataType::UInt32).sum().alias("ok"),
        len().alias("__lines"),
    ];
    if quantity {
        aggs.push(
            when(ok)
                .then(col("quantity").cast(DataType::Float64))
                .otherwise(lit(0.0))
                .sum()
                .alias("qty"),
        );
    }
    type GroupKey = (
        Option<String>,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let mut merged: BTreeMap<GroupKey, (f64, f64, usize, usize)> = BTreeMap::new();
    crate::data::scan::collect_batched(
        path,
        &columns,
        |lf| lf.group_by(keys.clone()).agg(aggs.clone()),
        |df| {
            let t = load::Table::new(df, path.to_string());
            let (name, year, hs, country) = (
                t.strings("customs_name")?,
                t.numeric("year")?,
                t.strings("hs8")?,
                t.strings("country")?,
            );
            let prod = if product {
                t.strings("product_name")?
            } else {
                vec![None; name.len()]
            };
            let (value, ok, lines) = (t.numeric("value")?, t.numeric("ok")?, t.numeric("__lines")?);
            let qty = if quantity {
                t.numeric("qty")?
            } else {
                vec![0.0; name.len()]
            };
            for k in 0..name.len() {
                let key = (
                    name[k].clone(),
                    year[k].is_finite().then_some(year[k] as i64),
                    hs[k].clone(),
                    country[k].clone(),
                    prod[k].clone(),
                );
                let e = merged.entry(key).or_default();
                e.0 += value[k];
                e.1 += qty[k];
                e.2 += ok[k] as usize;
                e.3 += lines[k] as usize;
            }
            Ok(())
        },
    )?;
    if merged.keys().any(|k| k.1.is_none()) {
        let row = crate::data::scan::first_row_where(path, &["year"], col("year").cast(DataType::Float64).is_null())?;
        return Err(Error::column(
            "year",
            format!(
                "missing or non-numeric in {path}{}",
                row.map_or(String::new(), |r| format!(", row {r}"))
            ),
        ));
    }
    let mut g = CustomsGroups {
        path: path.to_string(),
        name: vec![],
        year: vec![],
        hs: vec![],
        country: vec![],
        product: vec![],
        value: vec![],
        quantity: vec![],
        ok: vec![],
        lines: vec![],
    };
    for ((name, year, hs, country, prod), (value, qty, ok, lines)) in merged {
        g.name.push(name);
        g.year.push(year.unwrap_or_default());
        g.hs.push(hs);
        g.country.push(country);
        g.product.push(prod);
        g.value.push(value);
        g.quantity.push(qty);
        g.ok.push(ok);
        g.lines.push(lines);
    }
    Ok(g)
}

/// The first raw line of group `k` (for error messages).
fn customs_line(g: &CustomsGroups, k: usize) -> Option<usize> {
    use polars::prelude::{col, lit, DataType, Expr};
    let eq = |name: &str, v: &Option<String>| -> Expr {
        match v {
            Some(s) => col(name).cast(DataType::String).eq(lit(s.clone())),
            None => col(name).is_null(),
        }
    };
    let pred = eq("customs_name", &g.name[k])
        .and(col("year").cast(DataType::Float64).eq(lit(g.year[k] as f64)))
        .and(eq("hs8", &g.hs[k]))
        .and(eq("country", &g.country[k]));
    crate::data::scan::first_row_where(&g.path, &["customs_name", "year", "hs8", "country"], pred)
        .ok()
        .flatten()
}

fn bad_line(path: &str, column: &str, what: &str, row: Option<usize>) -> Error {
    Error::column(
        column,
        format!(
            "{what} in {path}{}",
            row.map_or(String::new(), |r| format!(", row {r}"))
        ),
    )
}

/// An HS code of at least six digits; a CSV reader turns 01012100 into the number 1012100, so
/// five to seven digits get their leading zeros back.
fn hs_code(raw: Option<&str>) -> Option<String> {
    let raw = raw?.trim();
    let padded = if (5..8).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit()) {
        format!("{raw:0>8}")
    } else {
        raw.to_string()
    };
    (padded.len() >= 6 && padded.bytes().take(6).all(|b| b.is_ascii_digit())).then_some(padded)
}

/// Build the panel. Returns the frame and the report; writes nothing.
pub fn build_panel(raw: &Path, opts: &PanelOptions, demeaner: &dyn Demeaner) -> Result<(DataFrame, PanelReport)> {
    use std::time::Instant;
    let mut rep = PanelReport::default();

    // 1. matching
    let t0 = Instant::now();
    let (links, mreport) = match_table(raw, "exports")?;
    let link: HashMap<(String, i64), i64> = links
        .iter()
        .map(|l| ((l.customs_name.clone(), l.year), l.firm_id))
        .collect();
    rep.step(
        "match exports",
        format!(
            "{} customs identities, {} by name, {} by phone+postcode, {} intermediaries, {} unmatched",
            mreport.total.customs_firms,
            mreport.total.by_name,
            mreport.total.by_phone_postcode,
            mreport.total.intermediaries,
            mreport.total.unmatched
        ),
        t0,
    );
    rep.export_match = mreport;

    // 2. survey
    let t0 = Instant::now();
    let firms_path = raw_file(raw, "firms")?;
    let cols = [
        "firm_id",
        "name",
        "province",
        "industry",
        "year",
        "founded",
        "total_assets",
        "fixed_assets",
        "employees",
        "interest",
        "operating_profit",
        "revenue",
        "output",
        "liabilities",
    ];
    let ft = load::load(&firms_path, &cols.iter().map(|c| c.to_string()).collect::<Vec<_>>())?;
    let fid = need_years(&ft, "firm_id", &firms_path)?;
    let fyear = need_years(&ft, "year", &firms_path)?;
    let fname = ft.strings("name")?;
    let prov = need_strings(&ft, "province", &firms_path)?;
    let ind = need_strings(&ft, "industry", &firms_path)?;
    let num: Vec<Vec<f64>> = cols[5..].iter().map(|c| ft.numeric(c)).collect::<Result<_>>()?;
    let mut survey: HashMap<(i64, i64), FirmRecord> = HashMap::new();
    let mut name_to_firm: HashMap<String, i64> = HashMap::new();
    let mut duplicates = 0;
    for i in 0..ft.nrows() {
        if let Some(n) = &fname[i] {
            name_to_firm.insert(normalise_name(n), fid[i]);
        }
        if survey.contains_key(&(fid[i], fyear[i])) {
            duplicates += 1;
            continue;
        }
        survey.insert(
            (fid[i], fyear[i]),
            FirmRecord {
                province: prov[i].clone(),
                industry: ind[i].clone(),
                founded: num[0][i],
                assets: num[1][i],
                fixed: num[2][i],
                employees: num[3][i],
                interest: num[4][i],
                profit: num[5][i],
                revenue: num[6][i],
                output: num[7][i],
                liabilities: num[8][i],
            },
        );
    }
    let survey_years: BTreeSet<i64> = fyear.iter().copied().collect();
    rep.step(
        "survey",
        format!("{} firm-years ({} duplicate records dropped)", survey.len(), duplicates),
        t0,
    );

    // 3. regions and countries
    let t0 = Instant::now();
    let reg_path = raw_file(raw, "regions")?;
    let rcols = [
        "province",
        "year",
        "gdp",
        "openness",
        "marketisation",
        "ipr_index",
        "broadband_users",
        "post_volume_1984",
        "phones_1984",
    ];
    let rt = load::load(&reg_path, &rcols.iter().map(|c| c.to_string()).collect::<Vec<_>>())?;
    let rprov = need_strings(&rt, "province", &reg_path)?;
    let ryear = need_years(&rt, "year", &reg_path)?;
    let rnum: Vec<Vec<f64>> = rcols[2..].iter().map(|c| rt.numeric(c)).collect::<Result<_>>()?;
    let region: HashMap<(String, i64), [f64; 7]> = (0..rt.nrows())
        .map(|i| ((rprov[i].clone(), ryear[i]), std::array::from_fn(|k| rnum[k][i])))
        .collect();
    let cty_path = raw_file(raw, "countries")?;
    let ccols = [
        "country",
        "year",
        "gdp",
        "gdp_per_capita",
        "exchange_rate",
        "distance_km",
        "nri",
    ];
    let ct = load::load(&cty_path, &ccols.iter().map(|c| c.to_string()).collect::<Vec<_>>())?;
    let cname = need_strings(&ct, "country", &cty_path)?;
    let cyear = need_years(&ct, "year", &cty_path)?;
    let cnum: Vec<Vec<f64>> = ccols[2..].iter().map(|c| ct.numeric(c)).collect::<Result<_>>()?;
    let country: HashMap<(String, i64), [f64; 5]> = (0..ct.nrows())
        .map(|i| ((cname[i].clone(), cyear[i]), std::array::from_fn(|k| cnum[k][i])))
        .collect();
    rep.step(
        "regions, countries",
        format!("{} province-years, {} country-years", region.len(), country.len()),
        t0,
    );

    // 4. export flows: firm × HS6 × destination × year (the lines stream through polars and
    //    are summed per customs identity × HS8 × country × year before they reach memory)
    let t0 = Instant::now();
    let ex_path = raw_file(raw, "exports")?;
    let groups = customs_groups(&ex_path, true, false)?;
    let mut dest_index: BTreeMap<String, u32> = BTreeMap::new();
    let mut product_index: BTreeMap<String, u32> = BTreeMap::new();
    let mut agg: BTreeMap<(i64, u32, u32, i64), (f64, f64)> = BTreeMap::new();
    let (mut unmatched, mut bad_value) = (0usize, 0usize);
    let mut lines_per_year: BTreeMap<i64, usize> = BTreeMap::new();
    for k in 0..groups.len() {
        let year = groups.year[k];
        *lines_per_year.entry(year).or_default() += groups.lines[k];
        let hs = hs_code(groups.hs[k].as_deref()).ok_or_else(|| {
            bad_line(
                &ex_path,
                "hs8",
                &format!(
                    "`{}` is not an HS code of at least 6 digits",
                    groups.hs[k].as_deref().unwrap_or("")
                ),
                customs_line(&groups, k),
            )
        })?;
        let Some(name) = &groups.name[k] else {
            unmatched += groups.lines[k];
            continue;
        };
        let Some(&firm) = link.get(&(name.clone(), year)) else {
            unmatched += groups.lines[k];
            continue;
        };
        let Some(c) = groups.country[k].as_deref() else {
            return Err(bad_line(&ex_path, "country", "missing", customs_line(&groups, k)));
        };
        bad_value += groups.lines[k] - groups.ok[k];
        if groups.ok[k] == 0 {
            continue;
        }
        let np = product_index.len() as u32;
        let g = *product_index.entry(hs[..6].to_string()).or_insert(np);
        let nd = dest_index.len() as u32;
        let d = *dest_index.entry(c.to_string()).or_insert(nd);
        let e = agg.entry((firm, g, d, year)).or_insert((0.0, 0.0));
        e.0 += groups.value[k];
        e.1 += groups.quantity[k];
    }
    let total_lines: usize = groups.lines.iter().sum();
    if agg.is_empty() {
        return Err(Error::NoObservations(format!(
            "no export line of {ex_path} matched a survey firm"
        )));
    }
    // every year of the customs file must have survey records (an empty year means a file
    // is missing or truncated, and would silently drop that year's exporters)
    if let Some((y, n)) = lines_per_year.iter().find(|(y, _)| !survey_years.contains(y)) {
        return Err(Error::Data(format!(
            "year {y}: {ex_path} has {n} export lines but {firms_path} has no firm records for that year"
        )));
    }
    let export_years: BTreeSet<i64> = agg.keys().map(|k| k.3).collect();
    let dest_names: Vec<String> = {
        let mut v = vec![String::new(); dest_index.len()];
        for (k, &i) in &dest_index {
            v[i as usize] = k.clone();
        }
        v
    };
    let product_codes: Vec<String> = {
        let mut v = vec![String::new(); product_index.len()];
        for (k, &i) in &product_index {
            v[i as usize] = k.clone();
        }
        v
    };
    rep.step(
        "export flows",
        format!(
            "{} lines → {} firm×HS6×destination×year flows, {} products, {} destinations ({} lines of unmatched or intermediary firms, {} with non-positive value or quantity)",
            total_lines,
            agg.len(),
            product_codes.len(),
            dest_names.len(),
            unmatched,
            bad_value
        ),
        t0,
    );

    // 5. quality, batched over products
    let t0 = Instant::now();
    let keys: Vec<(i64, u32, u32, i64)> = agg.keys().copied().collect();
    let mut flows = Flows::default();
    let mut cell_of: HashMap<(u32, u32, i64), u32> = HashMap::new();
    let mut other: HashMap<(i64, u32, i64), (f64, usize)> = HashMap::new();
    let mut keep_rows = Vec::with_capacity(keys.len());
    let mut no_region = 0;
    for (k, &(firm, g, d, y)) in keys.iter().enumerate() {
        let (v, q) = agg[&(firm, g, d, y)];
        let lnp = (v / q).ln();
        let e = other.entry((firm, g, y)).or_insert((0.0, 0));
        e.0 += lnp;
        e.1 += 1;
        let gdp = survey
            .get(&(firm, y))
            .and_then(|r| region.get(&(r.province.clone(), y)))
            .map(|r| r[0]);
        let Some(gdp) = gdp.filter(|g| *g > 0.0) else {
            no_region += 1;
            continue;
        };
        let nc = cell_of.len() as u32;
        let cell = *cell_of.entry((g, d, y)).or_insert(nc);
        flows.product.push(g);
        flows.cell.push(cell);
        flows.ln_q.push(q.ln());
        flows.ln_p.push(lnp);
        flows.control.push(gdp.ln());
        keep_rows.push(k);
    }
    flows.cells = cell_of.len();
    flows.instrument = keep_rows
        .iter()
        .zip(&flows.ln_p)
        .map(|(&k, &lnp)| {
            let (firm, g, _, y) = keys[k];
            let (s, n) = other[&(firm, g, y)];
            if n > 1 {
                (s - lnp) / (n - 1) as f64
            } else {
                f64::NAN
            }
        })
        .collect();
    let table = SigmaTable::broda_weinstein()?;
    let bw: Vec<f64> = product_codes.iter().map(|c| table.for_code(c).0).collect();
    let missing_hs3 = product_codes.iter().filter(|c| !table.for_code(c).1).count();
    let sigma = match opts.sigma {
        SigmaSource::Bw => bw.clone(),
        SigmaSource::Estimate => {
            let (s, used) = quality::estimate_sigma(&flows, &bw, demeaner)?;
            eprintln!(
                "  σ estimated by 2SLS for {used} of {} products (others: Broda–Weinstein)",
                bw.len()
            );
            s
        }
    };
    let tq = Instant::now();
    let q = quality::estimate(&flows, &sigma, demeaner)?;
    rep.quality_batched_s = tq.elapsed().as_secs_f64();
    if opts.compare_loop {
        let tl = Instant::now();
        let ql = quality::estimate_by_loop(&flows, &sigma, demeaner)?;
        rep.quality_loop_s = Some(tl.elapsed().as_secs_f64());
        rep.quality_loop_max_diff = Some(
            q.lambda
                .iter()
                .zip(&ql.lambda)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max),
        );
    }
    rep.products = product_codes.len();
    rep.step(
        "quality (batched)",
        format!(
            "{} flows in {} product×destination×year cells, {} products in one {} job ({:.3} s){}{}{}",
            flows.product.len(),
            flows.cells,
            product_codes.len(),
            demeaner.name(),
            rep.quality_batched_s,
            if missing_hs3 > 0 {
                format!("; {missing_hs3} products without a BW σ use the median")
            } else {
                String::new()
            },
            if no_region > 0 {
                format!("; {no_region} flows without regional GDP dropped")
            } else {
                String::new()
            },
            match (rep.quality_loop_s, rep.quality_loop_max_diff) {
                (Some(s), Some(d)) => format!("; per-product loop {s:.3} s, max |Δλ| {d:.1e}"),
                _ => String::new(),
            }
        ),
        t0,
    );

    // 6. firm-year-destination aggregates
    let t0 = Instant::now();
    // per-product-year mean ln p, to make prices comparable across products
    let mut pmean: HashMap<(u32, i64), (f64, usize)> = HashMap::new();
    for (j, &k) in keep_rows.iter().enumerate() {
        let (_, g, _, y) = keys[k];
        let e = pmean.entry((g, y)).or_insert((0.0, 0));
        e.0 += flows.ln_p[j];
        e.1 += 1;
    }
    // core product per firm-year: largest total export value
    let mut fy_product_value: HashMap<(i64, i64), BTreeMap<u32, f64>> = HashMap::new();
    for (j, &k) in keep_rows.iter().enumerate() {
        let _ = j;
        let (firm, g, _, y) = keys[k];
        *fy_product_value.entry((firm, y)).or_default().entry(g).or_default() += agg[&keys[k]].0;
    }
    let core: HashMap<(i64, i64), u32> = fy_product_value
        .iter()
        .map(|(k, m)| {
            (
                *k,
                *m.iter().max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0))).unwrap().0,
            )
        })
        .collect();
    let mut fyd: BTreeMap<Key3, Destination> = BTreeMap::new();
    for (j, &k) in keep_rows.iter().enumerate() {
        let (firm, g, d, y) = keys[k];
        let (ps, pn) = pmean[&(g, y)];
        fyd.entry((firm, y, d)).or_insert_with(Destination::new).add(
            g,
            agg[&keys[k]].0,
            q.standardised[j],
            flows.ln_p[j] - ps / pn as f64,
            core[&(firm, y)] == g,
        );
    }
    rep.step("aggregate", format!("{} firm-year-destination rows", fyd.len()), t0);

    // 7. patents, imports, supply chain
    let t0 = Instant::now();
    let pats = firm_year_patents(raw)?;
    let ln1 = |c: u32| (1.0 + c as f64).ln();
    let pat = |f: i64, y: i64| -> Option<&FirmYear> { pats.get(&(f, y)) };
    let digtech = |f: i64, y: i64| -> f64 {
        if survey.contains_key(&(f, y)) || pats.contains_key(&(f, y)) {
            pat(f, y).map_or(0.0, |e| ln1(e.digital))
        } else {
            f64::NAN
        }
    };
    // patent quality: firm mean Digtech2 over its firm-years with patents, split at the median
    let mut breadth: BTreeMap<i64, (f64, usize)> = BTreeMap::new();
    for ((f, _), e) in &pats {
        let b = super::ipc::knowledge_breadth(&e.codes);
        if b.is_finite() {
            let x = breadth.entry(*f).or_default();
            x.0 += b;
            x.1 += 1;
        }
    }
    let firm_breadth: HashMap<i64, f64> = breadth.iter().map(|(f, (s, n))| (*f, s / *n as f64)).collect();
    let median_breadth = {
        let exporters: BTreeSet<i64> = fyd.keys().map(|k| k.0).collect();
        let mut firms_b: Vec<f64> = exporters.iter().filter_map(|f| firm_breadth.get(f).copied()).collect();
        firms_b.sort_by(f64::total_cmp);
        quantile(&firms_b, 0.5)
    };
    // digital imports per firm-year
    let ict = ict_codes();
    let mut imports: HashMap<(i64, i64), (BTreeSet<String>, BTreeSet<String>, f64)> = HashMap::new();
    let mut import_lines = 0usize;
    // every raw table is required: a missing one is an error, never "0 import lines"
    {
        let (ilinks, _) = match_table(raw, "imports")?;
        let ilink: HashMap<(String, i64), i64> = ilinks
            .iter()
            .map(|l| ((l.customs_name.clone(), l.year), l.firm_id))
            .collect();
        let ip = raw_file(raw, "imports")?;
        let groups = customs_groups(&ip, false, true)?;
        for k in 0..groups.len() {
            let Some(&f) = groups.name[k]
                .as_ref()
                .and_then(|n| ilink.get(&(n.clone(), groups.year[k])))
            else {
                continue;
            };
            let hs = groups.hs[k].as_deref().unwrap_or("");
            if is_digital_import(hs, groups.product[k].as_deref().unwrap_or(""), &ict) {
                import_lines += groups.lines[k];
                let e = imports.entry((f, groups.year[k])).or_default();
                e.0.insert(hs.to_string());
                e.1.insert(groups.country[k].clone().unwrap_or_default());
                e.2 += groups.value[k];
            }
        }
    }
    // supplier links
    let mut supplier: HashMap<(i64, i64), i64> = HashMap::new();
    {
        let sp = raw_file(raw, "supply_chain")?;
        let st = load::load(
            &sp,
            &["year", "supplier_name", "client_name"]
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>(),
        )?;
        let (sy, ss, sc) = (
            need_years(&st, "year", &sp)?,
            need_strings(&st, "supplier_name", &sp)?,
            need_strings(&st, "client_name", &sp)?,
        );
        for i in 0..st.nrows() {
            if let (Some(&a), Some(&b)) = (
                name_to_firm.get(&normalise_name(&ss[i])),
                name_to_firm.get(&normalise_name(&sc[i])),
            ) {
                supplier.insert((b, sy[i]), a);
            }
        }
    }
    rep.step(
        "patents, imports, chain",
        format!(
            "{} firm-years with patents, {} digital import lines, {} supplier links",
            pats.len(),
            import_lines,
            supplier.len()
        ),
        t0,
    );

    // 8. competition strategy: per-firm price regressions, batched as segmented normal equations
    let t0 = Instant::now();
    let mut firm_dest: BTreeMap<(i64, u32), (f64, f64, usize)> = BTreeMap::new(); // price sum, value, years
    for ((f, y, d), a) in &fyd {
        let e = firm_dest.entry((*f, *d)).or_default();
        e.0 += a.price();
        e.1 += a.value;
        e.2 += 1;
        let _ = y;
    }
    let mut per_firm: BTreeMap<i64, Vec<[f64; 5]>> = BTreeMap::new();
    for ((f, d), (ps, _, n)) in &firm_dest {
        let name = &dest_names[*d as usize];
        let vals: Vec<[f64; 5]> = export_years
            .iter()
            .filter_map(|y| country.get(&(name.clone(), *y)).copied())
            .collect();
        if vals.is_empty() {
            continue;
        }
        let m = |k: usize| vals.iter().map(|v| v[k].ln()).sum::<f64>() / vals.len() as f64;
        per_firm
            .entry(*f)
            .or_default()
            .push([m(3), m(0), m(1), ps / *n as f64, 0.0]);
    }
    let strategies: HashMap<i64, u8> = per_firm
        .iter()
        .filter_map(|(f, rows)| strategy(rows).map(|(c, _, _)| (*f, c)))
        .collect();
    let mut counts = [0usize; 5];
    for c in strategies.values() {
        counts[*c as usize] += 1;
    }
    rep.step(
        "competition strategy",
        format!(
            "{} firms classified: {} strong quality, {} weak quality, {} strong price, {} weak price",
            strategies.len(),
            counts[4],
            counts[2],
            counts[3],
            counts[1]
        ),
        t0,
    );

    // 9. rows
    let t0 = Instant::now();
    let years_of_firm: HashMap<i64, BTreeSet<i64>> = fyd.keys().fold(HashMap::new(), |mut m, k| {
        m.entry(k.0).or_default().insert(k.1);
        m
    });
    // Table 4's continuing exporters: firm-destination pairs exported in every panel year
    let years_of_pair: HashMap<(i64, u32), usize> = fyd.keys().fold(HashMap::new(), |mut m, k| {
        *m.entry((k.0, k.2)).or_default() += 1;
        m
    });
    let all_years = export_years.len();
    // IPR mean by year over provinces (Table 5: strong = strictly above it); NRI 90th
    // percentile by year over destinations
    let mut ipr_by_year: BTreeMap<i64, (f64, usize)> = BTreeMap::new();
    for ((_, y), r) in &region {
        let e = ipr_by_year.entry(*y).or_default();
        e.0 += r[3];
        e.1 += 1;
    }
    let ipr_mean: HashMap<i64, f64> = ipr_by_year.into_iter().map(|(y, (s, n))| (y, s / n as f64)).collect();
    let mut nri_by_year: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for (c, y) in dest_names.iter().flat_map(|c| export_years.iter().map(move |y| (c, y))) {
        if let Some(v) = country.get(&(c.clone(), *y)) {
            nri_by_year.entry(*y).or_default().push(v[4]);
        }
    }
    let nri_p90: HashMap<i64, f64> = nri_by_year
        .into_iter()
        .map(|(y, mut v)| {
            v.sort_by(f64::total_cmp);
            (y, quantile(&v, 0.9))
        })
        .collect();
    // volatility per firm-destination series
    let mut series: BTreeMap<(i64, u32), Vec<(i64, f64)>> = BTreeMap::new();
    for ((f, y, d), a) in &fyd {
        series.entry((*f, *d)).or_default().push((*y, a.value));
    }
    let mut vol: HashMap<Key3, f64> = HashMap::new();
    for ((f, d), s) in &series {
        for ((y, _), v) in s.iter().zip(volatility(s)) {
            vol.insert((*f, *y, *d), v);
        }
    }
    // second volatility measure per firm-year, from the firm's total exports
    let mut firm_totals: BTreeMap<i64, BTreeMap<i64, f64>> = BTreeMap::new();
    for ((f, y, _), a) in &fyd {
        *firm_totals.entry(*f).or_default().entry(*y).or_default() += a.value;
    }
    let mut vol2: HashMap<(i64, i64), f64> = HashMap::new();
    for (f, by_year) in &firm_totals {
        let s: Vec<(i64, f64)> = by_year.iter().map(|(y, v)| (*y, *v)).collect();
        for ((y, _), v) in s.iter().zip(sales_stability(&s)) {
            vol2.insert((*f, *y), v);
        }
    }
    let mut vol_year: BTreeMap<i64, (f64, usize)> = BTreeMap::new();
    for ((_, y, _), v) in &vol {
        if v.is_finite() {
            let e = vol_year.entry(*y).or_default();
            e.0 += v;
            e.1 += 1;
        }
    }

    let mut c = Cols::default();
    let mut dropped_no_survey = 0;
    for ((f, y, d), a) in &fyd {
        let (f, y, d) = (*f, *y, *d);
        let Some(r) = survey.get(&(f, y)) else {
            dropped_no_survey += 1;
            continue;
        };
        let dest = &dest_names[d as usize];
        let reg = region.get(&(r.province.clone(), y));
        let reg_lag = region.get(&(r.province.clone(), y - 1));
        let cty = country.get(&(dest.clone(), y));
        let e = pat(f, y);
        c.s("firm", f.to_string());
        c.i("firm_id", f);
        c.i("year", y);
        c.s("country", dest.clone());
        c.s("province", r.province.clone());
        c.s("industry", r.industry.clone());
        c.f("qua", a.qua());
        c.f("price", a.price());
        c.f("value", a.value);
        c.f("n_products", a.products.len() as f64);
        c.f("qua_core", a.core_q);
        c.f("qua_noncore", a.qua_noncore());
        c.f("digquantity", e.map_or(0.0, |e| e.digital as f64));
        c.f("digtech", digtech(f, y));
        c.f("digtech_a", e.map_or(0.0, |e| ln1(e.digital_granted)));
        c.f("digtech_co", e.map_or(0.0, |e| ln1(e.digital_co)));
        c.f("digtech_in", e.map_or(0.0, |e| ln1(e.digital_single)));
        c.f(
            "digtech2",
            e.map_or(f64::NAN, |e| super::ipc::knowledge_breadth(&e.codes)),
        );
        c.f("digtech_l1", digtech(f, y - 1));
        c.f("digtech_l2", digtech(f, y - 2));
        let fc = firm_controls(r, y);
        for (name, v) in ["age", "finance", "profit", "klratio", "turnover", "lnlp", "lev"]
            .iter()
            .zip(fc)
        {
            c.f(name, v);
        }
        c.f("open", reg.map_or(f64::NAN, |r| r[1]));
        c.f("market", reg.map_or(f64::NAN, |r| r[2]));
        c.f("lnpergdp", cty.map_or(f64::NAN, |v| v[1].ln()));
        c.f("xr", cty.map_or(f64::NAN, |v| v[2]));
        let lbb = reg_lag.map_or(f64::NAN, |r| r[4].ln());
        c.f("iv_post", reg.map_or(f64::NAN, |r| r[5]) * lbb);
        c.f("iv_telephone", reg.map_or(f64::NAN, |r| r[6]) * lbb);
        c.f(
            "dig_industry",
            match r.industry.get(..3) {
                Some("C39") => 1.0,
                Some("C35" | "C36" | "C37" | "C38" | "C40") => 0.0,
                _ => f64::NAN,
            },
        );
        c.f(
            "ipr_strong",
            match (reg, ipr_mean.get(&y)) {
                (Some(r), Some(m)) => (r[3] > *m) as u8 as f64,
                _ => f64::NAN,
            },
        );
        c.f(
            "nri_top10",
            match (cty, nri_p90.get(&y)) {
                (Some(v), Some(p)) => (v[4] >= *p) as u8 as f64,
                _ => f64::NAN,
            },
        );
        c.f(
            "patent_quality_high",
            firm_breadth
                .get(&f)
                .map_or(f64::NAN, |b| (*b > median_breadth) as u8 as f64),
        );
        c.f("continuing", (years_of_pair[&(f, d)] == all_years) as u8 as f64);
        c.f("strategy", strategies.get(&f).map_or(f64::NAN, |&s| s as f64));
        for (k, cat) in [
            (4u8, "strategy_strong_quality"),
            (2, "strategy_weak_quality"),
            (3, "strategy_strong_price"),
            (1, "strategy_weak_price"),
        ] {
            c.f(cat, strategies.get(&f).map_or(f64::NAN, |&s| (s == k) as u8 as f64));
        }
        let st = strategies.get(&f).copied();
        c.f(
            "quality_strategy",
            st.map_or(f64::NAN, |s| matches!(s, 2 | 4) as u8 as f64),
        );
        c.f(
            "strong_strategy",
            st.map_or(f64::NAN, |s| matches!(s, 3 | 4) as u8 as f64),
        );
        let dynamics = fyd
            .get(&(f, y - 1, d))
            .map(|p| Dynamics::between(&p.products, &a.products));
        let dy = |g: fn(&Dynamics) -> f64| dynamics.as_ref().map_or(f64::NAN, g);
        // Table 10's counts on every row, as the paper's N: a pair not exported in t−1 keeps
        // and drops nothing, and all its products are new
        let count = |g: fn(&Dynamics) -> f64, new_pair: f64| dynamics.as_ref().map_or(new_pair, g);
        c.f("quant_keep", count(|d| d.keep, 0.0));
        c.f("quant_in", count(|d| d.added, a.products.len() as f64));
        c.f("quant_out", count(|d| d.dropped, 0.0));
        c.f("trans", dy(|d| d.trans));
        c.f("qual_keep", dy(|d| d.qual_keep));
        c.f("qual_in", dy(|d| d.qual_in));
        c.f("qual_out", dy(|d| d.qual_out));
        c.f("qual_sub1", dy(|d| d.substitution().0));
        c.f("qual_sub2", dy(|d| d.substitution().1));
        let v = vol[&(f, y, d)];
        c.f("vol", v);
        c.f(
            "vol_high",
            match vol_year.get(&y) {
                Some((s, n)) if v.is_finite() => (v >= s / *n as f64) as u8 as f64,
                _ => f64::NAN,
            },
        );
        c.f("vol2", vol2[&(f, y)]);
        let imp = imports.get(&(f, y));
        c.f("dig_kinds", imp.map_or(0.0, |i| (1.0 + i.0.len() as f64).ln()));
        c.f("dig_counties", imp.map_or(0.0, |i| (1.0 + i.1.len() as f64).ln()));
        // ln v as the paper (no +1): missing without digital imports
        c.f(
            "dig_value",
            imp.map_or(f64::NAN, |i| if i.2 > 0.0 { i.2.ln() } else { f64::NAN }),
        );
        c.f(
            "degree",
            e.map_or(f64::NAN, |e| if e.digital > 0 { e.degree } else { f64::NAN }),
        );
        c.f(
            "ci",
            e.map_or(f64::NAN, |e| if e.digital > 0 { e.constraint } else { f64::NAN }),
        );
        c.f(
            "digtech_supplier",
            supplier.get(&(f, y)).map_or(f64::NAN, |&s| digtech(s, y)),
        );
    }
    // winsorisation of continuous variables
    let years: Vec<i64> = c.ints["year"].clone();
    if opts.winsorize != Winsorize::None {
        for name in WINSORIZED {
            let v = c.floats.get_mut(*name).unwrap();
            winsorize(v, (opts.winsorize == Winsorize::ByYear).then_some(&years[..]));
        }
    }
    rep.rows = years.len();
    rep.firms = years_of_firm.len();
    if rep.rows == 0 {
        return Err(Error::NoObservations("the panel has no rows".into()));
    }
    let df = c.frame()?;
    rep.step(
        "panel",
        format!(
            "{} rows, {} firms, {} columns{}; winsorised at 1%/99% ({})",
            rep.rows,
            rep.firms,
            df.width(),
            if dropped_no_survey > 0 {
                format!(" ({dropped_no_survey} without a survey record)")
            } else {
                String::new()
            },
            match opts.winsorize {
                Winsorize::Pooled => "pooled",
                Winsorize::ByYear => "by year",
                Winsorize::None => "off",
            }
        ),
        t0,
    );
    Ok((df, rep))
}

/// Continuous variables clamped at their 1st/99th percentiles (Digtech and its variants are
/// counts in logs and are not winsorised, nor are shares, dummies and counts).
pub const WINSORIZED: &[&str] = &[
    "qua", "price", "age", "finance", "profit", "klratio", "turnover", "lnlp", "lev", "open", "market", "lnpergdp",
    "xr", "vol",
];

/// Columns in insertion order.
#[derive(Default)]
struct Cols {
    order: Vec<String>,
    floats: HashMap<String, Vec<f64>>,
    ints: HashMap<String, Vec<i64>>,
    strings: HashMap<String, Vec<String>>,
}

impl Cols {
    fn note(&mut self, name: &str) {
        if !self.order.iter().any(|n| n == name) {
            self.order.push(name.to_string());
        }
    }
    fn f(&mut self, name: &str, v: f64) {
        self.note(name);
        self.floats.entry(name.to_string()).or_default().push(v);
    }
    fn i(&mut self, name: &str, v: i64) {
        self.note(name);
        self.ints.entry(name.to_string()).or_default().push(v);
    }
    fn s(&mut self, name: &str, v: String) {
        self.note(name);
        self.strings.entry(name.to_string()).or_default().push(v);
    }
    fn frame(mut self) -> Result<DataFrame> {
        let n = self.ints.get("year").map_or(0, |v| v.len());
        let cols: Vec<Column> = self
            .order
            .iter()
            .map(|name| {
                if let Some(v) = self.floats.remove(name) {
                    // NaN is written as a missing value
                    Column::new(
                        name.into(),
                        v.into_iter()
                            .map(|x| x.is_finite().then_some(x))
                            .collect::<Vec<Option<f64>>>(),
                    )
                } else if let Some(v) = self.ints.remove(name) {
                    Column::new(name.into(), v)
                } else {
                    Column::new(name.into(), self.strings.remove(name).unwrap_or_default())
                }
            })
            .collect();
        DataFrame::new(n, cols).map_err(|e| Error::Data(format!("building the panel: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_is_value_weighted_over_products() {
        let mut d = Destination::new();
        d.add(1, 300.0, 0.9, 0.2, true);
        d.add(2, 100.0, 0.1, -0.2, false);
        d.add(3, 100.0, f64::NAN, 0.0, false); // a product without spread: no quality
        assert!((d.qua() - (300.0 * 0.9 + 100.0 * 0.1) / 400.0).abs() < 1e-12);
        assert!((d.price() - (300.0 * 0.2 - 100.0 * 0.2) / 500.0).abs() < 1e-12);
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
        let prev: BTreeMap<u32, f64> = [(1, 0.2), (2, 0.4), (3, 0.9)].into_iter().collect();
        let now: BTreeMap<u32, f64> = [(2, 0.5), (4, 0.8), (5, 0.6)].into_iter().collect();
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
        assert!(is_digital_import("39000000", "集成电路板", &ict));
        assert!(!is_digital_import("39000000", "塑料制品", &ict));
    }

    #[test]
    fn schema_parses() {
        let s = schema();
        assert!(s.len() > 40);
        assert!(s.iter().all(|r| !r[0].is_empty() && !r[1].is_empty()));
    }
}
