"""The blessing record of a run (``blessing/<run_id>.json``) and the last BLESSED run of a job.

A CI/CD step reads the record instead of parsing logs::

    {"run_id": ..., "job": ..., "status": "BLESSED" | "NOT_BLESSED", "created": ISO time,
     "input_fingerprint": ..., "config_hash": ..., "n_checks": ..., "n_failed": ...,
     "failing_rules": [{"rule", "metric", "task", "n_failed", "worst": [{"model", "window_start",
                        "slice", "on", "value", "operator", "threshold", "reason"}, ...]}]}

``worst`` lists up to :data:`WORST` failing checks of a rule, furthest past the threshold first
(undefined values first of all).
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import numpy as np
import pandas as pd

BLESSED, NOT_BLESSED = "BLESSED", "NOT_BLESSED"
WORST = 10


def shortfall(gates: pd.DataFrame) -> np.ndarray:
    """How far each check is past its threshold (inf when the value or threshold is NaN)."""
    v = gates["value"].to_numpy(float)
    t = gates["threshold"].to_numpy(float)
    gap = np.where(gates["operator"].to_numpy() == ">=", t - v, v - t)
    return np.where(np.isfinite(gap), gap, np.inf)


def failing_rules(gates: pd.DataFrame, worst: int = WORST) -> list[dict]:
    """Per failing rule: its failed-check count and worst failing checks."""
    out = []
    if gates.empty:
        return out
    failed = gates[~gates["passed"]].assign(_gap=lambda d: shortfall(d))
    for rule, part in failed.groupby("rule", sort=False):
        part = part.sort_values("_gap", ascending=False, kind="stable").head(worst)
        out.append({
            "rule": rule, "metric": str(part["metric"].iloc[0]),
            "task": None if pd.isna(part["task"].iloc[0]) else str(part["task"].iloc[0]),
            "n_failed": int((failed["rule"] == rule).sum()),
            "worst": [{"model": None if pd.isna(r.model) else str(r.model),
                       "window_start": None if pd.isna(r.window_start)
                       else pd.Timestamp(r.window_start).isoformat(),
                       "slice": str(r.slice), "on": str(r.on), "value": _num(r.value),
                       "operator": str(r.operator), "threshold": _num(r.threshold),
                       "reason": str(r.reason)} for r in part.itertuples(index=False)]})
    return out


def _num(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def blessing_record(cfg, run_id: str, gates: pd.DataFrame, manifest: dict) -> dict:
    """The blessing record of a run (see the module docstring)."""
    failing = failing_rules(gates)
    return {"run_id": run_id, "job": cfg.name, "status": NOT_BLESSED if failing else BLESSED,
            "created": datetime.now(timezone.utc).isoformat(),
            "input_fingerprint": manifest.get("input_fingerprint"),
            "config_hash": manifest.get("config_hash"),
            "n_checks": int(len(gates)), "n_failed": int((~gates["passed"]).sum())
            if len(gates) else 0, "failing_rules": failing}


def _fs(cfg):
    from rayeval.config import storage_options
    from rayeval.io.writers import output_fs

    so = storage_options(cfg.inputs.storage) if cfg.outputs.path.startswith("s3://") else None
    return output_fs(cfg.outputs.path, so)


def last_blessed_run(cfg, exclude: str | None = None) -> str | None:
    """The run id of the newest BLESSED record of job ``cfg.name`` in
    ``<outputs.path>/blessing`` (by its ``created`` time), other than ``exclude``."""
    fs, root = _fs(cfg)
    folder = f"{root}/blessing"
    try:
        files = [f for f in fs.ls(folder, detail=False) if str(f).endswith(".json")]
    except (FileNotFoundError, OSError):
        return None
    best = None
    for f in files:
        try:
            with fs.open(f, "r") as fh:
                rec = json.load(fh)
        except (OSError, ValueError):
            continue
        if rec.get("job") != cfg.name or rec.get("status") != BLESSED \
                or rec.get("run_id") == exclude:
            continue
        if best is None or str(rec.get("created", "")) > best[0]:
            best = (str(rec.get("created", "")), rec["run_id"])
    return None if best is None else best[1]


def previous_metrics(cfg, run_id: str) -> pd.DataFrame:
    """The metrics rows of run ``run_id`` from ``<outputs.path>/metrics``."""
    import pyarrow.dataset as pads

    fs, root = _fs(cfg)
    ds = pads.dataset(f"{root}/metrics", filesystem=fs, format="parquet",
                      partitioning="hive")
    table = ds.to_table(filter=pads.field("run_id") == run_id)
    return table.to_pandas()
