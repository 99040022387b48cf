//! `fegpu simulate`: seeded stand-ins for the study's raw databases (the industrial-firm survey,
//! customs exports and imports, patents, country and region tables), with the messiness of the real ones —
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

const CITIES: [(&str, &str, &str, &str); 8] = [
    ("深圳市", "广东", "0755", "518"),
    ("广州市", "广东", "020", "510"),
    ("杭州市", "浙江", "0571", "310"),
    ("宁波市", "浙江", "0574", "315"),
    ("苏州市", "江苏", "0512", "215"),
    ("青岛市", "山东", "0532", "266"),
    ("厦门市", "福建", "0592", "361"),
    ("天津市", "天津", "022", "300"),
];
const SYLLABLES: [&str; 24] = [
    "华", "强", "新", "宏", "盛", "达", "科", "通", "瑞", "丰", "源", "海", "天", "泰", "恒", "宇", "光", "明", "信",
    "和", "力", "佳", "美", "鑫",
];
const INDUSTRIES: [(&str, &str); 6] = [
    ("C35", "机械设备"),
    ("C36", "汽车配件"),
    ("C37", "船舶装备"),
    ("C38", "电气"),
    ("C39", "电子科技"),
    ("C40", "仪器仪表"),
];
const COUNTRIES: [&str; 12] = [
    "USA", "JPN", "KOR", "DEU", "GBR", "FRA", "AUS", "SGP", "IND", "BRA", "RUS", "VNM",
];
/// IPC subclasses outside the CNIPA digital table (checked by a test).
pub const NON_DIGITAL_SUBCLASSES: [&str; 8] = ["A01B", "A23L", "B60K", "C07D", "A47C", "C05F", "F16H", "B65D"];
const YEARS: std::ops::RangeInclusive<i64> = 2008..=2014;
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

fn firm_name(s: &mut Stream, city: usize, industry: usize) -> String {
    // three syllables: 8 cities × 24³ brands × 6 industries leaves room for 30,000 unique names
    let brand: String = (0..3)
        .map(|_| SYLLABLES[s.below(SYLLABLES.len() as u32) as usize])
        .collect();
    format!("{}{}{}有限公司", CITIES[city].0, brand, INDUSTRIES[industry].1)
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

/// Simulate the raw tables into `out` (Parquet, or CSV with `csv`), with `truth.json`.
pub fn simulate(out: &Path, seed: u64, scale: Scale, csv: bool) -> Result<Truth> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out.display().to_string(), e))?;
    let n_firms = match scale {
        Scale::Small => 300,
        Scale::Paper => 30_000,
    };
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
        let city = s.below(CITIES.len() as u32) as usize;
        let industry = s.below(INDUSTRIES.len() as u32) as usize;
        let name = firm_name(&mut s, city, industry);
        if !seen.insert(normalise_name(&name)) {
            continue;
        }
        let id = 100_000 + firms.len() as i64;
        let phone = format!("{}{:08}", CITIES[city].2, 20_000_000 + s.below(70_000_000));
        let postcode = format!("{}{:03}", CITIES[city].3, s.below(1000));
        let exporter = s.uniform() < 0.1;
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

    // survey: firm-year records (a few duplicated, as in the raw survey)
    let (mut f_id, mut f_name, mut f_phone, mut f_post, mut f_prov, mut f_city, mut f_ind, mut f_year, mut f_found) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut f_assets, mut f_fixed, mut f_emp, mut f_int, mut f_profit, mut f_rev, mut f_out, mut f_liab) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for f in &firms {
        for year in YEARS {
            let copies = if s.uniform() < 0.01 { 2 } else { 1 };
            let assets = (10.0 + 1.5 * s.normal()).exp();
            for _ in 0..copies {
                f_id.push(f.id);
                f_name.push(f.name.clone());
                f_phone.push(f.phone.clone());
                f_post.push(f.postcode.clone());
                f_prov.push(CITIES[f.city].1);
                f_city.push(CITIES[f.city].0);
                f_ind.push(INDUSTRIES[f.industry].0);
                f_year.push(year);
                f_found.push(f.founded);
                f_assets.push(assets);
                f_fixed.push(assets * 0.4);
                f_emp.push((assets / 2000.0).max(8.0).round());
                f_int.push(assets * 0.02);
                f_profit.push(assets * 0.05);
                f_rev.push(assets * 1.2);
                f_out.push(assets * 1.1);
                f_liab.push(assets * 0.55);
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
    .map_err(|e| Error::Data(format!("building the survey table: {e}")))?;

    // customs exports
    let mut truth = Truth {
        seed,
        ..Default::default()
    };
    let (mut c_name, mut c_phone, mut c_post, mut c_year, mut c_hs8, mut c_prod, mut c_ctry, mut c_val, mut c_qty) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut push_rows = |name: &str, phone: &str, post: &str, year: i64, s: &mut Stream| {
        for _ in 0..1 + s.below(4) {
            let hs = 85_000_000 + s.below(999_999) as i64;
            c_name.push(name.to_string());
            c_phone.push(phone.to_string());
            c_post.push(post.to_string());
            c_year.push(year);
            c_hs8.push(format!("{hs:08}"));
            c_prod.push(
                if s.uniform() < 0.3 {
                    "电子元件"
                } else {
                    "机械零件"
                }
                .to_string(),
            );
            c_ctry.push(COUNTRIES[s.below(COUNTRIES.len() as u32) as usize]);
            let q = (3.0 + s.normal()).exp().round() + 1.0;
            c_val.push(q * (2.0 + 0.5 * s.normal()).exp());
            c_qty.push(q);
        }
    };
    for f in firms.iter().filter(|f| f.exporter) {
        // one customs spelling per firm-year; some firms are renamed in customs (only the phone
        // and postcode can find them), some phones are missing or short
        let renamed = s.uniform() < 0.08;
        for year in YEARS {
            if s.uniform() < 0.15 {
                continue;
            }
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
            push_rows(&name, &phone, &f.postcode, year, &mut s);
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
            push_rows(
                &name,
                &phone,
                &format!("{}{:03}", CITIES[city].3, k % 1000),
                year,
                &mut s,
            );
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
    .map_err(|e| Error::Data(format!("building the exports table: {e}")))?;

    // customs imports: some firms import ICT goods (OECD/UNCTAD ICT HS codes) or goods with
    // digital words in their Chinese names; the rest are ordinary inputs
    let ict: Vec<&str> = ICT_GOODS.lines().skip(1).filter_map(|l| l.split(',').next()).collect();
    let (mut i_name, mut i_phone, mut i_post, mut i_year, mut i_hs8, mut i_prod, mut i_ctry, mut i_val, mut i_qty) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for f in firms.iter().filter(|f| f.exporter) {
        for year in YEARS {
            for _ in 0..s.poisson(1.5) {
                let digital = s.uniform() < 0.3 * f.innov.min(2.0);
                let (hs, prod) = if digital {
                    (
                        format!("{}{:02}", ict[s.below(ict.len() as u32) as usize], s.below(100)),
                        DIGITAL_PRODUCTS[s.below(DIGITAL_PRODUCTS.len() as u32) as usize],
                    )
                } else {
                    (format!("{:08}", 39_000_000 + s.below(999_999)), "塑料制品")
                };
                i_name.push(name_variant(&mut s, &f.name));
                i_phone.push(f.phone.clone());
                i_post.push(f.postcode.clone());
                i_year.push(year);
                i_hs8.push(hs);
                i_prod.push(prod);
                i_ctry.push(COUNTRIES[s.below(COUNTRIES.len() as u32) as usize]);
                let q = (2.0 + s.normal()).exp().round() + 1.0;
                i_val.push(q * (3.0 + 0.5 * s.normal()).exp());
                i_qty.push(q);
            }
        }
    }
    let mut imports = DataFrame::new(
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
    .map_err(|e| Error::Data(format!("building the imports table: {e}")))?;

    // countries (destination-year) and regions (province-year), with the study's instruments
    let (mut k_c, mut k_y, mut k_gdp, mut k_xr, mut k_dist, mut k_nri) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (ci, c) in COUNTRIES.iter().enumerate() {
        let (base, xr0, dist, nri) = (
            8.5 + 1.5 * s.normal(),
            (1.0 + 0.5 * s.normal()).abs() + 0.1,
            1_000.0 + 1_000.0 * ci as f64 + 500.0 * s.uniform(),
            3.5 + 1.5 * s.uniform(),
        );
        for year in YEARS {
            k_c.push(*c);
            k_y.push(year);
            k_gdp.push((base + 0.02 * (year - 2008) as f64).exp());
            k_xr.push(xr0 * (1.0 + 0.03 * s.normal()));
            k_dist.push(dist);
            k_nri.push(nri + 0.05 * (year - 2008) as f64);
        }
    }
    let mut countries = DataFrame::new(
        k_c.len(),
        vec![
            Column::new("country".into(), k_c),
            Column::new("year".into(), k_y),
            Column::new("gdp_per_capita".into(), k_gdp),
            Column::new("exchange_rate".into(), k_xr),
            Column::new("distance_km".into(), k_dist),
            Column::new("nri".into(), k_nri),
        ],
    )
    .map_err(|e| Error::Data(format!("building the countries table: {e}")))?;
    let provinces: Vec<&str> = {
        let mut v: Vec<&str> = CITIES.iter().map(|c| c.1).collect();
        v.dedup();
        v
    };
    let (mut r_p, mut r_y, mut r_gdp, mut r_open, mut r_mkt, mut r_ipr, mut r_bb, mut r_post, mut r_tel) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for p in &provinces {
        let (post84, tel84) = ((3.0 + 0.5 * s.normal()).exp(), (5.0 + 0.5 * s.normal()).exp());
        let (g0, o0, m0, i0) = (
            10.0 + 0.5 * s.normal(),
            0.4 + 0.2 * s.uniform(),
            7.0 + s.normal(),
            0.5 + 0.3 * s.uniform(),
        );
        for year in YEARS {
            let t = (year - 2008) as f64;
            r_p.push(*p);
            r_y.push(year);
            r_gdp.push((g0 + 0.09 * t).exp());
            r_open.push(o0 + 0.01 * s.normal());
            r_mkt.push(m0 + 0.15 * t);
            r_ipr.push(i0 + 0.02 * t);
            r_bb.push((6.0 + 0.15 * t + 0.1 * s.normal()).exp());
            r_post.push(post84);
            r_tel.push(tel84);
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
            Column::new("post_volume_1984".into(), r_post),
            Column::new("phones_1984".into(), r_tel),
        ],
    )
    .map_err(|e| Error::Data(format!("building the regions table: {e}")))?;

    // patents
    let (mut p_no, mut p_year, mut p_grant, mut p_appl, mut p_ipc) = (vec![], vec![], vec![], vec![], vec![]);
    let mut digital: HashMap<(i64, i64), u32> = HashMap::new();
    let mut counter = 0u64;
    for f in &firms {
        for year in YEARS {
            for _ in 0..s.poisson(f.innov * if f.exporter { 1.5 } else { 0.5 }) {
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
                let co = if s.uniform() < 0.2 {
                    if s.uniform() < 0.5 {
                        let other = &firms[s.below(firms.len() as u32) as usize];
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
    .map_err(|e| Error::Data(format!("building the patents table: {e}")))?;
    let mut dig: Vec<(i64, i64, u32)> = digital.into_iter().map(|((f, y), c)| (f, y, c)).collect();
    dig.sort();
    truth.digital_applications = dig;
    truth.planted.insert("digtech_on_quality".into(), 0.0012);

    let ext = if csv { "csv" } else { "parquet" };
    save(&mut survey, &out.join(format!("firms.{ext}")))?;
    save(&mut exports, &out.join(format!("exports.{ext}")))?;
    save(&mut patents, &out.join(format!("patents.{ext}")))?;
    save(&mut imports, &out.join(format!("imports.{ext}")))?;
    save(&mut countries, &out.join(format!("countries.{ext}")))?;
    save(&mut regions, &out.join(format!("regions.{ext}")))?;
    let json = serde_json::to_string_pretty(&truth).map_err(|e| Error::Data(e.to_string()))?;
    let path = out.join("truth.json");
    let tmp = out.join(format!(".truth.json.tmp-{}", std::process::id()));
    std::fs::write(&tmp, json).map_err(|e| Error::io(tmp.display().to_string(), e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(path.display().to_string(), e))?;
    Ok(truth)
}
