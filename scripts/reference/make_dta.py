#!/usr/bin/env python3
"""Stata .dta fixtures for tests/dta.rs, and a CSV of the same data.

    python3 scripts/reference/make_dta.py [--out tests/fixtures/dta]

Writes panel.csv and panel_114.dta, panel_117.dta, panel_118.dta, panel_119.dta (pandas
DataFrame.to_stata) with 300 rows:

    y      float64
    x1     float64, 15 values missing: 10 NaN (Stata `.`) and 5 tagged missing (`.b`, see below)
    x2     integer (Stata long), 4 values tagged missing (`.z`)
    firm   integer id (25 firms)
    dest   text (7 destinations, two not ASCII: Latin-1 before 118, UTF-8 after); a strL in panel_117.dta and panel_118.dta, str# elsewhere
    region labelled categorical (Stata byte with a value label): the codes 0..3 are the data

pandas writes only the system missing `.`; the tagged ones are patched into the files: x1
and x2 are written with sentinel values (x1 = 12345.6789, x2 = 987654) whose bytes occur
nowhere else, then the sentinels' bytes are replaced by the little-endian bit patterns of
`.b` (double 0x7FE0020000000000) and `.z` (long 0x7FFFFFFF). The CSV has those cells empty,
so a reader that takes every Stata missing code as missing fits the same sample from both.
"""
import argparse
import os
import struct

import numpy as np
import pandas as pd

N = 300
X1_SENTINEL = 12345.6789
X2_SENTINEL = 987654
X1_TAGGED_B = struct.pack("<Q", 0x7FE0_0000_0000_0000 + 2 * 0x0000_0100_0000_0000)
X2_TAGGED_Z = struct.pack("<I", 0x7FFF_FFE5 + 26)


def frame():
    rng = np.random.default_rng(20261129)
    firm = rng.integers(1, 26, N)
    dests = np.array(["Paris", "Lyon", "Nice", "Orléans", "Metz", "Besançon", "Brest"])
    dest = dests[rng.integers(0, len(dests), N)]
    region = rng.integers(0, 4, N)
    x1 = rng.normal(size=N)
    x2 = rng.integers(-50, 200, N)
    firm_effect = rng.normal(size=26)[firm]
    dest_effect = {d: e for d, e in zip(dests, rng.normal(size=len(dests)))}
    y = (
        0.5 * x1
        - 0.02 * x2
        + firm_effect
        + np.array([dest_effect[d] for d in dest])
        + 0.3 * region
        + rng.normal(size=N)
    )
    x1[rng.choice(N, 10, replace=False)] = np.nan
    df = pd.DataFrame(
        {
            "y": y,
            "x1": x1,
            "x2": x2.astype(np.int32),
            "firm": firm.astype(np.int32),
            "dest": dest,
            "region": pd.Categorical.from_codes(region, ["north", "south", "east", "west"]),
        }
    )
    tagged_x1 = rng.choice(np.flatnonzero(~np.isnan(x1)), 5, replace=False)
    tagged_x2 = rng.choice(N, 4, replace=False)
    return df, tagged_x1, tagged_x2


def patch(path, sentinel, replacement, count):
    data = open(path, "rb").read()
    assert data.count(sentinel) == count, (path, data.count(sentinel), count)
    open(path, "wb").write(data.replace(sentinel, replacement))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/dta")
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)
    df, tagged_x1, tagged_x2 = frame()

    csv = df.copy()
    csv["region"] = csv["region"].cat.codes
    csv.loc[tagged_x1, "x1"] = np.nan
    csv["x2"] = csv["x2"].astype("Int64")
    csv.loc[tagged_x2, "x2"] = pd.NA
    csv.to_csv(os.path.join(out, "panel.csv"), index=False, float_format="%.17g")

    stata = df.copy()
    stata.loc[tagged_x1, "x1"] = X1_SENTINEL
    stata.loc[tagged_x2, "x2"] = X2_SENTINEL
    labels = {"region": "region of the firm", "dest": "destination"}
    for version in (114, 117, 118, 119):
        path = os.path.join(out, f"panel_{version}.dta")
        strl = ["dest"] if version in (117, 118) else None
        stata.to_stata(
            path, version=version, write_index=False, variable_labels=labels, convert_strl=strl
        )
        patch(path, struct.pack("<d", X1_SENTINEL), X1_TAGGED_B, len(tagged_x1))
        patch(path, struct.pack("<i", X2_SENTINEL), X2_TAGGED_Z, len(tagged_x2))
        print(path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
