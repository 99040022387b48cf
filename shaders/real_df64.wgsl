// Prelude for the default GPU path: "double-float" (df64) arithmetic built from f32 only.
//
// Layout: a real number is vec2<f32>(hi, lo) with value hi + lo and |lo| <= ulp(hi)/2, giving
// about 48 significant bits (relative precision ~1e-14) on hardware without f64 (Metal, most
// consumer GPUs). Algorithms: Knuth's TwoSum, Dekker's TwoProd with Veltkamp splitting (no FMA
// needed, so DX12 `mad` contraction cannot break it), as in the QD library (Hida, Li & Bailey
// 2001). Host code uploads columns pre-scaled by a power of two so values are O(1) and no part
// underflows into f32 denormals (which GPUs may flush).
//
// Error-free transforms only work if the compiler keeps every rounding. Shader compilers treat
// float arithmetic as reassociable unless told otherwise (Mesa's NIR rewrites (a + b) - a to b
// and factors products; WGSL cannot mark an operation `precise`), so each intermediate passes
// through `o()`: an XOR of its bits with `P.zero`, a uniform that is 0 at run time but unknown
// to the compiler. The value is unchanged, and no float rewrite can see through integer ops.
// (Multiplying by a run-time 1.0 was tried first: NIR's factoring rules still broke TwoSum.)
alias R = vec2<f32>;

fn o(v: f32) -> f32 { return bitcast<f32>(bitcast<u32>(v) ^ P.zero); }

fn r_zero() -> R { return vec2<f32>(0.0, 0.0); }
fn r_from_f32(v: f32) -> R { return vec2<f32>(v, 0.0); }
fn r_hi(a: R) -> f32 { return a.x; }

fn two_sum(a: f32, b: f32) -> vec2<f32> {
    let s = o(a + b);
    let bb = o(s - a);
    let e = o(o(a - o(s - bb)) + o(b - bb));
    return vec2<f32>(s, e);
}

fn quick_two_sum(a: f32, b: f32) -> vec2<f32> {
    let s = o(a + b);
    let e = o(b - o(s - a));
    return vec2<f32>(s, e);
}

fn split(a: f32) -> vec2<f32> {
    let t = o(4097.0 * a);
    let hi = o(t - o(t - a));
    return vec2<f32>(hi, o(a - hi));
}

fn two_prod(a: f32, b: f32) -> vec2<f32> {
    let p = o(a * b);
    let sa = split(a);
    let sb = split(b);
    let e = o(o(o(o(sa.x * sb.x) - p) + o(sa.x * sb.y) + o(sa.y * sb.x)) + o(sa.y * sb.y));
    return vec2<f32>(p, e);
}

fn r_add(a: R, b: R) -> R {
    var s = two_sum(a.x, b.x);
    let t = two_sum(a.y, b.y);
    s.y = o(s.y + t.x);
    s = quick_two_sum(s.x, s.y);
    s.y = o(s.y + t.y);
    return quick_two_sum(s.x, s.y);
}

fn r_sub(a: R, b: R) -> R { return r_add(a, -b); }

fn r_mul(a: R, b: R) -> R {
    var p = two_prod(a.x, b.x);
    p.y = o(p.y + o(o(a.x * b.y) + o(a.y * b.x)));
    return quick_two_sum(p.x, p.y);
}
