//! Customs tables (exports, imports) summed per customs identity × year × HS8 × country (×
//! product name for imports) by polars' streaming group-by, so the raw lines never sit in
//! memory together; and the error helpers that point at a raw line.

use std::collections::BTreeMap;

use crate::data::load;
use crate::error::{Error, Result};

/// Customs lines summed per identity (name), year, HS8 code, country and, for imports, product
/// name: the raw lines never sit in memory together.
pub(super) struct CustomsGroups {
    pub path: String,
    pub name: Vec<Option<String>>,
    pub year: Vec<i64>,
    pub hs: Vec<Option<String>>,
    pub country: Vec<Option<String>>,
    pub product: Vec<Option<String>>,
    /// Sums over the lines with positive, finite value (and quantity).
    pub value: Vec<f64>,
    pub quantity: Vec<f64>,
    pub ok: Vec<usize>,
    pub lines: Vec<usize>,
}

impl CustomsGroups {
    pub fn len(&self) -> usize {
        self.year.len()
    }
}

/// Stream a customs table through polars and sum its lines per group (see [`CustomsGroups`]).
pub(super) fn customs_groups(path: &str, quantity: bool, product: bool) -> Result<CustomsGroups> {
    use polars::prelude::{col, len, lit, when, DataType};
    let mut columns = vec!["customs_name", "year", "hs8", "country", "value_usd"];
    if quantity {
        columns.push("quantity");
    }
    if product {
        columns.push("product_name");
    }
    let v = col("value_usd").cast(DataType::Float64);
    let mut ok = v.clone().gt(lit(0.0)).and(v.clone().lt(lit(f64::INFINITY)));
    if quantity {
        let q = col("quantity").cast(DataType::Float64);
        ok = ok.and(q.clone().gt(lit(0.0))).and(q.lt(lit(f64::INFINITY)));
    }
    let ok = ok.fill_null(lit(false));
    let mut keys = vec![
        col("customs_name").cast(DataType::String),
        col("year").cast(DataType::Float64),
        col("hs8").cast(DataType::String),
        col("country").cast(DataType::String),
    ];
    if product {
        keys.push(col("product_name").cast(DataType::String));
    }
    let mut aggs = vec![
        when(ok.clone()).then(v).otherwise(lit(0.0)).sum().alias("value"),
        ok.clone().cast(DataType::UInt32).sum().alias("ok"),
        len().alias("__lines"),
    ];
    if quantity {
        aggs.push(
            when(ok)
                .then(col("quantity").cast(DataType::Float64))
                .otherwise(lit(0.0))
                .sum()
                .alias("qty"),
        );
    }
    type GroupKey = (
        Option<String>,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let mut merged: BTreeMap<GroupKey, (f64, f64, usize, usize)> = BTreeMap::new();
    crate::data::scan::collect_batched(
        path,
        &columns,
        |lf| lf.group_by(keys.clone()).agg(aggs.clone()),
        |df| {
            let t = load::Table::new(df, path.to_string());
            let (name, year, hs, country) = (
                t.strings("customs_name")?,
                t.numeric("year")?,
                t.strings("hs8")?,
                t.strings("country")?,
            );
            let prod = if product {
                t.strings("product_name")?
            } else {
                vec![None; name.len()]
            };
            let (value, ok, lines) = (t.numeric("value")?, t.numeric("ok")?, t.numeric("__lines")?);
            let qty = if quantity {
                t.numeric("qty")?
            } else {
                vec![0.0; name.len()]
            };
            for k in 0..name.len() {
                let key = (
                    name[k].clone(),
                    year[k].is_finite().then_some(year[k] as i64),
                    hs[k].clone(),
                    country[k].clone(),
                    prod[k].clone(),
                );
                let e = merged.entry(key).or_default();
                e.0 += value[k];
                e.1 += qty[k];
                e.2 += ok[k] as usize;
                e.3 += lines[k] as usize;
            }
            Ok(())
        },
    )?;
    if merged.keys().any(|k| k.1.is_none()) {
        let row = crate::data::scan::first_row_where(path, &["year"], col("year").cast(DataType::Float64).is_null())?;
        return Err(Error::column(
            "year",
            format!(
                "missing or non-numeric in {path}{}",
                row.map_or(String::new(), |r| format!(", row {r}"))
            ),
        ));
    }
    let mut g = CustomsGroups {
        path: path.to_string(),
        name: vec![],
        year: vec![],
        hs: vec![],
        country: vec![],
        product: vec![],
        value: vec![],
        quantity: vec![],
        ok: vec![],
        lines: vec![],
    };
    for ((name, year, hs, country, prod), (value, qty, ok, lines)) in merged {
        g.name.push(name);
        g.year.push(year.unwrap_or_default());
        g.hs.push(hs);
        g.country.push(country);
        g.product.push(prod);
        g.value.push(value);
        g.quantity.push(qty);
        g.ok.push(ok);
        g.lines.push(lines);
    }
    Ok(g)
}

/// The first raw line of group `k` (for error messages).
pub(super) fn customs_line(g: &CustomsGroups, k: usize) -> Option<usize> {
    use polars::prelude::{col, lit, DataType, Expr};
    let eq = |name: &str, v: &Option<String>| -> Expr {
        match v {
            Some(s) => col(name).cast(DataType::String).eq(lit(s.clone())),
            None => col(name).is_null(),
        }
    };
    let pred = eq("customs_name", &g.name[k])
        .and(col("year").cast(DataType::Float64).eq(lit(g.year[k] as f64)))
        .and(eq("hs8", &g.hs[k]))
        .and(eq("country", &g.country[k]));
    crate::data::scan::first_row_where(&g.path, &["customs_name", "year", "hs8", "country"], pred)
        .ok()
        .flatten()
}

pub(super) fn bad_line(path: &str, column: &str, what: &str, row: Option<usize>) -> Error {
    Error::column(
        column,
        format!(
            "{what} in {path}{}",
            row.map_or(String::new(), |r| format!(", row {r}"))
        ),
    )
}

/// An HS code of at least six digits; a CSV reader turns 01012100 into the number 1012100, so
/// five to seven digits get their leading zeros back.
pub(super) fn hs_code(raw: Option<&str>) -> Option<String> {
    let raw = raw?.trim();
    let padded = if (5..8).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit()) {
        format!("{raw:0>8}")
    } else {
        raw.to_string()
    };
    (padded.len() >= 6 && padded.bytes().take(6).all(|b| b.is_ascii_digit())).then_some(padded)
}
