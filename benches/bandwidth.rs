//! Memory bandwidth of this machine and of the estimation passes (run with
//! `cargo bench --bench bandwidth`; `--rows N`, default 10,000,000).
//!
//! A STREAM-like copy and triad over f64 arrays (all threads, 5 repetitions, best kept) gives the
//! bandwidth a pass over the data can reach. Then the blocked passes of `linalg::passes` are
//! timed on 14 columns of N rows — the 10M-row study fit's outcome and 13 regressors — and their
//! effective GB/s (bytes they must read and write once) set against it: X̃'WX̃ with X̃'Wỹ
//! (reads 14 columns), the residuals (reads 14, writes 1), the clustered meat (reads 13, the
//! scores and the ids; 120 clusters in runs of 83,000 rows as in data sorted by cluster, and
//! scattered row by row), X'WX with regression weights (reads 13 and w) and the HC1 meat
//! (reads 13 and the scores).

use std::time::Instant;

use fegpu::linalg::passes::{cluster_sums, cross_products, cross_products_by, residuals};
use rayon::prelude::*;

fn best<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn column(n: usize, seed: u64) -> Vec<f64> {
    (0..n)
        .into_par_iter()
        .map(|i| {
            let s = (i as u64 ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .iter()
        .position(|a| a == "--rows")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let gb = |bytes: f64, s: f64| bytes / s / 1e9;
    let threads = rayon::current_num_threads();
    println!("rows {n}, {threads} threads");

    // STREAM-like reference: copy (read 1, write 1) and triad (read 2, write 1)
    let a = column(n, 1);
    let b = column(n, 2);
    let mut c = vec![0.0; n];
    let chunk = 1 << 16;
    let copy = best(5, || {
        c.par_chunks_mut(chunk)
            .zip(a.par_chunks(chunk))
            .for_each(|(o, x)| o.copy_from_slice(x));
    });
    let triad = best(5, || {
        c.par_chunks_mut(chunk)
            .zip(a.par_chunks(chunk).zip(b.par_chunks(chunk)))
            .for_each(|(o, (x, y))| {
                for ((o, x), y) in o.iter_mut().zip(x).zip(y) {
                    *o = x + 3.0 * y;
                }
            });
    });
    let stream = gb(16.0 * n as f64, copy).max(gb(24.0 * n as f64, triad));
    println!("stream copy  {:>7.2} GB/s", gb(16.0 * n as f64, copy));
    println!("stream triad {:>7.2} GB/s", gb(24.0 * n as f64, triad));

    let cols: Vec<Vec<f64>> = (0..14).map(|j| column(n, 10 + j)).collect();
    let refs: Vec<&[f64]> = cols.iter().map(|c| c.as_slice()).collect();
    let ids: Vec<u32> = (0..n).map(|i| ((i / 83_000) % 120) as u32).collect();
    let beta = vec![0.01; 13];
    let e = residuals(refs[0], &refs[1..], &beta);
    let row = |label: &str, bytes: f64, s: f64| {
        let g = gb(bytes, s);
        println!(
            "{label:<28} {s:>7.3} s {g:>7.2} GB/s  {:>4.0}% of stream",
            100.0 * g / stream
        );
    };
    let nf = n as f64;
    row(
        "cross products (14 cols)",
        14.0 * 8.0 * nf,
        best(3, || drop(cross_products(&refs, None))),
    );
    row(
        "residuals (13 regressors)",
        15.0 * 8.0 * nf,
        best(3, || drop(residuals(refs[0], &refs[1..], &beta))),
    );
    row(
        "cluster meat, ids in runs",
        (14.0 * 8.0 + 4.0) * nf,
        best(3, || drop(cluster_sums(&refs[1..], &e, &ids, 120))),
    );
    let scattered: Vec<u32> = (0..n as u64)
        .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as u32 % 120)
        .collect();
    row(
        "cluster meat, ids scattered",
        (14.0 * 8.0 + 4.0) * nf,
        best(3, || drop(cluster_sums(&refs[1..], &e, &scattered, 120))),
    );
    row(
        "weighted cross products (13+w)",
        14.0 * 8.0 * nf,
        best(3, || drop(cross_products(&refs[1..], Some(&e)))),
    );
    row(
        "HC1 meat (13)",
        14.0 * 8.0 * nf,
        best(3, || drop(cross_products_by(&refs[1..], &e, &e))),
    );
}
