#!/usr/bin/env python3
"""Time pyfixest and fegpu on the same files, on the same machine, in the same run.

    python3 -m venv /tmp/peers && /tmp/peers/bin/pip install pyfixest pyarrow
    cargo build --release
    /tmp/peers/bin/python scripts/peers/bench_pyfixest.py [--big] [--fegpu target/release/fegpu]

Writes the demo panel (and with --big a 10-million-row panel) with `fegpu demo`, then for each
file: pyfixest `feols` on the loaded DataFrame (first call, then the median of warm calls), and
fegpu on the same file (`fegpu fit FILE F F F ... --format json`: the file is loaded once and
the same model fitted several times; the JSON `seconds` field times each fit from the loaded
table, which is what pyfixest's warm call times). Prints both and the ratio.
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import pandas as pd
import pyfixest as pf

FORMULA = ("qua ~ digtech + age + finance + profit + klratio + turnover + lnlp + lev + open + market"
           " + lnpergdp + xr | firm + year + firm^dest")


def time_pyfixest(path, reps):
    df = pd.read_parquet(path)
    t = time.perf_counter()
    m = pf.feols(FORMULA, df, vcov={"CRV1": "dest"})
    first = time.perf_counter() - t
    warm = []
    for _ in range(reps):
        t = time.perf_counter()
        m = pf.feols(FORMULA, df, vcov={"CRV1": "dest"})
        warm.append(time.perf_counter() - t)
    return first, statistics.median(warm), float(m.coef()["digtech"])


def time_fegpu(binary, path, reps):
    t = time.perf_counter()
    out = subprocess.run([binary, "fit", path] + [FORMULA] * (reps + 1) + ["--vcov", "cluster:dest", "--format", "json"],
                         check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t
    models = json.loads(out.stdout)["models"]
    secs = [m["seconds"] for m in models]
    return secs[0], statistics.median(secs[1:]), models[0]["coefficients"][0]["estimate"], wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fegpu", default=os.environ.get("FEGPU", "target/release/fegpu"))
    ap.add_argument("--big", action="store_true")
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="fegpu-peers-")
    files = [("demo 130k", os.path.join(d, "demo.parquet"), [])]
    if a.big:
        files.append(("10M rows", os.path.join(d, "big.parquet"), ["--rows", "10000000", "--seed", "7"]))
    print(f"{'data':<10} {'pyfixest first':>15} {'pyfixest warm':>14} {'fegpu first':>12} {'fegpu warm':>11} {'ratio':>7}  (coef check)")
    for label, path, extra in files:
        subprocess.run([a.fegpu, "demo", "--out", path] + extra, check=True, capture_output=True)
        reps = a.reps if not extra else 2
        pf_first, pf_warm, pf_b = time_pyfixest(path, reps)
        fe_first, fe_warm, fe_b, _ = time_fegpu(a.fegpu, path, reps)
        print(f"{label:<10} {pf_first:>14.3f}s {pf_warm:>13.3f}s {fe_first:>11.3f}s {fe_warm:>10.3f}s {pf_warm / fe_warm:>6.2f}x"
              f"  (digtech {pf_b:.10f} vs {fe_b:.10f})")


if __name__ == "__main__":
    main()
