//! The study's constructions as the paper states them (issue 30), each on a small hand-made
//! raw data set whose answer is worked out by hand in the comments.

use std::path::{Path, PathBuf};

use fegpu::study::patents::firm_year_patents;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

/// A fresh raw directory holding the given CSV files.
fn raw_dir(tag: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fegpu-study-paper-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

const FIRMS: &str = "firm_id,name\n1,甲科技有限公司\n2,乙电子有限公司\n3,丙机械有限公司\n";

/// G06F 17/30 is in the CNIPA 2023 digital table (G06F17*); A01B, F16H and B65D are not.
const PATENTS: &str = "\
application_year,grant_year,applicants,ipc
2010,2011,甲科技有限公司;清华大学,G06F 17/30
2010,,甲科技有限公司;乙电子有限公司,G06F 17/30; A01B 1/00
2010,,乙电子有限公司,G06F 17/30
2010,,乙电子有限公司;丙机械有限公司,A01B 1/00
2010,,甲科技有限公司;乙电子有限公司;北京数字研究院,G06F 17/30
2010,,甲科技有限公司,A01B 1/00; F16H 1/00; B65D 1/00
2011,2013,丙机械有限公司,G06F 17/30
";

fn patents_dir(tag: &str) -> PathBuf {
    raw_dir(tag, &[("firms.csv", FIRMS), ("patents.csv", PATENTS)])
}

fn cleanup(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// Table 13: the 2010 network is built from every applicant of the co-applied digital patents
/// (rows 1, 2 and 5), the university and the institute outside the survey included; the
/// non-digital joint patent of 乙 and 丙 (row 4) adds nothing. Ties: 甲–清华 1, 甲–乙 2, 甲–研究院 1,
/// 乙–研究院 1.
///
/// 甲: Degree 3. p(甲,·) = ¼, ½, ¼ for 清华, 乙, 研究院; p(乙,甲) = ⅔, p(乙,研) = ⅓, p(研,·) = ½.
/// Constraint = (¼)² + (½ + ¼·½)² + (¼ + ½·⅓)² = 1/16 + 25/64 + 25/144, CI = 1 − that.
/// 乙: Degree 2; constraint = (⅔ + ⅓·½)² + (⅓ + ⅔·¼)² = 25/36 + 9/36, CI = 1/18.
/// 丙 is in no co-applied digital patent in 2010 or 2011: outside the network (NaN).
///
/// The old construction (ties only between surveyed firms, degree over the year's network
/// size − 1, Burt's constraint printed as CI) gives 甲 a single tie to 乙: degree 1, CI 1.
#[test]
fn co_applicant_network_uses_every_applicant_and_reads_ci_as_structural_holes() {
    let dir = patents_dir("network");
    let fy = firm_year_patents(&dir).unwrap();
    cleanup(&dir);
    let a = &fy[&(1, 2010)];
    assert_eq!(a.degree, 3.0, "甲's co-applicants: 清华大学, 乙, 北京数字研究院");
    let ci_a = 1.0 - (1.0 / 16.0 + 25.0 / 64.0 + 25.0 / 144.0);
    assert!(close(a.holes, ci_a), "甲's CI {} vs {ci_a}", a.holes);
    let b = &fy[&(2, 2010)];
    assert_eq!(b.degree, 2.0);
    assert!(close(b.holes, 1.0 / 18.0), "乙's CI {} vs 1/18", b.holes);
    // a better-spanning position reads higher, as the paper's CI
    assert!(a.holes > b.holes);
    for k in [(3, 2010), (3, 2011)] {
        assert!(fy[&k].degree.is_nan() && fy[&k].holes.is_nan(), "丙 {k:?} is outside");
    }
    // the co-applied / single counts are unchanged: 甲 3 co-applied digital, 乙 2 + 1 single
    assert_eq!((a.digital, a.digital_co, a.digital_single), (3, 3, 0));
    assert_eq!((b.digital, b.digital_co, b.digital_single), (3, 2, 1));
}

/// Table 6: Digtech2 is the knowledge breadth of the firm's digital patents. 甲's 2010 digital
/// patents carry G06F17 three times and A01B1 once (the non-digital code of a digital patent
/// counts: it is that patent's breadth): 1 − (¾)² − (¼)² = 0.375. Its non-digital patent (row 6)
/// is left out; the old construction counted its three codes too: 1 − (3² + 2² + 1 + 1)/7² =
/// 34/49. 丙, with only a non-digital patent in 2010, has no Digtech2 (the old one gave 0) and so
/// no patent-quality class.
#[test]
fn patent_quality_is_the_breadth_of_digital_patents_only() {
    let dir = patents_dir("breadth");
    let fy = firm_year_patents(&dir).unwrap();
    cleanup(&dir);
    let breadth = |k: (i64, i64)| fegpu::study::ipc::knowledge_breadth(&fy[&k].codes);
    assert!(close(breadth((1, 2010)), 0.375), "甲 {}", breadth((1, 2010)));
    // 乙: G06F17 in rows 2, 3 and 5, A01B1 in row 2; its non-digital row 4 (A01B1) is left out:
    // 0.375 again (the old construction: G06F17 ×3, A01B1 ×2 → 1 − 13/25)
    assert!(close(breadth((2, 2010)), 0.375), "乙 {}", breadth((2, 2010)));
    assert!(breadth((3, 2010)).is_nan());
    assert_eq!(breadth((3, 2011)), 0.0);
}

/// Table 10: the quality of kept, new and dropped products is measured as Qua is, weighted by
/// export value (kept and new with their values at t, dropped with theirs at t−1).
/// t−1: product 1 (r 0.2, value 100), 2 (0.4, 50), 3 (0.9, 300);
/// t:   product 2 (0.5, 200), 4 (0.8, 100), 5 (0.6, 300), 6 (no spread: no r-Qua, value 1000).
/// kept {2}: 0.5; new {4, 5, 6}: (80 + 180)/400 = 0.65 (6 has no quality and no weight);
/// dropped {1, 3}: (20 + 270)/400 = 0.725; so the new products are worse: qual_sub1 = 0,
/// qual_sub2 = −0.075. Simple means (the old construction) give 0.7 and 0.55, qual_sub1 = 1.
#[test]
fn product_dynamics_quality_is_value_weighted() {
    use std::collections::BTreeMap;
    let prev: BTreeMap<u32, (f64, f64)> = [(1, (0.2, 100.0)), (2, (0.4, 50.0)), (3, (0.9, 300.0))].into();
    let now: BTreeMap<u32, (f64, f64)> = [
        (2, (0.5, 200.0)),
        (4, (0.8, 100.0)),
        (5, (0.6, 300.0)),
        (6, (f64::NAN, 1000.0)),
    ]
    .into();
    let d = fegpu::study::panel::Dynamics::between(&prev, &now);
    assert_eq!((d.keep, d.added, d.dropped), (1.0, 3.0, 2.0));
    assert!(close(d.qual_keep, 0.5));
    assert!(close(d.qual_in, 0.65), "qual_in {}", d.qual_in);
    assert!(close(d.qual_out, 0.725), "qual_out {}", d.qual_out);
    let (sub1, sub2) = d.substitution();
    assert_eq!(sub1, 0.0);
    assert!(close(sub2, -0.075), "qual_sub2 {sub2}");
}

/// Table 5: industries are split on 2017 divisions, C39 against C35–C38 and C40, every other
/// industry in neither group; survey codes up to 2011 are GB/T 4754-2002 and are mapped first.
/// Eight hand-made survey records (code, year) and their group by hand:
/// 4041 (2002: computers) 2010 → C39 digital; 3911 (2002: generators) 2010 → C38 digitalising;
/// 3911 (2011 classification: computers) 2013 → C39 digital; 3511 (2002: general machinery) 2009
/// → C34, neither; 4155 (2002: office machinery) 2011 → C34, neither; 4111 (2002: instruments)
/// 2011 → C40 digitalising; 3725 (2002: motor-vehicle parts) 2008 → C36 digitalising; 1810
/// (clothing) 2012 → neither. So 2 digital, 3 digitalising, 3 in neither: the groups cover 5/8.
/// Reading every code as a 2017 one (the old construction, which knew only "C35"–"C40") puts
/// 4041 in C40, 3911 of 2010 in C39, 3511 in C35 and 4111 in neither.
#[test]
fn industry_split_maps_2002_codes_to_2017_divisions() {
    use fegpu::study::industry::{digital_industry, division_2017};
    let records = [
        ("4041", 2010, Some(true)),
        ("3911", 2010, Some(false)),
        ("3911", 2013, Some(true)),
        ("3511", 2009, None),
        ("4155", 2011, None),
        ("4111", 2011, Some(false)),
        ("3725", 2008, Some(false)),
        ("1810", 2012, None),
    ];
    let group = |code: &str, year: i64| division_2017(code, year).and_then(|d| digital_industry(&d));
    for (code, year, want) in records {
        assert_eq!(group(code, year), want, "{code} in {year}");
    }
    let covered = records.iter().filter(|(c, y, _)| group(c, *y).is_some()).count();
    assert_eq!(covered, 5);
    // the section letter and short codes are read alike; a non-manufacturing code has no division
    assert_eq!(division_2017("C4041", 2010).as_deref(), Some("C39"));
    assert_eq!(division_2017("40", 2010).as_deref(), Some("C39"));
    assert_eq!(division_2017("3731", 2014).as_deref(), Some("C37"));
    assert_eq!(division_2017("0511", 2014), None);
}

/// Table 3's Digtech_A counts digital patents granted (the paper's 授权量) in the year of the
/// grant, and its column keeps the firms with a grant. 甲's patent applied for in 2010 is granted
/// in 2011: one grant in 2011, none in 2010 (the old construction dated it 2010, the application
/// year). 乙 has no grant: outside the Digtech_A sample (the old construction kept it with
/// Digtech_A = 0). 丙's 2011 application is granted in 2013: in the sample over 2008–2014, not
/// over 2008–2012.
#[test]
fn granted_patents_are_dated_by_grant_and_keep_the_granted_firms() {
    use fegpu::study::patents::granted_firms;
    let dir = patents_dir("granted");
    let fy = firm_year_patents(&dir).unwrap();
    cleanup(&dir);
    assert_eq!(fy[&(1, 2010)].digital_granted, 0);
    assert_eq!(fy[&(1, 2011)].digital_granted, 1);
    assert_eq!(fy[&(3, 2013)].digital_granted, 1);
    assert_eq!(fy[&(3, 2011)].digital_granted, 0);
    assert!(fy.iter().filter(|(k, _)| k.0 == 2).all(|(_, e)| e.digital_granted == 0));
    let all: Vec<i64> = granted_firms(&fy, 2008..=2014).into_iter().collect();
    assert_eq!(all, vec![1, 3]);
    let early: Vec<i64> = granted_firms(&fy, 2008..=2012).into_iter().collect();
    assert_eq!(early, vec![1]);
}

/// Table 12: digital imports are the lines whose name holds one of the 26 keywords, less those
/// wrongly classed as digital (HS code outside chapters 84, 85 and 90), merged with the OECD ICT
/// goods. A hand-made ICT list {847170, 851762, 854231} and seven import lines:
/// 85423190 集成电路处理器: keyword, chapter 85 → digital;
/// 39269090 集成电路用塑料托盘: keyword but plastics (39) → excluded (the old 10-keyword rule: digital);
/// 49019900 数字电路教材: keyword but a book (49) → excluded (old: digital);
/// 84717000 硬盘驱动器: no keyword, ICT code 847170 → digital;
/// 90138030 液晶显示板: keyword 液晶 (not among the old 10), chapter 90 → digital (old: not);
/// 85176299 路由器: keyword and ICT code → digital;
/// 61091000 棉制T恤: neither → not digital.
/// So 4 digital lines of 7 (the old rule: 5, a different set).
#[test]
fn digital_imports_use_26_keywords_less_the_misclassified_and_the_ict_goods() {
    use fegpu::study::panel::{is_digital_import, DIGITAL_KEYWORDS};
    use std::collections::HashSet;
    let ict: HashSet<String> = ["847170", "851762", "854231"].iter().map(|s| s.to_string()).collect();
    let lines = [
        ("85423190", "集成电路处理器", true),
        ("39269090", "集成电路用塑料托盘", false),
        ("49019900", "数字电路教材", false),
        ("84717000", "硬盘驱动器", true),
        ("90138030", "液晶显示板", true),
        ("85176299", "路由器", true),
        ("61091000", "棉制T恤", false),
    ];
    for (hs8, name, want) in lines {
        assert_eq!(is_digital_import(hs8, name, &ict), want, "{hs8} {name}");
    }
    assert_eq!(lines.iter().filter(|l| is_digital_import(l.0, l.1, &ict)).count(), 4);
    assert_eq!(DIGITAL_KEYWORDS.len(), 26);
}

/// Winsorising: the paper cuts all numeric variables at 1%/99%. Every panel column that is a
/// numeric measure (by its unit in data/panel_schema.csv: not an identifier, year, code, name,
/// 0/1 indicator or category) is winsorised, and no indicator is; Table 2's instruments, fixed
/// functions of external records, are left exact (tests/study_specs.rs checks their values). The old list held only Qua,
/// the price, the eleven controls and Vol, so Digtech, its variants, the mechanism, network and
/// supplier variables kept their tails.
#[test]
fn every_numeric_panel_variable_is_winsorised_and_no_indicator() {
    use fegpu::study::panel::{schema, WINSORIZED};
    let not_measures = ["id", "year", "code", "name", "0/1", "category"];
    let mut numeric = 0;
    for [name, _, _, unit] in schema() {
        let instrument = name.starts_with("iv_");
        let measure = !not_measures.contains(&unit.as_str()) && !instrument;
        assert_eq!(
            WINSORIZED.contains(&name.as_str()),
            measure,
            "{name} ({unit}) should {}be winsorised",
            if measure { "" } else { "not " }
        );
        numeric += measure as usize;
    }
    assert_eq!(WINSORIZED.len(), numeric);
    // winsorising clamps, it does not drop: 0, 1, …, 99 and one outlier 1e3 (101 values) keep
    // their 101 rows, with p1 = the 2nd value = 1 and p99 = the 100th value = 99
    let mut v: Vec<f64> = (0..100).map(f64::from).chain([1e3]).collect();
    fegpu::study::panel::winsorize(&mut v, None);
    assert_eq!(v.len(), 101);
    assert!(close(v[0], 1.0) && close(v[100], 99.0) && v[50] == 50.0);
}

/// Table 3's unit price is aggregated as Qua is: each flow's unit price standardised within its
/// HS6 product (min-max of ln p, as r-Qua), then weighted by export value to firm-year-destination.
/// Product 0 is sold at unit prices 1, e and e² (ln p 0, 1, 2 → r-Price 0, ½, 1); product 1 at
/// e³ and e⁵ (ln p 3, 5 → 0, 1); product 2 at one price only (no spread: no r-Price).
/// One firm-year-destination ships product 0 at e (value 100), product 1 at e⁵ (value 300) and
/// product 2 (value 600): Price = (100·½ + 300·1)/400 = 0.875. The old construction (value-weighted
/// ln p less the product-year mean: 0 for product 0, +1 for product 1, 0 for product 2, over all
/// 1000 of value) gives 0.3.
#[test]
fn unit_price_is_standardised_within_product_and_value_weighted() {
    use fegpu::study::panel::{standardised_prices, Destination};
    let ln_p = [0.0, 1.0, 2.0, 3.0, 5.0, 4.0, 4.0];
    let product = [0, 0, 0, 1, 1, 2, 2];
    let r = standardised_prices(&ln_p, &product);
    for (got, want) in r.iter().zip([0.0, 0.5, 1.0, 0.0, 1.0]) {
        assert!(close(*got, want), "{r:?}");
    }
    assert!(r[5].is_nan() && r[6].is_nan());
    let mut d = Destination::new();
    // (product, value, r-Qua, ln p less its product-year mean, r-Price, core)
    d.add(0, 100.0, 0.5, 0.0, r[1], false);
    d.add(1, 300.0, 0.5, 1.0, r[4], true);
    d.add(2, 600.0, 0.5, 0.0, r[5], false);
    assert!(close(d.price(), 0.875), "Price {}", d.price());
    assert!(close(d.rel_log_price(), 0.3));
}
