//! Digital-economy patents: IPC codes against the CNIPA 2023 table 《数字经济核心产业分类与
//! 国际专利分类参照关系表（2023）》 (shipped in `data/cnipa_2023_digital_ipc_long.csv`, one row per
//! (sub-industry, IPC pattern)).
//!
//! Matching rule (shared/data/README.md): codes are compared without spaces ("G06F 17/30" →
//! "G06F17/30"). A pattern without `*` names one subgroup exactly (`G05B19/418`), or a whole
//! subclass when it is only a subclass (`H01Q`). A pattern with `*` covers its level and
//! everything below: `H05K*` the subclass H05K, `G06F1*` the main group G06F 1 — and not
//! G06F 16 or G06F 17, which a naive string prefix test would wrongly include. A patent is
//! digital if any of its codes matches, and counts once however many codes or sub-industries
//! match; the sub-industries are recorded.

use std::collections::{BTreeSet, HashMap};

use crate::error::{Error, Result};

const TABLE: &str = include_str!("../../data/cnipa_2023_digital_ipc_long.csv");

/// Every IPC pattern of the shipped table (with the PDF's typo corrected).
pub fn table_patterns() -> Vec<String> {
    TABLE
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(3))
        .map(|p| {
            if p == "GC23C16*" {
                "C23C16*".to_string()
            } else {
                p.trim().to_string()
            }
        })
        .filter(|p| parse_code(p.trim_end_matches('*')).is_some())
        .collect()
}

/// A parsed IPC code: subclass (`G06F`), main group (`17`), subgroup (`30`, may be empty).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpcCode {
    pub subclass: String,
    pub main: String,
    pub sub: String,
}

impl IpcCode {
    /// Main group key, as used for knowledge breadth (`G06F17`).
    pub fn main_group(&self) -> String {
        format!("{}{}", self.subclass, self.main)
    }
}

fn half_width(c: char) -> char {
    match c as u32 {
        0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    }
}

/// Parse one IPC code in any of the spellings found in patent records ("G06F 17/30",
/// "g06f17/30", "G06F  17 / 30", full-width characters). `G06F` alone is a subclass.
pub fn parse_code(raw: &str) -> Option<IpcCode> {
    let s: String = raw
        .chars()
        .map(half_width)
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    let b = s.as_bytes();
    if b.len() < 4
        || !(b'A'..=b'H').contains(&b[0])
        || !b[1].is_ascii_digit()
        || !b[2].is_ascii_digit()
        || !b[3].is_ascii_uppercase()
    {
        return None;
    }
    let subclass = s[..4].to_string();
    let rest = &s[4..];
    let (main, sub) = match rest.split_once('/') {
        Some((m, sg)) => (m, sg),
        None => (rest, ""),
    };
    if !main.chars().all(|c| c.is_ascii_digit())
        || !sub.chars().all(|c| c.is_ascii_digit())
        || (main.is_empty() && !sub.is_empty())
    {
        return None;
    }
    // "G06F017/30" and "G06F17/30" are the same main group
    let main = main.trim_start_matches('0');
    let main = if main.is_empty() && !rest.is_empty() && rest.starts_with('0') {
        "0"
    } else {
        main
    };
    Some(IpcCode {
        subclass,
        main: main.to_string(),
        sub: sub.to_string(),
    })
}

/// Split a patent's IPC field into codes (separators `;`, `,`, `|`, `；`, `，`, newlines). An
/// unparseable code is an error naming it.
pub fn parse_codes(field: &str) -> Result<Vec<IpcCode>> {
    field
        .split([';', ',', '|', '；', '，', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| parse_code(s).ok_or_else(|| Error::Data(format!("unparseable IPC code `{s}`"))))
        .collect()
}

/// The CNIPA table as lookups by matching level.
pub struct DigitalTable {
    subgroup: HashMap<(String, String, String), Vec<String>>,
    main_group: HashMap<(String, String), Vec<String>>,
    subclass: HashMap<String, Vec<String>>,
}

impl DigitalTable {
    /// Load the shipped table.
    pub fn cnipa_2023() -> DigitalTable {
        let mut t = DigitalTable {
            subgroup: HashMap::new(),
            main_group: HashMap::new(),
            subclass: HashMap::new(),
        };
        for line in TABLE.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() < 6 {
                continue;
            }
            let (code6, pattern) = (f[0].to_string(), f[3].trim());
            // the PDF's one typo: GC23C16* means C23C16*
            let pattern = if pattern == "GC23C16*" { "C23C16*" } else { pattern };
            let wildcard = pattern.ends_with('*');
            let Some(p) = parse_code(pattern.trim_end_matches('*')) else {
                continue;
            };
            if p.main.is_empty() {
                t.subclass.entry(p.subclass).or_default().push(code6);
            } else if wildcard || p.sub.is_empty() {
                t.main_group.entry((p.subclass, p.main)).or_default().push(code6);
            } else {
                t.subgroup.entry((p.subclass, p.main, p.sub)).or_default().push(code6);
            }
        }
        t
    }

    /// Sub-industries (6-digit codes) an IPC code belongs to.
    pub fn industries(&self, c: &IpcCode) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        if let Some(v) = self.subclass.get(&c.subclass) {
            out.extend(v.iter().cloned());
        }
        if let Some(v) = self.main_group.get(&(c.subclass.clone(), c.main.clone())) {
            out.extend(v.iter().cloned());
        }
        if let Some(v) = self.subgroup.get(&(c.subclass.clone(), c.main.clone(), c.sub.clone())) {
            out.extend(v.iter().cloned());
        }
        out
    }

    /// The sub-industries of a patent (empty: not a digital patent). Counted once per patent.
    pub fn classify(&self, codes: &[IpcCode]) -> BTreeSet<String> {
        codes.iter().flat_map(|c| self.industries(c)).collect()
    }
}

/// Knowledge breadth (Digtech2; Zhang & Zheng 2018): 1 − Σ_g α_g², α_g the share of the firm's
/// IPC codes in main group g. 0 for a firm whose codes all share one main group.
pub fn knowledge_breadth(codes: &[IpcCode]) -> f64 {
    if codes.is_empty() {
        return f64::NAN;
    }
    // ordered map: the sum runs in the same order every time (bit-reproducible panels)
    let mut counts: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for c in codes {
        *counts.entry(c.main_group()).or_default() += 1;
    }
    let n = codes.len() as f64;
    1.0 - counts.values().map(|&k| (k as f64 / n).powi(2)).sum::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> IpcCode {
        parse_code(s).unwrap()
    }

    #[test]
    fn codes_parse_in_every_spelling() {
        let want = IpcCode {
            subclass: "G06F".into(),
            main: "17".into(),
            sub: "30".into(),
        };
        for s in [
            "G06F 17/30",
            "G06F17/30",
            "g06f 17/30",
            "G06F  17 / 30",
            "Ｇ０６Ｆ１７／３０",
            "G06F017/30",
        ] {
            assert_eq!(parse_code(s).as_ref(), Some(&want), "{s}");
        }
        assert_eq!(parse_code("H04L").unwrap().main, "");
        for bad in ["", "X06F17/30", "G6F17/30", "G06F17/3a", "G06F/30"] {
            assert!(parse_code(bad).is_none(), "{bad}");
        }
        assert_eq!(parse_codes("G06F 17/30; H04L 29/06 | H04W4/00").unwrap().len(), 3);
        assert!(matches!(parse_codes("G06F 17/30; nonsense"), Err(Error::Data(m)) if m.contains("nonsense")));
    }

    #[test]
    fn main_group_wildcard_is_not_a_string_prefix() {
        let t = DigitalTable::cnipa_2023();
        // G06F1* covers main group G06F 1 ...
        assert!(!t.industries(&code("G06F 1/16")).is_empty());
        assert!(t.industries(&code("G06F 1/16")).contains("010101"));
        // ... but not G06F 16: a naive prefix test on "G06F1" would put it in 010101. G06F 16 has
        // its own pattern (G06F16*, e.g. 030101) and the subclass-wide G06F* (e.g. 010404).
        let g16 = t.industries(&code("G06F 16/00"));
        assert!(!g16.contains("010101"));
        assert!(g16.contains("030101") && g16.contains("010404"));
        let other = t.industries(&code("G06F 99/00"));
        assert!(other.contains("010404") && !other.contains("030101") && !other.contains("010101"));
        // G06F 17 has its own pattern G06F17* in several sub-industries
        assert!(t.industries(&code("G06F 17/30")).contains("010101"));
        // a code in no table entry
        assert!(t.industries(&code("A01B 1/00")).is_empty());
    }

    #[test]
    fn a_code_can_belong_to_several_sub_industries_and_counts_once() {
        let t = DigitalTable::cnipa_2023();
        let (code6, n) = t
            .main_group
            .iter()
            .map(|(k, v)| (k.clone(), v.len()))
            .max_by_key(|(_, n)| *n)
            .unwrap();
        assert!(n >= 2, "the table maps some main group to several sub-industries");
        let c = IpcCode {
            subclass: code6.0,
            main: code6.1,
            sub: "00".into(),
        };
        let set = t.classify(&[c.clone(), c.clone()]);
        assert!(set.len() >= 2);
        // one patent with two matching codes is one digital patent with a set of industries
        assert_eq!(set, t.classify(&[c]));
    }

    #[test]
    fn exact_subgroup_patterns_match_only_that_subgroup() {
        let t = DigitalTable::cnipa_2023();
        assert!(!t.industries(&code("G05B 19/418")).is_empty());
        // industry 010104 lists G05B19/418 exactly; the G05B19* industries cover the whole
        // main group. So the exact subgroup adds 010104 and its sibling does not get it.
        let exact = t.industries(&code("G05B 19/418"));
        let sib = t.industries(&code("G05B 19/419"));
        assert!(exact.contains("010104"), "{exact:?}");
        assert!(!sib.contains("010104"), "{sib:?}");
        assert!(sib.contains("010407") && sib.is_subset(&exact), "{sib:?} vs {exact:?}");
        assert_eq!(exact.len(), sib.len() + 1);
    }

    #[test]
    fn knowledge_breadth_is_one_minus_hhi_of_main_groups() {
        let same = [code("G06F 17/30"), code("G06F 17/40")];
        assert_eq!(knowledge_breadth(&same), 0.0);
        let spread = [
            code("G06F 17/30"),
            code("H04L 29/06"),
            code("G06F 16/00"),
            code("G06F 17/10"),
        ];
        // shares: G06F17 1/2, H04L29 1/4, G06F16 1/4 -> 1 - (1/4 + 1/16 + 1/16)
        assert!((knowledge_breadth(&spread) - 0.625).abs() < 1e-15);
    }
}
