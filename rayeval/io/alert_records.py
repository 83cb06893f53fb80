"""Alert records for webhooks: ``alerts/<run_id>.json``, one record per failed gate row and per
drifted feature (overall slice), written with the run's other outputs (atomically, every run:
an empty ``alerts`` list when nothing fired).

Document (JSON)::

    {"run_id": ..., "config": <job name>, "created_at": <ISO 8601 UTC>, "gates_passed": bool,
     "alerts": [{"kind": "gate_failed" | "feature_drift", "severity": "critical" | "warning",
                 "model", "task", "window_start", "window_end", "slice",
                 "name": <gate rule | feature>, "metric": <metric | drift method>,
                 "value", "threshold", "detail"}, ...]}

Every record has every key (``null`` where it does not apply); ``value`` is ``null`` when the
statistic is undefined. Gate failures are ``critical`` (they fail the run), drift ``warning``.
"""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd

RECORD_KEYS = ("kind", "severity", "model", "task", "window_start", "window_end", "slice",
               "name", "metric", "value", "threshold", "detail")


def _iso(t) -> str | None:
    return None if t is None or pd.isna(t) else pd.Timestamp(t).isoformat()


def _num(v) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _str(v) -> str | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _gate_threshold(r) -> str | None:
    """``">= 0.6"``: the gate row's operator and numeric threshold (older tables: the text)."""
    t = getattr(r, "threshold", None)
    op = getattr(r, "operator", "")
    if isinstance(t, str) or not op:
        return _str(t)
    return None if _num(t) is None else f"{op} {float(t):g}"


def alert_records(name: str, run_id: str, gates: pd.DataFrame, drift: pd.DataFrame | None,
                  created_at: dt.datetime | None = None) -> dict:
    """The alert document of one run (see the module docstring); records in the tables' order
    (gates first)."""
    recs = []
    for r in gates[~gates["passed"].astype(bool)].itertuples(index=False):
        recs.append({"kind": "gate_failed", "severity": "critical", "model": _str(r.model),
                     "task": _str(r.task), "window_start": _iso(r.window_start),
                     "window_end": _iso(getattr(r, "window_end", None)),
                     "slice": _str(r.slice), "name": str(r.rule), "metric": str(r.metric),
                     "value": _num(r.value), "threshold": _gate_threshold(r),
                     "detail": _str(getattr(r, "reason", getattr(r, "detail", None))) or ""})
    if drift is not None and not drift.empty:
        d = drift[(drift["slice"] == "overall") & (drift["kind"] != "dataset")
                  & drift["drifted"].astype(bool)]
        for r in d.itertuples(index=False):
            recs.append({"kind": "feature_drift", "severity": "warning", "model": _str(r.model),
                         "task": None, "window_start": _iso(r.window_start),
                         "window_end": _iso(r.window_end), "slice": "overall",
                         "name": str(r.feature), "metric": str(r.method),
                         "value": _num(r.statistic), "threshold": _str(r.threshold),
                         "detail": f"{r.kind} drift: {r.method} {_num(r.statistic)} vs "
                                   f"threshold {r.threshold}"})
    created = created_at or dt.datetime.now(dt.timezone.utc)
    return {"run_id": run_id, "config": name, "created_at": created.isoformat(),
            "gates_passed": bool(gates.empty or gates["passed"].astype(bool).all()),
            "alerts": [{k: rec[k] for k in RECORD_KEYS} for rec in recs]}
