"""Baseline for bench_flights.py: the flights job's per-slice metrics with pandas (+ scikit-learn).

Run as its own process by bench_flights.py (so that its wall time and peak memory are measured the
same way as ``rayeval run``)::

    .venv/bin/python benchmarks/_pandas_flights.py --predictions P --labels L --out values.parquet \
        --auc sklearn|numpy [--sample-frac F] [--seed 0]

What it computes (the subset of configs/flights.yaml's metrics asked for by the benchmark):
read predictions + labels with pyarrow (only the needed columns, timestamps filtered to
[2001-02-05, 2001-07-01)), keep the latest label per prediction_id (by label_timestamp), weekly
windows starting Monday 2001-02-05, slices overall / origin / destination / origin_state /
distance_band / hour_band / origin x hour_band, per model; groups with fewer than 30 labelled rows
dropped (except overall), as rayeval's ``min_slice_size: 30``. Per group on the labelled rows:
ROC AUC, PR AUC (average precision), F1 (positive class 1), accuracy, log loss, Brier
(task ``delayed``); MAE, RMSE, R2 (task ``delay_minutes``).

Best configuration we could make: strings dictionary-encoded at read (categorical group keys);
labels joined by one Arrow hash lookup (``pyarrow.compute.index_in`` against the labels sorted
newest first, which also keeps the latest label per id: 4-5x faster than pandas
``drop_duplicates`` + ``Index.get_indexer`` on string ids, no merge/copy of the predictions); each
slicing grouped ONCE with every additive term (counts, sums of log-loss and Brier terms, errors,
squared errors) aggregated in a single ``groupby.sum`` and the per-group metrics derived
vectorised (R2 from the group variance of the target). Only ROC AUC and average precision need
the rows of a group sorted:

- ``--auc sklearn``: ``roc_auc_score`` / ``average_precision_score`` per group (rows of each
  group taken from one stable argsort of the group codes). With ``--sample-frac F`` only a random
  fraction F of each slicing's groups gets the sklearn calls; their time is extrapolated to all
  groups and reported as such (``extrapolated_wall``).
- ``--auc numpy``: fully vectorised and exact: the rows sorted once by descending score, then
  per slicing a stable radix sort by the 16-bit group code; tie blocks, trapezoid ROC AUC and step-wise average precision per group from cumulative counts
  (the same formulas as scikit-learn; no per-group Python).

Prints one JSON line with stage timings (and the extrapolation when sampling).
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

START = pd.Timestamp("2001-02-05", tz="UTC")
END = pd.Timestamp("2001-07-01", tz="UTC")
MIN_SLICE = 30
SLICINGS = [(), ("origin",), ("destination",), ("origin_state",), ("distance_band",),
            ("hour_band",), ("origin", "hour_band")]
PRED_COLS = ["prediction_id", "timestamp", "model", "predicted_delayed", "score",
             "predicted_delay", "origin", "destination", "origin_state", "distance_band",
             "hour_band"]
EPS = float(np.finfo(np.float64).eps)


def load(pred_uri: str, label_uri: str) -> pd.DataFrame:
    pdset = ds.dataset(pred_uri, format="parquet", partitioning="hive")
    ts = ds.field("timestamp")
    filt = (ts >= pa.scalar(START.to_pydatetime(), pa.timestamp("us", "UTC"))) & (
        ts < pa.scalar(END.to_pydatetime(), pa.timestamp("us", "UTC")))
    t = pdset.to_table(columns=PRED_COLS, filter=filt)
    for name in ("model", "origin", "destination", "origin_state", "distance_band", "hour_band"):
        t = t.set_column(t.schema.get_field_index(name), name, pc.dictionary_encode(t[name]))
    lab = ds.dataset(label_uri, format="parquet", partitioning="hive").to_table(
        columns=["prediction_id", "delayed", "delay_minutes", "label_timestamp"])
    # latest label per id (ties: the last row read): order the labels newest first; index_in
    # returns the position of an id's FIRST occurrence in the value set, i.e. its latest label
    lab = lab.append_column("_pos", pa.array(np.arange(lab.num_rows)))
    lab = lab.take(pc.sort_indices(lab, [("label_timestamp", "descending"),
                                          ("_pos", "descending")]))
    pos = pc.index_in(t["prediction_id"], value_set=lab["prediction_id"])
    pos = pos.fill_null(-1).to_numpy()
    labeled = pos >= 0
    t = t.drop_columns(["prediction_id"]).filter(pa.array(labeled))
    p = pos[labeled]
    df = t.to_pandas()
    df["delayed"] = lab["delayed"].to_numpy()[p].astype(np.float64)
    df["delay_minutes"] = lab["delay_minutes"].to_numpy()[p]
    df["week"] = ((df["timestamp"] - START) // pd.Timedelta(days=7)).astype(np.int16)
    return df


def additive_terms(df: pd.DataFrame) -> pd.DataFrame:
    y = df["delayed"].to_numpy()
    yhat = df["predicted_delayed"].to_numpy().astype(np.float64)
    s = df["score"].to_numpy()
    q = np.where(y == 1, s, 1.0 - s)
    err = df["predicted_delay"].to_numpy() - df["delay_minutes"].to_numpy()
    return pd.DataFrame({
        "n": np.ones(len(df)), "pos": y, "tp": y * yhat, "pp": yhat,
        "correct": (y == yhat).astype(np.float64),
        "ll": -np.log(np.clip(q, EPS, 1.0 - EPS)), "brier": (s - y) ** 2,
        "ae": np.abs(err), "se": err * err, "yr": df["delay_minutes"].to_numpy()})


def group_order(codes: np.ndarray, n_groups: int, by_score: np.ndarray | None = None):
    """Stable order of the rows by group code (radix sort when the codes fit 16 bits); applied
    on top of ``by_score`` (rows sorted by descending score) when given."""
    c = codes if by_score is None else codes[by_score]
    c = c.astype(np.uint16) if n_groups <= 65536 else c
    o = np.argsort(c, kind="stable")
    return o if by_score is None else by_score[o]


def auc_ap_numpy(codes: np.ndarray, y: np.ndarray, s: np.ndarray, n_groups: int,
                 by_score: np.ndarray):
    """Exact ROC AUC and average precision per group, vectorised over all groups."""
    order = group_order(codes, n_groups, by_score)  # by group, score descending inside
    g, ys, ss = codes[order], y[order], s[order]
    n = len(g)
    last = np.ones(n, dtype=bool)  # last row of a (group, score) tie block
    last[:-1] = (g[1:] != g[:-1]) | (ss[1:] != ss[:-1])
    counts = np.bincount(g, minlength=n_groups)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ctp = np.cumsum(ys)
    tp0 = np.concatenate([[0.0], ctp])[start]  # cumulative positives before each group
    idx = np.flatnonzero(last)
    ge = g[idx]
    tp = ctp[idx] - tp0[ge]
    fp = (idx + 1 - start[ge]) - tp
    first = np.ones(len(ge), dtype=bool)
    first[1:] = ge[1:] != ge[:-1]
    tp_prev = np.where(first, 0.0, np.concatenate([[0.0], tp[:-1]]))
    fp_prev = np.where(first, 0.0, np.concatenate([[0.0], fp[:-1]]))
    P = np.bincount(g, weights=ys, minlength=n_groups)
    N = counts - P
    area = np.bincount(ge, weights=(fp - fp_prev) * (tp + tp_prev) / 2, minlength=n_groups)
    ap_sum = np.bincount(ge, weights=(tp - tp_prev) * tp / (tp + fp), minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.where((P > 0) & (N > 0), area / (P * N), np.nan)
        ap = np.where(P > 0, ap_sum / P, np.nan)
    return auc, ap


def auc_ap_sklearn(codes, y, s, n_groups, todo: np.ndarray):
    from sklearn.metrics import average_precision_score, roc_auc_score

    order = group_order(codes, n_groups)
    bounds = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=n_groups))])
    auc = np.full(n_groups, np.nan)
    ap = np.full(n_groups, np.nan)
    for gi in todo:
        rows = order[bounds[gi]:bounds[gi + 1]]
        yy, sc = y[rows], s[rows]
        npos = yy.sum()
        if 0 < npos < len(yy):
            auc[gi] = roc_auc_score(yy, sc)
        if npos > 0:
            ap[gi] = average_precision_score(yy, sc)
    return auc, ap


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--predictions", required=True)
    ap.add_argument("--labels", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--auc", choices=["sklearn", "numpy"], default="sklearn")
    ap.add_argument("--sample-frac", type=float, default=1.0,
                    help="sklearn AUC calls on this random fraction of each slicing's groups; "
                         "their time is extrapolated to all groups")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    df = load(args.predictions, args.labels)
    timings["load_join"] = time.perf_counter() - t0
    terms = additive_terms(df)
    y = df["delayed"].to_numpy()
    s = df["score"].to_numpy()
    out = []
    n_groups_total = n_sklearn = 0
    t_auc = 0.0
    t_sk_sample = 0.0
    rng = np.random.default_rng(args.seed)
    sampling = args.auc == "sklearn" and args.sample_frac < 1.0
    by_score = None
    for cols in SLICINGS:
        t1 = time.perf_counter()
        keys = [df["model"], df["week"]] + [df[c] for c in cols]
        gb = terms.groupby(keys, observed=True, sort=True)
        codes = gb.ngroup().to_numpy()
        sums = gb.sum()
        var_y = gb["yr"].var(ddof=0).to_numpy()
        n = sums["n"].to_numpy()
        keep = np.ones(len(n), dtype=bool) if not cols else n >= MIN_SLICE
        res = pd.DataFrame(index=sums.index)
        res["n_labeled"] = n
        res["accuracy"] = sums["correct"] / n
        denom = (sums["pp"] + sums["pos"]).to_numpy()  # 2TP + FP + FN
        with np.errstate(invalid="ignore", divide="ignore"):  # sklearn: 0.0 when undefined
            res["f1"] = np.where(denom > 0, 2 * sums["tp"].to_numpy() / denom, 0.0)
        res["log_loss"] = sums["ll"] / n
        res["brier_loss"] = sums["brier"] / n
        res["mae"] = sums["ae"] / n
        res["rmse"] = np.sqrt(sums["se"] / n)
        with np.errstate(invalid="ignore", divide="ignore"):
            res["r2"] = np.where(var_y > 0, 1.0 - sums["se"].to_numpy() / (var_y * n), np.nan)
        timings[f"groupby[{','.join(cols) or 'overall'}]"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        ng = len(n)
        if args.auc == "numpy":
            if by_score is None:
                by_score = np.argsort(-s, kind="stable")
            auc, apv = auc_ap_numpy(codes, y, s, ng, by_score)
        else:
            todo = np.flatnonzero(keep)
            if args.sample_frac < 1.0 and len(todo) > 0:
                k = max(1, round(args.sample_frac * len(todo)))
                todo = np.sort(rng.choice(todo, size=k, replace=False))
            t3 = time.perf_counter()
            auc, apv = auc_ap_sklearn(codes, y, s, ng, todo)
            dt = time.perf_counter() - t3
            n_sklearn += len(todo)
            t_sk_sample += dt
            if sampling:
                t_auc += dt * keep.sum() / max(len(todo), 1)
        if not sampling:
            t_auc += time.perf_counter() - t2
        res["roc_auc"] = auc
        res["pr_auc"] = apv
        res = res[keep]
        n_groups_total += int(keep.sum())
        idx = res.index.to_frame(index=False)
        flat = pd.DataFrame({"model": idx.iloc[:, 0].astype(str).to_numpy(),
                             "window_start": START + pd.to_timedelta(
                                 idx.iloc[:, 1].to_numpy().astype(np.int64) * 7, unit="D"),
                             "slice_columns": ",".join(cols)})
        if cols:
            flat["slice"] = [",".join(f"{c}={v}" for c, v in zip(cols, vals))
                             for vals in idx.iloc[:, 2:].astype(str).itertuples(index=False)]
        else:
            flat["slice"] = "overall"
        out.append(pd.concat([flat, res.reset_index(drop=True)], axis=1))
    values = pd.concat(out, ignore_index=True)
    timings["auc_part" + ("_extrapolated" if sampling else "")] = t_auc
    wall_measured = time.perf_counter() - t0
    values.to_parquet(args.out)
    info = {"groups": n_groups_total, "rows_labeled": int(len(df)), "timings": timings,
            "wall_in_process": wall_measured, "auc": args.auc}
    if sampling:
        info.update(sklearn_groups_timed=n_sklearn, sklearn_seconds_timed=t_sk_sample,
                    extrapolated_wall=wall_measured - t_sk_sample + t_auc)
    print(json.dumps(info))


if __name__ == "__main__":
    main()
