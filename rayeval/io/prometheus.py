"""Publish a bounded run summary to a Prometheus Pushgateway (``outputs.prometheus``).

Follows prometheus.io's instrumentation and pushing guidance: names carry the ``rayeval_``
prefix, base units (seconds, ratios in [0, 1]) and no colons; one family per meaning (one family
per evaluation metric, e.g. ``rayeval_roc_auc``, never one family with a ``metric`` label); only
the ``overall`` slice plus at most 10 configured slices as label values (the slice x window tables
stay in Parquet: Prometheus is not for high cardinality); a last-success timestamp for the
"job has not succeeded for N hours" alert. One push (HTTP ``PUT``) replaces the whole group
``job=<job>, config=<config name>, <grouping...>``, so series of an older run never linger.

Families (labels in brackets):

- ``rayeval_last_success_timestamp_seconds``: Unix time the run committed its results;
- ``rayeval_run_duration_seconds``: the run's wall time up to its commit;
- ``rayeval_window_end_timestamp_seconds`` [task, model]: end of the window whose metrics are
  pushed (the latest mature one when ``windows.mature_after`` / ``min_label_coverage`` is set);
- ``rayeval_<metric>`` [task, model, slice]: the headline value (binary, else macro, else micro
  average) of each pushed metric in that window;
- ``rayeval_estimated_<metric>`` [task, model, slice]: CBPE estimates of the latest immature
  window (see :mod:`rayeval.metrics.cbpe`), a family apart from the measured one;
- ``rayeval_gate_passed`` [rule, model]: 1 when every gated window passed, else 0;
- ``rayeval_drifted_features`` / ``rayeval_monitored_features`` [model]: features drifted /
  with a defined drift decision in the latest window (overall slice);
- ``rayeval_label_coverage_ratio`` [model, slice]: labelled share of the rows of the pushed
  window.

The summary is computed by :func:`build_summary` (pure pandas, no network) and pushed by
:func:`push_summary`; a Pushgateway that cannot be reached raises :class:`PublishError` (the CLI
turns it into a warning and exit code 3: results written, publishing failed).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rayeval.config import JobConfig, redact_uri

PREFIX = "rayeval_"
#: families of fixed meaning: name -> (help, label names)
FIXED_FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "rayeval_last_success_timestamp_seconds": (
        "Unix time (seconds) at which the last run of this job committed its results.", ()),
    "rayeval_run_duration_seconds": (
        "Wall time (seconds) of the last committed run, from start to commit.", ()),
    "rayeval_window_end_timestamp_seconds": (
        "End (exclusive, Unix seconds) of the window whose metrics are pushed.",
        ("task", "model")),
    "rayeval_gate_passed": (
        "1 when every gated window of the rule passed in the last run, 0 when one failed.",
        ("rule", "model")),
    "rayeval_drifted_features": (
        "Features drifted in the latest window (overall slice).", ("model",)),
    "rayeval_monitored_features": (
        "Features with a defined drift decision in the latest window (overall slice).",
        ("model",)),
    "rayeval_label_coverage_ratio": (
        "Share (0..1) of the pushed window's rows that have a label.", ("model", "slice")),
}
METRIC_LABELS = ("task", "model", "slice")
#: pushed besides the metrics the gates name, when ``outputs.prometheus.metrics`` is unset
DEFAULT_METRICS = ("accuracy", "f1", "roc_auc", "rmse", "mae")


class PublishError(RuntimeError):
    """The Pushgateway could not be reached or refused the push (results are written)."""


@dataclass(frozen=True)
class Sample:
    """One pushed value: family name, label values (in the family's label order), value."""

    family: str
    labels: tuple[tuple[str, str], ...]
    value: float


def metric_family(metric: str, estimated: bool = False) -> str:
    """Family name of an evaluation metric: ``rayeval_<metric>`` (``rayeval_estimated_<metric>``
    for CBPE estimates); characters outside ``[a-zA-Z0-9_]`` become ``_``."""
    name = re.sub(r"[^a-zA-Z0-9_]", "_", metric)
    return f"{PREFIX}{'estimated_' if estimated else ''}{name}"


def pushed_metrics(cfg: JobConfig) -> list[str]:
    """Metric names pushed for ``cfg``: ``outputs.prometheus.metrics`` when set, else those the
    gates name plus :data:`DEFAULT_METRICS`, kept when some task produces them."""
    from rayeval.engine.gates import known_metrics

    known = set().union(*(known_metrics(t, selected=True) for t in cfg.tasks))
    chosen = cfg.outputs.prometheus.metrics
    if chosen is None:
        chosen = [g.metric for g in cfg.gates if g.metric != "dataset_drift_share"]
        chosen += [m for m in DEFAULT_METRICS if m not in chosen]
    return [m for m in dict.fromkeys(chosen) if m in known]


def pushed_slices(cfg: JobConfig) -> list[str]:
    """Slice names pushed as label values: ``overall`` plus the configured handful."""
    return list(dict.fromkeys(["overall", *cfg.outputs.prometheus.slices]))


def headline(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of one metric without a class: the binary average, else macro, else micro, else
    the rows without an average (the value a gate or a dashboard shows)."""
    rows = rows[rows["class_label"].isna()]
    if rows["average"].notna().any():
        for avg in ("binary", "macro", "micro"):
            if (rows["average"] == avg).any():
                return rows[rows["average"] == avg]
        return rows.iloc[0:0]
    return rows


def _latest(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rows of ``df`` in the latest ``window_start`` of each ``keys`` group."""
    if df.empty:
        return df
    last = df.groupby(keys, dropna=False)["window_start"].transform("max")
    return df[df["window_start"] == last]


def _mature_only(df: pd.DataFrame, windows: pd.DataFrame | None, mature: bool) -> pd.DataFrame:
    """Rows of ``df`` in mature (``mature``) or immature windows per the ``windows`` table (all
    rows are mature without one)."""
    if windows is None or windows.empty or df.empty:
        return df if mature else df.iloc[0:0]
    keep = windows[windows["mature"] == mature][["model", "window_start"]]
    return df.merge(keep, on=["model", "window_start"], how="inner")


def build_summary(cfg: JobConfig, metrics: pd.DataFrame, coverage: pd.DataFrame,
                  drift: pd.DataFrame | None, gates: pd.DataFrame, duration_s: float,
                  committed_at: float, windows: pd.DataFrame | None = None,
                  estimated: pd.DataFrame | None = None) -> list[Sample]:
    """The samples one push carries (bounded: families x tasks x models x pushed slices).

    Args:
        metrics, coverage, drift, gates: the run's tables (``drift`` may be None).
        duration_s: run wall time in seconds; ``committed_at``: Unix time of the commit.
        windows: optional maturity table (model, window_start, mature): measured values and
            coverage come from the latest mature window, estimates from the latest immature one.
        estimated: optional CBPE rows (the ``metrics`` columns).
    """
    out = [Sample("rayeval_last_success_timestamp_seconds", (), float(committed_at)),
           Sample("rayeval_run_duration_seconds", (), float(duration_s))]
    slices = pushed_slices(cfg)
    names = pushed_metrics(cfg)
    for est, table in ((False, metrics), (True, estimated)):
        if table is None or table.empty:
            continue
        if "class_label" not in table:  # the estimated table: headline rows only
            table = table.assign(class_label=None)
        m = table[table["slice"].isin(slices) & table["metric"].isin(names)]
        m = _latest(_mature_only(m, windows, mature=not est), ["task", "model"])
        if not est:
            for (task, model), g in m.groupby(["task", "model"], sort=True):
                end = pd.Timestamp(g["window_end"].max())
                if not pd.isna(end):
                    out.append(Sample("rayeval_window_end_timestamp_seconds",
                                      (("task", str(task)), ("model", str(model))),
                                      end.value / 1e9))
        for (metric, task, model, slice_), g in m.groupby(["metric", "task", "model", "slice"],
                                                        sort=True):
            h = headline(g)
            if len(h) and math.isfinite(float(h["value"].iloc[0])):
                out.append(Sample(metric_family(metric, est), (("task", str(task)),
                                  ("model", str(model)), ("slice", str(slice_))),
                                  float(h["value"].iloc[0])))
    for (rule, model), g in gates.fillna({"model": ""}).groupby(["rule", "model"], sort=True):
        out.append(Sample("rayeval_gate_passed", (("rule", str(rule)), ("model", str(model))),
                          float(bool(g["passed"].all()))))
    if drift is not None and not drift.empty:
        # one verdict row per column, window and slice
        d = drift[(drift["slice"] == "overall") & (drift["kind"] == "feature")]
        d = d[d["undefined_reason"].fillna("") == ""]
        for model, g in _latest(d, ["model"]).groupby("model", sort=True):
            out.append(Sample("rayeval_drifted_features", (("model", str(model)),),
                              float(g["drifted"].astype(bool).sum())))
            out.append(Sample("rayeval_monitored_features", (("model", str(model)),),
                              float(len(g))))
    cov = _latest(_mature_only(coverage[coverage["slice"].isin(slices)], windows, True),
                  ["model"])
    for r in cov.sort_values(["model", "slice"]).itertuples(index=False):
        v = float(r.label_coverage)
        if np.isfinite(v):
            out.append(Sample("rayeval_label_coverage_ratio",
                              (("model", str(r.model)), ("slice", str(r.slice))), v))
    return out


def family_help(name: str) -> str:
    """Help text of a family (fixed or ``rayeval_[estimated_]<metric>``)."""
    if name in FIXED_FAMILIES:
        return FIXED_FAMILIES[name][0]
    if name.startswith(PREFIX + "estimated_"):
        return (f"CBPE estimate of {name[len(PREFIX) + 10:]} in the latest window whose labels "
                "are not mature (never a measured value).")
    return f"Measured {name[len(PREFIX):]} (headline average) in the pushed window."


def registry_of(samples: list[Sample]):
    """A ``prometheus_client`` registry holding ``samples`` as gauges."""
    from prometheus_client import CollectorRegistry, Gauge

    reg = CollectorRegistry()
    gauges: dict[str, Gauge] = {}
    for s in samples:
        keys = tuple(k for k, _ in s.labels)
        if s.family not in gauges:
            gauges[s.family] = Gauge(s.family, family_help(s.family), keys, registry=reg)
        g = gauges[s.family]
        (g.labels(*(v for _, v in s.labels)) if keys else g).set(s.value)
    return reg


def grouping_key(cfg: JobConfig) -> dict[str, str]:
    """The pushed group's labels besides ``job``: ``config`` (the job config's name) plus
    ``outputs.prometheus.grouping``."""
    return {"config": cfg.name, **cfg.outputs.prometheus.grouping}


def push_summary(cfg: JobConfig, samples: list[Sample]) -> None:
    """Replace this job's group on the Pushgateway with ``samples`` (HTTP ``PUT``).

    Raises:
        PublishError: the gateway is unreachable, timed out or answered an error (the message
            names the redacted URL).
    """
    from prometheus_client import push_to_gateway

    pc = cfg.outputs.prometheus
    try:
        push_to_gateway(pc.pushgateway_url, job=pc.job, registry=registry_of(samples),
                        grouping_key=grouping_key(cfg), timeout=pc.timeout_seconds)
    except (OSError, ValueError) as e:  # URLError, HTTPError, timeouts, refused connections
        raise PublishError(f"push to Pushgateway {redact_uri(pc.pushgateway_url)} failed: "
                           f"{redact_uri(str(e))}") from None
