//! Helpers shared by the integration tests (each test file is its own crate and includes this
//! module with `mod common;`, so not every file uses every helper).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch path under the system temporary directory, unique to this test process
/// (`fegpu-{prefix}-{name}-{pid}`), removed when dropped so that test runs leave nothing behind
/// — except when the test is failing (the thread is panicking: the files are kept for a look
/// and the path printed) or `FEGPU_KEEP_TEST_FILES` is set. It reads as a `Path`.
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for Scratch {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("FEGPU_KEEP_TEST_FILES").is_some() {
            eprintln!("test files kept in {}", self.0.display());
        } else if self.0.is_dir() {
            let _ = std::fs::remove_dir_all(&self.0);
        } else {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// A [`Scratch`] path, removed first if a previous run left it; not created.
pub fn tmp_path(prefix: &str, name: &str) -> Scratch {
    let d = std::env::temp_dir().join(format!("fegpu-{prefix}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    Scratch(d)
}

/// A [`Scratch`] file path `fegpu-{prefix}-{pid}-{name}` (the name last, so that its extension
/// is the file's), removed first if a previous run left it.
pub fn tmp_file(prefix: &str, name: &str) -> Scratch {
    let f = std::env::temp_dir().join(format!("fegpu-{prefix}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&f);
    Scratch(f)
}

/// [`tmp_path`], created empty.
pub fn tmpdir(prefix: &str, name: &str) -> Scratch {
    let d = tmp_path(prefix, name);
    std::fs::create_dir_all(&*d).unwrap();
    d
}

/// Run the fegpu binary with `args`: this build's, or the one `FEGPU_TEST_BIN` names (when two
/// checkouts share a target directory, each build replaces `target/debug/fegpu`; the
/// checkout's own binary under `deps/` is stable).
pub fn fegpu(args: &[&str]) -> Output {
    let bin = std::env::var_os("FEGPU_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_fegpu").into());
    Command::new(bin).args(args).output().expect("run fegpu")
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
