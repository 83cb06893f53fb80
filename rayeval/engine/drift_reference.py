"""The drift reference passes: which reference (a dataset, a time range of the predictions or
the previous window), which of its columns are read, and the profile and histogram passes that
build the :class:`~rayeval.engine.drift_plan.DriftPlan` of the current scan."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from rayeval.config import JobConfig
from rayeval.engine.drift_plan import DriftPlan, Monitored, monitored_columns
from rayeval.engine.plan import exclusion_detail, utc_ns
from rayeval.engine.preflight import required_prediction_columns
from rayeval.slicing import window_end


def build_drift_plan(cfg: JobConfig, pred_info, label_index, ray_runner, pool=None):
    """Run the reference passes (on the job's reducer ``pool`` when given); returns
    ``(drift_plan, reference_partial)`` (the partial is ``None`` for ``previous_window`` and
    empty when the reference histograms are built in the current scan, see
    :attr:`DriftPlan.reference_in_scan`)."""
    from rayeval.engine.plan import EvalPlan
    from rayeval.io.readers import InputError, check_columns, inspect_dataset

    ref = cfg.drift.reference
    columns = monitored_columns(cfg)
    warnings: list[str] = []
    if ref.kind == "dataset":
        ref_info = inspect_dataset(ref.uri, cfg.inputs.storage)
        ref_range = None
        columns, warnings = _reference_dataset_columns(cfg, columns, ref_info)
    elif ref.kind == "time_range":
        ref_info = inspect_dataset(cfg.inputs.predictions.uri, cfg.inputs.storage, ref.start,
                                   ref.end)
        ref_range = (utc_ns(ref.start), utc_ns(ref.end))
    else:  # previous_window: edges from the first window of the current range
        w = cfg.windows
        if w.size == "none":
            raise InputError("drift.reference.kind=previous_window needs windows.size")
        start = w.start or _first_timestamp(pred_info, cfg.columns.timestamp)
        start_ns = utc_ns(start)
        from rayeval.slicing import window_starts

        first = int(window_starts(np.array([start_ns]), w.size)[0])
        ref_range = (max(first, start_ns), window_end(first, w.size))
        ref_info = inspect_dataset(cfg.inputs.predictions.uri, cfg.inputs.storage,
                                   pd.Timestamp(ref_range[0], tz="UTC").to_pydatetime(),
                                   pd.Timestamp(ref_range[1], tz="UTC").to_pydatetime())
    table_cols = [m.column for m in columns if m.source == "table"]
    # the reference passes read the monitored columns and what selects and keys their rows
    # (timestamp, model, id, weight, in-table labels, filters); the histogram pass also the
    # slice columns when drift is sliced (the profile pass is per model only)
    req = required_prediction_columns(cfg, cfg.inputs.labels is not None)
    keep = set(table_cols) | set(cfg.filters) | {t.label for t in cfg.tasks} | {
        cfg.columns.timestamp, cfg.columns.model, cfg.columns.id, cfg.columns.weight}
    sliced = {c for spec in cfg.slice_specs() for c in spec} if cfg.drift.slices else set()
    req = {c: r for c, r in req.items() if c in keep | sliced}
    if ref.kind == "dataset":  # optional columns (id, in-table labels) only where present
        req = {c: r for c, r in req.items() if c in ref_info.schema.names or c in table_cols
               or c in sliced or c in cfg.filters}
    check_columns(ref_info, {c: "any" for c in req})
    read_cols = list(req)
    drift = DriftPlan(cfg, columns, ref_range)
    plan = EvalPlan(cfg, label_index, drift)
    opts = dict(ray_cfg=cfg.ray, pool=pool, time_range=None if ref_range is None else (
        cfg.columns.timestamp, *ref_range))
    profile_cols = [c for c in read_cols if c in keep]
    profiles = ray_runner.aggregate(plan, ref_info, profile_cols, "reference", **opts)
    pc = profiles["_counters"]
    if pc.get("rows_evaluated", 0) == 0:
        why = exclusion_detail(pc)
        raise InputError(f"The drift reference ({drift.reference_name}) has no rows "
                         f"({len(ref_info.files)} file(s), {pc.get('rows_read', 0):,} rows read"
                         + (f": {why}" if why else "") + "): drift needs a non-empty reference"
                         + (f" (`filters` {dict(cfg.filters)} matched no reference row)"
                            if pc.get("rows_filtered", 0) else ""))
    unlabelled = {m.column for m in columns if m.source == "label"} - {
        n.split("|")[3] for n in profiles if n.startswith("drift|profile|label|")}
    warnings += [f"drift: no labelled row in the reference ({drift.reference_name}) for label "
                 f"{c!r}: its label drift is not reported" for c in sorted(unlabelled)]
    drift = drift.with_binnings(profiles, warnings)
    if ref.kind == "previous_window":
        return drift, None
    if drift.reference_in_scan:
        return drift, {}
    plan = EvalPlan(cfg, label_index, drift)
    ref_partial = ray_runner.aggregate(plan, ref_info, read_cols, "reference", **opts)
    return drift, ref_partial


def _reference_dataset_columns(cfg: JobConfig, columns: list[Monitored], ref_info
                               ) -> tuple[list[Monitored], list[str]]:
    """The monitored columns a reference dataset can serve, and a warning per column it
    cannot: a prediction column (``drift.predictions``) it lacks, or a label (``drift.labels``)
    it neither holds nor can join (no id column for separate labels). A configured feature it
    lacks stays: the column check then names it (an error)."""
    names = set(ref_info.schema.names)
    keep, warnings = [], []
    for m in columns:
        if m.kind == "prediction" and m.column not in names:
            why = f"has no {m.column!r} column"
        elif m.source == "label" and cfg.inputs.labels is not None and cfg.columns.id not in names:
            why = f"has no {cfg.columns.id!r} id column to join the labels"
        elif m.source == "label" and cfg.inputs.labels is None and m.column not in names:
            why = f"has no {m.column!r} label column"
        else:
            keep.append(m)
            continue
        warnings.append(f"drift: the reference dataset {ref_info.uri} {why}: {m.kind} drift of "
                        f"{m.column!r} is not reported")
    return keep, warnings


def _first_timestamp(info, column: str) -> datetime:
    """Earliest ``column`` value from the Parquet row-group statistics of every file (no scan).

    Raises:
        InputError: when the files carry no statistics for the column.
    """
    import pyarrow.parquet as pq

    from rayeval.io.readers import InputError

    lows = []
    for f in info.files:
        with info.filesystem.open_input_file(f.path) as fh:
            md = pq.ParquetFile(fh).metadata
        idx = md.schema.to_arrow_schema().get_field_index(column)
        for rg in range(md.num_row_groups):
            st = md.row_group(rg).column(idx).statistics if idx >= 0 else None
            if st is not None and st.has_min_max:
                lows.append(pd.Timestamp(st.min))
    if not lows:
        raise InputError(f"Set windows.start: no Parquet statistics for {column!r} in "
                         f"{info.uri} to find the first window")
    first = min(lows)
    return (first.tz_localize("UTC") if first.tzinfo is None else first).to_pydatetime()
