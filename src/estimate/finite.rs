//! Non-finite intermediates are errors that name the column (issue 14, item 1).
//!
//! The sample preparation drops rows with a non-finite value, but finite values can still make a
//! sum overflow: `1e200²` is `inf`, and an infinite sum of squares would otherwise print as a
//! 290-digit coefficient, a null standard error, or a regressor dropped "as collinear" because
//! its demeaned sum of squares is below `tol × ∞`. Every stage checks what it produced — the
//! input columns' sums of squares (before anything uses them), the demeaned columns, the cross
//! products `X̃'WX̃` and `X̃'Wỹ`, and finally the coefficients, their variances and the sums of
//! squares of the result — and stops with the column's name and the cause.

use crate::error::{Error, Result};
use crate::linalg::passes::{moments, Moments};
use crate::linalg::Mat;

/// The value of largest magnitude (with its sign).
fn largest(c: &[f64]) -> f64 {
    c.iter()
        .copied()
        .fold(0.0, |m: f64, v| if v.abs() > m.abs() || v.is_nan() { v } else { m })
}

/// The error for an input column whose sums of squares overflow.
pub(crate) fn overflow(name: &str, c: &[f64]) -> Error {
    Error::Estimation(format!(
        "column `{name}`: a value of {:e} makes its sums of squares overflow (not finite); rescale the variable",
        largest(c)
    ))
}

/// An input column (or its weighted version) whose values or `Σ w v²` are not finite.
#[cfg(test)]
pub(crate) fn check_input(name: &str, c: &[f64], w: Option<&[f64]>) -> Result<()> {
    checked_moments([(name, c)], w).map(drop)
}

/// Weights whose sum overflows (each weight is finite; their total is not).
pub(crate) fn check_weights(name: Option<&str>, w: Option<&[f64]>) -> Result<()> {
    match w {
        Some(w) if !w.iter().sum::<f64>().is_finite() => Err(Error::Estimation(format!(
            "weights `{}`: a weight of {:e} makes their sum overflow (not finite); rescale the weights",
            name.unwrap_or("(weights)"),
            largest(w)
        ))),
        _ => Ok(()),
    }
}

/// `rss` and `tss` (computed under weights of mean one) in the user's weight units, or an error
/// naming the weights when that product overflows: the estimates themselves do not depend on
/// the weights' scale, but sums of squares printed as `inf` would be wrong numbers.
pub(crate) fn in_weight_units(name: Option<&str>, scale: f64, rss: f64, tss: f64) -> Result<(f64, f64)> {
    let (r, t) = (rss * scale, tss * scale);
    if r.is_finite() && t.is_finite() {
        return Ok((r, t));
    }
    Err(Error::Estimation(format!(
        "weights `{}`: their mean ({scale:e}) makes the weighted sums of squares overflow (their sum overflows f64); divide the weights by a constant — the estimates do not depend on it",
        name.unwrap_or("(weights)")
    )))
}

/// The [`Moments`] of named columns in one pass over all of them; the first column (in order)
/// whose `Σ w v²` is not finite is reported by `error(name, column)`.
fn finite_moments<'a>(
    cols: impl IntoIterator<Item = (&'a str, &'a [f64])>,
    w: Option<&[f64]>,
    error: impl Fn(&str, &[f64]) -> Error,
) -> Result<Vec<Moments>> {
    let (names, cols): (Vec<&str>, Vec<&[f64]>) = cols.into_iter().unzip();
    let m = moments(&cols, w);
    match names.iter().zip(&cols).zip(&m).find(|(_, mo)| !mo.sum_sq.is_finite()) {
        Some(((name, c), _)) => Err(error(name, c)),
        None => Ok(m),
    }
}

/// The [`Moments`] of named input columns, after checking that each column's `Σ w v²` is finite.
/// Callers take the total and centred sums of squares from the result instead of passing again.
pub(crate) fn checked_moments<'a>(
    cols: impl IntoIterator<Item = (&'a str, &'a [f64])>,
    w: Option<&[f64]>,
) -> Result<Vec<Moments>> {
    finite_moments(cols, w, overflow)
}

/// Demeaned columns must have finite values and sums of squares (the first failing column, in
/// order, is named); their [`Moments`] are returned.
pub(crate) fn check_demeaned<'a>(
    cols: impl IntoIterator<Item = (&'a str, &'a [f64])>,
    w: Option<&[f64]>,
) -> Result<Vec<Moments>> {
    finite_moments(cols, w, |name, c| {
        Error::Estimation(format!(
            "column `{name}`: removing the fixed effects produced values that are not finite (largest {:e}); rescale the variable",
            largest(c)
        ))
    })
}

/// A sum of squares computed for `name` (raw or centred) that is not finite.
pub(crate) fn check_ss(name: &str, what: &str, ss: f64) -> Result<()> {
    if ss.is_finite() {
        return Ok(());
    }
    Err(Error::Estimation(format!(
        "column `{name}`: its {what} is not finite ({ss}; the sums overflow); rescale the variable"
    )))
}

/// The cross products `X̃'WX̃` (rows and columns named by `names`) and `X̃'Wỹ`.
pub(crate) fn check_cross_products(names: &[String], xtx: &Mat, xty: &[f64]) -> Result<()> {
    for (j, name) in names.iter().enumerate() {
        let row_ok = (0..names.len()).all(|k| xtx.get(j, k).is_finite());
        if !row_ok || !xty[j].is_finite() {
            return check_ss(name, "cross product with the other columns", f64::INFINITY);
        }
    }
    Ok(())
}

/// The estimation's result: coefficients, standard errors, the variance matrix and the sums of
/// squares must be finite (t may be infinite for an exact fit, where the standard error is 0).
pub(crate) fn check_result(r: &super::result::FitResult) -> Result<()> {
    check_ss(&r.depvar, "total sum of squares", r.tss)?;
    check_ss(&r.depvar, "residual sum of squares", r.rss)?;
    for (a, c) in r.coefficients.iter().enumerate() {
        check_ss(&c.name, "coefficient", c.estimate)?;
        check_ss(&c.name, "standard error", c.std_error)?;
        if !r.vcov_matrix[a].iter().all(|v| v.is_finite()) {
            check_ss(&c.name, "variance (covariance row)", f64::NAN)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflowing_column_is_named_with_its_value() {
        let e = check_input("x1", &[1.0, 1e200, 2.0], None).unwrap_err().to_string();
        assert!(
            e.contains("column `x1`") && e.contains("1e200") && e.contains("overflow"),
            "{e}"
        );
        assert!(check_input("x1", &[1.0, 1e150, 2.0], None).is_ok());
        // weights can make the sum overflow too
        assert!(check_input("x1", &[1e150], Some(&[1e20])).is_err());
    }

    #[test]
    fn infinite_raw_ss_or_cross_product_is_an_error_not_a_drop() {
        use crate::estimate::ols::{solve_cross_products, solve_cross_products_checked};
        let names = vec!["x1".to_string()];
        let xtx = Mat { n: 1, a: vec![1.0] };
        let inf = [f64::INFINITY];
        // unchecked, an infinite raw sum of squares reads as "collinear with the fixed effects"
        assert_eq!(
            solve_cross_products(&names, &xtx, &[1.0], Some(&inf), 1e-10)
                .dropped
                .len(),
            1
        );
        let e = solve_cross_products_checked(&names, &xtx, &[1.0], Some(&inf), 1e-10).unwrap_err();
        assert!(e.to_string().contains("column `x1`"), "{e}");
        let bad = Mat {
            n: 1,
            a: vec![f64::INFINITY],
        };
        assert!(solve_cross_products_checked(&names, &bad, &[1.0], Some(&[1.0]), 1e-10).is_err());
        assert!(solve_cross_products_checked(&names, &xtx, &[f64::NAN], None, 1e-10).is_err());
    }
}
