"""Prometheus publishing against a real Pushgateway (Debian's ``prometheus-pushgateway`` on a
loopback port): a job pushes its summary, the test reads ``/metrics`` back and compares every
value with the run's own tables; a gateway that is down gives exit code 3 with the results
written; the alert records for webhooks; naming rules checked on every pushed family."""

from __future__ import annotations

import json
import re
import urllib.request

import numpy as np
import pandas as pd
import pytest

from rayeval.config import ConfigError, load_config
from rayeval.io.prometheus import (FIXED_FAMILIES, build_summary, headline, metric_family,
                                   pushed_metrics)
from tests.conftest import free_port
from tests.synth import job_dict, make_frames, write_parquet

GATES = [{"name": "auc-floor", "task": "clf", "metric": "roc_auc", "min": 0.5},
         {"name": "acc-impossible", "task": "clf", "metric": "accuracy", "min": 0.99}]
DRIFT = {"enabled": True, "features": [{"name": "feature_x", "kind": "numeric"},
                                       {"name": "band", "kind": "categorical"}],
         "reference": {"kind": "previous_window"}}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("prom-data")
    preds, labels = make_frames(4000, seed=3)
    write_parquet(preds, d / "preds", 3)
    write_parquet(labels, d / "labels", 1)
    return d


def cfg_for(data, out, url, **prom):
    job = job_dict(str(data / "preds"), str(data / "labels"), str(out), gates=GATES,
                   drift=DRIFT)
    job["outputs"]["prometheus"] = {"pushgateway_url": url, "job": "rayeval-test",
                                    "grouping": {"env": "ci"}, "slices": ["segment=north"],
                                    **prom}
    return load_config(data=job)


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """``/metrics`` of the gateway parsed with prometheus_client's own parser: (family name,
    label set) -> value, for the rayeval families only."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.startswith("rayeval_"):
                out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def test_push_and_read_back(ray_local, data, tmp_path, pushgateway):
    from rayeval.cli import EXIT_GATES, execute

    cfg = cfg_for(data, tmp_path / "out", pushgateway)
    assert execute(cfg, quiet=True) == EXIT_GATES  # the impossible gate fails; push succeeded
    got = scrape(pushgateway)
    assert got, "nothing pushed"
    # the gateway adds an empty `instance` to every pushed series
    group = {"job": "rayeval-test", "config": "synthetic", "env": "ci", "instance": ""}

    def value(name, **labels):
        return got[(name, frozenset({**group, **labels}.items()))]

    out = tmp_path / "out"
    metrics = pd.read_parquet(out / "metrics")
    gates = pd.read_parquet(out / "gates")
    coverage = pd.read_parquet(out / "coverage")
    last = metrics["window_start"].max()
    for model in ("champion", "challenger"):
        for metric, task in (("roc_auc", "clf"), ("accuracy", "clf"), ("rmse", "reg")):
            for sl in ("overall", "segment=north"):
                rows = metrics[(metrics.model == model) & (metrics.metric == metric)
                               & (metrics.slice == sl) & (metrics.window_start == last)]
                expect = float(headline(rows)["value"].iloc[0])
                assert value(metric_family(metric), task=task, model=model, slice=sl) == \
                    pytest.approx(expect, rel=1e-12)
        for rule in ("auc-floor", "acc-impossible"):
            g = gates[(gates.rule == rule) & (gates.model == model)]
            assert value("rayeval_gate_passed", rule=rule, model=model) == float(g.passed.all())
        c = coverage[(coverage.model == model) & (coverage.slice == "overall")
                     & (coverage.window_start == coverage.window_start.max())]
        assert value("rayeval_label_coverage_ratio", model=model, slice="overall") == \
            pytest.approx(float(c.label_coverage.iloc[0]))
        assert value("rayeval_monitored_features", model=model) == 2.0
        assert 0 <= value("rayeval_drifted_features", model=model) <= 2
    assert value("rayeval_gate_passed", rule="acc-impossible", model="champion") == 0.0
    assert value("rayeval_gate_passed", rule="auc-floor", model="champion") == 1.0
    manifest = json.loads((out / "manifests" / f"{cfg.resolved_run_id()}.json").read_text())
    ts = value("rayeval_last_success_timestamp_seconds")
    assert abs(ts - pd.Timestamp.now(tz="UTC").timestamp()) < 600
    assert value("rayeval_run_duration_seconds") >= sum(
        v for k, v in manifest["durations"].items()) * 0.99
    # bounded: only overall + the configured slice as label values, no other slice
    slices = {dict(k[1]).get("slice") for k in got} - {None}
    assert slices == {"overall", "segment=north"}
    # naming: prefix, no colons, lower snake case; one family per meaning (no `metric` label)
    for name, labels in got:
        assert re.fullmatch(r"rayeval_[a-z0-9_]+", name), name
        assert "metric" not in dict(labels)


def test_gateway_down_keeps_results(ray_local, data, tmp_path, capsys):
    from rayeval.cli import EXIT_PUBLISH, execute

    cfg = cfg_for(data, tmp_path / "out", f"http://127.0.0.1:{free_port()}", timeout_seconds=3)
    assert execute(cfg, quiet=True) == EXIT_PUBLISH
    captured = capsys.readouterr()
    assert "publishing to Prometheus failed" in captured.err
    run_id = cfg.resolved_run_id()
    assert (tmp_path / "out" / "manifests" / f"{run_id}.json").exists()
    assert len(pd.read_parquet(tmp_path / "out" / "metrics")) > 0
    # the alert records for webhooks: one per failed gate row, every key present
    doc = json.loads((tmp_path / "out" / "alerts" / f"{run_id}.json").read_text())
    gates = pd.read_parquet(tmp_path / "out" / "gates")
    failed = [a for a in doc["alerts"] if a["kind"] == "gate_failed"]
    assert len(failed) == int((~gates.passed).sum()) > 0
    assert doc["gates_passed"] is False and doc["run_id"] == run_id
    assert {a["name"] for a in failed} == {"acc-impossible"}
    drift = pd.read_parquet(tmp_path / "out" / "drift")
    n_drift = int((drift.drifted & (drift.kind != "dataset")
                   & (drift.slice == "overall")).sum())
    assert sum(a["kind"] == "feature_drift" for a in doc["alerts"]) == n_drift
    keys = set(doc["alerts"][0])
    assert all(set(a) == keys for a in doc["alerts"])


def _tables():
    ws = [pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-01-08", tz="UTC")]
    rows = []
    for w, v in zip(ws, (0.7, 0.8)):
        for sl in ("overall", "a=1", "a=2"):
            for avg, val in (("binary", v), ("macro", v - 0.1)):
                rows.append({"task": "t", "model": "m", "window_start": w,
                             "window_end": w + pd.Timedelta(days=7), "slice": sl,
                             "metric": "f1", "class_label": None, "average": avg,
                             "value": val})
            rows.append({"task": "t", "model": "m", "window_start": w,
                         "window_end": w + pd.Timedelta(days=7), "slice": sl,
                         "metric": "roc_auc", "class_label": None, "average": None,
                         "value": np.nan})
    metrics = pd.DataFrame(rows)
    cov = pd.DataFrame({"model": "m", "window_start": ws, "slice": "overall",
                        "label_coverage": [0.9, 0.2]})
    gates = pd.DataFrame({"rule": ["g", "g"], "model": ["m", "m"], "passed": [True, False]})
    return metrics, cov, gates


def test_summary_is_bounded_and_latest():
    job = job_dict("p", None, "o", gates=[{"name": "g", "task": "clf", "metric": "f1",
                                           "min": 0.1}])
    job["outputs"]["prometheus"] = {"pushgateway_url": "http://x", "slices": ["a=1"]}
    cfg = load_config(data=job)
    assert pushed_metrics(cfg)[0] == "f1"  # the gates' metrics first
    metrics, cov, gates = _tables()
    s = {(x.family, x.labels): x.value
         for x in build_summary(cfg, metrics, cov, None, gates, 12.5, 1e9)}
    lab = (("task", "t"), ("model", "m"))
    assert s[("rayeval_f1", lab + (("slice", "overall"),))] == 0.8  # latest window, binary avg
    assert ("rayeval_f1", lab + (("slice", "a=2"),)) not in s  # not a configured slice
    assert not any(f == "rayeval_roc_auc" for f, _ in s)  # NaN is not pushed
    assert s[("rayeval_gate_passed", (("rule", "g"), ("model", "m")))] == 0.0
    assert s[("rayeval_label_coverage_ratio", (("model", "m"), ("slice", "overall")))] == 0.2
    assert s[("rayeval_run_duration_seconds", ())] == 12.5
    # maturity: measured values and coverage from the latest mature window
    windows = pd.DataFrame({"model": "m", "window_start": sorted(metrics.window_start.unique()),
                            "mature": [True, False]})
    s = {(x.family, x.labels): x.value
         for x in build_summary(cfg, metrics, cov, None, gates, 1, 1e9, windows=windows)}
    assert s[("rayeval_f1", lab + (("slice", "overall"),))] == 0.7
    assert s[("rayeval_label_coverage_ratio", (("model", "m"), ("slice", "overall")))] == 0.9
    assert all(re.fullmatch(r"rayeval_[a-z0-9_]+", f) for f in FIXED_FAMILIES)


@pytest.mark.parametrize("bad", [{"slices": [f"s{i}" for i in range(11)]},
                                 {"grouping": {"job": "x"}}, {"grouping": {"a-b": "x"}},
                                 {"job": "a/b"}])
def test_config_rejects_unbounded_or_bad_labels(bad):
    job = job_dict("p", None, "o")
    job["outputs"]["prometheus"] = {"pushgateway_url": "http://x", **bad}
    with pytest.raises(ConfigError):
        load_config(data=job)


def test_pushgateway_url_redacted():
    job = job_dict("p", None, "o")
    job["outputs"]["prometheus"] = {"pushgateway_url": "http://user:pw4321@gw:9091"}
    cfg = load_config(data=job)
    assert "pw4321" not in json.dumps(cfg.redacted())
