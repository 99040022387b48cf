//! Least squares on demeaned columns (Frisch–Waugh–Lovell): `β = (X̃'WX̃)⁻¹ X̃'Wỹ` in f64.
//!
//! Collinearity follows fixest: a regressor whose within variation is (numerically) nil — its
//! accurately demeaned norm below 10⁻¹⁰ of its centred norm ([`crate::demean::refine`]), so a
//! regressor with a large between-group spread is kept — is "absorbed by the fixed effects"; then a pivoted Cholesky of `X̃'WX̃` drops, in formula order,
//! every regressor whose R² on those kept before it exceeds `1 − collin_tol` (fixest's
//! `collin.tol`, default 1e-10). Dropped regressors are reported by name, never silently.

pub use super::result::DroppedRegressor;
use crate::error::Result;
use crate::linalg::passes::{cross_products, residuals};
use crate::linalg::{cholesky_drop, cholesky_inverse, Mat};

/// The OLS solution on the kept regressors.
#[derive(Debug, Clone)]
pub struct Ols {
    /// Indices (into the regressor list) of the kept regressors.
    pub kept: Vec<usize>,
    pub dropped: Vec<DroppedRegressor>,
    pub beta: Vec<f64>,
    /// `(X̃'WX̃)⁻¹` over the kept regressors (the "bread").
    pub bread: Mat,
    /// Residuals `ỹ − X̃β` (unweighted).
    pub resid: Vec<f64>,
}

/// Solve OLS of `y` on `x` (already demeaned when there are fixed effects).
///
/// `raw_ss[j]` is the weighted centred sum of squares of regressor `j` before demeaning; a
/// regressor whose demeaned sum of squares is at the demeaning's rounding level
/// ([`crate::demean::refine::absorbed`]) is absorbed.
pub fn solve(
    names: &[String],
    x: &[Vec<f64>],
    y: &[f64],
    weights: Option<&[f64]>,
    raw_ss: Option<&[f64]>,
    collin_tol: f64,
) -> Ols {
    let (xtx, xty) = gram(x, y, weights);
    with_residuals(solve_cross_products(names, &xtx, &xty, raw_ss, collin_tol), x, y)
}

/// [`solve`] that refuses non-finite cross products or sums of squares (naming the column)
/// instead of turning them into a collinearity drop or a non-finite coefficient.
pub fn solve_checked(
    names: &[String],
    x: &[Vec<f64>],
    y: &[f64],
    weights: Option<&[f64]>,
    raw_ss: Option<&[f64]>,
    collin_tol: f64,
) -> Result<Ols> {
    let (xtx, xty) = gram(x, y, weights);
    let ols = solve_cross_products_checked(names, &xtx, &xty, raw_ss, collin_tol)?;
    Ok(with_residuals(ols, x, y))
}

/// `X'WX` and `X'Wy`, in one blocked pass over `[x…, y]`.
fn gram(x: &[Vec<f64>], y: &[f64], weights: Option<&[f64]>) -> (Mat, Vec<f64>) {
    let cols: Vec<&[f64]> = x.iter().map(|c| c.as_slice()).chain(std::iter::once(y)).collect();
    let all = cross_products(&cols, weights);
    let k = x.len();
    let idx: Vec<usize> = (0..k).collect();
    let xty = (0..k).map(|j| all.get(k, j)).collect();
    (all.select(&idx), xty)
}

/// `ols` with its residuals `y − Xβ`.
fn with_residuals(mut ols: Ols, x: &[Vec<f64>], y: &[f64]) -> Ols {
    let kept: Vec<&[f64]> = ols.kept.iter().map(|&j| x[j].as_slice()).collect();
    ols.resid = residuals(y, &kept, &ols.beta);
    ols
}

/// [`solve_cross_products`] after checking that the cross products and `raw_ss` are finite:
/// otherwise an error naming the regressor (an infinite `raw_ss` would make the collinearity
/// test drop it).
pub fn solve_cross_products_checked(
    names: &[String],
    xtx: &Mat,
    xty: &[f64],
    raw_ss: Option<&[f64]>,
    collin_tol: f64,
) -> Result<Ols> {
    super::finite::check_cross_products(names, xtx, xty)?;
    for (name, &ss) in names.iter().zip(raw_ss.unwrap_or(&[])) {
        super::finite::check_ss(name, "centred sum of squares", ss)?;
    }
    Ok(solve_cross_products(names, xtx, xty, raw_ss, collin_tol))
}

/// [`solve`] from the cross products `X̃'WX̃` and `X̃'Wỹ` of every regressor (the device
/// engine's read-back); `resid` is left empty.
pub fn solve_cross_products(names: &[String], xtx: &Mat, xty: &[f64], raw_ss: Option<&[f64]>, collin_tol: f64) -> Ols {
    let mut dropped = Vec::new();
    let mut candidates = Vec::new();
    for j in 0..names.len() {
        let absorbed = match raw_ss {
            Some(ss) => crate::demean::refine::absorbed(xtx.get(j, j), ss[j]),
            None => false,
        };
        if absorbed {
            dropped.push(DroppedRegressor {
                name: names[j].clone(),
                reason: "collinear with the fixed effects".into(),
            });
        } else {
            candidates.push(j);
        }
    }
    let sub = xtx.select(&candidates);
    let chol = cholesky_drop(&sub, collin_tol);
    for &d in &chol.dropped {
        dropped.push(DroppedRegressor {
            name: names[candidates[d]].clone(),
            reason: "collinear with other regressors".into(),
        });
    }
    let kept: Vec<usize> = chol.kept.iter().map(|&c| candidates[c]).collect();
    let bread = cholesky_inverse(&chol.l);
    let xty: Vec<f64> = kept.iter().map(|&j| xty[j]).collect();
    let beta = bread.mul_vec(&xty);
    // keep `dropped` in formula order
    dropped.sort_by_key(|d| names.iter().position(|n| *n == d.name));
    Ols {
        kept,
        dropped,
        beta,
        bread,
        resid: Vec::new(),
    }
}
