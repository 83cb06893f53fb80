"""Baseline for bench_registry.py: score the registered champion and challenger with
``mlflow.pyfunc`` in one process, then evaluate them per slice and week with pandas + numpy.

Run as its own process by bench_registry.py (its wall time and peak memory measured as
``rayeval run``'s)::

    .venv/bin/python benchmarks/_pyfunc_flights.py --features F --labels L --registry URI \\
        --model flights-delay --out values.parquet

What it does: read the feature rows of [2001-02-05, 2001-07-01) with pyarrow (only the needed
columns); ``mlflow.pyfunc.load_model`` of ``models:/<model>@champion`` and ``@challenger``;
``predict`` on all rows (one call per model: pyfunc's fastest use); the latest label per id
joined by one Arrow hash lookup (as ``_pandas_flights.py``); then, per model, week and slice of
the flights slicings (overall, origin, destination, origin_state, distance_band, hour_band,
origin x hour_band; groups under 30 labelled rows dropped), ROC AUC and average precision
(exact, vectorised: ``_pandas_flights.auc_ap_numpy``), accuracy, log loss and Brier score
from one ``groupby.sum`` per slicing. Prints one JSON line of stage timings.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from _pandas_flights import END, EPS, MIN_SLICE, SLICINGS, START, auc_ap_numpy

FEATURES = ["hour", "distance", "day_of_week", "origin_state"]
SLICE_COLS = ["origin", "destination", "origin_state", "distance_band", "hour_band"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", required=True)
    ap.add_argument("--labels", required=True)
    ap.add_argument("--registry", required=True)
    ap.add_argument("--model", default="flights-delay")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    import mlflow

    mlflow.set_tracking_uri(a.registry)
    mlflow.set_registry_uri(a.registry)
    t = {}
    t0 = time.perf_counter()
    fset = ds.dataset(a.features, format="parquet", partitioning="hive")
    ts = ds.field("timestamp")
    filt = (ts >= pa.scalar(START.to_pydatetime(), pa.timestamp("us", "UTC"))) & (
        ts < pa.scalar(END.to_pydatetime(), pa.timestamp("us", "UTC")))
    tab = fset.to_table(columns=list(dict.fromkeys(
        ["prediction_id", "timestamp"] + SLICE_COLS + FEATURES)), filter=filt)
    x = tab.select(FEATURES).to_pandas()
    t["read"] = time.perf_counter() - t0
    scores = {}
    for alias in ("champion", "challenger"):
        t1 = time.perf_counter()
        model = mlflow.pyfunc.load_model(f"models:/{a.model}@{alias}")
        out = model.predict(x)
        scores[alias] = np.asarray(out)[:, 1].astype(np.float64)
        t[f"score_{alias}"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    lab = ds.dataset(a.labels, format="parquet", partitioning="hive").to_table(
        columns=["prediction_id", "delayed", "label_timestamp"])
    lab = lab.append_column("_pos", pa.array(np.arange(lab.num_rows)))
    lab = lab.take(pc.sort_indices(lab, [("label_timestamp", "descending"),
                                          ("_pos", "descending")]))
    pos = pc.index_in(tab["prediction_id"], value_set=lab["prediction_id"])
    pos = pos.fill_null(-1).to_numpy()
    labeled = pos >= 0
    base = tab.drop_columns(["prediction_id"]).filter(pa.array(labeled))
    for name in SLICE_COLS:
        base = base.set_column(base.schema.get_field_index(name), name,
                               pc.dictionary_encode(base[name]))
    bdf = base.to_pandas()
    y1 = lab["delayed"].to_numpy()[pos[labeled]].astype(np.float64)
    frames = []
    for alias, s in scores.items():
        f = bdf.copy()
        f["model"] = alias
        f["score"] = s[labeled]
        f["delayed"] = y1
        frames.append(f)
    df = pd.concat(frames, ignore_index=True)
    df["model"] = df["model"].astype("category")
    df["week"] = ((df["timestamp"] - START) // pd.Timedelta(days=7)).astype(np.int16)
    t["join"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    y, s = df["delayed"].to_numpy(), df["score"].to_numpy()
    yhat = (s >= 0.5).astype(np.float64)
    q = np.where(y == 1, s, 1.0 - s)
    terms = pd.DataFrame({"n": np.ones(len(df)), "correct": (y == yhat).astype(np.float64),
                          "ll": -np.log(np.clip(q, EPS, 1.0 - EPS)), "brier": (s - y) ** 2})
    by_score = np.argsort(-s, kind="stable")
    results = []
    for cols in SLICINGS:
        keys = [df["model"], df["week"]] + [df[c] for c in cols]
        gb = terms.groupby(keys, observed=True, sort=True)
        codes = gb.ngroup().to_numpy()
        sums = gb.sum()
        n = sums["n"].to_numpy()
        auc, apv = auc_ap_numpy(codes, y, s, len(n), by_score)
        keep = np.ones(len(n), dtype=bool) if not cols else n >= MIN_SLICE
        res = pd.DataFrame({"n_labeled": n, "accuracy": sums["correct"].to_numpy() / n,
                            "log_loss": sums["ll"].to_numpy() / n,
                            "brier_score": sums["brier"].to_numpy() / n, "roc_auc": auc,
                            "pr_auc": apv}, index=sums.index)[keep]
        idx = res.index.to_frame(index=False)
        res = res.reset_index(drop=True)
        res["model"] = idx.iloc[:, 0].astype(str).to_numpy()
        res["window_start"] = START + pd.to_timedelta(
            idx.iloc[:, 1].to_numpy().astype(np.int64) * 7, unit="D")
        res["slice"] = ("overall" if not cols else
                        [",".join(f"{c}={v}" for c, v in zip(cols, vals))
                         for vals in idx.iloc[:, 2:].astype(str).itertuples(index=False)])
        results.append(res)
    out = pd.concat(results, ignore_index=True)
    t["metrics"] = time.perf_counter() - t1
    out.to_parquet(a.out, index=False)
    t["total"] = time.perf_counter() - t0
    print(json.dumps({"timings": {k: round(v, 3) for k, v in t.items()}, "groups": len(out),
                      "rows_scored": int(len(x)) * 2}))


if __name__ == "__main__":
    main()
