//! Publication tables: one column per model, like the study's Table 1. [`table::Grid`] turns
//! results into cells once; the writers only lay the cells out as text, Markdown, LaTeX or CSV.
//! JSON is the full [`FitResult`] list (`{"models": [...], "timing": {...}}`), the contract other
//! tools read.

pub mod axis;
pub mod directory;
pub mod iplot;
pub mod plot;
pub mod resampling;
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

/// Render `results` in `format`; JSON also carries the command's stage times so far.
pub fn render(
    results: &[FitResult],
    format: Format,
    stat: Stat,
    timing: Option<&crate::timing::Timing>,
) -> Result<String> {
    if format == Format::Json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            models: &'a [FitResult],
            #[serde(skip_serializing_if = "Option::is_none")]
            timing: Option<&'a crate::timing::Timing>,
        }
        let mut s = serde_json::to_string_pretty(&Out {
            models: results,
            timing,
        })
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

/// The file a write to the user's `path` replaces: `path` itself when it is a regular file or
/// does not exist yet; for a symbolic link, the file at the end of the link chain (so the link
/// stays a link and its target gets the output). Anything else — a FIFO, a device, a socket, a
/// directory — is refused with an error naming `path` as the user gave it: renaming a new file
/// over such a node would silently replace it (as root, `--output /dev/full` replaced the device).
pub fn output_target(path: &std::path::Path) -> Result<std::path::PathBuf> {
    let shown = path.display().to_string();
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        let meta = match std::fs::symlink_metadata(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(p),
            Err(e) => return Err(Error::io(shown, e)),
            Ok(m) => m,
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            let link = std::fs::read_link(&p).map_err(|e| Error::io(&shown, e))?;
            p = match p.parent() {
                Some(dir) if link.is_relative() => dir.join(link),
                _ => link,
            };
            continue;
        }
        if kind.is_file() {
            return Ok(p);
        }
        let what = describe_non_regular(&kind);
        let via = if p.as_path() == path {
            String::new()
        } else {
            format!(" (the link points to {})", p.display())
        };
        return Err(Error::io(
            shown,
            format!("is {what}{via}, not a regular file; fegpu writes its output only to regular files (a new file or one it replaces)"),
        ));
    }
    Err(Error::io(shown, "too many levels of symbolic links"))
}

fn describe_non_regular(kind: &std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if kind.is_char_device() || kind.is_block_device() {
            return "a device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    "a special file"
}

/// The temporary file beside `target` that [`write_bytes_atomic`] renames into place.
pub fn temporary_beside(target: &std::path::Path) -> std::path::PathBuf {
    target.with_file_name(format!(
        ".{}.tmp-{}",
        target.file_name().and_then(|f| f.to_str()).unwrap_or("out"),
        std::process::id()
    ))
}

/// Write `bytes` to the user's `path` atomically: into a temporary file beside the file it
/// replaces (see [`output_target`]: through symbolic links, never over a FIFO or a device),
/// then renamed into place. Errors name `path`, never the temporary file.
pub fn write_bytes_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let shown = path.display().to_string();
    let target = output_target(path)?;
    let tmp = temporary_beside(&target);
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &target));
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(shown, e)
    })
}

/// Write a text file atomically (see [`write_bytes_atomic`]).
pub fn write_atomic(path: &std::path::Path, text: &str) -> Result<()> {
    write_bytes_atomic(path, text.as_bytes())
}

/// The process's peak resident memory so far in kB (`VmHWM`, Linux; `None` elsewhere).
pub fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line["VmHWM:".len()..].trim().trim_end_matches("kB").trim().parse().ok()
}
