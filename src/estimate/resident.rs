//! A single OLS fit on the GPU without reading the demeaned columns back: the columns and the
//! large effect stay on the device ([`crate::demean::resident`]), one exact pass demeans them,
//! and only what the estimator needs returns — the cross products (β, R²), and for the
//! variance the residual's sums per cluster (CRV1, one-way), Σ (w e)² x̃x̃' (HC1) or Σ w e²
//! (iid): O(columns² + clusters × columns) numbers instead of observations × columns.
//!
//! Structures: one effect to project, or one large effect beside few-level ones (their dummies
//! are partialled out on the host, Frisch–Waugh–Lovell). With e = ũ_y − Σ_j β_j ũ_j − ũ_D δ
//! (ũ: demeaned on the large effect; δ the dummies' coefficients) and x̃_j = ũ_j − ũ_D γ_j,
//! the score of cluster g is Σ_g w e x̃_j = T_g,j − γ_j'T_g,D with T_g,a = Σ_g w e ũ_a, which
//! the device forms; rss = Σ w e ũ_y (e is orthogonal to every ũ_j and to ũ_D).
//! Other structures, multiway clustering and IV use the host path of [`super::fit`].

use super::common::{check_kept, degrees, Degrees, FitOptions, Solved};
use super::ols;
use super::vcov::{self, VcovSpec};
use crate::data::prepare::Design;
use crate::demean::resident::{DeviceReplicates, ResidentFit};
use crate::demean::{Demeaner, GpuDemeaner, Method};
use crate::error::Result;
use crate::fe::dof::effects_to_project;
use crate::fe::FixedEffect;
use crate::linalg::{cholesky_drop, cholesky_inverse, Mat};

/// The fit solved on the device, or `None` when this path does not apply (see module docs).
pub(crate) fn solve(
    design: &Design,
    y: &[f64],
    x: &[Vec<f64>],
    raw_ss: &[f64],
    opts: &FitOptions,
    demeaner: &dyn Demeaner,
) -> Result<Option<(Solved, Degrees)>> {
    let Some(gpu) = demeaner.gpu() else { return Ok(None) };
    let one_way = matches!(opts.vcov, VcovSpec::Cluster(_)) && design.clusters.len() == 1;
    if design.fes.is_empty() || !(one_way || matches!(opts.vcov, VcovSpec::Iid | VcovSpec::Hetero)) {
        return Ok(None);
    }
    let project: Vec<&FixedEffect> = effects_to_project(&design.fes)
        .into_iter()
        .map(|k| &design.fes[k])
        .collect();
    if project.len() > 1 && opts.demean.solver != crate::demean::Solver::Auto {
        return Ok(None);
    }
    let w: Vec<f64> = design.weights.clone().unwrap_or_else(|| vec![1.0; y.len()]);
    let mut columns: Vec<&[f64]> = vec![y];
    columns.extend(x.iter().map(|c| c.as_slice()));
    let Some(engine) = DeviceReplicates::new(gpu, &project, &columns, &w)? else {
        return Ok(None);
    };
    drop(w);
    let fit = engine.solve_fit(gpu)?;
    crate::timing::lap("demean");
    let (c, m) = engine.widths();
    let gram = Packed(&fit.full_gram);
    let model = gram.partialled(c, m);
    let k = c - 1;
    let xtx = Mat {
        n: k,
        a: (0..k * k).map(|ab| model.at(1 + ab / k, 1 + ab % k)).collect(),
    };
    let xty: Vec<f64> = (0..k).map(|j| model.at(1 + j, 0)).collect();
    if !precise_enough(demeaner, design, y, raw_ss, &gram, &model, c) {
        // a column's within part is too small a part of its spread for the device's
        // arithmetic: the host path hands such columns to the CPU
        return Ok(None);
    }
    let est = ols::solve_cross_products_checked(&design.x_names, &xtx, &xty, Some(raw_ss), opts.collin_tol)?;
    crate::timing::lap("estimate");
    let mut notes = Vec::new();
    check_kept(design, &est, &mut notes)?;
    let n = y.len();
    let deg = degrees(design, n, est.kept.len(), opts);
    vcov::check_df(n, deg.df_resid)?;
    let fwl = Dummies::new(&gram, c, m);
    let coef = fwl.residual_coefficients(&est);
    let (v, rss) = variance(&engine, gpu, &fit, &coef, &fwl, &est, design, opts, n, deg.df_resid)?;
    crate::timing::lap("variance");
    let method = Method {
        solver: if m > c {
            "exact on the device: large effect + dummies (FWL)".into()
        } else {
            "exact on the device: one effect".into()
        },
        preconditioner: None,
    };
    let solved = Solved {
        est,
        v,
        rss,
        within_ss: Some(model.at(0, 0)),
        iterations: 1,
        converged: true,
        method: (method, 0.0),
        notes,
    };
    Ok(Some((solved, deg)))
}

/// A packed lower-triangle Gram ([`crate::demean::pair_of`] order).
struct Packed<'a>(&'a [f64]);

impl Packed<'_> {
    fn at(&self, p: usize, q: usize) -> f64 {
        let (p, q) = if p >= q { (p, q) } else { (q, p) };
        self.0[p * (p + 1) / 2 + q]
    }
}

struct Owned(Vec<f64>);

impl Owned {
    fn at(&self, p: usize, q: usize) -> f64 {
        Packed(&self.0).at(p, q)
    }
}

impl Packed<'_> {
    fn partialled(&self, c: usize, m: usize) -> Owned {
        Owned(crate::linalg::partial_out_last(self.0, c, m))
    }
}

/// The few-level effects' dummies (columns c..m): γ_p = G_DD⁻¹ G_D,p for each model column
/// p, over the dummies the pivoted Cholesky keeps (the others are absorbed by the large effect).
struct Dummies {
    c: usize,
    m: usize,
    /// γ_p per model column, one entry per dummy (0 for dropped ones).
    gamma: Vec<Vec<f64>>,
}

impl Dummies {
    fn new(g: &Packed, c: usize, m: usize) -> Dummies {
        let t = m - c;
        let mut gamma = vec![vec![0.0; t]; c];
        if t > 0 {
            let mut dd = Mat::zeros(t);
            for a in 0..t {
                for b in 0..t {
                    dd.set(a, b, g.at(c + a, c + b));
                }
            }
            let ch = cholesky_drop(&dd, 1e-10);
            let inv = cholesky_inverse(&ch.l);
            for (p, gp) in gamma.iter_mut().enumerate() {
                let cross: Vec<f64> = ch.kept.iter().map(|&a| g.at(c + a, p)).collect();
                for (r, v) in inv.mul_vec(&cross).into_iter().enumerate() {
                    gp[ch.kept[r]] = v;
                }
            }
        }
        Dummies { c, m, gamma }
    }

    /// e = ũ_y − Σ β_j ũ_j − ũ_D (γ_y − Σ β_j γ_j), as coefficients on the m device columns.
    fn residual_coefficients(&self, est: &ols::Ols) -> Vec<f64> {
        let mut coef = vec![0.0; self.m];
        coef[0] = 1.0;
        let mut delta = self.gamma[0].clone();
        for (&j, &b) in est.kept.iter().zip(&est.beta) {
            coef[1 + j] = -b;
            for (d, gj) in delta.iter_mut().zip(&self.gamma[1 + j]) {
                *d -= b * gj;
            }
        }
        for (slot, d) in coef[self.c..].iter_mut().zip(delta) {
            *slot = -d;
        }
        coef
    }

    /// A kept regressor's fully demeaned score from per-column sums: T_j − γ_j'T_D.
    fn score(&self, t: &[f64], j: usize) -> f64 {
        t[1 + j]
            - self.gamma[1 + j]
                .iter()
                .zip(&t[self.c..])
                .map(|(g, v)| g * v)
                .sum::<f64>()
    }
}

/// The variance and rss from the device's residual pieces.
#[allow(clippy::too_many_arguments)]
fn variance(
    engine: &DeviceReplicates,
    gpu: &GpuDemeaner,
    fit: &ResidentFit,
    coef: &[f64],
    fwl: &Dummies,
    est: &ols::Ols,
    design: &Design,
    opts: &FitOptions,
    n: usize,
    df_resid: f64,
) -> Result<(vcov::Vcov, f64)> {
    let everyone = FixedEffect {
        name: "all".into(),
        ids: vec![0; n],
        levels: 1,
    };
    let groups = match &opts.vcov {
        VcovSpec::Cluster(_) => {
            vcov::check_clusters(&design.clusters)?;
            let cl = &design.clusters[0];
            FixedEffect {
                name: cl.name.clone(),
                ids: cl.ids.clone(),
                levels: cl.levels,
            }
        }
        _ => everyone,
    };
    let sums = engine.residual_group_sums(gpu, fit, coef, &groups)?;
    let rss: f64 = sums.iter().map(|t| t[0]).sum();
    let k = est.kept.len();
    let v = match &opts.vcov {
        VcovSpec::Iid => vcov::Vcov {
            matrix: est.bread.clone().scale(rss / df_resid),
            df_t: df_resid,
            n_clusters: vec![],
            eigen_fixed: false,
        },
        VcovSpec::Hetero => {
            let h = engine.residual_gram(gpu, fit, coef)?;
            let h = Packed(&h);
            // x̃_j = ũ_j − ũ_D γ_j: meat_ab = a_a' H a_b with a_j = e_j − Σ_d γ_j,d e_d
            let col = |j: usize| -> Vec<(usize, f64)> {
                let mut v = vec![(1 + j, 1.0)];
                v.extend(fwl.gamma[1 + j].iter().enumerate().map(|(d, g)| (fwl.c + d, -g)));
                v
            };
            let mut meat = Mat::zeros(k);
            for (a, &ja) in est.kept.iter().enumerate() {
                for (b, &jb) in est.kept.iter().enumerate() {
                    let s: f64 = col(ja)
                        .iter()
                        .flat_map(|&(p, u)| col(jb).into_iter().map(move |(q, v)| (p, q, u * v)))
                        .map(|(p, q, uv)| uv * h.at(p, q))
                        .sum();
                    meat.set(a, b, s);
                }
            }
            vcov::hetero(&est.bread, &meat, n, df_resid)
        }
        VcovSpec::Cluster(_) => {
            let mut meat = Mat::zeros(k);
            for t in &sums {
                let s: Vec<f64> = est.kept.iter().map(|&j| fwl.score(t, j)).collect();
                for a in 0..k {
                    for b in 0..k {
                        meat.a[a * k + b] += s[a] * s[b];
                    }
                }
            }
            vcov::clustered(&est.bread, &meat, n, df_resid, &design.clusters)
        }
    };
    Ok((v, rss))
}

/// Whether every column's within part (its diagonal in the partialled Gram) keeps enough
/// digits under the device's rounding ([`crate::demean::refine::precise_enough`]): against its
/// centred spread (the device's pass over the large effect), and — squared, since the dummies
/// are partialled out of sums of squares — against its diagonal before the dummies.
fn precise_enough(
    demeaner: &dyn Demeaner,
    design: &Design,
    y: &[f64],
    raw_ss: &[f64],
    full: &Packed,
    model: &Owned,
    c: usize,
) -> bool {
    use crate::demean::refine::precise_enough as keeps;
    let w = design.weights.as_deref();
    let y_ss = super::common::weighted_centred_ss(y, w, true);
    let spread = std::iter::once(y_ss).chain(raw_ss.iter().copied());
    let eps = demeaner.roundoff();
    spread.take(c).enumerate().all(|(j, ss)| {
        let within = model.at(j, j).max(0.0);
        keeps(eps, ss.sqrt(), within.sqrt()) && keeps(eps, full.at(j, j), within)
    })
}
