#!/usr/bin/env python3
"""Simulated structural-gravity panel for the PPML benchmarks (numpy only, seeded).

250 countries x 25 years, every ordered exporter-importer pair i != j:
250 * 249 * 25 = 1,556,250 rows. Columns:

    exp, imp   country ids 1..250 (integers)
    year       1..25
    pair       (exp - 1) * 250 + imp: the exp^imp pair id, for tools without `^`
    trade      the flow: a gamma-Poisson (negative binomial) draw, ~57% zeros
    fta        0/1, time-varying: some pairs sign at a random year and stay in, a few are
               in from the start, most never
    ldist      log distance between the two countries (not used by the benchmark fit: it is
               absorbed by the pair effect)

Mean: mu = exp(o_it + d_jt + p_ij + 0.3 * fta), with exporter-year o_it and importer-year d_jt
effects (country size + a country trend + noise) and a pair effect p_ij = -1.0 * ldist + noise.
The constant is set by bisection so that the expected share of zeros is the target (default
0.57); a gamma frailty (shape 0.5) makes the draws over-dispersed. The true fta coefficient is
0.3.

    python3 scripts/peers/make_gravity.py [--out /tmp/gravity] [--countries 250] [--years 25]
                                          [--zeros 0.57] [--seed 20250607]

Writes OUT/gravity.csv, and OUT/gravity.parquet when pyarrow imports (e.g. /tmp/venv-pf), and
OUT/gravity_meta.json with the parameters and realised shares.
"""
import argparse
import json
import os
import time

import numpy as np


def simulate(n_c, n_t, zero_target, seed, shape=0.5):
    rng = np.random.default_rng(seed)
    # geography: countries on a plane, distance in "km"
    loc = rng.uniform(0, 10000, size=(n_c, 2))
    size = rng.normal(0, 1.5, size=n_c)  # economic size
    trend_o = rng.normal(0, 0.02, size=n_c)
    trend_d = rng.normal(0, 0.02, size=n_c)
    t = np.arange(n_t)
    o = size[:, None] + trend_o[:, None] * t[None, :] + rng.normal(0, 0.2, size=(n_c, n_t))
    d = 0.8 * size[:, None] + trend_d[:, None] * t[None, :] + rng.normal(0, 0.2, size=(n_c, n_t))

    ii, jj = np.nonzero(~np.eye(n_c, dtype=bool))  # ordered pairs i != j, row-major
    n_p = ii.size
    dist = np.hypot(*(loc[ii] - loc[jj]).T) + 50.0
    ldist = np.log(dist)
    pair_fx = -1.0 * ldist + rng.normal(0, 1.0, size=n_p)

    # FTAs are symmetric: decide per unordered pair, copy to both directions
    lo, hi = np.minimum(ii, jj), np.maximum(ii, jj)
    key = lo * n_c + hi
    u_keys, inv = np.unique(key, return_inverse=True)
    n_u = u_keys.size
    kind = rng.uniform(size=n_u)
    start = np.full(n_u, n_t + 1)  # never
    signs = kind < 0.25  # a quarter of the pairs sign during the panel
    start[signs] = rng.integers(1, n_t, size=signs.sum())  # year index 1..n_t-1
    always = (kind >= 0.25) & (kind < 0.30)  # 5% in from the start
    start[always] = 0
    start_pair = start[inv]

    # panel: rows ordered by year, then pair
    year = np.repeat(np.arange(n_t), n_p)
    p_idx = np.tile(np.arange(n_p), n_t)
    fta = (year >= start_pair[p_idx]).astype(np.int8)
    eta0 = o[ii[p_idx], year] + d[jj[p_idx], year] + pair_fx[p_idx] + 0.3 * fta

    # constant so that E[share of zeros] = target under NB(mean mu, shape k):
    # P(y = 0) = (1 + mu / k)^-k
    def zero_share(c):
        mu = np.exp(eta0 + c)
        return np.mean(np.exp(-shape * np.log1p(mu / shape)))

    lo_c, hi_c = -40.0, 40.0
    for _ in range(80):
        mid = 0.5 * (lo_c + hi_c)
        if zero_share(mid) > zero_target:
            lo_c = mid
        else:
            hi_c = mid
    const = 0.5 * (lo_c + hi_c)
    mu = np.exp(eta0 + const)
    frailty = rng.gamma(shape, 1.0 / shape, size=mu.size)
    trade = rng.poisson(mu * frailty)
    cols = dict(
        exp=(ii[p_idx] + 1).astype(np.int32),
        imp=(jj[p_idx] + 1).astype(np.int32),
        year=(year + 1).astype(np.int32),
        pair=(ii[p_idx] * n_c + jj[p_idx] + 1).astype(np.int32),
        trade=trade.astype(np.int64),
        fta=fta,
        ldist=np.round(ldist[p_idx], 6),
    )
    meta = dict(countries=n_c, years=n_t, rows=int(mu.size), seed=seed, zero_target=zero_target,
                constant=const, gamma_shape=shape, beta_fta=0.3,
                zero_share=float(np.mean(trade == 0)), fta_share=float(fta.mean()),
                pairs_switching=int(signs.sum()), pairs_always=int(always.sum()))
    return cols, meta


def write_csv(cols, path):
    names = list(cols)
    fmt = ["%d", "%d", "%d", "%d", "%d", "%d", "%.6f"]
    data = np.column_stack([cols[k].astype(np.float64) if k == "ldist" else cols[k].astype(np.int64) for k in names])
    with open(path, "w") as f:
        f.write(",".join(names) + "\n")
        # chunked: np.savetxt on 1.5M rows at once is fine, but keeps memory flat this way
        step = 200_000
        for s in range(0, data.shape[0], step):
            np.savetxt(f, data[s:s + step], fmt=fmt, delimiter=",")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="/tmp/gravity")
    ap.add_argument("--countries", type=int, default=250)
    ap.add_argument("--years", type=int, default=25)
    ap.add_argument("--zeros", type=float, default=0.57)
    ap.add_argument("--seed", type=int, default=20250607)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    cols, meta = simulate(a.countries, a.years, a.zeros, a.seed)
    t1 = time.time()
    write_csv(cols, os.path.join(a.out, "gravity.csv"))
    t2 = time.time()
    meta["files"] = ["gravity.csv"]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.table(cols), os.path.join(a.out, "gravity.parquet"))
        meta["files"].append("gravity.parquet")
    except ImportError:
        pass
    meta["seconds"] = dict(simulate=round(t1 - t0, 2), write_csv=round(t2 - t1, 2))
    with open(os.path.join(a.out, "gravity_meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
