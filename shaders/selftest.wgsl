// Start-up self-test of the df64 arithmetic (src/gpu/selftest/): one thread per input pair runs
// every df64 building block the kernels use and writes the raw f32 results, which the host
// compares bit for bit with its own emulation of the same f32 operations and, as reals, with f64.
//
// Why a kernel at all: df64 rests on error-free transforms (TwoSum, Dekker's TwoProd), which
// only hold if every f32 operation is rounded to nearest-even and none is reassociated, fused or
// dropped. The WGSL spec allows all three, and Metal's fast math and DX12 without IEEE
// strictness do them, so each adapter+driver is checked before its df64 results are trusted.
//
// Inputs come from a storage buffer, never from literals: a compiler folds constant arithmetic
// at compile time (on the host, in f64 or exact arithmetic) and would test nothing.
//
// Assembled as params.wgsl + the df64 prelude (real_df64.wgsl, or a deliberately broken variant
// in the tests) + this file, exactly as the demeaning kernels are; P.zero must be 0.
//
// Layout:
//   pairs[i]           = (a.hi, a.lo, b.hi, b.lo): two df64 numbers a, b
//   results[4i + 0]    = (two_sum(a.hi, b.hi), two_prod(a.hi, b.hi))
//   results[4i + 1]    = (r_add(a, b), r_sub(a, b))
//   results[4i + 2]    = (r_mul(a, b), quick_two_sum(a.hi, b.hi))
//   results[4i + 3]    = (a.hi + b.hi, a.hi * b.hi, split(a.hi)) — plain f32 rounding, Veltkamp
// Precision: f32 only; every value is written as computed, nothing is converted.

@group(0) @binding(1) var<storage, read> pairs: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> results: array<vec4<f32>>;

@compute @workgroup_size(64)
fn df64_selftest(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    // (+ P.zero keeps the uniform bound in every prelude variant, even one that never reads it)
    if (i >= arrayLength(&pairs) + P.zero) { return; }
    let q = pairs[i];
    let a = vec2<f32>(q.x, q.y);
    let b = vec2<f32>(q.z, q.w);
    results[4u * i] = vec4<f32>(two_sum(a.x, b.x), two_prod(a.x, b.x));
    results[4u * i + 1u] = vec4<f32>(r_add(a, b), r_sub(a, b));
    results[4u * i + 2u] = vec4<f32>(r_mul(a, b), quick_two_sum(a.x, b.x));
    results[4u * i + 3u] = vec4<f32>(o(a.x + b.x), o(a.x * b.x), split(a.x));
}
