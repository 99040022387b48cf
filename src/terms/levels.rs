//! The categories of one variable: a code per row and the levels in fixest's order — text in
//! byte order (R's `sort` follows the locale; byte order is the same on every machine), numbers
//! numerically (`factor(num)`, `i(num)`: fixest's `to_integer(sorted = TRUE)`).

use std::cmp::Ordering;

use polars::prelude::*;

use crate::data::factor::{FastMap, MISSING_CODE};
use crate::data::Table;
use crate::error::{Error, Result};
use crate::formula::Value;

/// One level of a categorical variable.
#[derive(Debug, Clone, PartialEq)]
pub enum Level {
    Text(String),
    Num(f64),
}

impl Level {
    /// The level as a coefficient name shows it: texts as they are, whole numbers without a
    /// decimal point (`2005`, `-1`; R's `as.character` of an integer column), other numbers in
    /// their shortest round-trip form (`0.5`).
    pub fn label(&self) -> String {
        match self {
            Level::Text(t) => t.clone(),
            Level::Num(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", *v as i64),
            Level::Num(v) => format!("{v}"),
        }
    }

    /// Whether a value written in the formula (`ref = -1`, `ref = "A"`) names this level: a
    /// number equals a numeric level or the text of a text level as written; a text equals a
    /// text level, or a numeric level it reads as.
    pub fn matches(&self, value: &Value) -> bool {
        match (self, value) {
            (Level::Num(a), Value::Num(b, _)) => a == b,
            (Level::Text(t), Value::Num(_, written)) => t == written,
            (Level::Text(t), Value::Text(v)) => t == v,
            (Level::Num(a), Value::Text(v)) => v.trim().parse::<f64>().is_ok_and(|b| b == *a),
        }
    }

    fn order(&self, other: &Level) -> Ordering {
        match (self, other) {
            (Level::Num(a), Level::Num(b)) => a.total_cmp(b),
            (Level::Text(a), Level::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Level::Num(_), Level::Text(_)) => Ordering::Less,
            (Level::Text(_), Level::Num(_)) => Ordering::Greater,
        }
    }
}

/// A variable's categories over the rows of a table.
#[derive(Debug, Clone)]
pub struct Categories {
    /// Per table row, the index of its level in `levels`; [`MISSING_CODE`] where missing.
    pub codes: Vec<u32>,
    /// The distinct values, sorted (see the module doc).
    pub levels: Vec<Level>,
}

/// Whether `var` is a text column of `table` (a bare text variable on the right-hand side is a
/// factor, as in fixest).
pub fn is_text(table: &Table, var: &str) -> Result<bool> {
    let column = table
        .frame()
        .column(var)
        .map_err(|_| Error::column(var, format!("not found in {}", table.source())))?;
    Ok(matches!(column.dtype(), DataType::String))
}

/// Whether the text column `var` mixes cells that read as numbers with cells that do not (a
/// numeric column with a typo, `1.5x`): used bare, such a column is ambiguous and is read as
/// numbers, so the error names the first bad cell; `factor(var)` uses it as categories.
pub fn is_mixed_text(table: &Table, var: &str) -> Result<bool> {
    let column = table
        .frame()
        .column(var)
        .map_err(|_| Error::column(var, format!("not found in {}", table.source())))?
        .as_materialized_series();
    let Ok(ca) = column.str() else { return Ok(false) };
    let (mut number, mut text) = (false, false);
    for v in ca.iter().flatten() {
        if crate::data::csv::is_number(v) {
            number = true;
        } else {
            text = true;
        }
        if number && text {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The categories of `var`: text columns by their text, numeric and boolean columns by their
/// value (NaN is missing; -0 and 0 are one level).
pub fn categories(table: &Table, var: &str) -> Result<Categories> {
    let column = table
        .frame()
        .column(var)
        .map_err(|_| Error::column(var, format!("not found in {}", table.source())))?
        .as_materialized_series();
    let polars_err = |e: PolarsError| Error::column(var, format!("reading its categories: {e}"));
    let (codes, levels) = match column.dtype() {
        DataType::String => {
            let text = column.cast(&DataType::String).map_err(polars_err)?;
            let ca = text.str().map_err(polars_err)?;
            let mut map: FastMap<&str, u32> = FastMap::default();
            let mut levels: Vec<Level> = Vec::new();
            let codes = ca
                .iter()
                .map(|v| match v {
                    None => MISSING_CODE,
                    Some(t) => *map.entry(t).or_insert_with(|| {
                        levels.push(Level::Text(t.to_string()));
                        levels.len() as u32 - 1
                    }),
                })
                .collect();
            (codes, levels)
        }
        dt if dt.is_primitive_numeric() || matches!(dt, DataType::Boolean) => {
            let f = column.cast(&DataType::Float64).map_err(polars_err)?;
            let ca = f.f64().map_err(polars_err)?;
            let mut map: FastMap<u64, u32> = FastMap::default();
            let mut levels: Vec<Level> = Vec::new();
            let codes = ca
                .iter()
                .map(|v| match v.filter(|x| !x.is_nan()) {
                    None => MISSING_CODE,
                    Some(x) => {
                        let x = x + 0.0;
                        *map.entry(x.to_bits()).or_insert_with(|| {
                            levels.push(Level::Num(x));
                            levels.len() as u32 - 1
                        })
                    }
                })
                .collect();
            (codes, levels)
        }
        dt => {
            return Err(Error::column(
                var,
                format!("is of type {dt}; a categorical variable must be text, integer, float or boolean"),
            ))
        }
    };
    Ok(sorted(codes, levels))
}

/// Renumber `codes` so that level indices follow the sorted order of `levels`.
fn sorted(mut codes: Vec<u32>, levels: Vec<Level>) -> Categories {
    let mut order: Vec<usize> = (0..levels.len()).collect();
    order.sort_by(|&a, &b| levels[a].order(&levels[b]));
    let mut rank = vec![0u32; levels.len()];
    for (r, &k) in order.iter().enumerate() {
        rank[k] = r as u32;
    }
    for c in codes.iter_mut().filter(|c| **c != MISSING_CODE) {
        *c = rank[*c as usize];
    }
    let mut levels: Vec<Option<Level>> = levels.into_iter().map(Some).collect();
    let levels = order
        .iter()
        .map(|&k| levels[k].take().expect("each level once"))
        .collect();
    Categories { codes, levels }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(cols: Vec<Column>) -> Table {
        let n = cols[0].len();
        Table::new(DataFrame::new(n, cols).unwrap(), "t".into())
    }

    #[test]
    fn text_sorts_by_bytes_and_numbers_numerically() {
        let t = table(vec![
            Series::new("s".into(), ["b", "B", "a", "b", "Z"]).into(),
            Series::new("n".into(), [10i64, 9, -1, 10, 100]).into(),
            Series::new("f".into(), [Some(0.5), None, Some(-0.0), Some(0.0), Some(f64::NAN)]).into(),
        ]);
        let s = categories(&t, "s").unwrap();
        let labels = |c: &Categories| c.levels.iter().map(Level::label).collect::<Vec<_>>();
        assert_eq!(labels(&s), ["B", "Z", "a", "b"]);
        assert_eq!(s.codes, [3, 0, 2, 3, 1]);
        let n = categories(&t, "n").unwrap();
        assert_eq!(labels(&n), ["-1", "9", "10", "100"]);
        assert_eq!(n.codes, [2, 1, 0, 2, 3]);
        let f = categories(&t, "f").unwrap();
        assert_eq!(labels(&f), ["0", "0.5"]);
        assert_eq!(f.codes, [1, MISSING_CODE, 0, 0, MISSING_CODE]);
        assert!(is_text(&t, "s").unwrap() && !is_text(&t, "n").unwrap());
    }

    #[test]
    fn written_values_name_levels() {
        let v = |x: f64, w: &str| Value::Num(x, w.into());
        assert!(Level::Num(-1.0).matches(&v(-1.0, "-1")));
        assert!(!Level::Num(-1.0).matches(&v(1.0, "1")));
        assert!(Level::Text("2005".into()).matches(&v(2005.0, "2005")));
        assert!(Level::Num(2005.0).matches(&Value::Text("2005".into())));
        assert!(Level::Text("A".into()).matches(&Value::Text("A".into())));
        assert!(!Level::Text("A".into()).matches(&Value::Text("a".into())));
    }
}
