// Weighted group means of every lane for one fixed effect, without atomics.
//
// Layout (all lanes share the fixed-effect structure; lane l = replicate * n_cols + column):
//   x[l * n + i]          : R, the current residual of lane l at observation i
//   weight(r * n + i)     : observation weight of replicate r (weights_real.wgsl or
//                           weights_f16.wgsl supplies it, binding 12)
//   order[j]              : u32, observations sorted by level (CSR order of this effect)
//   seg_start[s], seg_end : u32, segment s covers order[seg_start..seg_end), at most SEG long,
//                           so a level holding half the sample is split over many threads
//   level_seg[g..g+1]     : u32, CSR of segments per level
//   inv_w[r * levels + g] : R, 1 / (weights of level g in replicate r), 0 for empty levels
// Pass 1 (`segment_sums`): one thread per (segment, lane) writes partial[l * n_seg + s].
// Pass 2 (`level_means`) : one thread per (level, lane) adds its segments in a fixed order and
//                          writes mean[l * levels + g]. The summation order is deterministic.
// Precision: R is df64 (f32 pairs) or f64; see the prelude.

@group(0) @binding(1) var<storage, read> x: array<R>;
@group(0) @binding(3) var<storage, read> order: array<u32>;
@group(0) @binding(4) var<storage, read> seg_start: array<u32>;
@group(0) @binding(5) var<storage, read> seg_end: array<u32>;
@group(0) @binding(6) var<storage, read> level_seg: array<u32>;
@group(0) @binding(7) var<storage, read> inv_w: array<R>;
@group(0) @binding(8) var<storage, read_write> partial: array<R>;
@group(0) @binding(9) var<storage, read_write> mean: array<R>;
@group(0) @binding(10) var<storage, read> lane_state: array<u32>;

@compute @workgroup_size(64)
fn segment_sums(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x + gid.y * P.row_stride;
    if (t >= P.n_seg * P.lanes) { return; }
    let l = t / P.n_seg;
    let s = t - l * P.n_seg;
    if (lane_state[l] != 1u) { return; }
    let r = l / P.n_cols;
    var acc = r_zero();
    for (var j = seg_start[s]; j < seg_end[s]; j = j + 1u) {
        let i = order[j];
        acc = r_add(acc, r_mul(weight(r * P.n + i), x[l * P.n + i]));
    }
    partial[l * P.n_seg + s] = acc;
}

@compute @workgroup_size(64)
fn level_means(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x + gid.y * P.row_stride;
    if (t >= P.levels * P.lanes) { return; }
    let l = t / P.levels;
    let g = t - l * P.levels;
    if (lane_state[l] != 1u) { return; }
    let r = l / P.n_cols;
    var acc = r_zero();
    for (var s = level_seg[g]; s < level_seg[g + 1u]; s = s + 1u) {
        acc = r_add(acc, partial[l * P.n_seg + s]);
    }
    mean[l * P.levels + g] = r_mul(acc, inv_w[r * P.levels + g]);
}
