"""Run one evaluation job end to end: inspect inputs, read labels, scan, finalize, write.

Stages (timed, recorded in the manifest): ``inspect`` (list files, read footers, check the data
contract), ``labels`` (read + deduplicate the labels dataset, broadcast), ``reference`` (drift
pass over the reference data), ``scan`` (partial aggregation of the current data), ``finalize``,
``write`` (atomic Parquet commit), ``mlflow``.
The run's result and manifest are built by :mod:`rayeval.engine.run_record`.
"""

from __future__ import annotations

import contextlib
import os
import time
from datetime import datetime, timezone
from typing import Callable

import pandas as pd

from rayeval.config import LAST_PASSING_RUN, JobConfig, redact_uri, storage_options
from rayeval.engine.blessing import blessing_record
from rayeval.engine.gates import evaluate_gates
from rayeval.engine.labels import LabelIndex
from rayeval.engine.mlflow_log import MLflowLog, drift_history, tracking_uri
from rayeval.engine.plan import EvalPlan, exclusion_detail, utc_ns
from rayeval.engine.preflight import InputsInfo, inspect_inputs, scan_range
from rayeval.engine.preflight import required_prediction_columns  # noqa: F401 (former home)
from rayeval.engine.quality import quality_gates
from rayeval.engine.results import finalize, paused_gc
# the run's record, re-exported from here as before
from rayeval.engine.run_record import (RunResult, _Timer, build_manifest,  # noqa: F401
                                       check_inputs_unchanged, empty_window_warnings,
                                       inputs_fingerprint, inputs_fingerprint_of)
from rayeval.io.readers import InputError, read_table
from rayeval.io.writers import RunWriter, check_output_writable, commit_token, output_fs


def read_pairs(cfg: JobConfig, pred_info) -> list:
    """The baseline rows of every comparison pair, by id (read once before the scan,
    broadcast like the labels; see :mod:`rayeval.engine.pairing`).

    Raises:
        InputError: a pair's model has no prediction row.
    """
    from rayeval.engine.pairing import build_pair_indexes, prediction_columns
    from rayeval.engine.plan import _timestamps
    from rayeval.slicing import window_starts

    cols = cfg.columns
    names = list(dict.fromkeys([cols.id, cols.model, cols.timestamp]
                               + prediction_columns(cfg)))
    table = read_table(pred_info, names)
    try:
        return build_pair_indexes(
            cfg, table, lambda t: window_starts(_timestamps(t, cols.timestamp),
                                                cfg.windows.size))
    except ValueError as e:
        raise InputError(f"{e} ({cfg.inputs.predictions.uri!r})") from None


def run_job(cfg: JobConfig, progress: Callable[[str], None] | None = None,
            inputs: InputsInfo | None = None, actions: list[str] | None = None) -> RunResult:
    """Execute ``cfg`` on the current Ray session (see :func:`rayeval.engine.session.ray_session`)
    and append its record to the output's ``audit`` table (see :mod:`rayeval.io.audit`).

    ``progress``: called with each stage's name as it starts and, during each Ray pass, about
    every second with a line of rows done / total (the files' footers) and rate.
    ``inputs``: the result of :func:`~rayeval.engine.preflight.inspect_inputs` when the caller
    checked the inputs before starting Ray (else they are inspected here, first).

    The MLflow run (``outputs.mlflow.enabled``) is created while the job scans
    (:class:`~rayeval.engine.mlflow_log.MLflowLog`) and completed after the write; a job that
    fails marks it FAILED.

    ``actions``: what the caller did around this run (e.g. a backfill's reason to recompute a
    window), recorded in the manifest and the audit record.

    Raises:
        InputError: bad input (missing path/column, corrupt file, bad types, too many slices,
            duplicate ids under policy ``error``, unknown model or alias, a model signature
            the features do not fit, an input file changed while read); no table
            is written, not even an audit record.
        RegistryUnavailable: the model registry did not answer; nothing is written.
        ScoringError: a model failed on a batch (names the model and the batch); nothing is
            written.
        ConcurrentRunError: another run committed the same run id meanwhile; nothing of this
            run is committed (an audit record says so: any failure but bad input is audited
            when the output path held results before the run, and a lost commit race always).
    """
    from rayeval.io.audit import append_audit, audit_record

    check_output_writable(cfg.outputs.path)  # before reading a commit token under it
    so = storage_options(cfg.inputs.storage) if cfg.outputs.path.startswith("s3://") else None
    fs, root = output_fs(cfg.outputs.path, so)
    actions = list(actions or [])
    existed = fs.exists(root)
    token = commit_token(fs, root, cfg.resolved_run_id()) if existed else None
    try:
        result = _run_job(cfg, progress, inputs, token, actions)
    except InputError:
        raise
    except BaseException as e:
        # a failed run leaves a trace next to earlier results (or next to the results of the
        # concurrent run that won the commit); a fresh output path stays empty
        from rayeval.io.exclusive import ConcurrentRunError
        if (existed or isinstance(e, ConcurrentRunError)) and fs.exists(root):
            try:
                append_audit(fs, root, audit_record(
                    cfg.resolved_run_id(), config_hash=cfg.config_hash(),
                    output_location=cfg.outputs.path, status="failed",
                    actions=actions + ["nothing committed"],
                    error=f"{type(e).__name__}: {e}"[:2000]))
            except OSError:
                pass
        raise
    verdict = "none" if result.gates.empty else ("passed" if result.gates_passed else "failed")
    done = actions + [f"committed {len(result.outputs)} files under {redact_uri(cfg.outputs.path)}"
                      f" (commit {result.manifest['commit_id']})"]
    if token is not None:
        done.append(f"replaced commit {token} of run id {result.run_id}")
    lock = result.manifest.get("commit_lock", {})
    if lock.get("stale_lock_broken"):
        done.append(f"broke a stale commit lock of run {lock['stale_lock_broken'].get('run_id')}"
                    f" (pid {lock['stale_lock_broken'].get('pid')})")
    if cfg.outputs.mlflow.enabled:
        done.append(f"MLflow run {result.mlflow_run_id}" if result.mlflow_run_id
                    else f"MLflow logging failed: {result.mlflow_error}")
    if cfg.outputs.prometheus.pushgateway_url:
        done.append(f"Pushgateway push failed: {result.publish_error}" if result.publish_error
                    else "pushed the run summary to the Pushgateway")
    result.audit_path = append_audit(fs, root, audit_record(
        result.run_id, config_hash=result.manifest["config_hash"],
        input_fingerprint=result.manifest["input_fingerprint"],
        output_location=cfg.outputs.path, status="committed", gate_verdict=verdict,
        actions=done))
    return result


def _run_job(cfg: JobConfig, progress: Callable[[str], None] | None,
             inputs: InputsInfo | None, token: str | None, actions: list[str]) -> RunResult:
    """:func:`run_job` without its audit record."""
    timer = _Timer(progress)
    ml = MLflowLog(cfg, cfg.resolved_run_id()) if cfg.outputs.mlflow.enabled else None
    try:
        with _predictions_sink(cfg) as sink:
            result = _run(cfg, timer, inputs, ml, sink, token, actions)
    except BaseException as e:
        if ml is not None:
            ml.abort(interrupted=isinstance(e, KeyboardInterrupt))
        raise
    if ml is not None:
        with timer.stage("mlflow"):
            ml.finish(result)
    if cfg.outputs.prometheus.pushgateway_url:
        with timer.stage("prometheus"):
            _push_prometheus(cfg, result, result.committed_at - result.started_at,
                             result.committed_at)
    result.durations = dict(timer.durations)
    return result


@contextlib.contextmanager
def _predictions_sink(cfg: JobConfig):
    """With ``outputs.predictions`` and ``inputs.models``: a staging folder under the output
    path where the scorers write the scored rows (``{"path", "storage_options",
    "run_id"}``), adopted by the run's commit and removed whatever happens."""
    if not (cfg.outputs.predictions and cfg.inputs.models is not None):
        yield None
        return
    import uuid

    from rayeval.io.writers import output_fs, remove_staging

    so = storage_options(cfg.inputs.storage) if cfg.outputs.path.startswith("s3://") else None
    base = cfg.outputs.path.rstrip("/")
    base = base if base.startswith("s3://") else os.path.abspath(base)
    path = f"{base}/_staging/{cfg.resolved_run_id()}-predictions-{uuid.uuid4().hex[:8]}"
    try:
        yield {"path": path, "storage_options": so, "run_id": cfg.resolved_run_id()}
    finally:
        remove_staging(*output_fs(path, so))


def _run(cfg: JobConfig, timer: _Timer, inputs: InputsInfo | None,
         ml: MLflowLog | None, sink: dict | None = None, token: str | None = None,
         actions: list[str] = ()) -> RunResult:
    """:func:`run_job` up to the written tables (``ml`` is started after the inspect stage)."""
    from rayeval.engine import ray_runner

    started = time.time()
    progress = timer.progress
    started_at = datetime.fromtimestamp(started, timezone.utc)  # every table's run_started_at
    run_id = cfg.resolved_run_id()
    storage = cfg.inputs.storage
    w = cfg.windows
    if inputs is None:
        with timer.stage("inspect"):
            inputs = inspect_inputs(cfg)
    else:  # checked by the caller before Ray started
        timer.durations["inspect"] = inputs.seconds
    pred_info, label_info, req = inputs.predictions, inputs.labels, dict(inputs.required)
    scoring = inputs.scoring  # inputs.models: resolved, signatures checked
    start, end = scan_range(cfg)
    input_warnings = list(inputs.warnings)
    if ml is not None:
        ml.start()  # in a thread: the MLflow store and run are created during the scan

    # the reducer actors start once the inputs passed every check that needs no Ray; their
    # start-up overlaps the labels stage
    with ray_runner.ReducerPool(cfg.ray) as pool:  # one actor pool for every pass of the job
        pool.progress = progress  # rows done / total and rate of every pass
        label_index = None
        if label_info is not None:
            with timer.stage("labels"):
                lid = cfg.inputs.labels.id_column or cfg.columns.id
                lts = cfg.inputs.labels.timestamp_column
                lcols = list(dict.fromkeys([lid] + [t.label for t in cfg.tasks]
                                           + ([lts] if lts else [])))
                table = read_table(label_info, lcols)
                if table.num_rows == 0:
                    raise InputError(f"Labels dataset {cfg.inputs.labels.uri!r} "
                                     f"({len(label_info.files)} files) has no rows: there is "
                                     f"nothing to evaluate")
                label_index = LabelIndex.build(table, lid, lts)
                id_type = pred_info.schema.field(cfg.columns.id).type
                try:
                    label_index.check_prediction_id_type(id_type)
                except TypeError as e:
                    raise InputError(f"{e} (predictions {cfg.inputs.source.uri!r}, labels "
                                     f"{cfg.inputs.labels.uri!r})") from None
                if lid != cfg.columns.id:
                    label_index.id_column = lid

        pairs = None  # before the drift reference pass: a bad pair fails early
        if cfg.comparisons.pairs:
            with timer.stage("pairs"):
                pairs = read_pairs(cfg, pred_info)

        drift_plan = None
        ref_partial = None
        if cfg.drift.enabled:
            from rayeval.engine.drift_reference import build_drift_plan

            with timer.stage("reference"):
                drift_plan, ref_partial = build_drift_plan(cfg, pred_info, label_index,
                                                           ray_runner, pool)
            input_warnings += drift_plan.warnings

        plan = EvalPlan(cfg, label_index, drift_plan, pairs)
        columns = list(req)
        extra = {}
        if scoring is not None:
            columns = scoring.read_columns
            extra = dict(transform=scoring.transform(pool.num_cpus, sink),
                         out_schema=scoring.schema)
        with timer.stage("scan" if scoring is None else "score+scan"):
            try:
                merged = ray_runner.aggregate(
                    plan, pred_info, columns, "current", ray_cfg=cfg.ray, pool=pool,
                    time_range=(cfg.columns.timestamp,
                                *(None if t is None else utc_ns(t) for t in (start, end))),
                    **extra)
            except Exception:
                check_inputs_unchanged(storage, pred_info, label_info)  # the likelier cause
                raise
            check_inputs_unchanged(storage, pred_info, label_info)

    c = merged["_counters"]
    # rows the time range pushed into the read skipped (the files' footers count them): they
    # are rows read and outside the windows, as without the pushdown
    # (scored: every feature row is read once per model)
    per_row = 1 if scoring is None else len(scoring.models)
    skipped = max(pred_info.num_rows * per_row - c.get("rows_read", 0), 0)
    c["rows_read"] = c.get("rows_read", 0) + skipped
    c["rows_out_of_range"] = c.get("rows_out_of_range", 0) + skipped
    if c.get("rows_read", 0) == 0:
        raise InputError(f"No rows in {cfg.inputs.source.uri} "
                         f"({len(pred_info.files)} file(s), all empty)")
    across = c.get("rows_duplicate_across_batches", 0)
    within = c.get("rows_duplicate_prediction", 0)
    merged.pop("_ids", None)
    if (within or across) and cfg.policy.duplicate_predictions == "error":
        raise InputError(f"{within + across:,} duplicate prediction id(s) in "
                         f"{cfg.inputs.source.uri} (column {cfg.columns.id!r}, same model: "
                         f"{within:,} within a batch, {across:,} across input batches); set "
                         f"policy.duplicate_predictions=keep_latest to keep the latest by "
                         f"timestamp")
    if across:
        input_warnings.append(
            f"{across:,} prediction row(s) repeat an id (of the same model) already evaluated "
            f"in another batch: duplicates are dropped within a batch only, so these were "
            f"evaluated more than once (counted as rows_duplicate_across_batches); keep an "
            f"id's rows in one file, or deduplicate upstream")
    if c.get("rows_evaluated", 0) == 0:
        detail = exclusion_detail(c)
        raise InputError(f"Nothing to evaluate: none of the {c['rows_read']:,} rows read from "
                         f"{cfg.inputs.source.uri} is in the evaluated windows "
                         f"[{w.start or '-inf'}, {w.end or '+inf'}) after the filters ({detail})")
    with timer.stage("finalize"), paused_gc():  # millions of small objects, no cycles to find
        fin = finalize(plan, merged, run_id)
        drift_df = None
        if drift_plan is not None:
            drift_df = drift_plan.finalize(ref_partial, merged, run_id)
            input_warnings += drift_plan.finalize_warnings
        input_warnings += empty_window_warnings(cfg, fin.coverage)
        previous = None
        if any(g.baseline == LAST_PASSING_RUN for g in cfg.gates):
            from rayeval.engine.blessing import last_blessed_run, previous_metrics

            prev_id = last_blessed_run(cfg, exclude=run_id)
            if prev_id is None:
                raise InputError(f"gates: baseline {LAST_PASSING_RUN!r}: no BLESSED run of job "
                                 f"{cfg.name!r} other than {run_id!r} in "
                                 f"{cfg.outputs.path}/blessing")
            previous = previous_metrics(cfg, prev_id)
        from rayeval.engine.maturity import gate_mature, window_maturity

        as_of = cfg.windows.as_of or datetime.fromtimestamp(started, timezone.utc)
        windows = window_maturity(cfg, fin.coverage, run_id, as_of)
        gates = gate_mature(cfg, fin.metrics, drift_df, windows, run_id,
                            lambda c, m, d, r: evaluate_gates(c, m, d, r, fin.comparisons,
                                                              previous))
        quality = quality_gates(cfg, fin.invalid, fin.coverage, run_id, list(gates.columns))
        if not quality.empty:
            gates = quality if gates.empty else pd.concat([gates, quality], ignore_index=True)
        estimated = None
        if cfg.estimation.enabled:
            from rayeval.engine.estimation import estimated_table, shift_warnings

            estimated = estimated_table(plan, merged, run_id, fin.metrics, windows)
            input_warnings += shift_warnings(estimated)

    manifest = build_manifest(cfg, run_id, pred_info, label_info, fin, label_index, timer,
                              input_warnings)
    manifest["run_started_at"] = started_at.isoformat()
    manifest["passes"] = pool.passes  # per pass: rows, read tasks, per-actor wait/reduce time
    if scoring is not None:
        manifest["models"] = [m.describe() for m in scoring.models]
    manifest["actions"] = list(actions)
    result = RunResult(run_id, fin, drift_df, gates, {}, manifest, durations=timer.durations,
                       windows=windows, estimated=estimated,
                       blessing=blessing_record(cfg, run_id, gates, manifest))
    with timer.stage("write"):
        so = storage_options(storage) if cfg.outputs.path.startswith("s3://") else None
        with RunWriter(cfg.outputs.path, run_id, so, run_started_at=started_at,
                       expect_commit=token, lock_wait_s=cfg.outputs.lock_wait_s) as writer:
            manifest["commit_id"] = writer.commit_id
            writer.write_table("metrics", fin.metrics)
            writer.write_table("confusion", fin.confusion)
            writer.write_table("coverage", fin.coverage)
            writer.write_table("invalid", fin.invalid)
            hist = drift_plan.histogram_table() if drift_plan is not None else None
            if drift_df is not None:
                writer.write_table("drift", drift_df)
                writer.write_table("drift_histograms", hist)
            if cfg.comparisons.pairs:
                writer.write_table("comparisons", fin.comparisons)
            writer.write_table("gates", gates)
            writer.write_table("windows", windows)
            if estimated is not None:
                writer.write_table("estimated", estimated)
            writer.write_json(f"blessing/{run_id}.json", result.blessing)
            if cfg.outputs.report:
                from rayeval.io.report import render_report

                html = render_report(cfg.name, run_id, fin.metrics, fin.coverage, drift_df,
                                     gates, hist, manifest, estimated, fin.comparisons,
                                     result.blessing)
                writer.write_bytes(f"reports/{run_id}.html", html.encode())
            from rayeval.io.alert_records import alert_records

            writer.write_json(f"alerts/{run_id}.json",
                              alert_records(cfg.name, run_id, gates, drift_df))
            if sink is not None:
                from rayeval.io.writers import output_fs

                n = writer.adopt(output_fs(sink["path"], sink["storage_options"])[1],
                                 "predictions")
                manifest["predictions_files"] = n
            manifest["durations"] = dict(timer.durations)
            writer.write_json(f"manifests/{run_id}.json", manifest)
            result.outputs = writer.commit()
            manifest["commit_lock"] = writer.lock_report

    result.started_at = started
    result.committed_at = time.time()
    return result


def _push_prometheus(cfg: JobConfig, result: RunResult, duration_s: float,
                     committed_at: float) -> None:
    """Push the run summary; a failure is kept in ``result.publish_error`` (never raised: the
    results are already committed)."""
    from rayeval.io.prometheus import PublishError, build_summary, push_summary

    fin = result.finalized
    from rayeval.engine.maturity import maturity_configured

    windows = result.windows if maturity_configured(cfg) else None
    samples = build_summary(cfg, fin.metrics, fin.coverage, result.drift, result.gates,
                            duration_s, committed_at, windows=windows,
                            estimated=result.estimated)
    try:
        push_summary(cfg, samples)
    except PublishError as e:
        result.publish_error = str(e)


__all__ = ["run_job", "RunResult", "InputError", "tracking_uri", "drift_history", "scan_range",
           "required_prediction_columns"]
