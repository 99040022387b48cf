#!/usr/bin/env python3
"""Peer benchmark: pyfixest's fepois on the simulated gravity panel (scripts/peers/make_gravity.py).

    pf.fepois("trade ~ fta | exp^year + imp^year + exp^imp", data, vcov={"CRV1": "pair"})

the same model as scripts/peers/bench_ppml.R (`pair` is the exp^imp id, so the clustering is
the same), timed at pyfixest's default tolerances (fixef_tol 1e-6, iwls_tol 1e-8) and at
fixef_tol = iwls_tol = 1e-10. Reading the file is timed separately from the fits (the CSV, as
R reads it; the parquet read time is reported too when the file is there). Prints one JSON
object on stdout. A warm-up fit on years 1-2 runs first (pyfixest compiles numba kernels on
first use); its time is reported as warmup_seconds.

    /tmp/venv-pf/bin/python scripts/peers/bench_ppml.py [/tmp/gravity/gravity.csv] [threads]

threads (default: every core) goes to RAYON_NUM_THREADS / NUMBA_NUM_THREADS / OMP_NUM_THREADS
before pyfixest is imported (its default demeaner is the Rust MAP one, parallel through rayon).
Needs pyfixest (0.60: `demeaner=MapDemeaner(...)` replaces the deprecated fixef_tol argument),
pandas, and pyarrow for the parquet timing.
"""
import json
import os
import sys
import time

path = sys.argv[1] if len(sys.argv) > 1 else "/tmp/gravity/gravity.csv"
threads = int(sys.argv[2]) if len(sys.argv) > 2 else os.cpu_count()
for var in ("RAYON_NUM_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "POLARS_MAX_THREADS"):
    os.environ[var] = str(threads)

import gc  # noqa: E402

import pandas as pd  # noqa: E402
import pyfixest as pf  # noqa: E402

try:
    from pyfixest.demeaners import MapDemeaner  # pyfixest >= 0.60
except ImportError:  # older pyfixest: the legacy keyword
    MapDemeaner = None

FML = "trade ~ fta | exp^year + imp^year + exp^imp"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


t0 = time.perf_counter()
data = pd.read_csv(path)
t_read = time.perf_counter() - t0
log(f"read {path}: {len(data)} rows in {t_read:.2f} s")
t_parquet = None
pq = os.path.splitext(path)[0] + ".parquet"
if os.path.exists(pq):
    try:
        t0 = time.perf_counter()
        pd.read_parquet(pq)
        t_parquet = time.perf_counter() - t0
    except ImportError:
        pass


def run(label, fixef_tol, iwls_tol):
    gc.collect()
    kw = dict(vcov={"CRV1": "pair"}, iwls_tol=iwls_tol, iwls_maxiter=100)
    if MapDemeaner is not None:
        kw["demeaner"] = MapDemeaner(fixef_tol=fixef_tol, fixef_maxiter=100_000)
    else:
        kw["fixef_tol"] = fixef_tol
    t0 = time.perf_counter()
    m = pf.fepois(FML, data, **kw)
    secs = time.perf_counter() - t0
    log(f"{label}: {secs:.2f} s")
    return dict(label=label, seconds=round(secs, 3), coef_fta=float(m.coef()["fta"]),
                se_fta=float(m.se()["fta"]), nobs=int(m._N), n_removed=int(len(data) - m._N),
                converged=getattr(m, "_convergence", None),  # pyfixest 0.60 keeps no iteration count
                deviance=float(m.deviance) if getattr(m, "deviance", None) is not None else None)


# warm-up (not timed as a fit): the first call pays for imports and numba compilation
t0 = time.perf_counter()
pf.fepois(FML, data[data["year"] <= 2], vcov={"CRV1": "pair"})
t_warm = time.perf_counter() - t0
log(f"warm-up on years 1-2: {t_warm:.2f} s")
fits = [run("default_tol", 1e-6, 1e-8), run("tight_tol_1e-10", 1e-10, 1e-10)]
try:
    load = open("/proc/loadavg").read().strip()
except OSError:
    load = None
print(json.dumps(dict(tool="pyfixest", pyfixest_version=pf.__version__, pandas_version=pd.__version__,
                      file=path, rows=len(data), threads=threads, cores=os.cpu_count(),
                      read_seconds=round(t_read, 3),
                      read_parquet_seconds=None if t_parquet is None else round(t_parquet, 3),
                      warmup_seconds=round(t_warm, 3),
                      loadavg_at_end=load, fits=fits)))
