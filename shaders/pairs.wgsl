// Packed lower-triangle positions, shared by the cross-product kernels (gram.wgsl,
// replicates.wgsl; prepended to them): pair k = p (p + 1) / 2 + q, q <= p, the order of
// `crate::demean::pair_of` on the host. The f32 square root is corrected to the exact row.

fn pair_of(pair: u32) -> vec2<u32> {
    var p = u32((sqrt(8.0 * f32(pair) + 1.0) - 1.0) * 0.5);
    // f32 rounding: step to the exact row
    loop {
        if (p * (p + 1u) / 2u > pair) { p = p - 1u; } else { break; }
    }
    loop {
        if ((p + 1u) * (p + 2u) / 2u <= pair) { p = p + 1u; } else { break; }
    }
    return vec2<u32>(p, pair - p * (p + 1u) / 2u);
}
