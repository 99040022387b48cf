//! Loading a data set: a CSV, Parquet or Stata file, or the built-in `demo` panel. Only the
//! columns a model uses are read (projection at the reader, so a 40-column panel costs what its
//! 5 used columns cost). A delimited file is read by the parallel reader ([`super::csv`]) or, when
//! it declines, by the general one (polars splits the records, [`super::csv::from_text`] types
//! the fields by the same rules); both give the same table. Column access converts to what
//! estimation needs: f64 values (missing = NaN) for variables, dense integer codes for fixed
//! effects and clusters — exact for integer ids of any width (i64, u64, and wider ones read
//! from text), which are never compared through f64.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use polars::prelude::*;

use crate::error::{Error, Result};

pub use super::factor::{factorize, FastHasher, FastMap, MISSING_CODE};

/// A loaded data set: a polars frame plus where it came from (for error messages).
pub struct Table {
    df: DataFrame,
    source: String,
    /// Codes of text and wide-integer columns factorised while reading ([`super::csv`]), by
    /// column name.
    coded: HashMap<String, (Vec<u32>, usize)>,
}

fn polars_err(context: &str, e: PolarsError) -> Error {
    Error::Data(format!("{context}: {e}"))
}

/// Load `columns` from `source`: `demo` (the built-in panel), a `.csv`/`.tsv` file, a
/// `.parquet`/`.pq` file or a Stata `.dta` file. A column that is not there is an error that
/// names it.
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
    let available = column_names(source)?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    for c in columns {
        let at: Vec<usize> = (0..available.len()).filter(|&k| available[k] == *c).collect();
        match at.as_slice() {
            [] => return Err(missing_column(c, source, &available)),
            [_] => {}
            _ => return Err(duplicated_column(c, source, &at)),
        }
    }
    match ext.as_str() {
        "parquet" | "pq" => read_parquet(path, columns, source, PARQUET_BATCH),
        "dta" => {
            let df = super::dta::read(source, columns)?;
            if df.height() == 0 {
                return Err(Error::io(source, "the file has no rows"));
            }
            Ok(Table::new(df, source.to_string()))
        }
        _ => match read_delimited_parallel(source, columns)? {
            Some(t) => Ok(t),
            None => read_delimited_general(source, columns),
        },
    }
}

/// Rows per read of [`read_parquet`] (whole row groups are added until a batch has this many).
const PARQUET_BATCH: usize = 1 << 20;

/// A Parquet file's `columns`, read a batch of row groups at a time: each batch is decoded by
/// polars (in parallel) into buffers that the next batch reuses, and its f64 columns are
/// appended to one contiguous vector per column, which the table then holds without a copy
/// (so preparation borrows them). Reading the whole file at once would leave every column in
/// one chunk per row group, to be copied again to be read as one slice — twice the memory
/// written, and page faults are most of the cost of memory written the first time. Other
/// columns (integers, text) keep polars' chunks.
fn read_parquet(path: &Path, columns: &[String], source: &str, batch_rows: usize) -> Result<Table> {
    use rayon::prelude::*;
    enum Part {
        Float(Vec<f64>, Vec<usize>),
        Other(Option<Series>),
    }
    let open = || File::open(path).map_err(|e| Error::io(source, e));
    let mut reader = ParquetReader::new(open()?);
    let metadata = reader.get_metadata().map_err(|e| polars_err(source, e))?.clone();
    let total = metadata.num_rows;
    if total == 0 {
        return Err(Error::io(source, "the file has no rows"));
    }
    let mut batches = vec![(0usize, 0usize)];
    for rg in &metadata.row_groups {
        let last = batches.last_mut().expect("one batch");
        if last.1 >= batch_rows {
            let start = last.0 + last.1;
            batches.push((start, rg.num_rows()));
        } else {
            last.1 += rg.num_rows();
        }
    }
    let mut parts: Vec<Part> = Vec::new();
    for (offset, len) in batches.into_iter().filter(|b| b.1 > 0) {
        let mut r = ParquetReader::new(open()?)
            .with_columns(Some(columns.to_vec()))
            .with_slice(Some((offset, len)));
        r.set_metadata(metadata.clone());
        let df = r.finish().map_err(|e| polars_err(source, e))?;
        let batch: Vec<&Series> = columns
            .iter()
            .map(|c| df.column(c).map(|c| c.as_materialized_series()))
            .collect::<PolarsResult<_>>()
            .map_err(|e| polars_err(source, e))?;
        if parts.is_empty() {
            parts = batch
                .iter()
                .map(|s| match s.dtype() {
                    DataType::Float64 => Part::Float(Vec::with_capacity(total), Vec::new()),
                    _ => Part::Other(None),
                })
                .collect();
        }
        parts.par_iter_mut().zip(batch).try_for_each(|(part, s)| match part {
            Part::Float(v, missing) => {
                let ca = s.f64().map_err(|e| polars_err(source, e))?;
                for arr in ca.downcast_iter() {
                    let start = v.len();
                    v.extend_from_slice(arr.values().as_slice());
                    if let Some(valid) = arr.validity().filter(|m| m.unset_bits() > 0) {
                        missing.extend(valid.iter().enumerate().filter(|(_, ok)| !ok).map(|(i, _)| start + i));
                    }
                }
                Ok(())
            }
            Part::Other(acc) => match acc {
                Some(a) => a.append(s).map(drop).map_err(|e| polars_err(source, e)),
                None => {
                    *acc = Some(s.clone());
                    Ok(())
                }
            },
        })?;
    }
    let series: Vec<polars::prelude::Column> = parts
        .into_iter()
        .zip(columns)
        .map(|(part, name)| match part {
            Part::Float(v, missing) => super::csv::into_series(name, super::csv::Column::Float(v, missing)).0,
            Part::Other(s) => s.expect("every batch has every column"),
        })
        .map(|s| s.into_column())
        .collect();
    let df = DataFrame::new(total, series).map_err(|e| polars_err(source, e))?;
    Ok(Table::new(df, source.to_string()))
}

/// The field separator of a delimited file: a tab for `.tsv`, else a comma.
fn separator(path: &Path) -> u8 {
    let tsv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("tsv"));
    if tsv {
        b'\t'
    } else {
        b','
    }
}

/// `columns` of the delimited file `source` read by the parallel reader ([`super::csv::read`]);
/// `Ok(None)` when it declines the file (then [`read_delimited_general`] reads it).
pub fn read_delimited_parallel(source: &str, columns: &[String]) -> Result<Option<Table>> {
    let path = Path::new(source);
    let sep = separator(path);
    let header = csv_header_line(path, sep)?;
    match super::csv::read(path, sep, &header.names, header.bytes, columns)? {
        Some(cols) => Table::from_columns(columns, cols, source).map(Some),
        None => Ok(None),
    }
}

/// `columns` of the delimited file `source` read by the general reader: polars splits every
/// record into text fields (quoted line breaks, escaped quotes, any file the parallel reader
/// declines), and [`super::csv::from_text`] types and parses them by the parallel reader's
/// rules, so the table is the one the parallel reader gives where it reads the file.
pub fn read_delimited_general(source: &str, columns: &[String]) -> Result<Table> {
    use rayon::prelude::*;
    let path = Path::new(source);
    let sep = separator(path);
    let header = csv_header_line(path, sep)?;
    let size = std::fs::metadata(path).map_err(|e| Error::io(source, e))?.len();
    if size <= header.bytes {
        return Err(Error::io(source, "the file has a header but no rows"));
    }
    let positions = header_positions(&header, columns, source)?;
    // polars does not see a record longer than the header unless it uses its last field
    let (df, long) = rayon::join(
        || text_fields(path, sep, &header, &positions, source),
        || {
            with_body(path, &header, |body| {
                super::csv::first_long_record(body, sep, header.names.len())
            })
        },
    );
    if let Some((row, fields)) = long.flatten() {
        let why = format!(
            "row {row} has {fields} fields but the header has {}",
            header.names.len()
        );
        return Err(Error::io(source, why));
    }
    let df = df?;
    let cols: Vec<super::csv::Column> = positions
        .par_iter()
        .map(|&k| {
            let text = df
                .column(&field_name(k))
                .and_then(|c| c.str())
                .map_err(|e| polars_err(source, e))?;
            Ok(super::csv::from_text(|| text.iter(), sep))
        })
        .collect::<Result<_>>()?;
    Table::from_columns(columns, cols, source)
}

/// Where each of `columns` is in the header; a name that is not there, or is there twice, is an
/// error naming it.
fn header_positions(header: &Header, columns: &[String], source: &str) -> Result<Vec<usize>> {
    columns
        .iter()
        .map(|c| {
            let at: Vec<usize> = (0..header.names.len()).filter(|&k| header.names[k] == *c).collect();
            match at.as_slice() {
                [k] => Ok(*k),
                [] => Err(missing_column(c, source, &header.names)),
                _ => Err(duplicated_column(c, source, &at)),
            }
        })
        .collect()
}

/// The general reader's name for the field at `position` of a record.
fn field_name(position: usize) -> PlSmallStr {
    PlSmallStr::from(format!("f{position}"))
}

/// The fields at `positions` of every record after the header, as polars splits them, as text
/// (missing only where a field is empty). Columns are picked by position, so polars' reading of
/// the header never matters: it is skipped by its lines.
fn text_fields(path: &Path, sep: u8, header: &Header, positions: &[usize], source: &str) -> Result<DataFrame> {
    let schema: Schema = (0..header.names.len())
        .map(|k| Field::new(field_name(k), DataType::String))
        .collect();
    let mut projection = positions.to_vec();
    projection.sort_unstable();
    CsvReadOptions::default()
        .with_has_header(false)
        .with_skip_lines(header.lines)
        .with_schema(Some(Arc::new(schema)))
        .with_projection(Some(Arc::new(projection)))
        .with_parse_options(CsvParseOptions::default().with_separator(sep))
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .and_then(|r| r.finish())
        .map_err(|e| located(path, sep, header, source).unwrap_or_else(|| polars_err(source, e)))
}

/// `f` of the bytes after the header of the delimited file at `path` (`None`: not readable).
fn with_body<T>(path: &Path, header: &Header, f: impl FnOnce(&[u8]) -> T) -> Option<T> {
    let file = File::open(path).ok()?;
    // Safety: read-only and dropped before returning (see `super::csv::read`).
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    map.get(header.bytes as usize..).map(f)
}

/// The error for a delimited file the general reader could not split, naming its row (and
/// column) where [`super::csv::locate_bad_record`] finds it.
fn located(path: &Path, sep: u8, header: &Header, source: &str) -> Option<Error> {
    let (row, field, why) = with_body(path, header, |body| {
        super::csv::locate_bad_record(body, sep, header.names.len())
    })??;
    Some(match field.and_then(|k| header.names.get(k)) {
        Some(name) => Error::column(name, format!("row {row} of {source} {why}")),
        None => Error::io(source, format!("row {row} {why}")),
    })
}

/// The column names of a `.csv`/`.tsv`/`.parquet`/`.dta` file (read from its header or schema
/// only).
pub fn column_names(source: &str) -> Result<Vec<String>> {
    let path = Path::new(source);
    if !path.exists() {
        return Err(Error::io(source, "no such file (use `demo` for the built-in panel)"));
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "csv" | "tsv" | "txt" => Ok(csv_header_line(path, separator(path))?.names),
        "parquet" | "pq" => {
            let file = File::open(path).map_err(|e| Error::io(source, e))?;
            let schema = ParquetReader::new(file).schema().map_err(|e| polars_err(source, e))?;
            Ok(schema.iter_names().map(|n| n.to_string()).collect())
        }
        "dta" => super::dta::column_names(source),
        _ => Err(Error::io(
            source,
            "unknown file type: expected .csv, .tsv, .parquet or .dta",
        )),
    }
}

/// The error for a used column whose name the file gives to several columns (at 0-based
/// `positions`): which one is meant is ambiguous.
fn duplicated_column(c: &str, source: &str, positions: &[usize]) -> Error {
    let shown: Vec<String> = positions.iter().map(|k| (k + 1).to_string()).collect();
    Error::column(
        c,
        format!(
            "appears {} times in the header of {source} (columns {}, counted from 1), so which one is meant is ambiguous: rename all but one",
            positions.len(),
            shown.join(" and ")
        ),
    )
}

fn missing_column(c: &str, source: &str, available: &[String]) -> Error {
    let mut shown: Vec<&str> = available.iter().map(String::as_str).take(20).collect();
    if available.len() > 20 {
        shown.push("…");
    }
    Error::column(c, format!("not found in {source} (it has: {})", shown.join(", ")))
}

/// The header record of a delimited file: its names, its length in bytes and the line breaks
/// in it (with the one that ends it; a quoted name may hold more).
struct Header {
    names: Vec<String>,
    bytes: u64,
    lines: usize,
}

/// Longest header record read: a longer one is an unterminated quote, not a header.
const MAX_HEADER: usize = 1 << 20;

/// The header record of a delimited file ([`super::csv::parse_header`]), read line by line
/// until it ends.
fn csv_header_line(path: &Path, sep: u8) -> Result<Header> {
    use std::io::{BufRead, BufReader};
    let shown = || path.display().to_string();
    let file = File::open(path).map_err(|e| Error::io(shown(), e))?;
    let mut reader = BufReader::new(file);
    let mut raw = Vec::new();
    loop {
        let read = reader.read_until(b'\n', &mut raw).map_err(|e| Error::io(shown(), e))?;
        let at_end = read == 0 || raw.last() != Some(&b'\n') || raw.len() > MAX_HEADER;
        let blank = raw
            .strip_prefix(b"\xEF\xBB\xBF")
            .unwrap_or(&raw)
            .trim_ascii()
            .is_empty();
        if blank {
            return Err(Error::io(shown(), "the file is empty (no header line)"));
        }
        match super::csv::parse_header(&raw, sep, at_end) {
            Ok(Some((names, len))) => {
                let lines = memchr::memchr_iter(b'\n', &raw[..len]).count();
                return Ok(Header {
                    names,
                    bytes: len as u64,
                    lines,
                });
            }
            Ok(None) => continue,
            Err(why) => return Err(Error::io(shown(), why)),
        }
    }
}

impl Table {
    pub fn new(df: DataFrame, source: String) -> Self {
        Table {
            df,
            source,
            coded: HashMap::new(),
        }
    }

    /// A table from columns read by [`super::csv::read`] (in the order of `names`).
    fn from_columns(names: &[String], cols: Vec<super::csv::Column>, source: &str) -> Result<Table> {
        let mut coded = HashMap::new();
        let height = cols.first().map_or(0, super::csv::Column::len);
        let mut series = Vec::with_capacity(names.len());
        for (name, col) in names.iter().zip(cols) {
            let (s, codes) = super::csv::into_series(name, col);
            if let Some(c) = codes {
                coded.insert(name.clone(), c);
            }
            series.push(s.into_column());
        }
        let df = DataFrame::new(height, series).map_err(|e| polars_err(source, e))?;
        if df.height() == 0 {
            return Err(Error::io(source, "the file has a header but no rows"));
        }
        Ok(Table {
            df,
            source: source.to_string(),
            coded,
        })
    }

    /// Keep only `columns` (each must exist).
    pub fn select(self, columns: &[String]) -> Result<Table> {
        let mut unique: Vec<String> = Vec::with_capacity(columns.len());
        for c in columns {
            if !unique.contains(c) {
                unique.push(c.clone());
            }
        }
        let columns = unique.as_slice();
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
        let mut coded = self.coded;
        coded.retain(|name, _| columns.contains(name));
        Ok(Table {
            df,
            source: self.source,
            coded,
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

    /// Why a column that must be numeric is not: for text, the first cell that is not a number
    /// (row counted from 1 after the header).
    fn not_numeric(&self, s: &Series) -> String {
        let Ok(text) = s.str() else {
            return format!("must be numeric but is of type {} in {}", s.dtype(), self.source);
        };
        let first = text
            .iter()
            .enumerate()
            .find(|(_, v)| v.is_some_and(|v| !super::csv::is_number(v)));
        match first {
            Some((row, Some(v))) => format!(
                "must be numeric but holds text in {} (row {}: {:?}){}",
                self.source,
                row + 1,
                v.chars().take(40).collect::<String>(),
                if text.iter().flatten().any(super::csv::is_number) {
                    "; if its values are categories, write `factor(...)` around it"
                } else {
                    ""
                }
            ),
            _ => format!("must be numeric but was read as text in {}", self.source),
        }
    }

    /// A numeric column as f64, missing values (and NaN) as NaN. Booleans become 0/1.
    /// Text and other non-numeric columns are an error naming the column.
    pub fn numeric(&self, name: &str) -> Result<Vec<f64>> {
        let s = self.series(name)?;
        let dt = s.dtype();
        if !(dt.is_primitive_numeric() || matches!(dt, DataType::Boolean)) {
            return Err(Error::column(name, self.not_numeric(s)));
        }
        let cast;
        let f = if matches!(dt, DataType::Float64) {
            s
        } else {
            cast = s.cast(&DataType::Float64).map_err(|e| polars_err(name, e))?;
            &cast
        };
        Ok(f64_values(f.f64().map_err(|e| polars_err(name, e))?))
    }

    /// [`Table::numeric`], borrowed when the column is one f64 buffer whose missing slots (if
    /// any) already hold NaN — what the CSV and Parquet readers make — so a 10-million-row
    /// column is not copied to be read.
    pub fn numeric_cow(&self, name: &str) -> Result<std::borrow::Cow<'_, [f64]>> {
        let s = self.series(name)?;
        if let Ok(ca) = s.f64() {
            if let (Some(arr), 1) = (ca.downcast_iter().next(), ca.chunks().len()) {
                let values = arr.values().as_slice();
                let nan_at_nulls = arr
                    .validity()
                    .filter(|valid| valid.unset_bits() > 0)
                    .is_none_or(|valid| valid.iter().zip(values).all(|(ok, x)| ok || x.is_nan()));
                if nan_at_nulls {
                    return Ok(std::borrow::Cow::Borrowed(values));
                }
            }
        }
        self.numeric(name).map(std::borrow::Cow::Owned)
    }

    /// [`Table::numeric`], taking the column out of the table: the reader's buffer itself is
    /// returned when nothing else shares it (missing slots set to NaN in place), so preparing a
    /// consumed table reorders its columns without allocating new ones. Non-f64 columns are
    /// converted (and stay in the table).
    pub fn take_numeric(&mut self, name: &str) -> Result<Vec<f64>> {
        let s = self.series(name)?;
        if s.dtype() != &DataType::Float64 || s.n_chunks() != 1 {
            return self.numeric(name);
        }
        let column = self.df.drop_in_place(name).map_err(|e| polars_err(name, e))?;
        let ca = column
            .take_materialized_series()
            .f64()
            .map_err(|e| polars_err(name, e))?
            .clone();
        let arr = ca.downcast_into_iter().next().expect("one chunk");
        let (_, values, validity) = arr.into_inner();
        let mut v = values.into_mut().right_or_else(|shared| shared.to_vec());
        if let Some(valid) = validity.filter(|m| m.unset_bits() > 0) {
            for (x, ok) in v.iter_mut().zip(valid.iter()) {
                if !ok {
                    *x = f64::NAN;
                }
            }
        }
        Ok(v)
    }

    /// A text column (numbers are formatted; a wide-integer column of a delimited file is held
    /// as f64, so its ids are formatted as those); missing values are `None`.
    pub fn strings(&self, name: &str) -> Result<Vec<Option<String>>> {
        let s = self.series(name)?;
        let t = s.cast(&DataType::String).map_err(|e| polars_err(name, e))?;
        let ca = t.str().map_err(|e| polars_err(name, e))?;
        Ok(ca.iter().map(|v| v.map(str::to_string)).collect())
    }

    /// A categorical column (integers, text, booleans or floats) as dense codes `0..levels` in
    /// order of first appearance; missing values get [`MISSING_CODE`].
    pub fn codes(&self, name: &str) -> Result<(Vec<u32>, usize)> {
        if let Some(c) = self.coded.get(name) {
            return Ok(c.clone());
        }
        let s = self.series(name)?;
        match s.dtype() {
            DataType::String => Ok(factorize_text(s.str().map_err(|e| polars_err(name, e))?)),
            // above i64::MAX a cast to i64 would make the ids missing
            DataType::UInt64 => Ok(factorize(s.u64().map_err(|e| polars_err(name, e))?.iter())),
            dt if dt.is_integer() || matches!(dt, DataType::Boolean) => {
                let i = s.cast(&DataType::Int64).map_err(|e| polars_err(name, e))?;
                let ca = i.i64().map_err(|e| polars_err(name, e))?;
                let (lo, hi) = ca
                    .iter()
                    .flatten()
                    .fold((i64::MAX, i64::MIN), |(a, b), v| (a.min(v), b.max(v)));
                if lo <= hi && ((hi as i128 - lo as i128) as u128) < 4 * ca.len() as u128 + 1024 {
                    // small range (firm ids, years): a lookup table instead of hashing
                    let mut remap = vec![u32::MAX; (hi - lo) as usize + 1];
                    let mut next = 0u32;
                    let codes = ca
                        .iter()
                        .map(|v| match v {
                            None => MISSING_CODE,
                            Some(v) => {
                                let r = &mut remap[(v - lo) as usize];
                                if *r == u32::MAX {
                                    *r = next;
                                    next += 1;
                                }
                                *r
                            }
                        })
                        .collect();
                    return Ok((codes, next as usize));
                }
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

/// The values of an f64 column, chunk by chunk (a Parquet file arrives in many chunks): each
/// chunk's buffer is copied whole and its missing values are then set to NaN.
fn f64_values(ca: &Float64Chunked) -> Vec<f64> {
    let mut out = Vec::with_capacity(ca.len());
    for arr in ca.downcast_iter() {
        let start = out.len();
        out.extend_from_slice(arr.values().as_slice());
        if let Some(valid) = arr.validity().filter(|v| v.unset_bits() > 0) {
            for (o, ok) in out[start..].iter_mut().zip(valid.iter()) {
                if !ok {
                    *o = f64::NAN;
                }
            }
        }
    }
    out
}

/// [`factorize`] of a text column in parallel: each slice of rows is factorised on its own,
/// the slices' levels are merged in row order (so codes are still in order of first
/// appearance) and the slices renumbered.
fn factorize_text(ca: &StringChunked) -> (Vec<u32>, usize) {
    use rayon::prelude::*;
    let n = ca.len();
    let parts = (n / (1 << 18)).clamp(1, 4 * rayon::current_num_threads());
    let size = n.div_ceil(parts).max(1);
    let slices: Vec<StringChunked> = (0..parts)
        .map(|p| ca.slice((p * size) as i64, size.min(n.saturating_sub(p * size))))
        .collect();
    let local: Vec<(Vec<u32>, Vec<&str>)> = slices.par_iter().map(factorize_views).collect();
    let mut global: FastMap<&str, u32> = FastMap::default();
    let remaps: Vec<Vec<u32>> = local
        .iter()
        .map(|(_, levels)| {
            levels
                .iter()
                .map(|k| {
                    let next = global.len() as u32;
                    *global.entry(k).or_insert(next)
                })
                .collect()
        })
        .collect();
    let mut codes = Vec::with_capacity(n);
    for ((c, _), remap) in local.iter().zip(&remaps) {
        codes.extend(c.iter().map(|&v| if v == MISSING_CODE { v } else { remap[v as usize] }));
    }
    (codes, global.len())
}

/// Codes of one slice of a text column in order of first appearance, and its levels. A string
/// of at most 12 bytes is stored inside its 16-byte view (length, then the bytes), so the view
/// itself, with the bytes past the string masked, is the key: one integer hash per row and no
/// string comparison. Longer strings are keyed by their text (a separate map: the two sets of
/// strings cannot meet, since their lengths differ).
fn factorize_views<'a>(sl: &'a StringChunked) -> (Vec<u32>, Vec<&'a str>) {
    let mut short: FastMap<u128, u32> = FastMap::default();
    let mut long: FastMap<&str, u32> = FastMap::default();
    let mut levels: Vec<&str> = Vec::new();
    let mut codes = Vec::with_capacity(sl.len());
    for arr in sl.downcast_iter() {
        for (value, view) in arr.iter().zip(arr.views().iter()) {
            let Some(text) = value else {
                codes.push(MISSING_CODE);
                continue;
            };
            let new_level = || {
                levels.push(text);
                levels.len() as u32 - 1
            };
            let code = if view.length <= 12 {
                let bits = 32 + 8 * view.length;
                let key = view.as_u128() & (u128::MAX >> (128 - bits));
                *short.entry(key).or_insert_with(new_level)
            } else {
                *long.entry(text).or_insert_with(new_level)
            };
            codes.push(code);
        }
    }
    (codes, levels)
}

/// Check, before any work, that `path` names a table file fegpu can write (.parquet, .pq or
/// .csv) in an existing directory; returns the lower-case extension.
pub fn check_output(path: &Path) -> Result<String> {
    let shown = path.display().to_string();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !matches!(ext.as_str(), "parquet" | "pq" | "csv") {
        return Err(Error::io(shown, "unknown output type: expected .parquet or .csv"));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(Error::io(shown, format!("directory {} does not exist", dir.display())));
        }
    }
    crate::report::output_target(path)?;
    Ok(ext)
}

/// Write `df` to `path` as Parquet (`.parquet`/`.pq`) or CSV (`.csv`), through a temporary file
/// renamed into place, so a failed write never leaves a half-written file.
pub fn save(df: &mut DataFrame, path: &Path) -> Result<()> {
    let shown = path.display().to_string();
    let ext = check_output(path)?;
    let target = crate::report::output_target(path)?;
    let tmp = crate::report::temporary_beside(&target);
    let result = write_table(df, &tmp, &ext, &shown)
        .and_then(|()| std::fs::rename(&tmp, &target).map_err(|e| Error::io(shown.clone(), e)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Write `df` to the file `file` as CSV (`ext` "csv") or Parquet; errors name `shown`.
pub(crate) fn write_table(df: &mut DataFrame, file: &Path, ext: &str, shown: &str) -> Result<()> {
    let f = File::create(file).map_err(|e| Error::io(shown, e))?;
    if ext == "csv" {
        CsvWriter::new(f).finish(df).map_err(|e| polars_err(shown, e))
    } else {
        ParquetWriter::new(f)
            .finish(df)
            .map(drop)
            .map_err(|e| polars_err(shown, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parquet read in batches of row groups equals polars' whole-file read: values, missing
    /// values (f64, integer and text) and codes, with batches that cut the file unevenly.
    #[test]
    fn parquet_batches_read_what_polars_reads() {
        let path = std::env::temp_dir().join(format!("fegpu-load-{}.parquet", std::process::id()));
        let n = 2_500usize;
        let y: Vec<Option<f64>> = (0..n).map(|i| (i % 41 != 0).then(|| (i as f64 * 0.37).sin())).collect();
        let firm: Vec<Option<i64>> = (0..n).map(|i| (i % 53 != 0).then_some(100 + (i % 37) as i64)).collect();
        let dest: Vec<Option<&str>> = (0..n).map(|i| (i % 29 != 0).then(|| ["a", "bb", "c"][i % 3])).collect();
        let mut df =
            df!("y" => y, "firm" => firm, "dest" => dest, "x" => (0..n).map(|i| i as f64).collect::<Vec<_>>()).unwrap();
        let file = File::create(&path).unwrap();
        ParquetWriter::new(file)
            .with_row_group_size(Some(300))
            .finish(&mut df)
            .unwrap();
        let columns: Vec<String> = ["x", "dest", "y", "firm"].iter().map(|c| c.to_string()).collect();
        let whole = ParquetReader::new(File::open(&path).unwrap())
            .with_columns(Some(columns.clone()))
            .finish()
            .unwrap();
        let whole = Table::new(whole, "t".into());
        for batch in [1, 700, 1 << 20] {
            let batched = read_parquet(&path, &columns, "t", batch).unwrap();
            assert_eq!(batched.nrows(), n);
            for c in ["x", "y"] {
                let (a, b) = (batched.numeric(c).unwrap(), whole.numeric(c).unwrap());
                assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()), "{c} {batch}");
                assert_eq!(
                    batched.series(c).unwrap().null_count(),
                    whole.series(c).unwrap().null_count()
                );
            }
            assert!(matches!(
                batched.numeric_cow("x").unwrap(),
                std::borrow::Cow::Borrowed(_)
            ));
            for c in ["firm", "dest"] {
                assert_eq!(batched.codes(c).unwrap(), whole.codes(c).unwrap(), "{c} {batch}");
            }
        }
        std::fs::remove_file(&path).ok();
    }

    /// The parallel reader and polars read the same table: values, missing values and codes.
    #[test]
    fn the_fast_reader_agrees_with_polars() {
        let path = std::env::temp_dir().join(format!("fegpu-load-{}.csv", std::process::id()));
        let mut text = String::from("firm,dest,y,x,w\n");
        for i in 0..30_000u64 {
            let dest = ["D1", "D22", "\"D3\"", "NA", ""][(i * 7 % 5) as usize];
            let y = if i % 97 == 0 {
                "NA".to_string()
            } else {
                format!("{}", (i as f64 * 0.37).sin())
            };
            let x = if i % 13 == 0 {
                ".".to_string()
            } else {
                format!("{:.6e}", i as f64 / 7.0)
            };
            text.push_str(&format!("{},{dest},{y},{x},{}\n", 100 + i % 911, i % 3));
        }
        std::fs::write(&path, &text).unwrap();
        let columns: Vec<String> = ["w", "dest", "y", "x", "firm"].iter().map(|c| c.to_string()).collect();
        let source = path.to_str().unwrap();
        let fast = read_delimited_parallel(source, &columns)
            .unwrap()
            .expect("the parallel reader takes the file");
        let general = read_delimited_general(source, &columns).unwrap();
        std::fs::remove_file(&path).ok();
        for c in ["y", "x", "w", "firm"] {
            let (a, b) = (fast.numeric(c).unwrap(), general.numeric(c).unwrap());
            assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()), "{c}");
        }
        for c in ["dest", "firm", "w"] {
            assert_eq!(fast.codes(c).unwrap(), general.codes(c).unwrap(), "{c}");
        }
        assert_eq!(fast.strings("dest").unwrap(), general.strings("dest").unwrap());
        // the parallel factorisation of a text series (many slices) numbers like one pass
        let big: StringChunked = (0..600_000u32)
            .map(|i| (i % 11 != 0).then(|| format!("L{}", (i as u64 * 7919) % 1013)))
            .collect();
        let one = factorize(big.iter());
        assert_eq!(factorize_text(&big), one);
        // strings kept inside their views (≤ 12 bytes, up to exactly 12) and longer ones, mixed;
        // a 12-byte and a 13-byte string sharing their first 12 bytes stay two levels
        let mixed: StringChunked = (0..300_000u32)
            .map(|i| match i % 5 {
                0 => None,
                1 => Some(format!("{}", (i as u64 * 31) % 97)),
                2 => Some(format!("abcdefghij{:02}", (i / 5) % 100)),
                3 => Some(format!("abcdefghij{:02}x", (i / 5) % 100)),
                _ => Some(format!("a destination named {}", (i as u64 * 7919) % 211)),
            })
            .collect();
        let one = factorize(mixed.iter());
        assert_eq!(one.1, 97 + 100 + 100 + 211);
        assert_eq!(factorize_text(&mixed), one);
    }
}
