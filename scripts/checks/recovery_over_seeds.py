#!/usr/bin/env python3
"""Recovery of the planted patterns over several simulated worlds (issue 15).

One seed's miss says little: this runs `fegpu replicate` (paper scale) for each seed and
reports, per column with a planted value or sign, how often the sign is recovered, how often
the 95% interval covers the planted value, and the mean of (estimate - planted) / s.e. A column
whose interval covers about 95% of the time with a mean near 0 misses by sampling noise at a
seed; a mean far from 0 is a bias.

    python3 scripts/checks/recovery_over_seeds.py --fegpu target/release/fegpu \
        --seeds 20230323 1 2 3 4 --tables 1,2,10,11,12,13 --out /tmp/seeds

--tables keeps only those tables of data/replicate_spec.json (faster); --reps is passed to
replicate (permutation tests do not enter these numbers).
"""
import argparse
import json
import pathlib
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fegpu", required=True, help="the fegpu binary")
    ap.add_argument("--seeds", nargs="+", type=int, required=True)
    ap.add_argument("--tables", default=None, help="comma-separated table ids (default: all)")
    ap.add_argument("--reps", type=int, default=19)
    ap.add_argument("--out", required=True, help="a directory for the runs")
    ap.add_argument("--spec", default=None, help="the table specification (default: data/replicate_spec.json)")
    a = ap.parse_args()
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    spec_file = pathlib.Path(a.spec or pathlib.Path(__file__).resolve().parent.parent.parent / "data/replicate_spec.json")
    spec = json.loads(spec_file.read_text())
    if a.tables:
        keep = set(a.tables.split(","))
        unknown = keep - {t["id"] for t in spec["tables"]}
        if unknown:
            sys.exit(f"no table {sorted(unknown)} in {spec_file}")
        spec["tables"] = [t for t in spec["tables"] if t["id"] in keep]
    spec_path = out / "spec.json"
    spec_path.write_text(json.dumps(spec, ensure_ascii=False))
    runs = {}
    for seed in a.seeds:
        d = out / f"seed_{seed}"
        r = subprocess.run(
            [a.fegpu, "replicate", "--spec", str(spec_path), "--seed", str(seed), "--reps", str(a.reps), "--out", str(d)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            sys.exit(f"seed {seed}: replicate failed:\n{r.stderr}")
        runs[seed] = json.loads((d / "results.json").read_text())
        print(f"seed {seed}: done", file=sys.stderr)
    rows = {}
    for seed, res in runs.items():
        for t in res["tables"]:
            for c in t["columns"]:
                ref = c["truth"] if c["truth"] is not None else c["planted_sign"]
                if ref is None or c["estimate"] is None:
                    continue
                rows.setdefault((t["id"], c["label"]), []).append((seed, c, ref))
    print(f"{len(runs)} seeds: {' '.join(map(str, runs))}")
    print("| table | column | planted (mean) | estimate (mean) | mean s.e. | sign | covers | mean (est - planted)/s.e. |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for (tid, label), v in rows.items():
        n = len(v)
        sign = sum(1 for _, c, ref in v if ref * c["estimate"] > 0)
        numeric = [c for _, c, _ in v if c["truth"] is not None]
        mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")
        planted = f"{mean([c['truth'] for c in numeric]):.5f}" if numeric else ("+" if v[0][2] > 0 else "-")
        covers = f"{sum(1 for c in numeric if c['covers_truth'])}/{len(numeric)}" if numeric else ""
        z = f"{mean([(c['estimate'] - c['truth']) / c['std_error'] for c in numeric]):+.2f}" if numeric else ""
        print(
            f"| {tid} | {label} | {planted} | {mean([c['estimate'] for _, c, _ in v]):.5f} | "
            f"{mean([c['std_error'] for _, c, _ in v]):.5f} | {sign}/{n} | {covers} | {z} |"
        )


if __name__ == "__main__":
    main()
