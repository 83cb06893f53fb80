"""Input checks that need no Ray: list the input files, read their footers and check the data
contract (paths exist, required columns present with usable types), before a Ray session or
the job's actors start (``rayeval run`` checks them before Ray's start-up, :func:`run_job`
before its actor pool), so a bad input fails in about a second with nothing started.

Task columns come from the registered metric families (:mod:`rayeval.core.registry`): each
family says which config column feeds which batch key, and its spec the role of that key
(``spec.inputs()``), which fixes the type the schema contract checks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

from rayeval.config import JobConfig, utc
from rayeval.core import registry
from rayeval.engine.gates import check_gates
from rayeval.engine.quality import check_quality_policy
from rayeval.io.readers import DatasetInfo, InputError, check_columns, inspect_dataset
from rayeval.io.writers import check_output_writable

#: the schema check of each input role (see :func:`rayeval.io.readers.check_columns`)
ROLE_CHECKS = {"class_label": "class", "class_prediction": "class", "numeric_target": "numeric",
               "numeric_prediction": "numeric", "score": "score", "scores": "score"}
#: roles served by the ground truth (from the labels dataset when it is separate)
LABEL_ROLES = ("class_label", "numeric_target")


def required_prediction_columns(cfg: JobConfig, labels_separate: bool) -> dict[str, str]:
    """Columns the predictions dataset must have, with the role each serves (for the schema
    contract check and the column projection)."""
    cols = cfg.columns
    req: dict[str, str] = {cols.timestamp: "timestamp"}
    if cols.model:
        req[cols.model] = "any"
    if labels_separate or cfg.policy.duplicate_predictions == "error":
        req[cols.id] = "id"
    if cols.weight:
        req[cols.weight] = "numeric"
    if cfg.intervals.enabled:  # the replicate weights are seeded by the unit column
        req.setdefault(cfg.intervals.unit or cols.id, "any" if cfg.intervals.unit else "id")
    families = registry.families()
    for t in cfg.tasks:
        for family, spec in registry.task_specs(t, selected=False).items():
            roles = spec.inputs()
            for key, column in families[family].columns(t).items():
                role = roles[key].rstrip("?")
                if labels_separate and role in LABEL_ROLES:
                    continue
                for c in column if isinstance(column, tuple) else (column,):
                    req[c] = ROLE_CHECKS[role]
    for c in cfg.filters:
        req.setdefault(c, "any")
    for spec in cfg.slice_specs():
        for c in spec:
            req.setdefault(c, "any")
    if cfg.drift.enabled:
        for f in cfg.drift.features:
            req.setdefault(f.name, "any")
    return req


def label_required_columns(cfg: JobConfig) -> dict[str, str]:
    """Columns the separate labels dataset must have (id, every task's label, its timestamp)."""
    lreq = {cfg.inputs.labels.id_column or cfg.columns.id: "id"}
    for t in cfg.tasks:
        lreq[t.label] = "numeric" if t.type == "regression" else "class"
    if cfg.inputs.labels.timestamp_column:
        lreq[cfg.inputs.labels.timestamp_column] = "timestamp"
    return lreq


def scan_range(cfg: JobConfig) -> tuple:
    """``(start, end)`` datetimes (``None``: unbounded) of the predictions the scan reads: the
    evaluated windows, widened to a drift ``time_range`` reference (whose rows the scan feeds
    to the reference histograms, see :class:`~rayeval.engine.drift_plan.DriftPlan`)."""
    w, ref = cfg.windows, cfg.drift.reference
    if not (cfg.drift.enabled and ref.kind == "time_range"):
        return w.start, w.end
    start = None if w.start is None else min(utc(w.start), utc(ref.start))
    end = None if w.end is None else max(utc(w.end), utc(ref.end))
    return start, end


@dataclass
class InputsInfo:
    """What :func:`inspect_inputs` found.

    Attributes:
        predictions, labels: the predictions and (separate) labels datasets: files, sizes,
            schema (``labels`` None when the labels sit in the predictions).
        required: prediction columns to read -> the role each serves.
        label_required: label columns -> role (empty without a labels dataset).
        warnings: input warnings for the manifest and console (columns absent from some files,
            naive timestamps among zoned ones).
        seconds: how long the checks took (the manifest's ``inspect`` duration).
    """

    predictions: DatasetInfo
    required: dict[str, str]
    labels: Optional[DatasetInfo] = None
    label_required: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    scoring: Optional[object] = None  # inputs.models: a rayeval.engine.scoring.ScoringPlan


def inspect_inputs(cfg: JobConfig) -> InputsInfo:
    """Every check of a job that needs no Ray: gate rules and ``metrics:`` lists, the output
    path, the datasets' files and footers (no rows), the schema contract of the predictions and
    labels (required columns and their types); with ``inputs.models``, the models resolved in
    the registry and their signatures checked against the features.

    Raises:
        ConfigError: gate rules or ``metrics:`` lists naming what the tasks cannot produce,
            ``policy.max_invalid_share`` naming an unknown task or reason.
        InputError: a missing or empty dataset, an unwritable output, a missing column or one
            of the wrong type (naming the file, column and type); an unknown model or alias,
            a signature the features do not fit.
        RegistryUnavailable: the model registry did not answer.
    """
    t0 = time.perf_counter()
    storage = cfg.inputs.storage
    check_gates(cfg)
    check_quality_policy(cfg)
    check_output_writable(cfg.outputs.path)
    start, end = scan_range(cfg)
    pred_info = inspect_dataset(cfg.inputs.source.uri, storage, start, end)
    if pred_info.num_rows == 0:  # by the files' footers: before any pass starts
        raise InputError(f"No rows in {cfg.inputs.source.uri} "
                         f"({len(pred_info.files)} file(s), all empty)")
    labels_separate = cfg.inputs.labels is not None
    req = required_prediction_columns(cfg, labels_separate)
    if cfg.inputs.models is not None:  # the scorer fills these
        from rayeval.engine.scoring import filled_columns

        for c in filled_columns(cfg):
            req.pop(c, None)
    check_columns(pred_info, req)
    if cfg.columns.id in pred_info.schema.names:  # optional: enables duplicate detection
        req.setdefault(cfg.columns.id, "id")
    out = InputsInfo(pred_info, req,
                     warnings=pred_info.absent_warnings(req) + pred_info.timezone_warnings()
                     + missing_weight_check(cfg, pred_info))
    if labels_separate:
        out.labels = inspect_dataset(cfg.inputs.labels.uri, storage)
        out.label_required = label_required_columns(cfg)
        check_columns(out.labels, out.label_required)
        out.warnings += out.labels.absent_warnings(out.label_required)
    if cfg.inputs.models is not None:  # resolve the models, check their signatures
        from rayeval.engine.mlflow_log import tracking_uri
        from rayeval.engine.scoring import prepare_scoring
        from rayeval.io.models import registry_uri

        label_types = {f.name: f.type for info in (pred_info, out.labels) if info is not None
                       for f in info.schema}
        out.scoring = prepare_scoring(cfg, pred_info, out.required,
                                      registry_uri(cfg, tracking_uri(cfg)), label_types)
        out.warnings += out.scoring.warnings
    out.seconds = round(time.perf_counter() - t0, 3)
    return out


def missing_weight_check(cfg: JobConfig, pred: DatasetInfo, show: int = 5) -> list[str]:
    """Apply ``policy.missing_weight`` to a weight column absent from some prediction files
    (their rows would otherwise be excluded from every metric as ``nonfinite_weight``).

    Returns:
        The warning under ``weight_one`` (those rows weigh 1), else ``[]``.

    Raises:
        InputError: under ``error`` (the default), naming the files and their rows.
    """
    col = cfg.columns.weight
    paths = pred.absent.get(col) if col else None
    if not paths or col not in pred.schema.names:
        return []
    rows = {f.path: f.num_rows for f in pred.files}
    n = sum(rows[p] for p in paths)
    listed = ", ".join(paths[:show]) + (f" and {len(paths) - show} more" if len(paths) > show
                                        else "")
    what = (f"weight column {col!r} is absent from {len(paths)} of {len(pred.files)} files of "
            f"{pred.uri} ({n:,} of {pred.num_rows:,} rows: {listed})")
    if cfg.policy.missing_weight == "error":
        raise InputError(f"{what}: their rows have no weight; add the column to those files, "
                         f"or set policy.missing_weight=weight_one to weigh them 1")
    return [f"{what}: these rows, and any null weight, weigh 1 (policy.missing_weight="
            f"weight_one)"]
