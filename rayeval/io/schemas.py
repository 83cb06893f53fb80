"""The fixed Arrow schema of every output table, one place for the writers and the README.

Each table has one schema whatever a run holds: no rows, no invalid rows, no windows (window
columns all null), integer model names. Written files always carry exactly these columns and
types, so a folder of many runs reads as one dataset with pandas (``pd.read_parquet(folder)``),
``pyarrow.dataset`` and DuckDB (``read_parquet('folder/*/*.parquet', hive_partitioning=true)``).
A missing value is always null (never ``""``); times are UTC (``timestamp[ns, tz=UTC]``).

:func:`to_arrow` turns a table built by the engine (a pandas DataFrame with the schema's columns
but ``run_started_at``) into an Arrow table of the schema; a column the schema lacks, or one it
has that the frame lacks (when the frame has rows), is a programming error (``ValueError``).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa

UTC_TS = pa.timestamp("ns", tz="UTC")


def _f(name: str, type_: pa.DataType, doc: str) -> pa.Field:
    return pa.field(name, type_, nullable=True, metadata={"doc": doc})


_S, _F, _I, _B = pa.string(), pa.float64(), pa.int64(), pa.bool_()
_RUN = [_f("run_id", _S, "run identifier (file name of every table of the run)"),
        _f("run_started_at", UTC_TS, "when the run started (UTC): the latest run is the "
                                     "largest run_started_at, not the largest run_id")]
_WINDOW = [_f("window_start", UTC_TS, "window start, inclusive (null: windows.size none)"),
           _f("window_end", UTC_TS, "window end, exclusive (null: unbounded)")]
_SLICE = [_f("slice", _S, "rendered slice: overall, origin=ORD, origin=ORD,hour_band=night; a "
                          "missing value renders as origin=null, the string 'null' as "
                          "origin=\"null\""),
          _f("slice_columns", _S, "the slice's columns joined by ',' (null: overall)")]



def _drift_info_fields() -> list[tuple[str, str, str]]:
    """``(column, method, what)`` of the informational drift columns: every registered drift
    method (:data:`rayeval.drift.methods.METHODS`, registration order), its statistic (and
    p-value for a test, error bound for an estimate of the raw-sample statistic)."""
    from rayeval.drift.methods import METHODS

    out = []
    for name, m in METHODS.items():
        out += ([(f"info_{name}_statistic", name, "statistic"),
                 (f"info_{name}_p_value", name, "p-value")] if m.test
                else [(f"info_{name}", name, "statistic")])
        if not m.binned:
            out.append((f"info_{name}_error_bound", name, "error bound"))
    return out


#: the drift table's informational columns: ``(column, method, what)``
DRIFT_INFO_FIELDS = _drift_info_fields()
#: the drift table's data-quality columns: ``(column, meaning)``
DRIFT_QUALITY = [
    ("missing_rate", "share of current rows without a value"),
    ("type_error_rate", "share of current rows whose value has the wrong type"),
    ("out_of_range_rate", "numeric: share of values outside the reference's range"),
    ("nonfinite_rate", "numeric: share of +-inf values"),
    ("unseen_category_rate", "categorical: share of values unseen in the reference")]

SCHEMAS: dict[str, pa.Schema] = {
    "metrics": pa.schema(_RUN + [
        _f("task", _S, "task name"), _f("model", _S, "model name (as text)"), *_WINDOW, *_SLICE,
        _f("metric", _S, "metric name (e.g. roc_auc, f1, mae, n_rows)"),
        _f("class_label", _S, "class of a per-class value (null: not per class)"),
        _f("average", _S, "binary / macro / micro / weighted (null: not averaged)"),
        _f("value", _F, "the value; NaN when undefined (see undefined_reason)"),
        _f("direction", _S, "higher_is_better / lower_is_better / neutral"),
        _f("ci_lower", _F, "confidence interval lower bound (NaN: none)"),
        _f("ci_upper", _F, "confidence interval upper bound (NaN: none)"),
        _f("ci_method", _S, "wilson / delong / bootstrap (null: no interval)"),
        _f("ci_flag", _S, "few_rows / few_positives_or_negatives (null: none)"),
        _f("n_rows", _I, "rows of the group (model, window, slice)"),
        _f("n_labeled", _I, "labelled rows of the group"),
        _f("undefined_reason", _S, "why value is NaN (null when defined)"),
        _f("error_bound", _F, "guaranteed bound on |value - exact value| (0: exact)")]),
    "confusion": pa.schema(_RUN + [
        _f("task", _S, "task name"), _f("model", _S, "model name"), *_WINDOW, *_SLICE,
        _f("true_class", _S, "label class"), _f("predicted_class", _S, "predicted class"),
        _f("count", _F, "weighted count")]),
    "coverage": pa.schema(_RUN + [
        _f("model", _S, "model name"), *_WINDOW, *_SLICE,
        _f("n_rows", _I, "prediction rows"), _f("n_labeled", _I, "rows with a label"),
        _f("label_coverage", _F, "n_labeled / n_rows (NaN without rows)")]),
    "invalid": pa.schema(_RUN + [
        _f("task", _S, "task name"),
        _f("family", _S, "labels / scores / regression: the metrics the rows were excluded from"),
        _f("model", _S, "model name"), _WINDOW[0], *_SLICE,
        _f("reason", _S, "why the rows were excluded (missing_label, score_out_of_range, "
                         "unknown_class, nonfinite_weight, zero_target...)"),
        _f("count", _I, "rows excluded")]),
    "drift": pa.schema(_RUN + [
        _f("model", _S, "model name"), *_WINDOW, *_SLICE,
        _f("feature", _S, "monitored column ('*' for kind dataset)"),
        _f("kind", _S, "feature / prediction / label / dataset"),
        _f("method", _S, "the deciding method of this column (dataset: share_drifted_features)"),
        _f("statistic", _F, "the deciding method's statistic (NaN when undefined)"),
        _f("p_value", _F, "its p-value when it is a test (NaN for distances)"),
        _f("threshold", _F, "threshold the verdict compared with"),
        _f("drifted", _B, "THE verdict of this column, window and slice (false when "
                          "undefined)"),
        _f("reference_window", _S, "the reference (time range, dataset or previous window)"),
        _f("error_bound", _F, "bound on |statistic - raw-sample statistic|"),
        _f("smoothing", _F, "epsilon substituted for empty bins (PSI)"),
        _f("undefined_reason", _S, "why statistic is NaN (null when defined)"),
        _f("n_reference", _F, "reference rows with a value"),
        _f("n_current", _F, "current rows with a value"),
        *[_f(name, _F, f"informational, never the verdict: {m} {what} (NaN: not of this "
                       f"kind)") for name, m, what in DRIFT_INFO_FIELDS],
        *[_f(c, _F, doc) for c, doc in DRIFT_QUALITY]]),
    "drift_histograms": pa.schema(_RUN + [
        _f("model", _S, "model name"), _f("feature", _S, "monitored column"),
        _f("kind", _S, "feature / prediction / label"), _WINDOW[0],
        _f("bin", _I, "bin number"), _f("bin_label", _S, "bin range or category"),
        _f("reference", _F, "reference share of the bin"),
        _f("current", _F, "current share of the bin")]),
    "windows": pa.schema(_RUN + [
        _f("model", _S, "model name"), *_WINDOW,
        _f("n_rows", _I, "prediction rows (overall slice)"),
        _f("n_labeled", _I, "rows with a label"),
        _f("label_coverage", _F, "n_labeled / n_rows"),
        _f("mature", _B, "the window's labels count as arrived (windows.mature_after, "
                         "min_label_coverage)"),
        _f("reason", _S, "why the window is immature")]),
    "estimated": pa.schema(_RUN + [
        _f("task", _S, "task name"), _f("model", _S, "model name"), *_WINDOW,
        _f("slice", _S, "rendered slice"), _f("slice_columns", _S, "the slice spec"),
        _f("metric", _S, "estimated metric"), _f("average", _S, "as in metrics"),
        _f("method", _S, "estimation method (cbpe)"), _f("value", _F, "the estimate"),
        _f("sampling_se", _F, "sampling standard error of the estimate"),
        _f("error_bound", _F, "bound on the binned estimate"),
        _f("n_rows", _I, "rows the estimate stands on"),
        _f("mature", _B, "the window is mature"),
        _f("measured", _F, "the measured value of the same metric (NaN: none)"),
        _f("gap", _F, "measured - estimated"),
        _f("concept_shift", _B, "the gap exceeds accuracy's sampling error")]),
    "gates": pa.schema(_RUN + [
        _f("rule", _S, "gate rule name"), _f("task", _S, "task name"),
        _f("model", _S, "model name"), _WINDOW[0], _f("slice", _S, "slice the rule checks"),
        _f("metric", _S, "metric the rule bounds"),
        _f("on", _S, "what is compared: value, a bound of its interval, or a difference"),
        _f("value", _F, "the compared number"), _f("baseline", _F, "baseline (NaN: none)"),
        _f("operator", _S, "comparison (>=, <=)"),
        _f("threshold", _F, "the rule's bound (numeric)"), _f("passed", _B, "verdict"),
        _f("reason", _S, "why it failed or was not gated")]),
    "comparisons": pa.schema([_RUN[0], _RUN[1],
        _f("task", _S, "task name"), _f("baseline", _S, "baseline model"),
        _f("candidate", _S, "candidate model"), *_WINDOW, *_SLICE,
        _f("metric", _S, "compared metric"), _f("average", _S, "as in metrics"),
        _f("direction", _S, "higher_is_better / lower_is_better"),
        _f("baseline_value", _F, "baseline's value"),
        _f("candidate_value", _F, "candidate's value"),
        _f("difference", _F, "candidate - baseline"),
        _f("ci_lower", _F, "interval of the difference, lower"),
        _f("ci_upper", _F, "interval of the difference, upper"),
        _f("p_value", _F, "paired test p-value"),
        _f("p_adjusted", _F, "Benjamini-Hochberg adjusted p-value"),
        _f("significant", _B, "p_adjusted below the level"), _f("test", _S, "paired test"),
        _f("n_paired", _I, "paired rows"), _f("n_unpaired", _I, "unpaired rows")]),
}


def columns(table: str) -> list[str]:
    """Column names of ``table`` in schema order."""
    return SCHEMAS[table].names


def _column(values: pd.Series, type_: pa.DataType) -> pa.Array:
    """One column of ``type_`` from pandas values (missing -> null; non-text values of a text
    column, e.g. integer model names, as their ``str``)."""
    if pa.types.is_timestamp(type_):  # int64 ns since the epoch, missing masked
        ts = pd.to_datetime(values, utc=True).dt.tz_convert(None).dt.as_unit("ns")
        return pa.array(ts.to_numpy().view("i8"), type=pa.int64(),
                        mask=ts.isna().to_numpy()).cast(type_)
    try:
        return pa.array(values, type=type_, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        if not pa.types.is_string(type_):
            raise
    return pa.array(values.astype(object).map(str).where(values.notna(), None), type=type_,
                    from_pandas=True)


def to_arrow(table: str, df: pd.DataFrame, run_started_at: dt.datetime) -> pa.Table:
    """``df`` as an Arrow table of ``SCHEMAS[table]``, ``run_started_at`` on every row.

    Args:
        table: a key of :data:`SCHEMAS`.
        df: the table's rows with every schema column but ``run_started_at`` (an empty frame
            may lack columns).
        run_started_at: the run's start (UTC).

    Raises:
        ValueError: ``df`` has a column the schema lacks, or lacks one while having rows.
    """
    schema = SCHEMAS[table]
    want = [n for n in schema.names if n != "run_started_at"]
    extra = [c for c in df.columns if c not in schema.names]
    missing = [c for c in want if c not in df.columns]
    if extra or (missing and len(df)):
        raise ValueError(f"Table {table!r} does not match its schema in rayeval/io/schemas.py: "
                         f"extra columns {extra}, missing columns {missing}")
    n = len(df)
    arrays = []
    for f in schema:
        if f.name == "run_started_at":
            arrays.append(pa.array([pd.Timestamp(run_started_at)] * n, type=f.type))
        elif f.name not in df.columns:
            arrays.append(pa.nulls(n, type=f.type))
        else:
            arrays.append(_column(df[f.name], f.type))
    return pa.Table.from_arrays(arrays, schema=schema)
