// The resident replicate engine's exact solve: weighted cross products of columns demeaned on
// one fixed effect, for many weight vectors at once, with the columns and the effect's levels
// uploaded once per model. Few-level effects enter as dummy columns and are partialled out on
// the host from the cross products (Frisch–Waugh–Lovell), so one pass is exact — no iteration.
//
// Layout (v = weight vector, m = P.n_cols columns, lane l = v * m + a):
//   src[a * n + i]        : R, column a (shared by every weight vector; never copied per lane)
//   weight(v * n + i)     : R, observation weights (weights_real.wgsl, binding 12)
//   ids[i], order, seg_start, seg_end, level_seg : the effect's levels and CSR segments (as in
//                           group_sums.wgsl)
//   inv_w[v * levels + g] : R, 1 / weight of level g under v (0 for an empty level)
//   partial[l * n_seg + s], mean[l * levels + g] : R, segment sums and level means
//   gpart, gram           : R, as in gram.wgsl; the demeaned value src − mean is formed on the
//                           fly, so no n × lanes buffer exists
// Passes: level_weights (v, g) -> inv_w; src_segment_sums (l, s) -> partial; level_means of
// group_sums.wgsl -> mean; src_gram_partials (chunk, v · pairs) -> gpart; gram_finish of
// gram.wgsl -> gram. Fixed summation orders: results are deterministic.
// Precision: R (df64 or f64); 1/W by two Newton steps from the f32 reciprocal.

const RWG: u32 = 256u;
const RCHUNK: u32 = 4096u;

@group(0) @binding(1) var<storage, read> src: array<R>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read> order: array<u32>;
@group(0) @binding(4) var<storage, read> seg_start: array<u32>;
@group(0) @binding(5) var<storage, read> seg_end: array<u32>;
@group(0) @binding(6) var<storage, read> level_seg: array<u32>;
@group(0) @binding(7) var<storage, read_write> inv_w: array<R>;
@group(0) @binding(8) var<storage, read_write> partial: array<R>;
@group(0) @binding(9) var<storage, read> mean: array<R>;
@group(0) @binding(13) var<storage, read_write> gpart: array<R>;

fn r_recip(a: R) -> R {
    var q = r_from_f32(1.0 / r_hi(a));
    for (var k = 0u; k < 2u; k = k + 1u) {
        q = r_add(q, r_mul(q, r_sub(r_from_f32(1.0), r_mul(a, q))));
    }
    return q;
}

// One thread per (weight vector, level).
@compute @workgroup_size(64)
fn level_weights(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x + gid.y * P.row_stride;
    let vectors = P.lanes / P.n_cols;
    if (t >= vectors * P.levels) { return; }
    let v = t / P.levels;
    let g = t - v * P.levels;
    var acc = r_zero();
    for (var s = level_seg[g]; s < level_seg[g + 1u]; s = s + 1u) {
        for (var j = seg_start[s]; j < seg_end[s]; j = j + 1u) {
            acc = r_add(acc, weight(v * P.n + order[j]));
        }
    }
    if (r_hi(acc) > 0.0) {
        inv_w[t] = r_recip(acc);
    } else {
        inv_w[t] = r_zero();
    }
}

// One thread per (lane, segment): Σ w · src over the segment.
@compute @workgroup_size(64)
fn src_segment_sums(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x + gid.y * P.row_stride;
    if (t >= P.n_seg * P.lanes) { return; }
    let l = t / P.n_seg;
    let s = t - l * P.n_seg;
    let v = l / P.n_cols;
    let a = l - v * P.n_cols;
    var acc = r_zero();
    for (var j = seg_start[s]; j < seg_end[s]; j = j + 1u) {
        let i = order[j];
        acc = r_add(acc, r_mul(weight(v * P.n + i), src[a * P.n + i]));
    }
    partial[t] = acc;
}


var<workgroup> rsh: array<R, 256>;

// Workgroup (chunk, v · pairs + pair): Σ w (src_p − mean_p)(src_q − mean_q) over the chunk.
@compute @workgroup_size(256)
fn src_gram_partials(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let pairs = P.n_cols * (P.n_cols + 1u) / 2u;
    let job = wg.y + wg.z * 65535u;
    let vectors = P.lanes / P.n_cols;
    if (job >= vectors * pairs) { return; }
    let v = job / pairs;
    let pq = pair_of(job - v * pairs);
    let mp = (v * P.n_cols + pq.x) * P.levels;
    let mq = (v * P.n_cols + pq.y) * P.levels;
    let start = wg.x * RCHUNK;
    let end = min(P.n, start + RCHUNK);
    var acc = r_zero();
    for (var i = start + lid.x; i < end; i = i + RWG) {
        let g = ids[i];
        let a = r_sub(src[pq.x * P.n + i], mean[mp + g]);
        let b = r_sub(src[pq.y * P.n + i], mean[mq + g]);
        acc = r_add(acc, r_mul(weight(v * P.n + i), r_mul(a, b)));
    }
    rsh[lid.x] = acc;
    workgroupBarrier();
    for (var s = RWG / 2u; s > 0u; s = s / 2u) {
        if (lid.x < s) {
            rsh[lid.x] = r_add(rsh[lid.x], rsh[lid.x + s]);
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        gpart[job * P.n_chunks + wg.x] = rsh[0];
    }
}

// Tiled variant for up to TM columns: workgroup (chunk, v) stages TT observations of every
// column, demeaned (u) and weighted (w u), in workgroup memory, and each thread accumulates up
// to TP pairs from there — each demeaned value is formed once instead of once per pair, and a
// pair costs one multiply-add per observation. Writes gpart exactly as src_gram_partials does.
const TM: u32 = 32u;
const TT: u32 = 32u;
const TP: u32 = 4u;

var<workgroup> tile_u: array<R, 1024>;   // TM * TT
var<workgroup> tile_wu: array<R, 1024>;

@compute @workgroup_size(256)
fn src_gram_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m = P.n_cols;
    let pairs = m * (m + 1u) / 2u;
    let v = wg.y;
    let start = wg.x * RCHUNK;
    let end = min(P.n, start + RCHUNK);
    var acc: array<R, 4>;
    var pq: array<vec2<u32>, 4>;
    for (var k = 0u; k < TP; k = k + 1u) {
        acc[k] = r_zero();
        pq[k] = pair_of(min(lid.x + k * RWG, pairs - 1u));
    }
    for (var t0 = start; t0 < end; t0 = t0 + TT) {
        for (var e = lid.x; e < m * TT; e = e + RWG) {
            let a = e / TT;
            let i = t0 + (e - a * TT);
            var u = r_zero();
            var wu = r_zero();
            if (i < end) {
                u = r_sub(src[a * P.n + i], mean[(v * m + a) * P.levels + ids[i]]);
                wu = r_mul(weight(v * P.n + i), u);
            }
            tile_u[e] = u;
            tile_wu[e] = wu;
        }
        workgroupBarrier();
        for (var k = 0u; k < TP; k = k + 1u) {
            if (lid.x + k * RWG < pairs) {
                let p = pq[k].x * TT;
                let q = pq[k].y * TT;
                var s = acc[k];
                for (var o = 0u; o < TT; o = o + 1u) {
                    s = r_add(s, r_mul(tile_wu[p + o], tile_u[q + o]));
                }
                acc[k] = s;
            }
        }
        workgroupBarrier();
    }
    for (var k = 0u; k < TP; k = k + 1u) {
        let pair = lid.x + k * RWG;
        if (pair < pairs) {
            gpart[(v * pairs + pair) * P.n_chunks + wg.x] = acc[k];
        }
    }
}

// Single fits (one weight vector, v = 0): what the variance needs, without reading columns back.
//   coef[a]   : R, the residual's coefficient on column a in device units (1 for y, −β·scale
//               for the regressors, the dummies' FWL coefficients), so e_i = Σ_a coef_a ũ_a(i)
//   wout[i]   : R, w_i e_i (P.mode 0) or (w_i e_i)² (P.mode 1)
// residual_weights: one thread per observation -> wout.
// demeaned_segment_sums: one thread per (column, segment of a grouping's CSR): Σ weight · ũ_a
//   over the segment, ũ demeaned by the large effect (ids, mean; P.levels = its levels) ->
//   partial[a * n_seg + s]; level_means of group_sums.wgsl then sums the segments per group.
@group(0) @binding(10) var<storage, read> coef: array<R>;
@group(0) @binding(11) var<storage, read_write> wout: array<R>;

@compute @workgroup_size(64)
fn residual_weights(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * P.row_stride;
    if (i >= P.n) { return; }
    let g = ids[i];
    var e = r_zero();
    for (var a = 0u; a < P.n_cols; a = a + 1u) {
        e = r_add(e, r_mul(coef[a], r_sub(src[a * P.n + i], mean[a * P.levels + g])));
    }
    let we = r_mul(weight(i), e);
    if (P.mode == 0u) {
        wout[i] = we;
    } else {
        wout[i] = r_mul(we, we);
    }
}

@compute @workgroup_size(64)
fn demeaned_segment_sums(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x + gid.y * P.row_stride;
    if (t >= P.n_seg * P.n_cols) { return; }
    let a = t / P.n_seg;
    let s = t - a * P.n_seg;
    var acc = r_zero();
    for (var j = seg_start[s]; j < seg_end[s]; j = j + 1u) {
        let i = order[j];
        let u = r_sub(src[a * P.n + i], mean[a * P.levels + ids[i]]);
        acc = r_add(acc, r_mul(weight(i), u));
    }
    partial[t] = acc;
}
