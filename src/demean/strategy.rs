//! Which method demeans a problem, decided once above the backends (`--solver`).
//!
//! * no effect: nothing to do; one effect: one exact pass (group means);
//! * one large effect beside few-level ones (firm×destination + year): exact without iterating,
//!   by Frisch–Waugh–Lovell — the columns and the few-level effects' dummies projected on the
//!   large effect in one pass, then the dummies' least-squares fit taken out ([`dummies`]);
//! * otherwise the preconditioned conjugate-gradient solver ([`super::krylov`]) climbing the
//!   ladder of [`super::precond`]: Jacobi first (cheap; enough on well-connected panels), and
//!   for lanes still running after [`JACOBI_BUDGET`] iterations — or sooner, when after
//!   [`JACOBI_PROBE`] iterations their residual falls too slowly — the factored preconditioner —
//!   the exact two-effect block when there are two effects, Schwarz when there are more —
//!   continuing from where Jacobi stopped;
//! * `--solver ap` keeps alternating projections with Irons–Tuck (fixest's method), which wins
//!   only on tiny, well-connected problems and is kept for comparison.
//!
//! Backends supply the kernels: a single-effect pass, the alternating sweeps, and the
//! [`super::krylov::FeOps`] operator; this module owns the choice and the FWL algebra.

use super::krylov::{pcg, FeOps};
use super::precond::{Kind, Preconditioner};
use super::{Absorb, DemeanOptions, Demeaned, Demeaner};
use crate::error::Result;
use crate::fe::FixedEffect;
use crate::linalg::{cholesky_drop, cholesky_inverse, passes};

/// `--solver`: how the fixed effects are projected out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Solver {
    /// Exact paths where they apply, else CG with the preconditioner ladder.
    #[default]
    Auto,
    /// Alternating projections with Irons–Tuck acceleration.
    Ap,
    /// Conjugate gradients with the Jacobi preconditioner only.
    CgJacobi,
    /// Conjugate gradients with the two largest effects' block factored.
    CgBlock2,
    /// Conjugate gradients with additive Schwarz / approximate Cholesky.
    CgSchwarz,
}

/// Jacobi-preconditioned iterations before a lane climbs to the factored preconditioner.
pub const JACOBI_BUDGET: usize = 25;
/// Iterations after which a lane whose Jacobi residual falls too slowly to meet the tolerance
/// within [`JACOBI_BUDGET`] climbs at once.
pub const JACOBI_PROBE: usize = 6;
/// Most dummy columns [`dummies`] builds.
pub const MAX_DUMMIES: usize = 32;

/// How a problem was solved (JSON `solver` and `preconditioner`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Method {
    pub solver: String,
    pub preconditioner: Option<String>,
}

impl Method {
    fn exact(what: &str) -> Method {
        Method {
            solver: what.to_string(),
            preconditioner: None,
        }
    }
}

/// Demean `columns` on `backend` with the method `opts.solver` asks for.
pub fn demean(
    backend: &dyn Demeaner,
    problem: &Absorb,
    mut columns: Vec<Vec<f64>>,
    opts: &DemeanOptions,
) -> Result<Demeaned> {
    match problem.fes.len() {
        0 => return Ok(Demeaned::exact(columns, 0, Method::exact("none"))),
        1 => {
            backend.one_pass(problem, &mut columns)?;
            return Ok(Demeaned::exact(columns, 1, Method::exact("exact: one effect")));
        }
        _ => {}
    }
    if opts.solver == Solver::Auto {
        if let Some((large, small)) = few_level_split(&problem.fes) {
            dummies(backend, problem, &mut columns, large, &small)?;
            return Ok(Demeaned::exact(
                columns,
                1,
                Method::exact("exact: large effect + dummies (FWL)"),
            ));
        }
    }
    if opts.solver == Solver::Ap {
        // keep the raw columns to measure the result on the normal equations, as CG is
        let raw = columns.clone();
        let mut d = backend.alternating(problem, columns, opts)?;
        d.residual = raw
            .iter()
            .zip(&d.columns)
            .map(|(v, x)| normal_residual(&problem.fes, problem.weights, v, x))
            .fold(0.0, f64::max);
        return Ok(d);
    }
    backend.krylov(problem, columns, opts)
}

/// The rungs `opts.solver` allows for a problem with `n_fe` effects.
pub fn ladder(solver: Solver, n_fe: usize) -> Vec<Kind> {
    let strong = if n_fe == 2 { Kind::Block2 } else { Kind::Schwarz };
    match solver {
        Solver::CgJacobi => vec![Kind::Jacobi],
        Solver::CgBlock2 => vec![Kind::Block2],
        Solver::CgSchwarz => vec![Kind::Schwarz],
        _ => vec![Kind::Jacobi, strong],
    }
}

/// Run CG on `ops` up the ladder: each rung continues the lanes the previous one left
/// unconverged from their current coefficients. `weights[r]` is replicate r's weight vector;
/// factored preconditioners are built once, for `weights[0]`. Returns the outcome, the
/// coefficients and the preconditioner names used.
pub fn run_ladder<K: FeOps>(
    ops: &mut K,
    fes: &[&FixedEffect],
    weights: &[Option<&[f64]>],
    opts: &DemeanOptions,
) -> Result<(super::krylov::KrylovOutcome, Vec<String>)> {
    let rungs = ladder(opts.solver, fes.len());
    let mut alpha = ops.zeros()?;
    let mut used = Vec::new();
    let mut outcome = None;
    let mut spent = 0;
    for (i, &kind) in rungs.iter().enumerate() {
        let last = i + 1 == rungs.len();
        let budget = if last {
            opts.max_iter.saturating_sub(spent)
        } else {
            JACOBI_BUDGET.min(opts.max_iter)
        };
        let t0 = std::time::Instant::now();
        let m = match kind {
            Kind::Jacobi => Preconditioner::jacobi(fes, weights),
            _ => Preconditioner::factored(kind, fes, weights[0], weights)?,
        };
        let built = t0.elapsed().as_secs_f64();
        used.push(kind.name().to_string());
        let probe = (!last).then_some(JACOBI_PROBE);
        let o = pcg(ops, &m, &mut alpha, opts.tol, budget, probe)?;
        if std::env::var_os("FEGPU_TIMING").is_some() {
            eprintln!(
                "timing: cg {:<8} build {built:.3} s, {} iterations {:.3} s",
                kind.name(),
                o.iterations.iter().max().unwrap_or(&0),
                t0.elapsed().as_secs_f64() - built
            );
        }
        spent += o.iterations.iter().copied().max().unwrap_or(0);
        let done = o.converged.iter().all(|&c| c);
        outcome = Some(match outcome {
            None => o,
            Some(prev) => merge(prev, o),
        });
        if done {
            break;
        }
    }
    ops.finish(&alpha)?;
    Ok((outcome.expect("at least one rung"), used))
}

/// Iterations add up; convergence and residual are the later rung's.
fn merge(a: super::krylov::KrylovOutcome, b: super::krylov::KrylovOutcome) -> super::krylov::KrylovOutcome {
    super::krylov::KrylovOutcome {
        iterations: a.iterations.iter().zip(&b.iterations).map(|(x, y)| x + y).collect(),
        converged: a.converged.iter().zip(&b.converged).map(|(x, y)| *x || *y).collect(),
        residual: a
            .converged
            .iter()
            .zip(a.residual.iter().zip(&b.residual))
            .map(|(c, (x, y))| if *c { *x } else { *y })
            .collect(),
    }
}

/// A [`Demeaned`] from a Krylov outcome.
pub fn krylov_result(columns: Vec<Vec<f64>>, o: &super::krylov::KrylovOutcome, used: Vec<String>) -> Demeaned {
    Demeaned {
        columns,
        iterations: o.iterations.iter().copied().max().unwrap_or(0),
        not_converged: (0..o.converged.len()).filter(|&l| !o.converged[l]).collect(),
        method: Method {
            solver: "cg".to_string(),
            preconditioner: Some(used.join(" → ")),
        },
        residual: o.residual.iter().copied().fold(0.0, f64::max),
    }
}

/// One effect with many levels and the others with few (the study's firm×destination + year):
/// (the large effect, the small ones) when the small ones need at most [`MAX_DUMMIES`] dummies.
pub fn few_level_split(fes: &[&FixedEffect]) -> Option<(usize, Vec<usize>)> {
    if fes.len() < 2 {
        return None;
    }
    let large = (0..fes.len()).max_by_key(|&k| fes[k].levels)?;
    let small: Vec<usize> = (0..fes.len()).filter(|&k| k != large).collect();
    let dummies: usize = small.iter().map(|&k| fes[k].levels.saturating_sub(1)).sum();
    (dummies <= MAX_DUMMIES).then_some((large, small))
}

/// Exact demeaning without iterating, by Frisch–Waugh–Lovell: demean every column and the
/// dummies of the few-level effects by the large effect alone (one exact pass on the backend),
/// then take the dummies' weighted least-squares fit out of each column. Dummies collinear with
/// the large effect (a nested effect, a level with no weight) are dropped by the pivoted
/// Cholesky. Equals the fixed point of alternating projections, without its tolerance.
pub fn dummies(
    backend: &dyn Demeaner,
    problem: &Absorb,
    columns: &mut Vec<Vec<f64>>,
    large: usize,
    small: &[usize],
) -> Result<()> {
    use rayon::prelude::*;
    let big = Absorb {
        fes: vec![problem.fes[large]],
        weights: problem.weights,
        inv_weight_sums: vec![problem.inv_weight_sums[large].clone()],
    };
    let c = columns.len();
    for &s in small {
        let fe = problem.fes[s];
        columns.par_extend(
            (1..fe.levels as u32)
                .into_par_iter()
                .map(|level| fe.ids.iter().map(|&l| (l == level) as u8 as f64).collect::<Vec<f64>>()),
        );
    }
    backend.one_pass(&big, columns)?;
    let dummies = columns.split_off(c);
    let d: Vec<&[f64]> = dummies.iter().map(|v| v.as_slice()).collect();
    let g = passes::cross_products(&d, problem.weights);
    let ch = cholesky_drop(&g, 1e-10);
    if ch.kept.is_empty() {
        return Ok(());
    }
    let inv = cholesky_inverse(&ch.l);
    // D̃'W x for every column, then x −= D̃ γ with γ = (D̃'WD̃)⁻¹ D̃'W x: two blocked passes
    let kept: Vec<&[f64]> = ch.kept.iter().map(|&a| d[a]).collect();
    let xs: Vec<&[f64]> = columns.iter().map(|v| v.as_slice()).collect();
    let rhs = passes::cross(&xs, &kept, problem.weights);
    let gammas: Vec<Vec<f64>> = rhs.chunks_exact(kept.len()).map(|r| inv.mul_vec(r)).collect();
    passes::subtract_combinations(columns, &kept, &gammas);
    Ok(())
}

/// ‖D'W x‖ / ‖D'W v‖: how far `x` (a demeaned `v`) is from solving the fixed-effect normal
/// equations (0 for an exact projection; 0 when `v` itself is in the span of the effects).
pub fn normal_residual(fes: &[&FixedEffect], w: Option<&[f64]>, v: &[f64], x: &[f64]) -> f64 {
    let norm = |u: &[f64]| -> f64 {
        let mut total = 0.0;
        for fe in fes {
            let mut s = vec![0.0; fe.levels];
            for (i, &g) in fe.ids.iter().enumerate() {
                s[g as usize] += w.map_or(1.0, |w| w[i]) * u[i];
            }
            total += s.iter().map(|a| a * a).sum::<f64>();
        }
        total.sqrt()
    };
    let b = norm(v);
    if b > 0.0 {
        norm(x) / b
    } else {
        0.0
    }
}
