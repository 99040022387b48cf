//! Panels whose fixed-effect graphs are hard to project out, for tests and benchmarks
//! (`fegpu demo --design difficult|mobility`).
//!
//! * **difficult**: the "difficult" benchmark fixest and FixedEffectModels.jl publish: n rows,
//!   n/20 individuals, n/160 firms and n^0.3 years; each individual's firm is drawn from a band
//!   of 21 firms around `individual / 8`, so the individual–firm graph is a long chain of
//!   overlapping bands (large diameter, slow mixing). Columns `y, x1, x2, id_indiv, id_firm,
//!   id_year`; `y = 3 x1 + 5 x2 + cos(indiv) + cos(firm)² + sin(year) + N(0,1)`.
//! * **mobility**: a worker–firm–year panel with little mobility: n/10 workers followed for ten
//!   years, n/100 firms, and each year a worker moves to a random firm with probability 2%,
//!   so most firms are linked to the rest of the graph by a handful of movers. Columns
//!   `y, x1, x2, worker, firm, year`; `y = x1 − 0.5 x2 + worker + firm + year effects + N(0,1)`.
//!
//! Ids are 1-based integers, as the published generator writes them. Draws come from the Philox
//! generator, so a file is identical on every machine for a given seed.

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::rng::Stream;

/// The published "difficult" design at `rows` rows.
pub fn difficult_frame(rows: usize, seed: u64) -> Result<DataFrame> {
    if rows < 1_000 {
        return Err(Error::Usage(format!(
            "the difficult design needs at least 1000 rows (asked for {rows})"
        )));
    }
    let n = rows as f64;
    let nb_indiv = (rows / 20) as u32;
    let nb_firm = (n / 160.0).round() as u32;
    let nb_year = n.powf(0.3).round() as u32;
    let mut s = Stream::new(seed, 11);
    let (mut indiv, mut firm, mut year) = (
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
    );
    let (mut x1, mut x2, mut y) = (
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
    );
    for _ in 0..rows {
        let i = 1 + s.below(nb_indiv);
        let band = (i as i64 / 8 - 10).max(1) as u32;
        let f = (s.below(21) + band).min(nb_firm);
        let t = 1 + s.below(nb_year);
        let (fi, ff, ft) = (i as f64, f as f64, t as f64);
        let a = 5.0 * fi.cos() + 5.0 * ff.sin() + 5.0 * ft.sin() + s.uniform();
        let b = fi.cos() + ff.sin() + ft.sin() + s.normal();
        y.push(3.0 * a + 5.0 * b + fi.cos() + ff.cos().powi(2) + ft.sin() + s.normal());
        x1.push(a);
        x2.push(b);
        indiv.push(i as i64);
        firm.push(f as i64);
        year.push(t as i64);
    }
    frame(y, x1, x2, [("id_indiv", indiv), ("id_firm", firm), ("id_year", year)])
}

/// A worker–firm–year panel with low mobility at (about, a multiple of ten) `rows` rows.
pub fn mobility_frame(rows: usize, seed: u64) -> Result<DataFrame> {
    if rows < 1_000 {
        return Err(Error::Usage(format!(
            "the mobility design needs at least 1000 rows (asked for {rows})"
        )));
    }
    let workers = (rows / 10) as u32;
    let firms = (rows / 100).max(2) as u32;
    let mut s = Stream::new(seed, 12);
    let firm_fx: Vec<f64> = (0..firms).map(|_| s.normal()).collect();
    let year_fx: Vec<f64> = (0..10).map(|t| 0.05 * t as f64).collect();
    let cap = workers as usize * 10;
    let (mut wk, mut fm, mut yr) = (
        Vec::with_capacity(cap),
        Vec::with_capacity(cap),
        Vec::with_capacity(cap),
    );
    let (mut x1, mut x2, mut y) = (
        Vec::with_capacity(cap),
        Vec::with_capacity(cap),
        Vec::with_capacity(cap),
    );
    for w in 0..workers {
        let ability = s.normal();
        let mut f = s.below(firms);
        for t in 0..10u32 {
            if t > 0 && s.uniform() < 0.02 {
                f = s.below(firms);
            }
            let a = 0.5 * ability + 0.5 * firm_fx[f as usize] + s.normal();
            let b = s.normal() + 0.1 * t as f64;
            y.push(a - 0.5 * b + ability + firm_fx[f as usize] + year_fx[t as usize] + s.normal());
            x1.push(a);
            x2.push(b);
            wk.push(w as i64 + 1);
            fm.push(f as i64 + 1);
            yr.push(2000 + t as i64);
        }
    }
    frame(y, x1, x2, [("worker", wk), ("firm", fm), ("year", yr)])
}

fn frame(y: Vec<f64>, x1: Vec<f64>, x2: Vec<f64>, ids: [(&str, Vec<i64>); 3]) -> Result<DataFrame> {
    let mut cols: Vec<Column> = vec![
        Column::new("y".into(), y),
        Column::new("x1".into(), x1),
        Column::new("x2".into(), x2),
    ];
    for (name, v) in ids {
        cols.push(Column::new(name.into(), v));
    }
    let rows = cols[0].len();
    DataFrame::new(rows, cols).map_err(|e| Error::Data(format!("building the panel: {e}")))
}
