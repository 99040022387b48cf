//! `--subset EXPR`: which rows of the data a model may use (fixest's `subset` argument).
//!
//! ```text
//! year >= 2000 & (industry == "B" | industry in ("C", "D")) & size != 0
//! ```
//! * a comparison is a column, an operator (`==`, `!=`, `<`, `<=`, `>`, `>=`) and a value: a
//!   number (possibly negative) for a numeric column, a quoted text (`"B"` or `'B'`) for a text
//!   column (texts are ordered by their bytes); `col in (v1, v2, …)` (also R's `%in%`) is true
//!   when the column equals one of the values;
//! * comparisons are joined by `&` (binds tighter) and `|`, grouped by parentheses;
//! * a comparison on a missing value is false, so such a row is outside the subset unless an
//!   `|` lets it in (R's `NA | TRUE`; fixest drops the rows where the subset is `NA`).
//!
//! As in fixest, the subset is applied first: missing values, singletons, factor levels and
//! references are decided on the rows it keeps. A syntax error points at the character.

use super::Table;
use crate::error::{Error, Result};

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn holds(self, o: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Op::Eq => o == Equal,
            Op::Ne => o != Equal,
            Op::Lt => o == Less,
            Op::Le => o != Greater,
            Op::Gt => o == Greater,
            Op::Ge => o != Less,
        }
    }
}

/// A value compared with: a number or a text.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Num(f64),
    Text(String),
}

/// A parsed subset expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `column op value`; `pos` is where the comparison starts (for errors).
    Cmp {
        column: String,
        op: Op,
        value: Literal,
    },
    /// `column in (values)`.
    In {
        column: String,
        values: Vec<Literal>,
    },
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

/// A subset: the expression as written and parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Subset {
    pub text: String,
    pub expr: Expr,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Num(f64),
    Text(String),
    Op(Op),
    In,
    And,
    Or,
    LParen,
    RParen,
    Comma,
    End,
}

fn syntax(src: &str, pos: usize, message: impl std::fmt::Display) -> Error {
    let col = src[..pos.min(src.len())].chars().count();
    Error::Usage(format!(
        "--subset: error at character {}: {message}\n  {src}\n  {}^",
        col + 1,
        " ".repeat(col)
    ))
}

fn tokenize(src: &str) -> Result<Vec<(Tok, usize)>> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut k = 0;
    while k < b.len() {
        let c = src[k..].chars().next().expect("in range");
        let two = src.get(k..k + 2).unwrap_or("");
        let (tok, len) = if c.is_whitespace() {
            k += c.len_utf8();
            continue;
        } else if let Some(op) = match two {
            "==" => Some(Op::Eq),
            "!=" => Some(Op::Ne),
            "<=" => Some(Op::Le),
            ">=" => Some(Op::Ge),
            _ => None,
        } {
            (Tok::Op(op), 2)
        } else if two == "&&" {
            (Tok::And, 2)
        } else if two == "||" {
            (Tok::Or, 2)
        } else if src[k..].starts_with("%in%") {
            (Tok::In, 4)
        } else {
            match c {
                '<' => (Tok::Op(Op::Lt), 1),
                '>' => (Tok::Op(Op::Gt), 1),
                '&' => (Tok::And, 1),
                '|' => (Tok::Or, 1),
                '(' => (Tok::LParen, 1),
                ')' => (Tok::RParen, 1),
                ',' => (Tok::Comma, 1),
                '=' => return Err(syntax(src, k, "`=` alone is not a comparison; write `==`")),
                '"' | '\'' | '`' => {
                    let end = src[k + 1..]
                        .find(c)
                        .ok_or_else(|| syntax(src, k, format!("unterminated {c}")))?;
                    let inner = src[k + 1..k + 1 + end].to_string();
                    let tok = if c == '`' { Tok::Name(inner) } else { Tok::Text(inner) };
                    (tok, end + 2)
                }
                c if c.is_ascii_digit() || c == '-' || c == '.' => {
                    let len = src[k..]
                        .char_indices()
                        .skip(1)
                        .find(|&(j, ch)| {
                            let prev = src[k..].as_bytes()[j - 1];
                            !(ch.is_ascii_alphanumeric()
                                || ch == '.'
                                || ((ch == '-' || ch == '+') && (prev == b'e' || prev == b'E')))
                        })
                        .map_or(src.len() - k, |(j, _)| j);
                    let text = &src[k..k + len];
                    let v: f64 = text
                        .parse()
                        .map_err(|_| syntax(src, k, format!("`{text}` is not a number")))?;
                    (Tok::Num(v), len)
                }
                c if c.is_alphabetic() || c == '_' => {
                    let len = src[k..]
                        .char_indices()
                        .find(|&(_, ch)| !(ch.is_alphanumeric() || ch == '_' || ch == '.'))
                        .map_or(src.len() - k, |(j, _)| j);
                    let name = &src[k..k + len];
                    (
                        if name == "in" {
                            Tok::In
                        } else {
                            Tok::Name(name.to_string())
                        },
                        len,
                    )
                }
                _ => return Err(syntax(src, k, format!("unexpected character `{c}`"))),
            }
        };
        out.push((tok, k));
        k += len;
    }
    out.push((Tok::End, src.len()));
    Ok(out)
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<(Tok, usize)>,
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.i].0
    }
    fn pos(&self) -> usize {
        self.toks[self.i].1
    }
    fn bump(&mut self) -> Tok {
        let t = self.toks[self.i].0.clone();
        self.i = (self.i + 1).min(self.toks.len() - 1);
        t
    }
    fn fail(&self, wanted: &str) -> Error {
        let found = match self.peek() {
            Tok::End => "the end".to_string(),
            Tok::Name(n) => format!("`{n}`"),
            Tok::Num(v) => format!("the number {v}"),
            Tok::Text(t) => format!("\"{t}\""),
            t => format!("{t:?}").to_lowercase(),
        };
        syntax(self.src, self.pos(), format!("expected {wanted}, found {found}"))
    }
    fn or(&mut self) -> Result<Expr> {
        let mut e = self.and()?;
        while *self.peek() == Tok::Or {
            self.bump();
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }
    fn and(&mut self) -> Result<Expr> {
        let mut e = self.atom()?;
        while *self.peek() == Tok::And {
            self.bump();
            e = Expr::And(Box::new(e), Box::new(self.atom()?));
        }
        Ok(e)
    }
    fn atom(&mut self) -> Result<Expr> {
        match self.peek().clone() {
            Tok::LParen => {
                self.bump();
                let e = self.or()?;
                if *self.peek() != Tok::RParen {
                    return Err(self.fail("`)`, `&` or `|`"));
                }
                self.bump();
                Ok(e)
            }
            Tok::Name(column) => {
                self.bump();
                match self.bump() {
                    Tok::Op(op) => {
                        let value = self.literal()?;
                        Ok(Expr::Cmp { column, op, value })
                    }
                    Tok::In => {
                        let open = self.bump();
                        // accept R's c(…) as well as (…)
                        let open = match open {
                            Tok::Name(c) if c == "c" => self.bump(),
                            t => t,
                        };
                        if open != Tok::LParen {
                            self.i -= 1;
                            return Err(self.fail("`(` after `in`"));
                        }
                        let mut values = vec![self.literal()?];
                        while *self.peek() == Tok::Comma {
                            self.bump();
                            values.push(self.literal()?);
                        }
                        if *self.peek() != Tok::RParen {
                            return Err(self.fail("`,` or `)`"));
                        }
                        self.bump();
                        Ok(Expr::In { column, values })
                    }
                    _ => {
                        self.i -= 1;
                        Err(self.fail("a comparison (`==`, `!=`, `<`, `<=`, `>`, `>=`) or `in`"))
                    }
                }
            }
            _ => Err(self.fail("a column name or `(`")),
        }
    }
    fn literal(&mut self) -> Result<Literal> {
        match self.peek().clone() {
            Tok::Num(v) => {
                self.bump();
                Ok(Literal::Num(v))
            }
            Tok::Text(t) => {
                self.bump();
                Ok(Literal::Text(t))
            }
            _ => Err(self.fail("a number or a quoted text")),
        }
    }
}

impl Subset {
    /// Parse `--subset EXPR`.
    pub fn parse(src: &str) -> Result<Subset> {
        let mut p = Parser {
            src,
            toks: tokenize(src)?,
            i: 0,
        };
        if *p.peek() == Tok::End {
            return Err(syntax(src, 0, "the subset is empty"));
        }
        let expr = p.or()?;
        if *p.peek() != Tok::End {
            return Err(p.fail("`&`, `|` or the end"));
        }
        Ok(Subset {
            text: src.to_string(),
            expr,
        })
    }

    /// The columns the subset reads, each once.
    pub fn columns(&self) -> Vec<String> {
        fn walk(e: &Expr, out: &mut Vec<String>) {
            match e {
                Expr::Cmp { column, .. } | Expr::In { column, .. } => {
                    if !out.contains(column) {
                        out.push(column.clone());
                    }
                }
                Expr::And(a, b) | Expr::Or(a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.expr, &mut out);
        out
    }

    /// Whether each row of `table` is in the subset.
    pub fn rows(&self, table: &Table) -> Result<Vec<bool>> {
        eval(&self.expr, table)
    }
}

/// A column's values for comparisons: numbers (missing = NaN) or texts (missing = None).
enum Values {
    Num(Vec<f64>),
    Text(Vec<Option<String>>),
}

fn values(table: &Table, column: &str) -> Result<Values> {
    if crate::terms::is_text(table, column)? {
        let s = table
            .frame()
            .column(column)
            .map_err(|e| Error::column(column, e.to_string()))?
            .as_materialized_series();
        let ca = s.str().map_err(|e| Error::column(column, e.to_string()))?;
        Ok(Values::Text(ca.iter().map(|v| v.map(str::to_string)).collect()))
    } else {
        Ok(Values::Num(table.numeric(column)?))
    }
}

fn compare(column: &str, vals: &Values, value: &Literal, mut hit: impl FnMut(usize, std::cmp::Ordering)) -> Result<()> {
    match (vals, value) {
        (Values::Num(v), Literal::Num(x)) => {
            for (i, a) in v.iter().enumerate() {
                if let Some(o) = a.partial_cmp(x) {
                    hit(i, o);
                }
            }
        }
        (Values::Text(v), Literal::Text(x)) => {
            for (i, a) in v.iter().enumerate() {
                if let Some(a) = a {
                    hit(i, a.as_bytes().cmp(x.as_bytes()));
                }
            }
        }
        (Values::Text(_), Literal::Num(x)) => {
            return Err(Error::column(
                column,
                format!("--subset compares it with the number {x}, but it holds text: quote the value (\"{x}\")"),
            ))
        }
        (Values::Num(_), Literal::Text(x)) => {
            return Err(Error::column(
                column,
                format!(
                    "--subset compares it with the text \"{x}\", but it is numeric: write the number without quotes"
                ),
            ))
        }
    }
    Ok(())
}

fn eval(e: &Expr, table: &Table) -> Result<Vec<bool>> {
    let n = table.nrows();
    Ok(match e {
        Expr::Cmp { column, op, value } => {
            let vals = values(table, column)?;
            let mut out = vec![false; n];
            compare(column, &vals, value, |i, o| out[i] = op.holds(o))?;
            out
        }
        Expr::In { column, values: list } => {
            let vals = values(table, column)?;
            let mut out = vec![false; n];
            for value in list {
                compare(column, &vals, value, |i, o| out[i] |= o == std::cmp::Ordering::Equal)?;
            }
            out
        }
        Expr::And(a, b) => {
            let (a, b) = (eval(a, table)?, eval(b, table)?);
            a.iter().zip(&b).map(|(x, y)| *x && *y).collect()
        }
        Expr::Or(a, b) => {
            let (a, b) = (eval(a, table)?, eval(b, table)?);
            a.iter().zip(&b).map(|(x, y)| *x || *y).collect()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::{Column, DataFrame, NamedFrom, Series};

    fn table() -> Table {
        let cols: Vec<Column> = vec![
            Series::new(
                "year".into(),
                [Some(1999.0), Some(2000.0), None, Some(2003.0), Some(-1.5)],
            )
            .into(),
            Series::new("ind".into(), [Some("B"), Some("A"), Some("C"), None, Some("D")]).into(),
        ];
        Table::new(DataFrame::new(5, cols).unwrap(), "t".into())
    }

    fn rows(expr: &str) -> Vec<bool> {
        Subset::parse(expr).unwrap().rows(&table()).unwrap()
    }

    #[test]
    fn comparisons_lists_and_logic() {
        let (t, f) = (true, false);
        assert_eq!(rows("year >= 2000"), [f, t, f, t, f]);
        assert_eq!(rows("year != 2000"), [t, f, f, t, t], "missing is false");
        assert_eq!(rows("year < -1"), [f, f, f, f, t]);
        assert_eq!(rows("ind == \"B\""), [t, f, f, f, f]);
        assert_eq!(rows("ind > 'A'"), [t, f, t, f, t]);
        assert_eq!(rows("ind in (\"A\", 'D')"), [f, t, f, f, t]);
        assert_eq!(rows("ind %in% c('A', 'D')"), [f, t, f, f, t]);
        assert_eq!(rows("year == 1999 | ind == 'C' & year > 0"), [t, f, f, f, f]);
        assert_eq!(rows("(year == 1999 | ind == 'C') & ind != 'B'"), [f, f, t, f, f]);
        assert_eq!(rows("year > 2001 | ind == 'C'"), [f, f, t, t, f], "missing | true");
        assert_eq!(Subset::parse("a == 1 & `b c` in (2)").unwrap().columns(), ["a", "b c"]);
    }

    #[test]
    fn errors_point_at_the_character_or_name_the_column() {
        let at = |e: &str| Subset::parse(e).unwrap_err().to_string();
        assert!(at("year = 2000").contains("character 6"), "{}", at("year = 2000"));
        assert!(at("year >= ").contains("character 9"));
        assert!(at("year >= 2000 &").contains("character 15"));
        assert!(at("(year > 1").contains("expected `)`"));
        assert!(at("year ! 3").contains("character 6"));
        assert!(at("year 3").contains("a comparison"));
        let t = table();
        let e = Subset::parse("ind == 3").unwrap().rows(&t).unwrap_err().to_string();
        assert!(e.contains("`ind`") && e.contains("quote"), "{e}");
        let e = Subset::parse("year == '3'").unwrap().rows(&t).unwrap_err().to_string();
        assert!(e.contains("`year`") && e.contains("numeric"), "{e}");
    }
}
