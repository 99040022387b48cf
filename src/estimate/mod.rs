//! Estimation: OLS on demeaned data ([`ols`]), variance–covariance estimators and small-sample
//! conventions ([`vcov`]), and the driver that turns a model into a [`FitResult`] ([`fit`]).
//! Their sums over observations are single blocked, parallel passes ([`crate::linalg::passes`]).

pub(crate) mod finite;
pub mod fit;
pub mod iv;
pub mod ols;
pub mod resident;
pub mod vcov;

pub use fit::{fit, fit_design, fit_last, Coefficient, FitOptions, FitResult};
pub use vcov::{Ssc, VcovSpec};
