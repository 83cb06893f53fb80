"""The rows of one gate rule (see :mod:`rayeval.engine.gates` for the rule kinds and the table).

Every check is ``value <operator> threshold`` with a numeric threshold: thresholds compare the
metric (or its interval bound) with ``min``/``max``; change rules turn ``max_drop`` /
``max_relative_drop`` into a threshold next to the baseline's value, in the metric's direction
(``higher_is_better``: ``value >= baseline - drop``; ``lower_is_better``: ``value <= baseline +
drop``; ``neutral``: ``|value - baseline| <= drop``); tests read the comparisons table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rayeval.config import LAST_PASSING_RUN

HIGHER, LOWER = "higher_is_better", "lower_is_better"
_KEY = ["task", "slice", "metric", "average"]


def _rows(run_id, rule, sel: pd.DataFrame, on, value, baseline, operator, threshold,
          passed, reason) -> pd.DataFrame:
    n = len(sel)
    col = lambda x: np.broadcast_to(np.asarray(x, dtype=object if isinstance(x, str)  # noqa
                                               else None), (n,))
    return pd.DataFrame({
        "run_id": run_id, "rule": rule.name,
        "task": sel["task"].to_numpy() if "task" in sel else None,
        "model": sel["model"].to_numpy(), "window_start": sel["window_start"].to_numpy(),
        "slice": sel["slice"].to_numpy(), "metric": rule.metric, "on": col(on),
        "value": np.asarray(value, dtype=float), "baseline": np.asarray(baseline, dtype=float)
        * np.ones(n), "operator": col(operator), "threshold": np.asarray(threshold, float)
        * np.ones(n), "passed": np.asarray(passed, dtype=bool), "reason": col(reason)})


def _check(value, operator, threshold) -> np.ndarray:
    value = np.asarray(value, dtype=float)
    threshold = np.asarray(threshold, dtype=float)
    with np.errstate(invalid="ignore"):
        ok = value >= threshold if operator == ">=" else value <= threshold
    return ok & np.isfinite(value) & np.isfinite(threshold)


def _reasons(value, operator, threshold, passed, undefined: str, what: str) -> np.ndarray:
    out = []
    for v, t, p in zip(np.broadcast_to(value, passed.shape).tolist(),
                       np.broadcast_to(threshold, passed.shape).tolist(), passed.tolist()):
        if p:
            out.append("")
        elif not np.isfinite(t):
            out.append("no baseline value")
        elif not np.isfinite(v):
            out.append(f"undefined {what}" + (f": {undefined}" if undefined else ""))
        else:
            out.append(f"{what} {v:.6g} {'<' if operator == '>=' else '>'} {t:.6g}")
    return np.array(out, dtype=object)


def select_slices(df: pd.DataFrame, rule, size_column: str) -> pd.DataFrame:
    """Rows of the rule's slices (``overall``, ``all`` or a list), without non-overall slices
    smaller than ``min_slice_size`` (by ``size_column``)."""
    sel = rule.slice_selection
    if sel == "overall":
        df = df[df["slice"] == "overall"]
    elif sel != "all":
        df = df[df["slice"].isin(list(sel))]
    if rule.min_slice_size:
        df = df[(df["slice"] == "overall") | (df[size_column] >= rule.min_slice_size)]
    return df


def _metric_rows(metrics: pd.DataFrame, rule) -> pd.DataFrame:
    m = metrics[(metrics["metric"] == rule.metric) & metrics["class_label"].isna()]
    if rule.task:
        m = m[m["task"] == rule.task]
    if not m.empty and m["average"].notna().any():  # the headline value
        for avg in ("binary", "macro", "micro"):
            if (m["average"] == avg).any():
                m = m[m["average"] == avg]
                break
    return select_slices(m, rule, "n_labeled")


def rule_rows(cfg, rule, metrics: pd.DataFrame, drift, comparisons, previous,
              run_id: str) -> pd.DataFrame:
    """The gates-table rows of one rule (one failing row when nothing matches)."""
    if rule.metric == "dataset_drift_share":
        sel = _drift_share(drift, rule.slice).assign(slice=rule.slice)
    elif rule.test:
        sel = _test_selection(rule, comparisons)
    else:
        sel = _metric_rows(metrics, rule)
        if rule.model:
            sel = sel[sel["model"] == rule.model]
        elif rule.baseline and rule.baseline != LAST_PASSING_RUN:
            sel = sel[sel["model"] != rule.baseline]
    if sel.empty:
        return pd.DataFrame([{
            "run_id": run_id, "rule": rule.name, "task": rule.task, "model": rule.model,
            "window_start": pd.NaT, "slice": str(rule.slice_selection), "metric": rule.metric,
            "on": rule.on, "value": np.nan, "baseline": np.nan, "operator": "",
            "threshold": np.nan, "passed": False,
            "reason": "no such metric/slice in the results"}])
    if rule.test:
        return _test_rows(cfg, rule, sel, run_id)
    if rule.baseline:
        return _change_rows(rule, metrics, sel, previous, run_id)
    undefined = sel["undefined_reason"].astype(str).to_numpy() if "undefined_reason" in sel \
        else np.full(len(sel), "")
    value = sel["value" if rule.metric == "dataset_drift_share" else rule.on].to_numpy(float)
    out = []
    for operator, bound in ((">=", rule.min), ("<=", rule.max)):
        if bound is None:
            continue
        passed = _check(value, operator, bound)
        reasons = [r if p else r + (f" ({u})" if u and not np.isfinite(v) else "")
                   for r, p, u, v in zip(_reasons(value, operator, bound, passed, "",
                                                  rule.on), passed, undefined, value)]
        out.append(_rows(run_id, rule, sel, rule.on, value, np.nan, operator, bound, passed,
                         np.array(reasons, dtype=object)))
    return pd.concat(out, ignore_index=True)


def _change_rows(rule, metrics, sel: pd.DataFrame, previous, run_id) -> pd.DataFrame:
    """Rows of a change rule: the baseline value of each row's (task, window, slice, metric)
    from the baseline model, or the last BLESSED run (same model; same window when it has
    one, else its latest window)."""
    sel = sel.reset_index(drop=True)
    if rule.baseline == LAST_PASSING_RUN:
        prev = _metric_rows(previous, rule) if previous is not None else sel.iloc[:0]
        key = _KEY + ["model"]
        exact = prev[key + ["window_start", "value"]].rename(columns={"value": "_base"})
        latest = (prev.sort_values("window_start").groupby(key, dropna=False).tail(1)
                  [key + ["value"]].rename(columns={"value": "_latest"}))
        merged = sel.merge(exact, on=key + ["window_start"], how="left").merge(
            latest, on=key, how="left")
        base = merged["_base"].fillna(merged["_latest"]).to_numpy(float)
    else:
        bm = _metric_rows(metrics, rule)
        bm = bm[bm["model"] == rule.baseline][_KEY + ["window_start", "value"]]
        merged = sel.merge(bm.rename(columns={"value": "_base"}),
                           on=_KEY + ["window_start"], how="left")
        base = merged["_base"].to_numpy(float)
    value = sel[rule.on].to_numpy(float)
    direction = sel["direction"].to_numpy() if "direction" in sel else np.full(len(sel), HIGHER)
    allowed = (rule.max_drop if rule.max_drop is not None
               else rule.max_relative_drop * np.abs(base))
    higher, lower = direction == HIGHER, direction == LOWER
    neutral = ~(higher | lower)
    threshold = np.where(higher, base - allowed, np.where(lower, base + allowed, allowed))
    checked = np.where(neutral, np.abs(value - base), value)
    passed = np.where(higher, _check(checked, ">=", threshold), _check(checked, "<=", threshold))
    passed &= np.isfinite(base)
    operator = np.where(higher, ">=", "<=").astype(object)
    on = np.where(neutral, f"abs_change_of_{rule.on}", rule.on).astype(object)
    what = "baseline" if rule.baseline != LAST_PASSING_RUN else "last passing run"
    reasons = np.array([
        "" if p else ("no baseline value" if not np.isfinite(b) else
                      f"undefined {rule.on}" if not np.isfinite(v) else
                      f"{rule.metric} {v:.6g} vs {what} {b:.6g}: worse than allowed "
                      f"(threshold {t:.6g})")
        for p, v, b, t in zip(passed.tolist(), checked.tolist(), base.tolist(),
                              np.broadcast_to(threshold, passed.shape).tolist())], dtype=object)
    return _rows(run_id, rule, sel, on, checked, base, operator, threshold, passed, reasons)


def _test_selection(rule, comparisons) -> pd.DataFrame:
    if comparisons is None or comparisons.empty:
        return pd.DataFrame(columns=["model", "window_start", "slice"])
    c = comparisons[(comparisons["metric"] == rule.metric)
                    & (comparisons["baseline"] == rule.baseline)]
    if rule.task:
        c = c[c["task"] == rule.task]
    if rule.model:
        c = c[c["candidate"] == rule.model]
    return select_slices(c.assign(model=c["candidate"]), rule, "n_paired")


def _test_rows(cfg, rule, sel: pd.DataFrame, run_id) -> pd.DataFrame:
    higher = (sel["direction"] != LOWER).to_numpy()
    diff = sel["difference"].to_numpy(float)
    base = sel["baseline_value"].to_numpy(float)
    if rule.test == "non_inferiority":
        value = np.where(higher, sel["ci_lower"].to_numpy(float),
                         sel["ci_upper"].to_numpy(float))
        threshold = np.where(higher, -rule.margin, rule.margin)
        passed = np.where(higher, _check(value, ">=", threshold), _check(value, "<=", threshold))
        on = np.where(higher, "difference_ci_lower", "difference_ci_upper").astype(object)
        operator = np.where(higher, ">=", "<=").astype(object)
        reasons = np.array([
            "" if p else (f"undefined difference interval" if not np.isfinite(v) else
                          f"candidate may be worse by more than the margin {rule.margin:g} "
                          f"(difference {d:.4g}, interval bound {v:.4g})")
            for p, v, d in zip(passed.tolist(), value.tolist(), diff.tolist())], dtype=object)
        return _rows(run_id, rule, sel, on, value, base, operator, threshold, passed, reasons)
    p_adj = sel["p_adjusted"].to_numpy(float)
    better = np.where(higher, diff > 0, diff < 0)
    fdr = cfg.comparisons.fdr
    passed = _check(p_adj, "<=", fdr) & better
    reasons = np.array([
        "" if p else ("undefined p-value" if not np.isfinite(q) else
                      f"not better (difference {d:.4g})" if not b else
                      f"not significant at FDR {fdr:g} (p_adjusted {q:.3g})")
        for p, q, d, b in zip(passed.tolist(), p_adj.tolist(), diff.tolist(), better.tolist())],
        dtype=object)
    return _rows(run_id, rule, sel, "p_adjusted", p_adj, base, "<=", fdr, passed, reasons)


def _drift_share(drift: pd.DataFrame | None, slice_: str) -> pd.DataFrame:
    """The share of drifted features per model and window (the drift table's ``dataset``
    rows) as gate input rows."""
    if drift is None or drift.empty:
        return pd.DataFrame(columns=["model", "window_start", "value", "task"])
    d = drift[(drift["slice"] == slice_) & (drift["kind"] == "dataset")]
    g = d[["model", "window_start", "statistic"]].rename(columns={"statistic": "value"})
    return g.assign(task=None)
