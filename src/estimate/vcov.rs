//! Variance–covariance estimators and the small-sample conventions they are scaled by.
//!
//! With `N` observations, `K` estimated coefficients, `A` absorbed fixed-effect degrees of
//! freedom (see [`crate::fe::dof`] for how each convention counts them), `B = (X̃'WX̃)⁻¹`,
//! residuals `e` and weights `w`:
//! * **iid**: `V = Σ w e² / (N − K − A) · B`.
//! * **hetero** (HC1): `V = N / (N − K − A) · B (Σ w² e² x x') B`.
//! * **cluster** (CRV1, one- or multi-way, Cameron, Gelbach & Miller 2011): for every non-empty
//!   subset `S` of the cluster variables, with the intersection of its variables as clusters,
//!   `M_S = Σ_g s_g s_g'`, `s_g = Σ_{i∈g} w e x`; `V = q · B (Σ_S (−1)^{|S|+1} M_S) B` with
//!   `q = (N − 1)/(N − K − A) · G/(G − 1)`, `G` the smallest number of clusters (reghdfe; fixest's
//!   `cluster.df = "min"`). If `V` is not positive semi-definite its negative eigenvalues are set
//!   to zero (CGM 2011, §2.3). t tests use `G − 1` degrees of freedom, otherwise `N − K − A`.
//!
//! Under this parametrisation the reghdfe and fixest conventions differ only in `A` (and hence
//! in the residual degrees of freedom): see [`Ssc`].

use crate::data::prepare::ClusterVar;
use crate::error::{Error, Result};
use crate::fe::dof::DofRule;
use crate::fe::index::interact;
use crate::linalg::passes::{cluster_sums, cross_products_by, products, sum_products};
use crate::linalg::{symmetric_eigen, Mat};

/// Small-sample convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ssc {
    /// reghdfe's defaults (Correia 2016): absorbed df counted exactly for the first pair of
    /// effects by connected components and conservatively beyond (`dofadjustments(pairwise
    /// clusters)`); effects nested in a cluster variable cost nothing.
    Reghdfe,
    /// fixest's defaults (`ssc(adj = TRUE, fixef.K = "nested", cluster.adj = TRUE,
    /// cluster.df = "min", t.df = "min", fixef.force_exact = FALSE)`): each effect after the
    /// first has one redundant level; a nested effect counts one parameter.
    Fixest,
}

impl Ssc {
    pub fn dof_rule(self) -> DofRule {
        match self {
            Ssc::Reghdfe => DofRule::Pairwise,
            Ssc::Fixest => DofRule::OnePerEffect,
        }
    }
    pub fn parse(s: &str) -> Result<Ssc> {
        match s {
            "reghdfe" => Ok(Ssc::Reghdfe),
            "fixest" => Ok(Ssc::Fixest),
            _ => Err(Error::Usage(format!(
                "unknown --ssc `{s}` (expected reghdfe or fixest)"
            ))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Ssc::Reghdfe => "reghdfe",
            Ssc::Fixest => "fixest",
        }
    }
}

/// Which variance estimator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcovSpec {
    Iid,
    Hetero,
    /// One or more cluster variables (each may be an interaction `a^b`).
    Cluster(Vec<String>),
}

impl VcovSpec {
    /// Parse `iid`, `hetero` (also `robust`, `hc1`) or `cluster:VAR[+VAR...]`.
    pub fn parse(s: &str) -> Result<VcovSpec> {
        let s = s.trim();
        match s.to_ascii_lowercase().as_str() {
            "iid" | "standard" | "ols" => return Ok(VcovSpec::Iid),
            "hetero" | "robust" | "hc1" => return Ok(VcovSpec::Hetero),
            _ => {}
        }
        if let Some(rest) = s.strip_prefix("cluster:").or_else(|| s.strip_prefix("CL:")) {
            let vars: Vec<String> = rest.split('+').map(|v| v.trim().to_string()).collect();
            if vars.iter().any(|v| v.is_empty()) {
                return Err(Error::Usage(format!("--vcov `{s}`: empty cluster variable name")));
            }
            return Ok(VcovSpec::Cluster(vars));
        }
        Err(Error::Usage(format!(
            "unknown --vcov `{s}` (expected iid, hetero or cluster:VAR[+VAR])"
        )))
    }

    pub fn cluster_vars(&self) -> &[String] {
        match self {
            VcovSpec::Cluster(v) => v,
            _ => &[],
        }
    }

    pub fn describe(&self) -> String {
        match self {
            VcovSpec::Iid => "iid".into(),
            VcovSpec::Hetero => "hetero".into(),
            VcovSpec::Cluster(v) => format!("cluster:{}", v.join("+")),
        }
    }
}

/// A computed variance matrix and what inference needs alongside it.
#[derive(Debug, Clone)]
pub struct Vcov {
    pub matrix: Mat,
    /// Degrees of freedom of the t distribution used for p-values.
    pub df_t: f64,
    /// Clusters per cluster variable.
    pub n_clusters: Vec<usize>,
    /// The multiway eigenvalue fix was applied.
    pub eigen_fixed: bool,
}

/// Inputs of a variance computation over the kept regressors.
pub struct VcovInput<'a> {
    /// Demeaned regressors that were kept.
    pub x: Vec<&'a [f64]>,
    pub resid: &'a [f64],
    pub weights: Option<&'a [f64]>,
    pub bread: &'a Mat,
    /// `N − K − A`.
    pub df_resid: f64,
}

fn sandwich(bread: &Mat, meat: &Mat) -> Mat {
    bread.mul(meat).mul(bread)
}

/// Compute the variance matrix for `spec`.
pub fn compute(spec: &VcovSpec, inp: &VcovInput, clusters: &[ClusterVar]) -> Result<Vcov> {
    let n = inp.resid.len();
    let k = inp.x.len();
    check_df(n, inp.df_resid)?;
    // w·e per row (the residuals themselves when unweighted)
    let we_owned = inp.weights.map(|w| products(w, inp.resid));
    let we: &[f64] = we_owned.as_deref().unwrap_or(inp.resid);
    match spec {
        VcovSpec::Iid => {
            let rss = sum_products(we, inp.resid);
            Ok(Vcov {
                matrix: inp.bread.clone().scale(rss / inp.df_resid),
                df_t: inp.df_resid,
                n_clusters: vec![],
                eigen_fixed: false,
            })
        }
        VcovSpec::Hetero => {
            // Σ (w e)² x x': the cross product of x with row scale (w e)(w e), one pass
            let meat = cross_products_by(&inp.x, we, we);
            Ok(hetero(inp.bread, &meat, n, inp.df_resid))
        }
        VcovSpec::Cluster(_) => {
            check_clusters(clusters)?;
            let m = clusters.len();
            let mut meat = Mat::zeros(k);
            for subset in 1u32..(1 << m) {
                let members: Vec<(&[u32], usize)> = (0..m)
                    .filter(|j| subset & (1 << j) != 0)
                    .map(|j| (clusters[j].ids.as_slice(), clusters[j].levels))
                    .collect();
                let sign = if members.len() % 2 == 1 { 1.0 } else { -1.0 };
                let part = match members.as_slice() {
                    [(ids, levels)] => cluster_meat(&inp.x, we, ids, *levels),
                    _ => {
                        let (ids, levels) = interact(&members);
                        cluster_meat(&inp.x, we, &ids, levels)
                    }
                };
                meat = meat.add(&part, sign);
            }
            Ok(clustered(inp.bread, &meat, n, inp.df_resid, clusters))
        }
    }
}

/// The model-based variance of a GLM with known dispersion (Poisson, logit):
/// `(N − 1)/df · B`, df the residual degrees of freedom of the convention in force (fixest's
/// `N − K` makes it fepois's iid variance; `N − 1` leaves `B`). Normal p-values.
pub fn model_based(bread: &Mat, n: usize, df_resid: f64) -> Vcov {
    Vcov {
        matrix: bread.clone().scale((n as f64 - 1.0) / df_resid),
        df_t: f64::INFINITY,
        n_clusters: vec![],
        eigen_fixed: false,
    }
}

/// Residual degrees of freedom are left.
pub fn check_df(n: usize, df_resid: f64) -> Result<()> {
    if df_resid <= 0.0 {
        return Err(Error::Estimation(format!(
            "no residual degrees of freedom left (N = {n}, parameters incl. absorbed = {})",
            n as f64 - df_resid
        )));
    }
    Ok(())
}

/// At least two clusters in every cluster variable.
pub fn check_clusters(clusters: &[ClusterVar]) -> Result<()> {
    let g_min = clusters
        .iter()
        .map(|c| c.levels)
        .min()
        .ok_or_else(|| Error::Usage("cluster vcov without cluster variables".into()))?;
    if g_min < 2 {
        return Err(Error::Estimation(format!(
            "clustering needs at least 2 clusters; `{}` has {g_min}",
            clusters.iter().find(|c| c.levels == g_min).unwrap().name
        )));
    }
    Ok(())
}

/// HC1 from the meat Σ (w_i e_i)² x̃_i x̃_i'.
pub fn hetero(bread: &Mat, meat: &Mat, n: usize, df_resid: f64) -> Vcov {
    Vcov {
        matrix: sandwich(bread, meat).scale(n as f64 / df_resid),
        df_t: df_resid,
        n_clusters: vec![],
        eigen_fixed: false,
    }
}

/// CRV1 from the (inclusion–exclusion) meat: small-sample factor of the smallest dimension,
/// t with G − 1 degrees of freedom, the eigenvalue fix for multiway clustering.
pub fn clustered(bread: &Mat, meat: &Mat, n: usize, df_resid: f64, clusters: &[ClusterVar]) -> Vcov {
    let k = bread.n;
    let m = clusters.len();
    let n_clusters: Vec<usize> = clusters.iter().map(|c| c.levels).collect();
    let g_min = n_clusters.iter().copied().min().unwrap_or(2);
    let q = (n as f64 - 1.0) / df_resid * g_min as f64 / (g_min as f64 - 1.0);
    let mut v = sandwich(bread, meat).scale(q);
    let mut eigen_fixed = false;
    if m > 1 {
        let (vals, vecs) = symmetric_eigen(&v);
        if vals.iter().any(|&l| l < 0.0) {
            eigen_fixed = true;
            let mut fixed = Mat::zeros(k);
            for (c, &l) in vals.iter().enumerate() {
                let l = l.max(0.0);
                for a in 0..k {
                    for b in 0..k {
                        fixed.a[a * k + b] += l * vecs.get(a, c) * vecs.get(b, c);
                    }
                }
            }
            v = fixed;
        }
    }
    Vcov {
        matrix: v,
        df_t: g_min as f64 - 1.0,
        n_clusters,
        eigen_fixed,
    }
}

fn symmetrize_lower(m: &mut Mat) {
    for a in 0..m.n {
        for b in 0..a {
            let v = m.get(a, b);
            m.set(b, a, v);
        }
    }
}

/// `Σ_g s_g s_g'` with `s_g = Σ_{i∈g} w_i e_i x_i` the per-cluster score sums.
fn cluster_meat(x: &[&[f64]], we: &[f64], ids: &[u32], levels: usize) -> Mat {
    let k = x.len();
    let sums = cluster_sums(x, we, ids, levels);
    let mut meat = Mat::zeros(k);
    for sg in sums.chunks_exact(k.max(1)) {
        for a in 0..k {
            for b in 0..=a {
                meat.a[a * k + b] += sg[a] * sg[b];
            }
        }
    }
    symmetrize_lower(&mut meat);
    meat
}
