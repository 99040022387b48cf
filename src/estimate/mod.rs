//! Estimation: OLS on demeaned data ([`ols`]), variance–covariance estimators and small-sample
//! conventions ([`vcov`]), the drivers that turn a model into a [`FitResult`] ([`fit`] for
//! OLS, [`iv`] for 2SLS, both on [`common`]), and the result types ([`result`]). The module
//! graph has no cycle: `fit` → {`iv`, `resident`} → {`common`, `result`, `ols`, `vcov`}.
//! Their sums over observations are single blocked, parallel passes ([`crate::linalg::passes`]).

mod common;
pub(crate) mod finite;
pub mod fit;
pub mod glm;
pub mod iv;
pub mod ols;
pub mod resident;
pub mod result;
pub mod vcov;

pub use common::FitOptions;
pub use fit::{fit, fit_design, fit_last};
pub use result::{Coefficient, FitResult};
pub use vcov::{Ssc, VcovSpec};
