#!/usr/bin/env python3
"""Time pyfixest (0.60) on "hard" fixed-effect panels, one JSON line per (file, method).

    pip install pyfixest   # 0.60.0; brings scipy, pandas, numba
    python3 scripts/peers/bench_hard.py d1e5.csv d1e6.csv [--ref d1e5.json --ref d1e6.json]
    python3 scripts/peers/bench_hard.py demo.parquet \
        --formula "qua ~ digtech + age + finance + profit + klratio + turnover + lnlp + lev + open + market + lnpergdp + xr | firm + year + firm^dest"

Default model: y ~ x1 + x2 | id_indiv + id_firm + id_year (--fe replaces only the part after
`|`, --formula the whole formula). Methods (--methods, default both):

  lsmr  pf.feols(fml, df, demeaner=pf.LsmrDemeaner(...))  preconditioned LSMR ("within" Rust
        backend, CPU, float64; default fixef_atol = fixef_btol = 1e-8, see --lsmr-tol)
  map   pf.feols(fml, df, demeaner=pf.MapDemeaner(...))   pyfixest's default: Rust MAP,
        fixef_tol 1e-6, fixef_maxiter 10_000 (see --map-tol)

Each file is read with pandas (`seconds_read`, CSV or parquet). Each method is first warmed
up on --warm rows (whole groups of the first fixed effect: the first rows of a big panel
are mostly singletons) for JIT and thread pools, then the full fit is timed: best of 2 when the
first fit took under 20 s, else that one fit. Each (file, method) runs in its own child process
(--inline: all in this one), because a Rust panic in pyfixest aborts the process; a child that
dies is reported with its exit code. vcov is iid unless --vcov. A failing
fit (e.g. "Demeaning failed after N iterations") is reported in `error`, and warnings in
`warnings`. With --ref (make_difficult.py fixtures, matched to data files by the fixture's
"file" base name; a lone fixture with a lone file always matches) each line also gets the
largest |coef - exact| over the fixture's coefficients. --threads sets RAYON_NUM_THREADS and
NUMBA_NUM_THREADS before pyfixest is imported (default: leave them unset).
"""
import argparse
import json
import os
import subprocess
import sys
import time
import warnings

DEFAULT_FORMULA = "y ~ x1 + x2 | id_indiv + id_firm + id_year"


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--formula", default=DEFAULT_FORMULA)
    ap.add_argument("--fe", help="replace the fixed-effect part, e.g. 'firm + year + firm^dest'")
    ap.add_argument("--methods", default="lsmr,map")
    ap.add_argument("--lsmr-tol", type=float, default=None, help="LsmrDemeaner fixef_atol=fixef_btol")
    ap.add_argument("--map-tol", type=float, default=None, help="MapDemeaner fixef_tol")
    ap.add_argument("--vcov", default="iid")
    ap.add_argument("--warm", type=int, default=5000, help="rows of the warm-up fit (0: none)")
    ap.add_argument("--ref", action="append", default=[],
                    help="make_difficult.py JSON fixture(s) to compare coefficients with (repeatable)")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--inline", action="store_true",
                    help="run in this process (default: one child process per file and method)")
    return ap.parse_args()


def first_fe(fml, columns):
    """Column of the first fixed effect of the formula (None if it cannot be told)."""
    if "|" not in fml:
        return None
    term = fml.split("|")[1].split("+")[0].split("^")[0].strip()
    return term if term in columns else None


def ref_for(refs, data_path, nfiles):
    """The fixture whose "file" has the data file's base name; a lone fixture also goes with a
    lone data file. None when none fits."""
    for r in refs:
        with open(r) as fh:
            if os.path.basename(json.load(fh).get("file", "")) == os.path.basename(data_path):
                return r
    return refs[0] if len(refs) == 1 and nfiles == 1 else None


def load_coef(ref_path):
    if ref_path is None:
        return None
    with open(ref_path) as fh:
        return json.load(fh)["coef"]


def run_one(a, fml, path, method, ref):
    """Read one file, fit one method, print one JSON line."""
    import pandas as pd
    import pyfixest as pf

    def fit(df, dm):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            t = time.perf_counter()
            m = pf.feols(fml, df, vcov=a.vcov, demeaner=dm)
            sec = time.perf_counter() - t
        noise = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)  # pandas 3 chatter
        return m, sec, sorted({str(x.message).strip()[:300] for x in w if not issubclass(x.category, noise)})

    if method == "lsmr":
        kw = {} if a.lsmr_tol is None else {"fixef_atol": a.lsmr_tol, "fixef_btol": a.lsmr_tol}
        dm = pf.LsmrDemeaner(**kw)
    elif method == "map":
        kw = {} if a.map_tol is None else {"fixef_tol": a.map_tol}
        dm = pf.MapDemeaner(**kw)
    else:
        raise SystemExit(f"unknown method {method!r} (lsmr, map)")
    rec = {"tool": "pyfixest", "version": pf.__version__, "file": path, "method": method,
           "demeaner": repr(dm), "formula": fml, "seconds": None, "seconds_all": [], "error": None}
    try:
        t = time.perf_counter()
        df = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
        rec["seconds_read"] = time.perf_counter() - t
        rec["rows"] = len(df)
        if a.warm:
            # the first rows of a big panel are mostly singletons (an empty fit panics in
            # pyfixest's Rust MAP and aborts the process): warm up on whole groups of the
            # first fixed effect instead
            fe1 = first_fe(fml, df.columns)
            part = df.sort_values(fe1, kind="stable") if fe1 else df
            t = time.perf_counter()
            try:
                fit(part.iloc[:a.warm], dm)
            except Exception as e:  # the full fit decides
                rec["warmup_error"] = f"{type(e).__name__}: {e}"
            rec["seconds_warmup"] = time.perf_counter() - t
            del part
        m, sec, warns = fit(df, dm)
        rec["seconds_all"].append(sec)
        if sec < 20:
            m, sec2, warns2 = fit(df, dm)
            rec["seconds_all"].append(sec2)
            warns = sorted(set(warns) | set(warns2))
        rec["seconds"] = min(rec["seconds_all"])
        rec["n"] = int(m._N)
        rec["coef"] = {k: float(v) for k, v in m.coef().items()}
        rec["se"] = {k: float(v) for k, v in m.se().items()}
        if warns:
            rec["warnings"] = warns
        if ref is not None:
            common = [k for k in ref if k in rec["coef"]]
            rec["max_abs_diff_vs_ref"] = max(abs(rec["coef"][k] - ref[k]) for k in common) if common else None
    except Exception as e:  # a Rust panic surfaces as pyo3's PanicException (a BaseException)
        rec["error"] = f"{type(e).__name__}: {e}"
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise
        rec["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(rec), flush=True)


def main():
    a = parse()
    if a.threads:
        os.environ["RAYON_NUM_THREADS"] = str(a.threads)
        os.environ["NUMBA_NUM_THREADS"] = str(a.threads)
    fml = a.formula
    if a.fe:
        fml = fml.split("|")[0].rstrip() + " | " + a.fe
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    if a.inline:
        for path in a.files:
            for method in methods:
                run_one(a, fml, path, method, load_coef(ref_for(a.ref, path, len(a.files))))
        return 0
    # one child per (file, method): a panic inside a Rust thread aborts the whole process
    base = [sys.executable, os.path.abspath(__file__), "--inline", "--formula", fml,
            "--vcov", a.vcov, "--warm", str(a.warm)]
    for flag, val in (("--lsmr-tol", a.lsmr_tol), ("--map-tol", a.map_tol), ("--threads", a.threads)):
        if val is not None:
            base += [flag, str(val)]
    for path in a.files:
        ref = ref_for(a.ref, path, len(a.files))
        for method in methods:
            p = subprocess.run(base + ([f"--ref={ref}"] if ref else []) + ["--methods", method, path],
                               capture_output=True, text=True)
            lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
            if lines:
                print(lines[-1], flush=True)
            else:
                tail = [l for l in p.stderr.splitlines() if l.strip() and "inplace" not in l][-4:]
                print(json.dumps({"tool": "pyfixest", "file": path, "method": method, "formula": fml,
                                  "seconds": None, "error": f"process died (rc={p.returncode}): "
                                  + " | ".join(tail)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
