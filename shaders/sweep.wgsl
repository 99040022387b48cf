// Element-wise updates of every lane's residual (one thread per observation and lane).
//
//   subtract_means: x[l*n + i] -= mean[l*levels + ids[i]]    (one projection of a sweep)
//   save_x0/save_x1: keep the iterates an Irons–Tuck step needs
//   extrapolate   : Irons–Tuck step x <- x2 - a_l (x2 - x1) for lanes still running
// `lane_state[l]` is 1 while lane l runs and 2 once it has converged (reduce.wgsl sets it); every
// kernel skips lanes that are not running, so converged lanes stop costing.
// Precision: R is df64 (f32 pairs) or f64; see the prelude.

@group(0) @binding(1) var<storage, read_write> x: array<R>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read> mean: array<R>;
@group(0) @binding(4) var<storage, read> lane_state: array<u32>;

@compute @workgroup_size(64)
fn subtract_means(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x + gid.y * P.row_stride;
    if (t >= P.n * P.lanes) { return; }
    let l = t / P.n;
    let i = t - l * P.n;
    if (lane_state[l] != 1u) { return; }
    x[t] = r_sub(x[t], mean[l * P.levels + ids[i]]);
}

// Bindings of the Irons–Tuck step and the copies (a separate bind group layout).
@group(0) @binding(5) var<storage, read_write> x0: array<R>;
@group(0) @binding(6) var<storage, read_write> x1: array<R>;
@group(0) @binding(7) var<storage, read> coef: array<f32>;

// x0 <- x (start of an Irons–Tuck pair), for running lanes.
@compute @workgroup_size(64)
fn save_x0(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x + gid.y * P.row_stride;
    if (t >= P.n * P.lanes) { return; }
    if (lane_state[t / P.n] != 1u) { return; }
    x0[t] = x[t];
}

// x1 <- x (after the first sweep of the pair), for running lanes.
@compute @workgroup_size(64)
fn save_x1(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x + gid.y * P.row_stride;
    if (t >= P.n * P.lanes) { return; }
    if (lane_state[t / P.n] != 1u) { return; }
    x1[t] = x[t];
}

// x <- x2 - a (x2 - x1) with x holding x2; lanes that just converged keep x2.
@compute @workgroup_size(64)
fn extrapolate(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x + gid.y * P.row_stride;
    if (t >= P.n * P.lanes) { return; }
    let l = t / P.n;
    if (lane_state[l] != 1u) { return; }
    let a = r_from_f32(coef[l]);
    x[t] = r_sub(x[t], r_mul(a, r_sub(x[t], x1[t])));
}
