// Weighted cross products of every replicate's demeaned columns, so the replicate engine reads
// back c(c+1)/2 numbers per replicate instead of c·n (the read-back, not the sweeps, bounds a
// GPU bootstrap: on an H100 a 130k × 13 × 1000 batch sweeps in well under a second).
//
// Layout: lanes as in the sweeps (x[l * n + i], l = r * n_cols + j); pairs (p, q), q <= p, of
// one replicate are numbered p (p + 1) / 2 + q.
// gram_partials: workgroup (chunk, r * pairs + pair) sums w_ri x_rp,i x_rq,i over CHUNK rows with
//   a fixed-shape tree -> gpart[(r * pairs + pair) * n_chunks + chunk].
// gram_finish: one thread per (replicate, pair) adds its chunks in order -> gram[r * pairs + pair].
// Precision: R throughout (df64 or f64); the tree order is fixed, so results are deterministic.

const GWG: u32 = 256u;
const GCHUNK: u32 = 4096u;

@group(0) @binding(1) var<storage, read> x: array<R>;
@group(0) @binding(13) var<storage, read_write> gpart: array<R>;
@group(0) @binding(14) var<storage, read_write> gram: array<R>;

var<workgroup> gsh: array<R, 256>;


@compute @workgroup_size(256)
fn gram_partials(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let pairs = P.n_cols * (P.n_cols + 1u) / 2u;
    let job = wg.y + wg.z * 65535u;
    let reps = P.lanes / P.n_cols;
    if (job >= reps * pairs) { return; }
    let r = job / pairs;
    let pq = pair_of(job - r * pairs);
    let lp = (r * P.n_cols + pq.x) * P.n;
    let lq = (r * P.n_cols + pq.y) * P.n;
    let start = wg.x * GCHUNK;
    let end = min(P.n, start + GCHUNK);
    var acc = r_zero();
    for (var i = start + lid.x; i < end; i = i + GWG) {
        acc = r_add(acc, r_mul(weight(r * P.n + i), r_mul(x[lp + i], x[lq + i])));
    }
    gsh[lid.x] = acc;
    workgroupBarrier();
    for (var s = GWG / 2u; s > 0u; s = s / 2u) {
        if (lid.x < s) {
            gsh[lid.x] = r_add(gsh[lid.x], gsh[lid.x + s]);
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        gpart[job * P.n_chunks + wg.x] = gsh[0];
    }
}

@compute @workgroup_size(64)
fn gram_finish(@builtin(global_invocation_id) gid: vec3<u32>) {
    let job = gid.x + gid.y * P.row_stride;
    let pairs = P.n_cols * (P.n_cols + 1u) / 2u;
    if (job >= (P.lanes / P.n_cols) * pairs) { return; }
    var acc = r_zero();
    for (var c = 0u; c < P.n_chunks; c = c + 1u) {
        acc = r_add(acc, gpart[job * P.n_chunks + c]);
    }
    gram[job] = acc;
}
