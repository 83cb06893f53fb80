"""Gates: rules that fail a run when a model is worse than allowed (no Ray).

A rule (``rayeval.config.GateRule``) names a metric, optionally a task, model and slices, and is
one of: a threshold on the value or an interval bound (``on``); a change against a baseline
model of the run or the last BLESSED run of the job (``max_drop`` / ``max_relative_drop``, worse
in the metric's direction); a paired test against a baseline model (``non_inferiority`` with a
``margin``, ``superiority`` at the Benjamini-Hochberg adjusted level). It is checked for every
model, window and selected slice; an undefined value (NaN) fails the rule (``passed`` false,
``reason`` says why) because a gate that cannot be evaluated must not let a model through. The
special metric ``dataset_drift_share`` gates the share of drifted features per model and window.

``gates`` table (:data:`GATE_COLUMNS`): ``value`` is what the rule reads (the metric, its
interval bound, or candidate - baseline), ``on`` names it (``value``, ``ci_lower``,
``ci_upper``, ``difference``, ``difference_ci_lower``, ``difference_ci_upper``,
``p_adjusted``), ``baseline`` the baseline's value (NaN for thresholds), ``operator`` and the
numeric ``threshold`` the check ``value <operator> threshold``, ``reason`` why it failed.
"""

from __future__ import annotations

import math

import pandas as pd

from rayeval.config import JobConfig
from rayeval.core import registry

GATE_COLUMNS = ["run_id", "rule", "task", "model", "window_start", "slice", "metric", "on",
                "value", "baseline", "operator", "threshold", "passed", "reason"]


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
            if rule.baseline or rule.on != "value":
                raise ConfigError(f"gates.{i} ({rule.name}): dataset_drift_share takes "
                                  "`min`/`max` on its value only")
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
        _check_statistics(cfg, i, rule, scope)


def _check_statistics(cfg: JobConfig, i: int, rule, scope) -> None:
    """Interval bounds need an interval, tests a comparison pair, ``last_passing_run`` a
    BLESSED run in the output path (all checked before the scan).

    Raises:
        ConfigError: naming the rule and what is missing.
    """
    from rayeval.config import LAST_PASSING_RUN, ConfigError
    from rayeval.engine.plan import make_specs
    from rayeval.stats.metric_intervals import interval_metrics

    where = f"gates.{i} ({rule.name})"
    if rule.on != "value" or rule.test:
        if not cfg.intervals.enabled:
            raise ConfigError(f"{where}: `on: {rule.on}`/`test` needs intervals.enabled: true")
        with_ci = set().union(*(interval_metrics(s, True) for t in scope
                                for s in make_specs(t).values()))
        if rule.metric not in with_ci:
            raise ConfigError(f"{where}: metric {rule.metric!r} has no confidence interval; "
                              f"metrics with one: {sorted(with_ci)}")
    if rule.test:
        pairs = [(p.baseline, p.candidate) for p in cfg.comparisons.pairs]
        if not any(b == rule.baseline and (rule.model in (None, c)) for b, c in pairs):
            raise ConfigError(f"{where}: `test: {rule.test}` needs a comparisons pair with "
                              f"baseline {rule.baseline!r}"
                              + (f" and candidate {rule.model!r}" if rule.model else "")
                              + f"; configured pairs: {pairs}")
    if rule.baseline == LAST_PASSING_RUN:
        from rayeval.engine.blessing import last_blessed_run

        if last_blessed_run(cfg) is None:
            raise ConfigError(f"{where}: baseline {LAST_PASSING_RUN!r}: no BLESSED run of job "
                              f"{cfg.name!r} in {cfg.outputs.path}/blessing")
    elif rule.baseline and cfg.models is not None and rule.baseline not in cfg.models:
        raise ConfigError(f"{where}: baseline model {rule.baseline!r} is not in `models` "
                          f"{cfg.models}")


def evaluate_gates(cfg: JobConfig, metrics: pd.DataFrame, drift: pd.DataFrame | None,
                   run_id: str, comparisons: pd.DataFrame | None = None,
                   previous: pd.DataFrame | None = None) -> pd.DataFrame:
    """The gates table (:data:`GATE_COLUMNS`): one row per rule, model, window, slice (and
    bound side); a rule that matches nothing gives one failing row.

    Args:
        cfg: the job config.
        metrics, drift, comparisons: the run's tables.
        previous: the metrics of the last BLESSED run (for ``baseline: last_passing_run``).
    """
    from rayeval.engine.gate_rules import rule_rows

    frames = [rule_rows(cfg, rule, metrics, drift, comparisons, previous, run_id)
              for rule in cfg.gates]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series([], dtype=_GATE_DTYPES.get(c, object))
                             for c in GATE_COLUMNS})
    return pd.concat(frames, ignore_index=True)[GATE_COLUMNS]


_GATE_DTYPES = {"value": float, "baseline": float, "threshold": float, "passed": bool,
                "window_start": "datetime64[ns, UTC]"}
