"""Gates: rules that fail a run when a model is worse than allowed (no Ray).

A rule names a metric (and optionally a task and a slice, default ``overall``) and bounds it with
``min`` and/or ``max``. It is checked for every model and window in the results; an undefined
value (NaN) fails the rule (``passed`` false, reason in ``detail``) because a gate that cannot be
evaluated must not let a model through. The special metric ``dataset_drift_share`` gates the
share of drifted features per model and window.
"""

from __future__ import annotations

import math

import pandas as pd

from rayeval.config import JobConfig
from rayeval.core import registry

GATE_COLUMNS = ["run_id", "rule", "task", "model", "window_start", "slice", "metric", "value",
                "baseline", "threshold", "passed", "detail"]


def known_metrics(task, selected: bool = False) -> set[str]:
    """Metric names a task can produce (for validating gate rules and ``metrics`` lists before
    a run), from the registered specs' declarations (:func:`rayeval.core.registry.task_metrics`);
    ``selected``: only those its ``metrics`` list keeps (all when it has none)."""
    return set(registry.task_metrics(task, selected=selected))


def check_task_metrics(cfg: JobConfig) -> None:
    """Reject a task's ``metrics`` list naming a metric the task cannot produce (its columns
    decide: label metrics need ``prediction``, score metrics ``score``/``scores``).

    Raises:
        ConfigError: naming the task, the metric and the known names.
    """
    from rayeval.config import ConfigError

    for i, task in enumerate(cfg.tasks):
        if task.metrics is None:
            continue
        known = known_metrics(task)
        unknown = [m for m in task.metrics if m not in known]
        if unknown or not task.metrics:
            raise ConfigError(f"tasks.{i}.metrics ({task.name}): "
                              + (f"unknown metric(s) {unknown}"
                                 + "".join(registry.renamed_hint(m) for m in unknown)
                                 if unknown else "empty list")
                              + f"; this task can produce {sorted(known)}")


def check_gates(cfg: JobConfig) -> None:
    """Reject gate rules that can never match: unknown task, or a metric the task(s) do not
    produce (a typo would otherwise fail every run at the very end); and tasks' ``metrics``
    lists naming metrics they cannot produce (:func:`check_task_metrics`).

    Raises:
        ConfigError: naming the rule, the metric and the known names.
    """
    from rayeval.config import ConfigError

    check_task_metrics(cfg)
    tasks = {t.name: t for t in cfg.tasks}
    for i, rule in enumerate(cfg.gates):
        if rule.metric == "dataset_drift_share":
            if not cfg.drift.enabled:
                raise ConfigError(f"gates.{i} ({rule.name}): dataset_drift_share needs "
                                  f"drift.enabled")
            continue
        if rule.task is not None and rule.task not in tasks:
            raise ConfigError(f"gates.{i} ({rule.name}): unknown task {rule.task!r}; tasks are "
                              f"{sorted(tasks)}")
        scope = [tasks[rule.task]] if rule.task else list(tasks.values())
        names = set().union(*(known_metrics(t, selected=True) for t in scope))
        if rule.metric not in names:
            hint = ("" if rule.metric not in set().union(*(known_metrics(t) for t in scope))
                    else " (left out by the task's `metrics` list)")
            hint = hint or registry.renamed_hint(rule.metric)
            raise ConfigError(f"gates.{i} ({rule.name}): unknown metric {rule.metric!r}{hint}; "
                              f"known: {sorted(names | {'dataset_drift_share'})}")


def evaluate_gates(cfg: JobConfig, metrics: pd.DataFrame, drift: pd.DataFrame | None,
                   run_id: str) -> pd.DataFrame:
    """One row per (rule, model, window) with the verdict; empty when no rule is configured."""
    rows = []
    for rule in cfg.gates:
        if rule.metric == "dataset_drift_share":
            sel = _drift_share(drift, rule.slice)
        else:
            sel = metrics[(metrics["metric"] == rule.metric) & (metrics["slice"] == rule.slice)
                          & metrics["class_label"].isna()]
            if rule.task:
                sel = sel[sel["task"] == rule.task]
            # the headline value: binary average, else macro, else no average
            if not sel.empty and sel["average"].notna().any():
                for avg in ("binary", "macro", "micro"):
                    if (sel["average"] == avg).any():
                        sel = sel[sel["average"] == avg]
                        break
        if sel.empty:
            rows.append({"run_id": run_id, "rule": rule.name, "task": rule.task, "model": None,
                         "window_start": pd.NaT, "slice": rule.slice, "metric": rule.metric,
                         "value": math.nan, "baseline": math.nan,
                         "threshold": _threshold(rule), "passed": False,
                         "detail": "no such metric/slice in the results"})
            continue
        for r in sel.itertuples(index=False):
            v = float(r.value)
            ok = not math.isnan(v)
            detail = "" if ok else f"undefined: {getattr(r, 'undefined_reason', '')}"
            if ok and rule.min is not None and v < rule.min:
                ok, detail = False, f"{v:.6g} < min {rule.min}"
            if ok and rule.max is not None and v > rule.max:
                ok, detail = False, f"{v:.6g} > max {rule.max}"
            rows.append({"run_id": run_id, "rule": rule.name, "task": getattr(r, "task", None),
                         "model": r.model, "window_start": r.window_start, "slice": rule.slice,
                         "metric": rule.metric, "value": v, "baseline": math.nan,
                         "threshold": _threshold(rule), "passed": ok, "detail": detail})
    return pd.DataFrame(rows, columns=GATE_COLUMNS)


def _threshold(rule) -> str:
    parts = []
    if rule.min is not None:
        parts.append(f">= {rule.min}")
    if rule.max is not None:
        parts.append(f"<= {rule.max}")
    return " and ".join(parts)


def _drift_share(drift: pd.DataFrame | None, slice_: str) -> pd.DataFrame:
    if drift is None or drift.empty:
        return pd.DataFrame(columns=["model", "window_start", "value", "task"])
    d = drift[(drift["slice"] == slice_) & (drift["kind"] == "dataset")]
    g = d[["model", "window_start", "statistic"]].rename(columns={"statistic": "value"})
    return g.assign(task=None)
