//! Stata `.dta` input (src/data/dta.rs): the fixtures of scripts/reference/make_dta.py (pandas,
//! releases 114, 117, 118 and 119, a strL column in 117 and 118, `.` and tagged missing values)
//! fit exactly like the CSV of the same data; every storage type and all 27 missing codes of
//! each numeric type read as values or nulls; a truncated or corrupted file is an error naming
//! it, never a panic; a missing column is named.

mod common;

use std::path::Path;
use std::process::Command;

use ::dta::stata::dta::byte_order::ByteOrder;
use ::dta::stata::dta::dta_writer::DtaWriter;
use ::dta::stata::dta::header::Header;
use ::dta::stata::dta::long_string_table::LongStringTable;
use ::dta::stata::dta::release::Release;
use ::dta::stata::dta::schema::Schema;
use ::dta::stata::dta::value::Value;
use ::dta::stata::dta::variable::Variable;
use ::dta::stata::dta::variable_type::VariableType;
use ::dta::stata::missing_value::MissingValue;
use ::dta::stata::stata_byte::StataByte;
use ::dta::stata::stata_double::StataDouble;
use ::dta::stata::stata_float::StataFloat;
use ::dta::stata::stata_int::StataInt;
use ::dta::stata::stata_long::StataLong;
use fegpu::data::load::{column_names, load};
use fegpu::Error;
use polars::prelude::DataType;

const VERSIONS: [u32; 4] = [114, 117, 118, 119];

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dta")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

fn tmp(name: &str) -> common::Scratch {
    common::tmp_file("dta", name)
}

fn cols(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn fit_json(file: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_fegpu"))
        .args([
            "fit",
            file,
            "y ~ x1 + x2 | firm + dest + region",
            "--vcov",
            "cluster:dest",
            "--format",
            "json",
        ])
        .output()
        .expect("run fegpu");
    assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The same model from each .dta release and from the CSV: the same sample (15 missing x1,
/// 4 missing x2, `.` and tagged) and bit-identical coefficients and standard errors.
#[test]
fn dta_fits_like_the_csv_of_the_same_data() {
    let csv = fit_json(&fixture("panel.csv"));
    let m = &csv["models"][0];
    assert_eq!(m["dropped"]["missing"].as_u64(), Some(19), "{m}");
    for v in VERSIONS {
        let dta = fit_json(&fixture(&format!("panel_{v}.dta")));
        let d = &dta["models"][0];
        assert_eq!(d["nobs"], m["nobs"], "release {v}");
        assert_eq!(d["dropped"], m["dropped"], "release {v}");
        let (a, b) = (
            d["coefficients"].as_array().unwrap(),
            m["coefficients"].as_array().unwrap(),
        );
        assert_eq!(a.len(), 2);
        assert_eq!(a.len(), b.len());
        for (p, q) in a.iter().zip(b) {
            assert_eq!(p["name"], q["name"]);
            for k in ["estimate", "std_error"] {
                let (x, y) = (p[k].as_f64().unwrap(), q[k].as_f64().unwrap());
                assert_eq!(x.to_bits(), y.to_bits(), "release {v}, {} {k}: {x} vs {y}", p["name"]);
            }
        }
    }
}

/// Column by column against the CSV: types, values, nulls, text (strL in 117/118), label codes.
#[test]
fn dta_columns_equal_the_csv_columns() {
    let names = cols(&["dest", "y", "x1", "x2", "firm", "region"]);
    let csv = load(&fixture("panel.csv"), &names).unwrap();
    for v in VERSIONS {
        let file = fixture(&format!("panel_{v}.dta"));
        assert_eq!(
            column_names(&file).unwrap(),
            cols(&["y", "x1", "x2", "firm", "dest", "region"])
        );
        let t = load(&file, &names).unwrap();
        let order: Vec<String> = t.frame().get_column_names().iter().map(|s| s.to_string()).collect();
        assert_eq!(order, names, "release {v}: requested order");
        assert_eq!(t.nrows(), 300);
        let dtypes: Vec<DataType> = t.frame().dtypes();
        assert_eq!(
            dtypes,
            vec![
                DataType::String,
                DataType::Float64,
                DataType::Float64,
                DataType::Int64,
                DataType::Int64,
                DataType::Int64
            ],
            "release {v}"
        );
        let nulls: Vec<usize> = t.frame().columns().iter().map(|c| c.null_count()).collect();
        assert_eq!(
            nulls,
            vec![0, 0, 15, 4, 0, 0],
            "release {v}: `.`, `.b` and `.z` are null"
        );
        for c in ["y", "x1", "x2", "firm", "region"] {
            let (a, b) = (t.numeric(c).unwrap(), csv.numeric(c).unwrap());
            assert!(
                a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()),
                "release {v}: {c}"
            );
        }
        assert_eq!(t.strings("dest").unwrap(), csv.strings("dest").unwrap(), "release {v}");
        for c in ["dest", "firm", "region"] {
            assert_eq!(t.codes(c).unwrap(), csv.codes(c).unwrap(), "release {v}: {c}");
        }
    }
}

/// A file with every storage type, written by the dta crate, then read back: in each numeric
/// column the 27 missing codes (`.`, `.a`–`.z`), a NaN and +inf (+inf and a positive NaN are
/// above Stata's largest value: missing, as Stata reads them) are null and the rest are the
/// values; empty strings are null.
#[test]
fn every_type_and_every_missing_code() {
    let codes: Vec<MissingValue> = (0..27u8).map(|k| MissingValue::try_from(0x65 + k).unwrap()).collect();
    let rows = 2 + codes.len() + 2;
    for release in [Release::V114, Release::V117, Release::V118, Release::V119] {
        let strl = release != Release::V114;
        let path = tmp(&format!("types_{}.dta", release as u8));
        let mut schema = Schema::builder()
            .add_variable(Variable::builder(VariableType::Byte, "b").format("%8.0g"))
            .add_variable(Variable::builder(VariableType::Int, "i").format("%8.0g"))
            .add_variable(Variable::builder(VariableType::Long, "l").format("%12.0g"))
            .add_variable(Variable::builder(VariableType::Float, "f").format("%9.0g"))
            .add_variable(Variable::builder(VariableType::Double, "d").format("%10.0g"))
            .add_variable(Variable::builder(VariableType::FixedString(6), "s").format("%6s"));
        if strl {
            schema = schema.add_variable(Variable::builder(VariableType::LongString, "sl").format("%9s"));
        }
        let mut records = DtaWriter::new()
            .from_path(&path)
            .unwrap()
            .write_header(Header::builder(release, ByteOrder::LittleEndian).build())
            .unwrap()
            .write_schema(schema.build().unwrap())
            .unwrap()
            .into_record_writer()
            .unwrap();
        let mut table = LongStringTable::for_writing();
        let long_text = |r: usize| {
            if r % 3 == 0 {
                String::new()
            } else {
                format!("long {}", r % 5).repeat(40)
            }
        };
        for r in 0..rows {
            let (b, i, l, f, d) = match r {
                0 => (
                    StataByte::Present(-127),
                    StataInt::Present(-32767),
                    StataLong::Present(-2_147_483_647),
                    StataFloat::Present(-1.5e38),
                    StataDouble::Present(-8.9e307),
                ),
                1 => (
                    StataByte::Present(100),
                    StataInt::Present(32740),
                    StataLong::Present(2_147_483_620),
                    StataFloat::Present(1.7e38),
                    StataDouble::Present(8.9e307),
                ),
                r if r < 2 + codes.len() => {
                    let m = codes[r - 2];
                    (
                        StataByte::Missing(m),
                        StataInt::Missing(m),
                        StataLong::Missing(m),
                        StataFloat::Missing(m),
                        StataDouble::Missing(m),
                    )
                }
                r if r == rows - 2 => (
                    StataByte::Present(7),
                    StataInt::Present(7),
                    StataLong::Present(7),
                    // a negative NaN is below Stata's missing range: a "value" only NaN marks
                    StataFloat::Present(-f32::NAN),
                    StataDouble::Present(-f64::NAN),
                ),
                _ => (
                    StataByte::Present(-7),
                    StataInt::Present(-7),
                    StataLong::Present(-7),
                    StataFloat::Present(f32::INFINITY),
                    StataDouble::Present(f64::INFINITY),
                ),
            };
            let s = if r % 2 == 0 { "" } else { "abc" };
            let text = long_text(r);
            let mut row = vec![
                Value::Byte(b),
                Value::Int(i),
                Value::Long(l),
                Value::Float(f),
                Value::Double(d),
                Value::string(s),
            ];
            if strl {
                row.push(Value::LongStringRef(table.get_or_insert(
                    7,
                    r as u64 + 1,
                    text.as_str(),
                )));
            }
            records.write_record(&row).unwrap();
        }
        let mut strls = records.into_long_string_writer().unwrap();
        strls.write_long_string_table(&table).unwrap();
        strls.into_value_label_writer().unwrap().finish().unwrap();

        let file = path.to_str().unwrap();
        let names = if strl {
            cols(&["sl", "d", "f", "l", "i", "b", "s"])
        } else {
            cols(&["d", "f", "l", "i", "b", "s"])
        };
        let t = load(file, &names).unwrap();
        assert_eq!(t.nrows(), rows);
        let expect_int = |r: usize, lo: f64, hi: f64| match r {
            0 => lo,
            1 => hi,
            r if r == rows - 2 => 7.0,
            r if r == rows - 1 => -7.0,
            _ => f64::NAN,
        };
        for (c, lo, hi) in [
            ("b", -127.0, 100.0),
            ("i", -32767.0, 32740.0),
            ("l", -2_147_483_647.0, 2_147_483_620.0),
        ] {
            let got = t.numeric(c).unwrap();
            assert_eq!(t.frame().column(c).unwrap().dtype(), &DataType::Int64);
            for (r, g) in got.iter().enumerate() {
                let e = expect_int(r, lo, hi);
                assert!(g.to_bits() == e.to_bits(), "{release:?} {c} row {r}: {g} vs {e}");
            }
        }
        for (c, lo, hi) in [("f", -1.5e38f32 as f64, 1.7e38f32 as f64), ("d", -8.9e307, 8.9e307)] {
            let got = t.numeric(c).unwrap();
            assert_eq!(t.frame().column(c).unwrap().null_count(), rows - 2, "{release:?} {c}");
            assert_eq!((got[0], got[1]), (lo, hi), "{release:?} {c}");
            assert!(got[2..].iter().all(|x| x.is_nan()), "{release:?} {c}: {:?}", &got[2..]);
        }
        let s = t.strings("s").unwrap();
        for (r, v) in s.iter().enumerate() {
            assert_eq!(v.as_deref(), (r % 2 == 1).then_some("abc"), "{release:?} s row {r}");
        }
        if strl {
            let sl = t.strings("sl").unwrap();
            for (r, v) in sl.iter().enumerate() {
                let e = long_text(r);
                assert_eq!(
                    v.as_deref(),
                    (!e.is_empty()).then_some(e.as_str()),
                    "{release:?} sl row {r}"
                );
            }
        }
        std::fs::remove_file(&path).ok();
    }
}

fn load_caught(file: &str, names: &[String]) -> Result<fegpu::data::Table, Error> {
    match std::panic::catch_unwind(|| load(file, names)) {
        Ok(r) => r,
        Err(_) => panic!("reading {file} panicked"),
    }
}

/// Every 7th prefix of the file is an error naming the file, never a panic.
#[test]
fn a_truncated_file_is_an_error_naming_it() {
    let names = cols(&["dest", "y", "x1", "x2", "firm", "region"]);
    for v in VERSIONS {
        let bytes = std::fs::read(fixture(&format!("panel_{v}.dta"))).unwrap();
        let path = tmp(&format!("truncated_{v}.dta"));
        let file = path.to_str().unwrap();
        let mut errors = 0;
        for len in (0..bytes.len()).step_by(7) {
            std::fs::write(&path, &bytes[..len]).unwrap();
            match load_caught(file, &names) {
                // the value labels at the end are not needed: a file cut there still reads
                Ok(t) => assert_eq!(t.nrows(), 300, "release {v}, {len} bytes"),
                Err(e) => {
                    errors += 1;
                    let msg = e.to_string();
                    assert!(matches!(e, Error::Io { .. }), "release {v}, {len} bytes: {msg}");
                    assert!(
                        msg.contains(file),
                        "release {v}, {len} bytes: the message names the file: {msg}"
                    );
                }
            }
        }
        assert!(errors > bytes.len() / 7 * 2 / 3, "release {v}: {errors} errors");
        std::fs::remove_file(&path).ok();
    }
}

/// Random byte corruption (header counts, type codes, strL keys, values): an error or a
/// table, never a panic, never a huge allocation from a corrupt count.
#[test]
fn a_corrupted_file_is_an_error_not_a_panic() {
    let names = cols(&["dest", "y", "x1", "x2", "firm", "region"]);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for v in VERSIONS {
        let bytes = std::fs::read(fixture(&format!("panel_{v}.dta"))).unwrap();
        let path = tmp(&format!("corrupt_{v}.dta"));
        let file = path.to_str().unwrap();
        for trial in 0..300 {
            let mut b = bytes.clone();
            // the first 1 KiB (header, counts, type list) gets most of the damage
            for _ in 0..1 + trial % 4 {
                let at = if next() % 2 == 0 {
                    next() as usize % 1024
                } else {
                    next() as usize % b.len()
                };
                b[at] = next() as u8;
            }
            std::fs::write(&path, &b).unwrap();
            if let Err(e) = load_caught(file, &names) {
                assert!(e.to_string().contains(file) || matches!(e, Error::Column { .. }), "{e}");
            }
        }
        std::fs::remove_file(&path).ok();
    }
}

#[test]
fn a_missing_column_is_named() {
    let file = fixture("panel_118.dta");
    let err = load(&file, &cols(&["y", "wage"]))
        .err()
        .expect("wage is not in the file");
    match &err {
        Error::Column { column, message } => {
            assert_eq!(column, "wage");
            assert!(message.contains("panel_118.dta") && message.contains("x1"), "{message}");
        }
        e => panic!("expected a column error, got {e}"),
    }
    // the reader on its own names it too
    match fegpu::data::dta::read(&file, &cols(&["y", "wage"])) {
        Err(Error::Column { column, message }) => {
            assert_eq!(column, "wage");
            assert!(message.contains("panel_118.dta") && message.contains("x1"), "{message}");
        }
        Err(e) => panic!("expected a column error, got {e}"),
        Ok(_) => panic!("wage is not in the file"),
    }
    // through the binary as well: one line naming the column, no panic
    let out = Command::new(env!("CARGO_BIN_EXE_fegpu"))
        .args(["fit", &file, "y ~ wage | firm"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("wage") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn a_file_with_no_rows_is_an_error() {
    let path = tmp("empty.dta");
    DtaWriter::new()
        .from_path(&path)
        .unwrap()
        .write_header(Header::builder(Release::V118, ByteOrder::LittleEndian).build())
        .unwrap()
        .write_schema(
            Schema::builder()
                .add_variable(Variable::builder(VariableType::Double, "y").format("%10.0g"))
                .build()
                .unwrap(),
        )
        .unwrap()
        .into_record_writer()
        .unwrap()
        .into_long_string_writer()
        .unwrap()
        .into_value_label_writer()
        .unwrap()
        .finish()
        .unwrap();
    let file = path.to_str().unwrap();
    let err = load(file, &cols(&["y"])).err().expect("no rows");
    assert!(
        err.to_string().contains("no rows") && err.to_string().contains(file),
        "{err}"
    );
    std::fs::remove_file(&path).ok();
}

/// A header whose variable or row count is far beyond what the file holds is an error before
/// anything is allocated from it (a corrupt count must not become a huge allocation or a
/// capacity-overflow panic).
#[test]
fn impossible_counts_in_the_header_are_errors() {
    let names = cols(&["y", "x1"]);
    let find = |b: &[u8], tag: &[u8]| b.windows(tag.len()).position(|w| w == tag).unwrap() + tag.len();
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for v in [117u32, 118, 119] {
        let bytes = std::fs::read(fixture(&format!("panel_{v}.dta"))).unwrap();
        let (k, n) = (find(&bytes, b"<K>"), find(&bytes, b"<N>"));
        let mut b = bytes.clone();
        match v {
            117 => b[n..n + 4].copy_from_slice(&u32::MAX.to_le_bytes()),
            _ => b[n..n + 8].copy_from_slice(&(1u64 << 62).to_le_bytes()),
        }
        cases.push((format!("rows_{v}"), b));
        let mut b = bytes.clone();
        match v {
            119 => b[k..k + 4].copy_from_slice(&u32::MAX.to_le_bytes()),
            _ => b[k..k + 2].copy_from_slice(&u16::MAX.to_le_bytes()),
        }
        cases.push((format!("variables_{v}"), b));
    }
    let mut b = std::fs::read(fixture("panel_114.dta")).unwrap();
    b[6..10].copy_from_slice(&u32::MAX.to_le_bytes());
    cases.push(("rows_114".into(), b));
    for (name, bytes) in cases {
        let path = tmp(&format!("{name}.dta"));
        let file = path.to_str().unwrap();
        std::fs::write(&path, &bytes).unwrap();
        let err = load_caught(file, &names)
            .err()
            .unwrap_or_else(|| panic!("{name}: read"));
        let msg = err.to_string();
        assert!(
            msg.contains(file) && msg.contains("the header declares"),
            "{name}: {msg}"
        );
        std::fs::remove_file(&path).ok();
    }
}
