//! Property tests (hand-rolled generators on the Philox stream, so every failure is
//! reproducible from its case number): arbitrary formulas never panic the parser — each one
//! parses or is an error; arbitrary CSV files never panic `fit` — each run estimates (exit 0)
//! or is an error with a message (exit 1), never a crash (exit 101 or a signal).

use std::process::Command;

use fegpu::rng::Stream;

/// A formula-like string: tokens from the grammar's alphabet glued at random, so most cases
/// are near misses of valid formulas.
fn formula(s: &mut Stream) -> String {
    const TOKENS: [&str; 30] = [
        "y", "x", "x1", "z", "fe", "firm", "~", "~", "+", "-", "|", "|", "^", ":", "*", "(", ")", "log(", "0", "1",
        " ", " ", "i(", ",", "=", "y2", "é", "\"", "[", "1e309",
    ];
    let len = 1 + s.below(14) as usize;
    (0..len)
        .map(|_| TOKENS[s.below(TOKENS.len() as u32) as usize])
        .collect()
}

/// A formula of the grammar's shape (`dep ~ terms [| effects] [| endog ~ inst]`) with random
/// parts, some of them invalid (`y ~ y`, empty parts, interactions).
fn structured(s: &mut Stream) -> String {
    const VARS: [&str; 7] = ["y", "x1", "x2", "z", "firm", "year", "0"];
    fn pick(s: &mut Stream, k: u32) -> String {
        let n = 1 + s.below(k);
        (0..n)
            .map(|_| VARS[s.below(7) as usize])
            .collect::<Vec<_>>()
            .join(" + ")
    }
    let mut f = format!("y ~ {}", pick(s, 3));
    if s.below(2) == 0 {
        f += &format!(" | {}", pick(s, 2).replace(" + x1", " + firm^year"));
    }
    if s.below(3) == 0 {
        let (endog, inst) = (pick(s, 1), pick(s, 2));
        f += &format!(" | {endog} ~ {inst}");
    }
    f
}

#[test]
fn the_formula_parser_never_panics() {
    let mut s = Stream::new(2026, 1);
    let mut parsed = 0;
    for case in 0..20_000 {
        let f = if case % 2 == 0 {
            formula(&mut s)
        } else {
            structured(&mut s)
        };
        match std::panic::catch_unwind(|| fegpu::formula::parse(&f)) {
            Ok(Ok(_)) => parsed += 1,
            Ok(Err(e)) => assert!(!e.to_string().is_empty(), "case {case}: empty error for {f:?}"),
            Err(_) => panic!("case {case}: the parser panicked on {f:?}"),
        }
    }
    assert!(
        parsed > 100,
        "the generator must also produce valid formulas ({parsed})"
    );
}

/// A small CSV with random shape, headers, cells (numbers, blanks, text, NA, huge values, quotes).
fn csv(s: &mut Stream) -> String {
    const HEADS: [&str; 8] = ["y", "x", "fe", "x", "w", "", "y z", "\"q\""];
    const CELLS: [&str; 14] = [
        "1", "2.5", "-3", "", "NA", ".", "abc", "1e308", "-1e308", "inf", "nan", "0", "\"7\"", "1,2",
    ];
    let cols = 1 + s.below(4) as usize;
    let rows = s.below(7) as usize;
    let mut out: Vec<String> = vec![(0..cols)
        .map(|_| HEADS[s.below(8) as usize])
        .collect::<Vec<_>>()
        .join(",")];
    for _ in 0..rows {
        out.push(
            (0..cols)
                .map(|_| CELLS[s.below(14) as usize])
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    out.join(if s.below(5) == 0 { "\r\n" } else { "\n" }) + if s.below(3) == 0 { "" } else { "\n" }
}

#[test]
fn fit_on_arbitrary_small_csv_files_estimates_or_errors() {
    let dir = std::env::temp_dir().join(format!("fegpu-prop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut s = Stream::new(7, 2);
    let (mut ok, mut err) = (0, 0);
    for case in 0..150 {
        let path = dir.join(format!("c{case}.csv"));
        std::fs::write(&path, csv(&mut s)).unwrap();
        let f = ["y ~ x", "y ~ x | fe", "y ~ x + w", "y ~ 1"][case % 4];
        let o = Command::new(env!("CARGO_BIN_EXE_fegpu"))
            .args(["fit", path.to_str().unwrap(), f, "--backend", "cpu"])
            .env("XDG_RUNTIME_DIR", "/tmp")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        match o.status.code() {
            Some(0) => ok += 1,
            Some(1) | Some(2) => {
                assert!(
                    stderr.contains("error"),
                    "case {case}: failure without a message: {stderr}"
                );
                err += 1
            }
            code => panic!(
                "case {case} ({f}): exit {code:?}, {stderr}\n{}",
                std::fs::read_to_string(&path).unwrap()
            ),
        }
        assert!(!stderr.contains("panicked"), "case {case}: {stderr}");
    }
    assert!(ok > 0 && err > 0, "{ok} estimated, {err} refused");
    let _ = std::fs::remove_dir_all(&dir);
}
