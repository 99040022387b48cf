//! Small rectangular matrices stored as rows (`Vec<Vec<f64>>`), for the IV statistics
//! (Kleibergen–Paap's Kronecker products and square roots, first-stage algebra): products,
//! transposes, Kronecker products, the inverse of an upper Cholesky factor, the singular value
//! decomposition and an eigen decomposition sorted by decreasing eigenvalue. The square [`Mat`] is the type everywhere else.

use super::{cholesky_drop, symmetric_eigen, Mat};

/// A rectangular matrix as its rows.
pub type M = Vec<Vec<f64>>;

/// `a b`.
pub fn mat_mul(a: &M, b: &M) -> M {
    let (n, k, p) = (a.len(), b.len(), b.first().map_or(0, |r| r.len()));
    (0..n)
        .map(|i| (0..p).map(|j| (0..k).map(|t| a[i][t] * b[t][j]).sum()).collect())
        .collect()
}
/// `a'`.
pub fn transpose(a: &M) -> M {
    let (n, p) = (a.len(), a.first().map_or(0, |r| r.len()));
    (0..p).map(|j| (0..n).map(|i| a[i][j]).collect()).collect()
}
/// The Kronecker product `a ⊗ b`.
pub fn kron(a: &M, b: &M) -> M {
    let (ar, ac, br, bc) = (a.len(), a[0].len(), b.len(), b[0].len());
    let mut out = vec![vec![0.0; ac * bc]; ar * br];
    for i in 0..ar {
        for j in 0..ac {
            for k in 0..br {
                for l in 0..bc {
                    out[i * br + k][j * bc + l] = a[i][j] * b[k][l];
                }
            }
        }
    }
    out
}
/// A square [`Mat`] as rows.
pub fn to_mat(m: &Mat) -> M {
    (0..m.n).map(|i| (0..m.n).map(|j| m.get(i, j)).collect()).collect()
}
/// Square rows as a [`Mat`].
pub fn from_rows(a: &M) -> Mat {
    let mut m = Mat::zeros(a.len());
    for (i, r) in a.iter().enumerate() {
        for (j, v) in r.iter().enumerate() {
            m.set(i, j, *v);
        }
    }
    m
}
/// Inverse of the upper Cholesky factor R (R'R = A): returns R⁻¹.
pub fn inv_upper_chol(a: &M) -> M {
    let c = cholesky_drop(&from_rows(a), 0.0);
    // lower L with LL' = A, R = L'; R⁻¹ = (L⁻¹)'
    let n = c.l.n;
    let mut li = vec![vec![0.0; n]; n];
    for j in 0..n {
        li[j][j] = 1.0 / c.l.get(j, j);
        for i in j + 1..n {
            let s: f64 = (j..i).map(|t| c.l.get(i, t) * li[t][j]).sum();
            li[i][j] = -s / c.l.get(i, i);
        }
    }
    transpose(&li)
}
/// Singular value decomposition of an `l × m` matrix (faer): singular values in decreasing order
/// (min(l, m) of them), the full `U` (l × l) and `V` (m × m) with the singular vectors as
/// columns. NaN if it fails.
pub fn svd(a: &M) -> (Vec<f64>, M, M) {
    let (l, m) = (a.len(), a.first().map_or(0, |r| r.len()));
    let Ok(d) = faer::Mat::from_fn(l, m, |i, j| a[i][j]).svd() else {
        let nan = |r: usize| vec![vec![f64::NAN; r]; r];
        return (vec![f64::NAN; l.min(m)], nan(l), nan(m));
    };
    let s = d.S().column_vector();
    let mut order: Vec<usize> = (0..l.min(m)).collect();
    order.sort_by(|&i, &j| s.get(j).total_cmp(s.get(i)));
    // singular vectors in the order of their values; U's columns past min(l, m) span the rest
    let cols = |f: faer::MatRef<'_, f64>, r: usize| -> M {
        let idx: Vec<usize> = order.iter().copied().chain(order.len()..r).collect();
        (0..r).map(|i| idx.iter().map(|&j| *f.get(i, j)).collect()).collect()
    };
    (
        order.iter().map(|&i| *s.get(i)).collect(),
        cols(d.U(), l),
        cols(d.V(), m),
    )
}
/// Eigen-decomposition sorted by decreasing eigenvalue: (values, vectors as columns).
pub fn eigen_desc(a: &M) -> (Vec<f64>, M) {
    let (vals, vecs) = symmetric_eigen(&from_rows(a));
    let mut idx: Vec<usize> = (0..vals.len()).collect();
    idx.sort_by(|&i, &j| vals[j].total_cmp(&vals[i]));
    let n = vals.len();
    (
        idx.iter().map(|&i| vals[i]).collect(),
        (0..n).map(|r| idx.iter().map(|&c| vecs.get(r, c)).collect()).collect(),
    )
}
