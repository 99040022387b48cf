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
//! Fields are read as pandas and fread read them: blanks around a field (spaces, and tabs where
//! the separator is not a tab) are not data, so `5 `, ` 5` and `5` are one number and one level.
//! Missing values are the empty field, `NA` and `.` (Stata's missing). A column's type is the
//! narrowest that holds every value: integer (digits, optionally signed, within i64), *wide*
//! integer (beyond i64: ids of 19 or more digits, kept exact), float, or text.
//!
//! Column types come from the first 10,000 records. An integer column that holds a decimal
//! further down is re-read as float; anything else unusual — a wide integer, a number column with
//! text further down, a quoted field spanning lines, an escaped quote, a record with the wrong
//! number of fields, a blank line, invalid UTF-8 in text — makes [`read`] decline (`Ok(None)`),
//! and the caller reads the file with the general reader ([`super::load`]): polars splits every
//! record into text fields and [`from_text`] types and parses them by the same rules, so both
//! readers give the same table. [`parse_header`] reads the header record (RFC 4180) for both.

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

/// Column types, narrowest first: every value of a kind is also a value of the kinds after it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Int,
    Wide,
    Float,
    Text,
}

/// A column as read; `missing` lists the rows whose field was missing (ascending).
pub enum Column {
    Int(Vec<i64>, Vec<usize>),
    Float(Vec<f64>, Vec<usize>),
    /// Integers beyond i64: their values as f64 (what a regressor uses) and, for fixed effects
    /// and clusters, exact codes (in order of first appearance; `MISSING_CODE` when missing)
    /// and the number of levels.
    Wide(Vec<f64>, Vec<usize>, Vec<u32>, usize),
    /// Codes into the levels (first appearance in the file); `MISSING_CODE` when missing.
    Text(Vec<u32>, Vec<String>),
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Column::Int(v, _) => v.len(),
            Column::Float(v, _) => v.len(),
            Column::Wide(v, ..) => v.len(),
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

/// Whether `c` is a blank around a field: a space, or a tab unless tabs separate fields.
fn is_blank(c: u8, sep: u8) -> bool {
    c == b' ' || (c == b'\t' && sep != b'\t')
}

/// `field` without the blanks around it.
fn trim(field: &[u8], sep: u8) -> &[u8] {
    let start = field.iter().position(|&c| !is_blank(c, sep)).unwrap_or(field.len());
    let end = field.iter().rposition(|&c| !is_blank(c, sep)).map_or(start, |e| e + 1);
    &field[start..end]
}

/// Whether a (trimmed) field is missing.
fn is_null(field: &[u8]) -> bool {
    matches!(field, b"" | b"NA" | b".")
}

/// A field read as an integer.
enum Integer {
    Fits(i64),
    /// Digits (optionally signed) beyond i64.
    Wide,
    No,
}

/// Sign and digits of an integer field (`None`: not an integer).
fn integer_digits(field: &[u8]) -> Option<(bool, &[u8])> {
    let (neg, digits) = match field.first() {
        Some(b'-') => (true, &field[1..]),
        Some(b'+') => (false, &field[1..]),
        _ => (false, field),
    };
    (!digits.is_empty() && digits.iter().all(u8::is_ascii_digit)).then_some((neg, digits))
}

fn parse_int(field: &[u8]) -> Integer {
    let Some((neg, digits)) = integer_digits(field) else {
        return Integer::No;
    };
    let magnitude = digits
        .iter()
        .try_fold(0u64, |v, &c| v.checked_mul(10)?.checked_add(u64::from(c - b'0')));
    let value = magnitude.and_then(|m| match neg {
        true => 0i64.checked_sub_unsigned(m),
        false => i64::try_from(m).ok(),
    });
    value.map_or(Integer::Wide, Integer::Fits)
}

/// A wide integer as a level: its sign and its digits without leading zeros (`007` and `7`
/// are one level, `-0` and `0` too).
fn integer_key(field: &[u8]) -> (bool, &[u8]) {
    let (neg, digits) = integer_digits(field).expect("an integer field");
    let first = digits.iter().position(|&c| c != b'0').unwrap_or(digits.len());
    (neg && first < digits.len(), &digits[first..])
}

fn parse_float(field: &[u8]) -> Option<f64> {
    fast_float2::parse(field).ok()
}

/// Whether `text` is a number as the readers parse one (blanks around it allowed).
pub fn is_number(text: &str) -> bool {
    parse_float(trim(text.as_bytes(), b',')).is_some()
}

/// The narrowest kind holding a (trimmed, not missing) field.
fn kind_of(field: &[u8]) -> Kind {
    match parse_int(field) {
        Integer::Fits(_) => Kind::Int,
        Integer::Wide => Kind::Wide,
        Integer::No if parse_float(field).is_some() => Kind::Float,
        Integer::No => Kind::Text,
    }
}

/// The field starting at `pos` of `buf` (whose records end in `\n`): its bytes (quotes
/// removed; a trailing `\r` of the record dropped; blanks kept), where the next field starts,
/// and whether it ended its record. A quote after blanks (` "x"`) is left to the general reader.
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
    if field.first().is_some_and(|&c| is_blank(c, sep)) && trim(field, sep).first() == Some(&b'"') {
        return Err(Decline::General);
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
                let field = trim(field, sep);
                let null = is_null(field);
                if null {
                    missing[s].push(row);
                }
                match &mut outs[s] {
                    Out::Int(v) => {
                        v[row] = match parse_int(field) {
                            _ if null => 0,
                            Integer::Fits(x) => x,
                            Integer::Wide => return Err(Decline::General),
                            Integer::No => return Err(Decline::Float(s)),
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

/// The type of each used column from the first records (`None`: the general reader, which
/// alone reads wide integers).
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
                let field = trim(field, sep);
                if kinds[s] != Kind::Text && !is_null(field) {
                    kinds[s] = kinds[s].max(kind_of(field));
                }
            }
            k += 1;
            pos = next;
            if end {
                break;
            }
        }
    }
    (!kinds.contains(&Kind::Wide)).then_some(kinds)
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

/// Parse every piece into the output columns (wide integers are the general reader's).
fn read_pieces(
    body: &[u8],
    ranges: &[std::ops::Range<usize>],
    rows: &[usize],
    sep: u8,
    slot: &[Option<usize>],
    kinds: &[Kind],
) -> std::result::Result<Vec<Column>, Decline> {
    if kinds.contains(&Kind::Wide) {
        return Err(Decline::General);
    }
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
            Kind::Float | Kind::Wide => split_lengths(f, rows).into_iter().map(Out::Float).collect(),
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
            Kind::Float | Kind::Wide => Column::Float(f, m),
            Kind::Text => Column::Text(c, l),
        })
        .collect())
}

/// A column as a polars series (missing values as nulls), and for text its codes and number
/// of levels (what [`super::load::Table::codes`] would compute from the series). A wide
/// integer column is an f64 series with its exact codes beside it (f64 would merge its ids).
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
        Column::Wide(v, m, codes, levels) => (float_with_nulls(name, v, &m).into_series(), Some((codes, levels))),
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

/// A column of text fields as the general reader splits them (`None`: no field, e.g. an empty
/// one), typed and parsed by the rules of [`read`] — blanks trimmed, the narrowest kind that
/// holds every value — so that both readers give one table.
/// `fields` gives the column's fields from the first, each time it is called.
pub fn from_text<'a, I: Iterator<Item = Option<&'a str>>>(fields: impl Fn() -> I, sep: u8) -> Column {
    let value = |f: Option<&'a str>| f.map(|f| trim(f.as_bytes(), sep)).filter(|f| !is_null(f));
    let values = || fields().map(value);
    let missing: Vec<usize> = values()
        .enumerate()
        .filter(|(_, v)| v.is_none())
        .map(|(i, _)| i)
        .collect();
    let float = |v: Option<&[u8]>| v.and_then(parse_float).unwrap_or(f64::NAN);
    match narrowest_kind(values().flatten()) {
        Kind::Int => Column::Int(values().map(|v| v.map_or(0, fitting_int)).collect(), missing),
        Kind::Float => Column::Float(values().map(float).collect(), missing),
        Kind::Wide => {
            let (codes, levels) = super::factor::factorize(values().map(|v| v.map(integer_key)));
            Column::Wide(values().map(float).collect(), missing, codes, levels)
        }
        Kind::Text => {
            let (codes, levels) = text_codes(values());
            Column::Text(codes, levels)
        }
    }
}

/// The narrowest kind that holds every one of (trimmed, not missing) `fields`.
fn narrowest_kind<'a>(mut fields: impl Iterator<Item = &'a [u8]>) -> Kind {
    fields
        .try_fold(Kind::Int, |k, f| match k.max(kind_of(f)) {
            Kind::Text => Err(()),
            k => Ok(k),
        })
        .unwrap_or(Kind::Text)
}

/// An integer field known to fit i64.
fn fitting_int(field: &[u8]) -> i64 {
    match parse_int(field) {
        Integer::Fits(x) => x,
        _ => 0,
    }
}

/// Codes of text fields in order of first appearance (`MISSING_CODE` for `None`) and the levels.
fn text_codes<'a>(values: impl Iterator<Item = Option<&'a [u8]>>) -> (Vec<u32>, Vec<String>) {
    let mut levels: Vec<String> = Vec::new();
    let mut dict: FastMap<&[u8], u32> = FastMap::default();
    let codes = values
        .map(|v| match v {
            None => MISSING_CODE,
            Some(f) => *dict.entry(f).or_insert_with(|| {
                levels.push(String::from_utf8_lossy(f).into_owned());
                levels.len() as u32 - 1
            }),
        })
        .collect();
    (codes, levels)
}

/// The header record at the start of `bytes`, read as RFC 4180 says: a quoted name may hold
/// the separator and line breaks, `""` inside quotes is one quote; blanks around a name are
/// dropped, and so is a UTF-8 byte-order mark. Returns the names and the record's length in
/// bytes (with its line end), or `Ok(None)` when the record does not end within `bytes` and
/// more follow (`at_end` false: read another line and ask again).
pub fn parse_header(bytes: &[u8], sep: u8, at_end: bool) -> std::result::Result<Option<(Vec<String>, usize)>, String> {
    let mut pos = if bytes.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
    let mut names = Vec::new();
    loop {
        while bytes.get(pos).is_some_and(|&c| is_blank(c, sep)) {
            pos += 1;
        }
        let name = if bytes.get(pos) == Some(&b'"') {
            let Some((name, next)) = quoted_name(bytes, pos) else {
                return match at_end {
                    true => Err(format!(
                        "the header has an unterminated quote (name {})",
                        names.len() + 1
                    )),
                    false => Ok(None),
                };
            };
            pos = next;
            while bytes.get(pos).is_some_and(|&c| is_blank(c, sep) || c == b'\r') {
                pos += 1;
            }
            name
        } else {
            let len = memchr::memchr2(sep, b'\n', &bytes[pos..]).unwrap_or(bytes.len() - pos);
            let raw = &bytes[pos..pos + len];
            pos += len;
            trim(raw.strip_suffix(b"\r").unwrap_or(raw), sep).to_vec()
        };
        names.push(String::from_utf8_lossy(&name).into_owned());
        match bytes.get(pos) {
            Some(&c) if c == sep => pos += 1,
            Some(b'\n') => return Ok(Some((names, pos + 1))),
            None if at_end => return Ok(Some((names, pos))),
            None => return Ok(None),
            Some(_) => {
                return Err(format!(
                    "the header has text after the closing quote of name {}",
                    names.len()
                ))
            }
        }
    }
}

/// Each record of `body` (the bytes after the header) in turn, as `(row, fields, end)`: its
/// number counted from 1 as the readers count rows (a blank line is a record), its number of
/// fields and the byte after it. A quote opens a quoted field only as the field's first byte
/// (then a separator or line break is data, and `""` a quote), as polars and RFC 4180 read it.
fn records(body: &[u8], sep: u8) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let (mut pos, mut row) = (0, 0);
    std::iter::from_fn(move || {
        if pos >= body.len() {
            return None;
        }
        let mut fields = 1;
        let mut quoted = body[pos] == b'"';
        pos += usize::from(quoted);
        while pos < body.len() {
            let c = body[pos];
            pos += 1;
            match c {
                b'"' if quoted && body.get(pos) == Some(&b'"') => pos += 1,
                b'"' if quoted => quoted = false,
                _ if quoted => {}
                b'\n' => break,
                c if c == sep => {
                    fields += 1;
                    quoted = body.get(pos) == Some(&b'"');
                    pos += usize::from(quoted);
                }
                _ => {}
            }
        }
        row += 1;
        Some((row, fields, pos))
    })
}

/// The first record of `body` (the bytes after a header of `width` names) with more fields than
/// the header: its row and number of fields.
pub fn first_long_record(body: &[u8], sep: u8, width: usize) -> Option<(usize, usize)> {
    records(body, sep).find(|r| r.1 > width).map(|r| (r.0, r.1))
}

/// Why the general reader could not split `body` (the bytes after a header of `width` names),
/// located: the first record with more fields than the header, or the first field that is not
/// UTF-8 text (its row and position in the record). `None`: neither.
pub fn locate_bad_record(body: &[u8], sep: u8, width: usize) -> Option<(usize, Option<usize>, String)> {
    if let Some((row, fields)) = first_long_record(body, sep, width) {
        return Some((row, None, format!("has {fields} fields but the header has {width}")));
    }
    let bad = std::str::from_utf8(body).err()?.valid_up_to();
    let mut start = 0;
    let (row, _, _) = records(body, sep).find(|r| {
        let past = r.2 > bad;
        if !past {
            start = r.2;
        }
        past
    })?;
    let field = records(&body[start..bad], sep).next().map_or(0, |r| r.1 - 1);
    Some((row, Some(field), format!("is not UTF-8 text (byte {:#04x})", body[bad])))
}

/// The quoted name starting at `bytes[pos] == '"'` (`""` read as `"`) and where it ends
/// (after its closing quote); `None` when it does not end within `bytes`.
fn quoted_name(bytes: &[u8], pos: usize) -> Option<(Vec<u8>, usize)> {
    let mut name = Vec::new();
    let mut j = pos + 1;
    loop {
        match *bytes.get(j)? {
            b'"' if bytes.get(j + 1) == Some(&b'"') => {
                name.push(b'"');
                j += 2;
            }
            b'"' => return Some((name, j + 1)),
            c => {
                name.push(c);
                j += 1;
            }
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
            ("a,b\n9223372036854775808,1\n", "an integer beyond i64"),
            ("a,b\n-9223372036854775809,1\n", "an integer below i64"),
            ("a,b\n1, \"x\"\n", "a quote after blanks"),
        ] {
            assert!(read_str(text, &["a"]).is_none(), "{why}");
        }
    }

    #[test]
    fn integers_are_exact_to_the_ends_of_i64() {
        let fits = |f: &str| match parse_int(f.as_bytes()) {
            Integer::Fits(v) => Some(v),
            _ => None,
        };
        assert_eq!(fits("9223372036854775807"), Some(i64::MAX));
        assert_eq!(fits("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(fits("+0000000000000000000000012"), Some(12));
        assert_eq!(fits("1000000000000000001"), Some(1_000_000_000_000_000_001));
        for wide in ["9223372036854775808", "-9223372036854775809", "99999999999999999999999"] {
            assert!(matches!(parse_int(wide.as_bytes()), Integer::Wide), "{wide}");
        }
        for no in ["", "-", "+", "1.0", "1e3", "12a", " 1", "--1"] {
            assert!(matches!(parse_int(no.as_bytes()), Integer::No), "{no:?}");
        }
        assert_eq!(integer_key(b"-000"), (false, &b""[..]));
        assert_eq!(integer_key(b"+0012"), integer_key(b"12"));
        assert_ne!(integer_key(b"-12"), integer_key(b"12"));
    }

    #[test]
    fn blanks_around_fields_are_trimmed_but_not_the_separator() {
        assert_eq!(trim(b" \t 5 \t", b','), b"5");
        assert_eq!(trim(b"\t5 ", b'\t'), b"\t5");
        assert_eq!(trim(b"   ", b','), b"");
        let text = "a,b,c\n 5 ,\t1.5\t, x y \n5,\" 2 \",\"x y\"\n";
        let cols = read_str(text, &["a", "b", "c"]).expect("fast path");
        assert!(matches!(&cols[0], Column::Int(v, m) if v == &[5, 5] && m.is_empty()));
        assert!(matches!(&cols[1], Column::Float(v, _) if v == &[1.5, 2.0]));
        assert!(matches!(&cols[2], Column::Text(c, l) if c == &[0, 0] && l == &["x y"]));
    }

    #[test]
    fn from_text_types_as_the_parallel_reader() {
        let col = |fields: &[Option<&str>]| from_text(|| fields.iter().copied(), b',');
        let c = col(&[Some(" 1"), None, Some("NA"), Some("-2 ")]);
        assert!(matches!(&c, Column::Int(v, m) if v == &[1, 0, 0, -2] && m == &[1, 2]));
        let c = col(&[
            Some("18446744073709551615"),
            Some(" 018446744073709551615 "),
            Some("."),
            Some("3"),
        ]);
        match &c {
            Column::Wide(v, m, codes, n) => {
                assert_eq!(
                    (m.as_slice(), codes.as_slice(), *n),
                    (&[2][..], &[0, 0, MISSING_CODE, 1][..], 2)
                );
                assert_eq!(v[0], 18446744073709551615.0);
            }
            _ => panic!("wide"),
        }
        assert!(matches!(
            col(&[Some("1"), Some("1e400"), Some("nan")]),
            Column::Float(..)
        ));
        assert!(matches!(
            col(&[Some("18446744073709551616"), Some("0.5")]),
            Column::Float(..)
        ));
        let c = col(&[Some(" b "), Some("1"), Some("b"), None]);
        assert!(matches!(&c, Column::Text(codes, l) if codes == &[0, 1, 0, MISSING_CODE] && l == &["b", "1"]));
    }

    #[test]
    fn headers_are_read_as_rfc_4180_says() {
        let h = |t: &str, end: bool| parse_header(t.as_bytes(), b',', end);
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(h("a, b ,c\r\nrest", false), Ok(Some((names(&["a", "b", "c"]), 9))));
        assert_eq!(
            h("\u{feff}\"a,b\" ,\"say \"\"hi\"\"\"\n1", false),
            Ok(Some((names(&["a,b", "say \"hi\""]), 23)))
        );
        assert_eq!(h("x,\"two\n", false), Ok(None));
        assert_eq!(
            h("x,\"two\nlines\"\n", false),
            Ok(Some((names(&["x", "two\nlines"]), 14)))
        );
        assert_eq!(h("a,b", true), Ok(Some((names(&["a", "b"]), 3))));
        assert_eq!(h("a,", true), Ok(Some((names(&["a", ""]), 2))));
        assert!(h("x,\"two\n", true).unwrap_err().contains("unterminated"));
        assert!(h("\"a\"b,c\n", true).unwrap_err().contains("after the closing quote"));
        assert_eq!(
            parse_header(b"a\tb c\n", b'\t', true),
            Ok(Some((names(&["a", "b c"]), 6)))
        );
    }

    #[test]
    fn records_are_counted_as_polars_splits_them() {
        // [1, "a,""b\nc", 3], a blank line, [4, 5"6, 7] (a quote inside a field is data), [8, 9, 10, 11]
        let body = b"1,\"a,\"\"b\nc\",3\n\n4,5\"6,7\n8,9,10,11\n";
        assert_eq!(first_long_record(body, b',', 3), Some((4, 4)));
        assert_eq!(first_long_record(body, b',', 4), None);
        let bad = b"1,2\n3,\"\xff\"\n";
        assert_eq!(locate_bad_record(bad, b',', 2).map(|r| (r.0, r.1)), Some((2, Some(1))));
        assert_eq!(locate_bad_record(b"1,2\n", b',', 2), None);
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
