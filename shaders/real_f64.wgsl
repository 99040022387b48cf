// Prelude for `--precision f64`: native f64 where the adapter has SHADER_F64 (Vulkan on most
// NVIDIA/AMD/Intel GPUs, lavapipe). Same interface as real_df64.wgsl so the kernels are shared.
alias R = f64;

fn r_zero() -> R { return R(0.0); }
fn r_from_f32(v: f32) -> R { return f64(v); }
fn r_hi(a: R) -> f32 { return f32(a); }
fn r_add(a: R, b: R) -> R { return a + b; }
fn r_sub(a: R, b: R) -> R { return a - b; }
fn r_mul(a: R, b: R) -> R { return a * b; }
