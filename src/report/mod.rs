//! Publication tables: one column per model, like the study's Table 1. [`table::Grid`] turns
//! results into cells once; the writers only lay the cells out as text, Markdown, LaTeX or CSV.
//! JSON is the full [`FitResult`] list (`{"models": [...]}`), the contract other tools read.

pub mod plot;
pub mod table;
pub mod writers;

use crate::error::{Error, Result};
use crate::estimate::FitResult;

/// Output format of `fegpu fit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    Latex,
    Csv,
    Json,
}

/// What goes in parentheses under each coefficient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stat {
    Se,
    T,
}

/// Render `results` in `format`.
pub fn render(results: &[FitResult], format: Format, stat: Stat) -> Result<String> {
    if format == Format::Json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            models: &'a [FitResult],
        }
        let mut s = serde_json::to_string_pretty(&Out { models: results })
            .map_err(|e| Error::Data(format!("writing JSON: {e}")))?;
        s.push('\n');
        return Ok(s);
    }
    let grid = table::Grid::build(results, stat);
    Ok(match format {
        Format::Text => writers::text(&grid),
        Format::Markdown => writers::markdown(&grid),
        Format::Latex => writers::latex(&grid),
        Format::Csv => writers::csv(&grid),
        Format::Json => unreachable!(),
    })
}

/// Write a text file atomically (temporary file, then rename).
pub fn write_atomic(path: &std::path::Path, text: &str) -> Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp-{}",
        path.extension().and_then(|e| e.to_str()).unwrap_or(""),
        std::process::id()
    ));
    std::fs::write(&tmp, text).map_err(|e| Error::io(tmp.display().to_string(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path.display().to_string(), e))
}
