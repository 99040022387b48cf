//! `fegpu simulate`: seeded stand-ins for the study's raw databases (the industrial-firm survey,
//! customs exports and imports, patents, country, region and prefecture-city tables), with the messiness of the real ones —
//! customs names spelled differently from survey names (legal-form variants, spaces, brackets,
//! full-width characters, renamings), missing or short phone numbers, trading intermediaries,
//! duplicated survey records, IPC codes with odd spacing, patents with several applicants and
//! non-digital patents — and the truth written beside them (`truth.json`): every true
//! customs ↔ firm link and every firm-year's digital-patent counts.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use polars::prelude::{Column, DataFrame};
use serde::Serialize;

use super::names::normalise_name;
use super::panel::Dynamics;
use super::planted::{self, digtech_effect, Row, Traits, NEW_PRODUCT, QUA_TO_LOG};
use crate::data::load::save;
use crate::error::{Error, Result};
use crate::rng::Stream;

/// How big the simulated world is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scale {
    /// A few hundred firms: seconds, for tests.
    Small,
    /// About 3,000 exporting firms among 30,000 surveyed, as in the study.
    Paper,
}

/// Prefecture cities (name, province, telephone area code, postcode prefix), grouped by
/// province: Table 2's instruments are the city's 1984 post and telephone intensity, so a
/// province holds several cities. Tianjin, a municipality, is one prefecture-level unit; the
/// two weak-IPR provinces' cities are last (see [`draw_city`]).
const CITIES: [(&str, &str, &str, &str); 22] = [
    ("深圳市", "广东", "0755", "518"),
    ("广州市", "广东", "020", "510"),
    ("东莞市", "广东", "0769", "523"),
    ("佛山市", "广东", "0757", "528"),
    ("珠海市", "广东", "0756", "519"),
    ("杭州市", "浙江", "0571", "310"),
    ("宁波市", "浙江", "0574", "315"),
    ("温州市", "浙江", "0577", "325"),
    ("绍兴市", "浙江", "0575", "312"),
    ("嘉兴市", "浙江", "0573", "314"),
    ("苏州市", "江苏", "0512", "215"),
    ("南京市", "江苏", "025", "210"),
    ("无锡市", "江苏", "0510", "214"),
    ("常州市", "江苏", "0519", "213"),
    ("青岛市", "山东", "0532", "266"),
    ("济南市", "山东", "0531", "250"),
    ("烟台市", "山东", "0535", "264"),
    ("潍坊市", "山东", "0536", "261"),
    ("厦门市", "福建", "0592", "361"),
    ("福州市", "福建", "0591", "350"),
    ("泉州市", "福建", "0595", "362"),
    ("天津市", "天津", "022", "300"),
];
/// The Fujian cities (weak IPR) are `CITIES[FUJIAN]`; Tianjin is the last.
const FUJIAN: std::ops::Range<usize> = 18..21;
const SYLLABLES: [&str; 24] = [
    "华", "强", "新", "宏", "盛", "达", "科", "通", "瑞", "丰", "源", "海", "天", "泰", "恒", "宇", "光", "明", "信",
    "和", "力", "佳", "美", "鑫",
];
/// Survey industries: (GB/T 4754-2002 class, the survey's code up to 2011; GB/T 4754-2011
/// class, its code from 2012; 2017 division; word in the firm's name). The first six are Table
/// 5's groups (C35–C40), the others are in neither; read as 2017 codes, several 2002 codes would
/// land in the wrong group (4041 electronics in C40, 3911 generators in C39, 3511 general
/// machinery in C35), so the panel must map them ([`crate::study::industry`]).
const INDUSTRIES: [(&str, &str, &str, &str); 12] = [
    ("3699", "3599", "C35", "机械设备"),
    ("3725", "3660", "C36", "汽车配件"),
    ("3751", "3731", "C37", "船舶装备"),
    ("3911", "3811", "C38", "电气"),
    ("4041", "3911", "C39", "电子科技"),
    ("4111", "4011", "C40", "仪器仪表"),
    ("3511", "3411", "C34", "通用机械"),
    ("3411", "3311", "C33", "五金制品"),
    ("3060", "2929", "C29", "塑料制品"),
    ("1810", "1810", "C18", "服装"),
    ("2614", "2614", "C26", "化工"),
    ("4155", "3474", "C34", "办公设备"),
];
/// Per cent of firms in Table 5's industries (the first six of [`INDUSTRIES`]): the paper's two
/// groups hold 69% of its rows.
const SPLIT_INDUSTRIES_PCT: u32 = 69;

/// A firm's industry: one draw, the split industries with [`SPLIT_INDUSTRIES_PCT`]% of firms,
/// each side's industries equally likely.
fn draw_industry(s: &mut Stream) -> usize {
    let u = s.below(100);
    if u < SPLIT_INDUSTRIES_PCT {
        (u * 6 / SPLIT_INDUSTRIES_PCT) as usize
    } else {
        6 + ((u - SPLIT_INDUSTRIES_PCT) * (INDUSTRIES.len() as u32 - 6) / (100 - SPLIT_INDUSTRIES_PCT)) as usize
    }
}
const COUNTRIES: [&str; 40] = [
    "USA", "JPN", "KOR", "DEU", "GBR", "FRA", "AUS", "SGP", "IND", "BRA", "RUS", "VNM", "CAN", "MEX", "ITA", "ESP",
    "NLD", "BEL", "THA", "MYS", "IDN", "PHL", "ARE", "SAU", "TUR", "POL", "ZAF", "NGA", "EGY", "CHL", "ARG", "PER",
    "NZL", "SWE", "CHE", "AUT", "DNK", "IRN", "PAK", "BGD",
];
/// IPC subclasses outside the CNIPA digital table (checked by a test).
pub const NON_DIGITAL_SUBCLASSES: [&str; 8] = ["A01B", "A23L", "B60K", "C07D", "A47C", "C05F", "F16H", "B65D"];
const YEARS: std::ops::RangeInclusive<i64> = 2008..=2014;
/// The provinces whose IPR protection is below the yearly mean (Table 5's weak side).
const WEAK_IPR_PROVINCES: [&str; 2] = ["天津", "福建"];
/// OECD/UNCTAD ICT goods (HS 2017 six-digit), shipped in `data/`.
const ICT_GOODS: &str = include_str!("../../data/ict_goods_hs2017.csv");
const DIGITAL_PRODUCTS: [&str; 5] = ["集成电路", "计算机零件", "通信设备", "数字处理器", "传感器"];

/// What the simulator knows and the pipeline must recover.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct Truth {
    pub seed: u64,
    /// (customs name as written, year) → survey firm id; intermediaries are absent.
    pub links: Vec<(String, i64, i64)>,
    /// Customs names that belong to trading intermediaries.
    pub intermediaries: Vec<String>,
    /// (firm id, year) → number of digital patent applications.
    pub digital_applications: Vec<(i64, i64, u32)>,
    pub planted: BTreeMap<String, f64>,
    /// Per exporting firm id: its planted competition strategy and Table 7's classification of
    /// it from the simulated prices (None: too few destinations), the groups Table 8's planted
    /// values are over.
    #[serde(default)]
    pub strategies: Vec<(i64, u8, Option<u8>)>,
}

struct Firm {
    id: i64,
    name: String,
    phone: String,
    postcode: String,
    city: usize,
    industry: usize,
    founded: i64,
    exporter: bool,
    innov: f64,
}

/// A firm's city: Tianjin and the three Fujian cities, the cities of the two weak-IPR provinces,
/// hold 7.5% of the firms (the paper's weak IPR rows are 9,699 of 128,769, Table 5); the other
/// cities share the rest equally. Two weak provinces, not one: with one, the regional controls
/// would be collinear with the year effects within the weak group.
fn draw_city(s: &mut Stream) -> usize {
    match s.uniform() {
        u if u < 0.04 => CITIES.len() - 1,
        u if u < 0.075 => FUJIAN.start + s.below(FUJIAN.len() as u32) as usize,
        _ => s.below(FUJIAN.start as u32) as usize,
    }
}

fn firm_name(s: &mut Stream, city: usize, industry: usize) -> String {
    // three syllables: 22 cities × 24³ brands × 6 industries leaves room for 30,000 unique names
    let brand: String = (0..3)
        .map(|_| SYLLABLES[s.below(SYLLABLES.len() as u32) as usize])
        .collect();
    format!("{}{}{}有限公司", CITIES[city].0, brand, INDUSTRIES[industry].3)
}

/// A customs spelling of a survey name that normalises to the same key.
fn name_variant(s: &mut Stream, name: &str) -> String {
    match s.below(5) {
        0 => name.replace("有限公司", "有限责任公司"),
        1 => {
            let mut chars: Vec<char> = name.chars().collect();
            chars.insert(3.min(chars.len()), ' ');
            chars.into_iter().collect()
        }
        2 => name.replace("有限公司", "（有限公司）"),
        3 => format!("{} ", name.replace("有限公司", "有限 公司")),
        _ => name.to_string(),
    }
}

fn concrete_code(pattern: &str, s: &mut Stream) -> String {
    // turn a table pattern into a code a patent office would print, with odd spacing
    let base = pattern.trim_end_matches('*');
    let (sub, rest) = base.split_at(4);
    let code = if rest.is_empty() {
        format!("{sub} {}/{:02}", 1 + s.below(9), s.below(60))
    } else if rest.contains('/') {
        format!("{sub} {rest}")
    } else {
        format!("{sub} {rest}/{:02}", s.below(60))
    };
    match s.below(4) {
        0 => code.replace(' ', ""),
        1 => code.replace(' ', "  "),
        2 => code.to_lowercase(),
        _ => code,
    }
}

/// Size of one simulated world.
struct Size {
    firms: usize,
    exporter_share: f64,
    products: usize,
    countries: usize,
}

impl Scale {
    fn size(self) -> Size {
        match self {
            // ~120 exporters, ~5,000 panel rows: enough firms in every Table 7 category for
            // Table 8's strong-quality vs strong-price test (with ~60, one firm was strong quality
            // and its group regression could not identify the firm controls)
            Scale::Small => Size {
                firms: 300,
                exporter_share: 0.4,
                products: 6,
                countries: 15,
            },
            // ~3,000 exporters, ~130,000 firm-year-destination rows (STUDY.md: N = 129,843)
            Scale::Paper => Size {
                firms: 30_000,
                exporter_share: 0.1,
                products: 30,
                countries: COUNTRIES.len(),
            },
        }
    }
}

/// Table 7: the price slope on distance of the weak strategies (±), against ±0.6 for the strong:
/// its sign mostly shows in a firm's price regression, which seldom finds it significant.
const WEAK_SLOPE: f64 = 0.03;
/// Share of a firm's destinations served every year of its spell (Table 4: with half the firms
/// exporting in every year, continuing pairs are about 36% of the rows, as the paper's).
const STABLE_SHARE: f64 = 0.47;
/// Share of firm-destinations with volatile sales (Table 11), and the SD of the firm-wide
/// yearly sales shock of a firm without digital patents (it shrinks as exp(−Digtech)).
const VOLATILE_SHARE: f64 = 0.3;
/// SD of a volatile pair's yearly sales shock (0.1 for the others): large enough that the
/// panel's Vol, which also moves with product churn, mostly sorts the volatile pairs high.
const VOLATILE_SHOCK: f64 = 1.5;
const FIRM_SHOCK: f64 = 0.5;
/// SD of ε, the part of the recorded quantity's log error ζ = u + ε/(σ − 1) that is larger for
/// products of low σ (see [`simulate`]).
const QUANTITY_ERROR: f64 = 0.1;

fn err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Data(format!("building the {what} table: {e}"))
}

/// The raw tables `simulate` writes, by stem.
const TABLES: [&str; 8] = [
    "firms",
    "patents",
    "exports",
    "imports",
    "countries",
    "regions",
    "cities",
    "supply_chain",
];

/// Remove the tables of the other format (`.parquet` when writing CSV, `.csv` when writing
/// Parquet) that an earlier `simulate` left in `out`: the readers take Parquet first, so a
/// stale copy would be read beside (or instead of) the tables written now. Says so on stderr.
fn remove_other_format(out: &Path, csv: bool) -> Result<()> {
    let other = if csv { "parquet" } else { "csv" };
    let mut removed = Vec::new();
    for stem in TABLES {
        let p = out.join(format!("{stem}.{other}"));
        if p.is_file() {
            std::fs::remove_file(&p).map_err(|e| Error::io(p.display().to_string(), e))?;
            removed.push(format!("{stem}.{other}"));
        }
    }
    if !removed.is_empty() {
        eprintln!(
            "note: removed {} from {} (an earlier simulation in the other format), so that the raw tables are all this one's",
            removed.join(", "),
            out.display()
        );
    }
    Ok(())
}

/// Simulate the raw tables into `out` (Parquet, or CSV with `csv`), with `truth.json`.
///
/// Data-generating process of the exports (Khandelwal–Schott–Wei demand): for firm i, HS6
/// product g, destination m, year t, true log quality λ = a_i + b_im + β·Digtech_it +
/// β_s·Digtech of i's supplier (+ the other planted channels); log price = c_g + λ/2 +
/// s_i·(ln dist_m − mean) + noise, where s_i is the firm's competition strategy (quality: s > 0,
/// price: s < 0); log quantity = χ_gmt + (σ_g − 1)λ − σ_g(ln p − c_g); the export value is
/// their product. Customs record the value exactly and the quantity with an error that the unit
/// value (value / quantity) carries inversely: ln q is off by −ζ and ln p by +ζ, with
/// ζ = u + ε/(σ_g − 1), u ~ U(−½, ½), ε ~ N(0, 0.1²). So the quality identified from them
/// (ln q + σ ln p over σ − 1) is λ + ζ: ζ is the noise of estimated quality, which the planted
/// values leave out, and the export value does not carry it (if it did, Qua's value weights
/// would lean to the products with the luckiest noise, the more so the more products a row
/// ships, which Digtech raises, and Table 11's export-value volatility would select on it: both
/// bias the estimates away from the planted values). Digtech follows the simulated digital patents,
/// whose rate rises with the prefecture city's 1984 post intensity × its province's lagged
/// broadband (the study's instruments). 2SLS then estimates β plus the effects of what the
/// instruments also move (Digtech's lags, imports, network): its planted value is computed
/// with the instruments (see `planted::truths`).
pub fn simulate(out: &Path, seed: u64, scale: Scale, csv: bool) -> Result<Truth> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out.display().to_string(), e))?;
    remove_other_format(out, csv)?;
    let size = scale.size();
    let n_firms = size.firms;
    let mut s = Stream::new(seed, 11);
    let table: Vec<String> = crate::study::ipc::table_patterns();
    // survey firms with unique normalised names
    let mut firms = Vec::with_capacity(n_firms);
    let mut seen = std::collections::HashSet::new();
    let mut attempts = 0usize;
    while firms.len() < n_firms {
        attempts += 1;
        if attempts > 100 * n_firms {
            return Err(Error::Estimation("could not draw enough distinct firm names".into()));
        }
        let city = draw_city(&mut s);
        let industry = draw_industry(&mut s);
        let name = firm_name(&mut s, city, industry);
        if !seen.insert(normalise_name(&name)) {
            continue;
        }
        let id = 100_000 + firms.len() as i64;
        let phone = format!("{}{:08}", CITIES[city].2, 20_000_000 + s.below(70_000_000));
        let postcode = format!("{}{:03}", CITIES[city].3, s.below(1000));
        let exporter = s.uniform() < size.exporter_share;
        firms.push(Firm {
            id,
            name,
            phone,
            postcode,
            city,
            industry,
            founded: 1985 + s.below(22) as i64,
            exporter,
            innov: (0.8 * s.normal()).exp() * 0.6,
        });
    }

    // survey: firm-year records (a few duplicated, as in the raw survey); ratios vary by firm-year
    let (mut f_id, mut f_name, mut f_phone, mut f_post, mut f_prov, mut f_city, mut f_ind, mut f_year, mut f_found) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut f_assets, mut f_fixed, mut f_emp, mut f_int, mut f_profit, mut f_rev, mut f_out, mut f_liab) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for f in &firms {
        for year in YEARS {
            let copies = if s.uniform() < 0.01 { 2 } else { 1 };
            let assets = (10.0 + 1.5 * s.normal()).exp();
            let emp = (assets / 2000.0 * (0.3 * s.normal()).exp()).max(8.0).round();
            let rev = assets * (1.2 * (0.3 * s.normal()).exp());
            let rec = [
                assets * (0.4 * (0.3 * s.normal()).exp()).min(0.95),
                emp,
                assets * 0.02 * (0.5 * s.normal()).exp(),
                rev * (0.05 + 0.04 * s.normal()),
                rev,
                rev * (0.92 + 0.05 * s.normal()),
                assets * (0.55 + 0.15 * s.normal()).clamp(0.05, 1.5),
            ];
            for _ in 0..copies {
                f_id.push(f.id);
                f_name.push(f.name.clone());
                f_phone.push(f.phone.clone());
                f_post.push(f.postcode.clone());
                f_prov.push(CITIES[f.city].1);
                f_city.push(CITIES[f.city].0);
                let (code_2002, code_2011, ..) = INDUSTRIES[f.industry];
                f_ind.push(if year <= crate::study::industry::LAST_YEAR_OF_2002_CODES {
                    code_2002
                } else {
                    code_2011
                });
                f_year.push(year);
                f_found.push(f.founded);
                f_assets.push(assets);
                f_fixed.push(rec[0]);
                f_emp.push(rec[1]);
                f_int.push(rec[2]);
                f_profit.push(rec[3]);
                f_rev.push(rec[4]);
                f_out.push(rec[5]);
                f_liab.push(rec[6]);
            }
        }
    }
    let mut survey = DataFrame::new(
        f_id.len(),
        vec![
            Column::new("firm_id".into(), f_id),
            Column::new("name".into(), f_name),
            Column::new("phone".into(), f_phone),
            Column::new("postcode".into(), f_post),
            Column::new("province".into(), f_prov),
            Column::new("city".into(), f_city),
            Column::new("industry".into(), f_ind),
            Column::new("year".into(), f_year),
            Column::new("founded".into(), f_found),
            Column::new("total_assets".into(), f_assets),
            Column::new("fixed_assets".into(), f_fixed),
            Column::new("employees".into(), f_emp),
            Column::new("interest".into(), f_int),
            Column::new("operating_profit".into(), f_profit),
            Column::new("revenue".into(), f_rev),
            Column::new("output".into(), f_out),
            Column::new("liabilities".into(), f_liab),
        ],
    )
    .map_err(|e| err("survey", e))?;

    // regions (province-year, 2007-2014 so that lagged broadband exists in 2008): the regional
    // controls, the IPR index and broadband users
    let provinces: Vec<&str> = {
        let mut v: Vec<&str> = CITIES.iter().map(|c| c.1).collect();
        v.dedup();
        v
    };
    let (mut r_p, mut r_y, mut r_gdp, mut r_open, mut r_mkt, mut r_ipr, mut r_bb) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut ln_bb_lag: HashMap<(&str, i64), f64> = HashMap::new();
    let mut ipr_of: Vec<(&str, i64, f64)> = vec![];
    for p in &provinces {
        // IPR: Tianjin and Fujian far below the others, so they alone are below the yearly mean
        let ipr0 = if WEAK_IPR_PROVINCES.contains(p) { 0.2 } else { 0.85 };
        let (g0, o0, m0, i0) = (
            10.0 + 0.5 * s.normal(),
            0.4 + 0.2 * s.uniform(),
            7.0 + s.normal(),
            ipr0 + 0.1 * s.uniform(),
        );
        let growth = 0.15 + 0.04 * s.normal();
        let mut last_bb = f64::NAN;
        for year in 2007..=*YEARS.end() {
            let t = (year - 2008) as f64;
            let bb = (6.0 + growth * t + 0.05 * s.normal()).exp();
            if year >= *YEARS.start() {
                ln_bb_lag.insert((p, year), last_bb.ln());
            }
            last_bb = bb;
            r_p.push(*p);
            r_y.push(year);
            r_gdp.push((g0 + 0.09 * t + 0.02 * s.normal()).exp());
            r_open.push(o0 + 0.03 * s.normal());
            r_mkt.push(m0 + 0.15 * t + 0.1 * s.normal());
            r_ipr.push(i0 + 0.02 * t);
            ipr_of.push((*p, year, i0 + 0.02 * t));
            r_bb.push(bb);
        }
    }
    let mut regions = DataFrame::new(
        r_p.len(),
        vec![
            Column::new("province".into(), r_p),
            Column::new("year".into(), r_y),
            Column::new("gdp".into(), r_gdp),
            Column::new("openness".into(), r_open),
            Column::new("marketisation".into(), r_mkt),
            Column::new("ipr_index".into(), r_ipr),
            Column::new("broadband_users".into(), r_bb),
        ],
    )
    .map_err(|e| err("regions", e))?;

    // prefecture cities with their 1984 post volume and fixed telephones per million people,
    // both driven by one communications factor (so they correlate, as the historical series
    // do). Table 2's instruments are these × ln broadband users of the city's province in t−1
    // (`instruments`, per city-year: [IV_Post, IV_Telephone]); a firm's digital-patent rate
    // rises with its city's standardised IV_Post, so 2SLS finds the planted effect of Digtech
    // and of what Digtech moves (the truths compute it)
    let (mut y_city, mut y_prov, mut y_post, mut y_tel) = (vec![], vec![], vec![], vec![]);
    let mut instruments: HashMap<(usize, i64), [f64; 2]> = HashMap::new();
    for (ci, (city, prov, _, _)) in CITIES.iter().enumerate() {
        let h = s.normal();
        let post84 = (3.0 + 0.5 * (0.9 * h + 0.44 * s.normal())).exp();
        let tel84 = (5.0 + 0.5 * (0.9 * h + 0.44 * s.normal())).exp();
        for year in YEARS {
            let lbb = ln_bb_lag[&(*prov, year)];
            instruments.insert((ci, year), [post84 * lbb, tel84 * lbb]);
        }
        y_city.push(*city);
        y_prov.push(*prov);
        y_post.push(post84);
        y_tel.push(tel84);
    }
    let iv_std: HashMap<(usize, i64), f64> = {
        let v: Vec<f64> = instruments.values().map(|z| z[0]).collect();
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let sd = (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64)
            .sqrt()
            .max(1e-12);
        instruments.iter().map(|(k, z)| (*k, (z[0] - m) / sd)).collect()
    };
    let mut cities = DataFrame::new(
        y_city.len(),
        vec![
            Column::new("province".into(), y_prov),
            Column::new("city".into(), y_city),
            Column::new("post_volume_1984".into(), y_post),
            Column::new("phones_1984".into(), y_tel),
        ],
    )
    .map_err(|e| err("cities", e))?;

    // countries (destination-year)
    let countries_used = &COUNTRIES[..size.countries];
    let (mut k_c, mut k_y, mut k_gdp, mut k_gdppc, mut k_xr, mut k_dist, mut k_nri) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut ln_dist = Vec::with_capacity(countries_used.len());
    let mut demand = Vec::with_capacity(countries_used.len());
    for (ci, c) in countries_used.iter().enumerate() {
        let (base, pop, xr0, dist, nri) = (
            8.5 + 1.2 * s.normal(),
            16.0 + 1.5 * s.normal(),
            (1.0 + 0.5 * s.normal()).abs() + 0.1,
            800.0 + 18_000.0 * s.uniform() + 10.0 * ci as f64,
            3.5 + 1.5 * s.uniform(),
        );
        ln_dist.push(dist.ln());
        demand.push(0.3 * s.normal());
        for year in YEARS {
            let gdppc = (base + 0.02 * (year - 2008) as f64 + 0.01 * s.normal()).exp();
            k_c.push(*c);
            k_y.push(year);
            k_gdppc.push(gdppc);
            k_gdp.push(gdppc * pop.exp());
            k_xr.push(xr0 * (1.0 + 0.03 * s.normal()));
            k_dist.push(dist);
            k_nri.push(nri + 0.05 * (year - 2008) as f64 + 0.05 * s.normal());
        }
    }
    let mean_ln_dist = ln_dist.iter().sum::<f64>() / ln_dist.len() as f64;
    // per destination its [ln distance, ln GDP, ln GDP per capita] over the years, as the
    // panel's competition strategy step reads them from this table
    let places: Vec<[f64; 3]> = (0..countries_used.len())
        .map(|ci| {
            let n = YEARS.count();
            let m = |v: &[f64]| v[ci * n..(ci + 1) * n].iter().map(|x| x.ln()).sum::<f64>() / n as f64;
            [m(&k_dist), m(&k_gdp), m(&k_gdppc)]
        })
        .collect();
    let nri_top = nri_top10(&k_c, &k_y, &k_nri, countries_used);
    let weak_ipr = weak_ipr_years(&ipr_of);
    let mut countries = DataFrame::new(
        k_c.len(),
        vec![
            Column::new("country".into(), k_c),
            Column::new("year".into(), k_y),
            Column::new("gdp".into(), k_gdp),
            Column::new("gdp_per_capita".into(), k_gdppc),
            Column::new("exchange_rate".into(), k_xr),
            Column::new("distance_km".into(), k_dist),
            Column::new("nri".into(), k_nri),
        ],
    )
    .map_err(|e| err("countries", e))?;

    // patents: the rate rises with the city's instrument; co-applicants come from a
    // firm's few standing partners (half of them exporters), so the co-applicant network has
    // repeated ties and firms spanning several partners (structural holes)
    let exporter_ids: Vec<usize> = (0..firms.len()).filter(|&k| firms[k].exporter).collect();
    let partners: Vec<[usize; 3]> = (0..firms.len())
        .map(|_| {
            std::array::from_fn(|_| {
                if s.uniform() < 0.5 && !exporter_ids.is_empty() {
                    exporter_ids[s.below(exporter_ids.len() as u32) as usize]
                } else {
                    s.below(firms.len() as u32) as usize
                }
            })
        })
        .collect();
    let (mut p_no, mut p_year, mut p_grant, mut p_appl, mut p_ipc) = (vec![], vec![], vec![], vec![], vec![]);
    let mut digital: HashMap<(i64, i64), u32> = HashMap::new();
    let mut counter = 0u64;
    for (fk, f) in firms.iter().enumerate() {
        for year in YEARS {
            let z = iv_std[&(f.city, year)];
            let rate = f.innov * if f.exporter { 1.5 } else { 0.5 } * (0.8 * z).exp();
            for _ in 0..s.poisson(rate) {
                counter += 1;
                let is_digital = s.uniform() < 0.4;
                let n_codes = 1 + s.below(3) as usize;
                let codes: Vec<String> = (0..n_codes)
                    .map(|c| {
                        if is_digital && (c == 0 || s.uniform() < 0.5) {
                            concrete_code(&table[s.below(table.len() as u32) as usize], &mut s)
                        } else {
                            format!(
                                "{} {}/{:02}",
                                NON_DIGITAL_SUBCLASSES[s.below(8) as usize],
                                1 + s.below(30),
                                s.below(60)
                            )
                        }
                    })
                    .collect();
                // co-applicants: another surveyed firm, or a university (not a firm)
                let mut applicants = vec![f.name.clone()];
                let co = if s.uniform() < 0.3 {
                    if s.uniform() < 0.7 {
                        let other = &firms[partners[fk][s.below(3) as usize]];
                        if other.id != f.id {
                            applicants.push(other.name.clone());
                            Some(other.id)
                        } else {
                            None
                        }
                    } else {
                        applicants.push(format!("{}大学", &CITIES[f.city].0[..CITIES[f.city].0.len() - 3]));
                        None
                    }
                } else {
                    None
                };
                if is_digital {
                    *digital.entry((f.id, year)).or_default() += 1;
                    if let Some(o) = co {
                        *digital.entry((o, year)).or_default() += 1;
                    }
                }
                p_no.push(format!("CN{year}1{counter:07}"));
                p_year.push(year);
                p_grant.push((s.uniform() < 0.6).then(|| year + 1 + s.below(3) as i64));
                p_appl.push(applicants.join(";"));
                p_ipc.push(codes.join("; "));
            }
        }
    }
    let mut patents = DataFrame::new(
        p_no.len(),
        vec![
            Column::new("application_no".into(), p_no),
            Column::new("application_year".into(), p_year),
            Column::new("grant_year".into(), p_grant),
            Column::new("applicants".into(), p_appl),
            Column::new("ipc".into(), p_ipc),
        ],
    )
    .map_err(|e| err("patents", e))?;
    let digtech = |id: i64, year: i64| (1.0 + *digital.get(&(id, year)).unwrap_or(&0) as f64).ln();

    // products: HS6 codes in chapters 84, 85 and 90 with Broda–Weinstein σ at most 6
    let sigmas = crate::study::quality::SigmaTable::broda_weinstein()?;
    let eligible: Vec<(u32, f64)> = sigmas
        .entries()
        .filter(|(h, sg)| matches!(h / 10, 84 | 85 | 90) && *sg <= 6.0)
        .collect();
    let products: Vec<(String, f64, f64)> = (0..size.products)
        .map(|k| {
            let (hs3, sigma) = eligible[(k * 7 + s.below(3) as usize) % eligible.len()];
            (format!("{hs3:03}{:03}", 100 + k), sigma, 1.0 + 2.0 * s.uniform())
        })
        .collect();

    // supply chain: a tenth of the exporters buy from a surveyed supplier
    let exporters: Vec<usize> = (0..firms.len()).filter(|&k| firms[k].exporter).collect();
    let mut supplier_of: HashMap<i64, usize> = HashMap::new();
    for &k in &exporters {
        if s.uniform() < 0.1 {
            let sup = s.below(firms.len() as u32) as usize;
            if sup != k {
                supplier_of.insert(firms[k].id, sup);
            }
        }
    }

    // what the panel will measure from the patents (needs the survey and patent files)
    let ext = if csv { "csv" } else { "parquet" };
    save(&mut survey, &out.join(format!("firms.{ext}")))?;
    save(&mut patents, &out.join(format!("patents.{ext}")))?;
    let pm = PatentMeasures::read(out, &firms)?;
    let (mut imports, dig_kinds) = digital_imports(&mut s, &firms, countries_used, &digtech)?;

    // customs exports
    let mut truth = Truth {
        seed,
        ..Default::default()
    };
    let (mut c_name, mut c_phone, mut c_post, mut c_year, mut c_hs8, mut c_prod, mut c_ctry, mut c_val, mut c_qty) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    // (product, country, year) cell and identified quality of every true flow, for the truth
    let mut flows: Vec<Flow> = Vec::new();
    let mut strategies = [0usize; 5];
    // the traits of every simulated firm-year-destination (firm index, country, year)
    let mut meta: HashMap<(usize, usize, i64), Traits> = HashMap::new();
    for &k in &exporters {
        let f = &firms[k];
        let renamed = s.uniform() < 0.08;
        let a_i = 2.0 * s.uniform() - 1.0;
        let portfolio: Vec<usize> = {
            let mut v: Vec<usize> = (0..2 + s.below(4))
                .map(|_| s.below(size.products as u32) as usize)
                .collect();
            v.sort();
            v.dedup();
            v
        };
        let n_dest = (2 + s.poisson(7.0) as usize).min(countries_used.len());
        let mut dests: Vec<usize> = Vec::new();
        while dests.len() < n_dest {
            let u = s.uniform();
            let c = ((u * u) * countries_used.len() as f64) as usize;
            if !dests.contains(&c) {
                dests.push(c);
            }
        }
        let b_im: Vec<f64> = dests.iter().map(|_| s.uniform() - 0.5).collect();
        // Table 7's categories: 4 strong quality, 2 weak quality, 3 strong price, 1 weak price;
        // weak slopes large enough that their sign mostly shows, small enough to stay insignificant
        let (category, slope) = match s.uniform() {
            u if u < 0.06 => (4, 0.6),
            u if u < 0.40 => (2, WEAK_SLOPE),
            u if u < 0.50 => (3, -0.6),
            _ => (1, -WEAK_SLOPE),
        };
        strategies[category] += 1;
        let continuing = s.uniform() < 0.5;
        let (entry, exit) = if continuing {
            (*YEARS.start(), *YEARS.end())
        } else {
            let e = *YEARS.start() + s.below(4) as i64;
            (e, (e + 2 + s.below(5) as i64).min(*YEARS.end()))
        };
        let supplier = supplier_of.get(&f.id).map(|&j| firms[j].id);
        // stable destinations are served every year of the firm's spell (Table 4: continuing
        // pairs are 36% of the paper's rows); volatile ones have large sales shocks (Table 11)
        let stable: Vec<bool> = dests.iter().map(|_| s.uniform() < STABLE_SHARE).collect();
        let volatile: Vec<bool> = dests.iter().map(|_| s.uniform() < VOLATILE_SHARE).collect();
        let mut last: Vec<Option<Vec<usize>>> = vec![None; dests.len()];
        for year in entry..=exit {
            let name = if renamed {
                format!("{}{}贸工有限公司", CITIES[f.city].0, SYLLABLES[s.below(24) as usize])
            } else {
                name_variant(&mut s, &f.name)
            };
            let phone = match s.below(20) {
                0 | 1 => String::new(),
                2 => f.phone[f.phone.len() - 5..].to_string(),
                3..=9 => format!("{}-{}", &f.phone[..f.phone.len() - 8], &f.phone[f.phone.len() - 8..]),
                _ => f.phone.clone(),
            };
            let dig = digtech(f.id, year);
            let x = Channels {
                dig,
                dig_l1: digtech(f.id, year - 1),
                dig_l2: digtech(f.id, year - 2),
                dig_sup: supplier.map_or(0.0, |j| digtech(j, year)),
                ties: pm.ties(f.id, year),
                holes: pm.holes(f.id, year),
                dig_kinds: dig_kinds.get(&(f.id, year)).copied().unwrap_or(0.0),
            };
            let common = x.effect();
            // firm-wide sales shock, smaller for digital innovators (Table 11 (3): Vol2 falls)
            let firm_shock = FIRM_SHOCK * (-dig).exp() * s.normal();
            let mut any = false;
            for (d, &c) in dests.iter().enumerate() {
                // a stable destination is served every year; another with probability 0.7;
                // the last one is kept when none was, so every active firm-year exports somewhere
                if !stable[d] && s.uniform() > 0.7 && (d + 1 != dests.len() || any) {
                    last[d] = None;
                    continue;
                }
                any = true;
                let prev = last[d].take();
                let active = product_set(&mut s, &portfolio, prev.as_deref(), dig);
                let traits = Traits {
                    c39: INDUSTRIES[f.industry].2 == "C39",
                    digitalising: matches!(INDUSTRIES[f.industry].2, "C35" | "C36" | "C37" | "C38" | "C40"),
                    weak_ipr: weak_ipr.contains(&(CITIES[f.city].1, year)),
                    nri_top: nri_top.contains(&(c, year)),
                    pq_high: pm.pq_high.get(&f.id).copied(),
                    strategy: category as u8,
                    continuing: continuing && stable[d],
                    volatile: volatile[d],
                };
                meta.insert((k, c, year), traits);
                let beta = digtech_effect(&traits);
                let shock = firm_shock + if volatile[d] { VOLATILE_SHOCK } else { 0.1 } * s.normal();
                for &g in &active {
                    let (hs6, sigma, c_g) = &products[g];
                    // Table 10: a product new to this destination is better with more Digtech
                    let new = prev.as_ref().is_some_and(|p| !p.contains(&g));
                    let effect = QUA_TO_LOG * (beta * dig + common + if new { NEW_PRODUCT * dig } else { 0.0 });
                    let u = s.uniform() - 0.5;
                    let lambda = a_i + b_im[d] + effect;
                    // the sales shock moves quantity and price so that ln q + σ ln p, and with it
                    // the identified quality, is unchanged: it moves only the export value
                    let delta = 0.5 * lambda + slope * (ln_dist[c] - mean_ln_dist) + 0.1 * s.normal() - shock / sigma;
                    let ln_q_true =
                        7.0 + demand[c] + 0.02 * (year - 2008) as f64 + (sigma - 1.0) * lambda - sigma * delta;
                    // the recorded quantity and unit value are off by ∓ζ: their product, the
                    // export value, is the true one, while the identified quality carries ζ
                    let zeta = u + QUANTITY_ERROR * s.normal() / (sigma - 1.0);
                    let (q, ln_price) = recorded(ln_q_true, c_g + delta, zeta);
                    let price = ln_price.exp();
                    flows.push(Flow {
                        product: g,
                        country: c,
                        year,
                        firm: k,
                        quality: lambda + zeta,
                        value: q * price,
                        ln_price,
                        effect,
                    });
                    // one customs line, or the flow split over two HS8 lines of the product
                    let parts = if s.uniform() < 0.2 && q >= 2.0 { 2 } else { 1 };
                    for part in 0..parts {
                        let qp = if parts == 1 {
                            q
                        } else if part == 0 {
                            (q / 2.0).floor()
                        } else {
                            q - (q / 2.0).floor()
                        };
                        c_name.push(name.clone());
                        c_phone.push(phone.clone());
                        c_post.push(f.postcode.clone());
                        c_year.push(year);
                        c_hs8.push(format!("{hs6}{:02}", 10 * (part + 1)));
                        c_prod.push(if g % 2 == 0 { "电子元件" } else { "机械零件" }.to_string());
                        c_ctry.push(countries_used[c]);
                        c_val.push(qp * price);
                        c_qty.push(qp);
                    }
                }
                last[d] = Some(active);
            }
            truth.links.push((name, year, f.id));
        }
    }
    // trading intermediaries: customs exporters that are not producers
    for k in 0..(n_firms / 20).max(3) {
        let city = k % CITIES.len();
        let name = format!(
            "{}{}{}进出口有限公司",
            CITIES[city].0,
            SYLLABLES[k % 24],
            SYLLABLES[(k * 7) % 24]
        );
        let phone = format!("{}{:08}", CITIES[city].2, 90_000_000 + k);
        for year in YEARS {
            for _ in 0..1 + s.below(4) {
                let g = s.below(size.products as u32) as usize;
                let q = (3.0 + s.normal()).exp().round() + 1.0;
                c_name.push(name.clone());
                c_phone.push(phone.clone());
                c_post.push(format!("{}{:03}", CITIES[city].3, k % 1000));
                c_year.push(year);
                c_hs8.push(format!("{}10", products[g].0));
                c_prod.push("机械零件".to_string());
                c_ctry.push(countries_used[s.below(countries_used.len() as u32) as usize]);
                c_val.push(q * (products[g].2 + 0.5 * s.normal()).exp());
                c_qty.push(q);
            }
        }
        truth.intermediaries.push(name);
    }
    let mut exports = DataFrame::new(
        c_name.len(),
        vec![
            Column::new("customs_name".into(), c_name),
            Column::new("phone".into(), c_phone),
            Column::new("postcode".into(), c_post),
            Column::new("year".into(), c_year),
            Column::new("hs8".into(), c_hs8),
            Column::new("product_name".into(), c_prod),
            Column::new("country".into(), c_ctry),
            Column::new("value_usd".into(), c_val),
            Column::new("quantity".into(), c_qty),
        ],
    )
    .map_err(|e| err("exports", e))?;

    // supplier–client links (survey names), every year the client exports
    let (mut l_year, mut l_sup, mut l_cli) = (vec![], vec![], vec![]);
    let mut pairs: Vec<(&i64, &usize)> = supplier_of.iter().collect();
    pairs.sort();
    for (client, &sup) in pairs {
        let c = &firms[(client - 100_000) as usize];
        for year in YEARS {
            l_year.push(year);
            l_sup.push(firms[sup].name.clone());
            l_cli.push(c.name.clone());
        }
    }
    let mut chain = DataFrame::new(
        l_year.len(),
        vec![
            Column::new("year".into(), l_year),
            Column::new("supplier_name".into(), l_sup),
            Column::new("client_name".into(), l_cli),
        ],
    )
    .map_err(|e| err("supply chain", e))?;

    let mut dig: Vec<(i64, i64, u32)> = digital.iter().map(|(&(f, y), &c)| (f, y, c)).collect();
    dig.sort();
    truth.digital_applications = dig;
    // Table 7 classifies firms from the flows as the panel attributes them: to the firm its
    // matching links their customs name to (read back with the pipeline's own matching)
    save(&mut exports, &out.join(format!("exports.{ext}")))?;
    let linked = linked_firms(out, &truth.links)?;
    // every column's planted value, computed on the simulated rows as the panel will see them
    let ctx = RowContext {
        firms: &firms,
        pm: &pm,
        digital: &digital,
        dig_kinds: &dig_kinds,
        supplier_of: &supplier_of,
        instruments: &instruments,
        places: &places,
        linked: &linked,
    };
    let mut rows = truth_rows(&flows, &meta, size.products, &ctx);
    planted::winsorize_regressors(&mut rows);
    let mut seen = std::collections::BTreeSet::new();
    truth.strategies = rows
        .iter()
        .filter(|r| seen.insert(r.pair.0))
        .map(|r| (firms[r.pair.0].id, r.traits.strategy, r.strategy))
        .collect();
    truth.strategies.sort();
    truth.planted = planted::truths(&rows);
    for (cat, name) in [
        (4, "strong_quality"),
        (2, "weak_quality"),
        (3, "strong_price"),
        (1, "weak_price"),
    ] {
        truth.planted.insert(format!("firms_{name}"), strategies[cat] as f64);
    }

    save(&mut imports, &out.join(format!("imports.{ext}")))?;
    save(&mut countries, &out.join(format!("countries.{ext}")))?;
    save(&mut regions, &out.join(format!("regions.{ext}")))?;
    save(&mut cities, &out.join(format!("cities.{ext}")))?;
    save(&mut chain, &out.join(format!("supply_chain.{ext}")))?;
    let json = serde_json::to_string_pretty(&truth).map_err(|e| Error::Data(e.to_string()))?;
    let path = out.join("truth.json");
    crate::report::write_atomic(&path, &json)?;
    Ok(truth)
}

/// A flow's recorded quantity (whole units, at least one) and log unit price from its true log
/// quantity and log price and the recording error ζ: ln q − ζ and ln p + ζ, so the export value
/// q·p is the true one while ln q + σ ln p, and with it the identified quality, moves by (σ − 1)ζ.
fn recorded(ln_q_true: f64, ln_p_true: f64, zeta: f64) -> (f64, f64) {
    ((ln_q_true - zeta).exp().round().max(1.0), ln_p_true + zeta)
}

/// One simulated export flow, as the truth computation needs it.
struct Flow {
    product: usize,
    country: usize,
    year: i64,
    firm: usize,
    /// Identified log quality λ + ζ (ζ: the error of the recorded quantity and unit value).
    quality: f64,
    value: f64,
    /// ln unit price (the customs lines of a flow share it).
    ln_price: f64,
    /// The planted part of λ (Digtech and the channels).
    effect: f64,
}

/// The channels that move a firm-year's quality besides its own Digtech effect.
struct Channels {
    dig: f64,
    dig_l1: f64,
    dig_l2: f64,
    dig_sup: f64,
    /// Co-applicants (Degree) less the network mean; 0 outside.
    ties: f64,
    /// Structural holes (CI = 1 − Burt's constraint) less the network mean; 0 outside.
    holes: f64,
    dig_kinds: f64,
}

impl Channels {
    /// Their effect on Qua (Tables 4, 12 and 13).
    fn effect(&self) -> f64 {
        planted::LAG1 * self.dig_l1
            + planted::LAG2 * self.dig_l2
            + planted::SUPPLIER * self.dig_sup
            + planted::DEGREE_PER_TIE * self.ties
            + planted::HOLES * self.holes
            + planted::DIG_KINDS * self.dig_kinds
            + planted::DIG_KINDS_X_DIGTECH * self.dig * self.dig_kinds
    }
}

/// What the panel will measure from the simulated patents (read back from `out` with the
/// pipeline's own code): per firm-year counts and network position, and per firm whether its
/// patent quality (mean Digtech2) is above the median over exporters (Table 6's split).
struct PatentMeasures {
    fy: std::collections::BTreeMap<(i64, i64), crate::study::patents::FirmYear>,
    pq_high: HashMap<i64, bool>,
    /// Firms with a digital patent granted in the panel's years (Table 3's Digtech_A sample).
    granted: std::collections::BTreeSet<i64>,
    /// Mean Degree and CI over the network's firm-years: the planted network effects are
    /// deviations from them, so that joining the network (which needs a digital patent) does not
    /// itself move quality and bias every Digtech estimate.
    centre: (f64, f64),
}

impl PatentMeasures {
    fn read(out: &Path, firms: &[Firm]) -> Result<PatentMeasures> {
        let fy = crate::study::patents::firm_year_patents(out)?;
        let mut breadth: HashMap<i64, (f64, usize)> = HashMap::new();
        for ((f, _), e) in &fy {
            let b = crate::study::ipc::knowledge_breadth(&e.codes);
            if b.is_finite() {
                let x = breadth.entry(*f).or_default();
                x.0 += b;
                x.1 += 1;
            }
        }
        let mean = |f: &i64| breadth.get(f).map(|(s, n)| s / *n as f64);
        let mut of_exporters: Vec<f64> = firms
            .iter()
            .filter(|f| f.exporter)
            .filter_map(|f| mean(&f.id))
            .collect();
        of_exporters.sort_by(f64::total_cmp);
        let median = crate::study::panel::quantile(&of_exporters, 0.5);
        let pq_high = breadth.keys().map(|f| (*f, mean(f).unwrap() > median)).collect();
        let granted = crate::study::patents::granted_firms(&fy, YEARS);
        let mut pm = PatentMeasures {
            fy,
            pq_high,
            granted,
            centre: (0.0, 0.0),
        };
        let (mut t, mut c, mut n) = (0.0, 0.0, 0usize);
        for &(f, y) in pm.fy.keys() {
            if pm.ci(f, y).is_finite() {
                t += pm.degree(f, y);
                c += pm.ci(f, y);
                n += 1;
            }
        }
        pm.centre = (t / n.max(1) as f64, c / n.max(1) as f64);
        Ok(pm)
    }

    /// Degree as the panel has it (NaN outside the network).
    fn degree(&self, f: i64, y: i64) -> f64 {
        self.fy.get(&(f, y)).map_or(f64::NAN, |e| e.degree)
    }

    /// CI as the panel has it (NaN outside the network).
    fn ci(&self, f: i64, y: i64) -> f64 {
        self.fy.get(&(f, y)).map_or(f64::NAN, |e| e.holes)
    }

    /// Degree and CI as deviations from the network's means, for the planted effects: 0 outside
    /// the network (where both are undefined).
    fn ties(&self, f: i64, y: i64) -> f64 {
        let d = self.degree(f, y);
        if d.is_finite() {
            d - self.centre.0
        } else {
            0.0
        }
    }

    fn holes(&self, f: i64, y: i64) -> f64 {
        let c = self.ci(f, y);
        if c.is_finite() {
            c - self.centre.1
        } else {
            0.0
        }
    }

    /// ln(1 + count) of granted (by grant year; NaN for a firm without grants, as the panel),
    /// co-applied and single-applicant digital patents.
    fn counts(&self, f: i64, y: i64) -> [f64; 3] {
        let ln1 = |c: u32| (1.0 + c as f64).ln();
        let [a, co, single] = self.fy.get(&(f, y)).map_or([0.0; 3], |e| {
            [ln1(e.digital_granted), ln1(e.digital_co), ln1(e.digital_single)]
        });
        [if self.granted.contains(&f) { a } else { f64::NAN }, co, single]
    }
}

/// Destinations in each year's top 10% of NRI, as the panel: NRI at or above the year's 90th
/// percentile over the destinations.
fn nri_top10(c: &[&str], y: &[i64], nri: &[f64], used: &[&str]) -> std::collections::HashSet<(usize, i64)> {
    let mut by_year: HashMap<i64, Vec<(usize, f64)>> = HashMap::new();
    for k in 0..c.len() {
        let idx = used.iter().position(|u| u == &c[k]).expect("a simulated country");
        by_year.entry(y[k]).or_default().push((idx, nri[k]));
    }
    let mut top = std::collections::HashSet::new();
    for (year, v) in by_year {
        let mut sorted: Vec<f64> = v.iter().map(|x| x.1).collect();
        sorted.sort_by(f64::total_cmp);
        let p90 = crate::study::panel::quantile(&sorted, 0.9);
        top.extend(v.iter().filter(|x| x.1 >= p90).map(|x| (x.0, year)));
    }
    top
}

/// Province-years whose IPR index is not above that year's mean over provinces (Table 5's weak
/// side, as the panel).
fn weak_ipr_years<'a>(ipr: &[(&'a str, i64, f64)]) -> std::collections::HashSet<(&'a str, i64)> {
    let mut mean: HashMap<i64, (f64, usize)> = HashMap::new();
    for (_, y, v) in ipr {
        let e = mean.entry(*y).or_default();
        e.0 += v;
        e.1 += 1;
    }
    ipr.iter()
        .filter(|(_, y, v)| *v <= mean[y].0 / mean[y].1 as f64)
        .map(|(p, y, _)| (*p, *y))
        .collect()
}

/// Products a firm ships to a destination this year. With last year's set known, a product
/// stays with probability 0.65 + 0.02·Digtech and enters with 0.35 + 0.02·Digtech (Table 10:
/// digital innovators keep and add more products and drop fewer); a destination not served last
/// year gets each of the firm's products with probability 0.6.
fn product_set(s: &mut Stream, portfolio: &[usize], prev: Option<&[usize]>, dig: f64) -> Vec<usize> {
    let v: Vec<usize> = portfolio
        .iter()
        .copied()
        .filter(|g| {
            let p = match prev {
                None => 0.6,
                Some(p) if p.contains(g) => (0.65 + 0.02 * dig).min(0.95),
                Some(_) => (0.35 + 0.02 * dig).min(0.9),
            };
            s.uniform() < p
        })
        .collect();
    if v.is_empty() {
        vec![portfolio[s.below(portfolio.len() as u32) as usize]]
    } else {
        v
    }
}

/// Customs imports of the exporters: digital products (OECD/UNCTAD ICT codes with digital
/// names) at a rate that rises with the firm's innovativeness and a little with its Digtech
/// (Table 12's first steps), so that about 69% of rows import digital products, as the paper's
/// 89,531 of 129,833; ordinary inputs beside them. Returns the table and dig_kinds (ln(1 +
/// digital HS8 codes)) per (firm id, year).
fn digital_imports(
    s: &mut Stream,
    firms: &[Firm],
    countries: &[&str],
    digtech: &dyn Fn(i64, i64) -> f64,
) -> Result<(DataFrame, HashMap<(i64, i64), f64>)> {
    let ict: Vec<&str> = ICT_GOODS.lines().skip(1).filter_map(|l| l.split(',').next()).collect();
    let (mut i_name, mut i_phone, mut i_post, mut i_year, mut i_hs8, mut i_prod, mut i_ctry, mut i_val, mut i_qty) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut kinds: HashMap<(i64, i64), std::collections::HashSet<String>> = HashMap::new();
    for f in firms.iter().filter(|f| f.exporter) {
        let rate = DIGITAL_IMPORTS * (0.4 + 0.6 * f.innov.min(2.0));
        for year in YEARS {
            let n_digital = s.poisson(rate * (0.1 * digtech(f.id, year)).exp());
            for line in 0..n_digital + s.poisson(1.0) {
                let digital = line < n_digital;
                let (hs, prod) = if digital {
                    (
                        format!("{}{:02}", ict[s.below(ict.len() as u32) as usize], s.below(100)),
                        DIGITAL_PRODUCTS[s.below(DIGITAL_PRODUCTS.len() as u32) as usize],
                    )
                } else {
                    // plastics; a quarter named after the chips they carry, which the keyword
                    // step would take for digital products and the HS-chapter step excludes
                    let code = 39_000_000 + s.below(999_999);
                    let name = if code % 4 == 0 {
                        "集成电路包装用塑料托盘"
                    } else {
                        "塑料制品"
                    };
                    (format!("{code:08}"), name)
                };
                if digital {
                    kinds.entry((f.id, year)).or_default().insert(hs.clone());
                }
                i_name.push(name_variant(s, &f.name));
                i_phone.push(f.phone.clone());
                i_post.push(f.postcode.clone());
                i_year.push(year);
                i_hs8.push(hs);
                i_prod.push(prod);
                i_ctry.push(countries[s.below(countries.len() as u32) as usize]);
                let q = (2.0 + s.normal()).exp().round() + 1.0;
                i_val.push(q * (3.0 + 0.5 * s.normal()).exp());
                i_qty.push(q);
            }
        }
    }
    let df = DataFrame::new(
        i_name.len(),
        vec![
            Column::new("customs_name".into(), i_name),
            Column::new("phone".into(), i_phone),
            Column::new("postcode".into(), i_post),
            Column::new("year".into(), i_year),
            Column::new("hs8".into(), i_hs8),
            Column::new("product_name".into(), i_prod),
            Column::new("country".into(), i_ctry),
            Column::new("value_usd".into(), i_val),
            Column::new("quantity".into(), i_qty),
        ],
    )
    .map_err(|e| err("imports", e))?;
    let kinds = kinds
        .into_iter()
        .map(|(k, v)| (k, (1.0 + v.len() as f64).ln()))
        .collect();
    Ok((df, kinds))
}

/// Mean digital-import lines per firm-year of an averagely innovative exporter.
const DIGITAL_IMPORTS: f64 = 1.5;

/// What [`truth_rows`] reads besides the flows.
struct RowContext<'a> {
    firms: &'a [Firm],
    pm: &'a PatentMeasures,
    digital: &'a HashMap<(i64, i64), u32>,
    dig_kinds: &'a HashMap<(i64, i64), f64>,
    supplier_of: &'a HashMap<i64, usize>,
    /// Table 2's instruments per (city, year).
    instruments: &'a HashMap<(usize, i64), [f64; 2]>,
    /// Per destination its [ln distance, ln GDP, ln GDP per capita] means over the years.
    places: &'a [[f64; 3]],
    /// (firm id, year) → the firm the panel's matching links that firm-year's customs name to.
    linked: &'a HashMap<(i64, i64), i64>,
}

/// (firm id, year) → the firm whose flows the panel counts that firm-year's exports as: the
/// pipeline's matching ([`crate::study::matching::match_table`]) links each customs name of a
/// year to one firm, or none, and renamed firms sometimes share a name (their lines then go to
/// one of them). Firm-years left out are not in the panel.
fn linked_firms(out: &Path, links: &[(String, i64, i64)]) -> Result<HashMap<(i64, i64), i64>> {
    let (found, _) = crate::study::matching::match_table(out, "exports")?;
    let to: HashMap<(&str, i64), i64> = found
        .iter()
        .map(|l| ((l.customs_name.as_str(), l.year), l.firm_id))
        .collect();
    Ok(links
        .iter()
        .filter_map(|(n, y, f)| to.get(&(n.as_str(), *y)).map(|&j| ((*f, *y), j)))
        .collect())
}

/// The simulated panel's rows (firm, destination, year) with the regressors as the panel will
/// measure them and the planted part of Qua: λ̂ is demeaned within its (product, destination,
/// year) cell and divided by its product's range before it is value-weighted over the row's
/// products, so a row's planted Qua is Σ_g s_g (1 − 1/n_cell) effect_g / range_g, and each
/// product's planted r-Qua (1 − 1/n_cell) effect_g / range_g enters Table 10's value-weighted
/// means of kept, new and dropped products as the panel forms them ([`Dynamics::between`]).
fn truth_rows(
    flows: &[Flow],
    meta: &HashMap<(usize, usize, i64), Traits>,
    products: usize,
    cx: &RowContext,
) -> Vec<Row> {
    let mut cells: HashMap<(usize, usize, i64), (f64, usize)> = HashMap::new();
    for f in flows {
        let e = cells.entry((f.product, f.country, f.year)).or_default();
        e.0 += f.quality;
        e.1 += 1;
    }
    let mut range = vec![(f64::INFINITY, f64::NEG_INFINITY); products];
    for f in flows {
        let (sum, n) = cells[&(f.product, f.country, f.year)];
        let v = f.quality - sum / n as f64;
        range[f.product] = (range[f.product].0.min(v), range[f.product].1.max(v));
    }
    // per row: Σ v·effect on Qua, Σ v·effect on λ, Σ v; and each product's planted r-Qua
    // (Table 10's quality of kept, new and dropped products)
    // Table 3's price: ln p min-max standardised within product, so a flow's planted part is
    // half its planted λ (prices rise by half the quality) over the product's ln-price range
    let mut prange = vec![(f64::INFINITY, f64::NEG_INFINITY); products];
    for f in flows {
        prange[f.product] = (prange[f.product].0.min(f.ln_price), prange[f.product].1.max(f.ln_price));
    }
    let mut price_acc: HashMap<(usize, usize, i64), (f64, f64)> = HashMap::new();
    for f in flows {
        let r = prange[f.product].1 - prange[f.product].0;
        if r > 1e-12 * (1.0 + prange[f.product].1.abs()) {
            let e = price_acc.entry((f.firm, f.country, f.year)).or_default();
            e.0 += f.value * 0.5 * f.effect / r;
            e.1 += f.value;
        }
    }
    let mut acc: std::collections::BTreeMap<(usize, usize, i64), [f64; 3]> = Default::default();
    let mut by_product: HashMap<(usize, usize, i64), BTreeMap<u32, (f64, f64)>> = HashMap::new();
    for f in flows {
        let n = cells[&(f.product, f.country, f.year)].1 as f64;
        let r = range[f.product].1 - range[f.product].0;
        let scale = if r > 0.0 { (1.0 - 1.0 / n) / r } else { 0.0 };
        let e = acc.entry((f.firm, f.country, f.year)).or_default();
        e[0] += f.value * f.effect * scale;
        e[2] += f.value;
        by_product
            .entry((f.firm, f.country, f.year))
            .or_default()
            .entry(f.product as u32)
            .or_insert((f.effect * scale, 0.0))
            .1 += f.value;
    }
    let (continuing, vol_high) = pair_flags(&acc);
    let seen: Vec<(i64, &Flow)> = flows
        .iter()
        .filter_map(|f| cx.linked.get(&(cx.firms[f.firm].id, f.year)).map(|&j| (j, f)))
        .collect();
    let classified = classified_strategies(&seen, cx.places);
    let ln1 = |c: Option<&u32>| (1.0 + *c.unwrap_or(&0) as f64).ln();
    let dig = |id: i64, y: i64| {
        if y < *YEARS.start() {
            f64::NAN
        } else {
            ln1(cx.digital.get(&(id, y)))
        }
    };
    acc.iter()
        .map(|(&(k, c, y), v)| {
            let id = cx.firms[k].id;
            let [dig_a, dig_co, dig_in] = cx.pm.counts(id, y);
            // the panel's Table 10 quality measures need the pair in t−1 (NaN otherwise)
            let dynamics = by_product
                .get(&(k, c, y - 1))
                .map(|prev| Dynamics::between(prev, &by_product[&(k, c, y)]));
            let dyn_of = |f: fn(&Dynamics) -> f64| dynamics.as_ref().map_or(f64::NAN, f);
            let [iv_post, iv_telephone] = cx
                .instruments
                .get(&(cx.firms[k].city, y))
                .copied()
                .unwrap_or([f64::NAN; 2]);
            Row {
                pair: (k, c),
                year: y,
                dig: dig(id, y),
                dig_l1: dig(id, y - 1),
                dig_l2: dig(id, y - 2),
                dig_a,
                dig_co,
                dig_in,
                degree: cx.pm.degree(id, y),
                ci: cx.pm.ci(id, y),
                dig_kinds: cx.dig_kinds.get(&(id, y)).copied().unwrap_or(0.0),
                dig_sup: cx.supplier_of.get(&id).map_or(f64::NAN, |&j| dig(cx.firms[j].id, y)),
                iv_post,
                iv_telephone,
                qual_keep: dyn_of(|d| d.qual_keep),
                qual_in: dyn_of(|d| d.qual_in),
                qual_sub2: dyn_of(|d| d.substitution().1),
                traits: meta[&(k, c, y)],
                strategy: classified.get(&id).copied(),
                continuing: continuing.contains(&(k, c)),
                vol_high: vol_high.get(&(k, c, y)).copied(),
                qua: v[0] / v[2],
                price: price_acc.get(&(k, c, y)).map_or(f64::NAN, |(p, w)| p / w),
            }
        })
        .collect()
}

/// Table 7's classification of each simulated firm as the panel makes it
/// ([`crate::study::panel::firm_strategies`] on each row's value-weighted log unit price relative
/// to its product-year mean, over the `flows` the panel keeps, each with the firm id it counts
/// it for): Table 8's columns run on these groups, not on the planted ones.
fn classified_strategies(flows: &[(i64, &Flow)], places: &[[f64; 3]]) -> HashMap<i64, u8> {
    // the panel's flow is a (firm, product, destination, year) cell: flows of two firms that
    // it counts for one are summed, and their log unit price is that of the sum
    let mut cell: std::collections::BTreeMap<(i64, usize, usize, i64), (f64, f64)> = Default::default();
    for (j, f) in flows {
        let e = cell.entry((*j, f.product, f.country, f.year)).or_default();
        e.0 += f.value;
        e.1 += f.value / f.ln_price.exp();
    }
    let mut pmean: HashMap<(usize, i64), (f64, usize)> = HashMap::new();
    for (&(_, g, _, y), &(v, q)) in &cell {
        let e = pmean.entry((g, y)).or_default();
        e.0 += (v / q).ln();
        e.1 += 1;
    }
    // per row: Σ value × relative log price, Σ value
    let mut rows: std::collections::BTreeMap<(i64, usize, i64), (f64, f64)> = Default::default();
    for (&(j, g, c, y), &(v, q)) in &cell {
        let (sum, n) = pmean[&(g, y)];
        let e = rows.entry((j, c, y)).or_default();
        e.0 += v * ((v / q).ln() - sum / n as f64);
        e.1 += v;
    }
    crate::study::panel::firm_strategies(rows.iter().map(|(&(k, c, _), &(wp, v))| (k, c, wp / v)), |c| {
        places.get(c).copied()
    })
    .into_iter()
    .collect()
}

type PairFlags = (
    std::collections::HashSet<(usize, usize)>,
    HashMap<(usize, usize, i64), bool>,
);

/// The panel's `continuing` (pair exported in every year) and `vol_high` (Vol at or above its
/// yearly mean) from the rows' export values.
fn pair_flags(acc: &std::collections::BTreeMap<(usize, usize, i64), [f64; 3]>) -> PairFlags {
    let mut series: std::collections::BTreeMap<(usize, usize), Vec<(i64, f64)>> = Default::default();
    for (&(k, c, y), v) in acc {
        series.entry((k, c)).or_default().push((y, v[2]));
    }
    let years = YEARS.count();
    let continuing = series
        .iter()
        .filter(|(_, s)| s.len() == years)
        .map(|(p, _)| *p)
        .collect();
    let mut vol: Vec<((usize, usize, i64), f64)> = vec![];
    for ((k, c), s) in &series {
        for ((y, _), v) in s.iter().zip(crate::study::panel::volatility(s)) {
            vol.push(((*k, *c, *y), v));
        }
    }
    let mut mean: HashMap<i64, (f64, usize)> = HashMap::new();
    for ((_, _, y), v) in vol.iter().filter(|x| x.1.is_finite()) {
        let e = mean.entry(*y).or_default();
        e.0 += v;
        e.1 += 1;
    }
    let high = vol
        .iter()
        .filter(|x| x.1.is_finite())
        .map(|((k, c, y), v)| ((*k, *c, *y), *v >= mean[y].0 / mean[y].1 as f64))
        .collect();
    (continuing, high)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recording error moves the identified quality and leaves the export value alone (up to
    /// the rounding of the quantity): with it in the value, Qua's value weights and Table 11's
    /// volatility split would select on the noise the planted values leave out.
    #[test]
    fn the_quality_noise_is_not_in_the_export_value() {
        let mut s = Stream::new(11, 4);
        for _ in 0..1000 {
            let (ln_q, ln_p, sigma) = (5.0 + 3.0 * s.uniform(), s.normal(), 1.3 + 4.0 * s.uniform());
            let zeta = s.uniform() - 0.5 + 0.1 * s.normal() / (sigma - 1.0);
            let (q, lp) = recorded(ln_q, ln_p, zeta);
            let (q0, lp0) = recorded(ln_q, ln_p, 0.0);
            let value = |q: f64, lp: f64| q * lp.exp();
            let tol = 1.0 / q.min(q0);
            assert!(
                (value(q, lp) / value(q0, lp0) - 1.0).abs() < tol,
                "ζ = {zeta} moves the value"
            );
            let identified = |q: f64, lp: f64| (q.ln() + sigma * lp) / (sigma - 1.0);
            let moved = identified(q, lp) - identified(q0, lp0);
            assert!(
                (moved - zeta).abs() < tol / (sigma - 1.0),
                "ζ = {zeta}: identified quality moves by {moved}"
            );
        }
    }
}
