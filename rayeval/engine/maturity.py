"""Label maturity: which windows' labels have arrived (``windows.mature_after``,
``windows.min_label_coverage``), the ``windows`` table, and gates restricted to mature windows.

A window ``[start, end)`` of a model is *mature* when ``end + mature_after <= as_of`` (``as_of``
= ``windows.as_of``, default the run's start; a window without an end passes this rule) and its
overall label coverage is at least ``min_label_coverage``; with neither rule configured every
window is mature. Gates on metrics run on mature windows only (``windows.gate_immature``
turns that off); a rule left without any mature window is reported as not gated (passed, with
the reason) rather than failed. ``dataset_drift_share`` gates need no labels and see every
window.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from rayeval.config import JobConfig, parse_duration, utc

WINDOW_COLUMNS = ["run_id", "model", "window_start", "window_end", "n_rows", "n_labeled",
                  "label_coverage", "mature", "reason"]
NOT_GATED = "not gated: no mature window (labels not yet due or coverage too low)"


def maturity_configured(cfg: JobConfig) -> bool:
    """True when the config sets a label-maturity rule (``windows.mature_after`` or
    ``windows.min_label_coverage``).
    """
    w = cfg.windows
    return w.mature_after is not None or w.min_label_coverage is not None


def window_maturity(cfg: JobConfig, coverage: pd.DataFrame, run_id: str,
                    as_of: dt.datetime) -> pd.DataFrame:
    """One row per model and window (:data:`WINDOW_COLUMNS`) from the coverage table's overall
    slice (else its first slice spec, summed), with ``mature`` and, when immature, why."""
    cov = coverage
    if len(cov):
        first = "overall" if (cov["slice"] == "overall").any() else cov["slice_columns"].iloc[0]
        col = "slice" if first == "overall" else "slice_columns"
        cov = cov[cov[col] == first]
    g = (cov.groupby(["model", "window_start", "window_end"], dropna=False, sort=True)
         [["n_rows", "n_labeled"]].sum().reset_index())
    w = cfg.windows
    delay = parse_duration(w.mature_after) if w.mature_after else None
    now = pd.Timestamp(utc(as_of))
    rows = []
    for r in g.itertuples(index=False):
        coverage_ = r.n_labeled / r.n_rows if r.n_rows else float("nan")
        reasons = []
        if delay is not None and not pd.isna(r.window_end) and r.window_end + delay > now:
            reasons.append(f"labels due at {(r.window_end + delay).isoformat()}")
        if w.min_label_coverage is not None and not coverage_ >= w.min_label_coverage:
            reasons.append(f"label coverage {coverage_:.3g} < {w.min_label_coverage:g}")
        rows.append({"run_id": run_id, "model": r.model, "window_start": r.window_start,
                     "window_end": r.window_end, "n_rows": int(r.n_rows),
                     "n_labeled": int(r.n_labeled), "label_coverage": coverage_,
                     "mature": not reasons, "reason": "; ".join(reasons)})
    return pd.DataFrame(rows, columns=WINDOW_COLUMNS).astype(
        {"n_rows": "int64", "n_labeled": "int64", "label_coverage": "float64", "mature": bool,
         "reason": str})


def mature_rows(df: pd.DataFrame, windows: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``df`` (with model, window_start) in mature windows."""
    keep = windows.loc[windows["mature"], ["model", "window_start"]]
    return df.merge(keep, on=["model", "window_start"], how="inner")[df.columns]


def gate_mature(cfg: JobConfig, metrics: pd.DataFrame, drift: pd.DataFrame | None,
                windows: pd.DataFrame, run_id: str, evaluate) -> pd.DataFrame:
    """``evaluate(cfg, metrics, drift, run_id)`` (the gates) on the mature windows' metrics; a
    metric rule with rows in the results but none mature is passed as :data:`NOT_GATED`."""
    if cfg.windows.gate_immature or not maturity_configured(cfg):
        return evaluate(cfg, metrics, drift, run_id)
    gates = evaluate(cfg, mature_rows(metrics, windows), drift, run_id)
    present = set(metrics["metric"])
    lost = (gates["model"].isna() & gates["metric"].isin(present)
            & (gates["metric"] != "dataset_drift_share"))
    if lost.any():
        gates = gates.copy()
        gates.loc[lost, "passed"] = True
        gates.loc[lost, "reason"] = NOT_GATED
    return gates
