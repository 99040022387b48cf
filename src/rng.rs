//! Counter-based random numbers: Philox4x32-10 (Salmon, Moraes, Dror & Shaw 2011, "Parallel random
//! numbers: as easy as 1, 2, 3"). A draw is a pure function of (key, counter), so any replicate or
//! observation can be generated independently, in any order, on any thread or device. The WGSL
//! twin lives in `shaders/philox.wgsl` (GPU issue) and must match the known answers below bit for
//! bit (shared/DESIGN.md).

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

#[inline]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = (a as u64) * (b as u64);
    ((p >> 32) as u32, p as u32)
}

/// Philox4x32 with 10 rounds: counter `c`, key `k` → four independent 32-bit words.
pub fn philox4x32(mut c: [u32; 4], mut k: [u32; 2]) -> [u32; 4] {
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
        let (hi0, lo0) = mulhilo(M0, c[0]);
        let (hi1, lo1) = mulhilo(M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// Counters side by side in [`philox_first_words`].
const LANES: usize = 8;

/// Word 0 of [`philox4x32`] for `LANES` counters (c0, c1[l], c2, 0), lane by lane in plain
/// arrays: the 32×32→64-bit products of all lanes become vector multiplies.
#[inline(always)]
fn first_word_lanes(c0: u32, c1: [u32; LANES], c2: u32, key: [u32; 2]) -> [u32; LANES] {
    let (mut a, mut b, mut c, mut d) = ([c0; LANES], c1, [c2; LANES], [0u32; LANES]);
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
        for l in 0..LANES {
            let p0 = M0 as u64 * a[l] as u64;
            let p1 = M1 as u64 * c[l] as u64;
            (a[l], b[l], c[l], d[l]) = (
                (p1 >> 32) as u32 ^ b[l] ^ k[0],
                p1 as u32,
                (p0 >> 32) as u32 ^ d[l] ^ k[1],
                p0 as u32,
            );
        }
    }
    a
}

/// Word 0 of [`philox4x32`]`([c0, c1, c2, 0], key)` for every `c1` in `c1s`, into `out`
/// (cleared first): the same numbers as one call per counter, computed eight at a time (with
/// AVX2 when the CPU has it, checked at run time).
pub fn philox_first_words(c0: u32, c1s: std::ops::Range<u32>, c2: u32, key: [u32; 2], out: &mut Vec<u32>) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // Safety: the CPU has the feature the function is compiled for (checked above).
            return unsafe { first_words_avx2(c0, c1s, c2, key, out) };
        }
    }
    first_words(c0, c1s, c2, key, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn first_words_avx2(c0: u32, c1s: std::ops::Range<u32>, c2: u32, key: [u32; 2], out: &mut Vec<u32>) {
    first_words(c0, c1s, c2, key, out)
}

#[inline(always)]
fn first_words(c0: u32, c1s: std::ops::Range<u32>, c2: u32, key: [u32; 2], out: &mut Vec<u32>) {
    out.clear();
    let mut next = c1s.start;
    while next < c1s.end {
        let lanes: [u32; LANES] = std::array::from_fn(|l| next.wrapping_add(l as u32));
        let words = first_word_lanes(c0, lanes, c2, key);
        let take = (c1s.end - next).min(LANES as u32) as usize;
        out.extend_from_slice(&words[..take]);
        next = next.saturating_add(LANES as u32);
    }
}

/// A convenience stream over Philox blocks: counter = (index, stream, 0, 0), key = seed.
/// Used by the simulators, where a sequential stream per purpose is all that is needed.
#[derive(Clone, Debug)]
pub struct Stream {
    key: [u32; 2],
    stream: u32,
    index: u64,
    buf: [u32; 4],
    pos: usize,
}

impl Stream {
    pub fn new(seed: u64, stream: u32) -> Self {
        Stream {
            key: [seed as u32, (seed >> 32) as u32],
            stream,
            index: 0,
            buf: [0; 4],
            pos: 4,
        }
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.pos == 4 {
            let c = [self.index as u32, (self.index >> 32) as u32, self.stream, 0];
            self.buf = philox4x32(c, self.key);
            self.index += 1;
            self.pos = 0;
        }
        let v = self.buf[self.pos];
        self.pos += 1;
        v
    }

    /// Uniform on the open interval (0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        let hi = (self.next_u32() >> 5) as u64; // 27 bits
        let lo = (self.next_u32() >> 6) as u64; // 26 bits
        ((hi << 26 | lo) as f64 + 0.5) / 9_007_199_254_740_992.0
    }

    /// Standard normal by Box–Muller (one of the pair; simplicity over speed).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Integer in 0..n by multiply-shift (no modulo bias worth noting for n << 2^32).
    pub fn below(&mut self, n: u32) -> u32 {
        ((self.next_u32() as u64 * n as u64) >> 32) as u32
    }

    /// Poisson draw by inversion (small means only).
    pub fn poisson(&mut self, mean: f64) -> u32 {
        let l = (-mean).exp();
        let mut k = 0u32;
        let mut p = self.uniform();
        while p > l && k < 1000 {
            k += 1;
            p *= self.uniform();
        }
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_matches_published_known_answers() {
        assert_eq!(
            philox4x32([0, 0, 0, 0], [0, 0]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn first_words_equal_one_call_per_counter() {
        let mut out = Vec::new();
        for (c0, range, c2, key) in [
            (0, 0..1000, 2, [0, 0]),
            (7, 3..20, 1, [u32::MAX, 5]),
            (u32::MAX, u32::MAX - 12..u32::MAX, 3, [0x2023_0323, 0]),
            (1, 5..5, 2, [1, 1]),
        ] {
            let one: Vec<u32> = range.clone().map(|c1| philox4x32([c0, c1, c2, 0], key)[0]).collect();
            philox_first_words(c0, range.clone(), c2, key, &mut out);
            assert_eq!(out, one, "dispatched");
            first_words(c0, range, c2, key, &mut out);
            assert_eq!(out, one, "portable");
        }
    }

    #[test]
    fn uniform_is_inside_open_unit_interval_and_centred() {
        let mut s = Stream::new(7, 1);
        let n = 100_000;
        let mut sum = 0.0;
        for _ in 0..n {
            let u = s.uniform();
            assert!(u > 0.0 && u < 1.0);
            sum += u;
        }
        assert!((sum / n as f64 - 0.5).abs() < 0.01);
    }
}

/// Streams separate the purposes of draws made with the same (replicate, unit) counters.
pub mod stream {
    pub const WILD: u32 = 1;
    pub const PERMUTATION: u32 = 2;
    pub const PAIRS: u32 = 3;
}
