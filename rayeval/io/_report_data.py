"""What the report's sections share (private): the bounds of what is drawn, the optional
columns of the tables, window keys, and the headline metric variant of a metrics table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rayeval.core import registry


AVERAGE_ORDER = ("binary", "macro", "micro", "weighted")  # the headline variant, as in the gates


TOP_N = 10
MAX_WINDOWS = 100
MAX_FEATURES = 100
MAX_BINS = 40
MAX_GATE_ROWS = 200
MAX_TABLE_METRICS = 16
_METRIC_OPTIONAL = ("window_start", "class_label", "average", "direction", "ci_lower", "ci_upper",
                    "n_rows", "n_labeled", "undefined_reason", "error_bound", "slice")
_DRIFT_OPTIONAL = ("window_start", "slice", "slice_columns", "kind", "p_value", "threshold",
                   "drifted", "error_bound", "n_current", "model")


def _wkeys(s: pd.Series) -> np.ndarray:
    """Window starts as int64 ns keys (NaT, i.e. no windowing, sorts first)."""
    d = pd.to_datetime(s, utc=True).dt.tz_localize(None).dt.as_unit("ns")
    return d.to_numpy().view("i8")


def _with_w(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(wk=_wkeys(df["window_start"]))


def _windows(df: pd.DataFrame) -> list[int]:
    """The latest :data:`MAX_WINDOWS` window keys of ``df`` (with ``wk``), in time order."""
    return sorted(set(df["wk"].tolist()))[-MAX_WINDOWS:]


def _usable(df: pd.DataFrame | None, *cols: str) -> bool:
    return df is not None and not df.empty and all(c in df.columns for c in cols)


def _ensure(df: pd.DataFrame, cols: tuple[str, ...]) -> pd.DataFrame:
    """``df`` with optional columns it lacks added as missing values."""
    missing = [c for c in cols if c not in df.columns]
    return df.assign(**{c: np.nan for c in missing}) if missing else df


def headline_order() -> list[str]:
    """Headline metric names, first-ranked first, as the registered specs of a binary, a
    multiclass and a regression task declare them (:func:`rayeval.core.registry.headline_metrics`;
    the report is drawn from the tables alone, without the task configs)."""
    from rayeval.config import TaskConfig

    tasks = [TaskConfig(name="binary", type="binary", label="y", prediction="p", score="s",
                        positive_class=1),
             TaskConfig(name="multiclass", type="multiclass", label="y", prediction="p",
                        scores=["a", "b"], classes=[0, 1]),
             TaskConfig(name="regression", type="regression", label="y", prediction="p")]
    return list(dict.fromkeys(m for t in tasks for m in registry.headline_metrics(t)))


def _headline_variant(df: pd.DataFrame) -> pd.DataFrame:
    """Rows without a class label, one averaging per metric (binary, macro, micro, weighted)."""
    df = df[df["class_label"].isna()]
    if df.empty:
        return df
    choice = {}
    for metric, avg in df.groupby("metric", sort=False)["average"]:
        present = set(avg.dropna())
        choice[metric] = next((a for a in AVERAGE_ORDER if a in present), None)
    want = df["metric"].map(choice)
    return df[(df["average"] == want) | (df["average"].isna() & want.isna())]
