//! Small dense f64 linear algebra for the K×K parts of estimation (K = number of regressors):
//! Cholesky with collinearity detection (ours: it drops columns in the order given, as fixest and
//! reghdfe do, which a pivoted Cholesky would not), inverses, and — through `faer` — the symmetric
//! eigen-decomposition (the Cameron–Gelbach–Miller eigenvalue fix) and a column-pivoted QR
//! least-squares solver that checks the estimator against explicit dummy-variable regressions. Sums over the N
//! observations (cross products, residuals, per-cluster scores) are in [`passes`]; rectangular
//! matrices for the IV statistics in [`rows`].

pub mod passes;
pub mod rows;

/// Row-major square matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Mat {
    pub n: usize,
    pub a: Vec<f64>,
}

impl Mat {
    pub fn zeros(n: usize) -> Self {
        Mat { n, a: vec![0.0; n * n] }
    }
    #[inline]
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.a[i * self.n + j]
    }
    #[inline]
    pub fn set(&mut self, i: usize, j: usize, v: f64) {
        self.a[i * self.n + j] = v;
    }
    /// Principal sub-matrix on `idx`.
    pub fn select(&self, idx: &[usize]) -> Mat {
        let mut m = Mat::zeros(idx.len());
        for (r, &i) in idx.iter().enumerate() {
            for (c, &j) in idx.iter().enumerate() {
                m.set(r, c, self.get(i, j));
            }
        }
        m
    }
    pub fn mul(&self, b: &Mat) -> Mat {
        let n = self.n;
        let mut c = Mat::zeros(n);
        for i in 0..n {
            for k in 0..n {
                let aik = self.get(i, k);
                if aik == 0.0 {
                    continue;
                }
                for j in 0..n {
                    c.a[i * n + j] += aik * b.a[k * n + j];
                }
            }
        }
        c
    }
    pub fn scale(mut self, s: f64) -> Mat {
        self.a.iter_mut().for_each(|v| *v *= s);
        self
    }
    pub fn add(mut self, b: &Mat, s: f64) -> Mat {
        self.a.iter_mut().zip(&b.a).for_each(|(v, w)| *v += s * w);
        self
    }
    pub fn mul_vec(&self, v: &[f64]) -> Vec<f64> {
        (0..self.n)
            .map(|i| (0..self.n).map(|j| self.get(i, j) * v[j]).sum())
            .collect()
    }
}

/// Outcome of [`cholesky_drop`]: the columns kept and the Cholesky factor of their sub-matrix.
pub struct CholeskyDrop {
    pub kept: Vec<usize>,
    pub dropped: Vec<usize>,
    /// Lower-triangular factor of `A[kept, kept]`, row-major.
    pub l: Mat,
}

/// Cholesky factorisation of a symmetric PSD matrix that drops, in order, every column whose
/// pivot falls below `tol` relative to its diagonal, i.e. whose R² on the columns kept before it
/// exceeds `1 − tol` (the rule of fixest's `collin.tol`, default 1e-10).
pub fn cholesky_drop(a: &Mat, tol: f64) -> CholeskyDrop {
    let n = a.n;
    let mut kept: Vec<usize> = Vec::new();
    let mut dropped = Vec::new();
    // rows of L for kept columns, in kept order
    let mut l: Vec<Vec<f64>> = Vec::new();
    for j in 0..n {
        let ajj = a.get(j, j);
        if !(ajj > 0.0) || !ajj.is_finite() {
            dropped.push(j);
            continue;
        }
        let mut row = vec![0.0; kept.len() + 1];
        for (r, &i) in kept.iter().enumerate() {
            let mut s = a.get(j, i);
            for m in 0..r {
                s -= row[m] * l[r][m];
            }
            row[r] = s / l[r][r];
        }
        let d = ajj - row[..kept.len()].iter().map(|v| v * v).sum::<f64>();
        if d <= tol * ajj {
            dropped.push(j);
            continue;
        }
        row[kept.len()] = d.sqrt();
        kept.push(j);
        l.push(row);
    }
    let k = kept.len();
    let mut lm = Mat::zeros(k);
    for (i, row) in l.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            lm.set(i, j, v);
        }
    }
    CholeskyDrop { kept, dropped, l: lm }
}

/// Inverse of `L Lᵀ` from its lower Cholesky factor.
pub fn cholesky_inverse(l: &Mat) -> Mat {
    let n = l.n;
    // inv(L) by forward substitution
    let mut li = Mat::zeros(n);
    for j in 0..n {
        li.set(j, j, 1.0 / l.get(j, j));
        for i in j + 1..n {
            let mut s = 0.0;
            for m in j..i {
                s -= l.get(i, m) * li.get(m, j);
            }
            li.set(i, j, s / l.get(i, i));
        }
    }
    // inv(A) = inv(L)ᵀ inv(L)
    let mut out = Mat::zeros(n);
    for i in 0..n {
        for j in 0..=i {
            let mut s = 0.0;
            for m in i.max(j)..n {
                s += li.get(m, i) * li.get(m, j);
            }
            out.set(i, j, s);
            out.set(j, i, s);
        }
    }
    out
}

/// A square [`Mat`] as a `faer` matrix.
fn to_faer(a: &Mat) -> faer::Mat<f64> {
    faer::Mat::from_fn(a.n, a.n, |i, j| a.get(i, j))
}

/// Eigen-decomposition of a symmetric matrix (faer's self-adjoint solver, lower triangle
/// read): (values ascending, vectors as columns of a row-major matrix). NaN if it fails.
pub fn symmetric_eigen(a: &Mat) -> (Vec<f64>, Mat) {
    let n = a.n;
    let Ok(e) = to_faer(a).self_adjoint_eigen(faer::Side::Lower) else {
        return (
            vec![f64::NAN; n],
            Mat {
                n,
                a: vec![f64::NAN; n * n],
            },
        );
    };
    let (vals, u) = (e.S().column_vector(), e.U());
    let mut v = Mat::zeros(n);
    for i in 0..n {
        for j in 0..n {
            v.set(i, j, *u.get(i, j));
        }
    }
    ((0..n).map(|i| *vals.get(i)).collect(), v)
}

/// Least squares on a column-major `n × k` design by faer's column-pivoted QR; `None` when
/// the design is rank deficient (|R_jj| ≤ 1e-11 max |R_jj|). The independent dense reference
/// of the tests (explicit dummy-variable OLS): none of our own algebra is involved.
pub fn lstsq_qr(x_cols: &[Vec<f64>], y: &[f64]) -> Option<Vec<f64>> {
    use faer::linalg::solvers::SolveLstsq;
    let (n, k) = (y.len(), x_cols.len());
    if k == 0 || n < k {
        return None;
    }
    let qr = faer::Mat::from_fn(n, k, |i, j| x_cols[j][i]).col_piv_qr();
    let r = qr.R();
    let diag: Vec<f64> = (0..k).map(|j| r.get(j, j).abs()).collect();
    let max = diag.iter().copied().fold(0.0, f64::max);
    if diag.iter().any(|d| !(*d > 1e-11 * max)) {
        return None;
    }
    let beta = qr.solve_lstsq(faer::Mat::from_fn(n, 1, |i, _| y[i]));
    Some((0..k).map(|j| *beta.get(j, 0)).collect())
}

/// The index of (p, q) in a packed lower triangle stored row by row (either order).
#[inline]
pub fn packed(p: usize, q: usize) -> usize {
    if p >= q {
        p * (p + 1) / 2 + q
    } else {
        q * (q + 1) / 2 + p
    }
}

/// The c×c block of the packed Gram `g` (m×m) after partialling out its last m − c
/// variables, in packed lower-triangle order.
pub fn partial_out_last(g: &[f64], c: usize, m: usize) -> Vec<f64> {
    let at = |p: usize, q: usize| {
        if p >= q {
            g[p * (p + 1) / 2 + q]
        } else {
            g[q * (q + 1) / 2 + p]
        }
    };
    let mut out: Vec<f64> = (0..c)
        .flat_map(|p| (0..=p).map(move |q| (p, q)))
        .map(|(p, q)| at(p, q))
        .collect();
    let t = m - c;
    if t == 0 {
        return out;
    }
    let mut dd = Mat::zeros(t);
    for a in 0..t {
        for b in 0..t {
            dd.set(a, b, at(c + a, c + b));
        }
    }
    let ch = cholesky_drop(&dd, 1e-10);
    if ch.kept.is_empty() {
        return out;
    }
    let inv = cholesky_inverse(&ch.l);
    // B = dd⁻¹ (kept) × cross products of the kept dummies with each column
    let cross: Vec<Vec<f64>> = (0..c)
        .map(|p| ch.kept.iter().map(|&a| at(c + a, p)).collect())
        .collect();
    let solved: Vec<Vec<f64>> = cross.iter().map(|x| inv.mul_vec(x)).collect();
    let mut k = 0;
    for p in 0..c {
        for q in 0..=p {
            out[k] -= cross[p].iter().zip(&solved[q]).map(|(a, b)| a * b).sum::<f64>();
            k += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_drops_collinear_column_and_inverts() {
        // columns: x0, x1, x2 = x0 + x1
        let x = [[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 2.0, 0.0], [1.5, 1.0, 5.0, 4.0]];
        let mut a = Mat::zeros(3);
        for i in 0..3 {
            for j in 0..3 {
                a.set(i, j, (0..4).map(|r| x[i][r] * x[j][r]).sum());
            }
        }
        let c = cholesky_drop(&a, 1e-10);
        assert_eq!(c.kept, vec![0, 1]);
        assert_eq!(c.dropped, vec![2]);
        let inv = cholesky_inverse(&c.l);
        let prod = a.select(&c.kept).mul(&inv);
        for i in 0..2 {
            for j in 0..2 {
                assert!((prod.get(i, j) - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn jacobi_recovers_eigenvalues() {
        let mut a = Mat::zeros(2);
        a.a = vec![2.0, 1.0, 1.0, 2.0];
        let (mut vals, _) = symmetric_eigen(&a);
        vals.sort_by(f64::total_cmp);
        assert!((vals[0] - 1.0).abs() < 1e-12 && (vals[1] - 3.0).abs() < 1e-12);
    }
}

/// Σ_j x_j y_j' of the rows of `x` and `y` (row-major, `m` entries per row), as a packed lower
/// triangle (row by row, [`partial_out_last`]'s layout), by faer's matrix product X'Y (blocked
/// SIMD kernels chosen at run time; sequential, so the sums do not depend on threads).
pub fn cross_packed(x: &[f64], y: &[f64], m: usize) -> Vec<f64> {
    let n = x.len() / m.max(1);
    let mut square = vec![0.0; m * m];
    if n > 0 {
        faer::linalg::matmul::matmul(
            faer::MatMut::from_column_major_slice_mut(&mut square, m, m),
            faer::Accum::Replace,
            faer::MatRef::from_column_major_slice(x, m, n),
            faer::MatRef::from_row_major_slice(y, n, m),
            1.0,
            faer::Par::Seq,
        );
    }
    (0..m)
        .flat_map(|a| (0..=a).map(move |b| (a, b)))
        .map(|(a, b)| square[a + b * m])
        .collect()
}

/// Σ u_i v_i with four independent partial sums, which the compiler turns into SIMD (a single
/// running sum cannot be reordered).
pub fn dot(u: &[f64], v: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (cu, cv) = (u.chunks_exact(4), v.chunks_exact(4));
    let tail: f64 = cu.remainder().iter().zip(cv.remainder()).map(|(p, q)| p * q).sum();
    for (a, b) in cu.zip(cv) {
        for j in 0..4 {
            acc[j] += a[j] * b[j];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}
