//! fixest's multiple estimation in one formula (`R/fixest_multi.R`, "Multiple estimations"):
//! `sw(a, b)` (stepwise: a, then b), `sw0(a, b)` (none, a, b), `csw(a, b)` (cumulative: a,
//! then a + b), `csw0(a, b)` (none, a, a + b), in the right-hand side or in the fixed-effect
//! part (at most one per part), and `c(y1, y2)` for several outcomes. An argument may be a sum
//! (`csw(x1, x2 + x3)`).
//!
//! The formula is expanded into ordinary formulas, as text, each then parsed by
//! [`super::parse`]; models come in fixest's order: fixed-effect variant, then outcome, then
//! right-hand side (`fixef → lhs → rhs`). A variant with nothing in place of the call drops it
//! (and its `+`); a part left empty becomes `1` (intercept only) or `0` (no fixed effect).

use super::{char_pos, tokenize, Tok};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sw,
    Sw0,
    Csw,
    Csw0,
    /// `c(y1, y2)` on the left-hand side.
    Outcomes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Lhs,
    Rhs,
    Fixef,
}

/// One call to expand: its kind, where it is (bytes) and its arguments as written.
struct Call {
    kind: Kind,
    part: Part,
    start: usize,
    end: usize,
    /// Bytes to remove, and what to put there, when a variant is empty.
    empty: (usize, usize, &'static str),
    args: Vec<String>,
}

impl Call {
    /// The texts put in place of the call, one per model, in fixest's order.
    fn variants(&self) -> Vec<Option<String>> {
        let a = &self.args;
        let cumulative = |k: usize| Some(a[..k].join(" + "));
        match self.kind {
            Kind::Sw | Kind::Outcomes => a.iter().cloned().map(Some).collect(),
            Kind::Sw0 => std::iter::once(None).chain(a.iter().cloned().map(Some)).collect(),
            Kind::Csw => (1..=a.len()).map(cumulative).collect(),
            Kind::Csw0 => std::iter::once(None).chain((1..=a.len()).map(cumulative)).collect(),
        }
    }
}

fn err(src: &str, byte: usize, message: impl Into<String>) -> Error {
    Error::Formula {
        formula: src.to_string(),
        pos: char_pos(src, byte),
        message: message.into(),
    }
}

/// Whether `src` asks for several estimations (`sw()`, `csw()`, `c()` …).
pub fn is_multiple(src: &str) -> bool {
    calls(src).is_ok_and(|c| !c.is_empty())
}

/// The part of the formula each token is in; `None` for the IV part.
fn parts(toks: &[(Tok, usize)]) -> Vec<Option<Part>> {
    let mut out = Vec::with_capacity(toks.len());
    let mut part = Some(Part::Lhs);
    let mut k = 0;
    while k < toks.len() {
        match toks[k].0 {
            Tok::Tilde if part == Some(Part::Lhs) => part = Some(Part::Rhs),
            Tok::Bar => {
                let iv = toks[k + 1..]
                    .iter()
                    .take_while(|t| !matches!(t.0, Tok::Bar | Tok::End))
                    .any(|t| t.0 == Tok::Tilde);
                part = if iv { None } else { Some(Part::Fixef) };
            }
            _ => {}
        }
        out.push(part);
        k += 1;
    }
    out
}

/// The multiple-estimation calls of `src`, checked (one per part, none in the IV part).
fn calls(src: &str) -> Result<Vec<Call>> {
    let toks = tokenize(src)?;
    let parts = parts(&toks);
    let mut calls: Vec<Call> = Vec::new();
    let mut k = 0;
    while k < toks.len() {
        let (tok, pos) = &toks[k];
        let part = parts[k];
        let kind = match (tok, toks.get(k + 1).map(|t| &t.0)) {
            (Tok::Ident(f), Some(Tok::LParen)) => match f.as_str() {
                "sw" => Some(Kind::Sw),
                "sw0" => Some(Kind::Sw0),
                "csw" => Some(Kind::Csw),
                "csw0" => Some(Kind::Csw0),
                // `c()` elsewhere is a list of values (`ref = c(-1, 2)`)
                "c" if part == Some(Part::Lhs) => Some(Kind::Outcomes),
                _ => None,
            },
            _ => None,
        };
        let Some(kind) = kind else {
            k += 1;
            continue;
        };
        let name = match tok {
            Tok::Ident(f) => f.clone(),
            _ => unreachable!("an identifier"),
        };
        let Some(part) = part else {
            return Err(err(src, *pos, format!("`{name}()` is not supported in the IV part")));
        };
        if kind != Kind::Outcomes && part == Part::Lhs {
            return Err(err(
                src,
                *pos,
                format!("`{name}()` goes in the right-hand side or the fixed-effect part; several outcomes are written `c(y1, y2) ~ …`"),
            ));
        }
        if let Some(first) = calls.iter().find(|c| c.part == part) {
            return Err(err(
                src,
                *pos,
                format!(
                    "only one multiple-estimation call per part of the formula (fixest); this part already has one at character {}",
                    char_pos(src, first.start) + 1
                ),
            ));
        }
        // the arguments: text between top-level commas up to the matching `)`
        let open = toks[k + 1].1;
        let mut depth = 0;
        let mut args = Vec::new();
        let mut arg_start = open + 1;
        let mut j = k + 1;
        let end = loop {
            let (t, p) = &toks[j];
            match t {
                Tok::LParen => depth += 1,
                Tok::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        args.push((arg_start, *p));
                        break p + 1;
                    }
                }
                Tok::Comma if depth == 1 => {
                    args.push((arg_start, *p));
                    arg_start = p + 1;
                }
                Tok::End | Tok::Bar | Tok::Tilde => {
                    return Err(err(src, *pos, format!("`{name}(` has no closing `)`")));
                }
                _ => {}
            }
            j += 1;
        };
        let args: Vec<String> = args.iter().map(|&(a, b)| src[a..b].trim().to_string()).collect();
        if let Some(i) = args.iter().position(String::is_empty) {
            return Err(err(src, *pos, format!("argument {} of `{name}()` is empty", i + 1)));
        }
        // what an empty variant removes: the call and the `+` before it (else the one after);
        // a part left empty gets `1` (right-hand side) or `0` (fixed effects)
        let before = k.checked_sub(1).map(|b| &toks[b]);
        let after = toks.get(j + 1);
        let empty = match (before, after) {
            (Some((Tok::Plus, p)), _) => (*p, end, ""),
            (_, Some((Tok::Plus, p))) => (*pos, p + 1, ""),
            _ => (*pos, end, if part == Part::Fixef { "0" } else { "1" }),
        };
        calls.push(Call {
            kind,
            part,
            start: *pos,
            end,
            empty,
            args,
        });
        k = j + 1;
    }
    Ok(calls)
}

/// The formulas `src` stands for, in fixest's order (one, `src` itself, when it has no
/// multiple-estimation call).
pub fn expand(src: &str) -> Result<Vec<String>> {
    let calls = calls(src)?;
    if calls.is_empty() {
        return Ok(vec![src.to_string()]);
    }
    let variants = |p: Part| -> Vec<Option<(usize, Option<String>)>> {
        match calls.iter().position(|c| c.part == p) {
            Some(i) => calls[i].variants().into_iter().map(|v| Some((i, v))).collect(),
            None => vec![None],
        }
    };
    let mut out = Vec::new();
    for fe in variants(Part::Fixef) {
        for lhs in variants(Part::Lhs) {
            for rhs in variants(Part::Rhs) {
                let mut edits: Vec<(usize, usize, String)> = [&fe, &lhs, &rhs]
                    .into_iter()
                    .flatten()
                    .map(|(i, v)| {
                        let c = &calls[*i];
                        match v {
                            Some(text) => (c.start, c.end, text.clone()),
                            None => (c.empty.0, c.empty.1, c.empty.2.to_string()),
                        }
                    })
                    .collect();
                edits.sort_by_key(|e| std::cmp::Reverse(e.0));
                let mut f = src.to_string();
                for (a, b, text) in edits {
                    f.replace_range(a..b, &text);
                }
                out.push(f.split_whitespace().collect::<Vec<_>>().join(" "));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_in_fixest_order() {
        assert_eq!(expand("y ~ x").unwrap(), ["y ~ x"]);
        assert_eq!(expand("y ~ sw(a, b)").unwrap(), ["y ~ a", "y ~ b"]);
        assert_eq!(
            expand("y ~ x + sw0(a, b)").unwrap(),
            ["y ~ x", "y ~ x + a", "y ~ x + b"]
        );
        assert_eq!(
            expand("y ~ csw(a, b:c, d + e)").unwrap(),
            ["y ~ a", "y ~ a + b:c", "y ~ a + b:c + d + e"]
        );
        assert_eq!(
            expand("y ~ csw0(a, b) + x").unwrap(),
            ["y ~ x", "y ~ a + x", "y ~ a + b + x"]
        );
        assert_eq!(expand("y ~ csw0(a)").unwrap(), ["y ~ 1", "y ~ a"]);
        // fixef → lhs → rhs
        assert_eq!(
            expand("c(y1, y2) ~ x + sw(a, b) | sw0(f, g)").unwrap(),
            [
                "y1 ~ x + a | 0",
                "y1 ~ x + b | 0",
                "y2 ~ x + a | 0",
                "y2 ~ x + b | 0",
                "y1 ~ x + a | f",
                "y1 ~ x + b | f",
                "y2 ~ x + a | f",
                "y2 ~ x + b | f",
                "y1 ~ x + a | g",
                "y1 ~ x + b | g",
                "y2 ~ x + a | g",
                "y2 ~ x + b | g",
            ]
        );
        assert_eq!(
            expand("y ~ x | f + csw0(g, h)").unwrap(),
            ["y ~ x | f", "y ~ x | f + g", "y ~ x | f + g + h"]
        );
        assert_eq!(
            expand("y ~ i(t, ref = c(-1, 2)) | f").unwrap(),
            ["y ~ i(t, ref = c(-1, 2)) | f"],
            "c() inside i() is no outcome list"
        );
        assert!(is_multiple("y ~ csw(a, b)") && !is_multiple("y ~ a + b"));
    }

    #[test]
    fn misuse_points_at_the_call() {
        let at = |f: &str| match expand(f) {
            Err(Error::Formula { pos, message, .. }) => (pos, message),
            other => panic!("{f}: {other:?}"),
        };
        assert_eq!(at("y ~ sw(a, b) + csw(c, d)").0, 15);
        assert!(at("y ~ sw(a, b) + csw(c, d)").1.contains("only one"));
        assert!(at("sw(a, b) ~ x").1.contains("right-hand side"));
        assert!(at("y ~ x | f | d ~ sw(z1, z2)").1.contains("IV part"));
        assert!(at("y ~ sw(a, ) ").1.contains("argument 2"));
        assert!(at("y ~ sw(a, b | f").1.contains("closing"));
    }
}
