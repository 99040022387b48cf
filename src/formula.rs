//! fixest-style model formulas.
//!
//! ```text
//! y ~ x1 + x2 + x1:x2 + log(x3) | fe1 + fe2 + fe1^fe2 | endog1 + endog2 ~ z1 + z2
//! ```
//! * part 1: `lhs ~ rhs`. Terms are joined by `+`; `a:b` is the product of `a` and `b`;
//!   `a*b` expands to `a + b + a:b` (R convention); `log()`, `exp()`, `sqrt()` transform a
//!   variable; `1` asks for an intercept, `0` or `-1` removes it. With fixed effects the intercept
//!   is absorbed and never estimated (as in fixest).
//! * terms are sets of factors, as in R and fixest: a factor repeated in an interaction counts
//!   once (`x:x` is `x`, `x:y:x` is `x:y`, so `x*x` is `x`; a note says so, since no power is
//!   formed), and a term written twice after expansion (`x + x`, `x*y + x`, `x:y + y:x`) is used
//!   once, where it first appears, with a note. Names keep the factors' first-appearance order.
//! * categorical terms (expanded into columns by [`crate::terms`], which decides from the data
//!   whether a bare variable is numeric or text): `factor(x)` reads a numeric variable as
//!   categories; `i(f)`, `i(f, ref = v)`, `i(f, x)`, `i(f, x, ref = c(v1, v2))`, `i(f, i.g)`,
//!   `keep = …` (fixest's `i()`: values are numbers, possibly negative, or quoted texts).
//! * later parts without `~`: fixed effects, `+`-separated; `a^b` is the interacted effect
//!   (one level per observed (a, b) pair, fixest's `^`). A lone `0` means none.
//! * a part with `~` is the IV part: endogenous regressors `~` excluded instruments. It must come
//!   last (fixest: `y ~ x | fe | endo ~ inst`).
//!
//! * several estimations: `sw()`, `sw0()`, `csw()`, `csw0()` and `c(y1, y2) ~` are expanded into
//!   ordinary formulas by [`multiple`] ([`parse_all`]).
//!
//! Errors carry the character offset of the offending token so the CLI can point at it.

use crate::error::{Error, Result};

pub mod multiple;

/// A transformation applied to one variable.
#[derive(Debug, Clone, PartialEq)]
pub enum Func {
    Log,
    Exp,
    Sqrt,
}

impl Func {
    fn name(&self) -> &'static str {
        match self {
            Func::Log => "log",
            Func::Exp => "exp",
            Func::Sqrt => "sqrt",
        }
    }
}

/// One factor of a term: a variable, possibly transformed.
#[derive(Debug, Clone, PartialEq)]
pub enum Factor {
    Var(String),
    Call(Func, Box<Factor>),
    /// `factor(x)`: the values of `x` as categories (numbers sorted numerically).
    AsFactor(String),
    /// fixest's `i()`.
    I(Box<IFactor>),
    /// A panel lag, lead or difference (`l(x, k)`, `f(x, k)`, `d(x, k)`; needs `--panel`).
    Lag(Lag),
}

/// Which panel operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LagOp {
    /// `l(x, k)`: the value k periods before.
    Lag,
    /// `f(x, k)`: the value k periods after.
    Lead,
    /// `d(x, k)`: x − l(x, k).
    Diff,
}

/// `l(x, k)`, `f(x, k)`, `d(x, k)` (fixest `R/panel.R`); `ks` holds several orders while
/// parsing `l(x, 0:2)`, one after the term is expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct Lag {
    pub op: LagOp,
    pub var: String,
    pub ks: Vec<i64>,
}

impl Lag {
    /// fixest's name: `l(x, 1)`, `f(x, 2)`, `d(x, 1)` (`l(x, 0)` is `x` itself).
    pub fn name(&self) -> String {
        let f = match self.op {
            LagOp::Lag => "l",
            LagOp::Lead => "f",
            LagOp::Diff => "d",
        };
        match self.ks.as_slice() {
            [k] => format!("{f}({}, {k})", self.var),
            ks => format!("{f}({}, {}:{})", self.var, ks[0], ks[ks.len() - 1]),
        }
    }
    /// The periods back the value is taken from (a lead is a negative lag).
    pub fn shift(&self) -> i64 {
        match self.op {
            LagOp::Lead => -self.ks[0],
            _ => self.ks[0],
        }
    }
}

/// A value written in a formula (`ref = -1`, `keep = "A"`): a number or a quoted text.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// The number and how it was written.
    Num(f64, String),
    Text(String),
}

impl Value {
    pub fn written(&self) -> String {
        match self {
            Value::Num(_, w) => w.clone(),
            Value::Text(t) => format!("\"{t}\""),
        }
    }
}

/// The second argument of `i(f, …)`.
#[derive(Debug, Clone, PartialEq)]
pub enum IWith {
    /// `i(f, x)`: a slope on `x` per level of `f` (a text `x` is read as categories, as fixest).
    Var(String),
    /// `i(f, i.g)`: the interaction of the categories of `f` and `g`.
    Factor(String),
}

/// `i(var, with, ref = …, keep = …, ref2 = …, keep2 = …)` (fixest's `i()`, `R/miscfuns.R`).
#[derive(Debug, Clone, PartialEq)]
pub struct IFactor {
    pub var: String,
    pub with: Option<IWith>,
    /// Levels of `var` left out (`ref`); empty: fixest's automatic reference.
    pub refs: Vec<Value>,
    /// Levels of `var` kept (`keep`); empty: all.
    pub keep: Vec<Value>,
    /// `ref2`, `keep2`: the same for the levels of `g` in `i(f, i.g)`.
    pub refs2: Vec<Value>,
    pub keep2: Vec<Value>,
}

impl IFactor {
    /// The call as written canonically (`i(t, d, ref = c(-1, -1000))`).
    pub fn name(&self) -> String {
        let mut parts = vec![self.var.clone()];
        match &self.with {
            Some(IWith::Var(x)) => parts.push(x.clone()),
            Some(IWith::Factor(g)) => parts.push(format!("i.{g}")),
            None => {}
        }
        for (arg, values) in [
            ("ref", &self.refs),
            ("keep", &self.keep),
            ("ref2", &self.refs2),
            ("keep2", &self.keep2),
        ] {
            match values.as_slice() {
                [] => {}
                [v] => parts.push(format!("{arg} = {}", v.written())),
                vs => parts.push(format!(
                    "{arg} = c({})",
                    vs.iter().map(Value::written).collect::<Vec<_>>().join(", ")
                )),
            }
        }
        format!("i({})", parts.join(", "))
    }
}

impl Factor {
    pub fn name(&self) -> String {
        match self {
            Factor::Var(v) => v.clone(),
            Factor::Call(f, a) => format!("{}({})", f.name(), a.name()),
            Factor::AsFactor(v) => format!("factor({v})"),
            Factor::I(i) => i.name(),
            Factor::Lag(l) => l.name(),
        }
    }
    /// The variables the factor reads; with `row_only`, those whose own row value it uses (not
    /// the argument of a lag, whose value comes from another row).
    fn collect_vars(&self, out: &mut Vec<String>, row_only: bool) {
        match self {
            Factor::Var(v) | Factor::AsFactor(v) => push_unique(out, v),
            Factor::Lag(l) => {
                if !row_only {
                    push_unique(out, &l.var)
                }
            }
            Factor::Call(_, a) => a.collect_vars(out, row_only),
            Factor::I(i) => {
                push_unique(out, &i.var);
                match &i.with {
                    Some(IWith::Var(x)) | Some(IWith::Factor(x)) => push_unique(out, x),
                    None => {}
                }
            }
        }
    }
}

/// A regressor: the product of one or more factors (`x1:x2`).
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    pub factors: Vec<Factor>,
}

impl Term {
    /// The coefficient name, as fixest prints it (`x1:x2`, `log(x3)`).
    pub fn name(&self) -> String {
        self.factors.iter().map(Factor::name).collect::<Vec<_>>().join(":")
    }
    /// The term with each repeated factor kept once, at its first appearance (`x:y:x` → `x:y`).
    pub fn collapsed(self) -> Term {
        let mut factors: Vec<Factor> = Vec::with_capacity(self.factors.len());
        for f in self.factors {
            if !factors.contains(&f) {
                factors.push(f);
            }
        }
        Term { factors }
    }
    /// Whether two terms are the same regressor: the same factors in any order (`x:y`, `y:x`).
    pub fn same_as(&self, other: &Term) -> bool {
        let key = |t: &Term| {
            let mut k: Vec<String> = t.factors.iter().map(Factor::name).collect();
            k.sort();
            k
        };
        key(self) == key(other)
    }
    pub fn vars(&self) -> Vec<String> {
        let mut v = Vec::new();
        for f in &self.factors {
            f.collect_vars(&mut v, false);
        }
        v
    }
    /// [`Term::vars`] without the arguments of lags (a row's own missing value there does not
    /// make the lag missing).
    pub fn row_vars(&self) -> Vec<String> {
        let mut v = Vec::new();
        for f in &self.factors {
            f.collect_vars(&mut v, true);
        }
        v
    }
    /// Whether the term uses a panel operator.
    pub fn has_lag(&self) -> bool {
        self.factors.iter().any(|f| matches!(f, Factor::Lag(_)))
    }
    /// The term once per order of a lag range (`l(x, 0:2)` → `x`, `l(x, 1)`, `l(x, 2)`).
    fn lag_orders(self) -> Vec<Term> {
        let Some(at) = self
            .factors
            .iter()
            .position(|f| matches!(f, Factor::Lag(l) if l.ks.len() > 1))
        else {
            return vec![self];
        };
        let Factor::Lag(lag) = &self.factors[at] else {
            unreachable!("a lag")
        };
        lag.ks
            .iter()
            .flat_map(|&k| {
                let mut t = self.clone();
                t.factors[at] = match (lag.op, k) {
                    (LagOp::Lag | LagOp::Lead, 0) => Factor::Var(lag.var.clone()),
                    _ => Factor::Lag(Lag {
                        op: lag.op,
                        var: lag.var.clone(),
                        ks: vec![k],
                    }),
                };
                t.lag_orders()
            })
            .collect()
    }
}

/// One fixed effect: a single variable or an interaction `a^b^c` of several.
#[derive(Debug, Clone, PartialEq)]
pub struct FixedEffectSpec {
    pub vars: Vec<String>,
}

impl FixedEffectSpec {
    pub fn name(&self) -> String {
        self.vars.join("^")
    }
}

/// The IV part: endogenous regressors and excluded instruments.
#[derive(Debug, Clone, PartialEq)]
pub struct IvSpec {
    pub endogenous: Vec<Term>,
    pub instruments: Vec<Term>,
}

/// A parsed model.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// The formula as the user wrote it.
    pub formula: String,
    pub lhs: Term,
    pub rhs: Vec<Term>,
    /// Whether an intercept is estimated (never when fixed effects are present).
    pub intercept: bool,
    pub fixed_effects: Vec<FixedEffectSpec>,
    pub iv: Option<IvSpec>,
    /// What the formula said that was ignored (duplicated terms or instruments), in plain words;
    /// the fit reports them among its notes.
    pub notes: Vec<String>,
}

impl Model {
    /// Every data column the model reads, in first-use order.
    pub fn variables(&self) -> Vec<String> {
        let mut out = Vec::new();
        let terms = std::iter::once(&self.lhs).chain(self.rhs.iter());
        let iv_terms = self
            .iv
            .iter()
            .flat_map(|iv| iv.endogenous.iter().chain(iv.instruments.iter()));
        for t in terms.chain(iv_terms) {
            for v in t.vars() {
                push_unique(&mut out, &v);
            }
        }
        for fe in &self.fixed_effects {
            for v in &fe.vars {
                push_unique(&mut out, v);
            }
        }
        out
    }
}

/// One note per term written more than once in a part of the formula, and one per interaction
/// that repeated a factor.
fn sum_notes(role: &str, extras: &SumExtras) -> Vec<String> {
    let collapsed = extras.collapsed.iter().map(|(written, term)| {
        format!("`{written}` repeats a factor and is read as `{term}` (as in R and fixest, a factor interacted with itself is itself, not its square); for a power, add a column holding it")
    });
    let duplicates = extras
        .duplicates
        .iter()
        .map(|n| format!("the {role} `{n}` appears more than once in the formula; it is used once"));
    collapsed.chain(duplicates).collect()
}

fn push_unique(out: &mut Vec<String>, v: &str) {
    if !out.iter().any(|o| o == v) {
        out.push(v.to_string());
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Num(String),
    Tilde,
    Bar,
    Plus,
    Minus,
    Colon,
    Star,
    Caret,
    LParen,
    RParen,
    Comma,
    Equals,
    /// A quoted text (`"A"` or `'A'`).
    Str(String),
    End,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Num(s) => format!("`{s}`"),
        Tok::Tilde => "`~`".into(),
        Tok::Bar => "`|`".into(),
        Tok::Plus => "`+`".into(),
        Tok::Minus => "`-`".into(),
        Tok::Colon => "`:`".into(),
        Tok::Star => "`*`".into(),
        Tok::Caret => "`^`".into(),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::Comma => "`,`".into(),
        Tok::Equals => "`=`".into(),
        Tok::Str(s) => format!("\"{s}\""),
        Tok::End => "the end of the formula".into(),
    }
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<(Tok, usize)>,
    i: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '.'
}
fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '.'
}

fn tokenize(src: &str) -> Result<Vec<(Tok, usize)>> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let mut k = 0;
    let err = |pos: usize, message: String| Error::Formula {
        formula: src.to_string(),
        pos: char_pos(src, pos),
        message,
    };
    while k < chars.len() {
        let (pos, c) = chars[k];
        if c.is_whitespace() {
            k += 1;
            continue;
        }
        let single = match c {
            '~' => Some(Tok::Tilde),
            '|' => Some(Tok::Bar),
            '+' => Some(Tok::Plus),
            '-' => Some(Tok::Minus),
            ':' => Some(Tok::Colon),
            '*' => Some(Tok::Star),
            '^' => Some(Tok::Caret),
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            ',' => Some(Tok::Comma),
            '=' => Some(Tok::Equals),
            _ => None,
        };
        if let Some(t) = single {
            out.push((t, pos));
            k += 1;
        } else if c == '"' || c == '\'' {
            let start = k + 1;
            let mut j = start;
            while j < chars.len() && chars[j].1 != c {
                j += 1;
            }
            if j >= chars.len() {
                return Err(err(pos, format!("unterminated text: no closing {c}")));
            }
            out.push((Tok::Str(chars[start..j].iter().map(|(_, c)| *c).collect()), pos));
            k = j + 1;
        } else if c == '`' {
            // Back-quoted names allow any character except the back quote.
            let start = k + 1;
            let mut j = start;
            while j < chars.len() && chars[j].1 != '`' {
                j += 1;
            }
            if j >= chars.len() {
                return Err(err(pos, "unterminated back-quoted name".into()));
            }
            let name: String = chars[start..j].iter().map(|(_, c)| *c).collect();
            if name.is_empty() {
                return Err(err(pos, "empty back-quoted name".into()));
            }
            out.push((Tok::Ident(name), pos));
            k = j + 1;
        } else if c.is_ascii_digit() {
            let mut j = k;
            while j < chars.len() && (chars[j].1.is_ascii_digit() || chars[j].1 == '.') {
                j += 1;
            }
            if j < chars.len() && is_ident_char(chars[j].1) {
                return Err(err(chars[j].0, "a variable name cannot start with a digit".into()));
            }
            out.push((Tok::Num(chars[k..j].iter().map(|(_, c)| *c).collect()), pos));
            k = j;
        } else if is_ident_start(c) {
            let mut j = k;
            while j < chars.len() && is_ident_char(chars[j].1) {
                j += 1;
            }
            out.push((Tok::Ident(chars[k..j].iter().map(|(_, c)| *c).collect()), pos));
            k = j;
        } else if c == '[' {
            return Err(err(
                pos,
                "varying slopes (fixest's `fe[x]`, `fe[[x]]`) are not supported yet; for a slope per level write `i(fe, x)` in the right-hand side (its coefficients, not absorbed)".into(),
            ));
        } else {
            return Err(err(pos, format!("unexpected character `{c}`")));
        }
    }
    out.push((Tok::End, src.len()));
    Ok(out)
}

/// Byte offset → character offset (the error type counts characters).
fn char_pos(src: &str, byte: usize) -> usize {
    src[..byte.min(src.len())].chars().count()
}

/// Every model of a formula that may ask for several estimations (`sw()`, `csw()`, `c(y1, y2)`;
/// see [`multiple`]), in fixest's order.
pub fn parse_all(src: &str) -> Result<Vec<Model>> {
    multiple::expand(src)?.iter().map(|f| parse(f)).collect()
}

/// Parse a fixest-style formula.
pub fn parse(src: &str) -> Result<Model> {
    let toks = tokenize(src)?;
    let mut p = Parser { src, toks, i: 0 };
    p.model()
}

/// What a `+`-separated sum contains besides its terms.
#[derive(Default)]
struct SumExtras {
    intercept: Option<bool>,
    /// Terms written more than once (kept once).
    duplicates: Vec<String>,
    /// Interactions that repeated a factor, as written and as read (`x:x`, `x`).
    collapsed: Vec<(String, String)>,
}

impl SumExtras {
    /// `t` with its repeated factors kept once, remembering the change for a note.
    fn collapse(&mut self, t: Term) -> Term {
        let written = t.name();
        let t = t.collapsed();
        if t.name() != written && !self.collapsed.iter().any(|(w, _)| *w == written) {
            self.collapsed.push((written, t.name()));
        }
        t
    }
}

impl<'a> Parser<'a> {
    fn peek(&self) -> &Tok {
        &self.toks[self.i].0
    }
    fn pos(&self) -> usize {
        self.toks[self.i].1
    }
    fn bump(&mut self) -> Tok {
        let t = self.toks[self.i].0.clone();
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
        t
    }
    fn err_at(&self, byte: usize, message: impl Into<String>) -> Error {
        Error::Formula {
            formula: self.src.to_string(),
            pos: char_pos(self.src, byte),
            message: message.into(),
        }
    }
    fn unexpected(&self, wanted: &str) -> Error {
        self.err_at(
            self.pos(),
            format!("expected {wanted}, found {}", describe(self.peek())),
        )
    }
    fn expect(&mut self, t: Tok, wanted: &str) -> Result<()> {
        if *self.peek() == t {
            self.bump();
            Ok(())
        } else {
            Err(self.unexpected(wanted))
        }
    }

    fn model(&mut self) -> Result<Model> {
        if *self.peek() == Tok::End {
            return Err(self.err_at(0, "the formula is empty; write it as `y ~ x1 + x2 | fe1 + fe2`"));
        }
        let lhs_pos = self.pos();
        let lhs_terms = self.product_term()?;
        if lhs_terms.len() != 1 {
            return Err(self.err_at(lhs_pos, "the dependent variable must be a single term"));
        }
        let mut extras = SumExtras::default();
        let lhs = extras.collapse(lhs_terms.into_iter().next().unwrap());
        if lhs.clone().lag_orders().len() > 1 {
            return Err(self.err_at(
                lhs_pos,
                "the dependent variable must be a single term, not a range of lags",
            ));
        }
        let tilde = self.pos();
        self.expect(Tok::Tilde, "`~` after the dependent variable")?;
        let mut notes = sum_notes("dependent variable", &extras);
        let (rhs, extras) = self.sum(true)?;
        notes.extend(sum_notes("regressor", &extras));
        let mut fixed_effects = Vec::new();
        let mut iv = None;
        while *self.peek() == Tok::Bar {
            let bar = self.pos();
            self.bump();
            if iv.is_some() {
                return Err(self.err_at(bar, "the IV part (`endog ~ instruments`) must be the last part"));
            }
            if self.part_has_tilde() {
                let (endogenous, endo_extras) = self.sum(false)?;
                self.expect(Tok::Tilde, "`~` between endogenous regressors and instruments")?;
                let (instruments, inst_extras) = self.sum(false)?;
                notes.extend(sum_notes("endogenous regressor", &endo_extras));
                notes.extend(sum_notes("instrument", &inst_extras));
                if endogenous.is_empty() {
                    return Err(self.err_at(bar, "the IV part names no endogenous regressor"));
                }
                if instruments.is_empty() {
                    return Err(self.err_at(bar, "the IV part names no instrument"));
                }
                iv = Some(IvSpec {
                    endogenous,
                    instruments,
                });
            } else {
                if !fixed_effects.is_empty() {
                    return Err(self.err_at(
                        bar,
                        "fixed effects go in one part: write `| fe1 + fe2`, not `| fe1 | fe2`",
                    ));
                }
                fixed_effects = self.fixef_part()?;
            }
        }
        if *self.peek() != Tok::End {
            return Err(self.unexpected("`+`, `|` or the end of the formula"));
        }
        let intercept = fixed_effects.is_empty() && extras.intercept.unwrap_or(true);
        let model = Model {
            formula: self.src.to_string(),
            lhs,
            rhs,
            intercept,
            fixed_effects,
            iv,
            notes,
        };
        self.check_estimable(&model, tilde)?;
        Ok(model)
    }

    /// A formula that estimates nothing, or uses the dependent variable to explain itself, is an
    /// error: no regressor, intercept or fixed effect (`y ~ 0`, `y ~ -1`), `y` on the right of
    /// its own `~`, or `y` among the endogenous regressors or instruments of the IV part.
    fn check_estimable(&self, m: &Model, tilde: usize) -> Result<()> {
        let y = m.lhs.name();
        if m.rhs.is_empty() && !m.intercept && m.fixed_effects.is_empty() && m.iv.is_none() {
            return Err(self.err_at(
                tilde,
                format!("the formula estimates nothing: `{y}` has no regressor, no intercept (removed by `0` or `-1`) and no fixed effects"),
            ));
        }
        let on_right = |ts: &[Term]| ts.iter().any(|t| t.same_as(&m.lhs));
        if on_right(&m.rhs) {
            return Err(self.err_at(
                tilde,
                format!("the dependent variable `{y}` is also a regressor (`{y} ~ {y}` explains a variable by itself)"),
            ));
        }
        if let Some(iv) = &m.iv {
            for (ts, role) in [
                (&iv.endogenous, "an endogenous (instrumented) regressor"),
                (&iv.instruments, "an instrument"),
            ] {
                if on_right(ts) {
                    return Err(self.err_at(
                        tilde,
                        format!("the dependent variable `{y}` cannot be {role} of its own IV regression"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn part_has_tilde(&self) -> bool {
        for (t, _) in &self.toks[self.i..] {
            match t {
                Tok::Tilde => return true,
                Tok::Bar | Tok::End => return false,
                _ => {}
            }
        }
        false
    }

    /// `term (+ term)*` with optional `0`, `1`, `-1` intercept markers when `allow_intercept`.
    fn sum(&mut self, allow_intercept: bool) -> Result<(Vec<Term>, SumExtras)> {
        let mut terms: Vec<Term> = Vec::new();
        let mut extras = SumExtras::default();
        let mut first = true;
        loop {
            let mut negate = false;
            if !first || *self.peek() == Tok::Minus {
                match self.peek() {
                    Tok::Plus if !first => {
                        self.bump();
                    }
                    Tok::Minus => {
                        self.bump();
                        negate = true;
                    }
                    _ => break,
                }
            }
            first = false;
            let pos = self.pos();
            if let Tok::Num(n) = self.peek().clone() {
                self.bump();
                let value = match n.as_str() {
                    "0" => false,
                    "1" => true,
                    _ => {
                        return Err(self.err_at(
                            pos,
                            format!("a number ({n}) is not a term; only `0`, `1` and `-1` set the intercept"),
                        ))
                    }
                };
                if !allow_intercept {
                    return Err(self.err_at(pos, "an intercept marker is not allowed here"));
                }
                extras.intercept = Some(value && !negate);
                continue;
            }
            if negate {
                return Err(self.err_at(pos, "only `-1` may be subtracted (to drop the intercept)"));
            }
            for t in self.product_term()?.into_iter().flat_map(Term::lag_orders) {
                let t = extras.collapse(t);
                if let Some(o) = terms.iter().find(|o| o.same_as(&t)) {
                    let first = o.name();
                    // kept once, where it first appears (as fixest does), and reported
                    if !extras.duplicates.contains(&first) {
                        extras.duplicates.push(first);
                    }
                    continue;
                }
                terms.push(t);
            }
        }
        Ok((terms, extras))
    }

    /// `inter (* inter)*` — `a*b` expands to `a + b + a:b`.
    fn product_term(&mut self) -> Result<Vec<Term>> {
        let mut groups = vec![self.interaction()?];
        while *self.peek() == Tok::Star {
            self.bump();
            groups.push(self.interaction()?);
        }
        if groups.len() == 1 {
            return Ok(groups);
        }
        // All non-empty subsets, ordered by size then position (R's order).
        let n = groups.len();
        let mut subsets: Vec<Vec<usize>> = (1u32..(1 << n))
            .map(|m| (0..n).filter(|i| m & (1 << i) != 0).collect())
            .collect();
        subsets.sort_by_key(|s| s.len());
        Ok(subsets
            .into_iter()
            .map(|s| Term {
                factors: s.iter().flat_map(|&i| groups[i].factors.clone()).collect(),
            })
            .collect())
    }

    /// `factor (: factor)*`
    fn interaction(&mut self) -> Result<Term> {
        let mut factors = vec![self.factor()?];
        while *self.peek() == Tok::Colon {
            self.bump();
            factors.push(self.factor()?);
        }
        Ok(Term { factors })
    }

    fn factor(&mut self) -> Result<Factor> {
        let pos = self.pos();
        match self.peek().clone() {
            Tok::Ident(name) => {
                self.bump();
                if *self.peek() == Tok::LParen {
                    let func = match name.as_str() {
                        "log" | "ln" => Func::Log,
                        "exp" => Func::Exp,
                        "sqrt" => Func::Sqrt,
                        "factor" | "as.factor" => {
                            self.bump();
                            let var = self.variable("a variable name in `factor()`")?;
                            self.expect(Tok::RParen, "`)` after the variable of `factor()`")?;
                            return Ok(Factor::AsFactor(var));
                        }
                        "i" => {
                            self.bump();
                            return self.i_call(pos);
                        }
                        "l" | "f" | "d" => {
                            self.bump();
                            return self.lag_call(&name);
                        }
                        "sw" | "sw0" | "csw" | "csw0" => {
                            return Err(self.err_at(
                                pos,
                                format!("`{name}()` asks for several estimations; only `fegpu fit` runs them"),
                            ))
                        }
                        _ => {
                            return Err(self.err_at(
                                pos,
                                format!("unknown function `{name}` (known: log, exp, sqrt, factor, i)"),
                            ))
                        }
                    };
                    self.bump();
                    let arg = self.factor()?;
                    self.expect(Tok::RParen, "`)`")?;
                    Ok(Factor::Call(func, Box::new(arg)))
                } else {
                    Ok(Factor::Var(name))
                }
            }
            _ => Err(self.unexpected("a variable name")),
        }
    }

    /// A variable name.
    fn variable(&mut self, wanted: &str) -> Result<String> {
        match self.peek().clone() {
            Tok::Ident(v) => {
                self.bump();
                Ok(v)
            }
            _ => Err(self.unexpected(wanted)),
        }
    }

    /// The arguments of `i(` up to its `)`: a variable, optionally a second variable (`x`, or
    /// `i.g` for categories), then named arguments `ref`, `keep`, `ref2`, `keep2`.
    fn i_call(&mut self, call: usize) -> Result<Factor> {
        let var = self.variable("the variable of `i()`")?;
        let mut i = IFactor {
            var,
            with: None,
            refs: Vec::new(),
            keep: Vec::new(),
            refs2: Vec::new(),
            keep2: Vec::new(),
        };
        let mut named: Vec<String> = Vec::new();
        while *self.peek() == Tok::Comma {
            self.bump();
            let pos = self.pos();
            let name = self.variable("an argument of `i()`")?;
            if *self.peek() != Tok::Equals {
                if i.with.is_some() || !named.is_empty() {
                    return Err(self.err_at(
                        pos,
                        "`i()` takes one variable besides its first; name the other arguments (`ref = …`, `keep = …`)",
                    ));
                }
                i.with = Some(match name.strip_prefix("i.") {
                    Some(g) if !g.is_empty() => IWith::Factor(g.to_string()),
                    _ => IWith::Var(name),
                });
                continue;
            }
            self.bump();
            if named.contains(&name) {
                return Err(self.err_at(pos, format!("`{name}` is given twice in `i()`")));
            }
            let values = self.values()?;
            match name.as_str() {
                "ref" => i.refs = values,
                "keep" => i.keep = values,
                "ref2" | "keep2" if !matches!(i.with, Some(IWith::Factor(_))) => {
                    return Err(self.err_at(
                        pos,
                        format!("`{name}` applies to the second factor of `i(f, i.g)`, and this `i()` has none"),
                    ))
                }
                "ref2" => i.refs2 = values,
                "keep2" => i.keep2 = values,
                _ => {
                    return Err(self.err_at(
                        pos,
                        format!("unknown argument `{name}` of `i()` (known: ref, keep, ref2, keep2)"),
                    ))
                }
            }
            named.push(name);
        }
        self.expect(Tok::RParen, "`,` or `)` in `i()`")?;
        if matches!(&i.with, Some(IWith::Var(x)) | Some(IWith::Factor(x)) if *x == i.var) {
            return Err(self.err_at(call, format!("`i()` interacts `{}` with itself", i.var)));
        }
        Ok(Factor::I(Box::new(i)))
    }

    /// The arguments of `l(`, `f(` or `d(` up to its `)`: a variable and an order (default 1),
    /// a whole number or a range `a:b`.
    fn lag_call(&mut self, name: &str) -> Result<Factor> {
        let op = match name {
            "l" => LagOp::Lag,
            "f" => LagOp::Lead,
            _ => LagOp::Diff,
        };
        let var = self.variable(&format!("the variable of `{name}()`"))?;
        let mut ks = vec![1];
        if *self.peek() == Tok::Comma {
            self.bump();
            let from = self.whole()?;
            ks = vec![from];
            if *self.peek() == Tok::Colon {
                self.bump();
                let to = self.whole()?;
                ks = if from <= to {
                    (from..=to).collect()
                } else {
                    (to..=from).rev().collect()
                };
            }
        }
        self.expect(Tok::RParen, &format!("`)` closing `{name}(`"))?;
        Ok(Factor::Lag(Lag { op, var, ks }))
    }

    /// A whole number, possibly negative.
    fn whole(&mut self) -> Result<i64> {
        let pos = self.pos();
        let negative = *self.peek() == Tok::Minus;
        if negative {
            self.bump();
        }
        match self.peek().clone() {
            Tok::Num(n) => {
                self.bump();
                let v: i64 = n
                    .parse()
                    .map_err(|_| self.err_at(pos, format!("`{n}` is not a whole number of periods")))?;
                Ok(if negative { -v } else { v })
            }
            _ => Err(self.unexpected("a whole number of periods")),
        }
    }

    /// One value or `c(value, …)`; a value is a number (possibly negative) or a quoted text.
    fn values(&mut self) -> Result<Vec<Value>> {
        if let Tok::Ident(c) = self.peek().clone() {
            if c == "c" {
                self.bump();
                self.expect(Tok::LParen, "`(` after `c`")?;
                let mut out = vec![self.value()?];
                while *self.peek() == Tok::Comma {
                    self.bump();
                    out.push(self.value()?);
                }
                self.expect(Tok::RParen, "`,` or `)` in `c()`")?;
                return Ok(out);
            }
        }
        Ok(vec![self.value()?])
    }

    fn value(&mut self) -> Result<Value> {
        let pos = self.pos();
        let negative = *self.peek() == Tok::Minus;
        if negative {
            self.bump();
        }
        match self.peek().clone() {
            Tok::Num(n) => {
                self.bump();
                let written = if negative { format!("-{n}") } else { n };
                let v: f64 = written
                    .parse()
                    .map_err(|_| self.err_at(pos, format!("`{written}` is not a number")))?;
                Ok(Value::Num(v, written))
            }
            Tok::Str(t) if !negative => {
                self.bump();
                Ok(Value::Text(t))
            }
            _ => Err(self.unexpected("a number or a quoted text")),
        }
    }

    fn fixef_part(&mut self) -> Result<Vec<FixedEffectSpec>> {
        if let Tok::Num(n) = self.peek().clone() {
            if n == "0" {
                self.bump();
                return Ok(Vec::new());
            }
        }
        let mut out: Vec<FixedEffectSpec> = Vec::new();
        loop {
            let pos = self.pos();
            let mut vars = match self.peek().clone() {
                Tok::Ident(v) => {
                    self.bump();
                    vec![v]
                }
                _ => return Err(self.unexpected("a fixed-effect variable")),
            };
            while *self.peek() == Tok::Caret {
                self.bump();
                match self.peek().clone() {
                    Tok::Ident(v) => {
                        self.bump();
                        vars.push(v);
                    }
                    _ => return Err(self.unexpected("a variable name after `^`")),
                }
            }
            let spec = FixedEffectSpec { vars };
            if out.iter().any(|o| o.name() == spec.name()) {
                return Err(self.err_at(pos, format!("fixed effect `{}` appears twice", spec.name())));
            }
            out.push(spec);
            if *self.peek() == Tok::Plus {
                self.bump();
            } else {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(ts: &[Term]) -> Vec<String> {
        ts.iter().map(Term::name).collect()
    }

    #[test]
    fn parses_full_fixest_formula() {
        let m = parse("y ~ x1 + x2 + x1:x2 + log(x3) | fe1 + fe2 + fe1^fe2 | endog ~ z1 + z2").unwrap();
        assert_eq!(m.lhs.name(), "y");
        assert_eq!(names(&m.rhs), ["x1", "x2", "x1:x2", "log(x3)"]);
        assert_eq!(
            m.fixed_effects.iter().map(|f| f.name()).collect::<Vec<_>>(),
            ["fe1", "fe2", "fe1^fe2"]
        );
        let iv = m.iv.unwrap();
        assert_eq!(names(&iv.endogenous), ["endog"]);
        assert_eq!(names(&iv.instruments), ["z1", "z2"]);
        assert!(!m.intercept);
    }

    #[test]
    fn star_expands_like_r() {
        let m = parse("y ~ a*b").unwrap();
        assert_eq!(names(&m.rhs), ["a", "b", "a:b"]);
        assert!(m.intercept);
    }

    /// Terms are sets of factors, as in R and fixest: a repeated factor counts once and a
    /// repeated term is used once, each with a note (issue 25: `x:x` was fitted as x²).
    #[test]
    fn repeated_factors_and_terms_count_once() {
        for (f, want) in [
            ("y ~ x:x", vec!["x"]),
            ("y ~ x*x", vec!["x"]),
            ("y ~ x:y2:x", vec!["x:y2"]),
            ("y ~ log(x):log(x) + x", vec!["log(x)", "x"]),
            ("y ~ x + x", vec!["x"]),
            ("y ~ x*z + x", vec!["x", "z", "x:z"]),
            ("y ~ x:z + z:x", vec!["x:z"]),
            ("y ~ z:x*w + x:w:z", vec!["z:x", "w", "z:x:w"]),
            ("y ~ w | f | d:d ~ z + z:z", vec!["w"]),
        ] {
            let m = parse(f).unwrap();
            assert_eq!(names(&m.rhs), want, "{f}");
            assert!(!m.notes.is_empty(), "{f}: no note");
        }
        let m = parse("y ~ x1 | f | d:d ~ z + z:z").unwrap();
        let iv = m.iv.unwrap();
        assert_eq!(
            (names(&iv.endogenous), names(&iv.instruments)),
            (vec!["d".into()], vec!["z".into()])
        );
        let m = parse("y ~ x:x").unwrap();
        assert!(
            m.notes[0].contains("`x:x`") && m.notes[0].contains("read as `x`"),
            "{:?}",
            m.notes
        );
        assert!(parse("y ~ x:z + x").unwrap().notes.is_empty());
        assert_eq!(parse("y:y ~ x").unwrap().lhs.name(), "y");
        for bad in ["y ~ y:y", "y ~ x + y:y", "y:y ~ y"] {
            assert!(matches!(parse(bad), Err(Error::Formula { .. })), "{bad}");
        }
    }

    #[test]
    fn intercept_markers() {
        assert!(!parse("y ~ x - 1").unwrap().intercept);
        assert!(!parse("y ~ 0 + x").unwrap().intercept);
        assert!(parse("y ~ 1").unwrap().rhs.is_empty());
        assert!(!parse("y ~ x | f").unwrap().intercept);
    }

    #[test]
    fn iv_without_fixed_effects() {
        let m = parse("y ~ x | d ~ z").unwrap();
        assert!(m.fixed_effects.is_empty());
        assert!(m.iv.is_some());
    }

    #[test]
    fn syntax_error_points_at_offending_character() {
        let e = parse("y ~ x1 + + x2").unwrap_err();
        match &e {
            Error::Formula { pos, .. } => assert_eq!(*pos, 9),
            _ => panic!("{e:?}"),
        }
        let msg = e.to_string();
        assert!(msg.contains("character 10"), "{msg}");
        assert!(msg.lines().last().unwrap().ends_with('^'));
        assert!(matches!(parse("y x").unwrap_err(), Error::Formula { pos: 2, .. }));
        assert!(matches!(
            parse("y ~ foo(x)").unwrap_err(),
            Error::Formula { pos: 4, .. }
        ));
        assert!(matches!(parse("y ~ x | f1 + ").unwrap_err(), Error::Formula { .. }));
        assert!(matches!(parse("y ~ x $ z").unwrap_err(), Error::Formula { pos: 6, .. }));
        assert!(matches!(parse("").unwrap_err(), Error::Formula { .. }));
    }

    #[test]
    fn variables_are_collected_once() {
        let m = parse("y ~ x1 + log(x1) + x2:x3 | f + f^g").unwrap();
        assert_eq!(m.variables(), ["y", "x1", "x2", "x3", "f", "g"]);
    }

    #[test]
    fn unicode_and_backquoted_names() {
        let m = parse("质量 ~ `my var` + x_2").unwrap();
        assert_eq!(m.lhs.name(), "质量");
        assert_eq!(names(&m.rhs), ["my var", "x_2"]);
    }
}
