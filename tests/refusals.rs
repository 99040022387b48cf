//! Issue 14, items 2 and 3, through the real binary: resampling runs that cannot give valid
//! inference (one cluster, too few replicates, a non-finite null, an empty bdiff group, a
//! `--format` the command does not print) exit non-zero with a message naming the cause — on a
//! single run and on a shard alike — and output files are written through symbolic links,
//! never over FIFOs, devices or directories, with errors naming the path the user gave.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{fegpu, ok, s};

fn tmpdir(name: &str) -> common::Scratch {
    common::tmpdir("refusals", name)
}

/// Non-zero exit, no panic, nothing on stdout, and every needle in stderr.
fn refused(out: &Output, needles: &[&str]) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "expected a refusal, got success; stderr: {err}");
    assert!(!err.contains("panicked"), "panic instead of an error: {err}");
    assert!(
        out.stdout.is_empty(),
        "nothing should be printed on stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    for n in needles {
        assert!(err.contains(n), "stderr should mention {n:?}: {err}");
    }
    assert!(!err.contains(".tmp-"), "the error names a temporary file: {err}");
    err
}

/// The demo panel (2,000 rows) with a constant `one` (a single cluster) and `g0` = 0 for every
/// row (group 1 of bdiff empty) and `g` = firm mod 2.
fn demo(dir: &Path) -> PathBuf {
    let raw = dir.join("demo_raw.csv");
    ok(&["demo", "--rows", "2000", "--out", s(&raw)]);
    let text = std::fs::read_to_string(&raw).unwrap();
    let mut out = String::new();
    for (k, line) in text.lines().enumerate() {
        if k == 0 {
            out.push_str(&format!("{line},one,g0,g\n"));
        } else {
            let firm: u64 = line.split(',').next().unwrap().parse().unwrap();
            out.push_str(&format!("{line},1,0,{}\n", firm % 2));
        }
    }
    let p = dir.join("demo.csv");
    std::fs::write(&p, out).unwrap();
    p
}

const F: &str = "qua ~ digtech + age | firm + year";

#[test]
fn boot_with_one_cluster_is_refused() {
    let d = tmpdir("one");
    let data = demo(&d);
    for kind in ["wild", "pairs"] {
        let args = ["boot", s(&data), F, "--cluster", "one", "--kind", kind, "--reps", "99"];
        refused(&fegpu(&args), &["--cluster one", "1 cluster", "at least 2"]);
        // a shard of the same run is refused alike, and writes nothing
        let out = d.join(format!("{kind}.json"));
        let mut a = args.to_vec();
        a.extend(["--shard", "1/2", "--out", s(&out)]);
        refused(&fegpu(&a), &["--cluster one", "at least 2"]);
        assert!(!out.exists());
    }
    // two clusters are enough to run
    ok(&["boot", s(&data), F, "--cluster", "g", "--reps", "99"]);
}

#[test]
fn too_few_replicates_and_a_non_finite_null_are_refused() {
    let d = tmpdir("reps");
    let data = demo(&d);
    let boot = |extra: &[&str]| {
        let mut a = vec!["boot", s(&data), F, "--cluster", "firm"];
        a.extend(extra);
        fegpu(&a)
    };
    refused(&boot(&["--reps", "1"]), &["--reps 1 is too few", "at least 19"]);
    refused(
        &boot(&["--reps", "18", "--kind", "pairs"]),
        &["--reps 18", "at least 19"],
    );
    // a 99% interval needs p-values down to 1%
    refused(
        &boot(&["--reps", "50", "--level", "0.99"]),
        &["--reps 50", "at least 99"],
    );
    let out = d.join("shard.json");
    refused(
        &boot(&["--reps", "1", "--shard", "1/2", "--out", s(&out)]),
        &["at least 19"],
    );
    assert!(!out.exists());
    refused(
        &fegpu(&["bdiff", s(&data), F, "--group", "g", "--reps", "1"]),
        &["bdiff --reps 1 is too few", "at least 19"],
    );
    for null in ["--null=nan", "--null=inf", "--null=-inf", "--null=NaN"] {
        refused(&boot(&[null]), &["--null must be a finite number"]);
    }
    ok(&["boot", s(&data), F, "--cluster", "firm", "--reps", "19"]);
}

#[test]
fn exact_enumeration_with_fewer_assignments_than_reps_still_runs() {
    // 10 clusters: 2^10 = 1024 sign vectors, all used when --reps asks for more
    let wild = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wild/wild.csv");
    let o = ok(&[
        "boot",
        s(&wild),
        "y ~ x1 + x2 | f",
        "--cluster",
        "c",
        "--reps",
        "2000",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o).unwrap();
    assert_eq!(v["wild"]["full_enumeration"], true);
    assert_eq!(v["wild"]["reps"], 1024);
}

#[test]
fn bdiff_with_an_empty_group_names_the_group_variable() {
    let d = tmpdir("group");
    let data = demo(&d);
    refused(
        &fegpu(&["bdiff", s(&data), F, "--group", "g0", "--reps", "99"]),
        &["--group g0", "group 1 (g0 = 1) is empty"],
    );
}

#[test]
fn unsupported_formats_are_refused() {
    let d = tmpdir("format");
    let data = demo(&d);
    for format in ["markdown", "latex", "csv"] {
        refused(
            &fegpu(&["boot", s(&data), F, "--cluster", "firm", "--format", format]),
            &[&format!("fegpu boot --format {format} is not supported")],
        );
        refused(
            &fegpu(&["bdiff", s(&data), F, "--group", "g", "--format", format]),
            &[&format!("fegpu bdiff --format {format} is not supported")],
        );
    }
}

#[cfg(unix)]
#[test]
fn output_onto_fifo_device_directory_is_refused_and_symlinks_are_written_through() {
    use std::os::unix::fs::FileTypeExt;
    let d = tmpdir("files");
    let data = demo(&d);
    let table = ok(&["fit", s(&data), F]);
    let fit_to = |out: &Path| fegpu(&["fit", s(&data), F, "--output", s(out)]);

    // a FIFO is refused (not opened, not replaced)
    let fifo = d.join("pipe.txt");
    let st = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(st.success());
    refused(&fit_to(&fifo), &[s(&fifo), "FIFO", "not a regular file"]);
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    // ... also as a shard file, a plot and a demo table, before any work
    let shard = [
        "boot",
        s(&data),
        F,
        "--cluster",
        "firm",
        "--reps",
        "99",
        "--shard",
        "1/2",
        "--out",
    ];
    refused(&fegpu(&[&shard[..], &[s(&fifo)]].concat()), &[s(&fifo), "FIFO"]);
    let fifo_svg = d.join("pipe.svg");
    Command::new("mkfifo").arg(&fifo_svg).status().unwrap();
    refused(
        &fegpu(&["boot", s(&data), F, "--cluster", "firm", "--plot", s(&fifo_svg)]),
        &[s(&fifo_svg), "FIFO"],
    );
    let fifo_csv = d.join("pipe.csv");
    Command::new("mkfifo").arg(&fifo_csv).status().unwrap();
    refused(
        &fegpu(&["demo", "--rows", "100", "--out", s(&fifo_csv)]),
        &[s(&fifo_csv), "FIFO"],
    );
    assert!(std::fs::symlink_metadata(&fifo_csv).unwrap().file_type().is_fifo());

    // a device: refused, and left a device
    let null = Path::new("/dev/null");
    if std::fs::symlink_metadata(null)
        .map(|m| m.file_type().is_char_device())
        .unwrap_or(false)
    {
        refused(&fit_to(null), &["/dev/null", "a device"]);
        assert!(std::fs::symlink_metadata(null).unwrap().file_type().is_char_device());
    }

    // a directory
    let dir = d.join("adir");
    std::fs::create_dir(&dir).unwrap();
    refused(&fit_to(&dir), &[s(&dir), "a directory"]);
    assert!(dir.is_dir());

    // a symbolic link (relative) to a regular file: the link stays, its target gets the table
    let target = d.join("real.txt");
    std::fs::write(&target, "old").unwrap();
    let link = d.join("link.txt");
    std::os::unix::fs::symlink("real.txt", &link).unwrap();
    assert!(fit_to(&link).status.success());
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("real.txt"));
    assert_eq!(std::fs::read(&target).unwrap(), table);
    // a chain of links, and a dangling link (its target is created)
    let link2 = d.join("link2.txt");
    std::os::unix::fs::symlink(&link, &link2).unwrap();
    std::fs::write(&target, "old").unwrap();
    assert!(fit_to(&link2).status.success());
    assert!(std::fs::symlink_metadata(&link2).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(&target).unwrap(), table);
    let dangling = d.join("dangling.txt");
    std::os::unix::fs::symlink("new.txt", &dangling).unwrap();
    assert!(fit_to(&dangling).status.success());
    assert!(std::fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(d.join("new.txt")).unwrap(), table);
    // a link to a FIFO is refused, naming the user's path and the link's target
    let link_fifo = d.join("link_fifo.txt");
    std::os::unix::fs::symlink(&fifo, &link_fifo).unwrap();
    refused(&fit_to(&link_fifo), &[s(&link_fifo), "FIFO"]);
    assert!(std::fs::symlink_metadata(&link_fifo).unwrap().file_type().is_symlink());
    // a demo table through a link
    let csv_target = d.join("t.csv");
    let csv_link = d.join("l.csv");
    std::os::unix::fs::symlink(&csv_target, &csv_link).unwrap();
    ok(&["demo", "--rows", "100", "--out", s(&csv_link)]);
    assert!(std::fs::symlink_metadata(&csv_link).unwrap().file_type().is_symlink());
    assert!(std::fs::read_to_string(&csv_target).unwrap().starts_with("firm,"));
    // a write that fails names the user's path, not the temporary file (`refused` checks)
    let missing = d.join("no-such-dir").join("out.txt");
    refused(&fit_to(&missing), &[s(&missing)]);
    // no temporary files are left beside the outputs
    for e in std::fs::read_dir(&d).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        assert!(!name.contains(".tmp-"), "left behind: {name}");
    }
}

#[test]
fn replicate_with_too_few_replicates_is_refused_and_writes_nothing() {
    let d = tmpdir("replicate-reps");
    let out = d.join("rep");
    let o = fegpu(&[
        "replicate",
        "--scale",
        "small",
        "--reps",
        "18",
        "--out",
        s(&out),
        "--backend",
        "cpu",
    ]);
    refused(&o, &["--reps 18", "at least 19"]);
    assert!(!out.exists(), "nothing written");
    assert!(
        std::fs::read_dir(&d).unwrap().next().is_none(),
        "no lock or staging left"
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// Permutation replicates whose groups cannot be estimated (a regressor with no variation in a
/// permuted group) are left out of the p-values, and the output says so loudly with the counts.
#[test]
fn bdiff_says_how_many_replicates_failed() {
    let dir = tmpdir("bdiff-failed");
    let data = dir.join("d.csv");
    // x is 1 on three rows only: a permutation that puts all three in one group leaves x
    // constant in the other, so that replicate cannot be estimated
    let mut text = String::from("y,x,z,g\n");
    for i in 0..40u32 {
        let x = u8::from([0, 25, 30].contains(&i));
        let noise = |k: u32| ((i * 7919 + k * 104_729) % 1000) as f64 / 1000.0 - 0.5;
        text.push_str(&format!("{},{x},{},{}\n", noise(1), noise(2), u8::from(i < 20)));
    }
    std::fs::write(&data, text).unwrap();
    let out = fegpu(&["bdiff", s(&data), "y ~ x + z", "--group", "g", "--reps", "99"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let used_failed = stdout
        .split("replicates used (")
        .nth(1)
        .and_then(|r| r.split(" failed)").next())
        .and_then(|f| f.parse::<usize>().ok())
        .expect("the replicate line");
    assert!(used_failed > 0, "{stdout}");
    assert!(
        stdout.contains(&format!(
            "WARNING: {used_failed} of 99 replicates could not be estimated"
        )),
        "{stdout}"
    );
}
