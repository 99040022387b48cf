//! The term layer: what each right-hand-side term of a formula means as columns, between the
//! parser ([`crate::formula`], syntax only) and the design ([`crate::data::prepare`], which
//! decides the estimation sample and gathers the columns). Estimation sees named columns only.
//!
//! Every term is planned as a [`TermPlan`]: a product of *numeric* factors (variables,
//! `log(x)`, …; one column, computed by `prepare` as before) and *categorical* factors
//! ([`Coding`]: a text variable, `factor(x)`, the variable of `i()`), each expanded into one
//! column per kept level. A numeric term is the plan with no categorical factor: one column,
//! named as written.
//!
//! Conventions followed (fixest 0.12, which builds non-`i()` terms with R's `model.matrix`):
//! * **Levels**: those observed in the estimation sample, text in byte order, numbers
//!   numerically ([`levels`]).
//! * **Text columns** are factors, except one that mixes numbers with text (`1.5x` among
//!   numbers: a typo more likely than categories), which is read as numbers so that the error
//!   names the bad cell; `factor(x)` makes any column categorical.
//! * **Plain factors** (`industry`, `factor(year)`, `f:x`, `f*x`): R's coding rule (Chambers &
//!   Hastie 1992, `model.matrix`): a factor F of term T is coded by *contrasts* (its first level
//!   dropped) when the margin T∖F is in the model, else by *indicators* (every level). The empty
//!   margin is in the model when there is an intercept or a fixed effect (fixest adds an
//!   intercept and removes it afterwards), or once an earlier term coded a factor fully. So
//!   `y ~ x + industry | year` drops the first industry, `y ~ industry:x` keeps every slope,
//!   `y ~ x + industry:x` drops the first, `y ~ industry - 1` keeps every level. Names are the
//!   variable (or `factor(x)`) followed by the level (`industryB`, `factor(year)2005`), joined
//!   by `:` in the term's order (`industryB:x`). Columns of an interaction of factors vary the
//!   first factor fastest (R's order); combinations never observed are kept and then removed
//!   as collinear (with a note), as fixest does.
//! * **`i()`** (fixest `R/miscfuns.R`, `i()` and `i_ref()`): names `f::A`, `f::A:x`,
//!   `f::a:g::10`; `ref` drops levels, `keep` keeps only those; with none of `ref`, `keep`,
//!   `ref2`, `keep2` and an intercept or fixed effects, `i(f)` and `i(f, i.g)` drop their first
//!   (observed) level or combination, `i(f, x)` with a numeric `x` drops none. A `ref` or `keep`
//!   value that is not an observed level is an error naming it. Only observed combinations of
//!   `i(f, i.g)` become columns, ordered by `f` and then `g`.
//! * **Panel operators** `l(x, k)`, `f(x, k)`, `d(x, k)` are numeric factors computed over
//!   `--panel ID,TIME` ([`panel`]); a lag's argument missing on the row itself does not drop
//!   the row (its value is read on another row).
//! * Collinear columns are not removed here: the estimator drops the later ones in formula
//!   order and says so ([`crate::estimate`]).

pub mod levels;
pub mod panel;

use crate::data::factor::MISSING_CODE;
use crate::data::Table;
use crate::error::{Error, Result};
use crate::formula::{Factor, IFactor, IWith, Model, Term, Value};
pub use levels::{categories, is_text, Categories, Level};

/// How the levels of one categorical factor become columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Coding {
    /// The variable whose categories are used.
    pub var: String,
    /// What a column's name puts before the level: `industry`, `factor(year)`, `f::`.
    pub prefix: String,
    /// Drop the first observed level (R's contrasts).
    pub drop_first: bool,
    /// Levels left out (`ref`), levels kept (`keep`; empty: all).
    pub refs: Vec<Value>,
    pub keep: Vec<Value>,
}

/// One term as columns: every combination of the kept levels of `codings`, times the
/// product `numeric` of its numeric factors.
#[derive(Debug, Clone, PartialEq)]
pub struct TermPlan {
    /// The term as written (its name for a numeric term).
    pub term: Term,
    /// The product of the numeric factors (`None`: no numeric factor, the columns are 0/1).
    pub numeric: Option<Term>,
    pub codings: Vec<Coding>,
    /// The pieces of a column name in the term's order: a coding's level or a numeric factor.
    pub layout: Vec<Piece>,
    /// `i(f, i.g)`: only observed combinations, ordered by the first factor (fixest's items);
    /// else every combination, the first factor varying fastest (R).
    pub observed_only: bool,
    /// Drop the first observed combination (fixest's automatic reference of `i(f, i.g)`).
    pub drop_first_combination: bool,
}

/// A piece of a column name.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// The level of `codings[k]`, after its prefix.
    Level(usize),
    /// A numeric factor, by name.
    Numeric(String),
}

impl TermPlan {
    /// A numeric term: one column, named as written.
    pub fn numeric(t: &Term) -> TermPlan {
        TermPlan {
            term: t.clone(),
            numeric: Some(t.clone()),
            codings: Vec::new(),
            layout: vec![Piece::Numeric(t.name())],
            observed_only: false,
            drop_first_combination: false,
        }
    }

    pub fn is_numeric(&self) -> bool {
        self.codings.is_empty()
    }
}

/// The plan of a model's terms.
#[derive(Debug, Clone)]
pub struct Plan {
    pub lhs: TermPlan,
    pub rhs: Vec<TermPlan>,
    pub endogenous: Vec<TermPlan>,
    pub instruments: Vec<TermPlan>,
}

impl Plan {
    pub fn all(&self) -> impl Iterator<Item = &TermPlan> {
        std::iter::once(&self.lhs)
            .chain(&self.rhs)
            .chain(&self.endogenous)
            .chain(&self.instruments)
    }

    /// The variables read as numbers (missing where NaN), each once.
    pub fn numeric_vars(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for v in self.all().filter_map(|p| p.numeric.as_ref()).flat_map(Term::vars) {
            if !out.contains(&v) {
                out.push(v);
            }
        }
        out
    }

    /// [`Plan::numeric_vars`] whose own row's value is used (missing there drops the row; the
    /// argument of a lag is read on other rows).
    pub fn numeric_row_vars(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for v in self.all().filter_map(|p| p.numeric.as_ref()).flat_map(Term::row_vars) {
            if !out.contains(&v) {
                out.push(v);
            }
        }
        out
    }

    /// The first term with a panel operator (`l()`, `f()`, `d()`), if any.
    pub fn lagged(&self) -> Option<&Term> {
        self.all().map(|p| &p.term).find(|t| t.has_lag())
    }

    /// The variables read as categories, each once.
    pub fn categorical_vars(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in self.all().flat_map(|p| &p.codings) {
            if !out.contains(&c.var) {
                out.push(c.var.clone());
            }
        }
        out
    }
}

/// What one factor of a term is, once the data say whether a bare variable is text.
enum Kind {
    Numeric(Factor),
    /// A plain categorical factor (text variable or `factor(x)`) and its name prefix.
    Plain(String, String),
    I(IFactor),
}

fn kind(table: &Table, f: &Factor) -> Result<Kind> {
    Ok(match f {
        // a text column is a factor, unless some of its cells are numbers (see `is_mixed_text`)
        Factor::Var(v) if is_text(table, v)? && !levels::is_mixed_text(table, v)? => Kind::Plain(v.clone(), v.clone()),
        Factor::Var(_) => Kind::Numeric(f.clone()),
        Factor::Call(func, arg) => {
            if let Some(v) = arg_text_var(table, arg)? {
                return Err(Error::column(
                    v,
                    format!(
                        "holds text, so `{}` cannot be computed (a text variable is a factor; transform a numeric one)",
                        f.name()
                    ),
                ));
            }
            let _ = func;
            Kind::Numeric(f.clone())
        }
        Factor::AsFactor(v) => Kind::Plain(v.clone(), f.name()),
        Factor::I(i) => Kind::I((**i).clone()),
        Factor::Lag(_) => Kind::Numeric(f.clone()),
    })
}

/// The first text variable inside a transformed factor, if any.
fn arg_text_var(table: &Table, f: &Factor) -> Result<Option<String>> {
    match f {
        Factor::Var(v) => Ok(is_text(table, v)?.then(|| v.clone())),
        Factor::Call(_, a) => arg_text_var(table, a),
        Factor::AsFactor(_) | Factor::I(_) | Factor::Lag(_) => Ok(None),
    }
}

/// Plan every term of `model` against the columns of `table` (see the module doc).
pub fn plan(table: &Table, model: &Model) -> Result<Plan> {
    let lhs = plan_part(table, std::slice::from_ref(&model.lhs), model, "dependent variable")?
        .pop()
        .expect("one term");
    if !lhs.is_numeric() {
        return Err(Error::Usage(format!(
            "the dependent variable `{}` is categorical (text, `factor()` or `i()`); it must be numeric",
            model.lhs.name()
        )));
    }
    let rhs = plan_part(table, &model.rhs, model, "regressor")?;
    let (endogenous, instruments) = match &model.iv {
        Some(iv) => (
            plan_part(table, &iv.endogenous, model, "endogenous regressor")?,
            plan_part(table, &iv.instruments, model, "instrument")?,
        ),
        None => (Vec::new(), Vec::new()),
    };
    Ok(Plan {
        lhs,
        rhs,
        endogenous,
        instruments,
    })
}

/// Plan one `+`-separated part of the formula (the coding rule looks at the part's terms).
fn plan_part(table: &Table, terms: &[Term], model: &Model, role: &str) -> Result<Vec<TermPlan>> {
    // the constant is in the column space: intercept or fixed effects (see the module doc)
    let mut constant = model.intercept || !model.fixed_effects.is_empty();
    let absorbs = model.intercept || !model.fixed_effects.is_empty();
    let mut out = Vec::with_capacity(terms.len());
    for t in terms {
        let kinds: Vec<Kind> = t.factors.iter().map(|f| kind(table, f)).collect::<Result<_>>()?;
        if kinds.iter().all(|k| matches!(k, Kind::Numeric(_))) {
            out.push(TermPlan::numeric(t));
            continue;
        }
        if kinds.iter().any(|k| matches!(k, Kind::I(_))) {
            if kinds.len() > 1 {
                return Err(Error::Usage(format!(
                    "the {role} `{}` interacts `i()` with `:`; write the slope inside it (`i(f, x)`) or the second factor as `i(f, i.g)`",
                    t.name()
                )));
            }
            let Some(Kind::I(i)) = kinds.into_iter().next() else {
                unreachable!("one i() factor")
            };
            let p = plan_i(table, t, i, absorbs)?;
            if p.drop_first_combination || p.codings.iter().any(|c| c.drop_first) {
                // nothing: a reference was dropped, the constant is not spanned by this term
            } else if p.numeric.is_none() {
                constant = true;
            }
            out.push(p);
            continue;
        }
        let mut codings = Vec::new();
        let mut layout = Vec::new();
        let mut numeric = Vec::new();
        let mut full_on_constant = false;
        for (j, k) in kinds.into_iter().enumerate() {
            match k {
                Kind::Numeric(f) => {
                    layout.push(Piece::Numeric(f.name()));
                    numeric.push(f);
                }
                Kind::Plain(var, prefix) => {
                    // R's rule: contrasts when the margin (the term without this factor) is in
                    // the model
                    let margin: Vec<Factor> = t
                        .factors
                        .iter()
                        .enumerate()
                        .filter(|(m, _)| *m != j)
                        .map(|(_, f)| f.clone())
                        .collect();
                    let drop_first = if margin.is_empty() {
                        constant
                    } else {
                        let margin = Term { factors: margin };
                        terms.iter().any(|o| o.same_as(&margin))
                    };
                    full_on_constant |= margin_is_empty(t) && !drop_first;
                    layout.push(Piece::Level(codings.len()));
                    codings.push(Coding {
                        var,
                        prefix,
                        drop_first,
                        refs: Vec::new(),
                        keep: Vec::new(),
                    });
                }
                Kind::I(_) => unreachable!("handled above"),
            }
        }
        if full_on_constant {
            constant = true;
        }
        out.push(TermPlan {
            term: t.clone(),
            numeric: (!numeric.is_empty()).then_some(Term { factors: numeric }),
            codings,
            layout,
            observed_only: false,
            drop_first_combination: false,
        });
    }
    Ok(out)
}

fn margin_is_empty(t: &Term) -> bool {
    t.factors.len() == 1
}

/// The plan of an `i()` term (fixest's `i()` and `i_ref()`).
fn plan_i(table: &Table, t: &Term, i: IFactor, absorbs: bool) -> Result<TermPlan> {
    let naked = i.refs.is_empty() && i.keep.is_empty() && i.refs2.is_empty() && i.keep2.is_empty();
    let first = Coding {
        var: i.var.clone(),
        prefix: format!("{}::", i.var),
        drop_first: false,
        refs: i.refs.clone(),
        keep: i.keep.clone(),
    };
    let second_factor = match &i.with {
        Some(IWith::Factor(g)) => Some(g.clone()),
        Some(IWith::Var(x)) if is_text(table, x)? => Some(x.clone()),
        _ => None,
    };
    if let Some(g) = second_factor {
        let second = Coding {
            var: g.clone(),
            prefix: format!("{g}::"),
            drop_first: false,
            refs: i.refs2.clone(),
            keep: i.keep2.clone(),
        };
        return Ok(TermPlan {
            term: t.clone(),
            numeric: None,
            codings: vec![first, second],
            layout: vec![Piece::Level(0), Piece::Level(1)],
            observed_only: true,
            drop_first_combination: naked && absorbs,
        });
    }
    match &i.with {
        Some(IWith::Var(x)) => Ok(TermPlan {
            term: t.clone(),
            numeric: Some(Term {
                factors: vec![Factor::Var(x.clone())],
            }),
            codings: vec![first],
            layout: vec![Piece::Level(0), Piece::Numeric(x.clone())],
            observed_only: true,
            drop_first_combination: false,
        }),
        _ => Ok(TermPlan {
            term: t.clone(),
            numeric: None,
            codings: vec![first],
            layout: vec![Piece::Level(0)],
            observed_only: true,
            drop_first_combination: naked && absorbs,
        }),
    }
}

/// The columns of a categorical term over the estimation sample: `codes[k][i]` is the level of
/// coding `k` on sample row `i` (never missing there), `numeric` the product of the numeric
/// factors on those rows. Returns each column's name and values, in the plan's order.
pub fn expand(
    plan: &TermPlan,
    categories: &[&Categories],
    codes: &[Vec<u32>],
    numeric: Option<&[f64]>,
) -> Result<Vec<(String, Vec<f64>)>> {
    let n = codes.first().map_or(0, Vec::len);
    // the kept levels of each coding, in level order
    let mut kept: Vec<Vec<u32>> = Vec::with_capacity(plan.codings.len());
    for ((c, cats), codes) in plan.codings.iter().zip(categories).zip(codes) {
        let mut seen = vec![false; cats.levels.len()];
        for &v in codes {
            debug_assert!(v != MISSING_CODE);
            seen[v as usize] = true;
        }
        let observed: Vec<u32> = (0..cats.levels.len() as u32).filter(|&l| seen[l as usize]).collect();
        let named = |values: &[Value], arg: &str| -> Result<Vec<u32>> {
            values
                .iter()
                .map(|v| {
                    observed
                        .iter()
                        .copied()
                        .find(|&l| cats.levels[l as usize].matches(v))
                        .ok_or_else(|| {
                            let shown: Vec<String> = observed
                                .iter()
                                .take(12)
                                .map(|&l| cats.levels[l as usize].label())
                                .collect();
                            Error::Usage(format!(
                                "`{}`: {arg} = {} is not a level of `{}` in the estimation sample (levels: {}{})",
                                plan.term.name(),
                                v.written(),
                                c.var,
                                shown.join(", "),
                                if observed.len() > 12 { ", …" } else { "" }
                            ))
                        })
                })
                .collect()
        };
        let refs = named(&c.refs, if plan.observed_only { "ref" } else { "reference" })?;
        let keep = named(&c.keep, "keep")?;
        let mut levels: Vec<u32> = observed
            .iter()
            .copied()
            .filter(|l| !refs.contains(l) && (keep.is_empty() || keep.contains(l)))
            .collect();
        if c.drop_first && !levels.is_empty() {
            levels.remove(0);
        }
        kept.push(levels);
    }
    // the combinations, each a level per coding
    let mut combos: Vec<Vec<u32>> = vec![Vec::new()];
    if plan.observed_only {
        let mut seen: std::collections::BTreeSet<Vec<u32>> = std::collections::BTreeSet::new();
        for i in 0..n {
            let combo: Vec<u32> = codes.iter().map(|c| c[i]).collect();
            if combo.iter().zip(&kept).all(|(l, k)| k.contains(l)) {
                seen.insert(combo);
            }
        }
        combos = seen.into_iter().collect();
        if plan.drop_first_combination && !combos.is_empty() {
            // fixest drops the first item of the observed (not yet filtered) combinations
            let first = (0..n)
                .map(|i| codes.iter().map(|c| c[i]).collect::<Vec<u32>>())
                .min()
                .expect("rows");
            combos.retain(|c| *c != first);
        }
    } else {
        for k in &kept {
            combos = k
                .iter()
                .flat_map(|&l| {
                    combos.iter().map(move |c| {
                        let mut c = c.clone();
                        c.push(l);
                        c
                    })
                })
                .collect();
        }
        // R: the first factor varies fastest
        combos.sort_by(|a, b| a.iter().rev().cmp(b.iter().rev()));
    }
    if combos.is_empty() {
        return Err(Error::Usage(format!(
            "`{}` leaves no column: every level is a reference or outside `keep`",
            plan.term.name()
        )));
    }
    let index_of = |combo: &[u32]| -> Option<usize> { combos.binary_search_by(|c| cmp_combo(plan, c, combo)).ok() };
    let mut columns: Vec<Vec<f64>> = vec![vec![0.0; n]; combos.len()];
    let mut row_combo = vec![0u32; plan.codings.len()];
    for i in 0..n {
        for (k, c) in codes.iter().enumerate() {
            row_combo[k] = c[i];
        }
        if let Some(j) = index_of(&row_combo) {
            columns[j][i] = numeric.map_or(1.0, |x| x[i]);
        }
    }
    let names = combos
        .iter()
        .map(|combo| column_name(plan, |k| categories[k].levels[combo[k] as usize].label()));
    Ok(names.zip(columns).collect())
}

/// The name of a categorical term's column for one combination of levels, `label(k)` the
/// label of coding `k`'s level: `industryB`, `f::A:x`, `f::a:g::10` (see the module doc).
pub fn column_name(plan: &TermPlan, label: impl Fn(usize) -> String) -> String {
    plan.layout
        .iter()
        .map(|p| match p {
            Piece::Level(k) => format!("{}{}", plan.codings[*k].prefix, label(*k)),
            Piece::Numeric(name) => name.clone(),
        })
        .collect::<Vec<_>>()
        .join(":")
}

/// The order of [`expand`]'s combinations (the order they are sorted in).
fn cmp_combo(plan: &TermPlan, a: &[u32], b: &[u32]) -> std::cmp::Ordering {
    if plan.observed_only {
        a.cmp(b)
    } else {
        a.iter().rev().cmp(b.iter().rev())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::{Column, DataFrame, NamedFrom, Series};

    fn table() -> Table {
        let cols: Vec<Column> = vec![
            Series::new("y".into(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).into(),
            Series::new("x".into(), [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]).into(),
            Series::new("ind".into(), ["b", "a", "c", "a", "b", "c"]).into(),
            Series::new("t".into(), [-1i64, 0, 1, -1, 0, 1]).into(),
            Series::new("g".into(), [2i64, 2, 2, 1, 1, 1]).into(),
        ];
        Table::new(DataFrame::new(6, cols).unwrap(), "t".into())
    }

    fn names(formula: &str) -> Vec<String> {
        let t = table();
        let m = crate::formula::parse(formula).unwrap();
        let p = plan(&t, &m).unwrap();
        let mut out = Vec::new();
        for tp in &p.rhs {
            if tp.is_numeric() {
                out.push(tp.term.name());
                continue;
            }
            let cats: Vec<Categories> = tp.codings.iter().map(|c| categories(&t, &c.var).unwrap()).collect();
            let refs: Vec<&Categories> = cats.iter().collect();
            let codes: Vec<Vec<u32>> = cats.iter().map(|c| c.codes.clone()).collect();
            let x = t.numeric("x").unwrap();
            let numeric = tp.numeric.as_ref().map(|_| x.as_slice());
            out.extend(expand(tp, &refs, &codes, numeric).unwrap().into_iter().map(|(n, _)| n));
        }
        out
    }

    #[test]
    fn plain_factors_follow_r_coding_rule() {
        assert_eq!(names("y ~ x + ind"), ["x", "indb", "indc"]);
        assert_eq!(names("y ~ x + ind | g"), ["x", "indb", "indc"]);
        assert_eq!(names("y ~ ind - 1"), ["inda", "indb", "indc"]);
        assert_eq!(
            names("y ~ ind + factor(t) - 1"),
            ["inda", "indb", "indc", "factor(t)0", "factor(t)1"]
        );
        assert_eq!(names("y ~ ind:x"), ["inda:x", "indb:x", "indc:x"]);
        assert_eq!(names("y ~ x + ind:x"), ["x", "indb:x", "indc:x"]);
        assert_eq!(names("y ~ x:ind"), ["x:inda", "x:indb", "x:indc"]);
        assert_eq!(names("y ~ ind*x"), ["indb", "indc", "x", "indb:x", "indc:x"]);
        assert_eq!(
            names("y ~ ind*factor(g)"),
            ["indb", "indc", "factor(g)2", "indb:factor(g)2", "indc:factor(g)2"]
        );
    }

    #[test]
    fn i_names_and_references_follow_fixest() {
        assert_eq!(names("y ~ i(t)"), ["t::0", "t::1"]);
        assert_eq!(names("y ~ i(t) - 1"), ["t::-1", "t::0", "t::1"]);
        assert_eq!(names("y ~ i(t, ref = 0)"), ["t::-1", "t::1"]);
        assert_eq!(names("y ~ i(t, ref = c(0, 1))"), ["t::-1"]);
        assert_eq!(names("y ~ i(t, keep = c(-1, 1))"), ["t::-1", "t::1"]);
        assert_eq!(names("y ~ i(t, x)"), ["t::-1:x", "t::0:x", "t::1:x"]);
        assert_eq!(names("y ~ i(t, x, ref = -1)"), ["t::0:x", "t::1:x"]);
        assert_eq!(names("y ~ i(ind)"), ["ind::b", "ind::c"]);
        assert_eq!(
            names("y ~ i(g, i.t)"),
            ["g::1:t::0", "g::1:t::1", "g::2:t::-1", "g::2:t::0", "g::2:t::1"]
        );
        assert_eq!(
            names("y ~ i(g, i.t, ref2 = 0)"),
            ["g::1:t::-1", "g::1:t::1", "g::2:t::-1", "g::2:t::1"]
        );
    }

    #[test]
    fn bad_terms_are_errors_naming_them() {
        let t = table();
        let fails = |f: &str| {
            let m = crate::formula::parse(f).unwrap();
            match plan(&t, &m) {
                Err(e) => e.to_string(),
                Ok(p) => {
                    let tp = &p.rhs[0];
                    let cats: Vec<Categories> = tp.codings.iter().map(|c| categories(&t, &c.var).unwrap()).collect();
                    let refs: Vec<&Categories> = cats.iter().collect();
                    let codes: Vec<Vec<u32>> = cats.iter().map(|c| c.codes.clone()).collect();
                    expand(tp, &refs, &codes, None).unwrap_err().to_string()
                }
            }
        };
        assert!(fails("y ~ log(ind)").contains("`ind`"));
        assert!(fails("ind ~ x").contains("dependent variable `ind`"));
        let e = fails("y ~ i(t, ref = 7)");
        assert!(e.contains("ref = 7") && e.contains("levels: -1, 0, 1"), "{e}");
        assert!(fails("y ~ i(t, keep = \"z\")").contains("keep = \"z\""));
        assert!(fails("y ~ i(t):x").contains("i(f, x)"));
        assert!(fails("y ~ i(t, ref = c(-1, 0, 1))").contains("leaves no column"));
    }
}
