// Known-answer kernel for the WGSL Philox: one thread per (counter, key) pair.
// Layout: input[i] = (counter.x, counter.y, counter.z, counter.w), keys[i] = (k0, k1, _, _);
// output[i] = philox4x32(counter, key).

@group(0) @binding(0) var<storage, read> input: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> keys: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> output: array<vec4<u32>>;

@compute @workgroup_size(64)
fn philox_check(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= arrayLength(&input)) { return; }
    output[i] = philox4x32(input[i], keys[i].xy);
}

// The integer decisions replicates are built from, one thread per (counter, key):
// output = (Rademacher bit, Webb point index = mulhi(u, 6), mulhi(u, n) for n = counter.w,
// the raw first word). counter.w is used as the range n here, so callers put the range there
// and use counters (replicate, unit, stream, n).
@group(0) @binding(3) var<storage, read_write> decisions: array<vec4<u32>>;

@compute @workgroup_size(64)
fn decisions_check(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= arrayLength(&input)) { return; }
    let c = input[i];
    let u = philox4x32(vec4<u32>(c.x, c.y, c.z, 0u), keys[i].xy).x;
    decisions[i] = vec4<u32>(u >> 31u, mulhi32(u, 6u), mulhi32(u, c.w), u);
}
