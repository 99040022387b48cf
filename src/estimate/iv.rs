//! IV-2SLS with absorbed fixed effects and weak-identification diagnostics (ivreghdfe parity).
//!
//! All columns (y, exogenous X1, endogenous X2, excluded instruments Z) are demeaned together
//! and scaled by √w, so what follows is unweighted algebra on partialled data (Frisch–Waugh–
//! Lovell; ivreg2's `partial()` of the fixed effects). With W = [X1, Z], X = [X2, X1]:
//! * **2SLS**: X̂ = P_W X, β = (X̂'X̂)⁻¹X̂'y, e = y − Xβ; the variance is the OLS sandwich of
//!   [`super::vcov`] with X̂ in place of X and e as residuals, so iid / HC1 / CRV1 and both
//!   small-sample conventions carry over (A = absorbed dof, as ivreghdfe's `sdofminus`).
//! * **First stages**: each X2_j on W with the same variance estimator; F = Wald(Π_Z = 0)/L
//!   (ivreg2's vcov-consistent F; the classical F under iid), p from F(L, df_t); partial R² of Z.
//! * **Cragg–Donald Wald F** = (N − L − K1 − A)/L · r²/(1 − r²), r the smallest partial canonical
//!   correlation of X2 and Z given X1 (Cragg & Donald 1993; Stock & Yogo 2005 tabulate it).
//! * **Kleibergen–Paap rk** (Kleibergen & Paap 2006) LM and Wald F for rank(Π) = m − 1, with the
//!   score covariance of the model's vcov (robust or one-way cluster; under iid they reduce to
//!   Anderson's LM = N r² and the CD F); Wald F scaled by (N − L − K1 − A)/N, times (G − 1)/G ·
//!   N/(N − 1) with clusters, as ivreg2 and linearmodels do.
//! * **Overidentification** (L > m): Sargan N·e'P_We/e'e under iid; otherwise Hansen's J, the
//!   two-step efficient GMM criterion with the (uncentred) robust or cluster moment covariance
//!   estimated from 2SLS residuals (ivreg2).
//! * **Anderson–Rubin** test of β_X2 = 0: Wald test of Z in the reduced form of y on W (F and χ²).
//! * **Stock–Yogo** critical values (5% tests) for TSLS size and relative bias from the shipped
//!   table (data/stock_yogo_2005.md), for m ≤ 2 endogenous and L ≤ 10 instruments.

use super::common::{absorbed, assemble, not_converged_note, FitOptions, Own, Run};
pub use super::result::{AndersonRubin, FirstStage, IvDiagnostics, StockYogo};
use super::result::{Coefficient, FitResult};
use super::vcov::{self, VcovInput, VcovSpec};
use crate::data::prepare::Design;
use crate::demean::{Absorb, Demeaner};
use crate::error::{Error, Result};
use crate::fe::dof::effects_to_project;
use crate::fe::FixedEffect;
use crate::linalg::passes::cross_products;
use crate::linalg::rows::{eigen_desc, from_rows, inv_upper_chol, kron, mat_mul, svd, to_mat, transpose, M};
use crate::linalg::{cholesky_drop, cholesky_inverse, dot, Mat};
use crate::stats::{chi2_sf, f_sf, t_two_sided_p};

const STOCK_YOGO: &str = include_str!("../../data/stock_yogo_2005.md");

/// Look up the Stock–Yogo critical values for `m` endogenous regressors and `l` instruments.
pub fn stock_yogo(m: usize, l: usize) -> StockYogo {
    let mut out = StockYogo::default();
    let mut table = 0;
    for line in STOCK_YOGO.lines() {
        if line.starts_with("# Table 5.2") {
            table = 2;
            continue;
        }
        if line.starts_with("# Table 5.1") {
            table = 1;
            continue;
        }
        if line.starts_with('#') || line.starts_with("L2") || line.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').collect();
        if cells.first().and_then(|c| c.trim().parse::<usize>().ok()) != Some(l) || !(1..=2).contains(&m) {
            continue;
        }
        let v = |k: usize| {
            cells
                .get(1 + (m - 1) * 4 + k)
                .and_then(|c| c.trim().parse::<f64>().ok())
        };
        match table {
            2 => {
                out.size_10 = v(0);
                out.size_15 = v(1);
                out.size_20 = v(2);
                out.size_25 = v(3);
            }
            1 => {
                out.bias_05 = v(0);
                out.bias_10 = v(1);
                out.bias_20 = v(2);
                out.bias_30 = v(3);
            }
            _ => {}
        }
    }
    out
}

/// Residuals of each column of `ys` on `xs` (OLS; `xs` assumed full rank).
fn residualize(ys: &[Vec<f64>], xs: &[Vec<f64>]) -> Vec<Vec<f64>> {
    if xs.is_empty() {
        return ys.to_vec();
    }
    let cols: Vec<&[f64]> = xs.iter().map(|c| c.as_slice()).collect();
    let inv = cholesky_inverse(&cholesky_drop(&cross_products(&cols, None), 0.0).l);
    ys.iter()
        .map(|y| {
            let b = inv.mul_vec(&xs.iter().map(|x| dot(x, y)).collect::<Vec<_>>());
            let mut r = y.clone();
            for (x, bj) in xs.iter().zip(&b) {
                for (ri, xi) in r.iter_mut().zip(x) {
                    *ri -= bj * xi;
                }
            }
            r
        })
        .collect()
}

/// Wald statistic b' V⁻¹ b for the coefficients `idx` of a fit's vcov.
fn wald(beta: &[f64], vcov: &Mat, idx: &[usize]) -> f64 {
    let sub = vcov.select(idx);
    let c = cholesky_drop(&sub, 1e-14);
    if c.kept.len() < idx.len() {
        return f64::NAN;
    }
    let inv = cholesky_inverse(&c.l);
    let b: Vec<f64> = idx.iter().map(|&i| beta[i]).collect();
    dot(&b, &inv.mul_vec(&b))
}

/// The Kleibergen–Paap rk χ² for rank(Π) = m − 1 with scores z_i ⊗ v_i (see module doc).
#[allow(clippy::too_many_arguments)]
fn kp_chi2(
    theta: &M,
    left: &M,
    right: &M,
    irqzz: &M,
    irqxx: &M,
    z: &[Vec<f64>],
    v: &[Vec<f64>],
    clusters: Option<(&[u32], usize)>,
) -> Option<f64> {
    let n = z[0].len();
    let (l, m) = (z.len(), v.len());
    let k = l * m;
    // score covariance, ordered by endogenous then instrument
    let mut shat = vec![vec![0.0; k]; k];
    let score = |i: usize, idx: usize| v[idx / l][i] * z[idx % l][i];
    match clusters {
        None => {
            let mut s = vec![0.0; k];
            for i in 0..n {
                for (a, sa) in s.iter_mut().enumerate() {
                    *sa = score(i, a);
                }
                for a in 0..k {
                    for b in 0..k {
                        shat[a][b] += s[a] * s[b];
                    }
                }
            }
        }
        Some((ids, g)) => {
            let mut sums = vec![vec![0.0; k]; g];
            for i in 0..n {
                for a in 0..k {
                    sums[ids[i] as usize][a] += score(i, a);
                }
            }
            for sg in &sums {
                for a in 0..k {
                    for b in 0..k {
                        shat[a][b] += sg[a] * sg[b];
                    }
                }
            }
        }
    }
    for r in shat.iter_mut() {
        for v in r.iter_mut() {
            *v /= n as f64;
        }
    }
    let t = kron(&transpose(irqxx), &transpose(irqzz));
    let kpvar = mat_mul(&mat_mul(&t, &shat), &transpose(&t));
    let select = kron(&transpose(right), &transpose(left));
    // vec(θ) column-major
    let vec_theta: Vec<f64> = (0..m)
        .flat_map(|j| (0..l).map(move |i| (i, j)))
        .map(|(i, j)| theta[i][j])
        .collect();
    let lam: Vec<f64> = select.iter().map(|r| dot(r, &vec_theta)).collect();
    let mut vlam = mat_mul(&mat_mul(&select, &kpvar), &transpose(&select));
    let q = vlam.len();
    for a in 0..q {
        for b in 0..a {
            let avg = 0.5 * (vlam[a][b] + vlam[b][a]);
            vlam[a][b] = avg;
            vlam[b][a] = avg;
        }
    }
    let (vals, vecs) = eigen_desc(&vlam);
    let tol = vals[0] * f64::EPSILON * q as f64;
    let mut chi2 = 0.0;
    let mut any = false;
    for (c, &val) in vals.iter().enumerate() {
        if val > tol {
            any = true;
            let coef: f64 = (0..q).map(|r| vecs[r][c] * lam[r]).sum();
            chi2 += coef * coef / val;
        }
    }
    any.then_some(n as f64 * chi2)
}

/// Estimate an IV model on a prepared design.
pub fn fit_iv_design(design: &Design, formula: &str, opts: &FitOptions, demeaner: &dyn Demeaner) -> Result<FitResult> {
    let t0 = std::time::Instant::now();
    let n = design.nobs();
    let m = design.endog.len();
    let l_all = design.inst.len();
    if l_all < m {
        return Err(Error::Estimation(format!(
            "the model has {m} endogenous regressor(s) but only {l_all} excluded instrument(s); at least as many instruments are needed"
        )));
    }
    let w = design.weights.as_deref();
    let has_fe = !design.fes.is_empty();
    let mut notes = Vec::new();
    // y, X1, X2, Z in one batch
    let mut cols: Vec<Vec<f64>> = Vec::with_capacity(1 + design.x.len() + m + l_all);
    cols.push(design.y.clone());
    cols.extend(design.x.iter().cloned());
    cols.extend(design.endog.iter().cloned());
    cols.extend(design.inst.iter().cloned());
    let names: Vec<String> = std::iter::once(design.y_name.clone())
        .chain(design.x_names.iter().cloned())
        .chain(design.endog_names.iter().cloned())
        .chain(design.inst_names.iter().cloned())
        .collect();
    let moments = super::finite::checked_moments(
        names.iter().map(|s| s.as_str()).zip(cols.iter().map(|c| c.as_slice())),
        w,
    )?;
    let raw_ss: Vec<f64> = moments.iter().map(|m| m.centred_ss).collect();
    for (name, &ss) in names.iter().zip(&raw_ss) {
        super::finite::check_ss(name, "centred sum of squares", ss)?;
    }
    let tss = if has_fe || design.intercept {
        raw_ss[0]
    } else {
        moments[0].sum_sq
    };
    let mut iterations = 0;
    let mut converged = true;
    let mut method = (crate::demean::Method::default(), 0.0);
    if has_fe {
        let project: Vec<&FixedEffect> = effects_to_project(&design.fes)
            .into_iter()
            .map(|k| &design.fes[k])
            .collect();
        let dm = demeaner.demean(&Absorb::new(project, w), cols, &opts.demean)?;
        crate::timing::lap("demean");
        iterations = dm.iterations;
        converged = dm.not_converged.is_empty();
        for &c in &dm.not_converged {
            notes.push(not_converged_note(&names[c], &dm, &opts.demean));
        }
        method = (dm.method.clone(), dm.residual);
        cols = dm.columns;
        let named = names.iter().map(|s| s.as_str()).zip(cols.iter().map(|c| c.as_slice()));
        let demeaned = super::finite::check_demeaned(named, w)?;
        // anything without within variation is absorbed
        for (j, d) in demeaned.iter().enumerate().skip(1) {
            let ss = d.sum_sq;
            if crate::demean::refine::absorbed(ss, raw_ss[j]) {
                let role = if j <= design.x.len() {
                    "exogenous regressor"
                } else if j <= design.x.len() + m {
                    "endogenous regressor"
                } else {
                    "instrument"
                };
                return Err(Error::Estimation(format!(
                    "the {role} `{}` is absorbed by the fixed effects (no within variation)",
                    names[j]
                )));
            }
        }
    }
    if let Some(w) = w {
        for c in cols.iter_mut() {
            for (v, wi) in c.iter_mut().zip(w) {
                *v *= wi.sqrt();
            }
        }
    }
    let k1_all = design.x.len();
    let y = cols[0].clone();
    let x1_all: Vec<Vec<f64>> = cols[1..1 + k1_all].to_vec();
    let x2: Vec<Vec<f64>> = cols[1 + k1_all..1 + k1_all + m].to_vec();
    let z_all: Vec<Vec<f64>> = cols[1 + k1_all + m..].to_vec();

    // Instrument set W = [X1, Z]: collinear columns dropped in order (exogenous first).
    let wcols: Vec<&[f64]> = x1_all.iter().chain(&z_all).map(|c| c.as_slice()).collect();
    let wchol = cholesky_drop(&cross_products(&wcols, None), opts.collin_tol);
    let x1_idx: Vec<usize> = wchol.kept.iter().copied().filter(|&j| j < k1_all).collect();
    let z_idx: Vec<usize> = wchol
        .kept
        .iter()
        .copied()
        .filter(|&j| j >= k1_all)
        .map(|j| j - k1_all)
        .collect();
    for &d in &wchol.dropped {
        let (name, role) = if d < k1_all {
            (&design.x_names[d], "exogenous regressor")
        } else {
            (&design.inst_names[d - k1_all], "instrument")
        };
        notes.push(format!(
            "{role} `{name}` was removed: collinear with the other instruments/regressors"
        ));
    }
    let x1: Vec<Vec<f64>> = x1_idx.iter().map(|&j| x1_all[j].clone()).collect();
    let z: Vec<Vec<f64>> = z_idx.iter().map(|&j| z_all[j].clone()).collect();
    let x1_names: Vec<String> = x1_idx.iter().map(|&j| design.x_names[j].clone()).collect();
    let z_names: Vec<String> = z_idx.iter().map(|&j| design.inst_names[j].clone()).collect();
    let l = z.len();
    if l < m {
        return Err(Error::Estimation(format!(
            "after removing collinear instruments only {l} remain for {m} endogenous regressor(s): the model is not identified"
        )));
    }
    let k1 = x1.len();
    let wmat: Vec<Vec<f64>> = x1.iter().chain(&z).cloned().collect();
    let wref: Vec<&[f64]> = wmat.iter().map(|c| c.as_slice()).collect();
    let ww_inv = cholesky_inverse(&cholesky_drop(&cross_products(&wref, None), 0.0).l);

    // dof
    let (dof_full, dof_vcov) = absorbed(design, opts);
    let a_fe = dof_vcov.df_a as f64;

    // First stages: Π = (W'W)⁻¹W'X2, X̂2 = WΠ
    let pi: Vec<Vec<f64>> = x2
        .iter()
        .map(|xj| ww_inv.mul_vec(&wmat.iter().map(|c| dot(c, xj)).collect::<Vec<_>>()))
        .collect();
    let xhat2: Vec<Vec<f64>> = pi
        .iter()
        .map(|p| {
            (0..n)
                .map(|i| p.iter().zip(&wmat).map(|(b, c)| b * c[i]).sum())
                .collect()
        })
        .collect();

    // Second stage
    let xhat: Vec<Vec<f64>> = xhat2.iter().chain(&x1).cloned().collect();
    let xfull: Vec<Vec<f64>> = x2.iter().chain(&x1).cloned().collect();
    let coef_names: Vec<String> = design.endog_names.iter().chain(&x1_names).cloned().collect();
    let xh_ref: Vec<&[f64]> = xhat.iter().map(|c| c.as_slice()).collect();
    let a = cross_products(&xh_ref, None);
    let achol = cholesky_drop(&a, opts.collin_tol);
    if !achol.dropped.is_empty() {
        let which: Vec<String> = achol.dropped.iter().map(|&d| format!("`{}`", coef_names[d])).collect();
        return Err(Error::Estimation(format!(
            "the second stage is collinear in {} (the instruments do not identify it)",
            which.join(", ")
        )));
    }
    let bread = cholesky_inverse(&achol.l);
    let beta = bread.mul_vec(&xhat.iter().map(|c| dot(c, &y)).collect::<Vec<_>>());
    let e: Vec<f64> = (0..n)
        .map(|i| y[i] - xfull.iter().zip(&beta).map(|(c, b)| b * c[i]).sum::<f64>())
        .collect();
    let k = m + k1;
    let df_resid = n as f64 - k as f64 - a_fe;
    crate::timing::lap("estimate");
    let v = vcov::compute(
        &opts.vcov,
        &VcovInput {
            x: xh_ref.clone(),
            resid: &e,
            weights: None,
            bread: &bread,
            df_resid,
        },
        &design.clusters,
    )?;
    crate::timing::lap("variance");
    let coefficients: Vec<Coefficient> = (0..k)
        .map(|j| {
            let se = v.matrix.get(j, j).max(0.0).sqrt();
            let t = beta[j] / se;
            Coefficient {
                name: coef_names[j].clone(),
                estimate: beta[j],
                std_error: se,
                t,
                p: t_two_sided_p(t, v.df_t),
            }
        })
        .collect();
    let rss = dot(&e, &e);

    // First-stage statistics with the model's variance estimator.
    let df_fs = n as f64 - (k1 + l) as f64 - a_fe;
    let mut first_stage = Vec::new();
    let x2_perp_x1 = residualize(&x2, &x1);
    for (j, xj) in x2.iter().enumerate() {
        let resid: Vec<f64> = (0..n).map(|i| xj[i] - xhat2[j][i]).collect();
        let fv = vcov::compute(
            &opts.vcov,
            &VcovInput {
                x: wref.clone(),
                resid: &resid,
                weights: None,
                bread: &ww_inv,
                df_resid: df_fs,
            },
            &design.clusters,
        )?;
        let zi: Vec<usize> = (k1..k1 + l).collect();
        let wstat = wald(&pi[j], &fv.matrix, &zi);
        let f = wstat / l as f64;
        let rss_full = dot(&resid, &resid);
        let rss_restricted = dot(&x2_perp_x1[j], &x2_perp_x1[j]);
        first_stage.push(FirstStage {
            endogenous: design.endog_names[j].clone(),
            coefficients: zi
                .iter()
                .map(|&c| {
                    let se = fv.matrix.get(c, c).max(0.0).sqrt();
                    let t = pi[j][c] / se;
                    Coefficient {
                        name: z_names[c - k1].clone(),
                        estimate: pi[j][c],
                        std_error: se,
                        t,
                        p: t_two_sided_p(t, fv.df_t),
                    }
                })
                .collect(),
            partial_r2: 1.0 - rss_full / rss_restricted,
            f,
            f_p: f_sf(f, l as f64, fv.df_t),
            df1: l,
            df2: fv.df_t,
        });
    }

    // Canonical correlations of X2 and Z given X1 (and the effects).
    let zp = residualize(&z, &x1);
    let xp = x2_perp_x1.clone();
    let nf = n as f64;
    let gram = |a: &[Vec<f64>], b: &[Vec<f64>]| -> M {
        a.iter().map(|p| b.iter().map(|q| dot(p, q) / nf).collect()).collect()
    };
    let qzz = gram(&zp, &zp);
    let qxx = gram(&xp, &xp);
    let qzx = gram(&zp, &xp);
    let irqzz = inv_upper_chol(&qzz);
    let irqxx = inv_upper_chol(&qxx);
    let theta = mat_mul(&mat_mul(&transpose(&irqzz), &qzx), &irqxx);
    // the smallest canonical correlation and its singular vectors, from θ itself (the
    // eigenvectors of θ'θ and θθ' would square its condition number)
    let (s, uvec, vvec) = svd(&theta);
    let r2_min = (s[m - 1] * s[m - 1]).clamp(0.0, 1.0);
    let dof_cd = nf - l as f64 - k1 as f64 - a_fe;
    let cragg_donald_f = dof_cd * r2_min / (1.0 - r2_min) / l as f64;
    let kp_df = l - m + 1;
    let left: M = (0..l).map(|r| uvec[r][m - 1..].to_vec()).collect();
    let right: M = (0..m).map(|r| vec![vvec[r][m - 1]]).collect();
    // Kleibergen–Paap: the LM uses scores z ⊗ x⊥, the Wald F scores z ⊗ (first-stage residuals).
    let fs_resid = || -> Vec<Vec<f64>> {
        let pihat = mat_mul(&mat_mul(&irqzz, &transpose(&irqzz)), &qzx);
        (0..m)
            .map(|j| {
                (0..n)
                    .map(|i| xp[j][i] - (0..l).map(|r| zp[r][i] * pihat[r][j]).sum::<f64>())
                    .collect()
            })
            .collect()
    };
    let kp = |clusters: Option<(&[u32], usize)>, scale: f64| {
        let lm = kp_chi2(&theta, &left, &right, &irqzz, &irqxx, &zp, &xp, clusters);
        let wf =
            kp_chi2(&theta, &left, &right, &irqzz, &irqxx, &zp, &fs_resid(), clusters).map(|c| c * scale / l as f64);
        (lm, wf)
    };
    let (kp_lm, kp_wald_f) = match &opts.vcov {
        VcovSpec::Iid => (Some(nf * r2_min), Some(cragg_donald_f)),
        VcovSpec::Hetero => kp(None, dof_cd / nf),
        VcovSpec::Cluster(vars) if vars.len() == 1 => {
            let cl = &design.clusters[0];
            let g = cl.levels as f64;
            kp(Some((&cl.ids, cl.levels)), dof_cd * (g - 1.0) / g / (nf - 1.0))
        }
        VcovSpec::Cluster(_) => {
            notes.push("the Kleibergen–Paap statistics are not defined for multiway clustering".into());
            (None, None)
        }
    };

    // Overidentification.
    let (hansen_j, overid_test) = if l > m {
        match &opts.vcov {
            VcovSpec::Iid => {
                let pe = residualize(std::slice::from_ref(&e), &wmat);
                let ee = dot(&e, &e);
                (Some(nf * (ee - dot(&pe[0], &pe[0])) / ee), Some("sargan".to_string()))
            }
            VcovSpec::Cluster(vars) if vars.len() > 1 => {
                notes.push("Hansen's J is not computed for multiway clustering".into());
                (None, Some("hansen".to_string()))
            }
            spec => {
                let q = wmat.len();
                let mut s = vec![vec![0.0; q]; q];
                let mut add = |g: &[f64]| {
                    for a in 0..q {
                        for b in 0..q {
                            s[a][b] += g[a] * g[b];
                        }
                    }
                };
                match spec {
                    VcovSpec::Cluster(_) => {
                        let cl = &design.clusters[0];
                        let mut sums = vec![vec![0.0; q]; cl.levels];
                        for i in 0..n {
                            for (a, c) in wmat.iter().enumerate() {
                                sums[cl.ids[i] as usize][a] += c[i] * e[i];
                            }
                        }
                        sums.iter().for_each(|g| add(g));
                    }
                    _ => {
                        let mut g = vec![0.0; q];
                        for i in 0..n {
                            for (a, c) in wmat.iter().enumerate() {
                                g[a] = c[i] * e[i];
                            }
                            add(&g);
                        }
                    }
                }
                let s_mat = from_rows(&s.iter().map(|r| r.iter().map(|v| v / nf).collect()).collect());
                let sc = cholesky_drop(&s_mat, 1e-14);
                if sc.kept.len() < q {
                    notes
                        .push("Hansen's J is not defined: the moment covariance is singular (too few clusters)".into());
                    (None, Some("hansen".to_string()))
                } else {
                    let s_inv = to_mat(&cholesky_inverse(&sc.l));
                    // two-step GMM: β = (X'W S⁻¹ W'X)⁻¹ X'W S⁻¹ W'y
                    let wx: M = wmat
                        .iter()
                        .map(|c| xfull.iter().map(|x| dot(c, x) / nf).collect())
                        .collect();
                    let wy: Vec<f64> = wmat.iter().map(|c| dot(c, &y) / nf).collect();
                    let a = mat_mul(&mat_mul(&transpose(&wx), &s_inv), &wx);
                    let ainv = cholesky_inverse(&cholesky_drop(&from_rows(&a), 0.0).l);
                    let rhs: Vec<f64> = mat_mul(&transpose(&wx), &s_inv).iter().map(|r| dot(r, &wy)).collect();
                    let b2 = ainv.mul_vec(&rhs);
                    let e2: Vec<f64> = (0..n)
                        .map(|i| y[i] - xfull.iter().zip(&b2).map(|(c, b)| b * c[i]).sum::<f64>())
                        .collect();
                    let gbar: Vec<f64> = wmat.iter().map(|c| dot(c, &e2) / nf).collect();
                    let sg: Vec<f64> = s_inv.iter().map(|r| dot(r, &gbar)).collect();
                    (Some(nf * dot(&gbar, &sg)), Some("hansen".to_string()))
                }
            }
        }
    } else {
        (None, None)
    };

    // Anderson–Rubin: reduced form of y on W, Wald test of Z.
    let rf_b = ww_inv.mul_vec(&wmat.iter().map(|c| dot(c, &y)).collect::<Vec<_>>());
    let rf_e: Vec<f64> = (0..n)
        .map(|i| y[i] - rf_b.iter().zip(&wmat).map(|(b, c)| b * c[i]).sum::<f64>())
        .collect();
    let rf_v = vcov::compute(
        &opts.vcov,
        &VcovInput {
            x: wref.clone(),
            resid: &rf_e,
            weights: None,
            bread: &ww_inv,
            df_resid: df_fs,
        },
        &design.clusters,
    )?;
    let ar_w = wald(&rf_b, &rf_v.matrix, &(k1..k1 + l).collect::<Vec<_>>());
    let anderson_rubin = AndersonRubin {
        f: ar_w / l as f64,
        f_p: f_sf(ar_w / l as f64, l as f64, rf_v.df_t),
        chi2: ar_w,
        chi2_p: chi2_sf(ar_w, l as f64),
    };

    let sy = stock_yogo(m, l);
    if sy.size_10.is_none() {
        notes.push(format!(
            "no Stock–Yogo critical values are tabulated for {m} endogenous regressors and {l} instruments"
        ));
    }
    let iv = IvDiagnostics {
        endogenous: design.endog_names.clone(),
        instruments: z_names.clone(),
        kp_lm,
        kp_lm_df: kp_df,
        kp_lm_p: kp_lm.map(|s| chi2_sf(s, kp_df as f64)),
        kp_wald_f,
        cragg_donald_f,
        stock_yogo: sy,
        hansen_j,
        hansen_j_p: hansen_j.map(|j| chi2_sf(j, (l - m) as f64)),
        hansen_j_df: l - m,
        overid_test,
        anderson_rubin,
        first_stage,
    };

    let df_resid_full = nf - k as f64 - dof_full.df_a as f64;
    let r2 = 1.0 - rss / tss;
    let within_r2 = if has_fe { Some(1.0 - rss / dot(&y, &y)) } else { None };
    // in the user's weight units (the solve ran on weights of mean one)
    let (rss, tss) = super::finite::in_weight_units(opts.weights.as_deref(), design.weight_scale, rss, tss)?;
    let own = Own {
        nobs: n,
        coefficients,
        r2,
        adj_r2: 1.0 - (1.0 - r2) * (nf - 1.0) / df_resid_full,
        within_r2,
        rmse: match opts.ssc {
            super::Ssc::Reghdfe => (rss / df_resid_full).sqrt(),
            super::Ssc::Fixest => (rss / nf).sqrt(),
        },
        rss,
        tss,
        collinear: vec![],
        vcov_matrix: (0..k).map(|a| (0..k).map(|b| v.matrix.get(a, b)).collect()).collect(),
        notes,
        iv: Some(iv),
    };
    let run = Run::new(iterations, converged, method, has_fe, demeaner, t0);
    let r = assemble(formula, design, opts, &dof_vcov, df_resid, &v, run, own);
    super::finite::check_result(&r)?;
    crate::timing::lap("estimate");
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_yogo_table_lookup() {
        let a = stock_yogo(1, 1);
        assert_eq!(a.size_10, Some(16.38));
        assert_eq!(a.size_25, Some(5.53));
        assert_eq!(a.bias_05, None); // relative bias needs L >= m + 2
        let b = stock_yogo(2, 3);
        assert_eq!((b.size_10, b.size_15), (Some(13.43), Some(8.18)));
        assert_eq!(stock_yogo(1, 3).bias_05, Some(13.91));
        assert_eq!(stock_yogo(2, 4).bias_30, Some(4.73));
        assert_eq!(stock_yogo(3, 4).size_10, None);
        assert_eq!(stock_yogo(1, 11).size_10, None);
    }
}
