// Replicate weights made on the device from the Philox twin (philox.wgsl), so nothing of size
// observations × replicates crosses the bus. Every decision is integer arithmetic on the same
// (replicate, unit, stream, 0) counters as src/inference/replicates.rs, so the weights equal
// the host's bit for bit (up to the final multiplication by the base weight, done in R).
//
// Layout (one batch of `reps` replicates starting at replicate `rep0`):
//   unit_of[i]            : u32, the permutation unit / cluster of observation i
//   hist[r * 65536 + b]   : atomic u32 histogram of one 16-bit digit of replicate r's keys
//   cut[r * 4 + k]        : u32, replicate r's selection: k=0 high digit, 1 keys below it,
//                           2 threshold key T, 3 last unit taken among keys equal to T
//   counts[r * units + u] : atomic u32, pairs-bootstrap multiplicity of unit u in replicate r
//   base_w[i], w[v * n + i]: R, base weights and the weight vectors made (v = weight vector)
// Permutation (stream 2): group 1 of replicate r is the `first` units with the smallest
//   (key, unit) pairs, found by a two-digit radix select: perm_hist (digit 0 = high 16 bits)
//   and perm_find, again for the low 16 bits within the selected high digit; ties at the
//   threshold key are resolved in unit order by one serial pass (rare: keys are 32-bit). Weight
//   vectors come in pairs: v = 2r is group 1, v = 2r + 1 group 0.
// Pairs (stream 3): each of the `units` draws of replicate r picks unit (key · units) >> 32.
// Precision: integers throughout; R only for base_w × multiplicity.

struct DrawParams {
    n: u32,          // observations
    units: u32,      // permutation units or clusters
    first: u32,      // units in group 1 (permutation)
    reps: u32,       // replicates in this batch
    rep0: u32,       // first replicate of the batch
    seed_lo: u32,
    seed_hi: u32,
    kind: u32,       // 2 = permutation, 3 = pairs (the streams of replicates.rs)
    bsample: u32,    // permutation: 1 = multiply by pairs multiplicities first
    digit: u32,      // perm_hist / perm_find: 0 = high 16 bits, 1 = low 16 bits
    row_stride: u32,
    key_mask: u32,   // permutation keys are ANDed with it: all ones except in tests of ties
};

const STREAM_PERMUTATION: u32 = 2u;
const STREAM_PAIRS: u32 = 3u;
const BINS: u32 = 65536u;

@group(0) @binding(15) var<uniform> D: DrawParams;
@group(0) @binding(1) var<storage, read> unit_of: array<u32>;
@group(0) @binding(2) var<storage, read_write> hist: array<atomic<u32>>;
@group(0) @binding(3) var<storage, read_write> cut: array<u32>;
@group(0) @binding(4) var<storage, read_write> counts: array<atomic<u32>>;
@group(0) @binding(5) var<storage, read> base_w: array<R>;
@group(0) @binding(6) var<storage, read_write> w: array<R>;

fn draw(stream: u32, r: u32, u: u32) -> u32 {
    return philox4x32(vec4<u32>(D.rep0 + r, u, stream, 0u), vec2<u32>(D.seed_lo, D.seed_hi)).x;
}

fn perm_key(r: u32, u: u32) -> u32 {
    return draw(STREAM_PERMUTATION, r, u) & D.key_mask;
}

// One thread per (replicate, unit): count the key's digit (only keys whose high digit is the
// selected one, for the low digit).
@compute @workgroup_size(64)
fn perm_hist(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x + gid.y * D.row_stride;
    if (t >= D.reps * D.units) { return; }
    let r = t / D.units;
    let key = perm_key(r, t - r * D.units);
    if (D.digit == 0u) {
        atomicAdd(&hist[r * BINS + (key >> 16u)], 1u);
    } else if ((key >> 16u) == cut[r * 4u]) {
        atomicAdd(&hist[r * BINS + (key & 0xFFFFu)], 1u);
    }
}

var<workgroup> chunk_sums: array<u32, 256>;

// One workgroup per replicate: the bin where the running count of keys reaches the goal
// (group 1's size, less the keys below the selected high digit for the low digit).
@compute @workgroup_size(256)
fn perm_find(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = wg.x;
    if (r >= D.reps) { return; }
    let base = r * BINS;
    var s = 0u;
    for (var b = lid.x * 256u; b < lid.x * 256u + 256u; b = b + 1u) {
        s = s + atomicLoad(&hist[base + b]);
    }
    chunk_sums[lid.x] = s;
    workgroupBarrier();
    if (lid.x != 0u) { return; }
    var goal = D.first;
    if (D.digit == 1u) { goal = D.first - cut[r * 4u + 1u]; }
    var below = 0u;
    var c = 0u;
    loop {
        if (c == 255u || below + chunk_sums[c] >= goal) { break; }
        below = below + chunk_sums[c];
        c = c + 1u;
    }
    var b = c * 256u;
    loop {
        let h = atomicLoad(&hist[base + b]);
        if (b == c * 256u + 255u || below + h >= goal) { break; }
        below = below + h;
        b = b + 1u;
    }
    if (D.digit == 0u) {
        cut[r * 4u] = b;
        cut[r * 4u + 1u] = below;
        return;
    }
    let key = (cut[r * 4u] << 16u) | b;
    let need = goal - below;
    var last = 0xFFFFFFFFu;
    if (need < atomicLoad(&hist[base + b])) {
        // ties at the threshold: take them in unit order
        var taken = 0u;
        for (var u = 0u; u < D.units; u = u + 1u) {
            if (perm_key(r, u) == key) {
                taken = taken + 1u;
                if (taken == need) { last = u; break; }
            }
        }
    }
    cut[r * 4u + 2u] = key;
    cut[r * 4u + 3u] = last;
}

// One thread per (replicate, draw): the pairs bootstrap's multiplicities.
@compute @workgroup_size(64)
fn pairs_counts(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x + gid.y * D.row_stride;
    if (t >= D.reps * D.units) { return; }
    let r = t / D.units;
    let key = draw(STREAM_PAIRS, r, t - r * D.units);
    atomicAdd(&counts[r * D.units + mulhi32(key, D.units)], 1u);
}

// One thread per (weight vector, observation): base weight × membership × multiplicity.
@compute @workgroup_size(64)
fn make_weights(@builtin(global_invocation_id) gid: vec3<u32>) {
    // binds P (binding 0) in every precision: the df64 prelude reads it, f64 does not
    if (P.n != D.n) { return; }
    let t = gid.x + gid.y * D.row_stride;
    let per_rep = select(1u, 2u, D.kind == STREAM_PERMUTATION);
    if (t >= D.reps * per_rep * D.n) { return; }
    let v = t / D.n;
    let i = t - v * D.n;
    let r = v / per_rep;
    let u = unit_of[i];
    var m = 1u;
    if (D.kind == STREAM_PERMUTATION) {
        let key = perm_key(r, u);
        let t_key = cut[r * 4u + 2u];
        let member = key < t_key || (key == t_key && u <= cut[r * 4u + 3u]);
        if (member != (v - r * 2u == 0u)) { m = 0u; }
    }
    if (D.kind == STREAM_PAIRS || D.bsample == 1u) {
        m = m * atomicLoad(&counts[r * D.units + u]);
    }
    w[t] = r_mul(base_w[i], r_from_f32(f32(m)));
}
