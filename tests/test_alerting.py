"""Generated Prometheus alerting rules and Grafana dashboard (``rayeval alerts``).

Rules: ``promtool check rules`` and the shipped ``promtool test rules`` unit tests
(``deploy/monitoring/rayeval-rules.test.yml``) run against freshly generated rules (Debian's
``prometheus`` package has promtool). The dashboard: Grafana is not packaged here, so its JSON
model is checked offline (schema version, unique panel ids, every query names a family the job
pushes, one repeated row per model)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from rayeval.config import load_config
from rayeval.io.alerting import SCHEMA_VERSION, alert_rules, dashboard, dashboard_families
from rayeval.io.prometheus import metric_family, pushed_metrics
from tests.conftest import BIN, ROOT, debian_binary
from tests.synth import job_dict

MONITORING = ROOT / "deploy" / "monitoring"
FLIGHTS = ROOT / "configs" / "flights.yaml"


def generate(tmp_path, config=FLIGHTS, *overrides):
    out = tmp_path / "monitoring"
    cmd = [str(BIN / "rayeval"), "alerts", str(config), "--out", str(out)]
    for o in overrides:
        cmd += ["--set", o]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    return out


def promtool(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([debian_binary("promtool"), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_shipped_files_are_generated_from_flights(tmp_path):
    out = generate(tmp_path)
    for name in ("rayeval-rules.yml", "rayeval-dashboard.json"):
        assert (out / name).read_text() == (MONITORING / name).read_text(), (
            f"{name} is stale: rayeval alerts configs/flights.yaml --out deploy/monitoring")


def test_rules_pass_promtool_check_and_unit_tests(tmp_path):
    out = generate(tmp_path)
    r = promtool("check", "rules", str(out / "rayeval-rules.yml"))
    assert r.returncode == 0 and "SUCCESS: 4 rules found" in r.stdout, r.stdout + r.stderr
    shutil.copy(MONITORING / "rayeval-rules.test.yml", out)
    r = promtool("test", "rules", "rayeval-rules.test.yml", cwd=out)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_unit_tests_catch_a_wrong_threshold(tmp_path):
    """The shipped unit tests can fail: rules generated with another coverage threshold and a
    longer staleness do not pass them."""
    out = generate(tmp_path, FLIGHTS, "outputs.prometheus.alerts.min_label_coverage=0.2",
                   "outputs.prometheus.alerts.stale_after_hours=48")
    shutil.copy(MONITORING / "rayeval-rules.test.yml", out)
    r = promtool("test", "rules", "rayeval-rules.test.yml", cwd=out)
    assert r.returncode != 0
    assert "RayevalLabelCoverageLow" in r.stdout + r.stderr
    assert "RayevalJobNotSucceeded" in r.stdout + r.stderr


def test_rules_pin_the_job_and_grouping(tmp_path):
    job = job_dict("p", None, "o", gates=[{"name": "g", "task": "clf", "metric": "f1",
                                           "min": 0.1}])
    job["outputs"]["prometheus"] = {"job": "nightly", "grouping": {"team": "risk"},
                                    "alerts": {"stale_after_hours": 2, "for_minutes": 15}}
    cfg = load_config(data=job)
    rules = alert_rules(cfg)["groups"][0]["rules"]
    names = [r["alert"] for r in rules]
    assert names == ["RayevalGateFailed", "RayevalLabelCoverageLow", "RayevalJobNotSucceeded"]
    for r in rules:  # drift is off: no drift rule; every selector pins job, config, grouping
        assert 'job="nightly"' in r["expr"] and 'config="synthetic"' in r["expr"]
        assert 'team="risk"' in r["expr"] and r["for"] == "15m"
    assert "> 7200" in rules[-1]["expr"]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(alert_rules(cfg)))
    r = promtool("check", "rules", str(path))
    assert r.returncode == 0, r.stdout + r.stderr


def panels_of(model: dict) -> list[dict]:
    out = []
    for p in model["panels"]:
        out.append(p)
        out += p.get("panels", [])
    return out


@pytest.mark.parametrize("config", ["flights", "synthetic"])
def test_dashboard_model_offline(config):
    if config == "flights":
        cfg = load_config(FLIGHTS)
    else:
        job = job_dict("p", None, "o")
        job["models"] = ["champion", "challenger"]
        job["outputs"]["prometheus"] = {"metrics": ["roc_auc", "rmse", "log_loss"]}
        cfg = load_config(data=job)
    d = json.loads(json.dumps(dashboard(cfg)))  # JSON round trip: what Grafana loads
    assert d["schemaVersion"] == SCHEMA_VERSION and isinstance(d["schemaVersion"], int)
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", d["uid"]) and d["title"]
    panels = panels_of(d)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    families = dashboard_families(cfg)
    queried = set()
    for p in panels:
        assert {"x", "y", "w", "h"} <= set(p["gridPos"]) and p["gridPos"]["x"] + \
            p["gridPos"]["w"] <= 24
        if p["type"] == "row":
            continue
        assert p["targets"], p["title"]
        for t in p["targets"]:
            names = set(re.findall(r"\brayeval_[a-z0-9_]+", t["expr"]))
            assert names and names <= families, (t["expr"], names - families)
            queried |= names
    # every pushed metric family has a panel, measured and estimated
    for m in pushed_metrics(cfg):
        assert {metric_family(m), metric_family(m, True)} <= queried
    rows = [p for p in d["panels"] if p["type"] == "row"]
    assert [r.get("repeat") for r in rows] == [None, "model"]  # one row per model
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert set(variables) == {"datasource", "model"}
    if cfg.models:
        assert variables["model"]["query"] == "champion,challenger"
