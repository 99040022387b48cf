#!/usr/bin/env python3
"""Time `fegpu bdiff` against a loop of pyfixest fits on the same file, same machine, same run.

    /tmp/peers/bin/python scripts/peers/bench_bdiff.py [--reps 1000] [--py-reps 10] [--fegpu target/release/fegpu]

The data: the demo panel (130k rows, firm/year/firm×destination effects, 12 regressors) with a
0/1 group (industry C39, constant within firm); permutation unit = observation (`--unit obs`,
bdiff's default and the solver issue's target) or firm (`--unit firm`). pyfixest has no
permutation test of coefficient differences, so the peer is what a user writes: permute the
firms' group labels, fit both groups with `feols`, repeat. Its per-replicate time is measured on
`--py-reps` replicates and scaled to `--reps` (printed as such).
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import numpy as np
import pandas as pd
import pyfixest as pf

F = ("qua ~ digtech + age + finance + profit + klratio + turnover + lnlp + lev + open + market"
     " + lnpergdp + xr | firm + year + firm^dest")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fegpu", default=os.environ.get("FEGPU", "target/release/fegpu"))
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--py-reps", type=int, default=10)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--unit", choices=["obs", "firm"], default="obs")
    # c39: industry C39 (about 14% of rows); odd: odd-numbered firms (balanced, about 50%)
    ap.add_argument("--group", choices=["c39", "odd"], default="c39")
    ap.add_argument("--engine", default="", help="FEGPU_ENGINE for fegpu (single|block; empty: cost model)")
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="fegpu-bdiff-")
    raw = os.path.join(d, "demo.parquet")
    subprocess.run([a.fegpu, "demo", "--out", raw], check=True, capture_output=True)
    df = pd.read_parquet(raw)
    if a.group == "odd":
        df["c39"] = (pd.factorize(df.firm, sort=True)[0] % 2 == 1).astype(int)
    else:
        df["c39"] = (df.industry == "C39").astype(int)
    path = os.path.join(d, "demo_g.parquet")
    df.to_parquet(path)

    t = time.perf_counter()
    unit = ["--unit", "firm"] if a.unit == "firm" else []
    env = dict(os.environ, FEGPU_ENGINE=a.engine) if a.engine else None
    out = subprocess.run([a.fegpu, "bdiff", path, F, "--group", "c39", *unit, "--reps", str(a.reps),
                          "--backend", a.backend, "--format", "json"], check=True, capture_output=True, text=True,
                         env=env)
    fe_wall = time.perf_counter() - t
    res = json.loads(out.stdout)

    firms = df.firm.unique()
    g_of = df.groupby("firm").c39.first()
    n1 = int(g_of.sum())
    rng = np.random.default_rng(1)
    pf.feols(F, df[df.c39 == 1])  # warm-up (numba JIT)
    times = []
    for _ in range(a.py_reps):
        t = time.perf_counter()
        if a.unit == "firm":
            perm = rng.permutation(firms)
            mask = df.firm.isin(set(perm[:n1]))
        else:
            mask = np.zeros(len(df), dtype=bool)
            mask[rng.permutation(len(df))[: int(df.c39.sum())]] = True
        b1 = pf.feols(F, df[mask]).coef()
        b0 = pf.feols(F, df[~mask]).coef()
        _ = b1 - b0
        times.append(time.perf_counter() - t)
    per_rep = statistics.median(times)
    py_total = per_rep * a.reps
    print(f"unit: {a.unit}, group: {a.group} ({df.c39.mean():.1%} of rows), engine: {a.engine or 'cost model'}")
    print(f"fegpu bdiff ({res['backend']}): {a.reps} replicates in {res['seconds']:.1f} s (process {fe_wall:.1f} s)")
    print(f"pyfixest loop: {per_rep:.3f} s per replicate (median of {a.py_reps}) -> {py_total:.0f} s for {a.reps} (extrapolated)")
    print(f"ratio: {py_total / res['seconds']:.1f}x")


if __name__ == "__main__":
    main()
