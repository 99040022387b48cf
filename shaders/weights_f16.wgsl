// Observation weights stored compactly as f16 pairs packed in u32 (the host packs them with the
// `half` crate). Used whenever every weight of the batch is exactly an f16 value: bootstrap
// multiplicities, 0/1 memberships of permutation replicates and unit weights are, so 1000
// replicate weight vectors of a 130k-row panel take 260 MB instead of 1 GB and the group sums
// read a quarter of the bytes. Exactness makes the choice invisible in the results.
// Layout: element e = replicate * n + i is half (e & 1) of word e / 2.
@group(0) @binding(12) var<storage, read> w: array<u32>;

fn weight(idx: u32) -> R {
    let p = unpack2x16float(w[idx / 2u]);
    return r_from_f32(select(p.x, p.y, (idx & 1u) == 1u));
}
