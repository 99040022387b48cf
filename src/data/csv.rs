//! A parallel reader for the common case of a delimited file: one header line, one record per
//! line, fields that are numbers or plain text. It reads only the columns a model uses and
//! returns text columns already factorised (the codes fixed effects and clusters need), so
//! `dest` is hashed once while reading instead of being built as strings and hashed again.
//!
//! The file is memory-mapped and cut into 16 MB pieces at record boundaries. A first parallel
//! pass counts each piece's records (one `memchr` scan), which fixes where each piece's rows
//! go; a second parses every piece straight into its slice of the output columns, so no row
//! is copied after it is parsed and no buffer grows.
//!
//! Column types come from the first 10,000 records: integer (digits only), float, or text. An
//! integer column that holds a decimal further down is re-read as float (as polars' full
//! inference would type it); anything else unusual — a number column with text further down, a
//! quoted field spanning lines, a record with the wrong number of fields, a blank line, invalid
//! UTF-8 in text — makes [`read`] decline (`Ok(None)`), and the caller reads the file with
//! polars' full schema inference instead, whose behaviour and error messages are the
//! reference. Missing values are the empty field, `NA` and `.` (Stata's missing), as there.

use std::fs::File;
use std::path::Path;

use polars::prelude::*;
use rayon::prelude::*;

use super::factor::{FastMap, MISSING_CODE};
use crate::error::{Error, Result};

/// Bytes per parallel piece (small in unit tests, so that their files are cut in many pieces).
const PIECE: usize = if cfg!(test) { 4096 } else { 16 << 20 };
/// Records inspected to decide the column types.
const SAMPLE_RECORDS: usize = 10_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Int,
    Float,
    Text,
}

/// A column as read; `missing` lists the rows whose field was missing (ascending).
pub enum Column {
    Int(Vec<i64>, Vec<usize>),
    Float(Vec<f64>, Vec<usize>),
    /// Codes into the levels (first appearance in the file); `MISSING_CODE` when missing.
    Text(Vec<u32>, Vec<String>),
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Column::Int(v, _) => v.len(),
            Column::Float(v, _) => v.len(),
            Column::Text(c, _) => c.len(),
        }
    }
}

/// Why a piece cannot be read here: the general reader takes the file, or (`Float(s)`) the
/// integer column `s` holds a decimal and the file is read again with it as float.
enum Decline {
    General,
    Float(usize),
}

fn is_null(field: &[u8]) -> bool {
    matches!(field, b"" | b"NA" | b".")
}

fn parse_int(field: &[u8]) -> Option<i64> {
    let (neg, digits) = match field.first() {
        Some(b'-') => (true, &field[1..]),
        Some(b'+') => (false, &field[1..]),
        _ => (false, field),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + d as i64;
    }
    Some(if neg { -v } else { v })
}

fn parse_float(field: &[u8]) -> Option<f64> {
    fast_float2::parse(field).ok()
}

/// The field starting at `pos` of `buf` (whose records end in `\n`): its bytes (quotes
/// removed; a trailing `\r` of the record dropped), where the next field starts, and whether
/// it ended its record.
fn next_field(buf: &[u8], pos: usize, sep: u8) -> std::result::Result<(&[u8], usize, bool), Decline> {
    if buf.get(pos) == Some(&b'"') {
        let mut j = pos + 1;
        loop {
            match buf.get(j) {
                None | Some(b'\n') => return Err(Decline::General), // spans lines or unterminated
                Some(b'"') if buf.get(j + 1) == Some(&b'"') => return Err(Decline::General), // escaped quote
                Some(b'"') => break,
                Some(_) => j += 1,
            }
        }
        let field = &buf[pos + 1..j];
        return match buf.get(j + 1) {
            Some(&c) if c == sep => Ok((field, j + 2, false)),
            Some(b'\n') => Ok((field, j + 2, true)),
            Some(b'\r') if buf.get(j + 2) == Some(&b'\n') => Ok((field, j + 3, true)),
            None => Ok((field, j + 1, true)),
            Some(_) => Err(Decline::General),
        };
    }
    let rest = &buf[pos..];
    let (len, end) = match memchr::memchr2(sep, b'\n', rest) {
        Some(p) => (p, rest[p] == b'\n'),
        None => (rest.len(), true),
    };
    let mut field = &rest[..len];
    if end {
        field = field.strip_suffix(b"\r").unwrap_or(field);
    }
    Ok((field, pos + len + 1, end))
}

/// One used column's slice of the output, for one piece.
enum Out<'a> {
    Int(&'a mut [i64]),
    Float(&'a mut [f64]),
    /// Piece-local codes, the piece's dictionary and its levels in order of appearance.
    Text(&'a mut [u32], FastMap<&'a [u8], u32>, Vec<&'a [u8]>),
}

/// Parse the records of `piece` into `outs` (`slot[field]` = the used column it feeds); the
/// rows whose used field was missing go to `missing[column]` (piece-local row numbers).
fn parse_piece<'a>(
    piece: &'a [u8],
    sep: u8,
    slot: &[Option<usize>],
    outs: &mut [Out<'a>],
    missing: &mut [Vec<usize>],
) -> std::result::Result<(), Decline> {
    let width = slot.len();
    let mut pos = 0;
    let mut row = 0;
    while pos < piece.len() {
        if piece[pos] == b'\n' || piece[pos..].starts_with(b"\r\n") {
            return Err(Decline::General); // a blank line
        }
        let mut k = 0;
        loop {
            let (field, next, end) = next_field(piece, pos, sep)?;
            if let Some(s) = slot.get(k).copied().flatten() {
                let null = is_null(field);
                if null {
                    missing[s].push(row);
                }
                match &mut outs[s] {
                    Out::Int(v) => {
                        v[row] = if null {
                            0
                        } else {
                            parse_int(field).ok_or(Decline::Float(s))?
                        }
                    }
                    Out::Float(v) => {
                        v[row] = if null {
                            f64::NAN
                        } else {
                            parse_float(field).ok_or(Decline::General)?
                        }
                    }
                    Out::Text(codes, dict, levels) => {
                        codes[row] = if null {
                            MISSING_CODE
                        } else {
                            let n = levels.len() as u32;
                            *dict.entry(field).or_insert_with(|| {
                                levels.push(field);
                                n
                            })
                        }
                    }
                }
            }
            k += 1;
            pos = next;
            if end {
                break;
            }
        }
        if k != width {
            return Err(Decline::General);
        }
        row += 1;
    }
    Ok(())
}

/// The type of each used column from the first records (`None`: the general reader).
fn sample_kinds(body: &[u8], sep: u8, slot: &[Option<usize>], used: usize) -> Option<Vec<Kind>> {
    let mut kinds = vec![Kind::Int; used];
    let mut pos = 0;
    for _ in 0..SAMPLE_RECORDS {
        if pos >= body.len() {
            break;
        }
        let mut k = 0;
        loop {
            let (field, next, end) = next_field(body, pos, sep).ok()?;
            if let Some(s) = slot.get(k).copied().flatten() {
                if !is_null(field) {
                    if kinds[s] == Kind::Int && parse_int(field).is_none() {
                        kinds[s] = Kind::Float;
                    }
                    if kinds[s] == Kind::Float && parse_float(field).is_none() {
                        kinds[s] = Kind::Text;
                    }
                }
            }
            k += 1;
            pos = next;
            if end {
                break;
            }
        }
    }
    Some(kinds)
}

/// Byte ranges of the pieces: about [`PIECE`] bytes each, every one starting at a record.
fn pieces(body: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < body.len() {
        let nominal = (start + PIECE).min(body.len());
        let end = match memchr::memchr(b'\n', &body[nominal.saturating_sub(1).max(start)..]) {
            Some(p) if nominal < body.len() => nominal.saturating_sub(1).max(start) + p + 1,
            _ => body.len(),
        };
        out.push(start..end);
        start = end;
    }
    out
}

/// Records in a piece (its last one may lack the final `\n`).
fn count_records(piece: &[u8]) -> usize {
    let lines = memchr::memchr_iter(b'\n', piece).count();
    lines + usize::from(piece.last().is_some_and(|&c| c != b'\n'))
}

/// Cut `v` into consecutive mutable slices of the given lengths.
fn split_lengths<'a, T>(mut v: &'a mut [T], lengths: &[usize]) -> Vec<&'a mut [T]> {
    lengths
        .iter()
        .map(|&n| {
            let (head, tail) = std::mem::take(&mut v).split_at_mut(n);
            v = tail;
            head
        })
        .collect()
}

/// Read `columns` of the delimited file at `path` (header names in `header`, the header line
/// `body` bytes long). `Ok(None)`: the file needs the general reader.
pub fn read(path: &Path, sep: u8, header: &[String], body: u64, columns: &[String]) -> Result<Option<Vec<Column>>> {
    let shown = path.display().to_string();
    let mut slot = vec![None; header.len()];
    for (s, c) in columns.iter().enumerate() {
        let hits: Vec<usize> = header
            .iter()
            .enumerate()
            .filter(|(_, h)| *h == c)
            .map(|(k, _)| k)
            .collect();
        match hits.as_slice() {
            [k] => slot[*k] = Some(s),
            _ => return Ok(None), // absent or duplicated: the general reader says so
        }
    }
    let file = File::open(path).map_err(|e| Error::io(&shown, e))?;
    // Safety: the map is read-only and lives while we parse; as with any reader that maps its
    // input (fread, polars), a file truncated by another process meanwhile is undefined.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(&shown, e))?;
    let Some(body) = map.get(body as usize..).filter(|b| !b.is_empty()) else {
        return Ok(None);
    };
    let Some(mut kinds) = sample_kinds(body, sep, &slot, columns.len()) else {
        return Ok(None);
    };
    let ranges = pieces(body);
    let rows: Vec<usize> = ranges.par_iter().map(|r| count_records(&body[r.clone()])).collect();
    // an integer column with a decimal further down: read again with it as float
    for _ in 0..=columns.len() {
        match read_pieces(body, &ranges, &rows, sep, &slot, &kinds) {
            Ok(cols) => return Ok(Some(cols)),
            Err(Decline::Float(s)) => kinds[s] = Kind::Float,
            Err(Decline::General) => return Ok(None),
        }
    }
    Ok(None)
}

/// Parse every piece into the output columns.
fn read_pieces(
    body: &[u8],
    ranges: &[std::ops::Range<usize>],
    rows: &[usize],
    sep: u8,
    slot: &[Option<usize>],
    kinds: &[Kind],
) -> std::result::Result<Vec<Column>, Decline> {
    let total: usize = rows.iter().sum();
    let mut ints: Vec<Vec<i64>> = kinds
        .iter()
        .map(|k| if *k == Kind::Int { vec![0; total] } else { vec![] })
        .collect();
    let mut floats: Vec<Vec<f64>> = kinds
        .iter()
        .map(|k| if *k == Kind::Float { vec![0.0; total] } else { vec![] })
        .collect();
    let mut codes: Vec<Vec<u32>> = kinds
        .iter()
        .map(|k| if *k == Kind::Text { vec![0; total] } else { vec![] })
        .collect();
    // per piece, per used column: its output slice
    let mut per_piece: Vec<Vec<Out>> = (0..ranges.len()).map(|_| Vec::with_capacity(kinds.len())).collect();
    for ((k, i), (f, c)) in kinds.iter().zip(&mut ints).zip(floats.iter_mut().zip(&mut codes)) {
        let slices: Vec<Out> = match k {
            Kind::Int => split_lengths(i, rows).into_iter().map(Out::Int).collect(),
            Kind::Float => split_lengths(f, rows).into_iter().map(Out::Float).collect(),
            Kind::Text => split_lengths(c, rows)
                .into_iter()
                .map(|c| Out::Text(c, FastMap::default(), Vec::new()))
                .collect(),
        };
        for (p, s) in per_piece.iter_mut().zip(slices) {
            p.push(s);
        }
    }
    let results: Vec<std::result::Result<(Vec<Out>, Vec<Vec<usize>>), Decline>> = per_piece
        .into_par_iter()
        .zip(ranges.par_iter())
        .map(|(mut outs, r)| {
            let mut missing = vec![Vec::new(); kinds.len()];
            parse_piece(&body[r.clone()], sep, slot, &mut outs, &mut missing)?;
            Ok((outs, missing))
        })
        .collect();
    let mut parsed = Vec::with_capacity(results.len());
    for r in results {
        parsed.push(r?);
    }
    // missing rows in file order; text dictionaries merged in piece order
    let offsets: Vec<usize> = rows
        .iter()
        .scan(0, |acc, &r| Some(std::mem::replace(acc, *acc + r)))
        .collect();
    let mut missing: Vec<Vec<usize>> = vec![Vec::new(); kinds.len()];
    let mut remaps: Vec<Vec<Vec<u32>>> = vec![Vec::new(); kinds.len()];
    let mut levels: Vec<Vec<String>> = vec![Vec::new(); kinds.len()];
    for (s, kind) in kinds.iter().enumerate() {
        let mut global: FastMap<&[u8], u32> = FastMap::default();
        for ((outs, miss), &off) in parsed.iter().zip(&offsets) {
            missing[s].extend(miss[s].iter().map(|r| r + off));
            if let (Kind::Text, Out::Text(_, _, local)) = (kind, &outs[s]) {
                let mut remap = Vec::with_capacity(local.len());
                for l in local {
                    let n = levels[s].len() as u32;
                    remap.push(*global.entry(l).or_insert_with(|| {
                        levels[s].push(String::from_utf8_lossy(l).into_owned());
                        n
                    }));
                }
                if local.iter().any(|l| std::str::from_utf8(l).is_err()) {
                    return Err(Decline::General);
                }
                remaps[s].push(remap);
            }
        }
    }
    // renumber the text codes piece by piece
    parsed.into_par_iter().enumerate().for_each(|(p, (outs, _))| {
        for (s, out) in outs.into_iter().enumerate() {
            if let Out::Text(c, _, _) = out {
                let remap = &remaps[s][p];
                for v in c.iter_mut().filter(|v| **v != MISSING_CODE) {
                    *v = remap[*v as usize];
                }
            }
        }
    });
    Ok(kinds
        .iter()
        .zip(ints.into_iter().zip(floats))
        .zip(codes.into_iter().zip(levels))
        .zip(missing)
        .map(|(((k, (i, f)), (c, l)), m)| match k {
            Kind::Int => Column::Int(i, m),
            Kind::Float => Column::Float(f, m),
            Kind::Text => Column::Text(c, l),
        })
        .collect())
}

/// A column as a polars series (missing values as nulls), and for text its codes and number
/// of levels (what [`super::load::Table::codes`] would compute from the series).
pub fn into_series(name: &str, col: Column) -> (Series, Option<(Vec<u32>, usize)>) {
    let name = PlSmallStr::from(name);
    fn with_nulls<T: Copy + 'static>(v: Vec<T>, missing: &[usize]) -> impl Iterator<Item = Option<T>> + '_ {
        let mut next = missing.iter().peekable();
        v.into_iter().enumerate().map(move |(i, x)| {
            if next.peek() == Some(&&i) {
                next.next();
                None
            } else {
                Some(x)
            }
        })
    }
    match col {
        Column::Int(v, m) if m.is_empty() => (Int64Chunked::from_vec(name, v).into_series(), None),
        Column::Int(v, m) => (
            Int64Chunked::from_iter_options(name, with_nulls(v, &m)).into_series(),
            None,
        ),
        Column::Float(v, m) if m.is_empty() => (Float64Chunked::from_vec(name, v).into_series(), None),
        Column::Float(v, m) => (float_with_nulls(name, v, &m).into_series(), None),
        Column::Text(codes, levels) => {
            let s = StringChunked::from_iter_options(
                name,
                codes
                    .iter()
                    .map(|&c| (c != MISSING_CODE).then(|| levels[c as usize].as_str())),
            )
            .into_series();
            (s, Some((codes, levels.len())))
        }
    }
}

/// An f64 column with nulls at the sorted positions `missing`, built on `v` itself (no copy of
/// a 10-million-row column): each missing slot is set to NaN and marked null in the validity
/// bitmap, so [`super::load::Table::numeric_cow`] can borrow the buffer as it is.
pub(crate) fn float_with_nulls(name: PlSmallStr, mut v: Vec<f64>, missing: &[usize]) -> Float64Chunked {
    let mut valid = vec![true; v.len()];
    for &i in missing {
        v[i] = f64::NAN;
        valid[i] = false;
    }
    let bits = BooleanChunked::from_slice(PlSmallStr::EMPTY, &valid);
    let bitmap = bits.downcast_iter().next().map(|a| a.values().clone());
    Float64Chunked::from_vec_validity(name, v, bitmap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_str(text: &str, columns: &[&str]) -> Option<Vec<Column>> {
        let dir = std::env::temp_dir().join(format!("fegpu-csv-{}-{}", std::process::id(), text.len()));
        std::fs::write(&dir, text).unwrap();
        let header_len = text.find('\n').unwrap() + 1;
        let header: Vec<String> = text[..header_len - 1]
            .trim_end_matches('\r')
            .split(',')
            .map(str::to_string)
            .collect();
        let cols: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
        let out = read(&dir, b',', &header, header_len as u64, &cols).unwrap();
        std::fs::remove_file(&dir).ok();
        out
    }

    #[test]
    fn types_missing_values_quotes_and_crlf() {
        let text = "a,b,c,d\r\n1,2.5,\"x\",7\r\n,NA,y,8\r\n3,.,x,9\r\n";
        let cols = read_str(text, &["c", "a", "b"]).expect("fast path");
        match &cols[0] {
            Column::Text(c, l) => assert_eq!(
                (c.clone(), l.clone()),
                (vec![0, 1, 0], vec!["x".to_string(), "y".to_string()])
            ),
            _ => panic!("c is text"),
        }
        match &cols[1] {
            Column::Int(v, m) => assert_eq!((v[0], v[2], m.clone()), (1, 3, vec![1])),
            _ => panic!("a is integer"),
        }
        match &cols[2] {
            Column::Float(v, m) => assert_eq!((v[0], m.clone()), (2.5, vec![1, 2])),
            _ => panic!("b is float"),
        }
    }

    #[test]
    fn an_integer_column_with_a_late_decimal_becomes_float() {
        let mut text = String::from("a,b\n");
        for i in 0..SAMPLE_RECORDS + 5 {
            text.push_str(&format!("{i},x\n"));
        }
        text.push_str("2.5,y\n");
        let cols = read_str(&text, &["a"]).expect("fast path");
        match &cols[0] {
            Column::Float(v, _) => assert_eq!((v[3], *v.last().unwrap()), (3.0, 2.5)),
            _ => panic!("a is float"),
        }
    }

    #[test]
    fn unusual_files_go_to_the_general_reader() {
        let mut late_text = String::from("a\n");
        for i in 0..SAMPLE_RECORDS + 5 {
            late_text.push_str(&format!("{i}\n"));
        }
        late_text.push_str("abc\n");
        for (text, why) in [
            (late_text.as_str(), "text after the sample in a number column"),
            ("a,b\n1,\"two\nlines\"\n", "a quoted field spanning lines"),
            ("a,b\n1,2\n3\n", "a short record"),
            ("a,b\n1,2\n\n3,4\n", "a blank line"),
            ("a,b\n1,\"say \"\"hi\"\"\"\n", "an escaped quote"),
        ] {
            assert!(read_str(text, &["a"]).is_none(), "{why}");
        }
    }

    #[test]
    fn pieces_start_at_records_and_cover_the_body() {
        let body: Vec<u8> = (0..200_000)
            .flat_map(|i| format!("{i},{}\n", i * 3).into_bytes())
            .collect();
        let rs = pieces(&body);
        assert_eq!(rs.first().unwrap().start, 0);
        assert_eq!(rs.last().unwrap().end, body.len());
        for w in rs.windows(2) {
            assert_eq!(w[0].end, w[1].start);
            assert_eq!(body[w[1].start - 1], b'\n');
        }
        assert_eq!(
            rs.iter().map(|r| count_records(&body[r.clone()])).sum::<usize>(),
            200_000
        );
    }
}
