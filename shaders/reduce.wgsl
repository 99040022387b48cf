// Per-lane reductions that steer the iteration on the device (no host round trip per step).
//
// lane_partials: workgroup (chunk, lane) reduces CHUNK observations of one lane into
//   partial[lane * n_chunks + chunk] (vec4<f32>) with a fixed-shape tree, so results do not
//   depend on scheduling:
//   mode 0: (sum w x^2, sum w, 0, 0)                    -> the lane's scale after sweep one
//   mode 1: (sum d1.d2, sum d2.d2, max |d1|, 0), d1 = x2 - x1, d2 = d1 - (x1 - x0)
// finish: one thread per lane combines its partials in order and updates the lane:
//   mode 0: scale[l] = sqrt(sum w x^2 / sum w); a lane that is identically zero is done
//   mode 1: iters[l] += 2; converged when max |d1| <= tol * scale[l] (lane_state = 2), out of
//           iterations (lane_state = 3), else coef[l] = d1.d2 / d2.d2 for the Irons–Tuck step.
// Precision: the differences are formed in R (df64 or f64) and only then rounded to f32; the
// statistics steer the iteration, they never enter the results.

const WG: u32 = 256u;
const CHUNK: u32 = 4096u;

@group(0) @binding(1) var<storage, read> x: array<R>;
@group(0) @binding(2) var<storage, read> x0: array<R>;
@group(0) @binding(3) var<storage, read> x1: array<R>;
@group(0) @binding(5) var<storage, read_write> partial: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> lane_state: array<u32>;
@group(0) @binding(7) var<storage, read_write> coef: array<f32>;
@group(0) @binding(8) var<storage, read_write> scale: array<f32>;
@group(0) @binding(9) var<storage, read_write> iters: array<u32>;

var<workgroup> sh: array<vec4<f32>, 256>;

@compute @workgroup_size(256)
fn lane_partials(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let chunk = wg.x;
    let l = wg.y;
    let run = lane_state[l] == 1u;
    let r = l / P.n_cols;
    var acc = vec4<f32>(0.0, 0.0, 0.0, 0.0);
    let start = chunk * CHUNK;
    let end = min(P.n, start + CHUNK);
    for (var i = start + lid.x; i < end; i = i + WG) {
        if (run) {
            let t = l * P.n + i;
            if (P.mode == 0u) {
                let v = r_hi(x[t]);
                let wi = r_hi(weight(r * P.n + i));
                acc.x = acc.x + wi * v * v;
                acc.y = acc.y + wi;
            } else {
                let d1 = r_hi(r_sub(x[t], x1[t]));
                let d2 = d1 - r_hi(r_sub(x1[t], x0[t]));
                acc.x = acc.x + d1 * d2;
                acc.y = acc.y + d2 * d2;
                acc.z = max(acc.z, abs(d1));
            }
        }
    }
    sh[lid.x] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid.x < s) {
            let a = sh[lid.x];
            let b = sh[lid.x + s];
            sh[lid.x] = vec4<f32>(a.x + b.x, a.y + b.y, max(a.z, b.z), 0.0);
        }
        workgroupBarrier();
    }
    if (lid.x == 0u && run) {
        partial[l * P.n_chunks + chunk] = sh[0];
    }
}

@compute @workgroup_size(64)
fn finish(@builtin(global_invocation_id) gid: vec3<u32>) {
    let l = gid.x;
    if (l >= P.lanes) { return; }
    if (lane_state[l] != 1u) { return; }
    var acc = vec4<f32>(0.0, 0.0, 0.0, 0.0);
    for (var c = 0u; c < P.n_chunks; c = c + 1u) {
        let p = partial[l * P.n_chunks + c];
        acc = vec4<f32>(acc.x + p.x, acc.y + p.y, max(acc.z, p.z), 0.0);
    }
    if (P.mode == 0u) {
        let s = select(0.0, sqrt(acc.x / acc.y), acc.y > 0.0);
        scale[l] = s;
        if (!(s > 0.0)) { lane_state[l] = 2u; }
        return;
    }
    iters[l] = iters[l] + 2u;
    if (acc.z <= P.tol * scale[l]) {
        lane_state[l] = 2u;
    } else if (iters[l] + 2u > P.max_iter) {
        lane_state[l] = 3u;
    } else {
        coef[l] = select(0.0, acc.x / acc.y, acc.y > 0.0);
    }
}
