//! Export product quality (Khandelwal, Schott & Wei 2013; Shi 2014), all products at once.
//!
//! For HS6 product g, firm i, destination m, year t, the demand system
//!   ln q_imt + σ_g ln p_imt = χ_gmt + γ_g ln GDP_region(i,t) + ε_imt
//! is estimated with destination-year effects χ_gmt (one effect per product × destination × year,
//! so every product keeps its own effects) and a per-product control coefficient γ_g. Quality is
//! λ̂ = ε̂/(σ_g − 1) and is min-max standardised within product: r-Qua = (λ̂ − min_g)/(max_g − min_g).
//!
//! Batching: instead of one regression per product, every product's rows are demeaned together
//! by the product × destination × year effect (one call to the [`Demeaner`], CPU or GPU), and
//! γ_g is a per-product ratio of segmented sums — the estimates equal those of separate
//! per-product fits (checked by a test), at the cost of one pass over the data.
//!
//! σ_g: Broda & Weinstein (2006) elasticities for China by HS 3-digit (shipped as
//! `data/bw2006_sigma_china_hs3.csv`). 1/(σ − 1) explodes as σ → 1, so σ is floored at
//! [`MIN_SIGMA`] = 1.34, the smallest value in the Chinese table. Optionally σ_g is estimated by
//! per-product 2SLS of ln q on ln p with the firm's mean log price of the product in its other
//! destinations that year as the instrument (Shi 2014's approach); products whose estimate is
//! not above [`MIN_SIGMA`] or whose instrument is missing keep the Broda–Weinstein value.

use std::collections::BTreeMap;

use crate::demean::{Absorb, DemeanOptions, Demeaner};
use crate::error::{Error, Result};
use crate::fe::FixedEffect;

/// The smallest elasticity used (Broda–Weinstein's minimum for China).
pub const MIN_SIGMA: f64 = 1.34;

const BW_TABLE: &str = include_str!("../../data/bw2006_sigma_china_hs3.csv");

/// Broda–Weinstein elasticities by HS 3-digit code.
#[derive(Debug, Clone)]
pub struct SigmaTable {
    by_hs3: BTreeMap<u32, f64>,
    median: f64,
}

impl SigmaTable {
    /// The shipped Broda–Weinstein (2006) table for China.
    pub fn broda_weinstein() -> Result<SigmaTable> {
        let mut by_hs3 = BTreeMap::new();
        for (k, line) in BW_TABLE.lines().enumerate().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let bad = || Error::Data(format!("data/bw2006_sigma_china_hs3.csv row {}: `{line}`", k + 1));
            if f.len() != 4 {
                return Err(bad());
            }
            let hs3: f64 = f[2].trim().parse().map_err(|_| bad())?;
            let sigma: f64 = f[3].trim().parse().map_err(|_| bad())?;
            by_hs3.insert(hs3 as u32, sigma);
        }
        let mut v: Vec<f64> = by_hs3.values().copied().collect();
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        Ok(SigmaTable { by_hs3, median })
    }

    /// (HS3, σ) pairs in code order.
    pub fn entries(&self) -> impl Iterator<Item = (u32, f64)> + '_ {
        self.by_hs3.iter().map(|(&h, &s)| (h, s))
    }

    /// σ for an HS6 (or longer) code: its HS3 entry, else the table's median; floored at
    /// [`MIN_SIGMA`]. The flag says whether the HS3 code was in the table.
    pub fn for_code(&self, hs: &str) -> (f64, bool) {
        let hs3 = hs.get(..3).and_then(|h| h.parse::<u32>().ok());
        match hs3.and_then(|h| self.by_hs3.get(&h)) {
            Some(&s) => (s.max(MIN_SIGMA), true),
            None => (self.median.max(MIN_SIGMA), false),
        }
    }
}

/// Rows of the quality regressions: one per firm × product × destination × year flow.
#[derive(Debug, Clone, Default)]
pub struct Flows {
    /// Product index (0..products) per flow.
    pub product: Vec<u32>,
    /// Product × destination × year cell per flow (0..cells).
    pub cell: Vec<u32>,
    pub cells: usize,
    pub ln_q: Vec<f64>,
    pub ln_p: Vec<f64>,
    /// ln GDP of the firm's region (the control).
    pub control: Vec<f64>,
    /// Instrument for ln p (firm's mean ln p of the product in its other destinations that
    /// year); NaN where the firm sold the product in one destination only.
    pub instrument: Vec<f64>,
}

/// Per-flow quality and per-product estimates.
#[derive(Debug, Clone)]
pub struct Quality {
    /// λ̂ per flow.
    pub lambda: Vec<f64>,
    /// Min-max standardised λ̂ within product (NaN for a product with a single distinct value).
    pub standardised: Vec<f64>,
    /// γ_g, the control's coefficient, per product.
    pub control_coef: Vec<f64>,
    /// σ_g used per product.
    pub sigma: Vec<f64>,
}

impl Quality {
    /// Standardise λ̂ within product and keep the per-product estimates.
    fn new(lambda: Vec<f64>, product: &[u32], control_coef: Vec<f64>, sigma: &[f64]) -> Quality {
        let standardised = min_max_within(&lambda, product, sigma.len());
        Quality {
            lambda,
            standardised,
            control_coef,
            sigma: sigma.to_vec(),
        }
    }
}

fn cell_effect(f: &Flows) -> FixedEffect {
    FixedEffect {
        name: "product^destination^year".into(),
        ids: f.cell.clone(),
        levels: f.cells,
    }
}

/// Estimate every product's quality in one batched job. `sigma[g]` is product g's elasticity.
pub fn estimate(flows: &Flows, sigma: &[f64], demeaner: &dyn Demeaner) -> Result<Quality> {
    let n = flows.product.len();
    if n == 0 {
        return Err(Error::Data("no export flows to estimate quality from".into()));
    }
    let products = sigma.len();
    if let Some(bad) = sigma.iter().position(|s| !(*s > 1.0) || !s.is_finite()) {
        return Err(Error::Data(format!(
            "product {bad}: elasticity σ = {} must exceed 1",
            sigma[bad]
        )));
    }
    let y: Vec<f64> = (0..n)
        .map(|i| flows.ln_q[i] + sigma[flows.product[i] as usize] * flows.ln_p[i])
        .collect();
    let fe = cell_effect(flows);
    let absorb = Absorb::new(vec![&fe], None);
    let dm = demeaner.demean(&absorb, vec![y, flows.control.clone()], &DemeanOptions::default())?;
    let (yt, xt) = (&dm.columns[0], &dm.columns[1]);
    let (mut sxy, mut sxx, mut sx2) = (vec![0.0; products], vec![0.0; products], vec![0.0; products]);
    for i in 0..n {
        let g = flows.product[i] as usize;
        sxy[g] += xt[i] * yt[i];
        sxx[g] += xt[i] * xt[i];
        sx2[g] += flows.control[i] * flows.control[i];
    }
    // a control that the cells absorb (fixest's collinearity rule) gets coefficient 0
    let coef: Vec<f64> = (0..products)
        .map(|g| {
            if sxx[g] > 1e-10 * sx2[g].max(1e-300) {
                sxy[g] / sxx[g]
            } else {
                0.0
            }
        })
        .collect();
    let lambda: Vec<f64> = (0..n)
        .map(|i| {
            let g = flows.product[i] as usize;
            (yt[i] - coef[g] * xt[i]) / (sigma[g] - 1.0)
        })
        .collect();
    Ok(Quality::new(lambda, &flows.product, coef, sigma))
}

/// (v − min_g)/(max_g − min_g) within each group g; NaN where a group has no spread.
pub fn min_max_within(v: &[f64], group: &[u32], groups: usize) -> Vec<f64> {
    let mut lo = vec![f64::INFINITY; groups];
    let mut hi = vec![f64::NEG_INFINITY; groups];
    for (x, &g) in v.iter().zip(group) {
        lo[g as usize] = lo[g as usize].min(*x);
        hi[g as usize] = hi[g as usize].max(*x);
    }
    v.iter()
        .zip(group)
        .map(|(x, &g)| {
            let r = hi[g as usize] - lo[g as usize];
            if r > 1e-12 * (1.0 + hi[g as usize].abs()) {
                (x - lo[g as usize]) / r
            } else {
                f64::NAN
            }
        })
        .collect()
}

/// Shi (2014)'s variant: σ_g from per-product 2SLS of ln q on ln p and the control with
/// product × destination × year effects, ln p instrumented by the firm's price of the product in
/// its other destinations; all products in one batched demeaning. Returns σ̂_g, or `fallback[g]`
/// where the estimate is not above [`MIN_SIGMA`] or the product has fewer than 10 instrumented
/// flows. Rows without an instrument are left out of the 2SLS.
pub fn estimate_sigma(flows: &Flows, fallback: &[f64], demeaner: &dyn Demeaner) -> Result<(Vec<f64>, usize)> {
    let keep: Vec<usize> = (0..flows.product.len())
        .filter(|&i| flows.instrument[i].is_finite())
        .collect();
    let products = fallback.len();
    if keep.is_empty() {
        return Ok((fallback.to_vec(), 0));
    }
    let (cell, cells) = crate::fe::index::compact(&flows.cell, flows.cells, &keep);
    let fe = FixedEffect {
        name: "product^destination^year".into(),
        ids: cell,
        levels: cells,
    };
    let pick = |v: &[f64]| keep.iter().map(|&i| v[i]).collect::<Vec<f64>>();
    let absorb = Absorb::new(vec![&fe], None);
    let dm = demeaner.demean(
        &absorb,
        vec![
            pick(&flows.ln_q),
            pick(&flows.ln_p),
            pick(&flows.control),
            pick(&flows.instrument),
        ],
        &DemeanOptions::default(),
    )?;
    let [y, p, x, z] = [&dm.columns[0], &dm.columns[1], &dm.columns[2], &dm.columns[3]];
    // per product: Z'X (instruments z, x; regressors p, x) and Z'y
    let mut zx = vec![[0.0f64; 4]; products];
    let mut zy = vec![[0.0f64; 2]; products];
    let mut count = vec![0usize; products];
    for (k, &i) in keep.iter().enumerate() {
        let g = flows.product[i] as usize;
        zx[g][0] += z[k] * p[k];
        zx[g][1] += z[k] * x[k];
        zx[g][2] += x[k] * p[k];
        zx[g][3] += x[k] * x[k];
        zy[g][0] += z[k] * y[k];
        zy[g][1] += x[k] * y[k];
        count[g] += 1;
    }
    let mut used = 0;
    let sigma = (0..products)
        .map(|g| {
            let [a, b, c, d] = zx[g];
            let det = a * d - b * c;
            let scale = (a.abs() + d.abs()).powi(2).max(1e-300);
            if count[g] < 10 || det.abs() < 1e-10 * scale {
                return fallback[g];
            }
            let beta_p = (d * zy[g][0] - b * zy[g][1]) / det;
            let s = -beta_p;
            if s.is_finite() && s > MIN_SIGMA {
                used += 1;
                s
            } else {
                fallback[g]
            }
        })
        .collect();
    Ok((sigma, used))
}

/// The same estimates as [`estimate`] from a loop of separate per-product fits (the way a
/// researcher would write it with `feols` per product) — kept for the benchmark that measures
/// what batching buys, and for the test that both agree.
pub fn estimate_by_loop(flows: &Flows, sigma: &[f64], demeaner: &dyn Demeaner) -> Result<Quality> {
    let n = flows.product.len();
    let products = sigma.len();
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); products];
    for i in 0..n {
        rows[flows.product[i] as usize].push(i);
    }
    let mut lambda = vec![f64::NAN; n];
    let mut coef = vec![0.0; products];
    for (g, r) in rows.iter().enumerate() {
        if r.is_empty() {
            continue;
        }
        let (ids, levels) = crate::fe::index::compact(&flows.cell, flows.cells, r);
        let fe = FixedEffect {
            name: "destination^year".into(),
            ids,
            levels,
        };
        let y: Vec<f64> = r.iter().map(|&i| flows.ln_q[i] + sigma[g] * flows.ln_p[i]).collect();
        let x: Vec<f64> = r.iter().map(|&i| flows.control[i]).collect();
        let sx2: f64 = x.iter().map(|v| v * v).sum();
        let absorb = Absorb::new(vec![&fe], None);
        let dm = demeaner.demean(&absorb, vec![y, x], &DemeanOptions::default())?;
        let (yt, xt) = (&dm.columns[0], &dm.columns[1]);
        let sxx: f64 = xt.iter().map(|v| v * v).sum();
        let sxy: f64 = xt.iter().zip(yt).map(|(a, b)| a * b).sum();
        coef[g] = if sxx > 1e-10 * sx2.max(1e-300) { sxy / sxx } else { 0.0 };
        for (k, &i) in r.iter().enumerate() {
            lambda[i] = (yt[k] - coef[g] * xt[k]) / (sigma[g] - 1.0);
        }
    }
    Ok(Quality::new(lambda, &flows.product, coef, sigma))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demean::cpu::CpuDemeaner;

    /// One product, two destination-year cells of two flows each: hand-computed λ.
    #[test]
    fn tiny_product_quality_by_hand() {
        // σ = 3; y = ln q + 3 ln p; cells {0,1} and {2,3}; control constant within cells
        // (absorbed, so γ = 0): λ = (y − cell mean)/(σ − 1)
        let flows = Flows {
            product: vec![0, 0, 0, 0],
            cell: vec![0, 0, 1, 1],
            cells: 2,
            ln_q: vec![1.0, 2.0, 0.0, 3.0],
            ln_p: vec![0.5, 0.0, 1.0, 0.0],
            control: vec![1.0, 1.0, 2.0, 2.0],
            instrument: vec![f64::NAN; 4],
        };
        // y = 2.5, 2, 3, 3 → cell means 2.25, 3 → residuals .25, −.25, 0, 0 → λ = .125, −.125, 0, 0
        let q = estimate(&flows, &[3.0], &CpuDemeaner).unwrap();
        let want = [0.125, -0.125, 0.0, 0.0];
        for (a, b) in q.lambda.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        assert_eq!(q.control_coef, vec![0.0]);
        // standardised: (λ + .125)/.25
        let s = [1.0, 0.0, 0.5, 0.5];
        for (a, b) in q.standardised.iter().zip(s) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    #[test]
    fn batched_estimates_equal_a_loop_of_per_product_fits() {
        let mut s = crate::rng::Stream::new(5, 1);
        let n = 3000;
        let product: Vec<u32> = (0..n).map(|_| s.below(7)).collect();
        let cell: Vec<u32> = product.iter().map(|&g| g * 20 + s.below(20)).collect();
        let flows = Flows {
            product: product.clone(),
            cell,
            cells: 140,
            ln_q: (0..n).map(|_| 5.0 + s.normal()).collect(),
            ln_p: (0..n).map(|_| s.normal()).collect(),
            control: (0..n).map(|_| 10.0 + s.normal()).collect(),
            instrument: vec![f64::NAN; n],
        };
        let sigma: Vec<f64> = (0..7).map(|g| 1.34 + g as f64).collect();
        let a = estimate(&flows, &sigma, &CpuDemeaner).unwrap();
        let b = estimate_by_loop(&flows, &sigma, &CpuDemeaner).unwrap();
        for i in 0..n {
            assert!((a.lambda[i] - b.lambda[i]).abs() < 1e-10);
            assert!((a.standardised[i] - b.standardised[i]).abs() < 1e-10);
        }
        for g in 0..7 {
            assert!((a.control_coef[g] - b.control_coef[g]).abs() < 1e-10);
            assert!(a.control_coef[g] != 0.0);
        }
    }

    #[test]
    fn sigma_table_floors_and_falls_back() {
        let t = SigmaTable::broda_weinstein().unwrap();
        let (s854, found) = t.for_code("854231");
        assert!(found && (s854 - 1.3400956).abs() < 1e-6);
        assert!(t.entries().all(|(_, s)| s >= MIN_SIGMA - 1e-3));
        let (_, found) = t.for_code("999999");
        assert!(!found);
        assert!(t.for_code("").0 >= MIN_SIGMA);
    }

    #[test]
    fn sigma_is_recovered_by_2sls_with_other_market_prices() {
        // ln q = χ_cell − σ ln p + (demand shock correlated with ln p); the other-market price
        // shares the firm's cost shock but not the demand shock.
        let mut s = crate::rng::Stream::new(9, 2);
        let n = 20_000;
        let sigma_true = 2.5;
        let (mut product, mut cell, mut lq, mut lp, mut z) = (vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..n {
            let c = s.below(50);
            let cost = s.normal();
            let shock = s.normal();
            let p = cost + 0.5 * shock;
            product.push(0u32);
            cell.push(c);
            lp.push(p);
            lq.push(0.1 * c as f64 - sigma_true * p + shock);
            z.push(cost + 0.3 * s.normal());
        }
        let flows = Flows {
            product,
            cell,
            cells: 50,
            ln_q: lq,
            ln_p: lp,
            control: (0..n).map(|_| s.normal()).collect(),
            instrument: z,
        };
        let (sig, used) = estimate_sigma(&flows, &[9.0], &CpuDemeaner).unwrap();
        assert_eq!(used, 1);
        assert!((sig[0] - sigma_true).abs() < 0.1, "σ̂ = {}", sig[0]);
    }
}
