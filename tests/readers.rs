//! Hostile input files (issue 25, "no wrong number with exit 0"): integer ids wider than f64
//! keeps, numbers padded with blanks, RFC 4180 header quoting, and rows `bdiff --unit` drops.
//! Every file is read as fixed effects and clusters see it (`Table::codes`) and as regressors
//! see it (`Table::numeric`); bad input must be an error that names file, column and row.

mod common;

use std::path::Path;

use fegpu::data::{load, Table};

fn tmpdir(name: &str) -> common::Scratch {
    common::tmpdir("readers", name)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

fn names(cols: &[&str]) -> Vec<String> {
    cols.iter().map(|c| c.to_string()).collect()
}

fn levels(t: &Table, col: &str) -> usize {
    t.codes(col).unwrap().1
}

/// `n` rows whose `id` cycles through `ids`, with a regressor `x` (enough rows for several
/// pieces of the parallel reader would not matter here: the point is the values).
fn ids_file(ids: &[&str], n: usize) -> String {
    let mut s = String::from("id,x\n");
    for i in 0..n {
        s.push_str(&format!("{},{}\n", ids[i % ids.len()], i as f64 * 0.5));
    }
    s
}

/// Ids of 19 digits (within i64), 20 digits (within u64 only) and 25 digits (beyond u64) stay
/// distinct levels: three ids, three levels, whatever their width.
#[test]
fn wide_integer_ids_stay_distinct_levels() {
    let d = tmpdir("wide");
    for (tag, ids) in [
        (
            "i64",
            ["1000000000000000000", "1000000000000000001", "1000000000000000002"],
        ),
        (
            "u64",
            ["18446744073709551613", "18446744073709551614", "18446744073709551615"],
        ),
        (
            "beyond",
            [
                "1000000000000000000000001",
                "1000000000000000000000002",
                "1000000000000000000000003",
            ],
        ),
        (
            "negative",
            ["-9223372036854775808", "-9223372036854775807", "9223372036854775807"],
        ),
        ("mixed", ["-1", "18446744073709551615", "18446744073709551614"]),
    ] {
        let f = write(&d, &format!("{tag}.csv"), &ids_file(&ids, 30));
        let t = load(&f, &names(&["id", "x"])).unwrap();
        assert_eq!(levels(&t, "id"), 3, "{tag}: {ids:?}");
        let (codes, _) = t.codes("id").unwrap();
        assert_eq!(&codes[..6], &[0, 1, 2, 0, 1, 2], "{tag}");
        // used as a regressor the same column is an f64 column
        let v = t.numeric("id").unwrap();
        assert_eq!(v[0], ids[0].parse::<f64>().unwrap(), "{tag}");
    }
}

/// The same id written `007`, `7` and `+7` is one level when the column is integer; when it
/// is wider than i64 too, the wide ids are still compared as numbers.
#[test]
fn wide_ids_compare_as_integers() {
    let d = tmpdir("wide-canon");
    let f = write(
        &d,
        "c.csv",
        &ids_file(
            &[
                "007",
                "7",
                "+7",
                "100000000000000000000000",
                "0100000000000000000000000",
            ],
            10,
        ),
    );
    let t = load(&f, &names(&["id"])).unwrap();
    let (codes, n) = t.codes("id").unwrap();
    assert_eq!(n, 2);
    assert_eq!(&codes[..5], &[0, 0, 0, 1, 1]);
}

/// A Parquet UInt64 id column above i64::MAX is not turned into missing values.
#[test]
fn parquet_u64_ids_stay_distinct_levels() {
    use polars::prelude::*;
    let d = tmpdir("pq-u64");
    let p = d.join("u.parquet");
    let ids: Vec<u64> = vec![u64::MAX, u64::MAX - 1, 5, u64::MAX];
    let mut df = df!("id" => ids, "x" => [1.0, 2.0, 3.0, 4.0]).unwrap();
    ParquetWriter::new(std::fs::File::create(&p).unwrap())
        .finish(&mut df)
        .unwrap();
    let t = load(p.to_str().unwrap(), &names(&["id", "x"])).unwrap();
    assert_eq!(t.codes("id").unwrap(), (vec![0, 1, 2, 0], 3));
}

/// Blanks around a number are not part of it (pandas, fread and Stata agree): `5 `, ` 5` and `5`
/// are one level, and a padded regressor is a number. Tabs count as blanks in a `.csv`.
#[test]
fn padded_numbers_are_numbers() {
    let d = tmpdir("padded");
    let text = "fe,x,y\n5 ,1.5 ,1\n 5,\t2.5,2\n5,3.5\t,3\n6, 4 ,4\n\" 6 \",5,5\n";
    let f = write(&d, "p.csv", text);
    let t = load(&f, &names(&["fe", "x", "y"])).unwrap();
    assert_eq!(t.codes("fe").unwrap(), (vec![0, 0, 0, 1, 1], 2));
    assert_eq!(t.numeric("x").unwrap(), vec![1.5, 2.5, 3.5, 4.0, 5.0]);
    assert_eq!(t.numeric("fe").unwrap(), vec![5.0, 5.0, 5.0, 6.0, 6.0]);
}

/// A cell that is not a number in a regressor is an error naming the file, the column, the row
/// and the cell, from the command line with a non-zero exit (and no panic).
#[test]
fn a_bad_cell_names_file_column_and_row() {
    let d = tmpdir("badcell");
    let mut text = String::from("y,x,fe\n");
    for i in 0..40 {
        let x = if i == 17 {
            "1.5x".to_string()
        } else {
            format!(" {}.25 ", i)
        };
        text.push_str(&format!("{},{x},{}\n", i % 7, i % 3));
    }
    let f = write(&d, "bad.csv", &text);
    let out = common::fegpu(&["fit", &f, "y ~ x | fe"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for needle in ["bad.csv", "`x`", "row 18", "1.5x"] {
        assert!(err.contains(needle), "stderr should name {needle:?}: {err}");
    }
}

/// Header names are quoted as RFC 4180 says: a quoted separator does not split a name, `""`
/// inside quotes is one quote, and a quoted name may span lines.
#[test]
fn quoted_header_names_follow_rfc_4180() {
    let d = tmpdir("header");
    let text = "\"a,b\",c,\"say \"\"hi\"\"\",\"two\nlines\"\r\n1,2,3,4\r\n5,6,7,8\r\n";
    let f = write(&d, "h.csv", text);
    assert_eq!(
        fegpu::data::load::column_names(&f).unwrap(),
        names(&["a,b", "c", "say \"hi\"", "two\nlines"])
    );
    let t = load(&f, &names(&["a,b", "say \"hi\"", "two\nlines", "c"])).unwrap();
    assert_eq!(t.numeric("a,b").unwrap(), vec![1.0, 5.0]);
    assert_eq!(t.numeric("c").unwrap(), vec![2.0, 6.0]);
    assert_eq!(t.numeric("say \"hi\"").unwrap(), vec![3.0, 7.0]);
    assert_eq!(t.numeric("two\nlines").unwrap(), vec![4.0, 8.0]);
}

/// A file with everything the parallel reader must get right: quoted header names (a comma, an
/// escaped quote, a line break), CRLF line ends, 19-digit ids, blanks around numbers and text,
/// quoted numbers, `007`/`+7`, every spelling of a missing value, exponents, `inf` and `nan`.
fn tricky_file(rows: usize) -> String {
    let mut s = String::from("id,\"a,b\",\"say \"\"hi\"\"\",dest,x,\"two\nlines\"\r\n");
    for i in 0..rows {
        let id = match i % 11 {
            0 => String::new(),
            1 => " NA ".to_string(),
            2 => format!(" {} ", 1_000_000_000_000_000_000u64 + (i % 7) as u64),
            _ => format!("{}", 1_000_000_000_000_000_000u64 + (i % 7) as u64),
        };
        let ab = match i % 13 {
            0 => ".".to_string(),
            1 => format!("\t{}.5 ", i % 17),
            _ => format!("{:.6e}", i as f64 / 7.0),
        };
        let hi = ["007", " 7", "+7", "\" 8 \"", "-0", "0", "9 ", "NA"][i % 8];
        let dest = ["D1", " D1 ", "\"D2\"", "\" D3\"", "NA", "", "d1"][i % 7];
        let x = match i % 19 {
            0 => "inf".to_string(),
            1 => "nan".to_string(),
            2 => "-1E-3".to_string(),
            _ => format!("{}", (i as f64 * 0.37).sin()),
        };
        s.push_str(&format!("{id},{ab},{hi},{dest},{x},{}\r\n", i % 3));
    }
    s
}

/// Everything a model reads from a column, or the error it gets.
fn column_view(t: &Table, c: &str) -> (String, String, String) {
    let codes = format!("{:?}", t.codes(c).map_err(|e| e.to_string()));
    let numeric = match t.numeric(c) {
        Ok(v) => format!("{:?}", v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()),
        Err(e) => e.to_string(),
    };
    let strings = format!("{:?}", t.strings(c).map_err(|e| e.to_string()));
    (codes, numeric, strings)
}

/// The README's promise: the parallel reader and the general one (which reads whatever the
/// parallel one declines) give the same table — codes, f64 values (bit for bit), text and
/// errors — on a tricky file that both read.
#[test]
fn both_readers_give_the_same_table() {
    use fegpu::data::load::{read_delimited_general, read_delimited_parallel};
    let d = tmpdir("agree");
    let columns = names(&["id", "a,b", "say \"hi\"", "dest", "x", "two\nlines"]);
    for rows in [60, 5000] {
        let f = write(&d, &format!("t{rows}.csv"), &tricky_file(rows));
        let fast = read_delimited_parallel(&f, &columns)
            .unwrap()
            .expect("the parallel reader takes the file");
        let general = read_delimited_general(&f, &columns).unwrap();
        assert_eq!(fast.nrows(), rows);
        assert_eq!(general.nrows(), rows);
        for c in &columns {
            assert_eq!(
                column_view(&fast, c),
                column_view(&general, c),
                "column {c:?}, {rows} rows"
            );
        }
        // and what they agree on is right
        assert_eq!(levels(&fast, "id"), 7);
        assert_eq!(fast.codes("id").unwrap().0[..3], [u32::MAX, u32::MAX, 0]);
        assert_eq!(levels(&fast, "say \"hi\""), 4); // 7, 8, 0, 9
        assert_eq!(levels(&fast, "dest"), 4); // D1, D2, D3, d1
        assert_eq!(fast.numeric("a,b").unwrap()[1], 1.5);
    }
}

/// What only the general reader reads — an escaped quote and a line break inside a quoted
/// field, ids wider than i64 — is read by the same rules (blanks trimmed, ids exact).
#[test]
fn the_general_reader_types_fields_as_the_parallel_one() {
    let d = tmpdir("general");
    let text = "id,name,x\n18446744073709551615 ,\"say \"\"hi\"\"\",1\n 18446744073709551614,\"two\nlines\",2\n\
                18446744073709551615,\" say \"\"hi\"\" \",3\n";
    let f = write(&d, "g.csv", text);
    let cols = names(&["id", "name", "x"]);
    assert!(fegpu::data::load::read_delimited_parallel(&f, &cols).unwrap().is_none());
    let t = load(&f, &cols).unwrap();
    assert_eq!(t.codes("id").unwrap(), (vec![0, 1, 0], 2));
    assert_eq!(t.codes("name").unwrap(), (vec![0, 1, 0], 2));
    assert_eq!(
        t.strings("name").unwrap(),
        vec![
            Some("say \"hi\"".into()),
            Some("two\nlines".into()),
            Some("say \"hi\"".into())
        ]
    );
    assert_eq!(t.numeric("x").unwrap(), vec![1.0, 2.0, 3.0]);
}

/// A used column named twice in the header is an error naming it, from either reader; a header
/// with an unterminated quote is an error naming the file.
#[test]
fn ambiguous_and_broken_headers_are_errors() {
    let d = tmpdir("dup");
    let f = write(&d, "dup.csv", "a,b,a\n1,2,3\n");
    let e = load(&f, &names(&["a", "b"])).err().expect("an error").to_string();
    assert!(e.contains("`a`") && e.contains("2 times"), "{e}");
    assert!(load(&f, &names(&["b"])).is_ok());
    let f = write(&d, "open.csv", "\"a,b\n1,2\n");
    let e = load(&f, &names(&["a"])).err().expect("an error").to_string();
    assert!(e.contains("open.csv") && e.contains("unterminated quote"), "{e}");
}

/// Records the general reader cannot split are errors naming the file and the row (and the
/// column where there is one), never a panic: a row longer than the header, bytes that are not
/// UTF-8 text.
#[test]
fn records_that_cannot_be_split_name_their_row() {
    let d = tmpdir("split");
    let f = write(&d, "long.csv", "y,x,fe\n1,2,3\n4,\"5,6\",3\n4,5,6,7\n");
    let e = load(&f, &names(&["y", "x"])).err().expect("an error").to_string();
    assert!(
        e.contains("long.csv") && e.contains("row 3 has 4 fields but the header has 3"),
        "{e}"
    );
    let p = d.join("bad8.csv");
    std::fs::write(&p, b"y,x,fe\n1,2,a\n7,8,\xff\n").unwrap();
    let e = load(p.to_str().unwrap(), &names(&["y", "fe"]))
        .err()
        .expect("an error")
        .to_string();
    assert!(
        e.contains("`fe`") && e.contains("row 2 of") && e.contains("bad8.csv") && e.contains("UTF-8"),
        "{e}"
    );
}

/// `bdiff --unit VAR` counts the rows it drops for a missing unit, and reports them as `fit`
/// reports dropped rows (`nobs_raw` and `dropped` in JSON).
#[test]
fn bdiff_counts_rows_with_a_missing_unit() {
    let d = tmpdir("bdiff-unit");
    let mut text = String::from("y,x,g,u,fe\n");
    for i in 0..200 {
        let u = i / 4;
        let unit = if u == 3 || u == 7 { String::new() } else { u.to_string() };
        let x = ((i * 37) % 101) as f64 / 10.0;
        let y = x + ((i * 13) % 17) as f64 / 5.0;
        text.push_str(&format!("{y},{x},{},{unit},{}\n", u % 2, i % 5));
    }
    let f = write(&d, "b.csv", &text);
    let args = [
        "bdiff",
        f.as_str(),
        "y ~ x | fe",
        "--group",
        "g",
        "--unit",
        "u",
        "--reps",
        "50",
    ];
    let out = common::ok(&[&args[..], &["--format", "json"]].concat());
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let b = &v["bdiff"];
    assert_eq!(b["nobs_raw"], 200, "{b}");
    assert_eq!(b["dropped"]["missing"], 8, "{b}");
    let text_out = String::from_utf8_lossy(&common::ok(&args)).to_string();
    assert!(
        text_out.contains("Dropped 8 of 200 rows: 8 with a missing value"),
        "{text_out}"
    );
}
