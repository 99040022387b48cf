//! [`build_panel`] as named steps. Each step reads the raw tables it needs and what earlier
//! steps left in the [`State`], adds its own part, and prints one line of counts:
//!
//! | step | reads | adds |
//! |---|---|---|
//! | [`match_exporters`] | exports, survey names | customs identity → firm |
//! | [`read_survey`] | firms | survey records, name → firm |
//! | [`read_places`] | regions, cities, countries | province-year, city and country-year values |
//! | [`export_flows`] | exports | firm × HS6 × destination × year flows |
//! | [`product_quality`] | flows | KSW quality per flow, one batched job |
//! | [`aggregate`] | flows, quality | firm-year-destination [`Destination`]s |
//! | [`firm_links`] | patents, imports, supply chain | digital patents, imports, suppliers |
//! | [`competition_strategies`] | destinations, countries | strategy code per firm |
//! | [`split_measures`] | all of the above | yearly cut-offs, volatility, continuing pairs |
//! | [`panel_rows`] | the whole state | one row per firm-year-destination, winsorised |

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Instant;

use polars::prelude::{Column, DataFrame};

use super::customs::{bad_line, customs_groups, customs_line, hs_code};
use super::{
    firm_controls, firm_strategies, ict_codes, is_digital_import, need_strings, need_years, quantile, sales_stability,
    volatility, winsorize, Destination, Dynamics, FirmRecord, Key3, PanelOptions, PanelReport, SigmaSource, Winsorize,
    WINSORIZED,
};
use crate::data::load;
use crate::demean::Demeaner;
use crate::error::{Error, Result};
use crate::study::matching::{match_table, raw_file};
use crate::study::names::normalise_name;
use crate::study::patents::{firm_year_patents, FirmYear};
use crate::study::quality::{self, Flows, Quality, SigmaTable};

/// Build the panel. Returns the frame and the report; writes nothing.
pub fn build_panel(raw: &Path, opts: &PanelOptions, demeaner: &dyn Demeaner) -> Result<(DataFrame, PanelReport)> {
    let mut rep = PanelReport::default();
    // The patents and the digital imports need nothing from the customs steps: they are read,
    // matched and classified on a second thread meanwhile (those steps are mostly serial).
    let (survey, places, exports, destinations, links) = std::thread::scope(|scope| {
        let side = scope.spawn(|| Ok::<_, Error>((firm_year_patents(raw)?, digital_imports(raw)?)));
        let link = match_exporters(raw, &mut rep)?;
        let survey = read_survey(raw, &mut rep)?;
        let places = read_places(raw, &mut rep)?;
        let exports = export_flows(raw, &link, &survey, &mut rep)?;
        let priced = product_quality(&exports, &survey, &places, opts, demeaner, &mut rep)?;
        let destinations = aggregate(&exports, &priced, &mut rep);
        let side = side.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        let links = firm_links(raw, &survey, &destinations, side, &mut rep)?;
        Ok::<_, Error>((survey, places, exports, destinations, links))
    })?;
    let strategies = competition_strategies(&destinations, &exports, &places, &mut rep);
    let splits = split_measures(&destinations, &exports, &places);
    let state = State {
        survey,
        places,
        exports,
        destinations,
        links,
        strategies,
        splits,
    };
    let df = panel_rows(&state, opts, &mut rep)?;
    Ok((df, rep))
}

/// What the steps have built, read by [`panel_rows`].
struct State {
    survey: Survey,
    places: Places,
    exports: Exports,
    destinations: BTreeMap<Key3, Destination>,
    links: FirmLinks,
    strategies: HashMap<i64, u8>,
    splits: Splits,
}

/// Step 1: customs exporters matched to survey firms (by name, then phone + postcode).
fn match_exporters(raw: &Path, rep: &mut PanelReport) -> Result<HashMap<(String, i64), i64>> {
    let t0 = Instant::now();
    let (links, m) = match_table(raw, "exports")?;
    let link = links
        .iter()
        .map(|l| ((l.customs_name.clone(), l.year), l.firm_id))
        .collect();
    rep.step(
        "match exports",
        format!(
            "{} customs identities, {} by name, {} by phone+postcode, {} intermediaries, {} unmatched",
            m.total.customs_firms,
            m.total.by_name,
            m.total.by_phone_postcode,
            m.total.intermediaries,
            m.total.unmatched
        ),
        t0,
    );
    rep.export_match = m;
    Ok(link)
}

/// The survey's firm-years (the first record of a duplicated firm-year).
struct Survey {
    path: String,
    records: HashMap<(i64, i64), FirmRecord>,
    name_to_firm: HashMap<String, i64>,
    years: BTreeSet<i64>,
}

/// Step 2: the firm survey.
fn read_survey(raw: &Path, rep: &mut PanelReport) -> Result<Survey> {
    let t0 = Instant::now();
    let path = raw_file(raw, "firms")?;
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
    let ft = load::load(&path, &owned(&[&cols[..], &["city"]].concat()))?;
    let fid = need_years(&ft, "firm_id", &path)?;
    let fyear = need_years(&ft, "year", &path)?;
    let fname = ft.strings("name")?;
    let prov = need_strings(&ft, "province", &path)?;
    let city = need_strings(&ft, "city", &path)?;
    let ind = need_strings(&ft, "industry", &path)?;
    let num: Vec<Vec<f64>> = cols[5..].iter().map(|c| ft.numeric(c)).collect::<Result<_>>()?;
    let mut records: HashMap<(i64, i64), FirmRecord> = HashMap::new();
    let mut name_to_firm: HashMap<String, i64> = HashMap::new();
    let mut duplicates = 0;
    for i in 0..ft.nrows() {
        if let Some(n) = &fname[i] {
            name_to_firm.insert(normalise_name(n), fid[i]);
        }
        if records.contains_key(&(fid[i], fyear[i])) {
            duplicates += 1;
            continue;
        }
        let v = |k: usize| num[k][i];
        let record = FirmRecord {
            province: prov[i].clone(),
            city: city[i].clone(),
            industry: ind[i].clone(),
            founded: v(0),
            assets: v(1),
            fixed: v(2),
            employees: v(3),
            interest: v(4),
            profit: v(5),
            revenue: v(6),
            output: v(7),
            liabilities: v(8),
        };
        records.insert((fid[i], fyear[i]), record);
    }
    let detail = format!(
        "{} firm-years ({} duplicate records dropped)",
        records.len(),
        duplicates
    );
    rep.step("survey", detail, t0);
    Ok(Survey {
        path,
        records,
        name_to_firm,
        years: fyear.iter().copied().collect(),
    })
}

/// Province-year, prefecture-city and country-year values, in the order of [`REGION_COLUMNS`],
/// [`CITY_COLUMNS`] and [`COUNTRY_COLUMNS`].
struct Places {
    region: HashMap<(String, i64), [f64; 5]>,
    city: HashMap<String, [f64; 2]>,
    country: HashMap<(String, i64), [f64; 5]>,
}

const REGION_COLUMNS: [&str; 5] = ["gdp", "openness", "marketisation", "ipr_index", "broadband_users"];
/// Per prefecture city, per million people in 1984 (Table 2's instruments).
const CITY_COLUMNS: [&str; 2] = ["post_volume_1984", "phones_1984"];
const COUNTRY_COLUMNS: [&str; 5] = ["gdp", "gdp_per_capita", "exchange_rate", "distance_km", "nri"];

/// Step 3: the regional, city and country tables.
fn read_places(raw: &Path, rep: &mut PanelReport) -> Result<Places> {
    let t0 = Instant::now();
    let region = keyed_values(raw, "regions", "province", REGION_COLUMNS)?;
    let city = city_values(raw)?;
    let country = keyed_values(raw, "countries", "country", COUNTRY_COLUMNS)?;
    let detail = format!(
        "{} province-years, {} prefecture cities, {} country-years",
        region.len(),
        city.len(),
        country.len()
    );
    rep.step("regions, cities, countries", detail, t0);
    Ok(Places { region, city, country })
}

/// The `cities` table's [`CITY_COLUMNS`] by city name; a city listed twice is an error.
fn city_values(raw: &Path) -> Result<HashMap<String, [f64; 2]>> {
    let path = raw_file(raw, "cities")?;
    let mut wanted = vec!["city"];
    wanted.extend(CITY_COLUMNS);
    let t = load::load(&path, &owned(&wanted))?;
    let names = need_strings(&t, "city", &path)?;
    let num: Vec<Vec<f64>> = CITY_COLUMNS.iter().map(|c| t.numeric(c)).collect::<Result<_>>()?;
    let mut out = HashMap::new();
    for (i, name) in names.into_iter().enumerate() {
        if out.insert(name.clone(), [num[0][i], num[1][i]]).is_some() {
            return Err(Error::Data(format!(
                "{path}: city {name} is listed twice (row {})",
                i + 1
            )));
        }
    }
    Ok(out)
}

/// A raw table's numeric `columns` keyed by (`key`, year).
fn keyed_values<const N: usize>(
    raw: &Path,
    table: &str,
    key: &str,
    columns: [&str; N],
) -> Result<HashMap<(String, i64), [f64; N]>> {
    let path = raw_file(raw, table)?;
    let mut wanted = vec![key, "year"];
    wanted.extend(columns);
    let t = load::load(&path, &owned(&wanted))?;
    let names = need_strings(&t, key, &path)?;
    let years = need_years(&t, "year", &path)?;
    let num: Vec<Vec<f64>> = columns.iter().map(|c| t.numeric(c)).collect::<Result<_>>()?;
    Ok((0..t.nrows())
        .map(|i| ((names[i].clone(), years[i]), std::array::from_fn(|k| num[k][i])))
        .collect())
}

/// Export flows: (value, quantity) per firm × HS6 × destination × year, with the index maps.
struct Exports {
    flows: BTreeMap<(i64, u32, u32, i64), (f64, f64)>,
    dest_names: Vec<String>,
    product_codes: Vec<String>,
    years: BTreeSet<i64>,
}

/// Step 4: export lines summed per customs identity × HS8 × country × year (streamed through
/// polars), then per matched firm × HS6 × destination × year.
fn export_flows(
    raw: &Path,
    link: &HashMap<(String, i64), i64>,
    survey: &Survey,
    rep: &mut PanelReport,
) -> Result<Exports> {
    let t0 = Instant::now();
    let path = raw_file(raw, "exports")?;
    let groups = customs_groups(&path, true, false)?;
    let mut dest_index: BTreeMap<String, u32> = BTreeMap::new();
    let mut product_index: BTreeMap<String, u32> = BTreeMap::new();
    let mut flows: BTreeMap<(i64, u32, u32, i64), (f64, f64)> = BTreeMap::new();
    let (mut unmatched, mut bad_value) = (0usize, 0usize);
    let mut lines_per_year: BTreeMap<i64, usize> = BTreeMap::new();
    for k in 0..groups.len() {
        let year = groups.year[k];
        *lines_per_year.entry(year).or_default() += groups.lines[k];
        let hs = hs_code(groups.hs[k].as_deref()).ok_or_else(|| {
            let code = groups.hs[k].as_deref().unwrap_or("");
            let what = format!("`{code}` is not an HS code of at least 6 digits");
            bad_line(&path, "hs8", &what, customs_line(&groups, k))
        })?;
        let firm = groups.name[k].as_ref().and_then(|n| link.get(&(n.clone(), year)));
        let Some(&firm) = firm else {
            unmatched += groups.lines[k];
            continue;
        };
        let Some(c) = groups.country[k].as_deref() else {
            return Err(bad_line(&path, "country", "missing", customs_line(&groups, k)));
        };
        bad_value += groups.lines[k] - groups.ok[k];
        if groups.ok[k] == 0 {
            continue;
        }
        let g = index_of(&mut product_index, &hs[..6]);
        let d = index_of(&mut dest_index, c);
        let e = flows.entry((firm, g, d, year)).or_insert((0.0, 0.0));
        e.0 += groups.value[k];
        e.1 += groups.quantity[k];
    }
    if flows.is_empty() {
        return Err(Error::NoObservations(format!(
            "no export line of {path} matched a survey firm"
        )));
    }
    // every year of the customs file must have survey records (an empty year means a file
    // is missing or truncated, and would silently drop that year's exporters)
    if let Some((y, n)) = lines_per_year.iter().find(|(y, _)| !survey.years.contains(y)) {
        return Err(Error::Data(format!(
            "year {y}: {path} has {n} export lines but {} has no firm records for that year",
            survey.path
        )));
    }
    let exports = Exports {
        years: flows.keys().map(|k| k.3).collect(),
        dest_names: names_in_index_order(&dest_index),
        product_codes: names_in_index_order(&product_index),
        flows,
    };
    rep.step(
        "export flows",
        format!(
            "{} lines → {} firm×HS6×destination×year flows, {} products, {} destinations ({} lines of unmatched or intermediary firms, {} with non-positive value or quantity)",
            groups.lines.iter().sum::<usize>(),
            exports.flows.len(),
            exports.product_codes.len(),
            exports.dest_names.len(),
            unmatched,
            bad_value
        ),
        t0,
    );
    Ok(exports)
}

/// The index of `name` in a first-appearance numbering.
fn index_of(index: &mut BTreeMap<String, u32>, name: &str) -> u32 {
    let next = index.len() as u32;
    *index.entry(name.to_string()).or_insert(next)
}

fn names_in_index_order(index: &BTreeMap<String, u32>) -> Vec<String> {
    let mut v = vec![String::new(); index.len()];
    for (k, &i) in index {
        v[i as usize] = k.clone();
    }
    v
}

/// The flows that entered the quality job and their estimates.
struct Priced {
    keys: Vec<(i64, u32, u32, i64)>,
    /// Index into `keys` of each flow of `flows` (flows without regional GDP are left out).
    keep_rows: Vec<usize>,
    flows: Flows,
    quality: Quality,
}

/// Step 5: export quality (Khandelwal–Schott–Wei) for all products in one batched job.
fn product_quality(
    exports: &Exports,
    survey: &Survey,
    places: &Places,
    opts: &PanelOptions,
    demeaner: &dyn Demeaner,
    rep: &mut PanelReport,
) -> Result<Priced> {
    let t0 = Instant::now();
    let (keys, keep_rows, flows, no_region) = quality_inputs(exports, survey, places);
    let table = SigmaTable::broda_weinstein()?;
    let bw: Vec<f64> = exports.product_codes.iter().map(|c| table.for_code(c).0).collect();
    let missing_hs3 = exports.product_codes.iter().filter(|c| !table.for_code(c).1).count();
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
        let diff = q.lambda.iter().zip(&ql.lambda).map(|(a, b)| (a - b).abs());
        rep.quality_loop_max_diff = Some(diff.fold(0.0, f64::max));
    }
    rep.products = exports.product_codes.len();
    let note = |on: bool, text: String| if on { text } else { String::new() };
    rep.step(
        "quality (batched)",
        format!(
            "{} flows in {} product×destination×year cells, {} products in one {} job ({:.3} s){}{}{}",
            flows.product.len(),
            flows.cells,
            exports.product_codes.len(),
            demeaner.name(),
            rep.quality_batched_s,
            note(
                missing_hs3 > 0,
                format!("; {missing_hs3} products without a BW σ use the median")
            ),
            note(
                no_region > 0,
                format!("; {no_region} flows without regional GDP dropped")
            ),
            match (rep.quality_loop_s, rep.quality_loop_max_diff) {
                (Some(s), Some(d)) => format!("; per-product loop {s:.3} s, max |Δλ| {d:.1e}"),
                _ => String::new(),
            }
        ),
        t0,
    );
    Ok(Priced {
        keys,
        keep_rows,
        flows,
        quality: q,
    })
}

/// The quality job's inputs: ln q, ln p, the product × destination × year cell, ln GDP of the
/// firm's province, and the firm's mean ln p of the product in its other markets (the
/// instrument). Flows whose firm has no regional GDP are left out and counted.
fn quality_inputs(
    exports: &Exports,
    survey: &Survey,
    places: &Places,
) -> (Vec<(i64, u32, u32, i64)>, Vec<usize>, Flows, usize) {
    let keys: Vec<(i64, u32, u32, i64)> = exports.flows.keys().copied().collect();
    let mut flows = Flows::default();
    let mut cell_of: HashMap<(u32, u32, i64), u32> = HashMap::new();
    let mut other: HashMap<(i64, u32, i64), (f64, usize)> = HashMap::new();
    let mut keep_rows = Vec::with_capacity(keys.len());
    let mut no_region = 0;
    for (k, &(firm, g, d, y)) in keys.iter().enumerate() {
        let (v, q) = exports.flows[&(firm, g, d, y)];
        let lnp = (v / q).ln();
        let e = other.entry((firm, g, y)).or_insert((0.0, 0));
        e.0 += lnp;
        e.1 += 1;
        let gdp = survey
            .records
            .get(&(firm, y))
            .and_then(|r| places.region.get(&(r.province.clone(), y)))
            .map(|r| r[0]);
        let Some(gdp) = gdp.filter(|g| *g > 0.0) else {
            no_region += 1;
            continue;
        };
        let nc = cell_of.len() as u32;
        flows.cell.push(*cell_of.entry((g, d, y)).or_insert(nc));
        flows.product.push(g);
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
    (keys, keep_rows, flows, no_region)
}

/// Step 6: flows aggregated to firm-year-destination: value-weighted standardised quality and
/// standardised unit price (Table 3), log unit price relative to the product-year mean (Table 7),
/// core product (largest value of the firm-year).
fn aggregate(exports: &Exports, priced: &Priced, rep: &mut PanelReport) -> BTreeMap<Key3, Destination> {
    let t0 = Instant::now();
    let flow = |j: usize| priced.keys[priced.keep_rows[j]];
    let n = priced.keep_rows.len();
    // per-product-year mean ln p, to make prices comparable across products
    let mut pmean: HashMap<(u32, i64), (f64, usize)> = HashMap::new();
    for j in 0..n {
        let (_, g, _, y) = flow(j);
        let e = pmean.entry((g, y)).or_insert((0.0, 0));
        e.0 += priced.flows.ln_p[j];
        e.1 += 1;
    }
    // core product per firm-year: largest total export value
    let mut fy_product_value: HashMap<(i64, i64), BTreeMap<u32, f64>> = HashMap::new();
    for j in 0..n {
        let (firm, g, _, y) = flow(j);
        *fy_product_value.entry((firm, y)).or_default().entry(g).or_default() += exports.flows[&flow(j)].0;
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
    // Table 3's price: each flow's unit price standardised within its product, as quality
    let r_price = super::standardised_prices(&priced.flows.ln_p, &priced.flows.product);
    let mut fyd: BTreeMap<Key3, Destination> = BTreeMap::new();
    for j in 0..n {
        let (firm, g, d, y) = flow(j);
        let (ps, pn) = pmean[&(g, y)];
        fyd.entry((firm, y, d)).or_insert_with(Destination::new).add(
            g,
            exports.flows[&flow(j)].0,
            priced.quality.standardised[j],
            priced.flows.ln_p[j] - ps / pn as f64,
            r_price[j],
            core[&(firm, y)] == g,
        );
    }
    rep.step("aggregate", format!("{} firm-year-destination rows", fyd.len()), t0);
    fyd
}

/// Digital patents, digital imports and supplier links of the firms.
struct FirmLinks {
    patents: BTreeMap<(i64, i64), FirmYear>,
    /// Firm mean knowledge breadth (Digtech2) over its firm-years with digital patents.
    breadth: HashMap<i64, f64>,
    /// Median of `breadth` over exporting firms (patent quality split).
    median_breadth: f64,
    /// Digital imports per firm-year: HS8 codes, origin countries, value.
    imports: HashMap<(i64, i64), (BTreeSet<String>, BTreeSet<String>, f64)>,
    /// The supplier firm of a client firm-year.
    supplier: HashMap<(i64, i64), i64>,
    /// Firms with a digital patent granted in the panel's years (Table 3's Digtech_A sample).
    granted: BTreeSet<i64>,
}

/// Step 7: patents, digital imports and the supply chain. Every raw table is required: a
/// missing one is an error, never "0 import lines". The patents and imports arrive read
/// (beside the earlier steps, see [`build_panel`]); the step's time is what remained.
fn firm_links(
    raw: &Path,
    survey: &Survey,
    fyd: &BTreeMap<Key3, Destination>,
    (patents, (imports, import_lines)): (BTreeMap<(i64, i64), FirmYear>, (Imports, usize)),
    rep: &mut PanelReport,
) -> Result<FirmLinks> {
    let t0 = Instant::now();
    let breadth = firm_breadth(&patents);
    let years = fyd.keys().map(|k| k.1);
    let (first, last) = (years.clone().min().unwrap_or(0), years.max().unwrap_or(-1));
    let granted = crate::study::patents::granted_firms(&patents, first..=last);
    let median_breadth = {
        let exporters: BTreeSet<i64> = fyd.keys().map(|k| k.0).collect();
        let mut b: Vec<f64> = exporters.iter().filter_map(|f| breadth.get(f).copied()).collect();
        b.sort_by(f64::total_cmp);
        quantile(&b, 0.5)
    };
    let supplier = supplier_links(raw, survey)?;
    rep.step(
        "patents, imports, chain",
        format!(
            "{} firm-years with patents, {} digital import lines, {} supplier links",
            patents.len(),
            import_lines,
            supplier.len()
        ),
        t0,
    );
    Ok(FirmLinks {
        patents,
        breadth,
        median_breadth,
        imports,
        supplier,
        granted,
    })
}

/// Firm mean knowledge breadth over its firm-years with digital patents (Table 6).
fn firm_breadth(patents: &BTreeMap<(i64, i64), FirmYear>) -> HashMap<i64, f64> {
    let mut sums: BTreeMap<i64, (f64, usize)> = BTreeMap::new();
    for ((f, _), e) in patents {
        let b = crate::study::ipc::knowledge_breadth(&e.codes);
        if b.is_finite() {
            let x = sums.entry(*f).or_default();
            x.0 += b;
            x.1 += 1;
        }
    }
    sums.iter().map(|(f, (s, n))| (*f, s / *n as f64)).collect()
}

type Imports = HashMap<(i64, i64), (BTreeSet<String>, BTreeSet<String>, f64)>;

/// Digital import lines (ICT HS6 code or digital keyword) per matched firm-year, and their count.
fn digital_imports(raw: &Path) -> Result<(Imports, usize)> {
    let (links, _) = match_table(raw, "imports")?;
    let link: HashMap<(String, i64), i64> = links
        .iter()
        .map(|l| ((l.customs_name.clone(), l.year), l.firm_id))
        .collect();
    let groups = customs_groups(&raw_file(raw, "imports")?, false, true)?;
    let ict = ict_codes();
    let mut imports: Imports = HashMap::new();
    let mut lines = 0usize;
    for k in 0..groups.len() {
        let name = groups.name[k].as_ref();
        let Some(&f) = name.and_then(|n| link.get(&(n.clone(), groups.year[k]))) else {
            continue;
        };
        let hs = groups.hs[k].as_deref().unwrap_or("");
        if is_digital_import(hs, groups.product[k].as_deref().unwrap_or(""), &ict) {
            lines += groups.lines[k];
            let e = imports.entry((f, groups.year[k])).or_default();
            e.0.insert(hs.to_string());
            e.1.insert(groups.country[k].clone().unwrap_or_default());
            e.2 += groups.value[k];
        }
    }
    Ok((imports, lines))
}

/// Supplier → client links between survey firms, by normalised name, per year.
fn supplier_links(raw: &Path, survey: &Survey) -> Result<HashMap<(i64, i64), i64>> {
    let path = raw_file(raw, "supply_chain")?;
    let t = load::load(&path, &owned(&["year", "supplier_name", "client_name"]))?;
    let years = need_years(&t, "year", &path)?;
    let suppliers = need_strings(&t, "supplier_name", &path)?;
    let clients = need_strings(&t, "client_name", &path)?;
    let firm = |name: &str| survey.name_to_firm.get(&normalise_name(name));
    let mut links = HashMap::new();
    for i in 0..t.nrows() {
        if let (Some(&a), Some(&b)) = (firm(&suppliers[i]), firm(&clients[i])) {
            links.insert((b, years[i]), a);
        }
    }
    Ok(links)
}

/// Step 8: competition strategy per firm from batched price regressions on its destinations'
/// mean distance, GDP and GDP per capita (codes 1–4, [`firm_strategies`]).
fn competition_strategies(
    fyd: &BTreeMap<Key3, Destination>,
    exports: &Exports,
    places: &Places,
    rep: &mut PanelReport,
) -> HashMap<i64, u8> {
    let t0 = Instant::now();
    let place = |d: u32| {
        let name = &exports.dest_names[d as usize];
        let vals: Vec<[f64; 5]> = exports
            .years
            .iter()
            .filter_map(|y| places.country.get(&(name.clone(), *y)).copied())
            .collect();
        let m = |k: usize| vals.iter().map(|v| v[k].ln()).sum::<f64>() / vals.len() as f64;
        (!vals.is_empty()).then(|| [m(3), m(0), m(1)])
    };
    let strategies: HashMap<i64, u8> =
        firm_strategies(fyd.iter().map(|((f, _, d), a)| (*f, *d, a.rel_log_price())), place)
            .into_iter()
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
    strategies
}

/// Per-row measures that need the whole panel: yearly cut-offs of the split variables, export
/// volatility, the firm's sales stability and Table 4's continuing pairs.
struct Splits {
    /// Years in which each firm-destination pair exports (continuing = every panel year).
    years_of_pair: HashMap<(i64, u32), usize>,
    all_years: usize,
    /// Mean IPR index over provinces by year (Table 5: strong = strictly above it).
    ipr_mean: HashMap<i64, f64>,
    /// 90th percentile of NRI over destinations by year (Table 6).
    nri_p90: HashMap<i64, f64>,
    vol: HashMap<Key3, f64>,
    /// Yearly (sum, count) of finite `vol` (Table 11's high-volatility split at the mean).
    vol_year: BTreeMap<i64, (f64, usize)>,
    /// Sales stability per firm-year (Table 11's second measure).
    vol2: HashMap<(i64, i64), f64>,
}

/// Step 9: the split measures.
fn split_measures(fyd: &BTreeMap<Key3, Destination>, exports: &Exports, places: &Places) -> Splits {
    let mut years_of_pair: HashMap<(i64, u32), usize> = HashMap::new();
    for k in fyd.keys() {
        *years_of_pair.entry((k.0, k.2)).or_default() += 1;
    }
    let mut ipr_by_year: BTreeMap<i64, (f64, usize)> = BTreeMap::new();
    for ((_, y), r) in &places.region {
        let e = ipr_by_year.entry(*y).or_default();
        e.0 += r[3];
        e.1 += 1;
    }
    let mut nri_by_year: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for c in &exports.dest_names {
        for y in &exports.years {
            if let Some(v) = places.country.get(&(c.clone(), *y)) {
                nri_by_year.entry(*y).or_default().push(v[4]);
            }
        }
    }
    let nri_p90 = nri_by_year
        .into_iter()
        .map(|(y, mut v)| {
            v.sort_by(f64::total_cmp);
            (y, quantile(&v, 0.9))
        })
        .collect();
    let vol = pair_volatility(fyd);
    let mut vol_year: BTreeMap<i64, (f64, usize)> = BTreeMap::new();
    for ((_, y, _), v) in vol.iter().filter(|(_, v)| v.is_finite()) {
        let e = vol_year.entry(*y).or_default();
        e.0 += v;
        e.1 += 1;
    }
    Splits {
        years_of_pair,
        all_years: exports.years.len(),
        ipr_mean: ipr_by_year.into_iter().map(|(y, (s, n))| (y, s / n as f64)).collect(),
        nri_p90,
        vol,
        vol_year,
        vol2: firm_sales_stability(fyd),
    }
}

/// Export volatility of each firm-destination series, per row.
fn pair_volatility(fyd: &BTreeMap<Key3, Destination>) -> HashMap<Key3, f64> {
    let mut series: BTreeMap<(i64, u32), Vec<(i64, f64)>> = BTreeMap::new();
    for ((f, y, d), a) in fyd {
        series.entry((*f, *d)).or_default().push((*y, a.value));
    }
    let mut vol = HashMap::new();
    for ((f, d), s) in &series {
        for ((y, _), v) in s.iter().zip(volatility(s)) {
            vol.insert((*f, *y, *d), v);
        }
    }
    vol
}

/// Sales stability per firm-year, from the firm's total exports.
fn firm_sales_stability(fyd: &BTreeMap<Key3, Destination>) -> HashMap<(i64, i64), f64> {
    let mut totals: BTreeMap<i64, BTreeMap<i64, f64>> = BTreeMap::new();
    for ((f, y, _), a) in fyd {
        *totals.entry(*f).or_default().entry(*y).or_default() += a.value;
    }
    let mut vol2 = HashMap::new();
    for (f, by_year) in &totals {
        let s: Vec<(i64, f64)> = by_year.iter().map(|(y, v)| (*y, *v)).collect();
        for ((y, _), v) in s.iter().zip(sales_stability(&s)) {
            vol2.insert((*f, *y), v);
        }
    }
    vol2
}

/// Step 10: one row per firm-year-destination with a survey record, then winsorisation.
fn panel_rows(st: &State, opts: &PanelOptions, rep: &mut PanelReport) -> Result<DataFrame> {
    let t0 = Instant::now();
    let mut c = Cols::default();
    let mut dropped_no_survey = 0;
    for (&key, a) in &st.destinations {
        let Some(r) = st.survey.records.get(&(key.0, key.1)) else {
            dropped_no_survey += 1;
            continue;
        };
        let row = Row { st, key, a, r };
        row.identity_and_quality(&mut c);
        row.digital(&mut c);
        row.controls_and_instruments(&mut c);
        row.heterogeneity(&mut c);
        row.product_dynamics(&mut c);
        row.volatility_imports_network(&mut c);
    }
    let years: Vec<i64> = c.ints("year").cloned().unwrap_or_default();
    if opts.winsorize != Winsorize::None {
        for name in WINSORIZED {
            let v = c.floats_mut(name).unwrap();
            winsorize(v, (opts.winsorize == Winsorize::ByYear).then_some(&years[..]));
        }
    }
    rep.rows = years.len();
    rep.firms = st.destinations.keys().map(|k| k.0).collect::<BTreeSet<_>>().len();
    if rep.rows == 0 {
        return Err(Error::NoObservations("the panel has no rows".into()));
    }
    let df = c.frame()?;
    rep.step(
        "panel",
        format!(
            "{} rows, {} firms, {} columns{}; {}",
            rep.rows,
            rep.firms,
            df.width(),
            if dropped_no_survey > 0 {
                format!(" ({dropped_no_survey} without a survey record)")
            } else {
                String::new()
            },
            match opts.winsorize {
                Winsorize::Pooled => "winsorised at 1%/99% (pooled)",
                Winsorize::ByYear => "winsorised at 1%/99% (by year)",
                Winsorize::None => "not winsorised (--winsorize none)",
            }
        ),
        t0,
    );
    Ok(df)
}

/// One firm-year-destination row being written (data/panel_schema.csv defines every column).
struct Row<'a> {
    st: &'a State,
    key: Key3,
    a: &'a Destination,
    r: &'a FirmRecord,
}

fn ln1(c: u32) -> f64 {
    (1.0 + c as f64).ln()
}

impl Row<'_> {
    fn patents(&self) -> Option<&FirmYear> {
        self.st.links.patents.get(&(self.key.0, self.key.1))
    }

    /// Digtech of firm `f` in year `y`: ln(1 + digital patents); missing where the firm-year
    /// is neither in the survey nor in the patent table.
    fn digtech(&self, f: i64, y: i64) -> f64 {
        let known = self.st.survey.records.contains_key(&(f, y)) || self.st.links.patents.contains_key(&(f, y));
        match self.st.links.patents.get(&(f, y)) {
            Some(e) => ln1(e.digital),
            None if known => 0.0,
            None => f64::NAN,
        }
    }

    fn destination(&self) -> &str {
        &self.st.exports.dest_names[self.key.2 as usize]
    }

    fn region(&self, year: i64) -> Option<&[f64; 5]> {
        self.st.places.region.get(&(self.r.province.clone(), year))
    }

    fn country(&self) -> Option<&[f64; 5]> {
        self.st
            .places
            .country
            .get(&(self.destination().to_string(), self.key.1))
    }

    fn identity_and_quality(&self, c: &mut Cols) {
        let ((f, y, _), a) = (self.key, self.a);
        c.s("firm", f.to_string());
        c.i("firm_id", f);
        c.i("year", y);
        c.s("country", self.destination().to_string());
        c.s("province", self.r.province.clone());
        // the 2017 division (survey codes of 2008-2011 are GB/T 4754-2002), so that the
        // industry split and year × industry effects read one classification
        let division = crate::study::industry::division_2017(&self.r.industry, self.key.1);
        c.s("industry", division.unwrap_or_else(|| self.r.industry.clone()));
        c.f("qua", a.qua());
        c.f("price", a.price());
        c.f("value", a.value);
        c.f("n_products", a.products.len() as f64);
        c.f("qua_core", a.core_q);
        c.f("qua_noncore", a.qua_noncore());
    }

    fn digital(&self, c: &mut Cols) {
        let (f, y, _) = self.key;
        let e = self.patents();
        c.f("digquantity", e.map_or(0.0, |e| e.digital as f64));
        c.f("digtech", self.digtech(f, y));
        // granted digital patents by grant year, for the firms with a grant (Table 3)
        let digtech_a = if self.st.links.granted.contains(&f) {
            e.map_or(0.0, |e| ln1(e.digital_granted))
        } else {
            f64::NAN
        };
        c.f("digtech_a", digtech_a);
        c.f("digtech_co", e.map_or(0.0, |e| ln1(e.digital_co)));
        c.f("digtech_in", e.map_or(0.0, |e| ln1(e.digital_single)));
        let breadth = e.map_or(f64::NAN, |e| crate::study::ipc::knowledge_breadth(&e.codes));
        c.f("digtech2", breadth);
        c.f("digtech_l1", self.digtech(f, y - 1));
        c.f("digtech_l2", self.digtech(f, y - 2));
    }

    fn controls_and_instruments(&self, c: &mut Cols) {
        let y = self.key.1;
        let controls = ["age", "finance", "profit", "klratio", "turnover", "lnlp", "lev"];
        for (name, v) in controls.iter().zip(firm_controls(self.r, y)) {
            c.f(name, v);
        }
        let (reg, cty) = (self.region(y), self.country());
        c.f("open", reg.map_or(f64::NAN, |r| r[1]));
        c.f("market", reg.map_or(f64::NAN, |r| r[2]));
        c.f("lnpergdp", cty.map_or(f64::NAN, |v| v[1].ln()));
        c.f("xr", cty.map_or(f64::NAN, |v| v[2]));
        // the prefecture city's 1984 post volume and telephones per million people × ln of its
        // province's broadband users in t−1 (Bartik-style, time-varying)
        let lbb = self.region(y - 1).map_or(f64::NAN, |r| r[4].ln());
        let city = self.st.places.city.get(&self.r.city);
        c.f("iv_post", city.map_or(f64::NAN, |v| v[0]) * lbb);
        c.f("iv_telephone", city.map_or(f64::NAN, |v| v[1]) * lbb);
    }

    /// The split variables of Tables 3, 5–9.
    fn heterogeneity(&self, c: &mut Cols) {
        let ((f, y, d), sp) = (self.key, &self.st.splits);
        let dig_industry = crate::study::industry::division_2017(&self.r.industry, y)
            .and_then(|d| crate::study::industry::digital_industry(&d))
            .map_or(f64::NAN, |b| b as u8 as f64);
        c.f("dig_industry", dig_industry);
        let flag = |b: bool| b as u8 as f64;
        let ipr = match (self.region(y), sp.ipr_mean.get(&y)) {
            (Some(r), Some(m)) => flag(r[3] > *m),
            _ => f64::NAN,
        };
        c.f("ipr_strong", ipr);
        let nri = match (self.country(), sp.nri_p90.get(&y)) {
            (Some(v), Some(p)) => flag(v[4] >= *p),
            _ => f64::NAN,
        };
        c.f("nri_top10", nri);
        let links = &self.st.links;
        let quality_high = links
            .breadth
            .get(&f)
            .map_or(f64::NAN, |b| flag(*b > links.median_breadth));
        c.f("patent_quality_high", quality_high);
        c.f("continuing", flag(sp.years_of_pair[&(f, d)] == sp.all_years));
        let st = self.st.strategies.get(&f).copied();
        c.f("strategy", st.map_or(f64::NAN, |s| s as f64));
        for (k, cat) in [
            (4u8, "strategy_strong_quality"),
            (2, "strategy_weak_quality"),
            (3, "strategy_strong_price"),
            (1, "strategy_weak_price"),
        ] {
            c.f(cat, st.map_or(f64::NAN, |s| flag(s == k)));
        }
        c.f("quality_strategy", st.map_or(f64::NAN, |s| flag(matches!(s, 2 | 4))));
        c.f("strong_strategy", st.map_or(f64::NAN, |s| flag(matches!(s, 3 | 4))));
    }

    /// Table 10: products kept, added and dropped against the same destination in t−1.
    fn product_dynamics(&self, c: &mut Cols) {
        let ((f, y, d), a) = (self.key, self.a);
        let dynamics = self
            .st
            .destinations
            .get(&(f, y - 1, d))
            .map(|p| Dynamics::between(&p.products, &a.products));
        let dy = |g: fn(&Dynamics) -> f64| dynamics.as_ref().map_or(f64::NAN, g);
        // the counts on every row, as the paper's N: a pair not exported in t−1 keeps and
        // drops nothing, and all its products are new
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
    }

    /// Tables 11–13: volatility, digital imports, patent-network position, the supplier.
    fn volatility_imports_network(&self, c: &mut Cols) {
        let ((f, y, _), sp) = (self.key, &self.st.splits);
        let v = sp.vol[&self.key];
        c.f("vol", v);
        let high = match sp.vol_year.get(&y) {
            Some((s, n)) if v.is_finite() => (v >= s / *n as f64) as u8 as f64,
            _ => f64::NAN,
        };
        c.f("vol_high", high);
        c.f("vol2", sp.vol2[&(f, y)]);
        let imp = self.st.links.imports.get(&(f, y));
        c.f("dig_kinds", imp.map_or(0.0, |i| (1.0 + i.0.len() as f64).ln()));
        c.f("dig_counties", imp.map_or(0.0, |i| (1.0 + i.1.len() as f64).ln()));
        // ln v as the paper (no +1): missing without digital imports
        c.f(
            "dig_value",
            imp.map_or(f64::NAN, |i| if i.2 > 0.0 { i.2.ln() } else { f64::NAN }),
        );
        let e = self.patents().filter(|e| e.digital > 0);
        c.f("degree", e.map_or(f64::NAN, |e| e.degree));
        c.f("ci", e.map_or(f64::NAN, |e| e.holes));
        let supplier = self.st.links.supplier.get(&(f, y));
        c.f("digtech_supplier", supplier.map_or(f64::NAN, |&s| self.digtech(s, y)));
    }
}

fn owned(names: &[&str]) -> Vec<String> {
    names.iter().map(|c| c.to_string()).collect()
}

/// Columns in insertion order. Every row writes the same columns in the same order, so the
/// next column is found by one name comparison at the cursor (a search only on the first row).
#[derive(Default)]
struct Cols {
    order: Vec<String>,
    data: Vec<Col>,
    cursor: usize,
}

enum Col {
    F(Vec<f64>),
    I(Vec<i64>),
    S(Vec<String>),
}

impl Cols {
    /// Index of column `name`, added with `empty` when new.
    fn slot(&mut self, name: &str, empty: fn() -> Col) -> usize {
        let guess = if self.cursor < self.order.len() { self.cursor } else { 0 };
        let k = if self.order.get(guess).is_some_and(|n| n == name) {
            guess
        } else if let Some(k) = self.order.iter().position(|n| n == name) {
            k
        } else {
            self.order.push(name.to_string());
            self.data.push(empty());
            self.order.len() - 1
        };
        self.cursor = k + 1;
        k
    }
    fn f(&mut self, name: &str, v: f64) {
        let k = self.slot(name, || Col::F(Vec::new()));
        if let Col::F(c) = &mut self.data[k] {
            c.push(v);
        }
    }
    fn i(&mut self, name: &str, v: i64) {
        let k = self.slot(name, || Col::I(Vec::new()));
        if let Col::I(c) = &mut self.data[k] {
            c.push(v);
        }
    }
    fn s(&mut self, name: &str, v: String) {
        let k = self.slot(name, || Col::S(Vec::new()));
        if let Col::S(c) = &mut self.data[k] {
            c.push(v);
        }
    }
    fn ints(&self, name: &str) -> Option<&Vec<i64>> {
        let k = self.order.iter().position(|n| n == name)?;
        match &self.data[k] {
            Col::I(c) => Some(c),
            _ => None,
        }
    }
    fn floats_mut(&mut self, name: &str) -> Option<&mut Vec<f64>> {
        let k = self.order.iter().position(|n| n == name)?;
        match &mut self.data[k] {
            Col::F(c) => Some(c),
            _ => None,
        }
    }
    fn frame(self) -> Result<DataFrame> {
        let n = self.ints("year").map_or(0, |v| v.len());
        let cols: Vec<Column> = self
            .order
            .into_iter()
            .zip(self.data)
            .map(|(name, col)| match col {
                // NaN is written as a missing value
                Col::F(v) => Column::new(
                    name.into(),
                    v.into_iter()
                        .map(|x| x.is_finite().then_some(x))
                        .collect::<Vec<Option<f64>>>(),
                ),
                Col::I(v) => Column::new(name.into(), v),
                Col::S(v) => Column::new(name.into(), v),
            })
            .collect();
        DataFrame::new(n, cols).map_err(|e| Error::Data(format!("building the panel: {e}")))
    }
}
