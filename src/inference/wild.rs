//! Restricted wild cluster bootstrap (WCR) for one coefficient, with every fixed effect
//! absorbed, by the algorithm of Roodman, MacKinnon, Nielsen & Webb (2019, "Fast and wild",
//! Stata Journal 19(1)), whose cost per replicate is O(G²) whatever N is.
//!
//! After partialling out the fixed effects (and √w-scaling), with X̃ the regressors, j the tested
//! coefficient and H0: β_j = β0:
//! * restricted fit: ỹ − β0 x̃_j on X̃_{−j} gives residuals ũ;
//! * a = M_{X̃−j} x̃_j / ‖M_{X̃−j} x̃_j‖², so that β*_j − β0 = a'(ũ ⊙ v) for a bootstrap sample
//!   y* = X̃_{−j} β̃ + β0 x̃_j + ũ ⊙ v with cluster weights v_g;
//! * per cluster s_g = Σ_{i∈g} a_i ũ_i, d_h = X̃_h'ũ_h, f_g = (X̃'X̃)⁻¹X̃_g'a_g, C_gh = f_g'd_h,
//!   and E_gh = Σ_{i∈g} a_i [P_D(ũ ⊙ 1_h)]_i, the part of cluster h's reweighted residuals that
//!   the fixed effects absorb again in each bootstrap regression (zero when every effect is
//!   nested in the clusters; otherwise it must be kept — dropping it gives wrong t*, which the
//!   brute-force test catches). The CRV1 score of cluster g in replicate b is
//!   v_g s_g − ((C + E)v)_g, so t* = Σ_g v_g s_g / √(q Σ_g (v_g s_g − ((C+E)v)_g)²),
//!   q = (N−1)/(N−K−A) · G/(G−1). Everything is linear in β0, so the G×G matrices are built once
//!   (2G demeanings, batched) and every β0 of the interval search costs O(B·G²).
//!
//! The p-value is the share of replicates with |t*| > |t| (symmetric, as wildboottest and
//! boottest's default). When the distinct weight vectors are no more than `reps` — 2^G with
//! Rademacher weights, 6^G with Webb's — every one is used exactly once (full enumeration, as
//! boottest and wildboottest do), whatever the seed, and the p-value is exact. Confidence
//! intervals invert the test over β0 with the same draws (bisection on each side).
//!
//! Few clusters: t*(−v) = −t*(v), so |t*| comes in pairs and an enumerated p-value is 0 or at
//! least 2/D for D distinct vectors. When 2/D exceeds the test's size (5%, or 1 − level when
//! smaller), a test rejects only when |t| is beyond every draw (p = 0) and the interval ends at
//! the most extreme draws: the result then carries a warning ([`WildResult::warnings`], printed
//! in every format and on stderr) that names D and suggests Webb weights where they have more.
//! The weight vectors, drawn or enumerated, are formed on the host whatever the backend (a GPU
//! only demeans), so a seed gives the same replicates on every backend and in every shard.
//!
//! A replicate is kept as five numbers ([`WildDraw`]), from which its t* at any β0 follows in
//! O(1): with α = diag(v)s(0) − (C+E)(0)v and β = diag(v)s_x − (C+E)_x v (so the scores at β0
//! are α − β0β), m = α'β/β'β and o = ‖α − mβ‖², the sum of squared scores is
//! o + (m − β0)²‖β‖² — two non-negative terms, no cancellation — and the numerator is
//! v's = v's(0) − β0 v's_x. The interval search then costs O(B) per β0, and a shard's file
//! (`fegpu boot --shard`) holds all that the p-value and the interval need: merged shards give
//! the single run's interval exactly.

use serde::{Deserialize, Serialize};

use super::replicates::{wild_weight, WildWeights, WEBB_POINTS};
use super::shard::{range_of, Shard};
use crate::data::prepare::Design;
use crate::demean::{Absorb, DemeanOptions, Demeaner};
use crate::error::{Error, Result};
use crate::estimate::ols::solve;
use crate::estimate::Ssc;
use crate::fe::dof::effects_to_project;
use crate::fe::{absorbed_dof, FixedEffect};
use crate::linalg::cholesky_inverse;
use crate::linalg::passes::cross_products;

/// Options of a wild cluster bootstrap test.
#[derive(Debug, Clone)]
pub struct WildOptions {
    pub coefficient: String,
    pub null: f64,
    pub reps: usize,
    pub weights: WildWeights,
    pub seed: u64,
    /// Confidence level of the inverted-test interval (e.g. 0.95); `None` skips it.
    pub level: Option<f64>,
    pub ssc: Ssc,
    pub demean: DemeanOptions,
}

/// Result of a WCR test.
#[derive(Debug, Clone, Serialize)]
pub struct WildResult {
    pub coefficient: String,
    pub estimate: f64,
    pub null: f64,
    pub t: f64,
    pub p: f64,
    pub reps: usize,
    /// Replicates whose statistics differ (bit for bit) from every other's: under full
    /// enumeration `reps`; with random draws, fewer when weight vectors repeat.
    pub distinct_draws: usize,
    pub full_enumeration: bool,
    pub clusters: usize,
    pub weights: WildWeights,
    pub seed: u64,
    pub ci: Option<(f64, f64)>,
    pub level: Option<f64>,
    /// Why the p-value or the interval may not mean what it seems (too few distinct draws for
    /// the test's size); empty when there is nothing to say.
    pub warnings: Vec<String>,
    /// The bootstrap t statistics (for plots).
    #[serde(skip)]
    pub t_boot: Vec<f64>,
}

/// What the observed fit contributes to a [`WildResult`]; with the replicates' [`WildDraw`]s,
/// everything [`assemble`] needs (a shard file stores it, `crate::resampling`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WildObserved {
    pub coefficient: String,
    pub estimate: f64,
    /// CRV1 variance of the estimate (unrestricted), with the small-sample factor `q`.
    pub variance: f64,
    /// q = (N−1)/(N−K−A) · G/(G−1).
    pub q: f64,
    pub null: f64,
    /// Replicates of the whole run: `reps`, or the number of distinct weight vectors (2^G
    /// Rademacher, 6^G Webb) under full enumeration.
    pub total: usize,
    pub full_enumeration: bool,
    pub clusters: usize,
    pub weights: WildWeights,
    pub seed: u64,
    pub level: Option<f64>,
}

impl WildObserved {
    /// The observed t for H0: β_j = β0.
    fn t(&self, beta0: f64) -> f64 {
        (self.estimate - beta0) / self.variance.sqrt()
    }
}

/// One replicate of the WCR test in closed form over β0 (module doc):
/// t*(β0) = (num0 − β0·num1) / √(q·(ortho + (center − β0)²·slope)).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WildDraw {
    pub num0: f64,
    pub num1: f64,
    pub center: f64,
    pub ortho: f64,
    pub slope: f64,
}

impl WildDraw {
    fn t(&self, beta0: f64, q: f64) -> f64 {
        let c = self.center - beta0;
        (self.num0 - beta0 * self.num1) / (q * (self.ortho + c * c * self.slope)).sqrt()
    }
}

/// The observed fit and the replicates `first..first + draws.len()` of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct WildDraws {
    pub observed: WildObserved,
    pub first: usize,
    pub draws: Vec<WildDraw>,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The cluster-level pieces of the WCR statistic, linear in β0: value = part0 − β0 · partx.
struct Linear<T> {
    at0: T,
    atx: T,
}

/// Everything about the partialled problem that the bootstrap needs.
struct Setup {
    n: usize,
    k: usize,
    x: Vec<Vec<f64>>,
    y: Vec<f64>,
    ids: Vec<u32>,
    g: usize,
    q: f64,
    a: Vec<f64>,
    /// (X̃'X̃)⁻¹
    xtx_inv: crate::linalg::Mat,
    s: Linear<Vec<f64>>,
    /// (C + E), G×G
    ce: Linear<Vec<Vec<f64>>>,
    beta_hat: f64,
}

impl Setup {
    /// The replicate of cluster weights `v` in closed form over β0 (see [`WildDraw`]).
    fn draw(&self, v: &[f64]) -> WildDraw {
        let g = self.g;
        let scores =
            |s: &[f64], ce: &[Vec<f64>]| -> Vec<f64> { (0..g).map(|c| v[c] * s[c] - dot(&ce[c], v)).collect() };
        let alpha = scores(&self.s.at0, &self.ce.at0);
        let beta = scores(&self.s.atx, &self.ce.atx);
        let slope = dot(&beta, &beta);
        let center = if slope > 0.0 { dot(&alpha, &beta) / slope } else { 0.0 };
        let ortho = alpha
            .iter()
            .zip(&beta)
            .map(|(a, b)| (a - center * b) * (a - center * b))
            .sum();
        WildDraw {
            num0: dot(v, &self.s.at0),
            num1: dot(v, &self.s.atx),
            center,
            ortho,
            slope,
        }
    }

    /// CRV1 variance of β̂_j from the unrestricted residuals.
    fn observed_variance(&self) -> f64 {
        // unrestricted residuals and CRV1 variance of β_j
        let xty: Vec<f64> = self.x.iter().map(|c| dot(c, &self.y)).collect();
        let beta = self.xtx_inv.mul_vec(&xty);
        let e: Vec<f64> = (0..self.n)
            .map(|i| self.y[i] - (0..self.k).map(|c| beta[c] * self.x[c][i]).sum::<f64>())
            .collect();
        let mut sg = vec![0.0; self.g];
        for i in 0..self.n {
            sg[self.ids[i] as usize] += self.a[i] * e[i];
        }
        self.q * sg.iter().map(|v| v * v).sum::<f64>()
    }
}

/// The number of distinct weight vectors for `g` clusters: 2^g (Rademacher) or 6^g (Webb);
/// `None` when it does not fit in a u64 (no request can be that large).
pub fn weight_vectors(kind: WildWeights, g: usize) -> Option<u64> {
    let base: u64 = match kind {
        WildWeights::Rademacher => 2,
        WildWeights::Webb => 6,
    };
    base.checked_pow(u32::try_from(g).ok()?)
}

/// Weight vector `b` of the full enumeration (0 ≤ b < [`weight_vectors`]): cluster c's weight is
/// base-2 (Rademacher: 0 → +1, 1 → −1) or base-6 (Webb: an index of [`WEBB_POINTS`]) digit c of
/// b, so the enumeration lists every vector exactly once and does not depend on the seed.
pub fn enumerated_weights(kind: WildWeights, g: usize, b: usize) -> Vec<f64> {
    let mut rest = b;
    (0..g)
        .map(|_| match kind {
            WildWeights::Rademacher => {
                let sign = if rest & 1 == 1 { -1.0 } else { 1.0 };
                rest >>= 1;
                sign
            }
            WildWeights::Webb => {
                let point = WEBB_POINTS[rest % 6];
                rest /= 6;
                point
            }
        })
        .collect()
}

/// The warning of a run whose distinct weight vectors are too few for its test (module doc):
/// with D of them a p-value is 0 or at least 2/D, so at size α < 2/D the test rejects only
/// beyond every draw.
fn few_draws_warning(o: &WildObserved) -> Option<String> {
    let d = weight_vectors(o.weights, o.clusters)?;
    let alpha = o.level.map_or(0.05, |l| (1.0 - l).min(0.05));
    if 2.0 / d as f64 <= alpha {
        return None;
    }
    let (name, base) = match o.weights {
        WildWeights::Rademacher => ("Rademacher sign", 2),
        WildWeights::Webb => ("Webb", 6),
    };
    let how = if o.full_enumeration {
        "all enumerated".to_string()
    } else {
        format!("drawn at random with repeats; all of them are enumerated with --reps {d} or more")
    };
    let pct = |a: f64| format!("{}%", (a * 100.0 * 1000.0).round() / 1000.0);
    let interval = match o.level {
        Some(l) => format!(
            ", and the {} interval ends where |t| meets the most extreme draw",
            pct(l)
        ),
        None => String::new(),
    };
    let better = match o.weights {
        WildWeights::Rademacher => match weight_vectors(WildWeights::Webb, o.clusters) {
            Some(w) if 2.0 / w as f64 <= alpha => format!(
                "use --weights-type webb (6^{} = {w} distinct draws)",
                o.clusters
            ),
            Some(w) => format!(
                "--weights-type webb has 6^{} = {w} distinct draws, still too few; with so few clusters no wild bootstrap test at this level is informative",
                o.clusters
            ),
            None => "use --weights-type webb".into(),
        },
        WildWeights::Webb => {
            "with so few clusters no wild bootstrap test at this level is informative".into()
        }
    };
    Some(format!(
        "WARNING: only {d} distinct wild bootstrap draws ({base}^{g} {name} vectors for {g} clusters, {how}): the p-value is 0 or at least 2/{d} = {step:.4}, so a test at the {size} level rejects only when |t| exceeds every bootstrap |t*|{interval}; {better}.",
        g = o.clusters,
        step = 2.0 / d as f64,
        size = pct(alpha),
    ))
}

/// Replicates whose five numbers differ, bit for bit, from every other replicate's.
fn distinct(draws: &[WildDraw]) -> usize {
    let bits = |d: &WildDraw| [d.num0, d.num1, d.center, d.ortho, d.slope].map(f64::to_bits);
    draws.iter().map(bits).collect::<std::collections::HashSet<_>>().len()
}

/// Share of |t*| strictly above |t|; values within 1e-10 (relative) of |t| are ties (the
/// identity draw reproduces t up to rounding) and do not count.
fn p_value(t: f64, t_boot: &[f64]) -> f64 {
    let bar = t.abs() * (1.0 + 1e-10);
    t_boot.iter().filter(|&&b| b.abs() > bar).count() as f64 / t_boot.len() as f64
}

/// Run the WCR bootstrap of `opts.coefficient` on `design` (which must have one cluster var).
pub fn wild_bootstrap(design: &Design, opts: &WildOptions, demeaner: &dyn Demeaner) -> Result<WildResult> {
    Ok(assemble(&wild_draws(design, opts, None, demeaner)?))
}

/// The observed fit and the replicates of `shard` (all of them with `None`); [`assemble`] turns
/// them into the result.
pub fn wild_draws(
    design: &Design,
    opts: &WildOptions,
    shard: Option<Shard>,
    demeaner: &dyn Demeaner,
) -> Result<WildDraws> {
    if design.clusters.len() != 1 {
        return Err(Error::Usage(
            "the wild cluster bootstrap needs exactly one cluster variable (--cluster VAR)".into(),
        ));
    }
    if !design.endog.is_empty() {
        return Err(Error::Usage(
            "the wild cluster bootstrap is implemented for OLS models, not IV".into(),
        ));
    }
    let cl = &design.clusters[0];
    let n = design.nobs();
    let w = design.weights.as_deref();
    let j_all = design
        .x_names
        .iter()
        .position(|x| x == &opts.coefficient)
        .ok_or_else(|| {
            Error::Usage(format!(
                "`{}` is not a regressor of the model (regressors: {})",
                opts.coefficient,
                design.x_names.join(", ")
            ))
        })?;
    let mut cols = Vec::with_capacity(design.x.len() + 1);
    cols.push(design.y.clone());
    cols.extend(design.x.iter().cloned());
    if !design.fes.is_empty() {
        let project: Vec<&FixedEffect> = effects_to_project(&design.fes)
            .into_iter()
            .map(|k| &design.fes[k])
            .collect();
        cols = demeaner.demean(&Absorb::new(project, w), cols, &opts.demean)?.columns;
    }
    if let Some(w) = w {
        for c in cols.iter_mut() {
            for (v, wi) in c.iter_mut().zip(w) {
                *v *= wi.sqrt();
            }
        }
    }
    let y = cols.remove(0);
    let fit = solve(&design.x_names, &cols, &y, None, None, 1e-10);
    let j = fit.kept.iter().position(|&c| c == j_all).ok_or_else(|| {
        Error::Estimation(format!(
            "`{}` was dropped as collinear; it cannot be tested",
            opts.coefficient
        ))
    })?;
    let x: Vec<Vec<f64>> = fit.kept.iter().map(|&c| cols[c].clone()).collect();
    let k = x.len();
    let others: Vec<Vec<f64>> = (0..k).filter(|&c| c != j).map(|c| x[c].clone()).collect();
    let xperp = if others.is_empty() {
        x[j].clone()
    } else {
        let names: Vec<String> = (0..others.len()).map(|c| c.to_string()).collect();
        solve(&names, &others, &x[j], None, None, 0.0).resid
    };
    let xx = dot(&xperp, &xperp);
    let a: Vec<f64> = xperp.iter().map(|v| v / xx).collect();
    let xref: Vec<&[f64]> = x.iter().map(|c| c.as_slice()).collect();
    let xtx_inv = cholesky_inverse(&crate::linalg::cholesky_drop(&cross_products(&xref, None), 0.0).l);
    let g = cl.levels;
    let mut xa = vec![vec![0.0; k]; g];
    for i in 0..n {
        let c = cl.ids[i] as usize;
        for (m, xm) in x.iter().enumerate() {
            xa[c][m] += xm[i] * a[i];
        }
    }
    let f: Vec<Vec<f64>> = xa.iter().map(|v| xtx_inv.mul_vec(v)).collect();
    let cluster_ids: Vec<&[u32]> = vec![cl.ids.as_slice()];
    let df_a = absorbed_dof(&design.fes, &cluster_ids, opts.ssc.dof_rule()).df_a;
    let q = (n as f64 - 1.0) / (n as f64 - k as f64 - df_a as f64) * g as f64 / (g as f64 - 1.0);

    // Restricted residuals are linear in β0: ũ(β0) = M_{X−j} ỹ − β0 M_{X−j} x̃_j.
    let resid_others = |v: &[f64]| -> Vec<f64> {
        if others.is_empty() {
            return v.to_vec();
        }
        let names: Vec<String> = (0..others.len()).map(|c| c.to_string()).collect();
        solve(&names, &others, v, None, None, 0.0).resid
    };
    let u0 = resid_others(&y);
    let ux = resid_others(&x[j]);
    let project: Vec<&FixedEffect> = effects_to_project(&design.fes)
        .into_iter()
        .map(|k| &design.fes[k])
        .collect();
    let pieces = |u: &[f64]| -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
        let mut s = vec![0.0; g];
        let mut d = vec![vec![0.0; k]; g];
        for i in 0..n {
            let c = cl.ids[i] as usize;
            s[c] += a[i] * u[i];
            for (dc, xc) in d[c].iter_mut().zip(&x) {
                *dc += xc[i] * u[i];
            }
        }
        let mut ce: Vec<Vec<f64>> = (0..g).map(|r| (0..g).map(|h| dot(&f[r], &d[h])).collect()).collect();
        if !project.is_empty() {
            // E_gh = Σ_{i∈g} a_i [P_D(ũ ⊙ 1_h)]_i = δ_gh s_g − Σ_{i∈g} a_i [M_D(ũ ⊙ 1_h)]_i,
            // with the weighted projection when there are weights (columns live in √w space).
            let sqrt_w: Option<Vec<f64>> = w.map(|w| w.iter().map(|v| v.sqrt()).collect());
            let cols: Vec<Vec<f64>> = (0..g)
                .map(|h| {
                    (0..n)
                        .map(|i| {
                            if cl.ids[i] as usize == h {
                                u[i] / sqrt_w.as_ref().map_or(1.0, |s| s[i])
                            } else {
                                0.0
                            }
                        })
                        .collect()
                })
                .collect();
            let md = demeaner
                .demean(&Absorb::new(project.clone(), w), cols, &opts.demean)?
                .columns;
            for (h, col) in md.iter().enumerate() {
                let mut e_col = vec![0.0; g];
                for i in 0..n {
                    e_col[cl.ids[i] as usize] += a[i] * col[i] * sqrt_w.as_ref().map_or(1.0, |s| s[i]);
                }
                for r in 0..g {
                    let e_rh = if r == h { s[r] } else { 0.0 } - e_col[r];
                    ce[r][h] += e_rh;
                }
            }
        }
        Ok((s, ce))
    };
    let (s0, ce0) = pieces(&u0)?;
    let (sx, cex) = pieces(&ux)?;
    let setup = Setup {
        n,
        k,
        x,
        y,
        ids: cl.ids.clone(),
        g,
        q,
        a,
        xtx_inv,
        s: Linear { at0: s0, atx: sx },
        ce: Linear { at0: ce0, atx: cex },
        beta_hat: fit.beta[j],
    };

    // Draws: every distinct weight vector once when they are no more than the request.
    let full = weight_vectors(opts.weights, g).is_some_and(|d| d <= opts.reps as u64);
    let total = if full {
        weight_vectors(opts.weights, g).unwrap() as usize
    } else {
        opts.reps
    };
    let range = range_of(shard, total);
    let v_of = |b: usize| -> Vec<f64> {
        if full {
            enumerated_weights(opts.weights, g, b)
        } else {
            (0..g as u32)
                .map(|c| wild_weight(opts.seed, opts.weights, b as u32, c))
                .collect()
        }
    };
    use rayon::prelude::*;
    let draws: Vec<WildDraw> = range.clone().into_par_iter().map(|b| setup.draw(&v_of(b))).collect();
    let observed = WildObserved {
        coefficient: opts.coefficient.clone(),
        estimate: setup.beta_hat,
        variance: setup.observed_variance(),
        q: setup.q,
        null: opts.null,
        total,
        full_enumeration: full,
        clusters: g,
        weights: opts.weights,
        seed: opts.seed,
        level: opts.level,
    };
    Ok(WildDraws {
        observed,
        first: range.start,
        draws,
    })
}

/// The test's p-value and interval from the observed fit and every replicate of the run, in
/// replicate order (a single run and `fegpu merge` both end here).
pub fn assemble(draws: &WildDraws) -> WildResult {
    let o = &draws.observed;
    let t_boot_at = |b0: f64| -> Vec<f64> { draws.draws.iter().map(|d| d.t(b0, o.q)).collect() };
    let t = o.t(o.null);
    let t_boot = t_boot_at(o.null);
    let p = p_value(t, &t_boot);
    let ci = o.level.map(|level| {
        let alpha = 1.0 - level;
        let se = (o.estimate - o.null) / t;
        let se = if se.is_finite() && se != 0.0 { se.abs() } else { 1.0 };
        let p_at = |b0: f64| p_value(o.t(b0), &t_boot_at(b0));
        let bound = |dir: f64| {
            // bracket: inside (p > alpha) at the estimate, outside far enough away
            let mut inside = o.estimate;
            let mut step = 2.0 * se;
            let mut outside = inside + dir * step;
            let mut tries = 0;
            while p_at(outside) > alpha && tries < 40 {
                inside = outside;
                step *= 2.0;
                outside = inside + dir * step;
                tries += 1;
            }
            for _ in 0..50 {
                let mid = 0.5 * (inside + outside);
                if p_at(mid) > alpha {
                    inside = mid;
                } else {
                    outside = mid;
                }
                if (outside - inside).abs() <= 1e-6 * se {
                    break;
                }
            }
            0.5 * (inside + outside)
        };
        (bound(-1.0), bound(1.0))
    });
    WildResult {
        coefficient: o.coefficient.clone(),
        estimate: o.estimate,
        null: o.null,
        t,
        p,
        reps: draws.draws.len(),
        distinct_draws: distinct(&draws.draws),
        full_enumeration: o.full_enumeration,
        clusters: o.clusters,
        weights: o.weights,
        seed: o.seed,
        ci,
        level: o.level,
        warnings: few_draws_warning(o).into_iter().collect(),
        t_boot,
    }
}
