"""Finalize merged partials into the tidy output tables of DESIGN section 5 (no Ray).

``metrics``: run_id, task, model, window_start, window_end, slice, slice_columns, metric,
class_label, average, value, direction, ci_lower, ci_upper, ci_method (``wilson``, ``delong``,
``bootstrap`` or null: no interval), ci_flag (``few_rows``, ``few_positives_or_negatives`` or
null: see :mod:`rayeval.stats.metric_intervals`), n_rows, n_labeled, undefined_reason,
error_bound. ``invalid``: rows excluded per task, family (labels / scores / regression),
model, window, slice and reason. ``confusion``: run_id, task, model, window_start, window_end, slice, slice_columns,
true_class, predicted_class, count. (``task`` is an addition to DESIGN's columns: one job can
evaluate several tasks, e.g. a classifier and its delay regressor.)

The tables are built column by column: what repeats on every row of a group (model, window
bounds, slice string, row counts) is computed once per group (:class:`_SliceGroups`, in
:mod:`rayeval.engine.table_builder`), each
``spec.finalize`` result list becomes a chunk of columns, and every column is concatenated and
turned into a DataFrame column once. Column dtypes are what pandas infers from the Python values
(as if the table were built from records).
"""

from __future__ import annotations

import contextlib
import gc
import math
from dataclasses import dataclass, field
from itertools import compress

import numpy as np
import pandas as pd

from rayeval.engine.comparisons import ComparisonBuilder, empty_comparisons
from rayeval.engine.plan import REPLICATES, EvalPlan
from rayeval.engine.table_builder import _Coded, _SliceGroups, _Table, _WindowBounds
from rayeval.io.readers import InputError
from rayeval.core import registry
from rayeval.core.state import ResultColumns
from rayeval.stats.metric_intervals import interval_columns

METRIC_COLUMNS = ["run_id", "task", "model", "window_start", "window_end", "slice",
                  "slice_columns", "metric", "class_label", "average", "value", "direction",
                  "ci_lower", "ci_upper", "ci_method", "ci_flag", "n_rows", "n_labeled",
                  "undefined_reason", "error_bound"]
INVALID_COLUMNS = ["run_id", "task", "family", "model", "window_start", "slice", "slice_columns",
                   "reason", "count"]
CONFUSION_COLUMNS = ["run_id", "task", "model", "window_start", "window_end", "slice",
                     "slice_columns", "true_class", "predicted_class", "count"]
COVERAGE_COLUMNS = ["run_id", "model", "window_start", "window_end", "slice", "slice_columns",
                    "n_rows", "n_labeled", "label_coverage"]
METRIC_ORDER = ["task", "model", "window_start", "slice_columns", "slice", "metric",
                "class_label"]
# the other tables are ordered too, so a rerun writes the same rows in the same order (the
# merged states list their groups in the order Ray's workers met them)
CONFUSION_ORDER = ["task", "model", "window_start", "slice_columns", "slice", "true_class",
                   "predicted_class"]
COVERAGE_ORDER = ["model", "window_start", "slice_columns", "slice"]
INVALID_ORDER = ["task", "family", "model", "window_start", "slice_columns", "slice", "reason"]


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
    comparisons: pd.DataFrame = field(default_factory=lambda: empty_comparisons())


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


@contextlib.contextmanager
def paused_gc():
    """Pause Python's cyclic garbage collector for the block (restored afterwards).

    Finalizing allocates millions of small long-lived objects (metric results, column values);
    every full collection would traverse all of them again (a quarter of finalize's time on the
    flights job). Reference counting still frees memory meanwhile.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def finalize(plan: EvalPlan, merged: dict, run_id: str) -> Finalized:
    """Turn the merged partial into tidy DataFrames (metrics, confusion, coverage, invalid).

    Args:
        plan: the plan the partial was built with.
        merged: the merged partial (state name -> state, ``_counters``, ``_matched``).
        run_id: written into every row.

    Returns:
        :class:`Finalized`; ``metrics`` sorted by :data:`METRIC_ORDER`, the other tables by
        their ``*_ORDER`` columns (missing first, stable), so reruns write identical tables.

    Raises:
        InputError: a slice spec has more values than ``slices.max_slices``.
    """
    with paused_gc():
        return _finalize(plan, merged, run_id)


def _finalize(plan: EvalPlan, merged: dict, run_id: str) -> Finalized:
    check_max_slices(plan, merged)
    windows = _WindowBounds(plan)
    min_size = plan.cfg.slices.min_slice_size
    coverage = _Table(COVERAGE_COLUMNS)
    groups: dict[str, _SliceGroups] = {}
    for sl in plan.slices:
        sg = groups[sl.name] = _SliceGroups(sl, windows, min_size)
        st = merged.get("coverage|" + sl.name)
        if st is None:
            continue
        counts = np.asarray(st.arrays["counts"])
        for key, (n_rows, n_lab) in zip(st.keys, counts.tolist()):
            sg.add(key, n_rows, n_lab, True)
        g = np.arange(len(st.keys))
        n_rows, n_lab = counts[:, 0], counts[:, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            cover = np.where(n_rows != 0, n_lab / np.where(n_rows != 0, n_rows, 1), math.nan)
        coverage.add(len(g), run_id=run_id, label_coverage=cover,
                     **sg.context(g, COVERAGE_COLUMNS[1:-1]))
    n_suppressed = sum(sum(sg.suppressed) for sg in groups.values())  # distinct groups

    metrics = _Table(METRIC_COLUMNS)
    comparisons = ComparisonBuilder(plan, merged, run_id)
    confusion = _Table(CONFUSION_COLUMNS)
    invalid = _Table(INVALID_COLUMNS)
    for task in plan.tasks:
        for sl in plan.slices:
            sg = groups[sl.name]
            for family in registry.families():
                name = plan.state_name(task.name, family, sl)
                spec, state = plan.specs.get(name), merged.get(name)
                if spec is None or state is None:
                    continue
                cols = spec.finalize_columns(state)
                ci = None
                if plan.cfg.intervals.enabled:
                    rep, rep_state = (plan.replicated.get(REPLICATES + name),
                                      merged.get(REPLICATES + name))
                    reps, rep_keys = {}, ()
                    if rep is not None and rep_state is not None:  # reported groups only
                        shown = [i for i, k in enumerate(rep_state.keys)
                                 if not _suppressed(sg, k)]
                        reps = rep.values(rep_state, np.array(shown, dtype=np.int64))
                        rep_keys = tuple(rep_state.keys[i] for i in shown)
                    ci = interval_columns(spec, state, cols, plan.cfg.intervals.level, reps,
                                          rep_keys)
                    comparisons.add(task.name, sl, sg, cols, reps, rep_keys)
                _add_metrics(metrics, sg, cols, run_id, task.name, family, ci)
                _add_invalid(invalid, sg, spec.invalid_counts(state), run_id, task.name, family)
                _add_confusion(confusion, sg, spec.confusion_records(state), run_id,
                               task.name)
    metrics_df = _selected(metrics.frame(order_by=METRIC_ORDER), plan.cfg.tasks)
    matched = merged.get("_matched")
    no_pred = None
    if plan.labels is not None:
        n_matched = int(np.unpackbits(matched)[:plan.labels.n_labels].sum()) if matched is not None else 0
        no_pred = plan.labels.n_labels - n_matched
    coverage_df = (coverage.frame(order_by=COVERAGE_ORDER) if coverage.n
                   else pd.DataFrame([]))  # no rows: no columns
    return Finalized(metrics_df, confusion.frame(order_by=CONFUSION_ORDER), coverage_df,
                     invalid.frame(order_by=INVALID_ORDER),
                     dict(merged["_counters"]), n_suppressed, no_pred, comparisons.frame())


def _suppressed(sg: _SliceGroups, key) -> bool:
    """Whether group ``key`` of a slice spec is suppressed (too few labelled rows)."""
    g = sg.position.get(key)
    return g is not None and sg.suppressed[g]


def _selected(metrics: pd.DataFrame, tasks) -> pd.DataFrame:
    """``metrics`` without the rows a task's ``metrics`` list leaves out (row order kept)."""
    drop = np.zeros(len(metrics), dtype=bool)
    for task in tasks:
        if task.metrics is not None and len(metrics):
            drop |= ((metrics["task"] == task.name)
                     & ~metrics["metric"].isin(task.metrics)).to_numpy()
    return metrics[~drop].reset_index(drop=True) if drop.any() else metrics


def _add_metrics(table: _Table, sg: _SliceGroups, results: ResultColumns, run_id: str,
                 task: str, family: str, ci: dict | None = None) -> None:
    """Append the finalized columns of one (task, slice spec, family) to ``table``, without
    the suppressed groups; metric names as the family registered them for the outputs
    (family ``scores`` reports its ``n_rows`` as ``n_rows_scored``: rows valid for the score
    metrics)."""
    if not len(results):
        return
    g = sg.numbers(results.keys)[results.group]
    keep = sg.unsuppressed(g)
    if keep is not None:
        g = g[keep]

    def pick(a: np.ndarray) -> np.ndarray:
        return a if keep is None else a[keep]

    text = {}
    renames = registry.output_names(family)
    for name, (values, codes) in results.text.items():
        if name == "metric" and renames:
            values = [renames.get(m, m) for m in values]
        elif name == "class_label":
            values = [None if v is None else str(v) for v in values]
        elif name == "undefined_reason":  # defined: null, as every missing value of a table
            values = [v or None for v in values]
        text[name] = _Coded(list(values), pick(codes))
    if ci is None:
        nan = np.full(len(g), math.nan)
        none = _Coded([None], np.zeros(len(g), dtype=np.int64))
        intervals = {"ci_lower": nan, "ci_upper": nan, "ci_method": none, "ci_flag": none}
    else:  # no method / no flag: null, as every missing value of a table
        intervals = {k: _Coded([x or None for x in v[0]], pick(v[1])) if isinstance(v, tuple)
                     else pick(v) for k, v in ci.items()}
    table.add(len(g), run_id=run_id, task=task, value=pick(results.value), **intervals,
              error_bound=pick(results.error_bound), **text,
              **sg.context(g, ("model", "window_start", "window_end", "slice", "slice_columns",
                               "n_rows", "n_labeled")))


def _add_invalid(table: _Table, sg: _SliceGroups, counts: dict, run_id: str, task: str,
                 family: str) -> None:
    """Append the non-zero ``{key: {reason: count}}`` of one (task, slice spec, family)."""
    keys, reasons, values = [], [], []
    for key, by_reason in counts.items():
        for reason, count in by_reason.items():
            if count:
                keys.append(key)
                reasons.append(reason)
                values.append(int(count))
    if not keys:
        return
    table.add(len(keys), run_id=run_id, task=task, family=family, reason=reasons,
              count=np.asarray(values, dtype=np.int64),
              **sg.context(sg.numbers(keys), ("model", "window_start", "slice", "slice_columns")))


def _add_confusion(table: _Table, sg: _SliceGroups, records: list, run_id: str,
                   task: str) -> None:
    """Append ``(key, true_class, predicted_class, count)`` records, without suppressed
    groups; classes as strings, counts as float64."""
    if not records:
        return
    g = sg.numbers([r[0] for r in records])
    keep = sg.unsuppressed(g)
    if keep is not None:
        records = list(compress(records, keep.tolist()))
        g = g[keep]
    table.add(len(records), run_id=run_id, task=task,
              true_class=[str(r[1]) for r in records],
              predicted_class=[str(r[2]) for r in records],
              count=np.array([float(r[3]) for r in records], dtype=np.float64),
              **sg.context(g, ("model", "window_start", "window_end", "slice",
                               "slice_columns")))


def invalid_totals(invalid: pd.DataFrame) -> dict:
    """``{task/family/reason: rows}`` over the overall slice (the manifest's invalid counts)."""
    ov = invalid[invalid["slice"] == "overall"]
    g = ov.groupby(["task", "family", "reason"])["count"].sum()
    return {f"{t}/{f}/{r}": int(c) for (t, f, r), c in g.items()}
