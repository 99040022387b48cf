//! Three-way clustering against an independent computation: OLS by the normal equations and the
//! Cameron–Gelbach–Miller meat summed over all seven non-empty subsets of the three cluster
//! dimensions (intersections as clusters, signs alternating), scaled by
//! (N−1)/(N−K) · G/(G−1) with G the smallest dimension's count (fegpu's documented convention).

use std::collections::HashMap;
use std::process::Command;

use fegpu::rng::Stream;

fn solve3(a: [[f64; 3]; 3], b: [f64; 3]) -> [f64; 3] {
    let mut m = [[0.0; 4]; 3];
    for i in 0..3 {
        m[i][..3].copy_from_slice(&a[i]);
        m[i][3] = b[i];
    }
    for c in 0..3 {
        let p = (c..3).max_by(|&x, &y| m[x][c].abs().total_cmp(&m[y][c].abs())).unwrap();
        m.swap(c, p);
        for r in 0..3 {
            if r != c {
                let f = m[r][c] / m[c][c];
                for k in c..4 {
                    m[r][k] -= f * m[c][k];
                }
            }
        }
    }
    [m[0][3] / m[0][0], m[1][3] / m[1][1], m[2][3] / m[2][2]]
}

fn inverse3(a: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut inv = [[0.0; 3]; 3];
    for j in 0..3 {
        let mut e = [0.0; 3];
        e[j] = 1.0;
        let col = solve3(a, e);
        for i in 0..3 {
            inv[i][j] = col[i];
        }
    }
    inv
}

#[test]
fn three_way_clustered_standard_errors_match_an_independent_cgm_computation() {
    let n = 600;
    let mut s = Stream::new(5, 1);
    let mut rows = Vec::new();
    for _ in 0..n {
        let (a, b, c) = (s.below(12), s.below(9), s.below(15));
        let x1 = s.normal() + 0.3 * a as f64;
        let x2 = s.normal() - 0.2 * b as f64;
        let y = 1.0 + 0.5 * x1 - 0.25 * x2 + 0.4 * (a as f64 - 6.0) * 0.1 + 0.3 * (c % 3) as f64 + s.normal();
        rows.push((y, x1, x2, a, b, c));
    }
    let dir = std::env::temp_dir().join(format!("fegpu-multiway-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("d.csv");
    let mut csv = String::from("y,x1,x2,ca,cb,cc\n");
    for r in &rows {
        csv.push_str(&format!("{:e},{:e},{:e},{},{},{}\n", r.0, r.1, r.2, r.3, r.4, r.5));
    }
    std::fs::write(&file, csv).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fegpu"))
        .args([
            "fit",
            file.to_str().unwrap(),
            "y ~ x1 + x2",
            "--vcov",
            "cluster:ca+cb+cc",
            "--format",
            "json",
        ])
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = &v["models"][0];
    assert_eq!(m["eigen_fixed"], false, "this design needs no eigenvalue fix");

    // independent computation
    let x = |r: &(f64, f64, f64, u32, u32, u32)| [1.0, r.1, r.2];
    let mut xtx = [[0.0; 3]; 3];
    let mut xty = [0.0; 3];
    for r in &rows {
        let xi = x(r);
        for p in 0..3 {
            xty[p] += xi[p] * r.0;
            for q in 0..3 {
                xtx[p][q] += xi[p] * xi[q];
            }
        }
    }
    let beta = solve3(xtx, xty);
    let bread = inverse3(xtx);
    let mut meat = [[0.0; 3]; 3];
    for subset in 1u32..8 {
        let sign = if subset.count_ones() % 2 == 1 { 1.0 } else { -1.0 };
        let mut sums: HashMap<(u32, u32, u32), [f64; 3]> = HashMap::new();
        for r in &rows {
            let key = (
                if subset & 1 != 0 { r.3 } else { u32::MAX },
                if subset & 2 != 0 { r.4 } else { u32::MAX },
                if subset & 4 != 0 { r.5 } else { u32::MAX },
            );
            let xi = x(r);
            let e = r.0 - (0..3).map(|p| beta[p] * xi[p]).sum::<f64>();
            let sc = sums.entry(key).or_insert([0.0; 3]);
            for p in 0..3 {
                sc[p] += xi[p] * e;
            }
        }
        for sc in sums.values() {
            for p in 0..3 {
                for q in 0..3 {
                    meat[p][q] += sign * sc[p] * sc[q];
                }
            }
        }
    }
    let g_min = [12.0f64, 9.0, 15.0].into_iter().fold(f64::INFINITY, f64::min);
    let q = (n as f64 - 1.0) / (n as f64 - 3.0) * g_min / (g_min - 1.0);
    let coefs = m["coefficients"].as_array().unwrap();
    for p in 0..3 {
        let mut vpp = 0.0;
        for a in 0..3 {
            for b in 0..3 {
                vpp += bread[p][a] * meat[a][b] * bread[b][p];
            }
        }
        let se = (q * vpp).sqrt();
        let got = coefs[p]["std_error"].as_f64().unwrap();
        assert!((got - se).abs() <= 1e-9 * se, "coefficient {p}: fegpu {got}, CGM {se}");
        assert!((coefs[p]["estimate"].as_f64().unwrap() - beta[p]).abs() <= 1e-10 * beta[p].abs().max(1.0));
    }
    assert_eq!(m["df_t"].as_f64().unwrap(), g_min - 1.0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The eigenvalue fix (Cameron, Gelbach & Miller 2011): a multiway variance with a negative
/// eigenvalue has it set to zero and keeps its eigenvectors. Built from a known indefinite
/// meat in a rotated basis, so the fixed matrix is known exactly.
#[test]
fn a_multiway_variance_with_a_negative_eigenvalue_is_fixed_exactly() {
    use fegpu::data::prepare::ClusterVar;
    use fegpu::estimate::vcov::clustered;
    use fegpu::linalg::Mat;
    // orthonormal basis: a rotation by θ in the (0,1) plane
    let (c, s) = (0.6f64, 0.8f64);
    let q = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]];
    let lambda = [2.0, -0.5, 1.0];
    let build = |l: [f64; 3]| {
        let mut m = Mat::zeros(3);
        for a in 0..3 {
            for b in 0..3 {
                m.set(a, b, (0..3).map(|k| q[a][k] * l[k] * q[b][k]).sum());
            }
        }
        m
    };
    let mut bread = Mat::zeros(3);
    (0..3).for_each(|k| bread.set(k, k, 1.0));
    let cl = |levels: usize| ClusterVar {
        name: format!("c{levels}"),
        ids: (0..100).map(|i| (i % levels) as u32).collect(),
        levels,
    };
    let clusters = [cl(10), cl(20)];
    let n = 100;
    let df = 97.0;
    let v = clustered(&bread, &build(lambda), n, df, &clusters);
    assert!(v.eigen_fixed);
    let scale = (n as f64 - 1.0) / df * 10.0 / 9.0;
    let want = build([2.0 * scale, 0.0, 1.0 * scale]);
    for a in 0..3 {
        for b in 0..3 {
            assert!(
                (v.matrix.get(a, b) - want.get(a, b)).abs() <= 1e-12,
                "({a},{b}): {} vs {}",
                v.matrix.get(a, b),
                want.get(a, b)
            );
        }
    }
    // positive definite: untouched
    let ok = clustered(&bread, &build([2.0, 0.5, 1.0]), n, df, &clusters);
    assert!(!ok.eigen_fixed);
}
