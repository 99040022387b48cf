//! Admitting a df64 GPU demeaner: the start-up self-test and what its failure means.
//!
//! [`GpuDemeaner::new`] hands every new df64 demeaner to [`admit`]. It takes the adapter's
//! outcome from the cache, or runs the test: the kernel checks of [`crate::gpu::selftest`]
//! (known answers, bit-equality with the host's f32 emulation, df64 accuracy) and a tiny
//! demeaning (ten observations, two fixed effects, weights) on this device against the exact
//! CPU demeaner, through both device solvers (alternating projections and conjugate gradients).
//! The outcome is stored on the device context, so results can report it (`df64_selftest`).
//!
//! On failure: where the adapter has `SHADER_F64`, the demeaner is reopened with native f64
//! (the caller sees the precision change and says so); otherwise `new` fails with an error
//! naming the adapter, its driver and the failed check, which `--backend auto` turns into a
//! one-line notice and the CPU. `--precision f64` needs no test: nothing is emulated.

use std::path::PathBuf;

use super::{Absorb, CpuDemeaner, DemeanOptions, Demeaner, GpuDemeaner, Solver};
use crate::error::{Error, Result};
use crate::fe::FixedEffect;
use crate::gpu::selftest::{cache, run_kernel, Check, Policy, SelfTest, Status, Variant};
use crate::gpu::Precision;

/// How the test is run: the prelude variant (tests break it on purpose), the cache policy and
/// the cache file.
#[derive(Debug, Clone)]
pub struct Admission {
    pub variant: Variant,
    pub policy: Policy,
    pub cache: Option<PathBuf>,
}

impl Admission {
    /// Production settings: the faithful prelude, `FEGPU_SELFTEST`, the user's cache file.
    pub fn from_env() -> Admission {
        Admission {
            variant: Variant::Faithful,
            policy: Policy::from_env(),
            cache: cache::default_path(),
        }
    }
}

/// Largest difference from the CPU accepted in the tiny demeaning, relative to the demeaned
/// column's scale. y carries a mean of 1000 beside a demeaned spread near 1, so cancellation
/// costs three digits: df64 lands near 1e-11 (lavapipe: 1.3e-11), f32 arithmetic near 1e-4.
pub const DEMEAN_TOLERANCE: f64 = 1e-9;

/// [`admit_with`] under the production settings.
pub fn admit(d: GpuDemeaner) -> Result<GpuDemeaner> {
    admit_with(d, &Admission::from_env())
}

/// Test `d` (df64 only), record the outcome on its context, and fall back on failure.
pub fn admit_with(mut d: GpuDemeaner, how: &Admission) -> Result<GpuDemeaner> {
    if d.precision != Precision::Df64 {
        return Ok(d);
    }
    let outcome = outcome(&d, how)?;
    let failed = outcome.status == Status::Failed;
    d.ctx.df64_selftest = Some(outcome);
    if failed {
        fall_back(d)
    } else {
        Ok(d)
    }
}

/// The cached outcome, or a fresh one (then cached; a failed write is ignored).
fn outcome(d: &GpuDemeaner, how: &Admission) -> Result<SelfTest> {
    let key = cache::CacheKey::of(&d.ctx.info);
    match (how.policy, &how.cache) {
        (Policy::Off, _) => return Ok(SelfTest::not_run()),
        (Policy::UseCache, Some(path)) if how.variant == Variant::Faithful => {
            if let Some(hit) = cache::lookup(path, &key) {
                return Ok(hit);
            }
        }
        _ => {}
    }
    let fresh = run(d, how.variant)?;
    if let (Some(path), Variant::Faithful) = (&how.cache, how.variant) {
        let _ = cache::store(path, &key, &fresh);
    }
    Ok(fresh)
}

/// Run every check on `d`'s device.
pub fn run(d: &GpuDemeaner, variant: Variant) -> Result<SelfTest> {
    let t0 = std::time::Instant::now();
    let mut checks = run_kernel(&d.ctx, variant)?;
    checks.push(tiny_demeaning(d)?);
    Ok(SelfTest::of(checks, t0.elapsed().as_secs_f64()))
}

/// Native f64 on the same adapter where it has it, else an error naming what failed.
fn fall_back(d: GpuDemeaner) -> Result<GpuDemeaner> {
    let info = &d.ctx.info;
    let outcome = d.ctx.df64_selftest.clone().expect("the outcome was just recorded");
    let failure = outcome.first_failure().unwrap_or_default();
    if d.ctx.shader_f64 {
        let mut f = GpuDemeaner::new(Precision::F64)?;
        let same = f.ctx.info.name == info.name && f.ctx.info.backend == info.backend;
        if same {
            f.ctx.df64_selftest = Some(outcome);
            return Ok(f);
        }
    }
    Err(Error::Gpu(format!(
        "the df64 self-test failed on {} ({:?}, driver {} {}): {failure}; the adapter has no native f64 \
         to fall back on — use --backend cpu (FEGPU_SELFTEST=force re-runs the test)",
        info.name, info.backend, info.driver, info.driver_info
    )))
}

/// Ten observations, two crossed effects, weights and two columns of different scales.
fn tiny_problem() -> (Vec<FixedEffect>, Vec<f64>, Vec<Vec<f64>>) {
    let fe = |name: &str, ids: [u32; 10], levels| FixedEffect {
        name: name.into(),
        ids: ids.to_vec(),
        levels,
    };
    let fes = vec![
        fe("firm", [0, 0, 0, 1, 1, 2, 2, 2, 3, 3], 4),
        fe("year", [0, 1, 2, 0, 1, 1, 2, 0, 2, 1], 3),
    ];
    let weights = vec![1.0, 2.0, 0.5, 1.0, 3.0, 1.0, 0.25, 1.0, 2.0, 1.5];
    let y = (0..10)
        .map(|i| 1000.0 + 3.1 * i as f64 - 0.37 * (i * i) as f64)
        .collect();
    let x = (0..10).map(|i| 1e-3 * (0.7 * i as f64).sin()).collect();
    (fes, weights, vec![y, x])
}

/// The tiny problem on `d` (on the GPU: its alternating projections and CG) against the CPU.
fn tiny_demeaning(d: &dyn Demeaner) -> Result<Check> {
    let (fes, weights, columns) = tiny_problem();
    let problem = Absorb::new(fes.iter().collect(), Some(&weights));
    let opts = |solver| DemeanOptions {
        tol: 1e-13,
        max_iter: 10_000,
        solver,
    };
    let reference = CpuDemeaner.demean(&problem, columns.clone(), &opts(Solver::Auto))?;
    let mut worst = 0f64;
    for solver in [Solver::Ap, Solver::CgJacobi] {
        let got = d.demean(&problem, columns.clone(), &opts(solver))?;
        worst = worst.max(max_scaled_difference(&got.columns, &reference.columns));
    }
    Ok(Check {
        name: "tiny demeaning (10 obs, two effects) matches the CPU".into(),
        passed: worst <= DEMEAN_TOLERANCE,
        detail: format!("largest difference {worst:.1e} of the column's scale (limit {DEMEAN_TOLERANCE:.0e})"),
    })
}

/// max |g − c| / rms(c) over columns; infinite where the device returned a non-finite value
/// (`f64::max` would silently skip a NaN).
fn max_scaled_difference(got: &[Vec<f64>], reference: &[Vec<f64>]) -> f64 {
    got.iter()
        .zip(reference)
        .map(|(g, c)| {
            if g.iter().any(|v| !v.is_finite()) {
                return f64::INFINITY;
            }
            let scale = (c.iter().map(|v| v * v).sum::<f64>() / c.len() as f64).sqrt();
            g.iter().zip(c).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / scale
        })
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::super::Demeaned;
    use super::*;

    #[test]
    fn the_demeaning_comparison_catches_f32_sized_errors_and_nan() {
        let (fes, weights, columns) = tiny_problem();
        let problem = Absorb::new(fes.iter().collect(), Some(&weights));
        let cpu = CpuDemeaner
            .demean(&problem, columns, &DemeanOptions::default())
            .unwrap()
            .columns;
        assert_eq!(max_scaled_difference(&cpu, &cpu), 0.0);
        let mut off = cpu.clone();
        off[0][3] *= 1.0 + 1e-7; // what single-precision arithmetic would leave
        assert!(max_scaled_difference(&off, &cpu) > DEMEAN_TOLERANCE);
        off[0][3] = f64::NAN;
        assert!(max_scaled_difference(&off, &cpu).is_infinite());
    }

    /// The CPU demeaner with an f32-sized error planted in every result.
    struct SinglePrecision;

    impl Demeaner for SinglePrecision {
        fn name(&self) -> String {
            "cpu, rounded to f32".into()
        }
        fn demean(&self, problem: &Absorb, columns: Vec<Vec<f64>>, opts: &DemeanOptions) -> Result<Demeaned> {
            let mut d = CpuDemeaner.demean(problem, columns, opts)?;
            for c in &mut d.columns {
                c.iter_mut().for_each(|v| *v = *v as f32 as f64);
            }
            Ok(d)
        }
        fn one_pass(&self, problem: &Absorb, columns: &mut [Vec<f64>]) -> Result<()> {
            CpuDemeaner.one_pass(problem, columns)
        }
        fn alternating(&self, problem: &Absorb, columns: Vec<Vec<f64>>, opts: &DemeanOptions) -> Result<Demeaned> {
            CpuDemeaner.alternating(problem, columns, opts)
        }
        fn krylov(&self, problem: &Absorb, columns: Vec<Vec<f64>>, opts: &DemeanOptions) -> Result<Demeaned> {
            CpuDemeaner.krylov(problem, columns, opts)
        }
    }

    #[test]
    fn the_tiny_demeaning_check_passes_the_cpu_and_fails_f32_results() {
        let exact = tiny_demeaning(&CpuDemeaner).unwrap();
        assert!(exact.passed, "{}", exact.detail);
        let rounded = tiny_demeaning(&SinglePrecision).unwrap();
        assert!(!rounded.passed, "{}", rounded.detail);
    }

    #[test]
    fn the_tiny_problem_is_not_solved_by_either_effect_alone() {
        // both effects matter (crossed, not nested), so the device must really iterate
        let (fes, weights, columns) = tiny_problem();
        let both = Absorb::new(fes.iter().collect(), Some(&weights));
        let one = Absorb::new(vec![&fes[0]], Some(&weights));
        let o = DemeanOptions::default();
        let a = CpuDemeaner.demean(&both, columns.clone(), &o).unwrap().columns;
        let b = CpuDemeaner.demean(&one, columns, &o).unwrap().columns;
        assert!(max_scaled_difference(&a, &b) > 1e-3);
    }
}
