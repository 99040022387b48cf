//! The host's twin of the df64 prelude (shaders/real_df64.wgsl) and the self-test's inputs.
//!
//! Rust's f32 arithmetic is IEEE 754 binary32 with round-to-nearest-even, and rustc neither
//! reassociates nor contracts it into FMAs, so these functions compute, operation for operation
//! in the same order, what a faithful GPU must compute. The kernel's results are compared with
//! [`expected`] bit for bit.
//!
//! Inputs ([`pairs`]) are the known-answer rows followed by [`RANDOM_PAIRS`] random df64 pairs
//! from a fixed Philox stream, built bit by bit so that every part is a normal f32 (GPUs may
//! flush denormals; the demeaner keeps columns clear of them by power-of-two scaling), and
//! hi + lo is exact in f64 (so f64 is a valid reference for the accuracy check).

use crate::rng::Stream;

/// Words the kernel writes per pair (see the layout in shaders/selftest.wgsl).
pub const WORDS: usize = 16;

/// Names of the result words, for failure messages.
pub const FIELDS: [&str; WORDS] = [
    "two_sum.s",
    "two_sum.e",
    "two_prod.p",
    "two_prod.e",
    "r_add.hi",
    "r_add.lo",
    "r_sub.hi",
    "r_sub.lo",
    "r_mul.hi",
    "r_mul.lo",
    "quick_two_sum.s",
    "quick_two_sum.e",
    "f32 a+b",
    "f32 a*b",
    "split.hi",
    "split.lo",
];

/// Random pairs after the known answers.
pub const RANDOM_PAIRS: usize = 4096;
/// Seed of the Philox stream of the random pairs.
const SEED: u64 = 0x5e1f_7e57_df64;

/// Knuth's TwoSum: s + e = a + b exactly.
pub fn two_sum(a: f32, b: f32) -> [f32; 2] {
    let s = a + b;
    let bb = s - a;
    [s, (a - (s - bb)) + (b - bb)]
}

/// Dekker's FastTwoSum (exact when |a| ≥ |b|).
pub fn quick_two_sum(a: f32, b: f32) -> [f32; 2] {
    let s = a + b;
    [s, b - (s - a)]
}

/// Veltkamp's split of a 24-bit f32 into two 12-bit halves.
pub fn split(a: f32) -> [f32; 2] {
    let t = 4097.0 * a;
    let hi = t - (t - a);
    [hi, a - hi]
}

/// Dekker's TwoProd: p + e = a · b exactly.
pub fn two_prod(a: f32, b: f32) -> [f32; 2] {
    let p = a * b;
    let (sa, sb) = (split(a), split(b));
    [
        p,
        (((sa[0] * sb[0] - p) + sa[0] * sb[1]) + sa[1] * sb[0]) + sa[1] * sb[1],
    ]
}

/// `r_add` of the prelude.
pub fn add(a: [f32; 2], b: [f32; 2]) -> [f32; 2] {
    let mut s = two_sum(a[0], b[0]);
    let t = two_sum(a[1], b[1]);
    s[1] += t[0];
    s = quick_two_sum(s[0], s[1]);
    s[1] += t[1];
    quick_two_sum(s[0], s[1])
}

/// `r_sub` of the prelude.
pub fn sub(a: [f32; 2], b: [f32; 2]) -> [f32; 2] {
    add(a, [-b[0], -b[1]])
}

/// `r_mul` of the prelude.
pub fn mul(a: [f32; 2], b: [f32; 2]) -> [f32; 2] {
    let mut p = two_prod(a[0], b[0]);
    p[1] += a[0] * b[1] + a[1] * b[0];
    quick_two_sum(p[0], p[1])
}

/// What a faithful kernel writes for `pair` = (a.hi, a.lo, b.hi, b.lo).
pub fn expected(pair: [f32; 4]) -> [f32; WORDS] {
    let (a, b) = ([pair[0], pair[1]], [pair[2], pair[3]]);
    let mut out = [0f32; WORDS];
    let parts = [
        two_sum(a[0], b[0]),
        two_prod(a[0], b[0]),
        add(a, b),
        sub(a, b),
        mul(a, b),
        quick_two_sum(a[0], b[0]),
        [a[0] + b[0], a[0] * b[0]],
        split(a[0]),
    ];
    for (k, p) in parts.iter().enumerate() {
        out[2 * k] = p[0];
        out[2 * k + 1] = p[1];
    }
    out
}

/// One known answer: the kernel's word `word` for `pair` must be exactly `value`.
pub struct KnownAnswer {
    pub check: &'static str,
    pub pair: [f32; 4],
    pub word: usize,
    pub value: f32,
}

fn p2(k: i32) -> f32 {
    2f32.powi(k)
}

/// The known answers of the issue, each tied to a check name: TwoSum and TwoProd recover the
/// rounding error, and f32 addition and multiplication round to nearest, ties to even (ties
/// that go down and up, and a value just above a tie; truncation or round-up fails them).
pub fn known_answers() -> Vec<KnownAnswer> {
    const SUM: &str = "two_sum(1, 2^-30) = (1, 2^-30)";
    const PROD: &str = "two_prod(1+2^-23, 1+2^-23) = (1+2^-22, 2^-46)";
    const RNE: &str = "f32 rounds to nearest, ties to even";
    let k = |check, a: f32, b: f32, word, value| KnownAnswer {
        check,
        pair: [a, 0.0, b, 0.0],
        word,
        value,
    };
    let u = 1.0 + p2(-23);
    let v = 1.0 + p2(-12);
    vec![
        k(SUM, 1.0, p2(-30), 0, 1.0),
        k(SUM, 1.0, p2(-30), 1, p2(-30)),
        k(PROD, u, u, 2, 1.0 + p2(-22)),
        k(PROD, u, u, 3, p2(-46)),
        k(RNE, 1.0, p2(-24), 12, 1.0),
        k(RNE, u, p2(-24), 12, 1.0 + p2(-22)),
        k(RNE, 1.0, p2(-24) + p2(-47), 12, u),
        k(RNE, 1.0, -p2(-25), 12, 1.0),
        k(RNE, v, v, 13, 1.0 + p2(-11)),
        k(RNE, v, v + p2(-23), 13, 1.0 + p2(-11) + p2(-22)),
    ]
}

/// A normal f32 with the given sign bit, binary exponent and 23 mantissa bits.
fn f32_of(sign: u32, exp: i32, mantissa: u32) -> f32 {
    f32::from_bits((sign & 1) << 31 | ((exp + 127) as u32) << 23 | (mantissa & 0x7f_ffff))
}

/// A random df64 number with hi in ±[2^e, 2^(e+1)) and lo below half an ulp of hi (1 to 5
/// binades lower), so hi + lo has at most 53 significant bits.
fn random_df64(s: &mut Stream, e: i32) -> [f32; 2] {
    let hi = f32_of(s.next_u32(), e, s.next_u32());
    let lo = f32_of(s.next_u32(), e - 24 - 1 - s.below(5) as i32, s.next_u32());
    [hi, lo]
}

/// A random binary exponent in -12..=12.
fn exponent(s: &mut Stream) -> i32 {
    s.below(25) as i32 - 12
}

/// The kernel's input: the known-answer pairs, then the random pairs. Every fourth random pair
/// nearly cancels (b.hi = -a.hi) and every fourth after that shares a's binade, so additions
/// exercise cancellation and the error terms as well as the common case.
pub fn pairs() -> Vec<[f32; 4]> {
    let mut out: Vec<[f32; 4]> = known_answers().iter().map(|k| k.pair).collect();
    let mut s = Stream::new(SEED, 0);
    for i in 0..RANDOM_PAIRS {
        let ea = exponent(&mut s);
        let a = random_df64(&mut s, ea);
        let eb = if i % 2 == 1 { ea } else { exponent(&mut s) };
        let mut b = random_df64(&mut s, eb);
        if i % 4 == 1 {
            b[0] = -a[0];
        }
        out.push([a[0], a[1], b[0], b[1]]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(v: [f32; 2]) -> f64 {
        v[0] as f64 + v[1] as f64
    }

    #[test]
    fn host_transforms_are_error_free_on_every_pair() {
        for p in pairs() {
            let (a, b) = (p[0], p[2]);
            assert_eq!(exact(two_sum(a, b)), a as f64 + b as f64, "two_sum {a:e} {b:e}");
            assert_eq!(exact(two_prod(a, b)), a as f64 * b as f64, "two_prod {a:e} {b:e}");
            assert_eq!(exact(split(a)), a as f64);
            assert_eq!(exact([p[0], p[1]]), p[0] as f64 + p[1] as f64);
            assert!(p[1] == 0.0 || p[1].is_normal() && p[3].is_normal());
        }
    }

    #[test]
    fn known_answers_hold_for_the_host_twin() {
        for k in known_answers() {
            assert_eq!(expected(k.pair)[k.word], k.value, "{}", k.check);
        }
        // the rounding rows really are ties or near-ties: f64 sees what f32 rounded away
        let r = known_answers();
        assert!(r
            .iter()
            .any(|k| k.word == 12 && (k.pair[0] as f64 + k.pair[2] as f64) != k.value as f64));
    }

    #[test]
    fn naive_sum_would_break_the_two_sum_answer() {
        // the mutation the broken shader variant makes, on the host: the error term is lost
        let naive = [1.0f32 + p2(-30), 0.0];
        assert_ne!(naive, two_sum(1.0, p2(-30)));
    }
}
