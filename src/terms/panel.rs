//! Panel operators (`l(x, k)`, `f(x, k)`, `d(x, k)`; fixest `R/panel.R`) over `--panel ID,TIME`.
//!
//! The time variable must hold whole numbers; one period is the greatest common divisor of the
//! gaps between its distinct values (fixest's numeric time: yearly data with a gap stays
//! yearly; data every 5 years have a period of 5). `l(x, k)` on the row of unit i at time t is
//! x on the row (i, t − k periods), missing when there is no such row: gaps are not skipped.
//! A (unit, time) pair on two rows is an error naming it.

use crate::data::factor::{FastMap, MISSING_CODE};
use crate::data::Table;
use crate::error::{Error, Result};

/// Where each (unit, period) is.
#[derive(Debug)]
pub struct Panel {
    /// Per row: its unit's code and its period, or `None` where either is missing.
    key: Vec<Option<(u32, i64)>>,
    rows: FastMap<(u32, i64), usize>,
}

impl Panel {
    /// Index the rows of `table` by `id` and `time`.
    pub fn new(table: &Table, id: &str, time: &str) -> Result<Panel> {
        let (codes, _) = table.codes(id)?;
        let t = table.numeric(time)?;
        if let Some(bad) = t.iter().find(|v| v.is_finite() && (v.fract() != 0.0 || v.abs() > 9e15)) {
            return Err(Error::column(
                time,
                format!("--panel needs a time in whole numbers (years, months, …); it holds {bad}"),
            ));
        }
        let mut distinct: Vec<i64> = t.iter().filter(|v| v.is_finite()).map(|&v| v as i64).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let period = distinct.windows(2).fold(0i64, |g, w| gcd(g, w[1] - w[0])).max(1);
        let key: Vec<Option<(u32, i64)>> = codes
            .iter()
            .zip(&t)
            .map(|(&c, &v)| (c != MISSING_CODE && v.is_finite()).then(|| (c, (v as i64).div_euclid(period))))
            .collect();
        let mut rows: FastMap<(u32, i64), usize> = FastMap::default();
        for (i, k) in key.iter().enumerate() {
            if let Some(k) = k {
                if let Some(first) = rows.insert(*k, i) {
                    let shown = table.strings(id)?[i].clone().unwrap_or_default();
                    return Err(Error::Usage(format!(
                        "--panel {id},{time}: the pair ({id} = {shown}, {time} = {}) is on rows {} and {}; a panel has one row per unit and time",
                        t[i],
                        first + 1,
                        i + 1
                    )));
                }
            }
        }
        Ok(Panel { key, rows })
    }

    /// `x` taken `k` periods back (forward when negative) within each unit; missing where that
    /// row does not exist.
    pub fn lag(&self, x: &[f64], k: i64) -> Vec<f64> {
        self.key
            .iter()
            .map(|key| match key {
                Some((id, t)) => self.rows.get(&(*id, t - k)).map_or(f64::NAN, |&j| x[j]),
                None => f64::NAN,
            })
            .collect()
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a.abs()
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::{Column, DataFrame, NamedFrom, Series};

    #[test]
    fn lags_follow_time_not_row_order_and_keep_gaps() {
        let cols: Vec<Column> = vec![
            Series::new("id".into(), ["a", "a", "a", "b", "b"]).into(),
            Series::new("year".into(), [2004i64, 2000, 2002, 2000, 2002]).into(),
        ];
        let t = Table::new(DataFrame::new(5, cols).unwrap(), "t".into());
        let p = Panel::new(&t, "id", "year").unwrap();
        let x = [3.0, 1.0, 2.0, 10.0, 20.0];
        let l1 = p.lag(&x, 1);
        // the period is 2 years: a@2004 ← a@2002, a@2000 has none, b@2002 ← b@2000
        assert!(l1[0] == 2.0 && l1[1].is_nan() && l1[2] == 1.0 && l1[3].is_nan() && l1[4] == 10.0);
        let f1 = p.lag(&x, -1);
        assert!(f1[1] == 2.0 && f1[0].is_nan() && f1[3] == 20.0);
        let cols: Vec<Column> = vec![
            Series::new("id".into(), ["a", "a"]).into(),
            Series::new("year".into(), [2000i64, 2000]).into(),
        ];
        let t = Table::new(DataFrame::new(2, cols).unwrap(), "t".into());
        let e = Panel::new(&t, "id", "year").unwrap_err().to_string();
        assert!(e.contains("id = a") && e.contains("rows 1 and 2"), "{e}");
    }
}
