//! `fegpu replicate --out DIR` holds one run's results, never a mix: a second run while a
//! live one holds `DIR.lock` is refused; a lock left by a process that no longer exists (a
//! killed run) is taken over and its staging directory removed; a killed run leaves the
//! previous results untouched (the kill itself is started as a real process); the finished
//! directory has `manifest.json` with `completed: true`; inputs inside `--out` are refused.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fegpu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fegpu"))
        .args(args)
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .unwrap()
}

fn base(tag: &str) -> common::Scratch {
    common::tmpdir("outdir", tag)
}

/// A small `replicate` run into `out`.
fn replicate_command(out: &Path, seed: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fegpu"));
    c.args([
        "replicate",
        "--scale",
        "small",
        "--out",
        out.to_str().unwrap(),
        "--reps",
        "99",
        "--seed",
        seed,
        "--backend",
        "cpu",
    ])
    .env("XDG_RUNTIME_DIR", "/tmp");
    c
}

fn replicate(out: &Path, seed: &str) -> Output {
    replicate_command(out, seed).output().unwrap()
}

/// `replicate` started in the background (output discarded).
fn spawn_replicate(out: &Path, seed: &str) -> std::process::Child {
    replicate_command(out, seed)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn one_run_per_directory_with_a_manifest() {
    let b = base("lock");
    let out = b.join("rep");
    let lock = b.join("rep.lock");
    // a live holder (this test process) keeps others out
    std::fs::write(&lock, std::process::id().to_string()).unwrap();
    let o = replicate(&out, "1");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("being written by another fegpu run"),
        "{err}"
    );
    assert!(!out.exists(), "nothing written while locked");
    // a dead holder's lock and staging directory are taken over and removed
    std::fs::write(&lock, "999999999").unwrap();
    std::fs::create_dir_all(b.join(".rep.partial-999999999")).unwrap();
    let o = replicate(&out, "1");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("taking it over"), "{err}");
    assert_eq!(
        entries(&b),
        vec!["rep".to_string()],
        "only the finished directory remains"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["completed"], true);
    assert_eq!(manifest["seed"], 1);
    assert!(manifest["inputs_fnv1a"]["raw/firms.parquet"].is_string(), "{manifest}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(
        results["raw"],
        out.join("raw").display().to_string(),
        "paths name the final directory"
    );
    // inputs inside --out are refused (the finished run would replace them)
    let o = fegpu(&[
        "replicate",
        "--raw",
        out.join("raw").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("inside --out"));
    let _ = std::fs::remove_dir_all(&b);
}

#[test]
fn a_killed_run_leaves_the_previous_results_as_they_were() {
    let b = base("kill");
    let out = b.join("rep");
    assert!(replicate(&out, "1").status.success());
    let before = snapshot(&out);
    let mut child = spawn_replicate(&out, "2");
    std::thread::sleep(std::time::Duration::from_millis(400));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(snapshot(&out) == before, "the previous run's files, every byte");
    assert!(
        entries(&out)
            .iter()
            .all(|e| !e.contains("tmp") && !e.contains("partial")),
        "{:?}",
        entries(&out)
    );
    // the next run takes the dead run's lock over and replaces the directory whole
    let o = replicate(&out, "2");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(entries(&b), vec!["rep".to_string()]);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["seed"], 2);
    let _ = std::fs::remove_dir_all(&b);
}

/// Two real runs into one directory at once: the second is refused while the first holds the
/// lock, and the directory ends up holding the first run alone.
#[test]
fn two_concurrent_runs_do_not_mix() {
    let b = base("concurrent");
    let out = b.join("rep");
    let first = spawn_replicate(&out, "1");
    // wait until the first run holds the lock
    let lock = b.join("rep.lock");
    for _ in 0..200 {
        if lock.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(lock.exists(), "the first run took the lock");
    let second = replicate(&out, "2");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success() && err.contains("being written by another fegpu run"),
        "{err}"
    );
    assert!(first.wait_with_output().unwrap().status.success());
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["seed"], 1, "the directory is the first run's");
    assert_eq!(entries(&b), vec!["rep".to_string()]);
    let _ = std::fs::remove_dir_all(&b);
}
