//! Streaming reads of raw tables too large for memory (customs files have hundreds of millions
//! of lines). A table is scanned lazily (only the columns a step uses), reduced by a group-by
//! to the size of its result, and collected with polars' streaming engine, so memory is bounded
//! by the aggregate rather than by the file. Errors name the file and column; a bad value is
//! located by a second streaming pass that returns its first row number.

use std::path::Path;

use polars::prelude::*;

use crate::error::{Error, Result};

fn polars_err(source: &str, e: PolarsError) -> Error {
    Error::Data(format!("{source}: {e}"))
}

/// A lazy scan of a `.parquet` or `.csv` file, checking first that `columns` exist.
pub fn scan(source: &str, columns: &[&str]) -> Result<LazyFrame> {
    let available = super::load::column_names(source)?;
    for c in columns {
        if !available.iter().any(|a| a == c) {
            return Err(Error::column(
                *c,
                format!("not found in {source} (it has: {})", available.join(", ")),
            ));
        }
    }
    let ext = Path::new(source)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let path = PlRefPath::from(source);
    let lf = match ext.as_str() {
        "parquet" | "pq" => {
            LazyFrame::scan_parquet(path, ScanArgsParquet::default()).map_err(|e| polars_err(source, e))?
        }
        _ => LazyCsvReader::new(path)
            .with_has_header(true)
            .with_infer_schema_length(Some(10_000))
            .with_separator(if ext == "tsv" { b'\t' } else { b',' })
            .with_null_values(Some(NullValues::AllColumns(vec!["NA".into(), ".".into()])))
            .finish()
            .map_err(|e| polars_err(source, e))?,
    };
    Ok(lf.select(columns.iter().map(|c| col(*c)).collect::<Vec<_>>()))
}

/// Lines per batch of [`collect_batched`] (`FEGPU_SCAN_BATCH` overrides it, e.g. to test the
/// batching on small files).
pub const BATCH_ROWS: i64 = 4_000_000;

fn batch_rows() -> i64 {
    std::env::var("FEGPU_SCAN_BATCH")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|&b| b > 0)
        .unwrap_or(BATCH_ROWS)
}

/// Run `query` on successive slices of `BATCH_ROWS` lines of `source` (scanned with `columns`)
/// and hand each result to `each`, so memory stays bounded by one batch and the caller's
/// aggregate, however long the file. `query` must keep a `__lines` column counting the lines it
/// consumed (e.g. `len().alias("__lines")` in a group-by); scanning stops at a short batch.
pub fn collect_batched(
    source: &str,
    columns: &[&str],
    query: impl Fn(LazyFrame) -> LazyFrame,
    mut each: impl FnMut(DataFrame) -> Result<()>,
) -> Result<usize> {
    let base = scan(source, columns)?;
    let batch = batch_rows();
    let mut offset = 0i64;
    loop {
        let df = collect(query(base.clone().slice(offset, batch as IdxSize)), source)?;
        let lines = match df.column("__lines") {
            Ok(c) => c
                .cast(&DataType::Float64)
                .map_err(|e| polars_err(source, e))?
                .f64()
                .map_err(|e| polars_err(source, e))?
                .sum()
                .unwrap_or(0.0) as i64,
            Err(_) => return Err(Error::Data(format!("{source}: a batched query lost its line count"))),
        };
        each(df)?;
        offset += lines;
        if lines < batch {
            return Ok(offset as usize);
        }
    }
}

/// Collect with the streaming engine.
pub fn collect(lf: LazyFrame, source: &str) -> Result<DataFrame> {
    lf.collect_with_engine(Engine::Streaming)
        .map_err(|e| polars_err(source, e))
        .map(|r| r.unwrap_single())
}

/// The first row (1-based, counting data lines) of `source` where `predicate` holds.
pub fn first_row_where(source: &str, columns: &[&str], predicate: Expr) -> Result<Option<usize>> {
    let lf = scan(source, columns)?
        .with_row_index("__row", None)
        .filter(predicate)
        .select([col("__row")])
        .limit(1);
    let df = collect(lf, source)?;
    if df.height() == 0 {
        return Ok(None);
    }
    let v = df
        .column("__row")
        .map_err(|e| polars_err(source, e))?
        .cast(&DataType::Float64)
        .map_err(|e| polars_err(source, e))?;
    Ok(v.f64().ok().and_then(|c| c.get(0)).map(|r| r as usize + 1))
}
