"""Backfill a date range window by window, resumably.

Each window ``[s, e)`` of ``windows.size`` inside ``[start, end)`` is its own run with run id
``<name>-<s:%Y%m%dT%H%M>`` (the run id :mod:`jobs.scheduled` gives the same window, so a
scheduled run and a backfill of one window replace each other and never both count) and its own
atomic commit. A backfill killed after some windows were committed therefore leaves those
windows complete and the others untouched (at worst a hidden ``_staging/`` folder and a commit
lock, which the next run breaks as stale).

With ``resume`` (the default) a rerun skips a window whose committed manifest has the same
results hash (the config minus Ray tuning and outputs) and the same input fingerprint (every
input file's path, size and ETag/mtime, from one listing: no data is read to decide). A window
whose inputs changed since its commit (late labels, a rewritten partition) is recomputed and
replaces the old commit; its manifest's ``actions`` and its audit record say which files
changed. A ``previous_window`` drift reference needs every window in one run: such a backfill
is one run over the range (resumable as a whole). Which label files can hold a window's labels is unknown without reading them, so any
change in the labels dataset recomputes every window (correct, not minimal); prediction files
are attributed to windows by their hive ``date=`` partition when they have one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

import numpy as np
import pandas as pd

from rayeval.config import JobConfig, storage_options, utc
from rayeval.io.readers import InputError, etag_fingerprints, list_files
from rayeval.io.writers import output_fs


@dataclass
class WindowOutcome:
    """What a backfill did with one window: ``computed``, ``recomputed``, ``skipped`` or
    ``failed`` (with the reason, and the run's exit code contribution)."""

    run_id: str
    start: pd.Timestamp
    end: pd.Timestamp
    status: str
    reason: str
    result: object = None


def backfill_windows(cfg: JobConfig, start: datetime, end: datetime
                     ) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """``(start, end)`` of each window of ``cfg.windows.size`` overlapping ``[start, end)``,
    clipped to it (``size`` ``none``, or a ``previous_window`` drift reference, which needs the
    windows in one run: the whole range as one window)."""
    from rayeval.slicing import window_end, window_starts

    s, e = pd.Timestamp(utc(start)), pd.Timestamp(utc(end))
    if s >= e:
        raise InputError(f"backfill start {s} must be before its end {e}")
    size = cfg.windows.size
    if size == "none" or whole_range(cfg):
        return [(s, e)]
    out = []
    cur = int(window_starts(np.array([s.value]), size)[0])
    while cur < e.value:
        nxt = window_end(cur, size)
        out.append((max(s, pd.Timestamp(cur, tz="UTC")), min(e, pd.Timestamp(nxt, tz="UTC"))))
        cur = nxt
    return out


def whole_range(cfg: JobConfig) -> bool:
    """Drift against the ``previous_window``: each window's reference is the window before,
    which a one-window run would not read, so the range is evaluated as one run."""
    return cfg.drift.enabled and cfg.drift.reference.kind == "previous_window"


def window_config(cfg: JobConfig, s: pd.Timestamp, e: pd.Timestamp) -> JobConfig:
    """``cfg`` restricted to one window, with that window's run id (a whole-range run:
    ``<name>-backfill-<start>-<end>``)."""
    windows = cfg.windows.model_copy(update={"start": s.to_pydatetime(),
                                             "end": e.to_pydatetime()})
    fmt = "%Y%m%dT%H%M"
    run_id = (f"{cfg.name}-backfill-{s.strftime(fmt)}-{e.strftime(fmt)}" if whole_range(cfg)
              else f"{cfg.name}-{s.strftime(fmt)}")
    return cfg.model_copy(update={"windows": windows, "run_id": run_id})


def listed_inputs(cfg: JobConfig) -> dict[str, list]:
    """The input files a run of ``cfg`` would read, from one listing each (no footer read):
    ``{"predictions": [(path, size, fingerprint)], "labels": [...]}``."""
    from rayeval.engine.preflight import scan_range

    storage = cfg.inputs.storage
    out = {}
    start, end = scan_range(cfg)
    for name, ds, rng in (("predictions", cfg.inputs.predictions, (start, end)),
                          ("labels", cfg.inputs.labels, (None, None))):
        if ds is None:
            out[name] = []
            continue
        try:
            fs, infos = list_files(ds.uri, storage, *rng)
        except InputError:
            out[name] = []
            continue
        fps = etag_fingerprints(fs, infos)
        out[name] = [(i.path, i.size, fp) for i, fp in zip(infos, fps)]
    return out


def committed_manifest(cfg: JobConfig) -> dict | None:
    """The manifest of ``cfg``'s run id under its output path, or ``None``."""
    so = storage_options(cfg.inputs.storage) if cfg.outputs.path.startswith("s3://") else None
    fs, root = output_fs(cfg.outputs.path, so)
    try:
        with fs.open(f"{root}/manifests/{cfg.resolved_run_id()}.json", "rb") as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return None


def input_changes(old: dict, new: dict[str, list]) -> list[str]:
    """Human-readable differences between a manifest's ``inputs`` and a fresh listing."""
    out = []
    for name in ("predictions", "labels"):
        before = {f["path"]: (f["size"], f["fingerprint"]) for f in old.get(name, [])}
        after = {p: (size, fp) for p, size, fp in new.get(name, [])}
        added = sorted(set(after) - set(before))
        gone = sorted(set(before) - set(after))
        changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
        for what, paths in (("new", added), ("removed", gone), ("changed", changed)):
            if paths:
                out.append(f"{name}: {len(paths)} {what} file(s) ({', '.join(paths[:3])}"
                           f"{', ...' if len(paths) > 3 else ''})")
    return out


def decide(cfg: JobConfig, resume: bool) -> tuple[str, str]:
    """``(status, reason)`` for one window config: ``skipped`` when resuming over an
    unchanged committed window, else ``computed`` / ``recomputed`` with the reason."""
    from rayeval.engine.run import inputs_fingerprint_of

    old = committed_manifest(cfg)
    if old is None:
        return "computed", "not committed before"
    if not resume:
        return "recomputed", "--no-resume: every window is recomputed"
    if old.get("results_hash") != cfg.results_hash():
        return "recomputed", (f"the config changed since commit {old.get('commit_id')} "
                              f"(results hash {old.get('results_hash')} -> "
                              f"{cfg.results_hash()})")
    listed = listed_inputs(cfg)
    if old.get("input_fingerprint") == inputs_fingerprint_of(listed):
        return "skipped", (f"committed as {old.get('commit_id')} with the same config and "
                           f"inputs (fingerprint {old.get('input_fingerprint')})")
    changes = input_changes(old.get("inputs", {}), listed)
    return "recomputed", (f"inputs changed since commit {old.get('commit_id')}: "
                          + ("; ".join(changes) or "fingerprint differs"))


def run_backfill(cfg: JobConfig, start: datetime, end: datetime, resume: bool = True,
                 progress: Callable[[WindowOutcome], None] | None = None
                 ) -> list[WindowOutcome]:
    """Evaluate every window of ``[start, end)`` as its own committed run (see the module
    docstring), in time order, on the current Ray session. A window with bad input (or no
    rows) is reported as ``failed`` and the next window goes on; other errors stop the
    backfill (the windows committed so far stay committed and are skipped by a resume).

    Returns:
        One :class:`WindowOutcome` per window.
    """
    from rayeval.engine.run import run_job

    out = []
    for s, e in backfill_windows(cfg, start, end):
        wcfg = window_config(cfg, s, e)
        status, reason = decide(wcfg, resume)
        outcome = WindowOutcome(wcfg.resolved_run_id(), s, e, status, reason)
        if status != "skipped":
            try:
                outcome.result = run_job(wcfg, actions=[f"backfill window [{s}, {e}) "
                                                        f"{status}: {reason}"])
            except InputError as err:
                outcome.status, outcome.reason = "failed", str(err)
        out.append(outcome)
        if progress:
            progress(outcome)
    return out
