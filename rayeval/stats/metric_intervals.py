"""Confidence intervals of finalized metric columns (pure numpy): which method serves which
metric, and the flag that says when an interval cannot be trusted.

- ``wilson``: proportions from the merged confusion counts: ``accuracy`` and, per class and
  for the binary average, ``precision``, ``recall``, ``specificity``, ``prevalence``,
  ``predicted_positive_rate``.
- ``delong``: binary ``roc_auc`` from the merged score histogram (logit-scale interval).
- ``bootstrap``: every other metric a replicate view covers (F1, MCC, kappa, balanced
  accuracy, averaged ratios, PR AUC, log loss, Brier, ECE, regression metrics): the normal
  interval with the Poisson-bootstrap standard error, clipped to the metric's range.
- no interval (``ci_method`` empty): counts (``n_rows``, ``support``, ``n_positive``),
  ``max_error``, error quantiles, multiclass score metrics, undefined values.

``ci_flag``: ``few_rows`` (fewer than :data:`MIN_ROWS` rows in the group) or, for ranking
metrics, ``few_positives_or_negatives`` (fewer than :data:`MIN_CLASS_ROWS` of either); empty
when the interval is usable.
"""

from __future__ import annotations

import numpy as np

from rayeval.metrics.base import ResultColumns
from rayeval.stats.intervals import (BOOTSTRAP, DELONG, WILSON, bootstrap_interval, delong,
                                     logit_interval, wilson)

MIN_ROWS = 30
MIN_CLASS_ROWS = 10
METHODS = ("", WILSON, DELONG, BOOTSTRAP)
FLAGS = ("", "few_rows", "few_positives_or_negatives")
WILSON_METRICS = ("accuracy", "precision", "recall", "specificity", "prevalence",
                  "predicted_positive_rate")
RANKING_METRICS = ("roc_auc", "pr_auc")
#: counts: reported without an interval
COUNTS = ("n_rows", "n_rows_scored", "support", "n_positive")
_UNIT = (0.0, 1.0)
#: value range of each bootstrapped metric (intervals are clipped to it)
RANGES = {**dict.fromkeys(("accuracy", "balanced_accuracy", "precision", "recall", "f1",
                           "specificity", "roc_auc", "pr_auc", "brier_loss", "ece",
                           "prevalence", "predicted_positive_rate"), _UNIT),
          "mcc": (-1.0, 1.0), "cohen_kappa": (-1.0, 1.0), "smape": (0.0, 2.0),
          **dict.fromkeys(("mae", "mse", "rmse", "mape", "log_loss"), (0.0, np.inf)),
          **dict.fromkeys(("r2", "explained_variance"), (-np.inf, 1.0))}


def interval_metrics(spec, bootstrap: bool) -> set[str]:
    """Names of the metrics of ``spec`` that get an interval (for config checks)."""
    from rayeval.metrics.classification import ClassificationSpec
    from rayeval.metrics.regression import RegressionSpec
    from rayeval.metrics.scores import BinaryScoreSpec

    out: set[str] = set()
    if isinstance(spec, ClassificationSpec):
        out |= set(WILSON_METRICS)
        if bootstrap and spec.classes is not None:
            out |= {"balanced_accuracy", "mcc", "cohen_kappa", "f1"}
    elif isinstance(spec, BinaryScoreSpec):
        out.add("roc_auc")
        if bootstrap:
            out |= {"pr_auc", "log_loss", "brier_loss", "ece"}
    elif isinstance(spec, RegressionSpec) and bootstrap:
        out |= {"mean_signed_deviation", "mae", "mse", "rmse", "r2", "explained_variance",
                "mape", "smape"}
    return out


def _row_text(cols: ResultColumns, name: str) -> list:
    values, codes = cols.text[name]
    return [values[c] for c in codes.tolist()]


def interval_columns(spec, state, cols: ResultColumns, level: float = 0.95,
                     reps: dict | None = None, rep_keys: tuple = ()) -> dict[str, object]:
    """Interval columns aligned with the rows of ``cols = spec.finalize_columns(state)``.

    Args:
        spec, state: the metric spec and its merged state.
        cols: its finalized columns (m rows).
        level: two-sided confidence level.
        reps: the family's replicate values (``ReplicatedSpec.values`` of its merged replicate
            state: ``(metric, class, average) -> (G_rep, B + 1)``), or ``None`` (closed forms
            only); rep_keys: their group keys.

    Returns:
        ``ci_lower``, ``ci_upper``: float64 (m,); ``ci_method``, ``ci_flag``: ``(values,
        codes)`` with values :data:`METHODS` / :data:`FLAGS` and int64 (m,) codes.
    """
    from rayeval.metrics.classification import ClassificationSpec
    from rayeval.metrics.scores import BinaryScoreSpec

    m = len(cols)
    lower, upper = np.full(m, np.nan), np.full(m, np.nan)
    method = np.zeros(m, dtype=np.int64)
    flag = np.zeros(m, dtype=np.int64)
    if m == 0:
        return {"ci_lower": lower, "ci_upper": upper, "ci_method": (list(METHODS), method),
                "ci_flag": (list(FLAGS), flag)}
    group, value = cols.group, cols.value
    metric = np.array(_row_text(cols, "metric"), dtype=object)
    klass = _row_text(cols, "class_label")
    average = np.array(_row_text(cols, "average"), dtype=object)
    g = len(cols.keys)
    n_rows = np.zeros(g)
    sel = metric == "n_rows"
    n_rows[group[sel]] = value[sel]
    defined = np.isfinite(value)

    if isinstance(spec, ClassificationSpec) and state.table.keys:
        conf = np.asarray(state.table.arrays["confusion"], dtype=np.float64)
        tp = np.diagonal(conf, axis1=1, axis2=2)
        true_n, pred_n = conf.sum(axis=2), conf.sum(axis=1)
        total = conf.sum(axis=(1, 2))
        pos = (state.classes.index(spec.positive_class)
               if spec.positive_class in state.classes else -1)
        index = {c: i for i, c in enumerate(state.classes)}
        ci = np.array([index.get(c, -1) if a is None else (pos if a == "binary" else -1)
                       for c, a in zip(klass, average.tolist())], dtype=np.int64)
        k, n = np.full(m, np.nan), np.full(m, np.nan)
        rows = np.flatnonzero((metric == "accuracy") & (average == None))  # noqa: E711
        k[rows], n[rows] = np.trace(conf, axis1=1, axis2=2)[group[rows]], total[group[rows]]
        tot = np.broadcast_to(total[:, None], true_n.shape)
        per = {"precision": (tp, pred_n), "recall": (tp, true_n),
               "specificity": (tot - true_n - pred_n + tp, tot - true_n),
               "prevalence": (true_n, tot), "predicted_positive_rate": (pred_n, tot)}
        for name, (num, den) in per.items():
            rows = np.flatnonzero((metric == name) & (ci >= 0))
            k[rows], n[rows] = num[group[rows], ci[rows]], den[group[rows], ci[rows]]
        rows = np.flatnonzero(np.isfinite(n) & defined)
        lower[rows], upper[rows] = wilson(k[rows], n[rows], level)
        method[rows] = METHODS.index(WILSON)

    ranking_short = np.zeros(g, dtype=bool)
    if isinstance(spec, BinaryScoreSpec) and state.keys:
        h = state.hist
        dl = delong(h.pos, h.neg, h.indptr())
        few = (dl["n_pos"] < MIN_CLASS_ROWS) | (dl["n_neg"] < MIN_CLASS_ROWS)
        ranking_short[:few.size] = few
        rows = np.flatnonzero((metric == "roc_auc") & defined)
        lower[rows], upper[rows] = logit_interval(value[rows], dl["variance"][group[rows]],
                                                  level)
        method[rows] = METHODS.index(DELONG)

    if reps:
        where = {key: i for i, key in enumerate(rep_keys)}
        rep_pos = np.array([where.get(key, -1) for key in cols.keys], dtype=np.int64)
        b = next(iter(reps.values())).shape[1] - 1
        combo = list(zip(metric.tolist(), klass, average.tolist()))
        by_key: dict = {}
        for i, c in enumerate(combo):
            by_key.setdefault(c, []).append(i)
        for c, idx in by_key.items():
            arr = reps.get(c)
            if arr is None or c[0] in COUNTS:
                continue
            idx = np.asarray(idx)
            idx = idx[defined[idx] & (method[idx] == 0) & (rep_pos[group[idx]] >= 0)]
            if not idx.size:
                continue
            r = arr[rep_pos[group[idx]]]
            lo, hi = bootstrap_interval(value[idx], r[:, :b], r[:, b], level)
            rng = RANGES.get(c[0], (-np.inf, np.inf))
            lower[idx], upper[idx] = np.clip(lo, *rng), np.clip(hi, *rng)
            method[idx] = METHODS.index(BOOTSTRAP)

    has = method > 0
    flag[has & (n_rows[group] < MIN_ROWS)] = FLAGS.index("few_rows")
    rank_rows = has & np.isin(metric, RANKING_METRICS) & ranking_short[group]
    flag[rank_rows & (flag == 0)] = FLAGS.index("few_positives_or_negatives")
    return {"ci_lower": lower, "ci_upper": upper, "ci_method": (list(METHODS), method),
            "ci_flag": (list(FLAGS), flag)}
