//! Helpers shared by the integration tests (each test file is its own crate and includes this
//! module with `mod common;`, so not every file uses every helper).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A path under the system temporary directory unique to this test process
/// (`fegpu-{prefix}-{name}-{pid}`), removed if a previous run left it; not created.
pub fn tmp_path(prefix: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fegpu-{prefix}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// [`tmp_path`], created empty.
pub fn tmpdir(prefix: &str, name: &str) -> PathBuf {
    let d = tmp_path(prefix, name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Run the fegpu binary with `args`.
pub fn fegpu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fegpu"))
        .args(args)
        .output()
        .expect("run fegpu")
}

/// [`fegpu`] that must succeed; its standard output.
pub fn ok(args: &[&str]) -> Vec<u8> {
    let o = fegpu(args);
    assert!(
        o.status.success(),
        "fegpu {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// A path as the `&str` a command line takes.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
