//! Sharding (`--shard I/K` and `fegpu merge`), through the real binary: three shards run one
//! after another here, merged in a scrambled order, give the single run's output byte for byte
//! in both `--format`s (text, json; the others are refused alike) and the same `--plot` — for bdiff (drawn and enumerated assignments,
//! with and without bsample) and for the wild (drawn, Webb with an inverted-test interval, full
//! enumeration) and pairs bootstraps. The only exception is bdiff's wall-clock `seconds`, which
//! differs between any two runs and is masked before comparing. Merge refuses shards of
//! different runs, a missing shard and a duplicate, naming the problem in words, and a damaged
//! file (arrays of the wrong length, replicates of the wrong width), naming the file and the
//! field; randomly edited shard files never make it panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{fegpu, ok, s};

fn tmpdir(name: &str) -> common::Scratch {
    common::tmpdir("shard", name)
}

/// The demo panel (`fegpu demo`, 1,500 rows, 4 FE dimensions) with a 0/1 group `g` by firm.
fn demo_with_group(dir: &Path) -> PathBuf {
    let raw = dir.join("demo_raw.csv");
    ok(&["demo", "--out", s(&raw), "--rows", "1500"]);
    with_group(&raw, &dir.join("demo.csv"), 0)
}

/// The wild-bootstrap fixture (400 rows, 10 clusters `c`) with `g` = c mod 2, constant within
/// clusters: C(10, 5) = 252 assignments and 2^10 sign vectors, small enough to enumerate.
fn fixture_with_group(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wild/wild.csv");
    with_group(&src, &dir.join("wild_g.csv"), 5)
}

/// Copy the CSV at `src` with a column `g` = (integer in column `col`) mod 2.
fn with_group(src: &Path, dst: &Path, col: usize) -> PathBuf {
    let text = std::fs::read_to_string(src).unwrap();
    let mut out = String::new();
    for (k, line) in text.lines().enumerate() {
        let g = if k == 0 {
            "g".to_string()
        } else {
            let v: u64 = line.split(',').nth(col).unwrap().parse().unwrap();
            (v % 2).to_string()
        };
        out.push_str(&format!("{line},{g}\n"));
    }
    std::fs::write(dst, out).unwrap();
    dst.to_path_buf()
}

/// Output with bdiff's wall-clock seconds (JSON `"seconds": x`, text `; x s on`) masked.
fn mask_seconds(out: &[u8]) -> String {
    String::from_utf8(out.to_vec())
        .unwrap()
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("\"seconds\": ") {
                "  \"seconds\": S,".to_string()
            } else if let (Some(a), Some(b)) = (l.rfind("; "), l.rfind(" s on ")) {
                format!("{}; S{}", &l[..a], &l[b..])
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Run `args` whole and as three shards; merge the shards (given out of order) and compare
/// with the whole run in every format and the SVG plot. Returns the shard files.
fn assert_merge_equals_single_run(dir: &Path, name: &str, args: &[&str]) -> Vec<PathBuf> {
    let shards: Vec<PathBuf> = (1..=3).map(|i| dir.join(format!("{name}_{i}.json"))).collect();
    for (i, f) in shards.iter().enumerate() {
        let spec = format!("{}/3", i + 1);
        let mut a = args.to_vec();
        a.extend(["--shard", &spec, "--out", s(f)]);
        assert!(ok(&a).is_empty(), "a shard prints nothing on stdout");
    }
    let scrambled = [s(&shards[2]), s(&shards[0]), s(&shards[1])];
    for format in ["text", "json"] {
        let mut a = args.to_vec();
        a.extend(["--format", format]);
        let single = ok(&a);
        let mut m = vec!["merge"];
        m.extend(scrambled);
        m.extend(["--format", format]);
        let merged = ok(&m);
        assert_eq!(
            mask_seconds(&merged),
            mask_seconds(&single),
            "{name}: merged {format} output differs from the single run"
        );
    }
    // the table formats of `fit` are refused alike by the single run, a shard and merge
    for format in ["markdown", "latex", "csv"] {
        let mut a = args.to_vec();
        a.extend(["--format", format]);
        let mut sh = a.clone();
        let spare = dir.join(format!("{name}_{format}.json"));
        sh.extend(["--shard", "1/3", "--out", s(&spare)]);
        let mut m = vec!["merge"];
        m.extend(scrambled);
        m.extend(["--format", format]);
        for run in [a, sh, m] {
            let o = fegpu(&run);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                !o.status.success() && o.stdout.is_empty(),
                "{run:?} accepted --format {format}"
            );
            assert!(
                err.contains(&format!("--format {format} is not supported")),
                "{run:?}: {err}"
            );
        }
        assert!(!spare.exists(), "a refused shard wrote its file");
    }
    let (p1, p2) = (
        dir.join(format!("{name}_single.svg")),
        dir.join(format!("{name}_merged.svg")),
    );
    let mut a = args.to_vec();
    a.extend(["--plot", s(&p1)]);
    ok(&a);
    let mut m = vec!["merge"];
    m.extend(scrambled);
    m.extend(["--plot", s(&p2)]);
    ok(&m);
    assert_eq!(
        std::fs::read(&p1).unwrap(),
        std::fs::read(&p2).unwrap(),
        "{name}: plots differ"
    );
    shards
}

#[test]
fn merged_bdiff_shards_equal_the_single_run() {
    let d = tmpdir("bdiff");
    let demo = demo_with_group(&d);
    let f = "qua ~ digtech + age | firm + year";
    let shards = assert_merge_equals_single_run(
        &d,
        "obs",
        &["bdiff", s(&demo), f, "--group", "g", "--reps", "40", "--seed", "5"],
    );
    // the shards hold 13, 13 and 14 of the 40 replicates, in order
    let spans: Vec<(u64, u64)> = shards
        .iter()
        .map(|p| {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
            (v["first"].as_u64().unwrap(), v["end"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(spans, [(0, 13), (13, 26), (26, 40)]);
    let w = fixture_with_group(&d);
    let enumerated = [
        "bdiff",
        s(&w),
        "y ~ x1 + x2 | f",
        "--group",
        "g",
        "--unit",
        "c",
        "--reps",
        "500",
    ];
    assert_merge_equals_single_run(&d, "enum", &enumerated);
    let v: serde_json::Value = serde_json::from_slice(&ok(&[&enumerated[..], &["--format", "json"]].concat())).unwrap();
    assert_eq!(
        v["bdiff"]["enumerated"], true,
        "the enumeration list is what is sharded"
    );
    let bsample = [
        "bdiff",
        s(&w),
        "y ~ x1 + x2 | f",
        "--group",
        "g",
        "--unit",
        "c",
        "--bsample",
        "--reps",
        "30",
    ];
    assert_merge_equals_single_run(&d, "bsample", &bsample);
}

#[test]
fn merged_wild_and_pairs_shards_equal_the_single_run() {
    let d = tmpdir("boot");
    let demo = demo_with_group(&d);
    let f = "qua ~ digtech + age | year + dest";
    let wild = ["boot", s(&demo), f, "--cluster", "firm", "--reps", "99", "--seed", "3"];
    assert_merge_equals_single_run(&d, "wild", &wild);
    let webb = [
        "boot",
        s(&demo),
        f,
        "--cluster",
        "firm",
        "--reps",
        "99",
        "--weights-type",
        "webb",
        "--null",
        "0.01",
        "--level",
        "0.9",
    ];
    assert_merge_equals_single_run(&d, "webb", &webb);
    let pairs = [
        "boot",
        s(&demo),
        f,
        "--cluster",
        "firm",
        "--kind",
        "pairs",
        "--reps",
        "30",
        "--param",
        "age",
    ];
    assert_merge_equals_single_run(&d, "pairs", &pairs);
    let w = fixture_with_group(&d);
    let full = ["boot", s(&w), "y ~ x1 + x2 | f", "--cluster", "c", "--reps", "2000"];
    assert_merge_equals_single_run(&d, "full", &full);
    let v: serde_json::Value = serde_json::from_slice(&ok(&[&full[..], &["--format", "json"]].concat())).unwrap();
    assert_eq!(
        v["wild"]["full_enumeration"], true,
        "the sign vectors are what is sharded"
    );
    assert_eq!(v["wild"]["reps"], 1024);
}

fn assert_refused(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a refusal; stderr: {err}");
    assert!(!err.contains("panicked"), "panic instead of an error: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr should mention {n:?}: {err}");
    }
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn merge_refuses_other_runs_missing_and_duplicate_shards() {
    let d = tmpdir("refuse");
    let w = fixture_with_group(&d);
    let shard = |seed: &str, spec: &str, out: &Path| {
        ok(&[
            "bdiff",
            s(&w),
            "y ~ x1 + x2 | f",
            "--group",
            "g",
            "--reps",
            "30",
            "--seed",
            seed,
            "--shard",
            spec,
            "--out",
            s(out),
        ]);
    };
    let f: Vec<PathBuf> = (1..=3).map(|i| d.join(format!("s{i}.json"))).collect();
    for (i, p) in f.iter().enumerate() {
        shard("1", &format!("{}/3", i + 1), p);
    }
    let other = d.join("seed2.json");
    shard("2", "2/3", &other);
    ok(&["merge", s(&f[0]), s(&f[1]), s(&f[2])]);
    assert_refused(
        &fegpu(&["merge", s(&f[0]), s(&other), s(&f[2])]),
        &["not shards of the same run", "seed 1 vs 2", "seed2.json"],
    );
    assert_refused(
        &fegpu(&["merge", s(&f[0]), s(&f[2])]),
        &["shard 2/3 of the run is missing"],
    );
    assert_refused(
        &fegpu(&["merge", s(&f[0]), s(&f[1]), s(&f[1]), s(&f[2])]),
        &["shard 2/3 is given twice"],
    );
    let four = d.join("s1of4.json");
    shard("1", "1/4", &four);
    assert_refused(
        &fegpu(&["merge", s(&f[0]), s(&f[1]), s(&four)]),
        &["shard 1/3 vs shard 1/4"],
    );
    // a different estimation sample under the same options
    let changed = d.join("changed.csv");
    let text = std::fs::read_to_string(&w).unwrap().replacen(",0\n", ",1\n", 1);
    std::fs::write(&changed, text).unwrap();
    let moved = d.join("moved.json");
    ok(&[
        "bdiff",
        s(&changed),
        "y ~ x1 + x2 | f",
        "--group",
        "g",
        "--reps",
        "30",
        "--seed",
        "1",
        "--shard",
        "3/3",
        "--out",
        s(&moved),
    ]);
    assert_refused(
        &fegpu(&["merge", s(&f[0]), s(&f[1]), s(&moved)]),
        &["estimation samples differ"],
    );
    let junk = d.join("junk.json");
    std::fs::write(&junk, "{\"models\": []}").unwrap();
    assert_refused(&fegpu(&["merge", s(&junk)]), &["junk.json", "not a fegpu shard file"]);
}

#[test]
fn shard_arguments_are_checked() {
    let d = tmpdir("args");
    let w = fixture_with_group(&d);
    let out = d.join("x.json");
    let run = |spec: &str| {
        fegpu(&[
            "boot",
            s(&w),
            "y ~ x1 | f",
            "--cluster",
            "c",
            "--shard",
            spec,
            "--out",
            s(&out),
        ])
    };
    for (bad, why) in [
        ("0/3", "between 1 and 3"),
        ("4/3", "between 1 and 3"),
        ("1/0", "at least 1"),
        ("2", "expected I/K"),
    ] {
        let o = run(bad);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(why), "--shard {bad}: {err}");
    }
    assert!(!out.exists(), "no shard file from a refused shard");
    assert_refused(
        &fegpu(&["boot", s(&w), "y ~ x1 | f", "--cluster", "c", "--shard", "1/2"]),
        &["--shard needs --out"],
    );
    assert_refused(
        &fegpu(&[
            "boot",
            s(&w),
            "y ~ x1 | f",
            "--cluster",
            "c",
            "--shard",
            "1/2",
            "--out",
            s(&out),
            "--plot",
            "a.svg",
        ]),
        &["give it to `fegpu merge`"],
    );
    // one shard of one is the whole run
    ok(&[
        "boot",
        s(&w),
        "y ~ x1 | f",
        "--cluster",
        "c",
        "--reps",
        "99",
        "--shard",
        "1/1",
        "--out",
        s(&out),
    ]);
    assert_eq!(
        ok(&["merge", s(&out)]),
        ok(&["boot", s(&w), "y ~ x1 | f", "--cluster", "c", "--reps", "99"])
    );
}

/// Through the library: the merged replicate statistics are the single run's, bit for bit and
/// in replicate order (the outputs above are counts and quantiles, which would not see a
/// reordering), for each command.
#[test]
fn merged_replicates_are_the_single_runs_in_replicate_order() {
    use fegpu::backend::Backend;
    use fegpu::gpu::Precision;
    use fegpu::inference::replicates::WildWeights;
    use fegpu::inference::shard::Shard;
    use fegpu::report::Format;
    use fegpu::resampling::{compute, shard_file, BdiffSpec, BootKind, BootSpec, Output, Request, Spec};
    let d = tmpdir("lib");
    let w = fixture_with_group(&d);
    let boot = |kind| {
        Spec::Boot(BootSpec {
            formula: "y ~ x1 + x2 | f".into(),
            cluster: "c".into(),
            kind,
            param: None,
            null: 0.0,
            reps: 50,
            weights_type: WildWeights::Webb,
            seed: 9,
            level: 0.9,
            weights: None,
            ssc: "reghdfe".into(),
            family: Default::default(),
        })
    };
    let bdiff = Spec::Bdiff(BdiffSpec {
        formula: "y ~ x1 + x2 | f".into(),
        group: "g".into(),
        unit: "obs".into(),
        bsample: true,
        weights: None,
        reps: 50,
        seed: 9,
        family: Default::default(),
    });
    for (name, spec) in [
        ("bdiff", bdiff),
        ("wild", boot(BootKind::Wild)),
        ("pairs", boot(BootKind::Pairs)),
    ] {
        let req = Request {
            data: s(&w).into(),
            spec,
            backend: Backend::Cpu,
            precision: Precision::Df64,
            output: Output::Result {
                format: Format::Text,
                plot: None,
            },
        };
        let single = compute(&req, None).unwrap();
        let files: Vec<PathBuf> = (1..=4)
            .map(|i| {
                let shard = Shard::new(i, 4).unwrap();
                let path = d.join(format!("lib_{name}_{i}.json"));
                let part = compute(&req, Some(shard)).unwrap();
                shard_file::write(&path, &shard_file::ShardFile::new(&req, shard, &part)).unwrap();
                path
            })
            .rev()
            .collect();
        let merged = shard_file::merge(&files).unwrap();
        assert!(
            merged.draws == single.draws,
            "{name}: merged replicates differ from the single run's"
        );
    }
}

/// `fegpu replicate --shard I/K` then `--merge`: the study's tables (every format) and
/// permutation plots equal the single run's byte for byte, and results.json does once the
/// wall-clock fields (`seconds`, `total_seconds`, `timing`) and the output paths are set aside.
#[test]
fn merged_replicate_shards_equal_the_single_run() {
    let d = tmpdir("replicate");
    let raw = d.join("raw");
    ok(&["simulate", "--out", s(&raw), "--scale", "small"]);
    let run_reps = |reps: &str, out: &Path, extra: &[&str]| {
        let mut a = vec![
            "replicate",
            "--raw",
            s(&raw),
            "--reps",
            reps,
            "--backend",
            "cpu",
            "--out",
            s(out),
        ];
        a.extend(extra);
        fegpu(&a)
    };
    let run = |out: &Path, extra: &[&str]| run_reps("40", out, extra);
    let single = d.join("single");
    assert!(run(&single, &[]).status.success());
    let shards: Vec<PathBuf> = (1..=3)
        .map(|i| {
            let out = d.join(format!("s{i}"));
            let o = run(&out, &["--shard", &format!("{i}/3")]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            assert!(
                o.stdout.is_empty() && !out.join("table1.md").exists(),
                "a shard writes no tables"
            );
            out.join(format!("shard_{i}.json"))
        })
        .collect();
    let merged = d.join("merged");
    let o = run(&merged, &["--merge", s(&shards[1]), s(&shards[2]), s(&shards[0])]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut compared = 0;
    for entry in std::fs::read_dir(&single).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let table = name.starts_with("table") && !name.starts_with("timing");
        if table || name.starts_with("permutation_") {
            let (a, b) = (
                std::fs::read(single.join(&name)).unwrap(),
                std::fs::read(merged.join(&name)).unwrap(),
            );
            assert!(a == b, "{name} differs between the single run and the merged shards");
            compared += 1;
        }
    }
    assert_eq!(compared, 13 * 3 + 6, "13 tables in 3 formats and 6 permutation plots");
    let results = |dir: &Path| {
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
        strip_clock(&mut v);
        v
    };
    assert_eq!(results(&merged), results(&single), "results.json differs beyond timing");
    // the merged run reads the shards' replicates (it does not recompute them): replicates
    // pushed far out in shard 1 change the p-values
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&shards[0]).unwrap()).unwrap();
    for t in v["part"]["tests"].as_array_mut().unwrap() {
        for d in t["differences"].as_array_mut().unwrap() {
            for x in d.as_array_mut().unwrap() {
                *x = serde_json::json!(1e9);
            }
        }
    }
    let tampered = d.join("tampered_1.json");
    std::fs::write(&tampered, serde_json::to_string(&v).unwrap()).unwrap();
    let t_out = d.join("tampered");
    let o = run(&t_out, &["--merge", s(&tampered), s(&shards[1]), s(&shards[2])]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_ne!(
        std::fs::read(t_out.join("table5.md")).unwrap(),
        std::fs::read(single.join("table5.md")).unwrap()
    );
    // merge checks that the shards are this run's
    let other = run_reps(
        "41",
        &d.join("other"),
        &["--merge", s(&shards[0]), s(&shards[1]), s(&shards[2])],
    );
    assert_refused(&other, &["another run", "reps 40 vs 41"]);
    let missing = run(&d.join("missing"), &["--merge", s(&shards[0]), s(&shards[2])]);
    assert_refused(&missing, &["shard 2/3 of the run is missing"]);
}

/// Remove wall-clock fields and output paths from a results.json value.
fn strip_clock(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for k in ["seconds", "total_seconds", "timing", "raw"] {
                m.remove(k);
            }
            m.values_mut().for_each(strip_clock);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_clock),
        _ => {}
    }
}

/// The K = 3 shard files of one `args` run, written under `dir` as `{name}_{i}.json`.
fn shards_of(dir: &Path, name: &str, args: &[&str]) -> Vec<PathBuf> {
    (1..=3)
        .map(|i| {
            let f = dir.join(format!("{name}_{i}.json"));
            let spec = format!("{i}/3");
            let mut a = args.to_vec();
            a.extend(["--shard", &spec, "--out", s(&f)]);
            ok(&a);
            f
        })
        .collect()
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// `v` written to `dir/name` (returned).
fn write_json(dir: &Path, name: &str, v: &serde_json::Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string(v).unwrap()).unwrap();
    p
}

/// Issue 25: arrays of the wrong length made merge panic (index out of bounds, exit 101), and a
/// pairs shard whose replicates had the wrong width was merged (a different standard error).
/// Each is refused, naming the file and the field.
#[test]
fn merge_refuses_arrays_of_the_wrong_length_naming_the_field() {
    let d = tmpdir("lengths");
    let w = fixture_with_group(&d);
    let bdiff = shards_of(
        &d,
        "bd",
        &["bdiff", s(&w), "y ~ x1 + x2 | f", "--group", "g", "--reps", "30"],
    );
    let pairs = shards_of(
        &d,
        "pa",
        &[
            "boot",
            s(&w),
            "y ~ x1 + x2 | f",
            "--cluster",
            "c",
            "--kind",
            "pairs",
            "--reps",
            "30",
        ],
    );
    let wild = shards_of(
        &d,
        "wi",
        &["boot", s(&w), "y ~ x1 + x2 | f", "--cluster", "c", "--reps", "99"],
    );
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&[PathBuf], &str, Edit, &[&str]); 7] = [
        (
            &bdiff,
            "short_diff",
            |v| {
                v["part"]["differences"][0].as_array_mut().unwrap().pop();
            },
            &["part.differences[0]", "holds 1 values", "2 coefficients"],
        ),
        (
            &bdiff,
            "short_est",
            |v| {
                v["part"]["observed"]["estimate_group1"].as_array_mut().unwrap().pop();
            },
            &["part.observed.estimate_group1", "holds 1 values"],
        ),
        (
            &bdiff,
            "long_names",
            |v| {
                v["part"]["observed"]["names"].as_array_mut().unwrap().push("x3".into());
            },
            &["part.observed.estimate_group1", "3 coefficients"],
        ),
        (
            &pairs,
            "narrow",
            |v| {
                v["part"]["estimates"][2].as_array_mut().unwrap().pop();
            },
            &["part.estimates[2]", "holds 1 values", "2 coefficients"],
        ),
        (
            &pairs,
            "wide",
            |v| {
                v["part"]["estimates"][2].as_array_mut().unwrap().push(1.0.into());
            },
            &["part.estimates[2]", "holds 3 values"],
        ),
        (
            &pairs,
            "extra_rep",
            |v| {
                let e = v["part"]["estimates"].as_array_mut().unwrap();
                e.push(e[0].clone());
            },
            &["part.estimates", "holds 11 replicates", "span", "has 10"],
        ),
        (
            &wild,
            "wild_draw",
            |v| {
                v["part"]["draws"][4].as_array_mut().unwrap().pop();
            },
            &["part.draws[4]", "length 5"],
        ),
    ];
    for (files, name, edit, needles) in cases {
        let mut v = read_json(&files[1]);
        edit(&mut v);
        let bad = write_json(&d, &format!("{name}.json"), &v);
        let mut needles = needles.to_vec();
        needles.extend([bad.file_name().unwrap().to_str().unwrap(), "damaged shard file"]);
        assert_refused(&fegpu(&["merge", s(&files[0]), s(&bad), s(&files[2])]), &needles);
    }
}

/// Issue 25: merge's refusals read as words, not debug text (`Some(2)`, `bsample false vs
/// null`, `backends cpu and cpu`).
#[test]
fn merge_refusals_read_as_words() {
    let d = tmpdir("words");
    let w = fixture_with_group(&d);
    let run = |extra: &[&str], spec: &str, out: &Path| {
        let mut a = vec![
            "bdiff",
            s(&w),
            "y ~ x1 + x2 | f",
            "--group",
            "g",
            "--unit",
            "c",
            "--reps",
            "30",
        ];
        a.extend(extra);
        a.extend(["--shard", spec, "--out", s(out)]);
        ok(&a);
    };
    let (plain, bs) = (d.join("plain_1.json"), d.join("bsample_2.json"));
    run(&[], "1/2", &plain);
    run(&["--bsample"], "2/2", &bs);
    let o = fegpu(&["merge", s(&plain), s(&bs)]);
    assert_refused(&o, &["bsample_2.json was run with --bsample, ", "plain_1.json without"]);
    let boot = d.join("boot_2.json");
    ok(&[
        "boot",
        s(&w),
        "y ~ x1 + x2 | f",
        "--cluster",
        "c",
        "--reps",
        "99",
        "--shard",
        "2/2",
        "--out",
        s(&boot),
    ]);
    assert_refused(
        &fegpu(&["merge", s(&plain), s(&boot)]),
        &[
            "plain_1.json is a run of `fegpu bdiff`, ",
            "boot_2.json of `fegpu boot`",
        ],
    );
    // the same backend, another observed fit
    let mut v = read_json(&bs);
    v["spec"]["bsample"] = false.into();
    v["part"]["observed"]["bsample"] = false.into();
    v["part"]["observed"]["estimate_group1"][0] = 0.5.into();
    let other = write_json(&d, "other_2.json", &v);
    assert_refused(
        &fegpu(&["merge", s(&plain), s(&other)]),
        &["observed fits differ", "both ran on the cpu"],
    );
    let mut v = read_json(&plain);
    v["format_version"] = 2.into();
    let newer = write_json(&d, "newer.json", &v);
    assert_refused(
        &fegpu(&["merge", s(&newer)]),
        &["newer.json: shard-file format 2; this fegpu reads shard-file format 1"],
    );
    for o in [
        fegpu(&["merge", s(&plain), s(&bs)]),
        fegpu(&["merge", s(&plain), s(&boot)]),
        fegpu(&["merge", s(&plain), s(&other)]),
        fegpu(&["merge", s(&newer)]),
    ] {
        let err = String::from_utf8_lossy(&o.stderr);
        for debug in ["Some(", "None", " vs null", "null vs", "cpu and cpu", "\""] {
            assert!(!err.contains(debug), "debug text {debug:?} in: {err}");
        }
    }
}

/// A small xorshift generator for the random edits.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Every node of `v`, as JSON pointers.
fn pointers(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => m.iter().for_each(|(k, x)| pointers(x, format!("{at}/{k}"), out)),
        serde_json::Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| pointers(x, format!("{at}/{i}"), out)),
        _ => {}
    }
    out.push(at);
}

/// One random edit of `v`: truncate or extend an array, change a number, delete a key, or
/// change a value's type. Returns what was done.
fn random_edit(v: &mut serde_json::Value, rng: &mut Rng) -> String {
    use serde_json::{json, Value};
    let mut all = Vec::new();
    pointers(v, String::new(), &mut all);
    let at = all[rng.below(all.len())].clone();
    let node = v.pointer_mut(&at).unwrap();
    let op = rng.below(5);
    let numbers = [
        json!(0),
        json!(-1),
        json!(1),
        json!(2),
        json!(-5),
        json!(1e300),
        json!(-0.5),
        json!(0.5),
        json!(1e20),
        json!(u64::MAX),
        json!(3),
        json!(7),
        json!(f64::MIN_POSITIVE),
        json!("NaN"),
        json!("inf"),
    ];
    match (op, &mut *node) {
        (0, Value::Array(a)) if !a.is_empty() => {
            let keep = rng.below(a.len());
            a.truncate(keep);
            format!("truncate {at} to {keep}")
        }
        (1, Value::Array(a)) => {
            let extra = if a.is_empty() {
                json!(1.0)
            } else {
                a[rng.below(a.len())].clone()
            };
            a.push(extra);
            format!("extend {at}")
        }
        (2, Value::Object(m)) if !m.is_empty() => {
            let k = m.keys().nth(rng.below(m.len())).unwrap().clone();
            m.remove(&k);
            format!("delete {at}/{k}")
        }
        (3, Value::Number(_)) | (0..=2, _) => {
            let n = numbers[rng.below(numbers.len())].clone();
            let what = format!("set {at} to {n}");
            *node = n;
            what
        }
        _ => {
            let t = [
                json!(null),
                json!(true),
                json!("x"),
                json!([]),
                json!({}),
                json!([1, 2]),
            ][rng.below(6)]
            .clone();
            let what = format!("set {at} to {t}");
            *node = t;
            what
        }
    }
}

/// Issue 25: random edits of valid shard files (arrays truncated or extended, numbers changed,
/// keys deleted, types changed) never make merge panic: it merges or refuses with an error.
/// Through the library for many edits, and through the binary (never exit 101) for some.
#[test]
fn randomly_edited_shard_files_never_panic_merge() {
    use fegpu::report::Format;
    let d = tmpdir("fuzz");
    let w = fixture_with_group(&d);
    let f = "y ~ x1 + x2 | f";
    let runs = [
        shards_of(
            &d,
            "bdiff",
            &[
                "bdiff",
                s(&w),
                f,
                "--group",
                "g",
                "--unit",
                "c",
                "--bsample",
                "--reps",
                "30",
            ],
        ),
        shards_of(
            &d,
            "wild",
            &["boot", s(&w), f, "--cluster", "c", "--reps", "99", "--level", "0.9"],
        ),
        shards_of(
            &d,
            "pairs",
            &["boot", s(&w), f, "--cluster", "c", "--kind", "pairs", "--reps", "30"],
        ),
    ];
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let (mut merged, mut refused) = (0, 0);
    for round in 0..600 {
        let files = &runs[round % runs.len()];
        let which = rng.below(3);
        let mut v = read_json(&files[which]);
        let edits: Vec<String> = (0..1 + rng.below(3)).map(|_| random_edit(&mut v, &mut rng)).collect();
        let mut paths = files.clone();
        paths[which] = write_json(&d, "edited.json", &v);
        let format = if round % 2 == 0 { Format::Text } else { Format::Json };
        let got = std::panic::catch_unwind(|| fegpu::resampling::merge(&paths, format, None));
        match got {
            Ok(Ok(_)) => merged += 1,
            Ok(Err(e)) => {
                let m = e.to_string();
                assert!(!m.contains("Some(") && !m.is_empty(), "{edits:?}: {m}");
                refused += 1;
            }
            Err(_) => panic!("merge panicked after {edits:?} in shard {}", which + 1),
        }
        if round % 30 == 0 {
            let mut a = vec!["merge"];
            a.extend(paths.iter().map(|p| s(p)));
            let o = fegpu(&a);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_ne!(o.status.code(), Some(101), "{edits:?}: {err}");
            assert!(!err.contains("panicked"), "{edits:?}: {err}");
        }
    }
    assert!(merged > 20 && refused > 100, "{merged} merged, {refused} refused");
}
