//! The df64 self-test: can this adapter's compiled f32 arithmetic carry df64?
//!
//! df64 (shaders/real_df64.wgsl) gets ~48 bits out of f32 pairs through error-free transforms
//! (TwoSum, TwoProd), which a compiler may legally break: the WGSL spec allows reassociation and
//! fusion, wgpu compiles Metal shaders with Apple's fast/relaxed math and DX12 ones without IEEE
//! strictness. So before a df64 result is trusted, the adapter runs shaders/selftest.wgsl, built
//! from the same prelude the demeaning kernels use, on inputs read from a storage buffer:
//!
//! * **known answers** ([`emulate::known_answers`]): two_sum(1, 2^-30) keeps the error 2^-30,
//!   two_prod(1+2^-23, 1+2^-23) = (1+2^-22, 2^-46), and f32 `+` and `*` round to nearest-even;
//! * **bit-equality**: on ~4,000 random pairs every transform and df64 operation the kernels
//!   use (two_sum, quick_two_sum, split, two_prod, r_add, r_sub, r_mul) returns exactly the bits
//!   of the host's emulation of the same f32 operations ([`emulate`]);
//! * **accuracy**: r_add, r_sub and r_mul, read as f64, are within [`DF64_TOLERANCE`] (relative)
//!   of host f64 arithmetic.
//!
//! A tiny demeaning against the CPU is added by the caller ([`crate::demean::selftest`]), which
//! also decides what a failure means (native f64, the CPU, or an error) and remembers outcomes
//! per adapter and driver ([`cache`]). `FEGPU_SELFTEST=force` re-runs the test ignoring the
//! cache; `FEGPU_SELFTEST=off` skips it (results then say "not run").

pub mod cache;
pub mod emulate;
pub mod outcome;

pub use cache::cached_status;
pub use outcome::{Check, Policy, SelfTest, Status};

use super::buffers::{poisoned, read_back, storage, uniform};
use super::context::GpuContext;
use super::pipelines::{bind_group, module, pipeline, Params, PARAMS, PRELUDE_DF64};
use crate::error::{Error, Result};
use emulate::{expected, known_answers, pairs, FIELDS, WORDS};

const KERNEL: &str = include_str!("../../../shaders/selftest.wgsl");

/// Largest relative error accepted from r_add, r_sub and r_mul: 2^-44 ≈ 5.7e-14, a few times
/// df64's bounds (about 2^-47 for the add, 2^-46 for the mul); a broken transform loses the
/// error term and lands near f32's 2^-24.
pub const DF64_TOLERANCE: f64 = 5.684_341_886_080_802e-14;

/// Which df64 prelude the test compiles. Only [`Variant::Faithful`] is used in production; the
/// others are deliberately broken copies that prove the test can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// shaders/real_df64.wgsl as the kernels use it.
    Faithful,
    /// two_sum replaced by a plain sum with a zero error term.
    NaiveTwoSum,
    /// `o()`, the compiler barrier, replaced by the identity: what the prelude would be if the
    /// compiler were free to reassociate (whether a given compiler then breaks it is measured).
    NoBarrier,
}

const O_BARRIER: &str = "fn o(v: f32) -> f32 { return bitcast<f32>(bitcast<u32>(v) ^ P.zero); }";
const TWO_SUM_HEAD: &str = "fn two_sum(a: f32, b: f32) -> vec2<f32> {";

/// The df64 prelude of `variant`.
pub fn prelude(variant: Variant) -> String {
    match variant {
        Variant::Faithful => PRELUDE_DF64.to_string(),
        Variant::NoBarrier => PRELUDE_DF64.replace(O_BARRIER, "fn o(v: f32) -> f32 { return v; }"),
        Variant::NaiveTwoSum => {
            let start = PRELUDE_DF64.find(TWO_SUM_HEAD).expect("two_sum in the df64 prelude");
            let end = start + PRELUDE_DF64[start..].find("\n}\n").expect("end of two_sum") + 3;
            let naive = format!("{TWO_SUM_HEAD}\n    return vec2<f32>(o(a + b), 0.0);\n}}\n");
            format!("{}{naive}{}", &PRELUDE_DF64[..start], &PRELUDE_DF64[end..])
        }
    }
}

/// The full source the test compiles: params, the prelude of `variant`, the test kernel.
pub fn shader_source(variant: Variant) -> String {
    format!("{PARAMS}\n{}\n{KERNEL}", prelude(variant))
}

/// Run the kernel of `variant` on `ctx` and judge its results: the known answers, bit-equality
/// with the host and df64 accuracy.
pub fn run_kernel(ctx: &GpuContext, variant: Variant) -> Result<Vec<Check>> {
    let input = pairs();
    let words = dispatch(ctx, variant, &input)?;
    let results: Vec<[f32; WORDS]> = words
        .chunks_exact(WORDS)
        .map(|w| std::array::from_fn(|k| f32::from_bits(w[k])))
        .collect();
    let mut checks = known_answer_checks(&results);
    checks.push(bit_equality(&input, &results));
    checks.push(accuracy(&input, &results));
    Ok(checks)
}

/// Compile, upload, run, read back: WORDS f32 words per pair.
fn dispatch(ctx: &GpuContext, variant: Variant, input: &[[f32; 4]]) -> Result<Vec<u32>> {
    let m = module(ctx, "selftest.wgsl", &format!("{PARAMS}\n{}", prelude(variant)), KERNEL)?;
    let pipe = pipeline(ctx, &m, "df64_selftest")?;
    let params = uniform(ctx, "self-test params", &Params::default())?;
    let flat: Vec<f32> = input.iter().flatten().copied().collect();
    let pairs_buf = storage(ctx, "self-test pairs", &flat)?;
    let bytes = (input.len() * WORDS * 4) as u64;
    let out = poisoned(ctx, "self-test results", bytes)?;
    let bg = bind_group(ctx, &pipe, &[(0, &params), (1, &pairs_buf), (2, &out)]);
    let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("df64 self-test"),
    });
    {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("df64 self-test"),
            timestamp_writes: None,
        });
        pass.set_pipeline(&pipe);
        pass.set_bind_group(0, &bg, &[]);
        pass.dispatch_workgroups((input.len() as u32).div_ceil(64), 1, 1);
    }
    ctx.queue.submit([enc.finish()]);
    let words = read_back(ctx, &out, 0, bytes, "the df64 self-test")?;
    if words.len() != input.len() * WORDS {
        return Err(Error::Gpu("the df64 self-test returned a short result".into()));
    }
    Ok(words)
}

/// One check per known-answer name; the known-answer rows lead the input.
fn known_answer_checks(results: &[[f32; WORDS]]) -> Vec<Check> {
    let answers = known_answers();
    let mut checks: Vec<Check> = Vec::new();
    for (row, k) in answers.iter().enumerate() {
        let got = results[row][k.word];
        let ok = got.to_bits() == k.value.to_bits();
        if checks.last().is_none_or(|c| c.name != k.check) {
            checks.push(Check {
                name: k.check.to_string(),
                passed: true,
                detail: "exact".into(),
            });
        }
        let c = checks.last_mut().expect("just pushed");
        if !ok && c.passed {
            c.passed = false;
            c.detail = format!(
                "{} of ({:e}, {:e}) is {got:e}, expected {:e}",
                FIELDS[k.word], k.pair[0], k.pair[2], k.value
            );
        }
    }
    checks
}

/// Every word of every pair equal, bit for bit, to the host's emulation.
fn bit_equality(input: &[[f32; 4]], results: &[[f32; WORDS]]) -> Check {
    let mut differ = 0usize;
    let mut first = None;
    for (i, (p, got)) in input.iter().zip(results).enumerate() {
        let want = expected(*p);
        for k in 0..WORDS {
            if got[k].to_bits() != want[k].to_bits() {
                differ += 1;
                first.get_or_insert_with(|| {
                    format!(
                        "first: pair {i} (a = {:e} + {:e}, b = {:e} + {:e}): {} = {:e}, host {:e}",
                        p[0], p[1], p[2], p[3], FIELDS[k], got[k], want[k]
                    )
                });
            }
        }
    }
    Check {
        name: "transforms and df64 ops bit-equal to the host's f32 emulation".into(),
        passed: differ == 0,
        detail: match first {
            None => format!("{} pairs x {WORDS} words equal", input.len()),
            Some(f) => format!("{differ} of {} words differ; {f}", input.len() * WORDS),
        },
    }
}

/// Relative error of a df64 result against an f64 reference (absolute where the reference is 0).
fn rel_error(got: [f32; 2], reference: f64) -> f64 {
    let g = got[0] as f64 + got[1] as f64;
    let err = (g - reference).abs();
    if reference == 0.0 {
        err
    } else {
        err / reference.abs()
    }
}

/// r_add, r_sub, r_mul read as f64 against host f64, worst relative error of each.
fn accuracy(input: &[[f32; 4]], results: &[[f32; WORDS]]) -> Check {
    let mut worst = [0f64; 3];
    for (p, r) in input.iter().zip(results) {
        let a = p[0] as f64 + p[1] as f64;
        let b = p[2] as f64 + p[3] as f64;
        let errs = [
            rel_error([r[4], r[5]], a + b),
            rel_error([r[6], r[7]], a - b),
            rel_error([r[8], r[9]], a * b),
        ];
        for (w, e) in worst.iter_mut().zip(errs) {
            // NaN (a kernel that did not write) counts as infinitely wrong
            *w = if e.is_nan() { f64::INFINITY } else { w.max(e) };
        }
    }
    let log2 = |e: f64| {
        if e == 0.0 {
            "0".to_string()
        } else {
            format!("2^{:.1}", e.log2())
        }
    };
    Check {
        name: "df64 add/sub/mul within 2^-44 of f64".into(),
        passed: worst.iter().all(|&w| w <= DF64_TOLERANCE),
        detail: format!(
            "worst relative error over {} pairs: add {}, sub {}, mul {}",
            input.len(),
            log2(worst[0]),
            log2(worst[1]),
            log2(worst[2])
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_results(f: impl Fn([f32; 4]) -> [f32; WORDS]) -> (Vec<[f32; 4]>, Vec<[f32; WORDS]>) {
        let input = pairs();
        let results = input.iter().map(|p| f(*p)).collect();
        (input, results)
    }

    #[test]
    fn the_host_twin_passes_every_check() {
        let (input, results) = host_results(expected);
        let mut checks = known_answer_checks(&results);
        checks.push(bit_equality(&input, &results));
        checks.push(accuracy(&input, &results));
        assert_eq!(checks.len(), 5);
        for c in &checks {
            assert!(c.passed, "{}: {}", c.name, c.detail);
        }
    }

    #[test]
    fn a_lost_error_term_fails_known_answers_bits_and_accuracy() {
        // emulate what the NaiveTwoSum variant computes for two_sum: the error term is gone
        let (input, results) = host_results(|p| {
            let mut w = expected(p);
            w[1] = 0.0;
            w[4] = p[0] + p[2];
            w[5] = 0.0;
            w
        });
        let checks = known_answer_checks(&results);
        assert!(!checks[0].passed, "two_sum known answer");
        assert!(!bit_equality(&input, &results).passed);
        assert!(!accuracy(&input, &results).passed);
    }

    #[test]
    fn truncation_fails_the_rounding_check() {
        // round-toward-zero f32: 1 + (2^-24 + 2^-47) truncates to 1
        let (_, mut results) = host_results(expected);
        let row = known_answers()
            .iter()
            .position(|k| k.word == 12 && k.value > 1.0)
            .unwrap();
        results[row][12] = 1.0;
        let checks = known_answer_checks(&results);
        let rne = checks.iter().find(|c| c.name.contains("nearest")).unwrap();
        assert!(!rne.passed, "{}", rne.detail);
    }

    #[test]
    fn a_df64_result_off_by_2_to_the_40_fails_the_accuracy_check() {
        let (input, mut results) = host_results(expected);
        let last = results.len() - 1;
        results[last][9] += results[last][8] * 2f32.powi(-40);
        assert!(!accuracy(&input, &results).passed);
    }

    #[test]
    fn broken_variants_differ_from_the_prelude_where_intended() {
        let faithful = prelude(Variant::Faithful);
        let naive = prelude(Variant::NaiveTwoSum);
        let no_barrier = prelude(Variant::NoBarrier);
        assert_ne!(naive, faithful);
        assert!(naive.contains("return vec2<f32>(o(a + b), 0.0);"));
        assert!(naive.contains("fn quick_two_sum"), "only two_sum is replaced");
        assert_eq!(naive.matches("fn two_sum").count(), 1);
        assert_ne!(no_barrier, faithful);
        assert!(faithful.contains(O_BARRIER) && !no_barrier.contains(O_BARRIER));
    }
}
