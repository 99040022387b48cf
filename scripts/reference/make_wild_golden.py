#!/usr/bin/env python3
"""Golden values for fegpu's wild cluster bootstrap, from pyfixest's `wildboottest` (WCR11,
Rademacher or Webb weights). Writes tests/fixtures/wild/{wild.csv, wildboottest.json}.

    /tmp/ref/bin/pip install pyfixest==0.60.0 wildboottest
    /tmp/ref/bin/python scripts/reference/make_wild_golden.py

With 10 clusters and Rademacher weights both programs enumerate all 2^10 sign vectors, so the
p-values must agree exactly; with Webb weights they agree within Monte Carlo error.
"""
import json
import os

import numpy as np
import pandas as pd
import pyfixest as pf

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "wild")


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(3)
    n = 400
    c = rng.integers(0, 10, n)
    f = rng.integers(0, 8, n)
    x1 = rng.normal(size=n) + 0.3 * rng.normal(size=10)[c]
    x2 = rng.normal(size=n)
    y = 0.15 * x1 + 0.02 * x2 + rng.normal(size=8)[f] + rng.normal(size=n) + 0.5 * rng.normal(size=10)[c]
    fn = c * 3 + rng.integers(0, 3, n)  # nested in the clusters
    y = y + rng.normal(size=30)[fn]
    df = pd.DataFrame(dict(y=y, x1=x1, x2=x2, f=f, fn=fn, c=c))
    df.to_csv(os.path.join(OUT, "wild.csv"), index=False)
    df = pd.read_csv(os.path.join(OUT, "wild.csv"))
    cases = []
    for fml in ["y ~ x1 + x2 | fn", "y ~ x1 + x2 | f"]:
        for param in ["x1", "x2"]:
            for wt, reps in [("rademacher", 9999), ("webb", 99999)]:
                m = pf.feols(fml, df, vcov={"CRV1": "c"})
                r = m.wildboottest(param=param, reps=reps, cluster="c", weights_type=wt, seed=11)
                cases.append(dict(formula=fml, param=param, weights_type=wt, reps=reps,
                                  fe_nested_in_cluster=fml.endswith("fn"), t=float(r["t value"]), p=float(r["Pr(>|t|)"])))
    with open(os.path.join(OUT, "wildboottest.json"), "w") as fh:
        json.dump(dict(meta=dict(generator="scripts/reference/make_wild_golden.py", pyfixest=pf.__version__), cases=cases), fh, indent=1)
    print(cases)


if __name__ == "__main__":
    main()
