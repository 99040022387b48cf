//! Iterative refinement: the demeaned column accurate relative to **itself**, whatever the
//! column's level or between-group spread.
//!
//! An iterative solver stops on a residual relative to the column it was given: CG on
//! `‖D'W(v − Dα)‖ ≤ tol·‖D'Wv‖`, alternating projections on a change below `tol` times the
//! column's spread. When `v` is mostly level or between-group variation (y + 10⁶, a firm-level
//! component 10⁵ times the within spread), `‖D'Wv‖` measures that variation, not the within
//! part the regression uses, and "converged" leaves an error of the within part's own size.
//!
//! The measure here is the **between content** of a demeaned column `u`,
//! `β(u) = ‖D'Wu‖_{M⁻¹} / ‖u‖_W` with `M` the level weight sums (Jacobi): the weighted size of
//! `u`'s projection on each effect (exactly zero for an exact answer) against `u` itself. A
//! column with `β > SLACK·tol` is demeaned again — the solver applied to `u`, whose right-hand
//! side is only the remaining error — with the full tolerance: the error of the first solve
//! sits mostly in the graph's weakly connected directions, where a residual hardly shows it,
//! so a round that only asked for the missing factor `tol/β` would shrink the easy directions
//! and keep the hard ones (measured: y + 10⁶ on the difficult design kept a 0.4% error in
//! ỹ at β = 3·10⁻⁹). Each full round multiplies the residual by `tol`; one or two suffice.
//!
//! A column whose demeaned norm is at the rounding floor of its centred norm
//! ([`ROUNDING_FLOOR`]) is left as it is: it is absorbed by the fixed effects, and what is left
//! is rounding noise that no solve can shrink; [`absorbed`] is the collinearity test that
//! decides it from the accurately demeaned column.

use super::{Absorb, DemeanOptions, Demeaned};
use crate::error::Result;

/// Refinement rounds after the first solve.
pub const MAX_ROUNDS: usize = 3;
/// A column is solved again when its between content exceeds this many times `tol`: its
/// projection on the effects was then at least this many times its within part, and the first
/// solve's rule (relative to the whole column) bounded the within part's error only loosely.
/// Below it the first solve is as accurate as on any column (the fixtures against exact
/// solves hold there), and no second solve is spent.
pub const SLACK: f64 = 100.0;
/// A demeaned column whose weighted norm is below this fraction of its centred norm is rounding
/// noise (f64 keeps ~16 digits; sums over many rows lose two or three).
pub const ROUNDING_FLOOR: f64 = 1e-13;
/// A regressor is absorbed by the fixed effects when its demeaned norm is below this fraction of
/// its centred norm (sum of squares ratio 10⁻²⁰): three orders above the rounding floor, so an
/// accurately demeaned regressor whose within part is 10⁻⁹ of its between-group spread is kept
/// (fixest and pyfixest keep such regressors; their Cholesky works on the demeaned columns).
pub const ABSORBED: f64 = 1e-10;

/// The relative rounding of df64 arithmetic (pairs of f32: 48 bits, a few lost per operation).
pub const DF64_ROUNDOFF: f64 = 5.7e-14; // 2^-44
/// The relative accuracy a demeaned column must keep: a backend whose rounding of the column's
/// spread exceeds this fraction of its within part hands the column to the CPU's f64.
pub const WITHIN_ACCURACY: f64 = 1e-10;

/// Whether a column with centred norm `spread` and demeaned norm `within` keeps
/// [`WITHIN_ACCURACY`] under arithmetic of relative rounding `roundoff`.
pub fn precise_enough(roundoff: f64, spread: f64, within: f64) -> bool {
    roundoff * spread <= WITHIN_ACCURACY * within
}

/// Whether a regressor with demeaned weighted sum of squares `ss` and centred `raw_ss` is
/// absorbed by the fixed effects.
pub fn absorbed(ss: f64, raw_ss: f64) -> bool {
    raw_ss == 0.0 || ss <= ABSORBED * ABSORBED * raw_ss
}

/// The weighted norm ‖x − x̄‖_W of each column (the scale [`ROUNDING_FLOOR`] is relative to),
/// from [`crate::linalg::passes::moments`].
pub fn centred_norms(w: Option<&[f64]>, columns: &[Vec<f64>]) -> Vec<f64> {
    let refs: Vec<&[f64]> = columns.iter().map(|c| c.as_slice()).collect();
    crate::linalg::passes::moments(&refs, w)
        .iter()
        .map(|m| m.centred_ss.sqrt())
        .collect()
}

/// `(β(u), ‖u‖_W)` of a demeaned column (see the module doc).
pub fn between_content(problem: &Absorb, u: &[f64]) -> (f64, f64) {
    let w = problem.weights;
    let norm = u
        .iter()
        .enumerate()
        .map(|(i, &x)| w.map_or(1.0, |w| w[i]) * x * x)
        .sum::<f64>()
        .sqrt();
    let mut between = 0.0;
    for (fe, inv) in problem.fes.iter().zip(&problem.inv_weight_sums) {
        let s = match w {
            Some(w) => crate::fe::index::level_sums(&fe.ids, fe.levels, |i| w[i] * u[i]),
            None => crate::fe::index::level_sums(&fe.ids, fe.levels, |i| u[i]),
        };
        between += s.iter().zip(inv).map(|(a, i)| a * a * i).sum::<f64>();
    }
    if norm > 0.0 {
        (between.sqrt() / norm, norm)
    } else {
        (0.0, 0.0)
    }
}

/// Refine `d` (the solver's answer for columns whose centred norms were `scale`) with `solve`
/// until every column's between content is at most `SLACK · opts.tol`; a column still above after
/// [`MAX_ROUNDS`] is reported not converged. `solve` is the method that produced `d`.
pub fn refine(
    problem: &Absorb,
    d: &mut Demeaned,
    scale: &[f64],
    opts: &DemeanOptions,
    solve: &dyn Fn(Vec<Vec<f64>>, &DemeanOptions) -> Result<Demeaned>,
) -> Result<()> {
    for round in 0..=MAX_ROUNDS {
        let contents: Vec<(f64, f64)> = {
            use rayon::prelude::*;
            d.columns.par_iter().map(|c| between_content(problem, c)).collect()
        };
        let measured: Vec<(usize, f64)> = (0..d.columns.len())
            .filter(|j| !d.not_converged.contains(j))
            .map(|j| (j, contents[j]))
            .filter(|&(j, (beta, norm))| beta > SLACK * opts.tol && norm > ROUNDING_FLOOR * scale[j])
            .map(|(j, (beta, _))| (j, beta))
            .collect();
        if measured.is_empty() {
            return Ok(());
        }
        if round == MAX_ROUNDS {
            d.not_converged.extend(measured.iter().map(|&(j, _)| j));
            d.not_converged.sort_unstable();
            return Ok(());
        }
        let cols = measured
            .iter()
            .map(|&(j, _)| std::mem::take(&mut d.columns[j]))
            .collect();
        let again = solve(cols, opts)?;
        d.iterations += again.iterations;
        for (k, (&(j, _), col)) in measured.iter().zip(again.columns).enumerate() {
            d.columns[j] = col;
            if again.not_converged.contains(&k) {
                d.not_converged.push(j);
            }
        }
        d.not_converged.sort_unstable();
        d.not_converged.dedup();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fe::FixedEffect;

    #[test]
    fn between_content_is_zero_for_a_demeaned_column_and_one_for_a_level_column() {
        let fe = FixedEffect::from_codes("g", &[0, 0, 1, 1]);
        let problem = Absorb::new(vec![&fe], None);
        assert_eq!(between_content(&problem, &[1.0, -1.0, 2.0, -2.0]).0, 0.0);
        let (b, n) = between_content(&problem, &[1.0, 1.0, -1.0, -1.0]);
        assert!((b - 1.0).abs() < 1e-15 && (n - 2.0).abs() < 1e-15);
    }

    #[test]
    fn absorption_is_judged_on_the_norm_ratio() {
        // within part 1e-6 of the spread: kept; 1e-11: absorbed
        assert!(!absorbed(1e-12, 1.0));
        assert!(absorbed(1e-22, 1.0));
        assert!(absorbed(0.0, 0.0));
    }
}
