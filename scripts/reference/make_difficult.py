#!/usr/bin/env python3
"""Exact reference OLS for a "difficult" three-way fixed-effect panel, by a sparse direct solve.

    python3 scripts/reference/make_difficult.py data.csv --out fixture.json

Reads a CSV with columns y, x1, x2, id_indiv, id_firm, id_year (integer ids, float variables)
and computes the OLS coefficients of

    y ~ x1 + x2 | id_indiv + id_firm + id_year

without any iteration: the dummy matrix D of the three fixed effects is built explicitly, one
reference level is dropped from the 2nd and 3rd effect (and one more level of id_firm for each
extra connected component of the id_indiv-id_firm graph), D'D is factored once (CHOLMOD when
scikit-sparse is installed, otherwise scipy.sparse.linalg.splu without pivoting, columns ordered
by fixed effect, largest first: see --ordering), y, x1 and x2 are partialled out
(v~ = v - D (D'D)^{-1} D'v, with a few steps of iterative refinement) and
beta = solve(X~'X~, X~'y~). Each partialled-out column is checked:
||D'v~|| / ||D'v|| (D with all levels) must be below 1e-12; it is printed and stored.

Standard errors are iid, sigma^2 = e'e / (N - K - rank(D)), where rank(D) is the number of dummy
columns kept. This is the reghdfe / fixest convention (the absorbed degrees of freedom are the
rank of D) provided the kept columns have full rank: the smallest pivot of the factorisation is
reported (`min_pivot_ratio`) and a warning is printed when it looks singular. No singleton is
dropped (pyfixest drops singletons by default; they do not change beta, only N and the dof).
With three fixed effects, pyfixest 0.60 and fixest 0.12 subtract only one reference per extra
fixed effect, not one per extra component: when components > 1 their iid SEs are slightly
smaller than these (exact-rank) ones; coefficients are unaffected.

The JSON written to --out holds n, levels, components, rank_fe, dof, coef, se_iid,
normal_residual (per column), max_normal_residual, min_pivot_ratio, solver and timings
(seconds_read, seconds_build, seconds_factor_solve, seconds_total). --y, --x and --fe change
the column names for other files.
"""
import argparse
import json
import sys
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import splu


def factorize(col):
    codes, uniques = pd.factorize(col, sort=True)
    if (codes < 0).any():
        raise SystemExit(f"missing values in fixed effect {col.name!r}")
    return codes.astype(np.int64), len(uniques)


def dummy_columns(codes, nlev, n_obs):
    """Which dummy columns to keep: all of FE 1, FE 2 minus one level per component of the
    FE1-FE2 graph, each later FE minus its first level. Returns (kept column index per level
    of each FE, -1 where dropped), number of kept columns, number of components."""
    c1, c2 = codes[0], codes[1]
    # bipartite graph: nodes 0..L1-1 are FE1 levels, L1..L1+L2-1 FE2 levels
    g = sp.coo_matrix((np.ones(n_obs), (c1, c2 + nlev[0])),
                      shape=(nlev[0] + nlev[1],) * 2).tocsr()
    ncomp, label = connected_components(g, directed=False)
    comp_of_fe2 = label[nlev[0]:]
    drop2 = np.zeros(nlev[1], dtype=bool)
    # first FE2 level met in each component is the reference of that component
    _, first = np.unique(comp_of_fe2, return_index=True)
    drop2[first] = True
    keep_masks = [np.ones(nlev[0], dtype=bool), ~drop2]
    for L in nlev[2:]:
        m = np.ones(L, dtype=bool)
        m[0] = False
        keep_masks.append(m)
    maps, offset = [], 0
    for m in keep_masks:
        idx = np.full(len(m), -1, dtype=np.int64)
        idx[m] = offset + np.arange(m.sum())
        maps.append(idx)
        offset += int(m.sum())
    return maps, offset, ncomp


def build_d(codes, maps, ncols, n_obs):
    rows, cols = [], []
    for c, mp in zip(codes, maps):
        j = mp[c]
        ok = j >= 0
        rows.append(np.nonzero(ok)[0])
        cols.append(j[ok])
    rows = np.concatenate(rows)
    cols = np.concatenate(cols)
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_obs, ncols))


def full_normal(v, codes, nlev):
    """D'v with every level of every FE (dropped ones included)."""
    return np.concatenate([np.bincount(c, weights=v, minlength=L) for c, L in zip(codes, nlev)])


class Factor:
    """Factorisation of the SPD matrix D'D. CHOLMOD (scikit-sparse) when installed and
    ordering is "fe-blocks"; otherwise SuperLU without pivoting. "fe-blocks" orders the
    columns by fixed effect, the one with most kept levels first, and factors in that order
    (eliminating the big FE first leaves a small, banded-plus-border Schur complement; a
    minimum-degree ordering is very slow on the dense year columns). Any other value is passed
    to splu as permc_spec (NATURAL, COLAMD, MMD_AT_PLUS_A, MMD_ATA)."""

    def __init__(self, a, block_sizes, ordering):
        self.perm = None
        try:
            if ordering != "fe-blocks":
                raise ImportError
            from sksparse.cholmod import cholesky  # optional
            self.f = cholesky(a.tocsc())
            self.name = "cholmod"
            d = self.f.D()
            self.min_pivot_ratio = float(np.min(np.abs(d)) / np.max(np.abs(d)))
            return
        except ImportError:
            pass
        spec = ordering
        if ordering == "fe-blocks":
            starts = np.concatenate([[0], np.cumsum(block_sizes)])
            order = sorted(range(len(block_sizes)), key=lambda k: -block_sizes[k])
            self.perm = np.concatenate([np.arange(starts[k], starts[k + 1]) for k in order])
            a = a[self.perm][:, self.perm]
            spec = "NATURAL"
        self.f = splu(a.tocsc(), permc_spec=spec, diag_pivot_thresh=0.0,
                      options={"SymmetricMode": True})
        self.name = f"splu({ordering})"
        d = np.abs(self.f.U.diagonal())
        self.min_pivot_ratio = float(d.min() / d.max())

    def solve(self, b):
        if self.name == "cholmod":
            return self.f(b)
        if self.perm is None:
            return self.f.solve(b)
        z = np.empty_like(b)
        z[self.perm] = self.f.solve(np.ascontiguousarray(b[self.perm]))
        return z


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv")
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--y", default="y")
    ap.add_argument("--x", default="x1,x2", help="comma-separated regressors")
    ap.add_argument("--fe", default="id_indiv,id_firm,id_year",
                    help="comma-separated fixed effects (graph check on the first two)")
    ap.add_argument("--ordering", default="fe-blocks",
                    help="fe-blocks (default) or a splu permc_spec: NATURAL, COLAMD, MMD_AT_PLUS_A")
    ap.add_argument("--tol", type=float, default=1e-12, help="max ||D'v~||/||D'v|| allowed")
    a = ap.parse_args()
    xs = a.x.split(",")
    fes = a.fe.split(",")
    if len(fes) < 2:
        raise SystemExit("need at least two fixed effects")

    t0 = time.perf_counter()
    df = pd.read_csv(a.csv, usecols=[a.y] + xs + fes)
    t_read = time.perf_counter() - t0

    t1 = time.perf_counter()
    n = len(df)
    V = df[[a.y] + xs].to_numpy(dtype=np.float64)
    if not np.isfinite(V).all():
        raise SystemExit("non-finite values in y/x: drop them first")
    fac = [factorize(df[f]) for f in fes]
    codes = [c for c, _ in fac]
    nlev = [L for _, L in fac]
    maps, ncols, ncomp = dummy_columns(codes, nlev, n)
    D = build_d(codes, maps, ncols, n)
    DtD = (D.T @ D).tocsc()
    singleton_obs = int(np.any([np.bincount(c, minlength=L)[c] == 1
                                for c, L in zip(codes, nlev)], axis=0).sum())
    t_build = time.perf_counter() - t1

    t2 = time.perf_counter()
    F = Factor(DtD, [int((mp >= 0).sum()) for mp in maps], a.ordering)
    Vt = V.copy()
    z = F.solve(D.T @ V)
    Vt -= D @ z
    norms0 = np.array([np.linalg.norm(full_normal(V[:, j], codes, nlev)) for j in range(V.shape[1])])
    refine = 0
    first_ratio = None
    while True:
        res = np.array([np.linalg.norm(full_normal(Vt[:, j], codes, nlev)) for j in range(V.shape[1])])
        ratio = res / np.where(norms0 > 0, norms0, 1.0)
        if first_ratio is None:
            first_ratio = ratio
        if ratio.max() < 1e-14 or refine >= 5:
            break
        Vt -= D @ F.solve(D.T @ Vt)  # iterative refinement on the residual D'v~
        refine += 1
    t_fs = time.perf_counter() - t2

    yt, Xt = Vt[:, 0], Vt[:, 1:]
    xtx = Xt.T @ Xt
    beta = np.linalg.solve(xtx, Xt.T @ yt)
    e = yt - Xt @ beta
    k = len(xs)
    dof = n - k - ncols
    sigma2 = float(e @ e) / dof
    se = np.sqrt(np.diag(sigma2 * np.linalg.inv(xtx)))
    t_total = time.perf_counter() - t0

    names = [a.y] + xs
    for nm, r in zip(names, ratio):
        print(f"||D'{nm}~|| / ||D'{nm}|| = {r:.3e}")
    print(f"(before refinement: max {first_ratio.max():.3e})")
    print(f"n={n} levels={dict(zip(fes, nlev))} components({fes[0]},{fes[1]})={ncomp} "
          f"rank_fe={ncols} dof={dof} solver={F.name} refinements={refine} "
          f"min_pivot_ratio={F.min_pivot_ratio:.3e}")
    for nm, b, s in zip(xs, beta, se):
        print(f"{nm}: {float(b)!r}  (se_iid {float(s)!r})")
    print(f"seconds: read {t_read:.3f}, build {t_build:.3f}, factor+solve {t_fs:.3f}, total {t_total:.3f}")
    ok = bool(ratio.max() < a.tol)
    if not ok:
        print(f"ERROR: max normal residual {ratio.max():.3e} >= {a.tol:g}", file=sys.stderr)
    if F.min_pivot_ratio < 1e-10:
        print(f"WARNING: min pivot ratio {F.min_pivot_ratio:.3e}: kept dummies may be rank deficient,"
              " rank_fe (and the dof) may be too large", file=sys.stderr)

    out = {
        "file": a.csv,
        "formula": f"{a.y} ~ {' + '.join(xs)} | {' + '.join(fes)}",
        "n": n,
        "levels": dict(zip(fes, nlev)),
        "components": ncomp,
        "singleton_obs": singleton_obs,
        "rank_fe": ncols,
        "dof": dof,
        "coef": {nm: float(b) for nm, b in zip(xs, beta)},
        "se_iid": {nm: float(s) for nm, s in zip(xs, se)},
        "sigma2": sigma2,
        "normal_residual": {nm: float(r) for nm, r in zip(names, ratio)},
        "max_normal_residual": float(ratio.max()),
        "max_normal_residual_before_refinement": float(first_ratio.max()),
        "min_pivot_ratio": F.min_pivot_ratio,
        "solver": F.name,
        "refinements": refine,
        "seconds_read": t_read,
        "seconds_build": t_build,
        "seconds_factor_solve": t_fs,
        "seconds_total": t_total,
    }
    with open(a.out, "w") as fh:
        json.dump(out, fh, indent=2)
        fh.write("\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
