"""Prometheus alerting rules and a Grafana dashboard generated from a job config (``rayeval
alerts <config> --out DIR``), over the families :mod:`rayeval.io.prometheus` pushes.

Rules (one group ``rayeval-<config name>``; every selector pins ``job``, ``config`` and the
configured grouping labels, so two jobs never share an alert):

- ``RayevalGateFailed`` (critical): ``rayeval_gate_passed == 0``;
- ``RayevalDriftShareHigh`` (warning, with drift enabled): drifted / monitored features >=
  ``drift.dataset_drift_share`` (the threshold the run's own dataset-drift decision uses);
- ``RayevalLabelCoverageLow`` (warning): overall ``rayeval_label_coverage_ratio`` below
  ``outputs.prometheus.alerts.min_label_coverage``;
- ``RayevalJobNotSucceeded`` (critical): no committed run for
  ``outputs.prometheus.alerts.stale_after_hours`` (or none ever pushed).

The dashboard (Grafana JSON model, ``schemaVersion`` :data:`SCHEMA_VERSION`) has a job row (last
success age, run duration, gate verdicts) and one row per model (a ``model`` template variable
the row repeats over): a time series per pushed metric family (measured and CBPE-estimated side
by side), label coverage and drifted features. Grafana is not packaged here: the tests check the
model offline (schema version, unique panel ids, every query names a pushed family).
"""

from __future__ import annotations

import json
import re

import yaml

from rayeval.config import JobConfig
from rayeval.io.prometheus import grouping_key, metric_family, pushed_metrics

SCHEMA_VERSION = 39  # Grafana 10.x/11.x dashboard JSON model


def selector(cfg: JobConfig, **extra: str) -> str:
    """PromQL label matchers of this job's pushed group (plus ``extra``), e.g.
    ``{job="rayeval",config="flights-delay"}``."""
    labels = {"job": cfg.outputs.prometheus.job, **grouping_key(cfg), **extra}
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _escape(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"')


def alert_rules(cfg: JobConfig) -> dict:
    """The Prometheus rule file (a dict; :func:`write_monitoring` dumps it as YAML)."""
    a = cfg.outputs.prometheus.alerts
    sel = selector(cfg)
    hold = f"{a.for_minutes}m"
    rules = [{
        "alert": "RayevalGateFailed",
        "expr": f"rayeval_gate_passed{sel} == 0",
        "for": hold,
        "labels": {"severity": "critical"},
        "annotations": {
            "summary": "rayeval gate {{ $labels.rule }} failed for model {{ $labels.model }}",
            "description": f"The last committed run of {cfg.name} failed gate "
                           "{{ $labels.rule }} (model {{ $labels.model }}); see its gates "
                           "table and alerts/<run_id>.json."}}]
    if cfg.drift.enabled:
        thr = cfg.drift.dataset_drift_share
        rules.append({
            "alert": "RayevalDriftShareHigh",
            "expr": (f"rayeval_drifted_features{sel} / rayeval_monitored_features{sel} "
                     f">= {thr:g}"),
            "for": hold,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "{{ $value | humanizePercentage }} of the features of model "
                           "{{ $labels.model }} drifted",
                "description": f"Share of drifted features in the latest window of {cfg.name} "
                               f"is at or above drift.dataset_drift_share = {thr:g}."}})
    rules.append({
        "alert": "RayevalLabelCoverageLow",
        "expr": (f"rayeval_label_coverage_ratio{selector(cfg, slice='overall')} "
                 f"< {a.min_label_coverage:g}"),
        "for": hold,
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "label coverage {{ $value | humanizePercentage }} for model "
                       "{{ $labels.model }}",
            "description": f"Fewer than {a.min_label_coverage:.0%} of the evaluated window's "
                           f"rows of {cfg.name} have labels: metrics stand on few rows."}})
    hours = a.stale_after_hours
    rules.append({
        "alert": "RayevalJobNotSucceeded",
        "expr": (f"(time() - rayeval_last_success_timestamp_seconds{sel} > {hours * 3600:g}) "
                 f"or absent(rayeval_last_success_timestamp_seconds{sel})"),
        "for": hold,
        "labels": {"severity": "critical"},
        "annotations": {
            "summary": f"rayeval job {cfg.name} has not succeeded for {hours:g} hours",
            "description": "No run committed its results (or pushed them) within "
                           f"{hours:g} hours; check the scheduler and the job's logs."}})
    return {"groups": [{"name": f"rayeval-{cfg.name}", "rules": rules}]}


def dashboard_families(cfg: JobConfig) -> set[str]:
    """Every family the job can push (what dashboard queries may name)."""
    from rayeval.io.prometheus import FIXED_FAMILIES

    names = pushed_metrics(cfg)
    return (set(FIXED_FAMILIES) | {metric_family(m) for m in names}
            | {metric_family(m, estimated=True) for m in names})


class _Ids:
    def __init__(self):
        self.n = 0

    def __call__(self) -> int:
        self.n += 1
        return self.n


def _panel(ids: _Ids, title: str, targets: list[tuple[str, str]], x: int, y: int, w: int = 8,
           h: int = 8, kind: str = "timeseries", unit: str = "none") -> dict:
    return {"id": ids(), "type": kind, "title": title,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"x": x, "y": y, "w": w, "h": h},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []}, "options": {},
            "targets": [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
                         "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                        for i, (expr, legend) in enumerate(targets)]}


def dashboard(cfg: JobConfig) -> dict:
    """The Grafana dashboard JSON model for ``cfg`` (see the module docstring)."""
    ids = _Ids()
    sel = selector(cfg)
    msel = selector(cfg).rstrip("}") + ',model=~"$model"}'
    panels = [{"id": ids(), "type": "row", "title": "job", "collapsed": False,
               "gridPos": {"x": 0, "y": 0, "w": 24, "h": 1}, "panels": []},
              _panel(ids, "time since last success",
                     [(f"time() - rayeval_last_success_timestamp_seconds{sel}", "age")],
                     0, 1, kind="stat", unit="s"),
              _panel(ids, "run duration", [(f"rayeval_run_duration_seconds{sel}", "duration")],
                     8, 1, unit="s"),
              _panel(ids, "gate verdicts (1 passed, 0 failed)",
                     [(f"rayeval_gate_passed{sel}", "{{rule}} {{model}}")], 16, 1,
                     kind="stat")]
    y = 9
    panels.append({"id": ids(), "type": "row", "title": "model $model", "repeat": "model",
                   "collapsed": False, "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
                   "panels": []})
    y += 1
    cells = [(m, [(f"{metric_family(m)}{msel}", "{{task}} {{slice}} measured"),
                  (f"{metric_family(m, True)}{msel}", "{{task}} {{slice}} estimated (CBPE)")])
             for m in pushed_metrics(cfg)]
    cells.append(("label coverage", [(f"rayeval_label_coverage_ratio{msel}", "{{slice}}")]))
    cells.append(("drifted features", [(f"rayeval_drifted_features{msel}", "drifted"),
                                       (f"rayeval_monitored_features{msel}", "monitored")]))
    for i, (title, targets) in enumerate(cells):
        unit = "percentunit" if title == "label coverage" else "none"
        panels.append(_panel(ids, title, targets, 8 * (i % 3), y + 8 * (i // 3), unit=unit))
    model_var = {"name": "model", "label": "model", "type": "query", "multi": True,
                 "includeAll": True, "refresh": 2,
                 "datasource": {"type": "prometheus", "uid": "${datasource}"},
                 "query": {"query": f"label_values(rayeval_gate_passed{sel}, model)",
                           "refId": "models"},
                 "definition": f"label_values(rayeval_gate_passed{sel}, model)"}
    if cfg.models:
        model_var = {"name": "model", "label": "model", "type": "custom", "multi": True,
                     "includeAll": True, "query": ",".join(cfg.models)}
    return {"title": f"rayeval: {cfg.name}", "uid": _uid(cfg.name), "tags": ["rayeval"],
            "schemaVersion": SCHEMA_VERSION, "version": 1, "editable": True,
            "timezone": "utc", "time": {"from": "now-30d", "to": "now"}, "refresh": "5m",
            "templating": {"list": [
                {"name": "datasource", "label": "Prometheus", "type": "datasource",
                 "query": "prometheus"}, model_var]},
            "annotations": {"list": []}, "panels": panels}


def _uid(name: str) -> str:
    """A Grafana uid (at most 40 characters of ``[a-zA-Z0-9_-]``)."""
    return ("rayeval-" + re.sub(r"[^a-zA-Z0-9_-]", "-", name))[:40]


def write_monitoring(cfg: JobConfig, out_dir) -> dict[str, str]:
    """Write ``rayeval-rules.yml`` and ``rayeval-dashboard.json`` under ``out_dir``; returns
    name -> path."""
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rules = out / "rayeval-rules.yml"
    rules.write_text(f"# Generated by `rayeval alerts` from job config {cfg.name!r}: do not "
                     "edit, regenerate.\n" + yaml.safe_dump(alert_rules(cfg), sort_keys=False,
                                                            width=100))
    dash = out / "rayeval-dashboard.json"
    dash.write_text(json.dumps(dashboard(cfg), indent=2) + "\n")
    return {"rules": str(rules), "dashboard": str(dash)}
