//! Loading a data set: a CSV or Parquet file, or the built-in `demo` panel. Only the columns a
//! model uses are read (projection at the reader, so a 40-column panel costs what its 5 used
//! columns cost). Column access converts to what estimation needs: f64 values (missing = NaN)
//! for variables, dense integer codes for fixed effects and clusters.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use polars::prelude::*;

use crate::error::{Error, Result};

/// Code given to a missing value in [`Table::codes`].
pub const MISSING_CODE: u32 = u32::MAX;

/// A loaded data set: a polars frame plus where it came from (for error messages).
pub struct Table {
    df: DataFrame,
    source: String,
}

fn polars_err(context: &str, e: PolarsError) -> Error {
    Error::Data(format!("{context}: {e}"))
}

/// Load `columns` from `source`: `demo` (the built-in panel), a `.csv`/`.tsv` file or a
/// `.parquet`/`.pq` file. A column that is not there is an error that names it.
pub fn load(source: &str, columns: &[String]) -> Result<Table> {
    // polars refuses (panics on) a projection naming a column twice
    let mut unique: Vec<String> = Vec::with_capacity(columns.len());
    for c in columns {
        if !unique.contains(c) {
            unique.push(c.clone());
        }
    }
    let columns = unique.as_slice();
    if source == "demo" {
        let df = super::demo::demo_frame(super::demo::DEMO_ROWS, super::demo::DEMO_SEED)?;
        return Table::new(df, "demo".to_string()).select(columns);
    }
    let path = Path::new(source);
    if !path.exists() {
        return Err(Error::io(source, "no such file (use `demo` for the built-in panel)"));
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let available = match ext.as_str() {
        "csv" | "tsv" | "txt" => csv_header(path, ext == "tsv")?,
        "parquet" | "pq" => {
            let file = File::open(path).map_err(|e| Error::io(source, e))?;
            let schema = ParquetReader::new(file).schema().map_err(|e| polars_err(source, e))?;
            schema.iter_names().map(|n| n.to_string()).collect()
        }
        _ => return Err(Error::io(source, "unknown file type: expected .csv, .tsv or .parquet")),
    };
    for c in columns {
        if !available.iter().any(|a| a == c) {
            return Err(missing_column(c, source, &available));
        }
    }
    let df = match ext.as_str() {
        "parquet" | "pq" => {
            let file = File::open(path).map_err(|e| Error::io(source, e))?;
            ParquetReader::new(file)
                .with_columns(Some(columns.to_vec()))
                .finish()
                .map_err(|e| polars_err(source, e))?
        }
        _ => {
            let names: Arc<[PlSmallStr]> = columns.iter().map(|c| PlSmallStr::from(c.as_str())).collect();
            let parse = CsvParseOptions::default()
                .with_separator(if ext == "tsv" { b'\t' } else { b',' })
                .with_null_values(Some(NullValues::AllColumns(vec!["NA".into(), ".".into()])));
            CsvReadOptions::default()
                .with_has_header(true)
                .with_columns(Some(names))
                .with_infer_schema_length(None)
                .with_parse_options(parse)
                .try_into_reader_with_file_path(Some(path.to_path_buf()))
                .map_err(|e| polars_err(source, e))?
                .finish()
                .map_err(|e| polars_err(source, e))?
        }
    };
    Ok(Table::new(df, source.to_string()))
}

fn missing_column(c: &str, source: &str, available: &[String]) -> Error {
    let mut shown: Vec<&str> = available.iter().map(String::as_str).take(20).collect();
    if available.len() > 20 {
        shown.push("…");
    }
    Error::column(c, format!("not found in {source} (it has: {})", shown.join(", ")))
}

/// Column names of a delimited file, from its first line.
fn csv_header(path: &Path, tab: bool) -> Result<Vec<String>> {
    use std::io::{BufRead, BufReader};
    let file = File::open(path).map_err(|e| Error::io(path.display().to_string(), e))?;
    let mut line = String::new();
    BufReader::new(file)
        .read_line(&mut line)
        .map_err(|e| Error::io(path.display().to_string(), e))?;
    let line = line.trim_end_matches(['\n', '\r']).trim_start_matches('\u{feff}');
    if line.is_empty() {
        return Err(Error::io(
            path.display().to_string(),
            "the file is empty (no header line)",
        ));
    }
    let sep = if tab { '\t' } else { ',' };
    Ok(line
        .split(sep)
        .map(|s| s.trim().trim_matches('"').to_string())
        .collect())
}

impl Table {
    pub fn new(df: DataFrame, source: String) -> Self {
        Table { df, source }
    }

    /// Keep only `columns` (each must exist).
    pub fn select(self, columns: &[String]) -> Result<Table> {
        let available: Vec<String> = self.df.get_column_names().iter().map(|s| s.to_string()).collect();
        for c in columns {
            if !available.iter().any(|a| a == c) {
                return Err(missing_column(c, &self.source, &available));
            }
        }
        let df = self
            .df
            .select(columns.iter().map(|c| PlSmallStr::from(c.as_str())))
            .map_err(|e| polars_err(&self.source, e))?;
        Ok(Table {
            df,
            source: self.source,
        })
    }

    pub fn nrows(&self) -> usize {
        self.df.height()
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn frame(&self) -> &DataFrame {
        &self.df
    }

    fn series(&self, name: &str) -> Result<&Series> {
        self.df
            .column(name)
            .map(|c| c.as_materialized_series())
            .map_err(|_| Error::column(name, format!("not found in {}", self.source)))
    }

    /// A numeric column as f64, missing values (and NaN) as NaN. Booleans become 0/1.
    /// Text and other non-numeric columns are an error naming the column.
    pub fn numeric(&self, name: &str) -> Result<Vec<f64>> {
        let s = self.series(name)?;
        let dt = s.dtype();
        if !(dt.is_primitive_numeric() || matches!(dt, DataType::Boolean)) {
            let what = if matches!(dt, DataType::String) {
                "text (str)".to_string()
            } else {
                format!("of type {dt}")
            };
            return Err(Error::column(
                name,
                format!("is {what} in {}; a regressor must be numeric", self.source),
            ));
        }
        let f = s.cast(&DataType::Float64).map_err(|e| polars_err(name, e))?;
        let ca = f.f64().map_err(|e| polars_err(name, e))?;
        Ok(ca.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    }

    /// A categorical column (integers, text, booleans or floats) as dense codes `0..levels` in
    /// order of first appearance; missing values get [`MISSING_CODE`].
    pub fn codes(&self, name: &str) -> Result<(Vec<u32>, usize)> {
        let s = self.series(name)?;
        match s.dtype() {
            DataType::String => {
                let ca = s.str().map_err(|e| polars_err(name, e))?;
                Ok(factorize(ca.iter()))
            }
            dt if dt.is_integer() || matches!(dt, DataType::Boolean) => {
                let i = s.cast(&DataType::Int64).map_err(|e| polars_err(name, e))?;
                let ca = i.i64().map_err(|e| polars_err(name, e))?;
                Ok(factorize(ca.iter()))
            }
            dt if dt.is_float() => {
                let f = s.cast(&DataType::Float64).map_err(|e| polars_err(name, e))?;
                let ca = f.f64().map_err(|e| polars_err(name, e))?;
                // -0.0 and 0.0 are one level; NaN is missing.
                Ok(factorize(
                    ca.iter()
                        .map(|v| v.filter(|x| !x.is_nan()).map(|x| (x + 0.0).to_bits())),
                ))
            }
            dt => Err(Error::column(
                name,
                format!("is of type {dt}; a fixed effect or cluster variable must be integer or text"),
            )),
        }
    }
}

/// Dense codes in order of first appearance.
pub fn factorize<K: std::hash::Hash + Eq>(values: impl Iterator<Item = Option<K>>) -> (Vec<u32>, usize) {
    let mut map: HashMap<K, u32> = HashMap::new();
    let codes = values
        .map(|v| match v {
            None => MISSING_CODE,
            Some(k) => {
                let next = map.len() as u32;
                *map.entry(k).or_insert(next)
            }
        })
        .collect();
    (codes, map.len())
}

/// Write `df` to `path` as Parquet (`.parquet`/`.pq`) or CSV (`.csv`), through a temporary file
/// renamed into place, so a failed write never leaves a half-written file.
pub fn save(df: &mut DataFrame, path: &Path) -> Result<()> {
    let shown = path.display().to_string();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !matches!(ext.as_str(), "parquet" | "pq" | "csv") {
        return Err(Error::io(shown, "unknown output type: expected .parquet or .csv"));
    }
    let tmp = path.with_extension(format!("{ext}.tmp-{}", std::process::id()));
    let result = (|| -> Result<()> {
        let file = File::create(&tmp).map_err(|e| Error::io(tmp.display().to_string(), e))?;
        if ext == "csv" {
            CsvWriter::new(file).finish(df).map_err(|e| polars_err(&shown, e))?;
        } else {
            ParquetWriter::new(file).finish(df).map_err(|e| polars_err(&shown, e))?;
        }
        std::fs::rename(&tmp, path).map_err(|e| Error::io(shown.clone(), e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
