#!/usr/bin/env python3
"""Time the study's tables in pyfixest against `fegpu replicate`, same panel, same machine.

    /opt/refenv/bin/python scripts/peers/bench_replicate.py --out replication [--py-reps 3]

Reads the panel and timing.csv that `fegpu replicate --out DIR` wrote, and the table spec
(data/replicate_spec.json). Every ordinary column is fitted with pyfixest `feols` (same formula,
same sample filter, CRV1 by the spec's cluster). pyfixest has no permutation test of coefficient
differences, so for each split the peer is what a user writes: permute the labels (whole firms or
observations, as fegpu did), fit both groups, repeat; its time per replicate is measured on
`--py-reps` replicates and scaled to the spec's 1000 (printed as such). Coefficients of interest
are compared with fegpu's results.json.
"""
import argparse
import json
import os
import re
import time

import numpy as np
import pandas as pd
import pyfixest as pf

OPS = {"==": np.equal, "!=": np.not_equal, ">=": np.greater_equal, "<=": np.less_equal,
       ">": np.greater, "<": np.less}


def expand(spec, f):
    return re.sub(r"\{(\w+)\}", lambda m: spec["macros"][m.group(1)], f)


def sample(df, filt):
    if not filt:
        return df
    keep = np.ones(len(df), bool)
    for clause in filt.split("&"):
        for op in ["==", "!=", ">=", "<=", ">", "<"]:
            if op in clause:
                var, val = clause.split(op)
                x = df[var.strip()].to_numpy(dtype=float)
                keep &= np.isfinite(x) & OPS[op](x, float(val))
                break
    return df[keep]


def fit(df, formula, cluster):
    return pf.feols(formula, data=df, vcov={"CRV1": cluster})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="replication")
    ap.add_argument("--spec", default=os.path.join(os.path.dirname(__file__), "../../data/replicate_spec.json"))
    ap.add_argument("--py-reps", type=int, default=3)
    a = ap.parse_args()
    spec = json.load(open(a.spec))
    cluster = spec["defaults"]["vcov"].split(":")[1]
    df = pd.read_parquet(os.path.join(a.out, "panel.parquet"))
    ours = json.load(open(os.path.join(a.out, "results.json")))
    fits = 0
    t_fits = 0.0
    worst = 0.0
    perm_time = 0.0
    for t, mine in zip(spec["tables"], ours["tables"]):
        cols = iter(mine["columns"])
        for c in t.get("columns", []):
            f = expand(spec, c["formula"])
            param = c.get("param", spec["defaults"]["param"])
            groups = [None] if "split" not in c else [1, 0]
            for g in groups:
                filt = c.get("sample")
                if g is not None:
                    filt = (filt + " & " if filt else "") + f"{c['split']} == {g}"
                sub = sample(df, filt)
                t0 = time.perf_counter()
                m = fit(sub, f, cluster)
                t_fits += time.perf_counter() - t0
                fits += 1
                mc = next(cols)
                if mc.get("estimate") is not None:
                    worst = max(worst, abs(m.coef()[param] - mc["estimate"]) / max(abs(mc["estimate"]), 1e-12))
            if "split" in c:
                # the peer permutation: per replicate, relabel and refit both groups
                rng = np.random.default_rng(1)
                base = sample(df, c.get("sample")).dropna(subset=[c["split"]])
                unit = c.get("unit", "obs")
                t0 = time.perf_counter()
                for _ in range(a.py_reps):
                    if unit == "obs":
                        lab = rng.permutation(base[c["split"]].to_numpy())
                    else:
                        first = base.groupby(unit)[c["split"]].first()
                        perm = pd.Series(rng.permutation(first.to_numpy()), index=first.index)
                        lab = base[unit].map(perm).to_numpy()
                    for g in (1, 0):
                        fit(base[lab == g], f, cluster)
                perm_time += (time.perf_counter() - t0) / a.py_reps * 1000
    fegpu = pd.read_csv(os.path.join(a.out, "timing.csv"))
    ours_tables = fegpu[fegpu.stage.str.startswith("table")].seconds.sum()
    print(f"pyfixest {pf.__version__}: {fits} fits in {t_fits:.1f} s; permutation tests (1000 reps each, "
          f"scaled from {a.py_reps}) {perm_time:.0f} s; total {t_fits + perm_time:.0f} s")
    print(f"fegpu tables (timing.csv, same machine): {ours_tables:.1f} s; ratio {(t_fits + perm_time) / ours_tables:.1f}x")
    print(f"largest relative difference in the coefficient of interest: {worst:.2e}")


if __name__ == "__main__":
    main()
