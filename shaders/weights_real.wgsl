// Observation weights stored as reals (R), for weights that f16 cannot hold exactly.
// Layout: w[replicate * n + i].
@group(0) @binding(12) var<storage, read> w: array<R>;

fn weight(idx: u32) -> R { return w[idx]; }
