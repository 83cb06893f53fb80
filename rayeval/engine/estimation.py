"""CBPE in the engine: which tasks get estimates, accumulation over every evaluated row
(labelled or not) per slice x window, and the ``estimated`` table with the measured value,
the gap and a concept-shift flag next to each estimate (:mod:`rayeval.metrics.cbpe`): decided on
accuracy, whose sampling error is known in closed form (scaled to the labelled rows the
measured value stands on); the other metrics' gaps are reported, not flagged.

The ``estimated`` table never mixes with ``metrics``: one row per task, model, window, slice
and estimated metric, ``method`` = ``cbpe``; ``measured`` is the metrics table's headline value
of the same metric in the same group (NaN where there is none), ``gap`` = measured - estimated,
``concept_shift`` true when :func:`~rayeval.metrics.cbpe.concept_shift` says so.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rayeval.config import JobConfig
from rayeval.metrics.cbpe import CBPESpec, concept_shift

FAMILY = "cbpe"
ESTIMATED_COLUMNS = ["run_id", "task", "model", "window_start", "window_end", "slice",
                     "slice_columns", "metric", "average", "method", "value", "sampling_se",
                     "error_bound", "n_rows", "mature", "measured", "gap", "concept_shift"]


def cbpe_specs(cfg: JobConfig) -> dict:
    """Task name -> :class:`CBPESpec` for the tasks CBPE applies to (estimation enabled;
    binary with ``score``, multiclass with ``scores``; ``prediction`` and ``classes`` set)."""
    if not cfg.estimation.enabled:
        return {}
    out = {}
    for t in cfg.tasks:
        classes, pos = getattr(t, "classes", None), getattr(t, "positive_class", None)
        if not getattr(t, "prediction", None) or not classes:
            continue
        if t.type == "binary" and getattr(t, "score", None) and pos is not None:
            neg = [c for c in classes if c != pos]
            if len(neg) == 1:
                out[t.name] = CBPESpec((neg[0], pos), True)
        elif t.type == "multiclass" and getattr(t, "scores", None):
            out[t.name] = CBPESpec(tuple(classes), False)
    return out


def accumulate(plan, out: dict, task, table, weight, groupings: dict) -> None:
    """Add the CBPE states of ``task`` for one batch (every row, labelled or not)."""
    from rayeval.engine.columns import _batch_column

    name = {sl: plan.state_name(task.name, FAMILY, sl) for sl in groupings}
    specs = {sl: plan.specs.get(n) for sl, n in name.items()}
    spec = next((s for s in specs.values() if s is not None), None)
    if spec is None or table.num_rows == 0:
        return
    batch = {"prediction": _batch_column(table, {}, task.label, task.prediction, "class")}
    if spec.binary:
        batch["score"] = _batch_column(table, {}, task.label, task.score, "score")
    else:
        batch["scores"] = _batch_column(table, {}, task.label, tuple(task.scores), "scores")
    if weight is not None:
        batch["weight"] = weight
    sls = [sl for sl in groupings if specs[sl] is not None]
    for sl, state in zip(sls, spec.accumulate_many(batch, [groupings[sl] for sl in sls])):
        out[name[sl]] = state


def estimated_table(plan, merged: dict, run_id: str, metrics: pd.DataFrame,
                    windows: pd.DataFrame | None) -> pd.DataFrame:
    """The ``estimated`` table (:data:`ESTIMATED_COLUMNS`), in a fixed row order."""
    from rayeval.slicing import NO_WINDOW, window_end

    cfg = plan.cfg
    tol = cfg.estimation.concept_shift_tolerance
    rows = []
    for task in plan.tasks:
        for sl in plan.slices:
            name = plan.state_name(task.name, FAMILY, sl)
            spec, state = plan.specs.get(name), merged.get(name)
            if spec is None or state is None:
                continue
            for key, metric, value, se, bound, n in spec.finalize(state):
                model, win, values = key
                if win == NO_WINDOW:
                    start, end = plan.start_ns, plan.end_ns
                else:
                    start, end = int(win), window_end(int(win), cfg.windows.size)
                rows.append({"run_id": run_id, "task": task.name, "model": model,
                             "window_start": _ts(start), "window_end": _ts(end),
                             "slice": sl.render(values), "slice_columns": sl.name,
                             "metric": metric, "average": _average(metric, spec.binary),
                             "method": "cbpe", "value": value, "sampling_se": se,
                             "error_bound": bound, "n_rows": n})
    df = pd.DataFrame(rows, columns=ESTIMATED_COLUMNS[:14])
    df["window_start"] = pd.to_datetime(df["window_start"], utc=True)
    df["window_end"] = pd.to_datetime(df["window_end"], utc=True)
    if windows is not None and len(windows) and len(df):
        m = windows[["model", "window_start", "mature"]]
        df = df.merge(m, on=["model", "window_start"], how="left")
        df["mature"] = df["mature"].fillna(True).astype(bool)
    else:
        df["mature"] = True
    df["measured"], n_labeled = _measured(df, metrics)
    df["gap"] = df["measured"] - df["value"]
    # decided on accuracy, the estimate with a closed-form sampling error; the measured value
    # stands on the labelled rows only: its error grows by sqrt(rows / labelled rows)
    se = df["sampling_se"] * np.sqrt(df["n_rows"] / np.maximum(n_labeled, 1))
    df["concept_shift"] = [m == "accuracy" and concept_shift(v, x, e, tol) for m, v, x, e in
                           zip(df["metric"], df["value"], df["measured"], se)]
    order = ["task", "model", "window_start", "slice_columns", "slice", "metric"]
    return df.sort_values(order, kind="stable", ignore_index=True)[ESTIMATED_COLUMNS].astype(
        {"value": "float64", "sampling_se": "float64", "error_bound": "float64",
         "n_rows": "int64", "mature": bool, "measured": "float64", "gap": "float64",
         "concept_shift": bool})


def _average(metric: str, binary: bool) -> str | None:
    """The metrics table's ``average`` of the matching measured value."""
    if metric == "accuracy" or (binary and metric == "roc_auc"):
        return None
    return "binary" if binary else "macro"


def _ts(ns):
    return pd.NaT if ns is None else pd.Timestamp(int(ns), tz="UTC")


def _measured(est: pd.DataFrame, metrics: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The measured headline value of each estimated row's metric and group (NaN if none), and
    its labelled rows (0 if none)."""
    if est.empty or metrics.empty:
        return np.full(len(est), math.nan), np.zeros(len(est))
    m = metrics[metrics["class_label"].isna() & metrics["metric"].isin(est["metric"].unique())]
    m = m[m["average"].isna() | m["average"].isin(["binary", "macro"])]
    keys = ["task", "model", "window_start", "slice", "metric", "average"]
    m = m[keys + ["value", "n_labeled"]].rename(columns={"value": "measured"})
    e = est[keys].copy()
    # accuracy has no average; the others match the estimate's (binary or macro)
    joined = e.merge(m.drop_duplicates(keys), on=keys, how="left")
    return (joined["measured"].to_numpy(dtype=np.float64),
            joined["n_labeled"].fillna(0).to_numpy(dtype=np.float64))


def shift_warnings(est: pd.DataFrame, show: int = 5) -> list[str]:
    """Console/manifest warnings for concept shift: one per task and model."""
    out = []
    hit = est[est["concept_shift"]]
    for (task, model), g in hit.groupby(["task", "model"], sort=True):
        ex = g.iloc[0]
        out.append(f"task {task}, model {model}: measured metrics miss their CBPE estimates in "
                   f"{len(g)} slice x window x metric row(s) (e.g. {ex['metric']} on "
                   f"{ex['slice']}, window {ex['window_start']}: measured {ex['measured']:.4g} "
                   f"vs estimated {ex['value']:.4g}): possible concept shift (the scores no "
                   f"longer match P(label | score)); see the estimated table")
    return out
