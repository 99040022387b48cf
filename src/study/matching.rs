//! `fegpu match`: customs exporters to survey firms (Upward, Wang & Zheng 2013; Yu 2015).
//! Step 1: exact normalised name within the year. Step 2, for the rest: last 7 phone digits +
//! postcode within the year. Trading intermediaries are excluded first. A key that points to
//! more than one survey firm is ambiguous and matches nothing. The report gives counts and
//! rates per step and year and a sample of unmatched names.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::names::{is_intermediary, normalise_name, phone7, postcode};
use crate::data::load::FastMap;
use crate::data::{load, Table};
use crate::error::{Error, Result};

/// One matched customs identity.
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    pub customs_name: String,
    pub year: i64,
    pub firm_id: i64,
    pub step: &'static str,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct YearReport {
    pub customs_firms: usize,
    pub intermediaries: usize,
    pub by_name: usize,
    pub by_phone_postcode: usize,
    pub unmatched: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MatchReport {
    pub years: BTreeMap<i64, YearReport>,
    pub total: YearReport,
    pub rate_by_name: f64,
    pub rate_by_phone_postcode: f64,
    pub rate_matched: f64,
    pub sample_unmatched: Vec<String>,
}

/// Find the raw table `stem` in `dir` (Parquet or CSV).
pub fn raw_file(dir: &Path, stem: &str) -> Result<String> {
    for ext in ["parquet", "csv"] {
        let p = dir.join(format!("{stem}.{ext}"));
        if p.exists() {
            return Ok(p.display().to_string());
        }
    }
    Err(Error::io(
        dir.join(stem).display().to_string(),
        format!("no {stem}.parquet or {stem}.csv in the raw directory"),
    ))
}

fn years(t: &Table, col: &str) -> Result<Vec<Option<i64>>> {
    Ok(t.numeric(col)?
        .into_iter()
        .map(|v| v.is_finite().then_some(v as i64))
        .collect())
}

#[derive(Clone, Copy)]
enum Key {
    One(i64),
    Ambiguous,
}

fn insert<K: std::hash::Hash + Eq>(map: &mut FastMap<K, Key>, k: K, id: i64) {
    map.entry(k)
        .and_modify(|v| {
            if let Key::One(x) = v {
                if *x != id {
                    *v = Key::Ambiguous
                }
            }
        })
        .or_insert(Key::One(id));
}

/// Match the customs exporters of `raw` to its survey firms.
pub fn match_customs(raw: &Path) -> Result<(Vec<Link>, MatchReport)> {
    match_table(raw, "exports")
}

/// Match the firms of the customs table `stem` (`exports` or `imports`) to the survey firms.
pub fn match_table(raw: &Path, stem: &str) -> Result<(Vec<Link>, MatchReport)> {
    let firms_path = raw_file(raw, "firms")?;
    let exports_path = raw_file(raw, stem)?;
    let firms = load(
        &firms_path,
        &[
            "firm_id".into(),
            "name".into(),
            "phone".into(),
            "postcode".into(),
            "year".into(),
        ],
    )?;
    let (fid, fname, fphone, fpost, fyear) = (
        firms.numeric("firm_id")?,
        firms.strings("name")?,
        firms.strings("phone")?,
        firms.strings("postcode")?,
        years(&firms, "year")?,
    );
    // normalised names are numbered once per distinct survey name (a firm's name recurs every
    // year), and the name step keys on (number, year)
    let mut name_ids: FastMap<String, u32> = FastMap::default();
    let mut raw_ids: FastMap<&str, u32> = FastMap::default();
    let mut by_name: FastMap<(u32, i64), Key> = FastMap::default();
    let mut by_phone: FastMap<(String, i64), Key> = FastMap::default();
    for i in 0..firms.nrows() {
        let (Some(year), true) = (fyear[i], fid[i].is_finite()) else {
            continue;
        };
        let id = fid[i] as i64;
        if let Some(n) = &fname[i] {
            let k = *raw_ids.entry(n.as_str()).or_insert_with(|| {
                let next = name_ids.len() as u32;
                *name_ids.entry(normalise_name(n)).or_insert(next)
            });
            insert(&mut by_name, (k, year), id);
        }
        if let (Some(p), Some(c)) = (
            fphone[i].as_deref().and_then(phone7),
            fpost[i].as_deref().and_then(postcode),
        ) {
            insert(&mut by_phone, (format!("{p}|{c}"), year), id);
        }
    }
    // distinct customs identities (name, year) with a usable phone and postcode (the smallest
    // usable ones where an identity has several): the lines stream through polars and only the
    // distinct (name, year, phone, postcode) combinations reach memory
    let distinct = {
        use polars::prelude::{col, len, DataType};
        let mut parts = Vec::new();
        crate::data::scan::collect_batched(
            &exports_path,
            &["customs_name", "phone", "postcode", "year"],
            |lf| {
                lf.group_by([
                    col("customs_name").cast(DataType::String),
                    col("phone").cast(DataType::String),
                    col("postcode").cast(DataType::String),
                    col("year").cast(DataType::Float64),
                ])
                .agg([len().alias("__lines")])
            },
            |df| {
                parts.push(df);
                Ok(())
            },
        )?;
        let mut df = parts.remove(0);
        for p in parts {
            df.vstack_mut(&p)
                .map_err(|e| Error::Data(format!("{exports_path}: {e}")))?;
        }
        crate::data::load::Table::new(df, exports_path.clone())
    };
    let (cname, cphone, cpost, cyear) = (
        distinct.strings("customs_name")?,
        distinct.strings("phone")?,
        distinct.strings("postcode")?,
        years(&distinct, "year")?,
    );
    let mut rows: Vec<usize> = (0..distinct.nrows()).collect();
    rows.sort_by(|&a, &b| {
        (&cname[a], cyear[a], &cphone[a], &cpost[a]).cmp(&(&cname[b], cyear[b], &cphone[b], &cpost[b]))
    });
    let mut identities: BTreeMap<(String, i64), (Option<String>, Option<String>)> = BTreeMap::new();
    for i in rows {
        let (Some(n), Some(y)) = (&cname[i], cyear[i]) else {
            continue;
        };
        let e = identities.entry((n.clone(), y)).or_insert((None, None));
        if e.0.is_none() {
            e.0 = cphone[i].as_deref().and_then(phone7);
        }
        if e.1.is_none() {
            e.1 = cpost[i].as_deref().and_then(postcode);
        }
    }
    let mut links = Vec::new();
    let mut report = MatchReport::default();
    for ((name, year), (phone, post)) in &identities {
        let yr = report.years.entry(*year).or_default();
        yr.customs_firms += 1;
        if is_intermediary(name) {
            yr.intermediaries += 1;
            continue;
        }
        let by_name_key = name_ids.get(&normalise_name(name)).map(|&k| (k, *year));
        if let Some(Key::One(id)) = by_name_key.and_then(|k| by_name.get(&k)) {
            yr.by_name += 1;
            links.push(Link {
                customs_name: name.clone(),
                year: *year,
                firm_id: *id,
                step: "name",
            });
            continue;
        }
        if let (Some(p), Some(c)) = (phone, post) {
            if let Some(Key::One(id)) = by_phone.get(&(format!("{p}|{c}"), *year)) {
                yr.by_phone_postcode += 1;
                links.push(Link {
                    customs_name: name.clone(),
                    year: *year,
                    firm_id: *id,
                    step: "phone+postcode",
                });
                continue;
            }
        }
        yr.unmatched += 1;
        if report.sample_unmatched.len() < 20 && !report.sample_unmatched.contains(name) {
            report.sample_unmatched.push(name.clone());
        }
    }
    let mut t = YearReport::default();
    for y in report.years.values() {
        t.customs_firms += y.customs_firms;
        t.intermediaries += y.intermediaries;
        t.by_name += y.by_name;
        t.by_phone_postcode += y.by_phone_postcode;
        t.unmatched += y.unmatched;
    }
    let producers = (t.customs_firms - t.intermediaries).max(1) as f64;
    report.rate_by_name = t.by_name as f64 / producers;
    report.rate_by_phone_postcode = t.by_phone_postcode as f64 / producers;
    report.rate_matched = (t.by_name + t.by_phone_postcode) as f64 / producers;
    report.total = t;
    Ok((links, report))
}

/// The report as text.
pub fn render_report(r: &MatchReport) -> String {
    let mut s = format!(
        "{:<6} {:>10} {:>14} {:>10} {:>16} {:>10}\n",
        "year", "customs", "intermediary", "by name", "by phone+post", "unmatched"
    );
    for (y, v) in &r.years {
        s.push_str(&format!(
            "{y:<6} {:>10} {:>14} {:>10} {:>16} {:>10}\n",
            v.customs_firms, v.intermediaries, v.by_name, v.by_phone_postcode, v.unmatched
        ));
    }
    let t = &r.total;
    s.push_str(&format!(
        "{:<6} {:>10} {:>14} {:>10} {:>16} {:>10}\n",
        "all", t.customs_firms, t.intermediaries, t.by_name, t.by_phone_postcode, t.unmatched
    ));
    s.push_str(&format!(
        "match rates among producers: by name {:.1}%, by phone+postcode {:.1}%, total {:.1}%\n",
        100.0 * r.rate_by_name,
        100.0 * r.rate_by_phone_postcode,
        100.0 * r.rate_matched
    ));
    if !r.sample_unmatched.is_empty() {
        s.push_str(&format!("unmatched (sample): {}\n", r.sample_unmatched.join(", ")));
    }
    s
}
