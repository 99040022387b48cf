//! Which method demeans a problem, decided once above the backends (`--solver`).
//!
//! * no effect: nothing to do; one effect: one exact pass (group means);
//! * one large effect beside few-level ones (firm×destination + year): exact without iterating,
//!   by Frisch–Waugh–Lovell — the columns projected on the large effect in one pass, then the
//!   few-level effects' dummies' least-squares fit taken out, the demeaned dummies entering
//!   through per-level sums without being built as columns ([`dummies`], [`LevelDummies`]);
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
use crate::linalg::{cholesky_drop, cholesky_inverse, Mat};

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
pub const JACOBI_BUDGET: usize = 50;
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

/// Demean `columns` on `backend` with the method `opts.solver` asks for. Each column is
/// centred (in f64) and scaled by a power of two (exact) so that its largest value is near 1 while it is solved:
/// the solvers' sums of squares stay within f64's range whatever the column's units.
pub fn demean(
    backend: &dyn Demeaner,
    problem: &Absorb,
    mut columns: Vec<Vec<f64>>,
    opts: &DemeanOptions,
) -> Result<Demeaned> {
    check_tol(opts.tol)?;
    if !problem.fes.is_empty() {
        // a constant is in every effect's span: take the weighted mean out in f64 first, so a
        // column's level (y + 1e9) never reaches a backend with fewer digits (df64)
        columns.iter_mut().for_each(|c| centre(c, problem.weights));
    }
    let exponents: Vec<i32> = columns.iter_mut().map(|c| to_unit_scale(c)).collect();
    let spread = super::refine::centred_norms(problem.weights, &columns);
    let keep = (backend.roundoff() > f64::EPSILON).then(|| columns.clone());
    let mut d = demean_scaled(backend, problem, columns, &spread, opts)?;
    if let Some(raw) = keep {
        redo_imprecise(backend, problem, raw, &spread, &mut d, opts)?;
    }
    for (c, &e) in d.columns.iter_mut().zip(&exponents) {
        scale_by_power_of_two(c, e);
    }
    Ok(d)
}

/// Columns whose within part is too small a fraction of their spread for `backend`'s
/// arithmetic (df64: a between-group component 10⁶ times the within spread leaves 10⁻⁸ of
/// it) are demeaned again from `raw` (centred norms `spread`) on the CPU, in f64.
fn redo_imprecise(
    backend: &dyn Demeaner,
    problem: &Absorb,
    raw: Vec<Vec<f64>>,
    spread: &[f64],
    d: &mut Demeaned,
    opts: &DemeanOptions,
) -> Result<()> {
    let redo: Vec<usize> = (0..raw.len())
        .filter(|&j| {
            let within = super::refine::between_content(problem, &d.columns[j]).1;
            !super::refine::precise_enough(backend.roundoff(), spread[j], within)
        })
        .collect();
    if redo.is_empty() {
        return Ok(());
    }
    let mut raw = raw;
    let cols = redo.iter().map(|&j| std::mem::take(&mut raw[j])).collect();
    let sub: Vec<f64> = redo.iter().map(|&j| spread[j]).collect();
    let exact = demean_scaled(&super::CpuDemeaner, problem, cols, &sub, opts)?;
    for (k, (&j, col)) in redo.iter().zip(exact.columns).enumerate() {
        d.columns[j] = col;
        d.not_converged.retain(|&c| c != j);
        if exact.not_converged.contains(&k) {
            d.not_converged.push(j);
        }
    }
    d.not_converged.sort_unstable();
    Ok(())
}

/// Subtract the weighted mean of `c`.
fn centre(c: &mut [f64], w: Option<&[f64]>) {
    let (mut sw, mut swx) = (0.0, 0.0);
    for (i, &x) in c.iter().enumerate() {
        let wi = w.map_or(1.0, |w| w[i]);
        sw += wi;
        swx += wi * x;
    }
    if sw > 0.0 && swx.is_finite() {
        let mean = swx / sw;
        c.iter_mut().for_each(|x| *x -= mean);
    }
}

/// Multiply `c` by 2^−e so that its largest magnitude lies in [0.5, 1); returns e (0 for a
/// column of zeros or with a non-finite value, which the callers' checks report).
fn to_unit_scale(c: &mut [f64]) -> i32 {
    let top = c.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    if !(top > 0.0) || !top.is_finite() {
        return 0;
    }
    let e = top.log2().floor() as i32 + 1;
    scale_by_power_of_two(c, -e);
    e
}

/// `c × 2^e`, exactly (in two steps when 2^e alone would leave f64's range).
fn scale_by_power_of_two(c: &mut [f64], e: i32) {
    if e == 0 {
        return;
    }
    let (a, b) = (e / 2, e - e / 2);
    let (fa, fb) = (2f64.powi(a), 2f64.powi(b));
    c.iter_mut().for_each(|x| *x = *x * fa * fb);
}

/// [`demean`]'s method on centred, unit-scale columns whose centred norms are `scale`.
fn demean_scaled(
    backend: &dyn Demeaner,
    problem: &Absorb,
    mut columns: Vec<Vec<f64>>,
    scale: &[f64],
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
        super::refine::refine(problem, &mut d, &scale, opts, &|c, o| {
            backend.alternating(problem, c, o)
        })?;
        d.residual = raw
            .iter()
            .zip(&d.columns)
            .map(|(v, x)| normal_residual(&problem.fes, problem.weights, v, x))
            .fold(0.0, f64::max);
        return Ok(d);
    }
    let first = if problem.warm_start {
        warm_start_options(problem, &columns, opts)
    } else {
        *opts
    };
    let mut d = backend.krylov(problem, columns, &first)?;
    super::refine::refine(problem, &mut d, &scale, opts, &|c, o| backend.krylov(problem, c, o))?;
    Ok(d)
}

/// CG's options for columns that may be nearly demeaned already ([`Absorb::warm_start`]: IRLS
/// passes the last iteration's demeaned column plus the change of its input). CG's rule is relative
/// to the input's own normal-equation right-hand side, so on an input whose between content
/// β(v) is already small it would shrink an already small residual by `tol` once more; the
/// accuracy that counts is the result's between content, which [`super::refine::refine`]
/// checks against `tol` afterwards. So the first solve runs at `tol / max β(v)` (at most
/// [`WARM_TOL_CAP`]); cold inputs (β ≥ 1) keep `tol`.
fn warm_start_options(problem: &Absorb, columns: &[Vec<f64>], opts: &DemeanOptions) -> DemeanOptions {
    use rayon::prelude::*;
    let beta = columns
        .par_iter()
        .map(|c| super::refine::between_content(problem, c).0)
        .reduce(|| 0.0, f64::max);
    if beta >= 1.0 || beta == 0.0 {
        return *opts;
    }
    DemeanOptions {
        tol: (opts.tol / beta).min(WARM_TOL_CAP).max(opts.tol),
        ..*opts
    }
}

/// The loosest first-solve tolerance of a warm start.
const WARM_TOL_CAP: f64 = 1e-2;

/// A tolerance f64 arithmetic can reach ([`super::MIN_TOL`]), else a usage error.
pub fn check_tol(tol: f64) -> Result<()> {
    if tol.is_finite() && tol >= super::MIN_TOL && tol < 1.0 {
        Ok(())
    } else {
        Err(crate::error::Error::Usage(format!(
            "--tol {tol:e} is outside what f64 arithmetic can reach: use a tolerance between {:e} and 1 (default 1e-8)",
            super::MIN_TOL
        )))
    }
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

/// Exact demeaning without iterating, by Frisch–Waugh–Lovell: demean every column by the large
/// effect alone (one exact pass on the backend), then take the few-level effects' dummies'
/// weighted least-squares fit out of each column, the dummies demeaned by the large effect
/// too. Dummies the large effect absorbs (a nested effect, a level seen only where it fills
/// the large effect's level) are dropped: their demeaned sum of squares is below 1e-10 of
/// their raw one; the pivoted Cholesky drops dummies collinear with each other. Equals the
/// fixed point of alternating projections, without its tolerance.
///
/// The dummies are never built as columns (at 10M rows, six year dummies were 480 MB written
/// and demeaned): see [`LevelDummies`].
pub fn dummies(
    backend: &dyn Demeaner,
    problem: &Absorb,
    columns: &mut [Vec<f64>],
    large: usize,
    small: &[usize],
) -> Result<()> {
    let big = Absorb {
        fes: vec![problem.fes[large]],
        weights: problem.weights,
        inv_weight_sums: vec![problem.inv_weight_sums[large].clone()],
        warm_start: false,
    };
    backend.one_pass(&big, columns)?;
    let dummies = LevelDummies::new(problem, large, small);
    let d = dummies.count;
    if d == 0 {
        return Ok(());
    }
    let ch = cholesky_drop(&dummies.gram_unabsorbed(), 1e-10);
    if ch.kept.is_empty() {
        return Ok(());
    }
    let inv = cholesky_inverse(&ch.l);
    // γ = (D̃'WD̃)⁻¹ D̃'W x̃ per column, then x̃ −= D̃ γ
    let gammas: Vec<Vec<f64>> = dummies
        .cross(columns)
        .iter()
        .map(|r| {
            let kept: Vec<f64> = ch.kept.iter().map(|&a| r[a]).collect();
            let mut gamma = vec![0.0; d];
            for (&a, v) in ch.kept.iter().zip(inv.mul_vec(&kept)) {
                gamma[a] = v;
            }
            gamma
        })
        .collect();
    dummies.subtract(columns, &gammas);
    Ok(())
}

/// Rows per task of [`LevelDummies`]' passes (a block of every column stays in cache; small in
/// unit tests, so that their problems span many blocks).
const ROWS: usize = if cfg!(test) { 256 } else { 1 << 15 };

/// The few-level effects' dummies as the large effect sees them, without building them: row
/// `i`'s dummies (level 0 of each small effect has none) and, per level `g` of the large
/// effect, each dummy's weighted sum `S[g][a]`, so the dummy demeaned by the large effect is
/// `d_a − S[g][a] / W_g` on the rows of level `g`.
struct LevelDummies<'a> {
    big: &'a FixedEffect,
    /// `1 / W_g` (0 for a level without weight)
    inv: &'a [f64],
    weights: Option<&'a [f64]>,
    small: Vec<&'a FixedEffect>,
    /// first dummy of each small effect
    offset: Vec<usize>,
    count: usize,
    /// `S`, levels × count, row-major
    sums: Vec<f64>,
}

/// Levels a small effect may have in [`LevelDummies`]' lookup tables (at most
/// [`MAX_DUMMIES`] + 1, see [`few_level_split`]); a power of two, so masking an id is free.
const SMALL_LEVELS: usize = 64;
const _: () = assert!(MAX_DUMMIES < SMALL_LEVELS);

impl<'a> LevelDummies<'a> {
    fn new(problem: &'a Absorb, large: usize, small: &[usize]) -> Self {
        let small: Vec<&FixedEffect> = small.iter().map(|&k| problem.fes[k]).collect();
        let mut offset = Vec::with_capacity(small.len());
        let mut count = 0;
        for f in &small {
            offset.push(count);
            count += f.levels.saturating_sub(1);
        }
        let big = problem.fes[large];
        let mut sums = vec![0.0; big.levels * count];
        for (e, &off) in small.iter().zip(&offset) {
            for (i, (&g, &l)) in big.ids.iter().zip(&e.ids).enumerate() {
                if l > 0 {
                    sums[g as usize * count + off + l as usize - 1] += problem.weights.map_or(1.0, |w| w[i]);
                }
            }
        }
        LevelDummies {
            big,
            inv: &problem.inv_weight_sums[large],
            weights: problem.weights,
            small,
            offset,
            count,
            sums,
        }
    }

    /// The demeaned dummies' weighted Gram, `Σ_i w d d' − Σ_g S_g S_g' / W_g`, and the raw
    /// diagonal `Σ_i w d_a`.
    fn gram(&self) -> (Mat, Vec<f64>) {
        let d = self.count;
        let mut g = Mat::zeros(d);
        // Σ_i w d d': an effect with itself is diagonal (its dummies are disjoint), a pair of
        // effects is their cross tabulation (entered on both sides)
        for (k, (e, &off)) in self.small.iter().zip(&self.offset).enumerate() {
            for (f, &off2) in self.small[..=k].iter().zip(&self.offset) {
                for (i, (&l, &m)) in e.ids.iter().zip(&f.ids).enumerate() {
                    if l > 0 && m > 0 {
                        let (a, b) = (off + l as usize - 1, off2 + m as usize - 1);
                        let w = self.weights.map_or(1.0, |w| w[i]);
                        g.a[a * d + b] += w;
                        if a != b {
                            g.a[b * d + a] += w;
                        }
                    }
                }
            }
        }
        let raw = (0..d).map(|a| g.get(a, a)).collect();
        let mut nonzero = Vec::with_capacity(d);
        for (s, &inv) in self.sums.chunks_exact(d).zip(self.inv) {
            nonzero.clear();
            nonzero.extend(s.iter().enumerate().filter(|(_, v)| **v != 0.0));
            for &(a, sa) in &nonzero {
                for &(b, sb) in &nonzero {
                    g.a[a * d + b] -= sa * sb * inv;
                }
            }
        }
        (g, raw)
    }

    /// [`LevelDummies::gram`] with the rows and columns of dummies the large effect absorbs
    /// set to zero (demeaned sum of squares at most 1e-10 of the raw one; computed as a
    /// difference, an absorbed dummy's is rounding noise that could otherwise pass as a pivot).
    fn gram_unabsorbed(&self) -> Mat {
        let d = self.count;
        let (mut g, raw) = self.gram();
        for a in 0..d {
            if !(g.get(a, a) > 1e-10 * raw[a]) {
                (0..d).for_each(|b| (g.a[a * d + b], g.a[b * d + a]) = (0.0, 0.0));
            }
        }
        g
    }

    /// `Σ_i w d_a x_i` for every dummy and column: `D̃'W x` for columns already demeaned by the
    /// large effect (their weighted sum within each level is zero, so the dummies' level shares
    /// drop). Blocks of rows in parallel, each column's block summed by level of each small
    /// effect, blocks added in order.
    fn cross(&self, columns: &[Vec<f64>]) -> Vec<Vec<f64>> {
        use rayon::prelude::*;
        let (n, d) = (self.big.ids.len(), self.count);
        let parts: Vec<Vec<f64>> = (0..n.div_ceil(ROWS))
            .into_par_iter()
            .map(|t| {
                let rows = t * ROWS..((t + 1) * ROWS).min(n);
                let mut acc = vec![0.0; columns.len() * d];
                for (e, &off) in self.small.iter().zip(&self.offset) {
                    let ids = &e.ids[rows.clone()];
                    for (x, r) in columns.iter().zip(acc.chunks_exact_mut(d)) {
                        let mut by_level = [0.0; SMALL_LEVELS];
                        let x = &x[rows.clone()];
                        match self.weights {
                            None => ids
                                .iter()
                                .zip(x)
                                .for_each(|(&l, &xi)| by_level[l as usize % SMALL_LEVELS] += xi),
                            Some(w) => ids
                                .iter()
                                .zip(x)
                                .zip(&w[rows.clone()])
                                .for_each(|((&l, &xi), &wi)| by_level[l as usize % SMALL_LEVELS] += wi * xi),
                        }
                        r[off..off + e.levels - 1].copy_from_slice(&by_level[1..e.levels]);
                    }
                }
                acc
            })
            .collect();
        let mut total = vec![0.0; columns.len() * d];
        for p in parts {
            total.iter_mut().zip(p).for_each(|(t, v)| *t += v);
        }
        total.chunks_exact(d).map(<[f64]>::to_vec).collect()
    }

    /// `x_c −= D̃ γ_c` for every column: on row `i` of level `g`,
    /// `Σ_{a ∈ dummies(i)} γ_a − Σ_a γ_a S[g][a] / W_g`. Blocks of rows in parallel; in each,
    /// the second sum is formed once per run of rows of one level for all columns together
    /// (`Γ` laid out dummy-major, so each dummy adds a contiguous row of the columns' values),
    /// and each column is then one pass of two table lookups per row.
    fn subtract(&self, columns: &mut [Vec<f64>], gammas: &[Vec<f64>]) {
        use rayon::prelude::*;
        let (n, d, c) = (self.big.ids.len(), self.count, columns.len());
        let by_dummy: Vec<f64> = (0..d).flat_map(|a| gammas.iter().map(move |g| g[a])).collect();
        let mut blocks: Vec<Vec<&mut [f64]>> = (0..n.div_ceil(ROWS)).map(|_| Vec::new()).collect();
        for col in columns.iter_mut() {
            for (t, chunk) in col.chunks_mut(ROWS).enumerate() {
                blocks[t].push(chunk);
            }
        }
        blocks.into_par_iter().enumerate().for_each_init(
            Default::default,
            |(run_of, level_part): &mut (Vec<u32>, Vec<f64>), (t, mut cols)| {
                let r0 = t * ROWS;
                let ids = &self.big.ids[r0..r0 + cols[0].len()];
                run_of.clear();
                level_part.clear();
                let mut q = vec![0.0; c];
                for (j, &g) in ids.iter().enumerate() {
                    if j == 0 || g != ids[j - 1] {
                        q.iter_mut().for_each(|v| *v = 0.0);
                        let s = &self.sums[g as usize * d..][..d];
                        for (&sa, row) in s.iter().zip(by_dummy.chunks_exact(c)) {
                            if sa != 0.0 {
                                q.iter_mut().zip(row).for_each(|(v, &gm)| *v += sa * gm);
                            }
                        }
                        level_part.extend(q.iter().map(|v| v * self.inv[g as usize]));
                    }
                    run_of.push((level_part.len() / c - 1) as u32);
                }
                for (k, (x, gamma)) in cols.iter_mut().zip(gammas).enumerate() {
                    for (first, (e, &off)) in self.small.iter().zip(&self.offset).enumerate() {
                        let mut by_level = [0.0; SMALL_LEVELS];
                        by_level[1..e.levels].copy_from_slice(&gamma[off..off + e.levels - 1]);
                        let levels = &e.ids[r0..r0 + ids.len()];
                        // the level part rides with the first effect's pass
                        if first == 0 {
                            for ((v, &l), &r) in x.iter_mut().zip(levels).zip(run_of.iter()) {
                                *v -= by_level[l as usize % SMALL_LEVELS] - level_part[r as usize * c + k];
                            }
                        } else {
                            for (v, &l) in x.iter_mut().zip(levels) {
                                *v -= by_level[l as usize % SMALL_LEVELS];
                            }
                        }
                    }
                }
            },
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An effect nested in the large one has its dummy zeroed exactly (a level filling a large
    /// level whose weight is 49 leaves 49 − 49²·fl(1/49) ≠ 0 in the difference); the others stay.
    #[test]
    fn absorbed_dummies_are_zeroed_and_the_rest_kept() {
        let n = 49 * 6;
        let big = FixedEffect {
            name: "g".into(),
            ids: (0..n as u32).map(|i| i / 49).collect(),
            levels: 6,
        };
        let nested = FixedEffect {
            name: "nested".into(),
            ids: big.ids.iter().map(|&g| (g % 2 == 1) as u32).collect(),
            levels: 2,
        };
        let year = FixedEffect {
            name: "year".into(),
            ids: (0..n as u32).map(|i| i % 3).collect(),
            levels: 3,
        };
        let problem = Absorb::new(vec![&big, &nested, &year], None);
        let dummies = LevelDummies::new(&problem, 0, &[1, 2]);
        let (raw_gram, _) = dummies.gram();
        assert!(
            raw_gram.get(0, 0) != 0.0,
            "the difference leaves noise for the nested dummy"
        );
        let g = dummies.gram_unabsorbed();
        assert!((0..3).all(|b| g.get(0, b) == 0.0 && g.get(b, 0) == 0.0));
        assert!(g.get(1, 1) > 1.0 && g.get(2, 2) > 1.0);
    }
}
