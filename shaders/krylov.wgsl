// Kernels of the conjugate-gradient demeaner (src/demean/krylov.rs drives them through
// src/demean/gpu_krylov.rs; the algorithm itself lives on the host, once for every backend).
//
// Layout (lane l = replicate * n_cols + column, as in the sweeps):
//   obs[l * n + i]              : R, an observation vector of lane l (the column, or scratch)
//   coefficient vectors         : R, every effect's levels concatenated per lane,
//                                 c[l * total + offset + g] for level g of the effect at `offset`
//   ids[i]                      : u32, the level of observation i in the current effect
//   partial[l * n_seg + s]      : R, segment sums from group_sums.wgsl::segment_sums (D'W t)
//   scal[l]                     : R, a per-lane scalar (step length, β)
//   inv_diag[r * total + j]     : R, Jacobi: 1 / (weight of level j) for replicate r
// Kernels skip lanes whose lane_state is not 1 (converged lanes stop costing).
//   gather      : obs ← obs ∘ ca[ids] with ∘ chosen by P.mode: 0 set, 1 add, 2 subtract,
//                 3 obs ← xin − ca[ids] (the first effect of the final residual, written into a
//                 NaN-poisoned output so that a kernel that did not run cannot pass unnoticed)
//   level_sums  : cy[offset + g] ← Σ of level g's segment sums (no division: D'W t itself)
//   axpy        : cy ← cy + scal · ca          xpay: cy ← ca + scal · cy
//   copy        : cy ← ca                      jacobi: cy ← inv_diag ∘ ca
//   dot_partials: dots[l * n_chunks + k] ← Σ_{j in chunk k} ca_j cb_j (fixed order)
//   dot_finish  : cy[l] ← Σ_k dots[l * n_chunks + k] (fixed order: deterministic results)
// Precision: R is df64 (f32 pairs) or f64; see the prelude. Coefficient-space work is small
// next to the observation passes, so these kernels are one thread per element, no tiling.

const DOT_CHUNK: u32 = 256u;

@group(0) @binding(1) var<storage, read_write> obs: array<R>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read> ca: array<R>;
@group(0) @binding(4) var<storage, read> lane_state: array<u32>;
@group(0) @binding(5) var<storage, read> partial: array<R>;
@group(0) @binding(6) var<storage, read> level_seg: array<u32>;
@group(0) @binding(7) var<storage, read_write> cy: array<R>;
@group(0) @binding(8) var<storage, read> scal: array<R>;
@group(0) @binding(9) var<storage, read> inv_diag: array<R>;
@group(0) @binding(10) var<storage, read_write> dots: array<R>;
@group(0) @binding(11) var<storage, read> cb: array<R>;
@group(0) @binding(12) var<storage, read> xin: array<R>;

@compute @workgroup_size(64)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x + gid.y * P.row_stride;
    if (t >= P.n * P.lanes) { return; }
    let l = t / P.n;
    let i = t - l * P.n;
    if (lane_state[l] != 1u) { return; }
    let v = ca[l * P.total + P.offset + ids[i]];
    if (P.mode == 0u) {
        obs[t] = v;
    } else if (P.mode == 1u) {
        obs[t] = r_add(obs[t], v);
    } else if (P.mode == 2u) {
        obs[t] = r_sub(obs[t], v);
    } else {
        obs[t] = r_sub(xin[t], v);
    }
}

@compute @workgroup_size(64)
fn level_sums(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x + gid.y * P.row_stride;
    if (t >= P.levels * P.lanes) { return; }
    let l = t / P.levels;
    let g = t - l * P.levels;
    if (lane_state[l] != 1u) { return; }
    var acc = r_zero();
    for (var s = level_seg[g]; s < level_seg[g + 1u]; s = s + 1u) {
        acc = r_add(acc, partial[l * P.n_seg + s]);
    }
    cy[l * P.total + P.offset + g] = acc;
}

// One thread per coefficient of every lane; returns the lane, or lanes (skip) when inactive.
fn coef_lane(gid: vec3<u32>) -> u32 {
    let t = gid.x + gid.y * P.row_stride;
    if (t >= P.total * P.lanes) { return P.lanes; }
    let l = t / P.total;
    if (lane_state[l] != 1u) { return P.lanes; }
    return l;
}

@compute @workgroup_size(64)
fn axpy(@builtin(global_invocation_id) gid: vec3<u32>) {
    let l = coef_lane(gid);
    if (l >= P.lanes) { return; }
    let t = gid.x + gid.y * P.row_stride;
    cy[t] = r_add(cy[t], r_mul(scal[l], ca[t]));
}

@compute @workgroup_size(64)
fn xpay(@builtin(global_invocation_id) gid: vec3<u32>) {
    let l = coef_lane(gid);
    if (l >= P.lanes) { return; }
    let t = gid.x + gid.y * P.row_stride;
    cy[t] = r_add(ca[t], r_mul(scal[l], cy[t]));
}

@compute @workgroup_size(64)
fn copy(@builtin(global_invocation_id) gid: vec3<u32>) {
    let l = coef_lane(gid);
    if (l >= P.lanes) { return; }
    let t = gid.x + gid.y * P.row_stride;
    cy[t] = ca[t];
}

@compute @workgroup_size(64)
fn jacobi(@builtin(global_invocation_id) gid: vec3<u32>) {
    let l = coef_lane(gid);
    if (l >= P.lanes) { return; }
    let t = gid.x + gid.y * P.row_stride;
    let j = t - l * P.total;
    cy[t] = r_mul(inv_diag[(l / P.n_cols) * P.total + j], ca[t]);
}

@compute @workgroup_size(64)
fn dot_partials(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x + gid.y * P.row_stride;
    if (t >= P.n_chunks * P.lanes) { return; }
    let l = t / P.n_chunks;
    let k = t - l * P.n_chunks;
    var acc = r_zero();
    let end = min(P.total, (k + 1u) * DOT_CHUNK);
    for (var j = k * DOT_CHUNK; j < end; j = j + 1u) {
        acc = r_add(acc, r_mul(ca[l * P.total + j], cb[l * P.total + j]));
    }
    dots[t] = acc;
}

@compute @workgroup_size(64)
fn dot_finish(@builtin(global_invocation_id) gid: vec3<u32>) {
    let l = gid.x + gid.y * P.row_stride;
    if (l >= P.lanes) { return; }
    var acc = r_zero();
    for (var k = 0u; k < P.n_chunks; k = k + 1u) {
        acc = r_add(acc, dots[l * P.n_chunks + k]);
    }
    cy[l] = acc;
}
