//! The estimator against explicit dummy-variable OLS: every fixed-effect level becomes a
//! column, the design is orthogonalised densely (weighted modified Gram–Schmidt, redundant
//! dummies skipped), and coefficients and standard errors follow from textbook formulas with
//! `N − K − rank(D)` residual degrees of freedom (Stata's `regress y x i.fe, vce(...)`). With one
//! or two effects that are not nested in the cluster, reghdfe's convention must reproduce these
//! numbers exactly; we require 1e-9 relative agreement.

use std::collections::HashMap;

use fegpu::data::Table;
use fegpu::demean::{CpuDemeaner, DemeanOptions};
use fegpu::estimate::{fit, FitOptions, FitResult, Ssc, VcovSpec};
use fegpu::formula;
use fegpu::rng::Stream;
use polars::prelude::{Column, DataFrame};

const REL: f64 = 1e-9;

struct Panel {
    n: usize,
    y: Vec<f64>,
    x: Vec<Vec<f64>>,
    fes: Vec<Vec<u32>>,
    clusters: Vec<Vec<u32>>,
    w: Vec<f64>,
}

/// Skewed level sizes: level of observation i drawn with probability ∝ 1/(g+1), plus a few
/// levels that occur once (singletons).
fn skewed_ids(s: &mut Stream, n: usize, levels: usize, singletons: usize) -> Vec<u32> {
    let p: Vec<f64> = (0..levels).map(|g| 1.0 / (g + 1) as f64).collect();
    let total: f64 = p.iter().sum();
    let mut ids: Vec<u32> = (0..n)
        .map(|_| {
            let mut u = s.uniform() * total;
            let mut g = 0;
            while g + 1 < levels && u > p[g] {
                u -= p[g];
                g += 1;
            }
            g as u32
        })
        .collect();
    for k in 0..singletons {
        ids[k * 7] = (levels + k) as u32;
    }
    ids
}

fn random_panel(seed: u64, n: usize, fe_levels: &[usize], n_clusters: &[usize], k: usize) -> Panel {
    let mut s = Stream::new(seed, 0);
    let fes: Vec<Vec<u32>> = fe_levels
        .iter()
        .enumerate()
        .map(|(j, &g)| skewed_ids(&mut s, n, g, if j == 0 { 3 } else { 0 }))
        .collect();
    let clusters: Vec<Vec<u32>> = n_clusters
        .iter()
        .map(|&g| (0..n).map(|_| s.below(g as u32)).collect())
        .collect();
    let effects: Vec<Vec<f64>> = fes
        .iter()
        .map(|ids| (0..=*ids.iter().max().unwrap()).map(|_| s.normal()).collect())
        .collect();
    let x: Vec<Vec<f64>> = (0..k)
        .map(|j| {
            (0..n)
                .map(|i| s.normal() + 0.3 * effects[0][fes[0][i] as usize] * (j as f64 + 1.0))
                .collect()
        })
        .collect();
    let y = (0..n)
        .map(|i| {
            let mut v = (0..k).map(|j| (0.5 - 0.2 * j as f64) * x[j][i]).sum::<f64>();
            v += fes.iter().zip(&effects).map(|(ids, e)| e[ids[i] as usize]).sum::<f64>();
            v + s.normal() * (1.0 + 0.5 * x[0][i].abs())
        })
        .collect();
    let w = (0..n).map(|_| 0.2 + 2.0 * s.uniform()).collect();
    Panel {
        n,
        y,
        x,
        fes,
        clusters,
        w,
    }
}

fn table(p: &Panel) -> Table {
    let mut cols = vec![
        Column::new("y".into(), p.y.clone()),
        Column::new("w".into(), p.w.clone()),
    ];
    for (j, x) in p.x.iter().enumerate() {
        cols.push(Column::new(format!("x{}", j + 1).into(), x.clone()));
    }
    for (j, f) in p.fes.iter().enumerate() {
        cols.push(Column::new(
            format!("f{}", j + 1).into(),
            f.iter().map(|&v| v as i64).collect::<Vec<_>>(),
        ));
    }
    for (j, c) in p.clusters.iter().enumerate() {
        cols.push(Column::new(
            format!("c{}", j + 1).into(),
            c.iter().map(|&v| v as i64).collect::<Vec<_>>(),
        ));
    }
    Table::new(DataFrame::new(p.n, cols).unwrap(), "test panel".into())
}

/// Rows kept after dropping singletons of every effect until none remain (written
/// independently of fegpu's implementation: recount from scratch each pass).
fn non_singleton_rows(fes: &[Vec<u32>]) -> Vec<usize> {
    let mut keep: Vec<usize> = (0..fes[0].len()).collect();
    loop {
        let mut bad = vec![false; keep.len()];
        for f in fes {
            let mut count: HashMap<u32, usize> = HashMap::new();
            for &i in &keep {
                *count.entry(f[i]).or_default() += 1;
            }
            for (b, &i) in bad.iter_mut().zip(&keep) {
                *b |= count[&f[i]] == 1;
            }
        }
        if !bad.iter().any(|&b| b) {
            return keep;
        }
        keep = keep.into_iter().zip(bad).filter(|(_, b)| !b).map(|(i, _)| i).collect();
    }
}

fn combine(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut m: HashMap<(u32, u32), u32> = HashMap::new();
    a.iter()
        .zip(b)
        .map(|(&p, &q)| {
            let n = m.len() as u32;
            *m.entry((p, q)).or_insert(n)
        })
        .collect()
}

/// Dense reference: returns (beta, se, rank of the dummy block).
struct Reference {
    beta: Vec<f64>,
    se: Vec<f64>,
    rank_d: usize,
}

fn invert(a: &[Vec<f64>]) -> Vec<Vec<f64>> {
    // Gauss–Jordan with partial pivoting.
    let k = a.len();
    let mut m: Vec<Vec<f64>> = a
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut r = r.clone();
            r.extend((0..k).map(|j| if i == j { 1.0 } else { 0.0 }));
            r
        })
        .collect();
    for c in 0..k {
        let p = (c..k).max_by(|&i, &j| m[i][c].abs().total_cmp(&m[j][c].abs())).unwrap();
        m.swap(c, p);
        let d = m[c][c];
        for v in m[c].iter_mut() {
            *v /= d;
        }
        for r in 0..k {
            if r != c {
                let f = m[r][c];
                let row_c = m[c].clone();
                for (v, rc) in m[r].iter_mut().zip(row_c) {
                    *v -= f * rc;
                }
            }
        }
    }
    m.into_iter().map(|r| r[k..].to_vec()).collect()
}

enum RefVcov<'a> {
    Iid,
    Hetero,
    Cluster(Vec<&'a [u32]>),
}

fn dummy_ols(
    y: &[f64],
    x: &[Vec<f64>],
    fes: &[Vec<u32>],
    w: Option<&[f64]>,
    vcov: RefVcov,
    df_absorbed: Option<usize>,
) -> Reference {
    let n = y.len();
    let wt = |i: usize| w.map_or(1.0, |w| w[i]);
    let dot = |a: &[f64], b: &[f64]| (0..n).map(|i| wt(i) * a[i] * b[i]).sum::<f64>();
    // Orthonormal basis of the dummy columns under the weighted inner product.
    let mut q: Vec<Vec<f64>> = Vec::new();
    for f in fes {
        let levels = *f.iter().max().unwrap() as usize + 1;
        for g in 0..levels {
            let mut d: Vec<f64> = f.iter().map(|&v| if v as usize == g { 1.0 } else { 0.0 }).collect();
            let norm0 = dot(&d, &d).sqrt();
            for _ in 0..2 {
                for b in &q {
                    let c = dot(&d, b);
                    for (di, bi) in d.iter_mut().zip(b) {
                        *di -= c * bi;
                    }
                }
            }
            let norm = dot(&d, &d).sqrt();
            if norm > 1e-9 * norm0 {
                q.push(d.into_iter().map(|v| v / norm).collect());
            }
        }
    }
    let resid_on_d = |v: &[f64]| -> Vec<f64> {
        let mut r = v.to_vec();
        for _ in 0..2 {
            for b in &q {
                let c = dot(&r, b);
                for (ri, bi) in r.iter_mut().zip(b) {
                    *ri -= c * bi;
                }
            }
        }
        r
    };
    let xt: Vec<Vec<f64>> = x.iter().map(|c| resid_on_d(c)).collect();
    let yt = resid_on_d(y);
    let k = x.len();
    let a: Vec<Vec<f64>> = (0..k).map(|i| (0..k).map(|j| dot(&xt[i], &xt[j])).collect()).collect();
    let ai = invert(&a);
    let b: Vec<f64> = (0..k).map(|i| dot(&xt[i], &yt)).collect();
    let beta: Vec<f64> = (0..k).map(|i| (0..k).map(|j| ai[i][j] * b[j]).sum()).collect();
    let e: Vec<f64> = (0..n)
        .map(|i| yt[i] - (0..k).map(|j| beta[j] * xt[j][i]).sum::<f64>())
        .collect();
    let rank_d = q.len();
    let df = n as f64 - k as f64 - df_absorbed.unwrap_or(rank_d) as f64;
    let sandwich = |meat: &[Vec<f64>]| -> Vec<Vec<f64>> {
        let t: Vec<Vec<f64>> = (0..k)
            .map(|i| (0..k).map(|j| (0..k).map(|m| ai[i][m] * meat[m][j]).sum()).collect())
            .collect();
        (0..k)
            .map(|i| (0..k).map(|j| (0..k).map(|m| t[i][m] * ai[m][j]).sum()).collect())
            .collect()
    };
    let v: Vec<Vec<f64>> = match vcov {
        RefVcov::Iid => {
            let s2 = (0..n).map(|i| wt(i) * e[i] * e[i]).sum::<f64>() / df;
            ai.iter().map(|r| r.iter().map(|v| v * s2).collect()).collect()
        }
        RefVcov::Hetero => {
            let meat: Vec<Vec<f64>> = (0..k)
                .map(|a| {
                    (0..k)
                        .map(|b| (0..n).map(|i| (wt(i) * e[i]).powi(2) * xt[a][i] * xt[b][i]).sum())
                        .collect()
                })
                .collect();
            sandwich(&meat)
                .into_iter()
                .map(|r| r.into_iter().map(|v| v * n as f64 / df).collect())
                .collect()
        }
        RefVcov::Cluster(cl) => {
            let gmin = cl
                .iter()
                .map(|c| c.iter().collect::<std::collections::HashSet<_>>().len())
                .min()
                .unwrap() as f64;
            let mut meat = vec![vec![0.0; k]; k];
            let mut terms: Vec<(Vec<u32>, f64)> = cl.iter().map(|c| (c.to_vec(), 1.0)).collect();
            if cl.len() == 2 {
                terms.push((combine(cl[0], cl[1]), -1.0));
            }
            for (ids, sign) in terms {
                let mut sums: HashMap<u32, Vec<f64>> = HashMap::new();
                for i in 0..n {
                    let s = sums.entry(ids[i]).or_insert_with(|| vec![0.0; k]);
                    for j in 0..k {
                        s[j] += wt(i) * e[i] * xt[j][i];
                    }
                }
                for s in sums.values() {
                    for a in 0..k {
                        for b in 0..k {
                            meat[a][b] += sign * s[a] * s[b];
                        }
                    }
                }
            }
            let q = (n as f64 - 1.0) / df * gmin / (gmin - 1.0);
            sandwich(&meat)
                .into_iter()
                .map(|r| r.into_iter().map(|v| v * q).collect())
                .collect()
        }
    };
    Reference {
        se: (0..k).map(|i| v[i][i].sqrt()).collect(),
        beta,
        rank_d,
    }
}

fn estimate(p: &Panel, f: &str, vcov: &str, weights: bool, ssc: Ssc) -> FitResult {
    let model = formula::parse(f).unwrap();
    let opts = FitOptions {
        vcov: VcovSpec::parse(vcov).unwrap(),
        weights: weights.then(|| "w".to_string()),
        ssc,
        demean: DemeanOptions {
            tol: 1e-14,
            max_iter: 200_000,
            ..Default::default()
        },
        ..Default::default()
    };
    fit(&table(p), &model, &opts, &CpuDemeaner).unwrap()
}

fn assert_close(what: &str, ours: &[f64], theirs: &[f64]) {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        let rel = (a - b).abs() / b.abs().max(1e-300);
        assert!(rel <= REL, "{what}[{i}]: fegpu {a:e} vs dummy OLS {b:e} (rel {rel:e})");
    }
}

fn subset(v: &[f64], rows: &[usize]) -> Vec<f64> {
    rows.iter().map(|&i| v[i]).collect()
}
fn subset_u(v: &[u32], rows: &[usize]) -> Vec<u32> {
    rows.iter().map(|&i| v[i]).collect()
}

fn check(
    p: &Panel,
    f: &str,
    vcov: &str,
    weighted: bool,
    fes: Vec<Vec<u32>>,
    regressors: &[usize],
    clusters: Vec<usize>,
) -> FitResult {
    let r = estimate(p, f, vcov, weighted, Ssc::Reghdfe);
    let rows = non_singleton_rows(&fes);
    assert_eq!(r.nobs, rows.len(), "{f}: estimation sample after singletons");
    assert_eq!(r.dropped.singletons, p.n - rows.len(), "{f}: singletons");
    let fs: Vec<Vec<u32>> = fes.iter().map(|f| subset_u(f, &rows)).collect();
    let x: Vec<Vec<f64>> = regressors.iter().map(|&j| subset(&p.x[j], &rows)).collect();
    let w = weighted.then(|| subset(&p.w, &rows));
    let cl: Vec<Vec<u32>> = clusters.iter().map(|&c| subset_u(&p.clusters[c], &rows)).collect();
    let rv = match vcov {
        "iid" => RefVcov::Iid,
        "hetero" => RefVcov::Hetero,
        _ => RefVcov::Cluster(cl.iter().map(|c| c.as_slice()).collect()),
    };
    let reference = dummy_ols(&subset(&p.y, &rows), &x, &fs, w.as_deref(), rv, None);
    assert_eq!(
        r.df_absorbed, reference.rank_d,
        "{f}: absorbed dof = rank of the dummy block"
    );
    assert_close(
        &format!("{f} [{vcov}] coefficients"),
        &r.coefficients.iter().map(|c| c.estimate).collect::<Vec<_>>(),
        &reference.beta,
    );
    assert_close(
        &format!("{f} [{vcov}] standard errors"),
        &r.coefficients.iter().map(|c| c.std_error).collect::<Vec<_>>(),
        &reference.se,
    );
    r
}

#[test]
fn one_fixed_effect_with_singletons_iid() {
    let p = random_panel(1, 400, &[40], &[], 3);
    check(
        &p,
        "y ~ x1 + x2 + x3 | f1",
        "iid",
        false,
        p.fes.clone(),
        &[0, 1, 2],
        vec![],
    );
}

#[test]
fn two_fixed_effects_weighted_hetero() {
    let p = random_panel(2, 500, &[35, 12], &[], 2);
    check(
        &p,
        "y ~ x1 + x2 | f1 + f2",
        "hetero",
        true,
        p.fes.clone(),
        &[0, 1],
        vec![],
    );
}

#[test]
fn interacted_fixed_effect_one_way_cluster() {
    let p = random_panel(3, 600, &[8, 6, 10], &[15], 2);
    let inter = combine(&p.fes[0], &p.fes[1]);
    check(
        &p,
        "y ~ x1 + x2 | f1^f2 + f3",
        "cluster:c1",
        false,
        vec![inter, p.fes[2].clone()],
        &[0, 1],
        vec![0],
    );
}

#[test]
fn two_way_clusters_weighted() {
    let p = random_panel(4, 500, &[30, 9], &[14, 11], 2);
    check(
        &p,
        "y ~ x1 + x2 | f1 + f2",
        "cluster:c1+c2",
        true,
        p.fes.clone(),
        &[0, 1],
        vec![0, 1],
    );
}

#[test]
fn three_fixed_effects_cluster() {
    // Pairwise connected components are exact here (dense random panel: one component per
    // pair), so reghdfe's count equals the rank of the three dummy blocks.
    let p = random_panel(5, 700, &[30, 10, 7], &[20], 2);
    check(
        &p,
        "y ~ x1 + x2 | f1 + f2 + f3",
        "cluster:c1",
        false,
        p.fes.clone(),
        &[0, 1],
        vec![0],
    );
}

#[test]
fn collinear_regressor_is_dropped_and_reported() {
    let mut p = random_panel(6, 400, &[25, 8], &[], 3);
    p.x[2] = p.x[0].iter().zip(&p.x[1]).map(|(a, b)| a - 2.0 * b).collect();
    let r = check(
        &p,
        "y ~ x1 + x2 + x3 | f1 + f2",
        "iid",
        false,
        p.fes.clone(),
        &[0, 1],
        vec![],
    );
    assert_eq!(r.collinear.len(), 1);
    assert_eq!(r.collinear[0].name, "x3");
    assert!(r.notes.iter().any(|n| n.contains("x3")));
}

#[test]
fn regressor_constant_within_fixed_effect_is_dropped() {
    let mut p = random_panel(7, 400, &[25, 8], &[], 3);
    let level_value: Vec<f64> = (0..40).map(|g| (g as f64 * 0.37).sin()).collect();
    p.x[2] = p.fes[0].iter().map(|&g| level_value[g as usize]).collect();
    let r = check(
        &p,
        "y ~ x1 + x2 + x3 | f1 + f2",
        "hetero",
        false,
        p.fes.clone(),
        &[0, 1],
        vec![],
    );
    assert_eq!(r.collinear[0].name, "x3");
    assert!(r.collinear[0].reason.contains("fixed effects"));
}

#[test]
fn fixest_convention_differs_only_in_absorbed_dof() {
    // With f1 nested in the cluster, reghdfe counts f1 as free and f2, now the first free
    // intercept, loses one level (the constant sits in f1: reghdfe's estimate_dof); fixest counts
    // one parameter for f1 and a reference level of f2. Both standard errors must equal the
    // dummy-variable formula evaluated at their own dof.
    let p = random_panel(8, 500, &[30, 9], &[], 2);
    let mut p2 = p;
    p2.clusters = vec![p2.fes[0].clone()];
    let rows = non_singleton_rows(&p2.fes);
    let fs: Vec<Vec<u32>> = p2.fes.iter().map(|f| subset_u(f, &rows)).collect();
    let x: Vec<Vec<f64>> = (0..2).map(|j| subset(&p2.x[j], &rows)).collect();
    let cl = subset_u(&p2.clusters[0], &rows);
    for ssc in [Ssc::Reghdfe, Ssc::Fixest] {
        let r = estimate(&p2, "y ~ x1 + x2 | f1 + f2", "cluster:c1", false, ssc);
        let g2 = r.fixed_effects[1].levels;
        let expected_df_a = match ssc {
            Ssc::Reghdfe => g2 - 1,    // f1 nested: free; f2 loses the constant's level
            Ssc::Fixest => 1 + g2 - 1, // nested f1 counts 1; f2 loses one reference level
        };
        assert_eq!(r.df_absorbed, expected_df_a, "{ssc:?}");
        assert!(r.fixed_effects[0].nested);
        let reference = dummy_ols(
            &subset(&p2.y, &rows),
            &x,
            &fs,
            None,
            RefVcov::Cluster(vec![&cl]),
            Some(expected_df_a),
        );
        assert_close(
            &format!("{ssc:?} coefficients"),
            &r.coefficients.iter().map(|c| c.estimate).collect::<Vec<_>>(),
            &reference.beta,
        );
        assert_close(
            &format!("{ssc:?} standard errors"),
            &r.coefficients.iter().map(|c| c.std_error).collect::<Vec<_>>(),
            &reference.se,
        );
    }
}
