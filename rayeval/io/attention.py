"""What needs attention in a run: bad *and* credible slices (pure pandas/numpy, no I/O).

A slice of 34 rows with ROC AUC 0.0 (one positive scored last) is bad but not credible; a slice
of 50,000 rows with AUC 0.62 against 0.70 overall is. Slices are ranked by the bound of their
value on the *good* side: the best value the data still allows (the upper bound of a
higher-is-better metric, the lower bound of a lower-is-better one). A slice ranks as bad only
if even that bound is bad, so small slices, whose bounds are wide, sink.

The bound is the slice's confidence interval when ``ci_lower`` / ``ci_upper`` are finite
(``intervals.enabled``: Wilson, DeLong, bootstrap); otherwise a size-penalised stand-in:

- metrics in [0, 1] (AUC, accuracy, F1, ...): the Wilson score bound (z = 1.96) of the value
  taken as a proportion of ``n`` trials, where ``n`` is the slice's labelled rows, and for
  ROC / PR AUC the smaller of its positives and negatives (what limits an AUC's precision;
  from the ``n_positive`` and ``n_rows_scored`` rows of the same group);
- other metrics (MAE, RMSE, ...): ``value -+ z * |value| / sqrt(n)``.

The stand-in is a ranking device, not an interval: it is exact for a proportion and only
roughly right for an AUC or an error, which is enough to keep 30-row slices from leading.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

Z = 1.96
RANKING_AUC = frozenset({"roc_auc", "pr_auc"})
GROUP = ["task", "model", "window_start", "slice"]


def wilson_bound(p: np.ndarray, n: np.ndarray, upper: bool, z: float = Z) -> np.ndarray:
    """Wilson score bound of proportions ``p`` (float (k,), in [0, 1]) of ``n`` trials (float
    (k,) >= 0; 0 trials give the vacuous bound 1 / 0). Source: Wilson (1927), JASA 22."""
    p = np.asarray(p, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        den = 1 + z * z / n
        mid = (p + z * z / (2 * n)) / den
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
        b = mid + half if upper else mid - half
    return np.where(n > 0, np.clip(b, 0.0, 1.0), 1.0 if upper else 0.0)


def effective_n(rows: pd.DataFrame, metrics: pd.DataFrame) -> np.ndarray:
    """Trials behind each row of ``rows`` (a subset of ``metrics``): ``n_labeled``, and for ROC
    / PR AUC ``min(n_positive, n_rows_scored - n_positive)`` of the same task, model, window
    and slice when ``metrics`` holds them (float (len(rows),))."""
    n = rows["n_labeled"].to_numpy(dtype=np.float64, na_value=np.nan).copy()
    auc = rows["metric"].isin(RANKING_AUC).to_numpy()
    if auc.any() and {"n_positive", "n_rows_scored"} <= set(metrics["metric"]):
        plain = metrics["class_label"].isna() if "class_label" in metrics else True

        def count(name: str) -> pd.DataFrame:
            c = metrics[(metrics["metric"] == name) & plain]
            return c[GROUP + ["value"]].drop_duplicates(GROUP).rename(columns={"value": name})

        both = count("n_positive").merge(count("n_rows_scored"), on=GROUP)
        got = rows.loc[auc, GROUP].merge(both, on=GROUP, how="left")  # keeps rows' order
        pos = got["n_positive"].to_numpy(dtype=np.float64, na_value=np.nan)
        smaller = np.minimum(pos, got["n_rows_scored"].to_numpy(dtype=np.float64,
                                                                 na_value=np.nan) - pos)
        n[auc] = np.where(np.isfinite(smaller), smaller, n[auc])
    return n


def credible_bound(rows: pd.DataFrame, metrics: pd.DataFrame | None = None) -> np.ndarray:
    """The good-side bound of each row's ``value`` (module docstring; float (len(rows),)):
    upper for ``higher_is_better``, lower for ``lower_is_better``, the value itself for other
    directions. Columns used: value, direction, n_labeled, metric, ci_lower, ci_upper (when
    present)."""
    v = rows["value"].to_numpy(dtype=np.float64, na_value=np.nan)
    higher = (rows["direction"] == "higher_is_better").to_numpy()
    lower = (rows["direction"] == "lower_is_better").to_numpy()
    n = effective_n(rows, rows if metrics is None else metrics)
    unit = (v >= 0) & (v <= 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = Z * np.abs(v) / np.sqrt(n)
    spread = np.where(n > 0, spread, np.inf)
    fallback = np.where(higher, np.where(unit, wilson_bound(v, n, True), v + spread),
                        np.where(lower, np.where(unit, wilson_bound(v, n, False), v - spread),
                                 v))
    ci_col = np.where(higher, _col(rows, "ci_upper"), np.where(lower, _col(rows, "ci_lower"),
                                                               np.nan))
    return np.where(np.isfinite(ci_col), ci_col, fallback)


def _col(rows: pd.DataFrame, name: str) -> np.ndarray:
    if name not in rows.columns:
        return np.full(len(rows), np.nan)
    return rows[name].to_numpy(dtype=np.float64, na_value=np.nan)


def rank_worst(rows: pd.DataFrame, metrics: pd.DataFrame | None = None) -> pd.DataFrame:
    """``rows`` (one metric, one direction) with a ``bound`` column, worst credible first (ties:
    more labelled rows first, then slice name)."""
    b = credible_bound(rows, metrics)
    out = rows.assign(bound=b)
    asc = not (rows["direction"] == "lower_is_better").any()
    return out.sort_values(["bound", "n_labeled", "slice"], ascending=[asc, False, True],
                           kind="stable", na_position="last")
