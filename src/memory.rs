//! The C allocator's settings for large data. glibc serves an allocation above its mmap
//! threshold (dynamic, starting at 128 KiB) with a fresh mapping and unmaps it on free, so each
//! large temporary buffer — a Parquet batch's decoded columns, a block of replicate weights — is
//! faulted in and zeroed by the kernel again every time; on this project's 10M-row fits page
//! faults were a quarter of the time. At start-up the threshold is set to glibc's maximum
//! (32 MiB) and freed memory is kept (trim threshold 1 GiB), so such buffers are reused.
//! Allocations above 32 MiB (whole 10M-row columns) are still mapped: each is touched once.

/// Apply the settings (glibc only; elsewhere nothing to do). Call before any thread starts.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // Safety: mallopt only changes allocator parameters; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
