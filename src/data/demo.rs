//! The built-in `demo` panel: a seeded firm-year-destination panel shaped like the reference
//! study's estimation sample (shared/study/STUDY.md, Table 1): about 130,000 rows from a few
//! thousand exporting firms, 2008-2014, ~120 destinations with skewed popularity, firm, year and
//! firm×destination effects, destination-year shocks (so errors cluster by destination), and 12
//! regressors: `digtech` plus the study's 11 controls. The outcome `qua` has the effects below
//! planted, so estimates can be checked against the truth.
//!
//! All draws come from the Philox counter-based generator, so the panel is identical on every
//! machine for a given seed.

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::rng::Stream;

pub const DEMO_ROWS: usize = 130_000;
pub const DEMO_SEED: u64 = 20_230_323;

/// Planted coefficients of `qua` on the regressors, in column order.
pub const TRUE_COEFFICIENTS: [(&str, f64); 12] = [
    ("digtech", 0.0012),
    ("age", 0.0020),
    ("finance", -0.0100),
    ("profit", 0.0050),
    ("klratio", 0.0010),
    ("turnover", 0.0030),
    ("lnlp", 0.0020),
    ("lev", -0.0040),
    ("open", 0.0010),
    ("market", 0.0005),
    ("lnpergdp", 0.0030),
    ("xr", -0.0010),
];

/// The formula of the study's main specification on the demo panel (Table 1, column 5).
pub const MAIN_FORMULA: &str =
    "qua ~ digtech + age + finance + profit + klratio + turnover + lnlp + lev + open + market + lnpergdp + xr | firm + year + firm^dest";

const PROVINCES: [&str; 12] = [
    "广东", "江苏", "浙江", "山东", "上海", "福建", "北京", "天津", "辽宁", "河北", "湖北", "四川",
];
const INDUSTRIES: [&str; 6] = ["C35", "C36", "C37", "C38", "C39", "C40"];
const N_DEST: usize = 120;
const YEARS: std::ops::RangeInclusive<i64> = 2008..=2014;

/// Generate the demo panel with exactly `rows` rows.
pub fn demo_frame(rows: usize, seed: u64) -> Result<DataFrame> {
    if rows < 10 {
        return Err(Error::Usage(format!(
            "the demo panel needs at least 10 rows (asked for {rows})"
        )));
    }
    let mut firm_rng = Stream::new(seed, 1);
    let mut row_rng = Stream::new(seed, 2);
    let mut macro_rng = Stream::new(seed, 3);
    let n_years = (*YEARS.end() - *YEARS.start() + 1) as usize;

    // Destination popularity (Zipf-like) and destination-year macro variables and shocks.
    let pop: Vec<f64> = (0..N_DEST).map(|d| 1.0 / ((d + 1) as f64).powf(0.5)).collect();
    let pop_total: f64 = pop.iter().sum();
    let mut lnpergdp = vec![0.0; N_DEST * n_years];
    let mut xr = vec![0.0; N_DEST * n_years];
    let mut dest_shock = vec![0.0; N_DEST * n_years];
    for d in 0..N_DEST {
        let base = 8.0 + 2.5 * macro_rng.normal();
        let xr0 = macro_rng.normal();
        for t in 0..n_years {
            lnpergdp[d * n_years + t] = base + 0.03 * t as f64 + 0.05 * macro_rng.normal();
            xr[d * n_years + t] = xr0 + 0.1 * macro_rng.normal();
            dest_shock[d * n_years + t] = 0.004 * macro_rng.normal();
        }
    }
    // Province-year openness and marketisation.
    let mut open = vec![0.0; PROVINCES.len() * n_years];
    let mut market = vec![0.0; PROVINCES.len() * n_years];
    for p in 0..PROVINCES.len() {
        let o = 0.5 + 0.3 * macro_rng.normal();
        let m = 7.0 + 1.5 * macro_rng.normal();
        for t in 0..n_years {
            open[p * n_years + t] = o + 0.05 * macro_rng.normal();
            market[p * n_years + t] = m + 0.1 * t as f64 + 0.2 * macro_rng.normal();
        }
    }

    let mut c_firm = Vec::with_capacity(rows);
    let mut c_year = Vec::with_capacity(rows);
    let mut c_dest = Vec::with_capacity(rows);
    let mut c_prov = Vec::with_capacity(rows);
    let mut c_ind = Vec::with_capacity(rows);
    let mut x: Vec<Vec<Option<f64>>> = (0..12).map(|_| Vec::with_capacity(rows)).collect();
    let mut c_qua = Vec::with_capacity(rows);

    let mut firm = 0usize;
    'firms: while c_firm.len() < rows {
        firm += 1;
        let alpha = 0.05 * firm_rng.normal();
        let prov = firm_rng.below(PROVINCES.len() as u32) as usize;
        let ind = firm_rng.below(INDUSTRIES.len() as u32) as usize;
        let founded = 1985 + firm_rng.below(22) as i64;
        let entry = firm_rng.below(5) as usize;
        let span = if firm_rng.uniform() < 0.002 {
            1
        } else {
            3 + firm_rng.below((n_years - entry - 2) as u32) as usize
        };
        let innov = (0.3 * firm_rng.normal() + 0.5 * alpha / 0.05).exp() * 0.8;
        let n_dest = (1
            + firm_rng.poisson(4.5)
            + if firm_rng.uniform() < 0.1 {
                firm_rng.poisson(15.0)
            } else {
                0
            })
        .min(N_DEST as u32) as usize;
        let mut dests: Vec<usize> = Vec::with_capacity(n_dest);
        while dests.len() < n_dest {
            let mut u = firm_rng.uniform() * pop_total;
            let mut d = 0;
            while d + 1 < N_DEST && u > pop[d] {
                u -= pop[d];
                d += 1;
            }
            if !dests.contains(&d) {
                dests.push(d);
            }
        }
        let firm_dest_fx: Vec<f64> = dests.iter().map(|_| 0.04 * firm_rng.normal()).collect();
        let means: [f64; 6] = [
            0.02 + 0.01 * firm_rng.normal(),
            0.05 + 0.03 * firm_rng.normal(),
            4.0 + firm_rng.normal(),
            1.2 + 0.3 * firm_rng.normal(),
            5.5 + 0.8 * firm_rng.normal(),
            0.55 + 0.15 * firm_rng.normal(),
        ];
        for t in entry..(entry + span).min(n_years) {
            let year = *YEARS.start() + t as i64;
            let digtech = (1.0 + row_rng.poisson(innov * (1.0 + 0.15 * t as f64)) as f64).ln();
            let age = ((year - founded + 1) as f64).ln();
            let fy: [f64; 6] =
                std::array::from_fn(|j| means[j] + [0.005, 0.02, 0.3, 0.1, 0.2, 0.05][j] * row_rng.normal());
            for (dk, &d) in dests.iter().enumerate() {
                if row_rng.uniform() > 0.95 {
                    continue;
                }
                let dt = d * n_years + t;
                let pt = prov * n_years + t;
                let vals = [
                    digtech,
                    age,
                    fy[0],
                    fy[1],
                    fy[2],
                    fy[3],
                    fy[4],
                    fy[5],
                    open[pt],
                    market[pt],
                    lnpergdp[dt],
                    xr[dt],
                ];
                let mut q = 0.6 + alpha + firm_dest_fx[dk] + 0.01 * t as f64 + dest_shock[dt] + 0.06 * row_rng.normal();
                for (v, (_, b)) in vals.iter().zip(TRUE_COEFFICIENTS.iter()) {
                    q += b * v;
                }
                c_firm.push(100_000 + firm as i64);
                c_year.push(year);
                c_dest.push(format!("D{:03}", d + 1));
                c_prov.push(PROVINCES[prov]);
                c_ind.push(INDUSTRIES[ind]);
                // about one value in 20,000 of lnlp is missing, as in raw survey data
                let lnlp_missing = row_rng.below(20_000) == 0;
                for (j, v) in vals.iter().enumerate() {
                    x[j].push(if j == 6 && lnlp_missing { None } else { Some(*v) });
                }
                c_qua.push(q);
                if c_firm.len() == rows {
                    break 'firms;
                }
            }
        }
    }
    let mut columns = vec![
        Column::new("firm".into(), c_firm),
        Column::new("year".into(), c_year),
        Column::new("dest".into(), c_dest),
        Column::new("province".into(), c_prov),
        Column::new("industry".into(), c_ind),
        Column::new("qua".into(), c_qua),
    ];
    for ((name, _), v) in TRUE_COEFFICIENTS.iter().zip(x) {
        columns.push(Column::new((*name).into(), v));
    }
    DataFrame::new(rows, columns).map_err(|e| Error::Data(format!("building the demo panel: {e}")))
}
