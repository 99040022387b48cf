//! An output directory that holds one run's results, never a mix (`fegpu replicate --out`).
//!
//! * **Lock.** `OUT.lock` (a sibling file, created exclusively, holding the process id) keeps a
//!   second run from writing the same directory; a lock whose process is gone (a killed run) is
//!   taken over with a notice.
//! * **Staging.** Everything is written into a hidden sibling `.OUT.partial-PID`; only a run
//!   that finished renames it into place (the previous `OUT`, if any, is moved aside first and
//!   removed after). A killed run leaves `OUT` as it was — the previous complete results or
//!   nothing — and no temporary files inside it.
//! * **Manifest.** The run writes `manifest.json` (version, options, input hashes, `completed`)
//!   last; a directory without one, or with `completed: false`, is not a finished run.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A claimed output directory (see the module docs). Dropping it without [`OutputDir::commit`]
/// removes the staging directory and the lock.
pub struct OutputDir {
    target: PathBuf,
    staging: PathBuf,
    lock: PathBuf,
    committed: bool,
}

fn sibling(target: &Path, prefix: &str, suffix: &str) -> Result<PathBuf> {
    let name = target
        .file_name()
        .ok_or_else(|| Error::Usage(format!("--out {}: not a directory name", target.display())))?;
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok(parent.join(format!("{prefix}{}{suffix}", name.to_string_lossy())))
}

/// Whether the process that wrote `lock` is still running (Linux `/proc`; elsewhere assumed).
fn holder_alive(lock: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(lock).ok()?.trim().parse().ok()?;
    let proc_dir = Path::new("/proc");
    if !proc_dir.exists() || proc_dir.join(pid.to_string()).exists() {
        Some(pid)
    } else {
        None
    }
}

impl OutputDir {
    /// Lock `target` and create its staging directory. `inputs` (raw data, panel, spec) must not
    /// lie inside `target`: the finished run replaces it.
    pub fn claim(target: &Path, inputs: &[&Path]) -> Result<OutputDir> {
        if target.exists() && !target.is_dir() {
            return Err(Error::io(
                target.display().to_string(),
                "--out exists and is not a directory",
            ));
        }
        for input in inputs {
            if input.starts_with(target) {
                return Err(Error::Usage(format!(
                    "{} lies inside --out {}, which a finished run replaces; write the replication to another directory",
                    input.display(),
                    target.display()
                )));
            }
        }
        let lock = sibling(target, "", ".lock")?;
        Self::take_lock(target, &lock)?;
        let staging = sibling(target, ".", &format!(".partial-{}", std::process::id()))?;
        let dir = OutputDir {
            target: target.to_path_buf(),
            staging,
            lock,
            committed: false,
        };
        std::fs::create_dir_all(&dir.staging).map_err(|e| Error::io(dir.staging.display().to_string(), e))?;
        Ok(dir)
    }

    fn take_lock(target: &Path, lock: &Path) -> Result<()> {
        use std::io::Write;
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(lock) {
                Ok(mut f) => {
                    let _ = write!(f, "{}", std::process::id());
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match holder_alive(lock) {
                    Some(pid) => {
                        return Err(Error::Usage(format!(
                            "{} is being written by another fegpu run (process {pid}, lock {}); wait for it or choose another --out",
                            target.display(),
                            lock.display()
                        )))
                    }
                    None => {
                        eprintln!(
                            "note: {} was left by a run that no longer exists; taking it over",
                            lock.display()
                        );
                        Self::remove_stale(target, lock);
                    }
                },
                Err(e) => return Err(Error::io(lock.display().to_string(), e)),
            }
        }
        Err(Error::io(lock.display().to_string(), "could not take the lock"))
    }

    /// A dead run's lock and staging directory.
    fn remove_stale(target: &Path, lock: &Path) {
        if let Ok(pid) = std::fs::read_to_string(lock) {
            if let Ok(dir) = sibling(target, ".", &format!(".partial-{}", pid.trim())) {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        let _ = std::fs::remove_file(lock);
    }

    /// Where the run writes.
    pub fn staging(&self) -> &Path {
        &self.staging
    }

    /// Move the finished run into place (the previous contents are replaced).
    pub fn commit(mut self) -> Result<()> {
        let old = sibling(&self.target, ".", &format!(".old-{}", std::process::id()))?;
        let had_old = self.target.exists();
        if had_old {
            std::fs::rename(&self.target, &old).map_err(|e| Error::io(self.target.display().to_string(), e))?;
        }
        if let Err(e) = std::fs::rename(&self.staging, &self.target) {
            if had_old {
                let _ = std::fs::rename(&old, &self.target);
            }
            return Err(Error::io(self.target.display().to_string(), e));
        }
        if had_old {
            let _ = std::fs::remove_dir_all(&old);
        }
        self.committed = true;
        let _ = std::fs::remove_file(&self.lock);
        Ok(())
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging);
            let _ = std::fs::remove_file(&self.lock);
        }
    }
}
