//! What an estimation produced: [`FitResult`] (one element of `models` in `fegpu fit --format
//! json`; the field names are a contract), its coefficient, fixed-effect and cluster rows, and
//! the IV-2SLS diagnostics. Types only — the OLS and IV drivers fill them, the report writers
//! and the study read them — so neither side imports the other.

use serde::Serialize;

use super::vcov::Ssc;
use crate::data::prepare::{Design, Dropped};

/// Why a regressor was removed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DroppedRegressor {
    pub name: String,
    pub reason: String,
}

/// One row of the coefficient table.
#[derive(Debug, Clone, Serialize)]
pub struct Coefficient {
    pub name: String,
    pub estimate: f64,
    pub std_error: f64,
    pub t: f64,
    pub p: f64,
}

/// A fixed effect as reported: levels in the sample and how many were counted as redundant.
#[derive(Debug, Clone, Serialize)]
pub struct FixedEffectInfo {
    pub name: String,
    pub levels: usize,
    pub redundant: usize,
    pub nested: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterInfo {
    pub name: String,
    pub clusters: usize,
}

/// Everything one estimation produced. Serialised as one element of `models` in
/// `fegpu fit --format json`; the field names are a contract.
#[derive(Debug, Clone, Serialize)]
pub struct FitResult {
    pub formula: String,
    pub depvar: String,
    pub nobs: usize,
    pub nobs_raw: usize,
    pub coefficients: Vec<Coefficient>,
    pub r2: f64,
    pub adj_r2: f64,
    pub within_r2: Option<f64>,
    pub rmse: f64,
    pub rss: f64,
    pub tss: f64,
    pub vcov: String,
    pub ssc: Ssc,
    pub weights: Option<String>,
    pub fixed_effects: Vec<FixedEffectInfo>,
    pub clusters: Vec<ClusterInfo>,
    pub dropped: Dropped,
    pub collinear: Vec<DroppedRegressor>,
    /// Absorbed degrees of freedom used by the variance (after nesting in clusters).
    pub df_absorbed: usize,
    /// `N − K − df_absorbed`.
    pub df_resid: f64,
    /// Degrees of freedom of the t tests.
    pub df_t: f64,
    pub iterations: usize,
    pub converged: bool,
    /// How the fixed effects were projected out (`exact: …`, `cg`, `alternating projections`).
    pub solver: String,
    /// The preconditioners CG used, in the order it climbed them (`jacobi → schwarz`).
    pub preconditioner: Option<String>,
    /// Largest final relative residual of the fixed-effect normal equations,
    /// ‖D'W(v − Dα)‖ / ‖D'Wv‖, over the demeaned columns (0 when exact, null when unmeasured).
    pub demean_residual: Option<f64>,
    pub backend: String,
    /// The df64 self-test of the GPU that demeaned ("passed", "failed" — then native f64 ran —
    /// or "not run"); absent on the CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub df64_selftest: Option<crate::gpu::selftest::Status>,
    /// Variance matrix of the reported coefficients, row by row.
    pub vcov_matrix: Vec<Vec<f64>>,
    pub eigen_fixed: bool,
    /// Warnings (non-convergence, dropped regressors) in plain words.
    pub notes: Vec<String>,
    /// Wall time of the estimation proper (prepare to vcov), seconds.
    pub seconds: f64,
    /// IV-2SLS diagnostics (first stages, weak identification, overidentification).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iv: Option<IvDiagnostics>,
    /// `gaussian` (OLS), `poisson` or `logit` (`--family`).
    pub family: crate::estimate::glm::Family,
    /// A GLM's deviance, log-likelihoods, pseudo R², separated observations and iterations
    /// (keys at the model's top level; absent for OLS).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub glm: Option<crate::estimate::glm::GlmStats>,
    /// The sample of a `--split`/`--fsplit` fit (`{"var", "value"}`, value `null` for the full
    /// sample); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<crate::data::split::SampleLabel>,
}

/// The per-effect absorbed-dof table as reported.
pub(crate) fn fixed_effect_info(dof: &crate::fe::AbsorbedDof) -> Vec<FixedEffectInfo> {
    dof.per_fe
        .iter()
        .map(|d| FixedEffectInfo {
            name: d.name.clone(),
            levels: d.levels,
            redundant: d.redundant,
            nested: d.nested,
        })
        .collect()
}

/// Cluster counts as reported.
pub(crate) fn cluster_info(design: &Design) -> Vec<ClusterInfo> {
    design
        .clusters
        .iter()
        .map(|c| ClusterInfo {
            name: c.name.clone(),
            clusters: c.levels,
        })
        .collect()
}

/// One first-stage regression.
#[derive(Debug, Clone, Serialize)]
pub struct FirstStage {
    pub endogenous: String,
    /// Coefficients on the excluded instruments.
    pub coefficients: Vec<Coefficient>,
    pub partial_r2: f64,
    pub f: f64,
    pub f_p: f64,
    pub df1: usize,
    pub df2: f64,
}

/// Stock–Yogo (2005) critical values for the model's (endogenous, instruments) counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StockYogo {
    pub size_10: Option<f64>,
    pub size_15: Option<f64>,
    pub size_20: Option<f64>,
    pub size_25: Option<f64>,
    pub bias_05: Option<f64>,
    pub bias_10: Option<f64>,
    pub bias_20: Option<f64>,
    pub bias_30: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AndersonRubin {
    pub f: f64,
    pub f_p: f64,
    pub chi2: f64,
    pub chi2_p: f64,
}

/// The `iv` block of the JSON output.
#[derive(Debug, Clone, Serialize)]
pub struct IvDiagnostics {
    pub endogenous: Vec<String>,
    pub instruments: Vec<String>,
    pub kp_lm: Option<f64>,
    pub kp_lm_df: usize,
    pub kp_lm_p: Option<f64>,
    pub kp_wald_f: Option<f64>,
    pub cragg_donald_f: f64,
    pub stock_yogo: StockYogo,
    /// Hansen's J (robust or cluster vcov) or Sargan's statistic (iid); `None` when exactly
    /// identified. `overid_test` says which.
    pub hansen_j: Option<f64>,
    pub hansen_j_p: Option<f64>,
    pub hansen_j_df: usize,
    pub overid_test: Option<String>,
    pub anderson_rubin: AndersonRubin,
    pub first_stage: Vec<FirstStage>,
}
