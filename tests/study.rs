//! The study's raw-data steps at `--scale small`: matching recovers the simulator's true
//! customs ↔ firm links, and the digital-patent counts equal the truth.

use std::collections::{HashMap, HashSet};

use fegpu::study::simulate::{simulate, Scale, NON_DIGITAL_SUBCLASSES};

#[test]
fn small_scale_matching_and_patents_recover_the_truth() {
    let dir = std::env::temp_dir().join(format!("fegpu-study-{}", std::process::id()));
    let truth = simulate(&dir, 7, Scale::Small, false).unwrap();
    let (links, report) = fegpu::study::matching::match_customs(&dir).unwrap();
    let true_links: HashMap<(String, i64), i64> = truth.links.iter().map(|(n, y, f)| ((n.clone(), *y), *f)).collect();
    let correct = links
        .iter()
        .filter(|l| true_links.get(&(l.customs_name.clone(), l.year)) == Some(&l.firm_id))
        .count();
    let precision = correct as f64 / links.len() as f64;
    let recall = correct as f64 / true_links.len() as f64;
    eprintln!(
        "matching: precision {precision:.4}, recall {recall:.4}, {} links, report {:?}",
        links.len(),
        report.total
    );
    assert!(precision >= 0.99, "precision {precision}");
    // the README states recall ≥ 0.96 at small scale (0.986 measured with seed 7)
    assert!(recall >= 0.96, "recall {recall}");
    // intermediaries are never linked
    let inter: HashSet<&String> = truth.intermediaries.iter().collect();
    assert!(links.iter().all(|l| !inter.contains(&l.customs_name)));
    assert_eq!(report.total.intermediaries, truth.intermediaries.len() * 7);

    let fy = fegpu::study::patents::firm_year_patents(&dir).unwrap();
    let ours: HashMap<(i64, i64), u32> = fy
        .iter()
        .filter(|(_, e)| e.digital > 0)
        .map(|(k, e)| (*k, e.digital))
        .collect();
    let theirs: HashMap<(i64, i64), u32> = truth
        .digital_applications
        .iter()
        .map(|(f, y, c)| ((*f, *y), *c))
        .collect();
    assert_eq!(ours, theirs, "digital applications per firm-year must equal the truth");
    let df = fegpu::study::patents::patent_frame(&fy).unwrap();
    assert!(df.height() > 0);
    for col in [
        "digquantity",
        "digtech",
        "digtech_a",
        "digtech_co",
        "digtech_in",
        "digtech2",
        "degree",
        "ci",
        "digtech_l1",
        "digtech_l2",
    ] {
        assert!(df.column(col).is_ok(), "patent table lacks {col}");
    }
    // a firm with a co-applied digital patent is in the network; one with only single-applicant
    // digital patents is outside it
    let with_partner = fy
        .values()
        .find(|e| e.digital_co > 0)
        .expect("some co-applied digital patent");
    assert!(with_partner.degree >= 1.0 && with_partner.holes.is_finite());
    let alone = fy.values().find(|e| e.digital > 0 && e.digital_co == 0).unwrap();
    assert!(alone.degree.is_nan() && alone.holes.is_nan());
    // the other raw tables exist
    for t in ["imports", "countries", "regions", "cities"] {
        assert!(dir.join(format!("{t}.parquet")).exists(), "{t}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn simulated_non_digital_subclasses_are_outside_the_cnipa_table() {
    let t = fegpu::study::ipc::DigitalTable::cnipa_2023();
    for sc in NON_DIGITAL_SUBCLASSES {
        for main in 1..40 {
            let c = fegpu::study::ipc::parse_code(&format!("{sc} {main}/00")).unwrap();
            assert!(t.industries(&c).is_empty(), "{sc} {main}/00 is in the digital table");
        }
    }
}

#[test]
fn raw_input_errors_name_the_file_column_and_row() {
    let dir = std::env::temp_dir().join(format!("fegpu-study-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("firms.csv"), "firm_id,name,year\n1,甲有限公司,2010\n").unwrap();
    std::fs::write(
        dir.join("exports.csv"),
        "customs_name,phone,postcode,year\n甲有限公司,123,518000,2010\n",
    )
    .unwrap();
    let e = fegpu::study::matching::match_customs(&dir).unwrap_err().to_string();
    assert!(e.contains("phone") && e.contains("firms.csv"), "{e}");
    std::fs::write(
        dir.join("firms.csv"),
        "firm_id,name,phone,postcode,year\n1,甲有限公司,075512345678,518000,2010\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("patents.csv"),
        "application_no,application_year,grant_year,applicants,ipc\nCN1,2010,,甲有限公司,G06F 17/30; XYZ\n",
    )
    .unwrap();
    let e = fegpu::study::patents::firm_year_patents(&dir).unwrap_err().to_string();
    assert!(
        e.contains("XYZ") && e.contains("row 1") && e.contains("patents.csv"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The classifier against an independent reading of the CNIPA table's rule (data/README):
/// codes without spaces; a pattern without `*` matches that subgroup exactly (a bare subclass,
/// `H01Q`, the subclass); `XXXXn*` covers main group n of subclass XXXX only (not n0, n1, …);
/// `XXXX*` the whole subclass. Every IPC
/// code of the simulated patents (thousands, with odd spacing) gets the same industries.
#[test]
fn classifier_matches_an_independent_reading_of_the_table() {
    use std::collections::BTreeSet;
    let table = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/cnipa_2023_digital_ipc_long.csv"),
    )
    .unwrap();
    // (industry, pattern prefix, wildcard)
    let rows: Vec<(String, String, bool)> = table
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[5].to_string(), f[4] == "1")
        })
        .collect();
    let independent = |raw: &str| -> BTreeSet<String> {
        let code: String = raw
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_uppercase();
        let (main, _) = code.split_once('/').unwrap_or((&code, ""));
        rows.iter()
            .filter(|(_, p, wild)| match (*wild, p.len()) {
                // a bare subclass (`H01Q` in industry 010302) means the subclass (ipc.rs docs)
                (_, 4) => code.len() >= 4 && &code[..4] == p,
                (false, _) => code == *p,
                (true, _) => main == p,
            })
            .map(|(ind, _, _)| ind.clone())
            .collect()
    };
    let dir = std::env::temp_dir().join(format!("fegpu-study-ipc-{}", std::process::id()));
    simulate(&dir, 3, Scale::Small, false).unwrap();
    let t = fegpu::data::load(dir.join("patents.parquet").to_str().unwrap(), &["ipc".to_string()]).unwrap();
    let ipc = t.strings("ipc").unwrap();
    let table = fegpu::study::ipc::DigitalTable::cnipa_2023();
    let (mut checked, mut digital) = (0, 0);
    for field in ipc.iter().flatten() {
        for raw in field.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let Some(code) = fegpu::study::ipc::parse_code(raw) else {
                continue;
            };
            let ours = table.industries(&code);
            assert_eq!(ours, independent(raw), "{raw}");
            checked += 1;
            digital += !ours.is_empty() as usize;
        }
    }
    assert!(checked > 500 && digital > 50, "{checked} codes, {digital} digital");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 15: the simulator plants the paper's patterns. At paper scale (the default seed) every
/// split's planted contrast in truth.json has the sign of the planted constants and roughly their
/// size (the truths are exact for the simulated rows: group composition and the weighting of
/// fixed-effects OLS move them), the channels carry their planted signs, Table 1's planted
/// effect is near the paper's 0.0012, and the row shares are near the paper's.
#[test]
fn paper_scale_simulation_plants_the_papers_patterns() {
    use fegpu::study::planted as pl;
    let dir = std::env::temp_dir().join(format!("fegpu-study-planted-{}", std::process::id()));
    let truth = simulate(&dir, 20230323, Scale::Paper, false).unwrap();
    let p = &truth.planted;
    let get = |k: &str| *p.get(k).unwrap_or_else(|| panic!("truth.json has no `{k}`"));
    let key = |k: &str| format!("digtech_on_qua_{k}");
    // (side 1, side 0, the difference of the planted constants, the smallest share of it the
    // truth must show: without the planted deviation, the other traits alone leave at most
    // about 0.45 of it; the panel's vol_high is a noisy reading of the planted volatile pairs, whose
    // background without the planted deviation is about 0.3; Table 8's groups are Table 7's
    // classification, which mixes the planted strategies: the strong groups are mostly their
    // planted ones, but a weak strategy's slope is a near coin flip, so quality (4 & 2) and price
    // (3 & 1) each hold many of the other's weak firms and their contrast is about a quarter of
    // the constants')
    let contrasts = [
        ("c39", "digitalising", pl::C39 - pl::NOT_C39, 0.6),
        // the weak-IPR side is 7% of rows (~200 firms): with the world redrawn when firms
        // outside C35-C40 entered the simulator (issue 30), its truth is 0.44, 1.14, 0.63, 0.70,
        // 1.80, 1.50, 1.20, 0.97 and 1.10 of the constants at seeds 20230323 and 1-8 (mean
        // 1.05): the other traits' composition of so few firms, not a bias
        ("weak_ipr", "strong_ipr", pl::WEAK_IPR - pl::STRONG_IPR, 0.4),
        ("nri_top10", "nri_other", pl::NRI_TOP - pl::NRI_OTHER, 0.6),
        ("pq_high", "pq_low", pl::PQ_HIGH - pl::PQ_LOW, 0.6),
        // Table 8's classified groups in the redrawn world (issue 30): strong quality vs strong
        // price is 0.40, 0.68, 0.65, 0.74, 0.58, 0.76 of the constants at seeds 20230323 and
        // 1-5 (mean 0.64), quality vs price 0.01, 0.67, 0.32, 0.20, 0.15, 0.32 (mean 0.28): the
        // default seed is the low end of both; its planted difference keeps its sign
        (
            "strong_quality",
            "strong_price",
            pl::STRATEGY[4] - pl::STRATEGY[3],
            0.35,
        ),
        ("quality", "price", 0.0026, 0.0),
        ("vol_high", "vol_low", pl::VOL_HIGH - pl::VOL_LOW, 0.45),
    ];
    for (a, b, planted, min) in contrasts {
        let d = get(&key(a)) - get(&key(b));
        eprintln!("{a} − {b}: {d:.5} (constants {planted:.5})");
        assert!(
            d / planted > min && d / planted < 2.0,
            "{a} − {b}: {d} in truth.json against the planted constants' {planted}"
        );
    }
    let overall = get("digtech_on_qua");
    eprintln!(
        "Table 1: {overall:.5}; lags {:.5} {:.5}",
        get("digtech_l1_on_qua"),
        get("digtech_l2_on_qua")
    );
    assert!(
        (0.0006..0.0020).contains(&overall),
        "Table 1's planted effect {overall}"
    );
    assert!(
        get(&key("continuing")) > overall,
        "continuing pairs gain more (Table 4)"
    );
    assert!(get("digtech_l2_on_qua") > 0.001 && get("digtech_l1_on_qua") > 0.0);
    assert!((0.02..0.04).contains(&get("supplier_digtech_on_qua")));
    assert!(get("degree_on_qua") > 0.0 && get("ci_on_qua") > 0.0);
    assert!(get("digtech_x_dig_kinds_on_qua") > 0.0);
    // Table 10: new products' planted premium over kept ones is the planted constant (their r-Qua
    // is λ over the product's spread, QUA_TO_LOG), and new beat dropped
    let premium = get("digtech_on_qual_in") - get("digtech_on_qual_keep");
    eprintln!("Table 10: new − kept {premium:.5} (constant {:.5})", pl::NEW_PRODUCT);
    assert!(
        premium / pl::NEW_PRODUCT > 0.6 && premium / pl::NEW_PRODUCT < 1.5,
        "new − kept products' planted quality {premium}"
    );
    assert!(get("digtech_on_qual_sub2") > 0.0);
    // Table 2: the instruments move Digtech's planted lags too, so 2SLS's planted value exceeds
    // OLS's
    for z in ["iv_post", "iv_telephone"] {
        let iv = get(&format!("digtech_on_qua_{z}"));
        eprintln!("Table 2 {z}: {iv:.5}");
        assert!(iv > overall, "2SLS with {z}: {iv} against OLS {overall}");
    }
    for (k, lo, hi) in [
        ("share_rows_continuing", 0.30, 0.42),
        ("share_rows_weak_ipr", 0.05, 0.10),
        ("share_rows_digital_importers", 0.60, 0.78),
    ] {
        assert!((lo..hi).contains(&get(k)), "{k} = {}", get(k));
    }
    assert_eq!(get("sign:quant_out"), -1.0);
    assert_eq!(get("plant_pq_high"), pl::PQ_HIGH);
    // Table 7's classification (Table 8's groups) is a noisy reading of the planted strategies
    let classified = truth.strategies.iter().filter(|s| s.2.is_some());
    let (n, same) = classified.fold((0, 0), |(n, k), s| (n + 1, k + (s.2 == Some(s.1)) as usize));
    eprintln!("Table 7: {same} of {n} classified firms in their planted category");
    assert!(n > 2000 && same * 10 > n * 4 && same * 10 < n * 9, "{same} of {n}");
    let _ = std::fs::remove_dir_all(&dir);
}
