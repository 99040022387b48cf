//! Stata `.dta` input, through the pure-Rust [`dta`] crate: the format versions Stata writes
//! today, 113 to 119 (117, 118 and 119 are what Stata 13 to 18 write; older ones the crate
//! reads too). The file is streamed row by row and only the requested columns are decoded.
//!
//! How Stata storage types map to columns:
//!
//! | Stata                 | column  | missing                                      |
//! |-----------------------|---------|----------------------------------------------|
//! | `byte`, `int`, `long` | Int64   | `.` and `.a`–`.z` → null                     |
//! | `float`, `double`     | Float64 | `.` and `.a`–`.z` → null, and so is any value |
//! |                       |         | above the largest non-missing one, and NaN   |
//! | `str#`, `strL`        | String  | the empty string → null (Stata's missing)    |
//!
//! Text before release 118 is Windows-1252 (the crate's default), except a `strL` that is valid
//! UTF-8 (what pandas writes into 117 files); from 118 on it is UTF-8.
//!
//! Value labels are ignored: a labelled variable is its numeric codes, which is what a fixed
//! effect needs. Display formats (dates) are ignored as well: a `%td` date is its day number.
//!
//! A corrupt or truncated file is an [`Error::Io`] naming the file, never a panic: the header's
//! variable and observation counts are checked against the file's size before anything is
//! allocated from them. What is not checked is the length of one `strL` or characteristic
//! entry, which the crate allocates before reading (at most 4 GiB, freed at the error).

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;

use ::dta::stata::dta::characteristic_reader::CharacteristicReader;
use ::dta::stata::dta::dta_reader::DtaReader;
use ::dta::stata::dta::value::Value;
use ::dta::stata::dta::variable_type::VariableType;
use polars::prelude::*;

use crate::error::{Error, Result};

/// An open file, positioned after its schema.
type Reader = CharacteristicReader<BufReader<File>>;

/// Why a file could not be read, naming it.
fn corrupt(path: &str, e: impl std::fmt::Display) -> Error {
    Error::io(path, format!("cannot read this Stata .dta file ({e})"))
}

/// Open `path` and read its header and variable list, checking the header's counts against
/// the file's size (a corrupt count must not become a huge allocation).
fn open(path: &str) -> Result<(Reader, u64)> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let reader = DtaReader::new()
        .from_reader(BufReader::with_capacity(1 << 20, file))
        .read_header()
        .map_err(|e| corrupt(path, e))?;
    let header = reader.header();
    let release = header.release() as u8;
    // bytes every variable takes at least in the descriptors: type, name, format, value-label
    // name and label fields (their narrowest widths in those releases)
    let per_variable: u64 = match release {
        118.. => 2 + 129 + 57 + 129 + 321,
        117 => 2 + 33 + 49 + 33 + 81,
        113..=116 => 1 + 33 + 12 + 33 + 81,
        _ => 1 + 8 + 7 + 8 + 32,
    };
    let k = u64::from(header.variable_count());
    if k.saturating_mul(per_variable) > size {
        return Err(corrupt(
            path,
            format!("the header declares {k} variables, more than a file of {size} bytes holds"),
        ));
    }
    let mut reader = reader.read_schema().map_err(|e| corrupt(path, e))?;
    reader.skip_to_end().map_err(|e| corrupt(path, e))?;
    Ok((reader, size))
}

/// Bytes a value of `t` takes in a data row.
fn width(t: VariableType) -> u64 {
    match t {
        VariableType::Byte => 1,
        VariableType::Int => 2,
        VariableType::Long | VariableType::Float => 4,
        VariableType::Double | VariableType::LongString => 8,
        VariableType::FixedString(n) => u64::from(n),
    }
}

/// The variable names of a `.dta` file, in file order (header and variable list only).
pub fn column_names(path: &str) -> Result<Vec<String>> {
    let (reader, _) = open(path)?;
    Ok(reader
        .schema()
        .variables()
        .iter()
        .map(|v| v.name().to_string())
        .collect())
}

/// One requested column while the rows stream by.
enum Builder {
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
    /// strL references `(variable, observation)`, resolved once the strL section is read;
    /// `(0, 0)` is the empty string.
    Long(Vec<(u32, u64)>),
}

/// Read `columns` of the `.dta` file `path`, in that order (each must exist), as a frame:
/// integers as Int64, floats as Float64, strings as String, Stata missing values as null.
pub fn read(path: &str, columns: &[String]) -> Result<DataFrame> {
    let (reader, size) = open(path)?;
    let variables = reader.schema().variables().to_vec();
    let n = reader.header().observation_count();
    let row: u64 = variables.iter().map(|v| width(v.variable_type())).sum();
    if n.saturating_mul(row.max(1)) > size {
        return Err(corrupt(
            path,
            format!("the header declares {n} rows of {row} bytes, more than the file's {size} bytes"),
        ));
    }
    let mut index = Vec::with_capacity(columns.len());
    for c in columns {
        let Some(i) = variables.iter().position(|v| v.name() == c) else {
            let names: Vec<&str> = variables.iter().map(|v| v.name()).take(20).collect();
            return Err(Error::column(
                c,
                format!("not found in {path} (it has: {})", names.join(", ")),
            ));
        };
        index.push(i);
    }
    let cap = n as usize;
    let mut builders: Vec<Builder> = index
        .iter()
        .map(|&i| match variables[i].variable_type() {
            VariableType::Byte | VariableType::Int | VariableType::Long => Builder::Int(Vec::with_capacity(cap)),
            VariableType::Float | VariableType::Double => Builder::Float(Vec::with_capacity(cap)),
            VariableType::FixedString(_) => Builder::Text(Vec::with_capacity(cap)),
            VariableType::LongString => Builder::Long(Vec::with_capacity(cap)),
        })
        .collect();

    let mut records = reader.into_record_reader().map_err(|e| corrupt(path, e))?;
    while let Some(record) = records.read_lazy_record().map_err(|e| corrupt(path, e))? {
        for (b, &i) in builders.iter_mut().zip(&index) {
            let value = record.value(i);
            match b {
                Builder::Int(v) => v.push(match value.map_err(|e| corrupt(path, e))? {
                    Value::Byte(x) => x.present().map(i64::from),
                    Value::Int(x) => x.present().map(i64::from),
                    Value::Long(x) => x.present().map(i64::from),
                    _ => None,
                }),
                // The crate refuses a value above the largest non-missing one that is not
                // one of the 27 missing codes (NaN, infinity, a code with stray bits); Stata
                // reads every such value as missing, and so do we.
                Builder::Float(v) => v.push(
                    match value {
                        Ok(Value::Float(x)) => x.present().map(f64::from),
                        Ok(Value::Double(x)) => x.present(),
                        _ => None,
                    }
                    .filter(|x| !x.is_nan()),
                ),
                Builder::Text(v) => match value.map_err(|e| corrupt(path, e))? {
                    Value::String(s) if !s.is_empty() => v.push(Some(s.into_owned())),
                    _ => v.push(None),
                },
                Builder::Long(v) => match value.map_err(|e| corrupt(path, e))? {
                    Value::LongStringRef(r) => v.push((r.variable(), r.observation())),
                    _ => v.push((0, 0)),
                },
            }
        }
    }

    // strL columns: the strings live after the data, keyed by (variable, observation)
    let mut long: HashMap<(u32, u64), String> = HashMap::new();
    if builders.iter().any(|b| matches!(b, Builder::Long(_))) {
        let wanted: Vec<u32> = index
            .iter()
            .zip(&builders)
            .filter(|(_, b)| matches!(b, Builder::Long(_)))
            .map(|(&i, _)| i as u32 + 1)
            .collect();
        let mut strls = records.into_long_string_reader().map_err(|e| corrupt(path, e))?;
        let encoding = strls.encoding();
        while let Some(s) = strls.read_long_string().map_err(|e| corrupt(path, e))? {
            if wanted.contains(&s.variable()) {
                // UTF-8 first: 118+ files are UTF-8, and writers put UTF-8 in the strLs of
                // 117 files too (pandas does) although 117 text is Windows-1252 (which a
                // Windows-1252 string with accents almost never also is)
                let data = s.data();
                let data = &data[..data.iter().position(|&b| b == 0).unwrap_or(data.len())];
                let text = match std::str::from_utf8(data) {
                    Ok(t) => t.to_string(),
                    Err(_) => match s.data_str(encoding) {
                        Some(t) => t.into_owned(),
                        None => String::from_utf8_lossy(data).into_owned(),
                    },
                };
                long.insert((s.variable(), s.observation()), text);
            }
        }
    }

    let mut out = Vec::with_capacity(columns.len());
    for (name, b) in columns.iter().zip(builders) {
        let name = PlSmallStr::from(name.as_str());
        let series = match b {
            Builder::Int(v) => Int64Chunked::from_iter_options(name, v.into_iter()).into_series(),
            Builder::Float(v) => {
                if v.iter().all(Option::is_some) {
                    Float64Chunked::from_vec(name, v.into_iter().flatten().collect()).into_series()
                } else {
                    Float64Chunked::from_iter_options(name, v.into_iter()).into_series()
                }
            }
            Builder::Text(v) => StringChunked::from_iter_options(name, v.into_iter()).into_series(),
            Builder::Long(v) => {
                let mut cells = Vec::with_capacity(v.len());
                for key in v {
                    if key == (0, 0) {
                        cells.push(None);
                        continue;
                    }
                    let Some(s) = long.get(&key) else {
                        return Err(corrupt(
                            path,
                            format!("strL ({}, {}) of `{name}` is not in the file", key.0, key.1),
                        ));
                    };
                    cells.push((!s.is_empty()).then_some(s.as_str()));
                }
                StringChunked::from_iter_options(name, cells.into_iter()).into_series()
            }
        };
        out.push(series.into_column());
    }
    let height = out.first().map_or(0, |c| c.len());
    DataFrame::new(height, out).map_err(|e| Error::Data(format!("{path}: {e}")))
}
