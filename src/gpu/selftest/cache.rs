//! The self-test's outcome, remembered per adapter and driver so start-up pays for it once.
//!
//! One JSON file, `$XDG_CACHE_HOME/fegpu/df64-selftest.json` (else `~/.cache/fegpu/…`), maps a
//! [`CacheKey`] to the [`SelfTest`] it produced. The key names everything that can change the
//! compiled arithmetic: the adapter (name, vendor and device ids), the API, the driver and its
//! version string, fegpu's version, and a hash of the shader source the test ran (the df64
//! prelude and the test kernel), so a driver update or a prelude edit re-runs the test.
//! The cache is an optimisation only: an unreadable file reads as empty, and a failed write is
//! ignored by callers (the test then simply runs again next time).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::outcome::{SelfTest, Status};

/// What identifies one compiled df64 arithmetic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    pub adapter: String,
    pub backend: String,
    pub vendor: u32,
    pub device: u32,
    pub driver: String,
    pub driver_info: String,
    pub fegpu_version: String,
    /// FNV-1a hash of the shader source the test compiles.
    pub shader_hash: u64,
}

impl CacheKey {
    /// The key of `info`'s adapter for the faithful df64 prelude and this build of fegpu.
    pub fn of(info: &wgpu::AdapterInfo) -> CacheKey {
        CacheKey {
            adapter: info.name.clone(),
            backend: format!("{:?}", info.backend),
            vendor: info.vendor,
            device: info.device,
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            fegpu_version: env!("CARGO_PKG_VERSION").to_string(),
            shader_hash: fnv1a(super::shader_source(super::Variant::Faithful).as_bytes()),
        }
    }

    /// The key as one string (the file's map key).
    pub fn id(&self) -> String {
        format!(
            "{} | {} | {:04x}:{:04x} | {} | {} | fegpu {} | shader {:016x}",
            self.adapter,
            self.backend,
            self.vendor,
            self.device,
            self.driver,
            self.driver_info,
            self.fegpu_version,
            self.shader_hash
        )
    }
}

/// 64-bit FNV-1a: stable across Rust versions, unlike `DefaultHasher`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// The cache file: `$XDG_CACHE_HOME/fegpu/df64-selftest.json`, else under `$HOME/.cache`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("fegpu").join("df64-selftest.json"))
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct File {
    entries: BTreeMap<String, SelfTest>,
}

fn read(path: &Path) -> File {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// The remembered outcome for `key`, if any (marked as coming from the cache).
pub fn lookup(path: &Path, key: &CacheKey) -> Option<SelfTest> {
    let mut hit = read(path).entries.remove(&key.id())?;
    hit.from_cache = true;
    Some(hit)
}

/// Remember `outcome` for `key` (written to a temporary file, then renamed into place, so a
/// concurrent reader never sees half a file).
pub fn store(path: &Path, key: &CacheKey, outcome: &SelfTest) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = read(path);
    file.entries.insert(key.id(), outcome.clone());
    let text = serde_json::to_string_pretty(&file).map_err(std::io::Error::other)?;
    // unique per process and call: threads of one process (the test harness) may store at once
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("json.{}.{call}.tmp", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// The cached status of `info`'s adapter (what `fegpu devices` shows): not run when there is
/// no cache entry.
pub fn cached_status(info: &wgpu::AdapterInfo) -> Status {
    default_path()
        .and_then(|p| lookup(&p, &CacheKey::of(info)))
        .map_or(Status::NotRun, |t| t.status)
}

#[cfg(test)]
mod tests {
    use super::super::{Check, Status};
    use super::*;

    fn key() -> CacheKey {
        CacheKey {
            adapter: "llvmpipe (LLVM 15.0.6, 256 bits)".into(),
            backend: "Vulkan".into(),
            vendor: 0x10005,
            device: 0,
            driver: "llvmpipe".into(),
            driver_info: "Mesa 22.3.6".into(),
            fegpu_version: "0.1.0".into(),
            shader_hash: 7,
        }
    }

    fn outcome(status: Status) -> SelfTest {
        SelfTest {
            status,
            checks: vec![Check {
                name: "two_sum(1, 2^-30) = (1, 2^-30)".into(),
                passed: status == Status::Passed,
                detail: String::new(),
            }],
            seconds: 0.1,
            from_cache: false,
        }
    }

    /// A scratch directory, removed when the test ends.
    struct Scratch(PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn temp_file(tag: &str) -> (Scratch, PathBuf) {
        let dir = std::env::temp_dir().join(format!("fegpu-cache-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let file = dir.join("sub").join("df64-selftest.json");
        (Scratch(dir), file)
    }

    #[test]
    fn every_part_of_the_key_separates_entries() {
        let base = key();
        type Change = Box<dyn Fn(&mut CacheKey)>;
        let variants: Vec<Change> = vec![
            Box::new(|k| k.adapter.push('x')),
            Box::new(|k| k.backend = "Metal".into()),
            Box::new(|k| k.vendor += 1),
            Box::new(|k| k.device += 1),
            Box::new(|k| k.driver.push('x')),
            Box::new(|k| k.driver_info = "Mesa 24.0".into()),
            Box::new(|k| k.fegpu_version = "0.2.0".into()),
            Box::new(|k| k.shader_hash += 1),
        ];
        for change in variants {
            let mut k = base.clone();
            change(&mut k);
            assert_ne!(k.id(), base.id());
        }
        assert_eq!(key().id(), base.id());
    }

    #[test]
    fn outcomes_are_remembered_per_key() {
        let (_dir, path) = temp_file("roundtrip");
        assert!(lookup(&path, &key()).is_none());
        store(&path, &key(), &outcome(Status::Failed)).unwrap();
        let mut other = key();
        other.driver_info = "Mesa 24.0".into();
        store(&path, &other, &outcome(Status::Passed)).unwrap();
        let hit = lookup(&path, &key()).unwrap();
        assert_eq!(hit.status, Status::Failed);
        assert!(hit.from_cache);
        assert_eq!(hit.checks[0].name, "two_sum(1, 2^-30) = (1, 2^-30)");
        assert_eq!(lookup(&path, &other).unwrap().status, Status::Passed);
    }

    #[test]
    fn a_corrupt_file_reads_as_empty_and_an_unwritable_one_is_an_io_error() {
        let (_dir, path) = temp_file("corrupt");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{ not json").unwrap();
        assert!(lookup(&path, &key()).is_none());
        store(&path, &key(), &outcome(Status::Passed)).unwrap();
        assert!(lookup(&path, &key()).is_some());
        // a directory where the file should be: store fails, lookup still answers
        let (_blocked_dir, blocked) = temp_file("blocked");
        std::fs::create_dir_all(&blocked).unwrap();
        assert!(store(&blocked, &key(), &outcome(Status::Passed)).is_err());
        assert!(lookup(&blocked, &key()).is_none());
    }

    #[test]
    fn the_shader_hash_is_stable_fnv1a() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
