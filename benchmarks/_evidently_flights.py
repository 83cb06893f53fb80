"""Evidently side of bench_drift.py (runs in /tmp/venv-evidently: evidently 0.7, pandas < 3).

    /tmp/venv-evidently/bin/python benchmarks/_evidently_flights.py MODE --predictions P \
        --labels L --out DIR [--n-slices 30] [--seed 0] [--week 2001-02-05]

Data preparation is the same in every mode and is part of the timed process: read the needed
prediction columns and the labels with pyarrow, keep the latest label per ``prediction_id`` (labels
ordered newest first, one Arrow ``index_in`` lookup), labelled rows only (Evidently's
classification metrics need the target), per model version.

Modes:

- ``overall``: per model, one ``Report([DataDriftPreset(), ClassificationPreset()])`` with
  reference = January 2001 rows, current = February-June rows (``[2001-02-01, 2001-07-01)``),
  columns = configs/flights.yaml's drift features (distance, hour numeric; origin, day_of_week,
  distance_band categorical) + ``score`` + ``delayed`` (target) + ``predicted_delayed``
  (prediction label); snapshot saved as JSON.
- ``slices``: the same report once per (model, origin, week) slice (weeks Monday-start from
  2001-02-05 to 2001-07-01 as the rayeval job; slices with >= 30 labelled rows, as rayeval's
  ``min_slice_size``), reference = that model's January rows of the same origin. Only a random
  sample of ``--n-slices`` slices is run; the per-slice time is measured on them (first one
  excluded as warm-up, reported separately) and the total count of slices is printed for the
  extrapolation.
- ``compare`` (untimed, for value comparison): data drift only, reference January vs the week
  starting ``--week``, per model, features/score/predicted class over ALL rows of the window and
  the label over the labelled rows (as rayeval's drift table for that window, slice overall).

Prints one JSON line (timings, counts, values).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

T0 = time.perf_counter()
from evidently import BinaryClassification, DataDefinition, Dataset, Report  # noqa: E402
from evidently.presets import ClassificationPreset, DataDriftPreset  # noqa: E402

IMPORT_S = time.perf_counter() - T0
REF = (pd.Timestamp("2001-01-01", tz="UTC"), pd.Timestamp("2001-02-01", tz="UTC"))
CUR = (pd.Timestamp("2001-02-01", tz="UTC"), pd.Timestamp("2001-07-01", tz="UTC"))
WEEK0 = pd.Timestamp("2001-02-05", tz="UTC")
NUM = ["distance", "hour", "score"]
CAT = ["origin", "day_of_week", "distance_band"]
COLS = NUM + CAT + ["delayed", "predicted_delayed"]


def load(pred_uri: str, label_uri: str, labelled_only: bool = True) -> pd.DataFrame:
    t = ds.dataset(pred_uri, format="parquet", partitioning="hive").to_table(
        columns=["prediction_id", "timestamp", "model", "score", "predicted_delayed", "distance",
                 "hour", "origin", "day_of_week", "distance_band"])
    lab = ds.dataset(label_uri, format="parquet", partitioning="hive").to_table(
        columns=["prediction_id", "delayed", "label_timestamp"])
    lab = lab.append_column("_pos", pa.array(np.arange(lab.num_rows)))
    lab = lab.take(pc.sort_indices(lab, [("label_timestamp", "descending"),
                                          ("_pos", "descending")]))
    pos = pc.index_in(t["prediction_id"], value_set=lab["prediction_id"]).fill_null(-1)
    pos = pos.to_numpy()
    if labelled_only:
        t = t.filter(pa.array(pos >= 0))
        pos = pos[pos >= 0]
    df = t.drop_columns(["prediction_id"]).to_pandas()
    y = lab["delayed"].to_numpy().astype(np.float64)
    df["delayed"] = np.where(pos >= 0, y[np.maximum(pos, 0)], np.nan)
    if labelled_only:
        df["delayed"] = df["delayed"].astype(np.int64)
    df["predicted_delayed"] = df["predicted_delayed"].astype(np.int64)
    df["hour"] = df["hour"].astype(np.int64)
    return df


def definition(with_target: bool = True, columns=None) -> DataDefinition:
    cols = columns or COLS
    cls = ([BinaryClassification(target="delayed", prediction_labels="predicted_delayed",
                                 prediction_probas="score", pos_label=1)] if with_target else None)
    return DataDefinition(numerical_columns=[c for c in NUM if c in cols],
                          categorical_columns=[c for c in CAT + ["delayed", "predicted_delayed"]
                                               if c in cols],
                          classification=cls)


def run_report(cur: pd.DataFrame, ref: pd.DataFrame, presets, with_target=True, columns=None):
    cols = columns or COLS
    dd = definition(with_target, cols)
    rep = Report(presets)
    return rep.run(Dataset.from_pandas(cur[cols], data_definition=dd),
                   Dataset.from_pandas(ref[cols], data_definition=dd))


def values(snap) -> dict:
    """{'drift/<column>/<method>': value, 'roc_auc': value, ...} from a snapshot."""
    out = {}
    for m in snap.dict()["metrics"]:
        cfg = m.get("config", {})
        typ = str(cfg.get("type", "")).split(":")[-1]
        v = m.get("value")
        if typ == "ValueDrift":
            out[f"drift/{cfg.get('column')}/{cfg.get('method')}"] = v
        elif typ in ("RocAuc", "Accuracy", "F1Score", "LogLoss", "Precision", "Recall"):
            out[typ] = v
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["overall", "slices", "compare"])
    ap.add_argument("--predictions", required=True)
    ap.add_argument("--labels", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n-slices", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--week", default="2001-02-05")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    os.makedirs(args.out, exist_ok=True)
    t = time.perf_counter()
    df = load(args.predictions, args.labels, labelled_only=args.mode != "compare")
    info: dict = {"mode": args.mode, "import_s": IMPORT_S, "load_s": time.perf_counter() - t,
                  "rows": int(len(df))}
    ts = df["timestamp"]
    is_ref = ((ts >= REF[0]) & (ts < REF[1])).to_numpy()
    if args.mode == "overall":
        is_cur = ((ts >= CUR[0]) & (ts < CUR[1])).to_numpy()
        info["reports"] = {}
        for model in sorted(df["model"].unique()):
            t = time.perf_counter()
            mm = (df["model"] == model).to_numpy()
            ref, cur = df[mm & is_ref], df[mm & is_cur]
            snap = run_report(cur, ref, [DataDriftPreset(), ClassificationPreset()])
            t_run = time.perf_counter() - t
            snap.save_json(os.path.join(args.out, f"evidently-{model}.json"))
            info["reports"][model] = {"seconds": time.perf_counter() - t, "run_s": t_run,
                                      "n_reference": int(len(ref)), "n_current": int(len(cur)),
                                      "values": values(snap)}
    elif args.mode == "slices":
        in_w = ((ts >= WEEK0) & (ts < CUR[1])).to_numpy()
        cur_all = df[in_w].copy()
        cur_all["week"] = ((cur_all["timestamp"] - WEEK0) // pd.Timedelta(days=7)).astype(int)
        sizes = cur_all.groupby(["model", "origin", "week"], observed=True).size()
        eligible = sizes[sizes >= 30]
        ref_all = df[is_ref]
        ref_sizes = ref_all.groupby(["model", "origin"], observed=True).size()
        has_ref = np.array([(m, o) in ref_sizes.index for m, o, _ in eligible.index])
        info["slices_total"] = int(len(eligible))
        info["slices_without_reference"] = int((~has_ref).sum())
        rng = np.random.default_rng(args.seed)
        cand = np.flatnonzero(has_ref)
        pick = rng.choice(cand, size=min(args.n_slices + 1, len(cand)), replace=False)
        cur_groups = cur_all.groupby(["model", "origin", "week"], observed=True).indices
        ref_groups = ref_all.groupby(["model", "origin"], observed=True).indices
        info["prep_s"] = time.perf_counter() - t - info["load_s"]
        per = []
        for i in pick:
            m, o, w = eligible.index[i]
            cur = cur_all.iloc[cur_groups[(m, o, w)]]
            ref = ref_all.iloc[ref_groups[(m, o)]]
            t = time.perf_counter()
            err = None
            try:
                snap = run_report(cur, ref, [DataDriftPreset(), ClassificationPreset()])
                vals = values(snap)
            except Exception as e:  # noqa: BLE001 - report and keep timing the others
                vals, err = {}, f"{type(e).__name__}: {e}"[:200]
            per.append({"model": m, "origin": o, "week_start": str((WEEK0 + pd.Timedelta(
                days=7 * int(w))).date()), "n_current": int(len(cur)), "n_reference": int(len(ref)),
                "seconds": time.perf_counter() - t, "error": err,
                "roc_auc": vals.get("RocAuc"), "accuracy": vals.get("Accuracy")})
        info["warmup"] = per[0]
        info["slices"] = per[1:]
        secs = [p["seconds"] for p in per[1:]]
        info["per_slice_mean_s"] = float(np.mean(secs))
        info["per_slice_median_s"] = float(np.median(secs))
        info["sampled_s"] = float(sum(p["seconds"] for p in per))
    else:  # compare: drift only, Jan vs one week, as rayeval's overall drift rows
        w0 = pd.Timestamp(args.week, tz="UTC")
        is_w = ((ts >= w0) & (ts < w0 + pd.Timedelta(days=7))).to_numpy()
        info["week"] = args.week
        info["reports"] = {}
        feats = NUM + CAT + ["predicted_delayed"]
        for model in sorted(df["model"].unique()):
            mm = (df["model"] == model).to_numpy()
            ref, cur = df[mm & is_ref], df[mm & is_w]
            v = values(run_report(cur, ref, [DataDriftPreset()], False, feats))
            lr, lc = ref[ref["delayed"].notna()].copy(), cur[cur["delayed"].notna()].copy()
            lr["delayed"] = lr["delayed"].astype(np.int64)
            lc["delayed"] = lc["delayed"].astype(np.int64)
            v.update(values(run_report(lc, lr, [DataDriftPreset()], False, ["delayed"])))
            info["reports"][model] = {"n_reference": int(len(ref)), "n_current": int(len(cur)),
                                      "values": v}
    info["wall_in_process"] = time.perf_counter() - T0
    print(json.dumps(info, default=str))


if __name__ == "__main__":
    main()
