//! The demeaning solvers against an exact projection (dense weighted least squares on every
//! level dummy, pivoted Cholesky), on problems chosen to be hard: a chain of overlapping bands
//! (the published "difficult" design in miniature), three and four effects, skewed group sizes,
//! unequal and zero weights. Every rung of the preconditioner ladder, the automatic choice and
//! alternating projections must reach the exact projection; the stopping rule must bound the
//! true normal-equation residual where the per-sweep change is tiny but the residual is not.

use fegpu::demean::precond::{Kind, Preconditioner};
use fegpu::demean::{Absorb, CpuDemeaner, DemeanOptions, Demeaner, Solver};
use fegpu::fe::FixedEffect;
use fegpu::linalg::{cholesky_drop, cholesky_inverse, Mat};
use fegpu::rng::Stream;

fn fe(name: &str, ids: Vec<u32>) -> FixedEffect {
    FixedEffect::from_codes(name, &ids)
}

/// A miniature of the difficult design: individuals in bands of firms along a chain, years.
fn chain(n: usize, seed: u64, extra: bool) -> (Vec<FixedEffect>, Vec<Vec<f64>>, Vec<f64>) {
    let mut s = Stream::new(seed, 1);
    let n_ind = (n / 8) as u32;
    let n_firm = (n / 40) as u32;
    let mut ind = Vec::new();
    let mut firm = Vec::new();
    let mut year = Vec::new();
    let mut region = Vec::new();
    for _ in 0..n {
        let i = s.below(n_ind);
        ind.push(i);
        // a narrow band: the graph is a long chain
        firm.push((i * n_firm / n_ind + s.below(3)).min(n_firm - 1));
        year.push(s.below(7));
        region.push(s.below(5));
    }
    let mut fes = vec![fe("ind", ind), fe("firm", firm), fe("year", year)];
    if extra {
        fes.push(fe("region", region));
    }
    let cols: Vec<Vec<f64>> = (0..3)
        .map(|c| {
            (0..n)
                .map(|i| {
                    s.normal()
                        + (fes[0].ids[i] as f64 * 0.37 + c as f64).sin() * 3.0
                        + (fes[1].ids[i] as f64).cos() * 2.0
                        + fes[2].ids[i] as f64 * 0.1
                })
                .collect()
        })
        .collect();
    let w: Vec<f64> = (0..n)
        .map(|_| {
            if s.uniform() < 0.1 {
                0.0
            } else {
                0.2 + 2.0 * s.uniform()
            }
        })
        .collect();
    (fes, cols, w)
}

/// Exact weighted projection residual of `v` on all level dummies.
fn exact(fes: &[&FixedEffect], w: Option<&[f64]>, v: &[f64]) -> Vec<f64> {
    let offsets: Vec<usize> = fes
        .iter()
        .scan(0, |o, f| {
            let r = *o;
            *o += f.levels;
            Some(r)
        })
        .collect();
    let p: usize = fes.iter().map(|f| f.levels).sum();
    let mut a = Mat::zeros(p);
    let mut b = vec![0.0; p];
    for i in 0..v.len() {
        let wi = w.map_or(1.0, |w| w[i]);
        let idx: Vec<usize> = fes.iter().zip(&offsets).map(|(f, o)| o + f.ids[i] as usize).collect();
        for &j in &idx {
            b[j] += wi * v[i];
            for &k in &idx {
                a.set(j, k, a.get(j, k) + wi);
            }
        }
    }
    let ch = cholesky_drop(&a, 1e-11);
    let inv = cholesky_inverse(&ch.l);
    let rhs: Vec<f64> = ch.kept.iter().map(|&j| b[j]).collect();
    let sol = inv.mul_vec(&rhs);
    let mut alpha = vec![0.0; p];
    for (&j, &x) in ch.kept.iter().zip(&sol) {
        alpha[j] = x;
    }
    (0..v.len())
        .map(|i| {
            v[i] - fes
                .iter()
                .zip(&offsets)
                .map(|(f, o)| alpha[o + f.ids[i] as usize])
                .sum::<f64>()
        })
        .collect()
}

/// ‖D'W x‖ / ‖D'W v‖ — the normal-equation residual of a demeaned `x` of `v`.
fn normal_residual(fes: &[&FixedEffect], w: Option<&[f64]>, v: &[f64], x: &[f64]) -> f64 {
    let norm = |u: &[f64]| -> f64 {
        let mut total = 0.0;
        for f in fes {
            let mut s = vec![0.0; f.levels];
            for i in 0..u.len() {
                s[f.ids[i] as usize] += w.map_or(1.0, |w| w[i]) * u[i];
            }
            total += s.iter().map(|a| a * a).sum::<f64>();
        }
        total.sqrt()
    };
    norm(x) / norm(v)
}

fn max_gap(a: &[f64], b: &[f64], w: Option<&[f64]>) -> f64 {
    let scale = (b.iter().map(|v| v * v).sum::<f64>() / b.len() as f64)
        .sqrt()
        .max(1e-300);
    a.iter()
        .zip(b)
        .enumerate()
        .filter(|(i, _)| w.is_none_or(|w| w[*i] > 0.0))
        .map(|(_, (x, y))| (x - y).abs() / scale)
        .fold(0.0, f64::max)
}

fn opts(solver: Solver, tol: f64) -> DemeanOptions {
    DemeanOptions {
        tol,
        max_iter: 20_000,
        solver,
    }
}

#[test]
fn every_solver_reaches_the_exact_projection_on_a_chain() {
    for (seed, extra) in [(1, false), (2, true)] {
        let (fes, cols, w) = chain(2_400, seed, extra);
        let refs: Vec<&FixedEffect> = fes.iter().collect();
        for weighted in [false, true] {
            let wv = weighted.then_some(w.as_slice());
            let truth: Vec<Vec<f64>> = cols.iter().map(|c| exact(&refs, wv, c)).collect();
            for solver in [
                Solver::Auto,
                Solver::CgJacobi,
                Solver::CgBlock2,
                Solver::CgSchwarz,
                Solver::Ap,
            ] {
                let problem = Absorb::new(refs.clone(), wv);
                let tol = if solver == Solver::Ap { 1e-14 } else { 1e-11 };
                let d = CpuDemeaner.demean(&problem, cols.clone(), &opts(solver, tol)).unwrap();
                assert!(d.not_converged.is_empty(), "{solver:?} did not converge");
                for (j, (got, want)) in d.columns.iter().zip(&truth).enumerate() {
                    let gap = max_gap(got, want, wv);
                    assert!(
                        gap < 1e-8,
                        "{solver:?}, seed {seed}, weighted {weighted}, column {j}: {gap:e}"
                    );
                }
                if solver != Solver::Ap {
                    assert_eq!(d.method.solver, "cg");
                    assert!(d.residual <= tol, "{solver:?}: reported residual {}", d.residual);
                }
            }
        }
    }
}

#[test]
fn the_ladder_names_what_ran() {
    let (fes, cols, _) = chain(2_400, 3, false);
    let refs: Vec<&FixedEffect> = fes.iter().collect();
    let problem = Absorb::new(refs.clone(), None);
    let jac = CpuDemeaner
        .demean(&problem, cols.clone(), &opts(Solver::CgJacobi, 1e-10))
        .unwrap();
    assert_eq!(jac.method.preconditioner.as_deref(), Some("jacobi"));
    let sch = CpuDemeaner
        .demean(&problem, cols.clone(), &opts(Solver::CgSchwarz, 1e-10))
        .unwrap();
    assert_eq!(sch.method.preconditioner.as_deref(), Some("schwarz"));
    // the strong preconditioner needs far fewer iterations on the chain than Jacobi
    assert!(
        sch.iterations * 3 < jac.iterations,
        "schwarz {} vs jacobi {} iterations",
        sch.iterations,
        jac.iterations
    );
    // auto climbs from Jacobi to Schwarz (three effects) when Jacobi does not finish quickly
    let auto = CpuDemeaner
        .demean(&problem, cols.clone(), &opts(Solver::Auto, 1e-10))
        .unwrap();
    assert_eq!(auto.method.preconditioner.as_deref(), Some("jacobi → schwarz"));
    // two effects: the block of both is the whole problem, solved in a handful of steps
    let two = Absorb::new(vec![&fes[0], &fes[1]], None);
    let b2 = CpuDemeaner
        .demean(&two, cols.clone(), &opts(Solver::CgBlock2, 1e-10))
        .unwrap();
    assert_eq!(b2.method.preconditioner.as_deref(), Some("block2"));
    assert!(
        b2.iterations <= 5,
        "block2 on two effects took {} iterations",
        b2.iterations
    );
}

#[test]
fn each_preconditioner_is_symmetric_and_positive() {
    let (fes, _, w) = chain(1_200, 4, true);
    let refs: Vec<&FixedEffect> = fes.iter().collect();
    let p: usize = refs.iter().map(|f| f.levels).sum();
    let mut s = Stream::new(9, 9);
    let u: Vec<f64> = (0..p).map(|_| s.normal()).collect();
    let v: Vec<f64> = (0..p).map(|_| s.normal()).collect();
    let ws = [Some(w.as_slice())];
    for m in [
        Preconditioner::jacobi(&refs, &ws),
        Preconditioner::factored(Kind::Block2, &refs, ws[0], &ws).unwrap(),
        Preconditioner::factored(Kind::Schwarz, &refs, ws[0], &ws).unwrap(),
    ] {
        let (mut mu, mut mv) = (vec![0.0; p], vec![0.0; p]);
        m.apply(0, &u, &mut mu).unwrap();
        m.apply(0, &v, &mut mv).unwrap();
        let a: f64 = v.iter().zip(&mu).map(|(x, y)| x * y).sum();
        let b: f64 = u.iter().zip(&mv).map(|(x, y)| x * y).sum();
        assert!(
            (a - b).abs() <= 1e-9 * a.abs().max(b.abs()),
            "{:?}: v'Mu {a} vs u'Mv {b}",
            m.kind()
        );
        let uu: f64 = u.iter().zip(&mu).map(|(x, y)| x * y).sum();
        assert!(uu > 0.0, "{:?}: u'Mu = {uu}", m.kind());
    }
}

/// On a long chain, alternating projections stop when a sweep changes little — long before the
/// projection is exact — while CG's rule bounds the true normal-equation residual.
#[test]
fn the_stopping_rule_bounds_the_true_residual() {
    let n = 2_400;
    let mut s = Stream::new(5, 5);
    // a very long chain: individual i works at firms i/4 and i/4 + 1
    let ind: Vec<u32> = (0..n as u32).map(|i| i / 3).collect();
    let firm: Vec<u32> = (0..n as u32).map(|i| i / 12 + (i % 3 == 0) as u32).collect();
    let fes = [fe("ind", ind), fe("firm", firm)];
    let refs: Vec<&FixedEffect> = fes.iter().collect();
    let v: Vec<f64> = (0..n)
        .map(|i| (i as f64 / n as f64 * 6.0).sin() * 5.0 + s.normal())
        .collect();
    let problem = Absorb::new(refs.clone(), None);
    let tol = 1e-8;
    let ap = CpuDemeaner
        .demean(&problem, vec![v.clone()], &opts(Solver::Ap, tol))
        .unwrap();
    let ap_res = normal_residual(&refs, None, &v, &ap.columns[0]);
    let cg = CpuDemeaner
        .demean(&problem, vec![v.clone()], &opts(Solver::CgJacobi, tol))
        .unwrap();
    let cg_res = normal_residual(&refs, None, &v, &cg.columns[0]);
    assert!(cg.not_converged.is_empty());
    assert!(cg_res <= 2.0 * tol, "CG's true residual {cg_res:e}");
    assert!(
        (cg.residual - cg_res).abs() <= 1e-3 * cg_res + 1e-15,
        "reported {} vs {cg_res}",
        cg.residual
    );
    assert!(
        ap_res > 10.0 * tol,
        "alternating projections were expected to stop early here (residual {ap_res:e})"
    );
    let truth = exact(&refs, None, &v);
    assert!(max_gap(&cg.columns[0], &truth, None) < 1e-6);
}

#[test]
fn a_column_that_cannot_converge_is_reported() {
    let (fes, cols, _) = chain(2_400, 6, false);
    let refs: Vec<&FixedEffect> = fes.iter().collect();
    let problem = Absorb::new(refs, None);
    let o = DemeanOptions {
        tol: 1e-12,
        max_iter: 3,
        solver: Solver::CgJacobi,
    };
    let d = CpuDemeaner.demean(&problem, cols.clone(), &o).unwrap();
    assert_eq!(d.not_converged, vec![0, 1, 2]);
    assert!(d.residual > 1e-12 && d.residual.is_finite());
    // the reported residual is the true one of the returned columns, relative to the centred
    // column (the solver removes the mean first: a level is not part of the problem)
    let refs: Vec<&FixedEffect> = fes.iter().collect();
    let centred: Vec<Vec<f64>> = cols
        .iter()
        .map(|c| {
            let m = c.iter().sum::<f64>() / c.len() as f64;
            c.iter().map(|v| v - m).collect()
        })
        .collect();
    let truth = centred
        .iter()
        .zip(&d.columns)
        .map(|(v, x)| normal_residual(&refs, None, v, x))
        .fold(0.0, f64::max);
    assert!(
        (d.residual - truth).abs() <= 1e-6 * truth,
        "reported {} vs true {truth}",
        d.residual
    );
}

/// `D'WD u` for the effects `fes` (coefficients concatenated in order).
fn normal_apply(fes: &[&FixedEffect], w: &[f64], u: &[f64]) -> Vec<f64> {
    let offsets: Vec<usize> = fes
        .iter()
        .scan(0, |o, f| {
            let r = *o;
            *o += f.levels;
            Some(r)
        })
        .collect();
    let mut out = vec![0.0; u.len()];
    for i in 0..w.len() {
        let t: f64 = fes
            .iter()
            .zip(&offsets)
            .map(|(f, o)| u[o + f.ids[i] as usize])
            .sum::<f64>()
            * w[i];
        for (f, o) in fes.iter().zip(&offsets) {
            out[o + f.ids[i] as usize] += t;
        }
    }
    out
}

/// What each rung computes: Jacobi divides by the level weights; the two-effect block, with a
/// smaller effect under the exact-factor threshold, inverts D'WD on its range (A M⁻¹ A = A).
#[test]
fn jacobi_divides_by_level_weights_and_block2_inverts_two_effects() {
    let (fes, _, w) = chain(1_200, 7, false);
    let two: Vec<&FixedEffect> = vec![&fes[0], &fes[1]];
    let p: usize = two.iter().map(|f| f.levels).sum();
    let mut s = Stream::new(3, 3);
    let u: Vec<f64> = (0..p).map(|_| s.normal()).collect();
    let ws = [Some(w.as_slice())];
    let jac = Preconditioner::jacobi(&two, &ws);
    let mut z = vec![0.0; p];
    jac.apply(0, &u, &mut z).unwrap();
    let mut k = 0;
    for f in &two {
        let mut sums = vec![0.0; f.levels];
        for (i, &g) in f.ids.iter().enumerate() {
            sums[g as usize] += w[i];
        }
        for g in 0..f.levels {
            let want = if sums[g] > 0.0 { u[k] / sums[g] } else { 0.0 };
            assert!((z[k] - want).abs() <= 1e-12 * want.abs().max(1e-12), "jacobi at {k}");
            k += 1;
        }
    }
    let block = Preconditioner::factored(Kind::Block2, &two, ws[0], &ws).unwrap();
    let au = normal_apply(&two, &w, &u);
    let mut m_au = vec![0.0; p];
    block.apply(0, &au, &mut m_au).unwrap();
    let a_m_au = normal_apply(&two, &w, &m_au);
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let gap: Vec<f64> = a_m_au.iter().zip(&au).map(|(a, b)| a - b).collect();
    assert!(
        norm(&gap) <= 1e-8 * norm(&au),
        "A M⁻¹ A u − A u: {:e}",
        norm(&gap) / norm(&au)
    );
}
