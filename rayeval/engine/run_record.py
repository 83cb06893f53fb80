"""What a run produces and records about itself: :class:`RunResult`, the stage timer, the run
manifest (redacted config, input files and their fingerprint, row counts, versions, stage
durations, warnings), the check that the inputs did not change while read, and the warnings of
windows without predictions."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import pandas as pd

import rayeval
from rayeval.config import JobConfig
from rayeval.engine.labels import LabelIndex
from rayeval.engine.plan import utc_ns
from rayeval.engine.results import Finalized, invalid_totals
from rayeval.io.readers import DatasetInfo, InputError, changed_files


@dataclass
class RunResult:
    """What a job produced: tables, paths, counts and timings."""

    run_id: str
    finalized: Finalized
    drift: Optional[pd.DataFrame]
    gates: pd.DataFrame
    outputs: dict[str, str]
    manifest: dict
    mlflow_run_id: Optional[str] = None
    mlflow_error: Optional[str] = None
    publish_error: Optional[str] = None  # Pushgateway push failed (results are written)
    windows: Optional[pd.DataFrame] = None  # label maturity per model and window
    estimated: Optional[pd.DataFrame] = None  # CBPE estimates (estimation.enabled)
    durations: dict[str, float] = field(default_factory=dict)
    started_at: float = 0.0  # time.time() when the job started / committed its tables
    committed_at: float = 0.0
    #: path of this run's record in the append-only ``audit`` table
    audit_path: Optional[str] = None
    blessing: dict = field(default_factory=dict)  # rayeval.engine.blessing record

    @property
    def gates_passed(self) -> bool:
        return bool(self.gates.empty or self.gates["passed"].all())


class _Timer:
    def __init__(self, progress: Callable[[str], None] | None):
        self.durations: dict[str, float] = {}
        self.progress = progress or (lambda s: None)

    def stage(self, name: str):
        timer = self

        class _Ctx:
            def __enter__(self):
                timer.progress(name)
                self.t = time.perf_counter()

            def __exit__(self, *a):
                timer.durations[name] = round(time.perf_counter() - self.t, 3)

        return _Ctx()


def check_inputs_unchanged(storage, *datasets: DatasetInfo | None) -> None:
    """Fail when an input file disappeared or changed (size, ETag on S3, mtime locally) since
    it was listed: the results would mix two versions of the data, or silently miss a file.

    Raises:
        InputError: naming every such file and what changed; nothing is written.
    """
    problems = [p for ds in datasets if ds is not None for p in changed_files(ds, storage)]
    if problems:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more"
                                             if len(problems) > 10 else "")
        raise InputError(f"{len(problems)} input file(s) changed or disappeared while the run "
                         f"read them: {shown}. Rerun once the inputs are stable.")


def empty_window_warnings(cfg: JobConfig, coverage: pd.DataFrame, show: int = 5) -> list[str]:
    """One warning per model with evaluated windows missing from ``[windows.start,
    windows.end)`` (no prediction row in them: an outage or a late partition is not silent).
    Needs both bounds and a window size."""
    from rayeval.slicing import window_end, window_starts

    w = cfg.windows
    if w.size == "none" or w.start is None or w.end is None or coverage.empty:
        return []
    start, end = utc_ns(w.start), utc_ns(w.end)
    expected, cur = [], int(window_starts(np.array([start]), w.size)[0])
    while cur < end and len(expected) < 100_000:
        expected.append(cur)
        cur = window_end(cur, w.size)
    out = []
    for model, part in coverage.groupby("model", sort=True):
        seen = {int(pd.Timestamp(t).value) for t in part["window_start"].dropna()}
        missing = [x for x in expected if x not in seen]
        if missing:
            days = [str(pd.Timestamp(x, tz="UTC").date()) for x in missing[:show]]
            out.append(f"model {model}: no prediction rows in {len(missing)} of "
                       f"{len(expected)} {w.size} window(s) of [{w.start}, {w.end}) (e.g. "
                       f"{', '.join(days)}{', ...' if len(missing) > show else ''}): they have "
                       "no metric or gate row")
    return out


def _git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, cwd=os.path.dirname(__file__)).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def inputs_fingerprint(pred: DatasetInfo | None, labels: DatasetInfo | None) -> str:
    """sha256 (16 hex) of every input file's path, size and ETag/mtime, per dataset: equal
    fingerprints mean the same bytes were read (a backfill skips such a committed window)."""
    return inputs_fingerprint_of({
        name: [] if ds is None else [(f.path, f.size, f.fingerprint) for f in ds.files]
        for name, ds in (("predictions", pred), ("labels", labels))})


def inputs_fingerprint_of(listed: dict[str, list]) -> str:
    """:func:`inputs_fingerprint` of ``{"predictions": [(path, size, fingerprint)], "labels":
    [...]}`` (a listing, see :func:`rayeval.engine.backfill.listed_inputs`)."""
    import hashlib

    parts = [[tuple(x) for x in listed.get(name, [])] for name in ("predictions", "labels")]
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def build_manifest(cfg: JobConfig, run_id: str, pred: DatasetInfo, labels: DatasetInfo | None,
                   fin: Finalized, label_index: LabelIndex | None, timer: _Timer,
                   warnings: list[str]) -> dict:
    """The run manifest: redacted config and its hash, input files (size, rows, mtime) and their
    fingerprint, row counts by stage and reason, versions, stage durations, and ``warnings``:
    input problems that were counted rather than raised (e.g. a column absent from some
    files)."""
    import pyarrow
    import ray

    def files(ds: DatasetInfo | None):
        if ds is None:
            return []
        return [{"path": f.path, "size": f.size, "rows": f.num_rows, "fingerprint": f.fingerprint}
                for f in ds.files]

    inputs = {"predictions": files(pred), "labels": files(labels)}
    fp = inputs_fingerprint(pred, labels)
    counts = dict(fin.counters)
    if label_index is not None:
        counts.update(labels_read=label_index.n_read, labels_duplicate=label_index.n_duplicates,
                      labels_missing_id=label_index.n_missing_id,
                      labels_without_prediction=fin.labels_without_prediction)
    counts["rows_unlabeled"] = counts.get("rows_evaluated", 0) - counts.get("rows_labeled", 0)
    counts["slices_below_min_size"] = fin.suppressed_slices
    counts["invalid"] = invalid_totals(fin.invalid)
    return {"run_id": run_id, "config": cfg.redacted(), "config_hash": cfg.config_hash(),
            "results_hash": cfg.results_hash(),
            "input_fingerprint": fp, "inputs": inputs, "row_counts": counts,
            "versions": {"rayeval": rayeval.__version__, "ray": ray.__version__,
                         "pyarrow": pyarrow.__version__, "git_sha": _git_sha()},
            "durations": dict(timer.durations), "warnings": list(warnings)}
