"""Finalize merged partials into the tidy output tables of DESIGN section 5 (no Ray).

``metrics``: run_id, task, model, window_start, window_end, slice, slice_columns, metric,
class_label, average, value, direction, ci_lower, ci_upper, n_rows, n_labeled, undefined_reason,
error_bound. ``invalid``: rows excluded per task, family (labels / scores / regression),
model, window, slice and reason. ``confusion``: run_id, task, model, window_start, window_end, slice, slice_columns,
true_class, predicted_class, count. (``task`` is an addition to DESIGN's columns: one job can
evaluate several tasks, e.g. a classifier and its delay regressor.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rayeval.engine.plan import EvalPlan
from rayeval.io.readers import InputError
from rayeval.slicing import NO_WINDOW, SliceSpec, window_end

METRIC_COLUMNS = ["run_id", "task", "model", "window_start", "window_end", "slice",
                  "slice_columns", "metric", "class_label", "average", "value", "direction",
                  "ci_lower", "ci_upper", "n_rows", "n_labeled", "undefined_reason", "error_bound"]
INVALID_COLUMNS = ["run_id", "task", "family", "model", "window_start", "slice", "slice_columns",
                   "reason", "count"]
CONFUSION_COLUMNS = ["run_id", "task", "model", "window_start", "window_end", "slice",
                     "slice_columns", "true_class", "predicted_class", "count"]


@dataclass
class Finalized:
    """Finalized tables plus bookkeeping for the manifest and the summary."""

    metrics: pd.DataFrame
    confusion: pd.DataFrame
    coverage: pd.DataFrame
    invalid: pd.DataFrame
    counters: dict
    suppressed_slices: int
    labels_without_prediction: int | None


def check_max_slices(plan: EvalPlan, merged: dict) -> None:
    """Fail with a clear error when a slice spec has more values than ``slices.max_slices``."""
    cap = plan.cfg.slices.max_slices
    for sl in plan.slices:
        if not sl.columns:
            continue
        st = merged.get("coverage|" + sl.name)
        if st is None:
            continue
        values = {k[2] for k in st.keys}
        if len(values) > cap:
            raise InputError(f"Slice {sl.name!r} has {len(values)} distinct values, more than "
                             f"slices.max_slices={cap}; raise the cap or slice by a coarser "
                             f"column")


def _window_bounds(plan: EvalPlan, win: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    size = plan.cfg.windows.size
    if win == NO_WINDOW:
        start = pd.Timestamp(plan.start_ns, tz="UTC") if plan.start_ns is not None else pd.NaT
        end = pd.Timestamp(plan.end_ns, tz="UTC") if plan.end_ns is not None else pd.NaT
        return start, end
    return pd.Timestamp(win, tz="UTC"), pd.Timestamp(window_end(win, size), tz="UTC")


def finalize(plan: EvalPlan, merged: dict, run_id: str) -> Finalized:
    """Turn the merged partial into tidy DataFrames (metrics, confusion, coverage)."""
    check_max_slices(plan, merged)
    min_size = plan.cfg.slices.min_slice_size
    cov_rows, rows, conf_rows, inv_rows = [], [], [], []
    coverage: dict[tuple, tuple[int, int]] = {}
    bounds: dict[int, tuple] = {}
    suppressed = set()
    for sl in plan.slices:
        st = merged.get("coverage|" + sl.name)
        if st is None:
            continue
        for key, (n_rows, n_lab) in zip(st.keys, st.arrays["counts"].tolist()):
            coverage[(sl.name, key)] = (n_rows, n_lab)
            model, win, values = key
            if win not in bounds:
                bounds[win] = _window_bounds(plan, win)
            cov_rows.append({"run_id": run_id, "model": model, "window_start": bounds[win][0],
                             "window_end": bounds[win][1], "slice": sl.render(values),
                             "slice_columns": ",".join(sl.columns), "n_rows": n_rows,
                             "n_labeled": n_lab,
                             "label_coverage": n_lab / n_rows if n_rows else math.nan})
            if sl.columns and n_lab < min_size:
                suppressed.add((sl.name, key))
    for task in plan.tasks:
        for sl in plan.slices:
            for family in ("labels", "scores", "regression"):
                name = plan.state_name(task.name, family, sl)
                spec, state = plan.specs.get(name), merged.get(name)
                if spec is None or state is None:
                    continue
                for r in spec.finalize(state):
                    if (sl.name, r.key) in suppressed:
                        continue
                    metric = r.metric
                    if family == "scores" and metric == "n_rows":
                        metric = "n_rows_scored"  # rows valid for the score metrics
                    rows.append(_metric_row(run_id, task.name, sl, r, metric, coverage, bounds,
                                            plan))
                for key, reasons in spec.invalid_counts(state).items():
                    model, win, values = key
                    if win not in bounds:
                        bounds[win] = _window_bounds(plan, win)
                    for reason, count in reasons.items():
                        if count:
                            inv_rows.append({
                                "run_id": run_id, "task": task.name, "family": family,
                                "model": model, "window_start": bounds[win][0],
                                "slice": sl.render(values), "slice_columns": ",".join(sl.columns),
                                "reason": reason, "count": int(count)})
                if family == "labels" and hasattr(spec, "confusion_records"):
                    for key, t, p, c in spec.confusion_records(state):
                        if (sl.name, key) in suppressed:
                            continue
                        model, win, values = key
                        if win not in bounds:
                            bounds[win] = _window_bounds(plan, win)
                        conf_rows.append({
                            "run_id": run_id, "task": task.name, "model": model,
                            "window_start": bounds[win][0], "window_end": bounds[win][1],
                            "slice": sl.render(values), "slice_columns": ",".join(sl.columns),
                            "true_class": str(t), "predicted_class": str(p), "count": float(c)})
    metrics = pd.DataFrame.from_records(rows, columns=METRIC_COLUMNS)
    metrics = metrics.sort_values(["task", "model", "window_start", "slice_columns", "slice",
                                   "metric", "class_label"], na_position="first",
                                  kind="stable").reset_index(drop=True)
    matched = merged.get("_matched")
    no_pred = None
    if plan.labels is not None:
        n_matched = int(np.unpackbits(matched)[:plan.labels.n_labels].sum()) if matched is not None else 0
        no_pred = plan.labels.n_labels - n_matched
    invalid = pd.DataFrame(inv_rows, columns=INVALID_COLUMNS)
    return Finalized(metrics, pd.DataFrame(conf_rows, columns=CONFUSION_COLUMNS),
                     pd.DataFrame(cov_rows), invalid, dict(merged["_counters"]), len(suppressed),
                     no_pred)


def invalid_totals(invalid: pd.DataFrame) -> dict:
    """``{task/family/reason: rows}`` over the overall slice (the manifest's invalid counts)."""
    ov = invalid[invalid["slice"] == "overall"]
    g = ov.groupby(["task", "family", "reason"])["count"].sum()
    return {f"{t}/{f}/{r}": int(c) for (t, f, r), c in g.items()}


def _metric_row(run_id, task, sl: SliceSpec, r, metric, coverage, bounds, plan) -> tuple:
    """One ``metrics`` row as a tuple in :data:`METRIC_COLUMNS` order (tuples: finalize builds
    hundreds of thousands of rows)."""
    model, win, values = r.key
    ctx = bounds.get((sl.name, r.key))
    if ctx is None:  # per-group context, computed once per group (not per metric)
        if win not in bounds:
            bounds[win] = _window_bounds(plan, win)
        n_rows, n_lab = coverage.get((sl.name, r.key), (0, 0))
        ctx = bounds[(sl.name, r.key)] = (bounds[win][0], bounds[win][1], sl.render(values),
                                           ",".join(sl.columns), n_rows, n_lab)
    ws, we, slice_str, slice_cols, n_rows, n_lab = ctx
    return (run_id, task, model, ws, we, slice_str, slice_cols, metric,
            None if r.class_label is None else str(r.class_label), r.average, float(r.value),
            r.direction, math.nan, math.nan, n_rows, n_lab, r.undefined_reason,
            float(r.error_bound))
