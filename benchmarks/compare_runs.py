"""Compare the tables of two rayeval runs (before / after a refactor) row for row: the check
that a change leaves a job's outputs unchanged (issue 14: the flights job on a 1% sample, main
before the contract refactor vs after, was ALL EQUAL, bit for bit).

Usage: python benchmarks/compare_runs.py BEFORE_DIR AFTER_DIR RUN_ID
Metric renames of issue 14 are applied to BEFORE; metrics new in AFTER (jaccard) are dropped.
Float columns must agree to 1e-9 relative (sums in another order), everything else exactly.
"""
import json
import sys

import numpy as np
import pandas as pd

RENAMED = {"brier_score": "brier_loss", "mean_error": "mean_signed_deviation"}
NEW = {"jaccard"}
before, after, run_id = sys.argv[1:4]
ok = True
for table in ("metrics", "confusion", "coverage", "invalid", "drift", "drift_histograms", "gates"):
    try:
        a = pd.read_parquet(f"{before}/{table}").drop(columns=["run_date"], errors="ignore")
        b = pd.read_parquet(f"{after}/{table}").drop(columns=["run_date"], errors="ignore")
    except FileNotFoundError as e:
        print(table, "missing:", e)
        ok = False
        continue
    if table == "metrics":
        a["metric"] = a["metric"].replace(RENAMED)
        b = b[~b["metric"].isin(NEW)]
    a, b = a.reset_index(drop=True), b.reset_index(drop=True)
    problems = []
    if list(a.columns) != list(b.columns):
        problems.append(f"columns {list(a.columns)} != {list(b.columns)}")
    elif len(a) != len(b):
        problems.append(f"rows {len(a)} != {len(b)}")
    else:
        if table == "metrics":  # same order after the rename? (rows are sorted by metric)
            keys = ["task", "model", "window_start", "slice", "metric", "class_label", "average"]
            a = a.sort_values(keys, kind="stable", na_position="first").reset_index(drop=True)
            b = b.sort_values(keys, kind="stable", na_position="first").reset_index(drop=True)
        for c in a.columns:
            x, y = a[c], b[c]
            if str(x.dtype) != str(y.dtype):
                problems.append(f"{c}: dtype {x.dtype} != {y.dtype}")
            elif pd.api.types.is_float_dtype(x):
                xv, yv = x.to_numpy(), y.to_numpy()
                same = (np.isnan(xv) & np.isnan(yv)) | np.isclose(xv, yv, rtol=1e-9, atol=1e-12)
                if not same.all():
                    i = np.flatnonzero(~same)[:3]
                    problems.append(f"{c}: {int((~same).sum())} values differ, e.g. rows {i.tolist()}: "
                                    f"{xv[i].tolist()} vs {yv[i].tolist()}")
                elif not np.array_equal(xv, yv, equal_nan=True):
                    d = np.nanmax(np.abs(xv - yv) / np.maximum(np.abs(xv), 1e-300))
                    print(f"  {table}.{c}: equal within {d:.1e} relative (not bit for bit)")
            else:
                neq = ~((x == y) | (x.isna() & y.isna()))
                if neq.any():
                    i = np.flatnonzero(neq.to_numpy())[:3]
                    problems.append(f"{c}: {int(neq.sum())} values differ, e.g. {x.iloc[i].tolist()} vs {y.iloc[i].tolist()}")
    print(f"{table}: {len(a)} rows before, {len(b)} after:", "EQUAL" if not problems else "DIFFERENT")
    for p in problems:
        print("   ", p)
    ok &= not problems
ma = json.load(open(f"{before}/manifests/{run_id}.json"))
mb = json.load(open(f"{after}/manifests/{run_id}.json"))
same_counts = ma["row_counts"] == mb["row_counts"]
print("manifest row_counts:", "EQUAL" if same_counts else f"DIFFERENT {ma['row_counts']} {mb['row_counts']}")
ok &= same_counts
print("ALL EQUAL" if ok else "DIFFERENCES FOUND")
sys.exit(0 if ok else 1)
