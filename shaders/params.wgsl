// Uniform parameters shared by every demeaning kernel (binding 0 of group 0), prepended to each
// kernel family together with the real-number prelude. Must match `Params` in
// src/gpu/pipelines.rs field for field.
struct Params {
    n: u32,            // observations
    lanes: u32,        // columns x replicates in this batch
    n_cols: u32,       // columns per replicate (lane l uses weights of replicate l / n_cols)
    levels: u32,       // levels of the fixed effect being projected
    n_seg: u32,        // CSR segments of that effect
    row_stride: u32,   // threads per dispatch row (2-D dispatch above 65,535 workgroups)
    n_chunks: u32,     // reduction chunks per lane
    mode: u32,         // reduction mode: 0 = scale, 1 = Irons–Tuck statistics
    max_iter: u32,
    tol: f32,
    pad0: u32,
    zero: u32,         // 0, opaque to the compiler (see the df64 prelude)
    offset: u32,       // krylov.wgsl: where the current effect's levels start in a lane's coefficients
    total: u32,        // krylov.wgsl: coefficients per lane (all effects' levels)
    pad1: u32,
    pad2: u32,
};

@group(0) @binding(0) var<uniform> P: Params;
