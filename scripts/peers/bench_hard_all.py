#!/usr/bin/env python3
"""The solver benchmark: fegpu against pyfixest's LsmrDemeaner (the `within` crate) and R fixest
on the same files, on the same machine, in one run, one tool at a time.

    python3 scripts/peers/bench_hard_all.py OUTDIR [--fegpu target/release/fegpu] [--big] [--no-r]

Files (written by `fegpu demo`): fixest's published "difficult" design at 10^6 rows (and 10^7
with --big), a worker-firm-year panel with low mobility (10^6 rows), and the study-shaped demo
(130k rows, firm + year + firm^dest). For the hard files the exact coefficients come from a
sparse direct solve (scripts/reference/make_difficult.py). fegpu's time is its `seconds` (the
estimation proper, file already read; best of two runs), comparable to the peers' fit times
(bench_hard.py / bench_hard.R time `feols` on a data frame already in memory). Peak memory of
the whole fegpu process is from /usr/bin/time. Prints a Markdown table and writes
OUTDIR/results.json.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
HARD = "y ~ x1 + x2 | {fe}"
STUDY = ("qua ~ digtech + age + finance + profit + klratio + turnover + lnlp + lev + open + market"
         " + lnpergdp + xr | firm + year + firm^dest")


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def fegpu_fit(exe, path, formula, solver="auto"):
    best = None
    for _ in range(2):
        r = sh(["/usr/bin/time", "-f", "%M", exe, "fit", path, formula, "--backend", "cpu",
                "--solver", solver, "--format", "json"])
        m = json.loads(r.stdout)
        m = m["models"][0] if "models" in m else m
        peak = int(r.stderr.strip().splitlines()[-1]) / 1024
        if best is None or m["seconds"] < best["seconds"]:
            best = {"seconds": m["seconds"], "peak_mb": peak, "iterations": m["iterations"],
                    "converged": m["converged"], "preconditioner": m["preconditioner"],
                    "residual": m["demean_residual"],
                    "coef": {c["name"]: c["estimate"] for c in m["coefficients"]}}
    return best


def peers(script, path, formula, ref, extra):
    cmd = ([sys.executable, os.path.join(HERE, "bench_hard.py"), path, "--formula", formula, *extra]
           if script == "py" else
           ["Rscript", os.path.join(HERE, "bench_hard.R"), path, f"--formula={formula}", *extra])
    if ref:
        cmd += (["--ref", ref] if script == "py" else [f"--ref={ref}"])
    try:
        out = sh(cmd, timeout=3600).stdout
    except subprocess.SubprocessError as e:
        return [{"error": str(e)[:200]}]
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def rel_err(coef, exact):
    if not exact:
        return None
    return max(abs(coef[k] - v) / abs(v) for k, v in exact.items())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--fegpu", default=os.path.join(ROOT, "target/release/fegpu"))
    ap.add_argument("--big", action="store_true", help="add the 10^7-row difficult file")
    ap.add_argument("--no-r", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    cases = [("difficult 10^6", "difficult", 1_000_000, HARD.format(fe="id_indiv + id_firm + id_year"), "id_indiv,id_firm,id_year"),
             ("low-mobility worker-firm-year 10^6", "mobility", 1_000_000, HARD.format(fe="worker + firm + year"), "worker,firm,year"),
             ("study demo 130k", "study", 130_000, STUDY, None)]
    if a.big:
        cases.insert(1, ("difficult 10^7", "difficult", 10_000_000, HARD.format(fe="id_indiv + id_firm + id_year"), "id_indiv,id_firm,id_year"))
    results = []
    for name, design, rows, formula, fe in cases:
        path = os.path.join(a.out, f"{design}_{rows}.csv")
        if not os.path.exists(path):
            sh([a.fegpu, "demo", "--design", design, "--rows", str(rows), "--out", path])
        ref, exact = None, None
        if fe:
            ref = path + ".exact.json"
            if not os.path.exists(ref):
                sh([sys.executable, os.path.join(ROOT, "scripts/reference/make_difficult.py"), path,
                    "--fe", fe, "--out", ref])
            exact = json.load(open(ref))["coef"]
        row = {"case": name, "rows": rows, "fegpu": fegpu_fit(a.fegpu, path, formula)}
        row["fegpu"]["rel_err"] = rel_err(row["fegpu"]["coef"], exact)
        print(name, "fegpu", row["fegpu"], flush=True)
        methods = ["--methods", "lsmr" if fe else "lsmr,map"]
        row["pyfixest"] = peers("py", path, formula, ref, methods)
        print(name, "pyfixest", [(p.get("method"), p.get("seconds"), p.get("error")) for p in row["pyfixest"]], flush=True)
        if not a.no_r:
            row["fixest"] = peers("r", path, formula, ref, [])
            print(name, "fixest", [(p.get("seconds"), p.get("error")) for p in row["fixest"]], flush=True)
        for k in ("pyfixest", "fixest"):
            for p in row.get(k, []):
                if "coef" in p and exact:
                    p["rel_err"] = rel_err(p["coef"], exact)
        results.append(row)
        json.dump(results, open(os.path.join(a.out, "results.json"), "w"), indent=1)
    print("\n| case | fegpu fit | pyfixest LSMR | pyfixest MAP | R fixest | fegpu rel. error | LSMR rel. error | fixest rel. error | fegpu peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        def pick(k, method=None):
            for p in r.get(k, []):
                if method is None or p.get("method") == method:
                    return p
            return {}
        f, l, m, x = r["fegpu"], pick("pyfixest", "lsmr"), pick("pyfixest", "map"), pick("fixest")
        fmt = lambda v, s="{:.2f} s": s.format(v) if isinstance(v, (int, float)) else "–"
        print(f"| {r['case']} | {fmt(f['seconds'])} ({f['preconditioner']}, {f['iterations']} it.) | {fmt(l.get('seconds'))} | "
              f"{fmt(m.get('seconds'))} | {fmt(x.get('seconds'))} | {fmt(f.get('rel_err'), '{:.1e}')} | "
              f"{fmt(l.get('rel_err'), '{:.1e}')} | {fmt(x.get('rel_err'), '{:.1e}')} | {f['peak_mb']:.0f} MB |")


if __name__ == "__main__":
    main()
