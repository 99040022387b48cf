#!/usr/bin/env python3
"""Independent check of tests/fixtures/ppml/separation/*.json, and what pyfixest does with them.

For every case it verifies, by a linear program on the design [X, fixed-effect dummies] (plus an
intercept when there is no fixed effect), that the rows in `expected.drop_separated` are exactly
the observations that are separated, i.e. the largest set S such that some direction
z = [X D] g satisfies
  Poisson: z_i = 0 where y_i > 0,  z_i >= 0 where y_i = 0, z_i > 0 exactly on S;
  logit:   z_i >= 0 where y_i = 1, z_i <= 0 where y_i = 0, z_i != 0 exactly on S
(Correia, Guimaraes & Zylkin 2019, "Verifying the existence of maximum likelihood estimates for
generalized linear models", definitions 1-2; the LP is ours: maximise sum_i t_i subject to
0 <= t_i <= 1, t_i <= s_i z_i, with s_i = +1 / -1 giving the sign each row may take). Because the
feasible directions form a convex cone, the optimum puts t_i = 1 on every row that some
direction can move, so its support is the separated set. It then checks that the remaining rows
(singletons and separated rows dropped) are not separated, and, for d_combination, that
neither part alone separates.

Singletons are not separation (they fit themselves and never move beta), so the LP runs on all
rows; `drop_singletons` is checked by counting.

Also records what pyfixest's fepois does with separation_check=["fe"] and ["fe", "ir"] into
tests/fixtures/ppml/separation/pyfixest.json.

    /tmp/venv-pf/bin/python scripts/reference/check_separation.py     # numpy, pandas, scipy, pyfixest
"""
import json
import os
import sys
import warnings

import numpy as np
import pandas as pd
from scipy.optimize import linprog

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "ppml", "separation")


def design(df, formula, with_fe=True, regressors=None):
    lhs, rhs = formula.split("~")
    parts = rhs.split("|")
    xs = [v.strip() for v in parts[0].split("+") if v.strip()]
    if regressors is not None:
        xs = regressors
    fes = [v.strip() for v in parts[1].split("+")] if len(parts) > 1 and with_fe else []
    cols = [df[x].to_numpy(float) for x in xs]
    if fes:
        for f in fes:
            for lev in sorted(df[f].astype(str).unique()):
                cols.append((df[f].astype(str) == lev).to_numpy(float))
    else:
        cols.append(np.ones(len(df)))
    return df[lhs.strip()].to_numpy(float), np.column_stack(cols)


def separated(y, A, family):
    """Rows that some direction z = A g separates (see module docstring). 0-based indices."""
    n, k = A.shape
    if family == "poisson":
        pos = y > 0
        sign = np.where(pos, 0.0, 1.0)  # y>0: z = 0; y=0: z >= 0
    else:
        pos = None
        sign = np.where(y > 0, 1.0, -1.0)  # y=1: z >= 0; y=0: z <= 0
    # variables: g (k, free), t (n, in [0, 1]); maximise sum t
    c = np.concatenate([np.zeros(k), -np.ones(n)])
    A_ub, b_ub, A_eq, b_eq = [], [], [], []
    for i in range(n):
        if family == "poisson" and pos[i]:
            A_eq.append(np.concatenate([A[i], np.zeros(n)]))
            b_eq.append(0.0)
            row = np.zeros(n + k)
            row[k + i] = 1.0  # t_i <= 0
            A_ub.append(row)
            b_ub.append(0.0)
            continue
        # t_i - s_i z_i <= 0  and  -s_i z_i <= 0
        row = np.concatenate([-sign[i] * A[i], np.zeros(n)])
        row[k + i] = 1.0
        A_ub.append(row)
        b_ub.append(0.0)
        A_ub.append(np.concatenate([-sign[i] * A[i], np.zeros(n)]))
        b_ub.append(0.0)
    bounds = [(None, None)] * k + [(0.0, 1.0)] * n
    res = linprog(c, A_ub=np.array(A_ub), b_ub=np.array(b_ub),
                  A_eq=np.array(A_eq) if A_eq else None, b_eq=np.array(b_eq) if b_eq else None,
                  bounds=bounds, method="highs")
    assert res.status == 0, res.message
    t = res.x[k:]
    return sorted(int(i) for i in np.where(t > 0.5)[0]), t


def singletons_after(df, formula, drop):
    """Recursive singleton/all-zero check on the rows left after `drop` (0-based)."""
    parts = formula.split("~")[1].split("|")
    fes = [v.strip() for v in parts[1].split("+")] if len(parts) > 1 else []
    keep = np.ones(len(df), bool)
    keep[list(drop)] = False
    return {f: int((df[keep].groupby(f).size() == 1).sum()) for f in fes}


def pyfixest_runs(df, case):
    try:
        import pyfixest as pf
    except ImportError:
        return None
    import inspect
    out = {"pyfixest_version": pf.__version__,
           "fixef_rm_default": inspect.signature(pf.fepois).parameters["fixef_rm"].default}
    if case["family"] != "poisson":
        out["note"] = "pyfixest 0.60's separation checks are for fepois only; not run"
        return out
    for checks in (["fe"], ["fe", "ir"]):
        key = "+".join(checks)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                m = pf.fepois(case["formula"], df, vcov="iid", separation_check=checks,
                              iwls_tol=1e-10, iwls_maxiter=1000)
            kept = set(int(i) for i in m._data.index)
            removed = sorted(i + 1 for i in range(len(df)) if i not in kept)
            msgs = [str(w.message)[:300] for w in caught
                    if any(k in str(w.message).lower() for k in ("separat", "singleton", "converg", "dropped"))]
            out[key] = dict(nobs=int(m._N), rows_removed=removed,
                            n_separation_na=int(getattr(m, "n_separation_na", 0) or 0),
                            coef={k: float(v) for k, v in m.coef().items()},
                            messages=msgs[:5])
        except Exception as e:  # pyfixest raises on non-convergence
            out[key] = dict(error=f"{type(e).__name__}: {str(e)[:300]}")
    return out


def main():
    ok = True
    py = {}
    for fn in sorted(os.listdir(HERE)):
        if not fn.endswith(".json") or fn == "pyfixest.json":
            continue
        case = json.load(open(os.path.join(HERE, fn)))
        df = pd.read_csv(os.path.join(HERE, case["data"]))
        exp = case["expected"]
        y, A = design(df, case["formula"])
        sep, _ = separated(y, A, case["family"])
        sep1 = [i + 1 for i in sep]
        want = exp["drop_separated"]
        good = sep1 == want
        # the remaining rows are clean
        drop0 = [i - 1 for i in exp["drop_rows"]]
        keep = np.setdiff1d(np.arange(len(df)), drop0)
        y2, A2 = design(df.iloc[keep].reset_index(drop=True), case["formula"])
        sep2, _ = separated(y2, A2, case["family"])
        good &= sep2 == []
        # singletons: the expected singleton rows are singletons once the separated rows are gone,
        # and nothing is a singleton after everything expected is dropped
        s_after = singletons_after(df, case["formula"], drop0)
        good &= all(v == 0 for v in s_after.values())
        good &= len(keep) == exp["n_remaining"]
        line = f"{case['name']:24s} LP separated rows {sep1} expected {want}; remaining rows separated: {sep2}; singletons left {s_after}"
        if case["name"] == "d_combination":
            # neither part alone: no FE (intercept) with x1, x2, x3; FE with one of x1 / x2 (+ x3)
            for label, kw in [("no fe", dict(with_fe=False)),
                              ("fe + x1 + x3", dict(regressors=["x1", "x3"])),
                              ("fe + x2 + x3", dict(regressors=["x2", "x3"])),
                              ("fe only", dict(regressors=[]))]:
                yy, AA = design(df, case["formula"], **kw)
                s, _ = separated(yy, AA, case["family"])
                line += f"\n    {label}: separated {[i + 1 for i in s]}"
                good &= s == []
        print(("OK   " if good else "FAIL ") + line)
        ok &= bool(good)
        py[case["name"]] = pyfixest_runs(df, case)
    with open(os.path.join(HERE, "pyfixest.json"), "w") as f:
        json.dump(dict(generator="scripts/reference/check_separation.py", cases=py), f, indent=1)
    print("all expected drops verified" if ok else "SOME CHECKS FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
