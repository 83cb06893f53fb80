"""Scoring registered MLflow models on Ray (inputs.models): a real MLflow server (sqlite backend,
artifact root), two real scikit-learn models trained on the flights sample, registered with
aliases, scored on a local Ray; metrics checked against scikit-learn on the same rows."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from rayeval.config import ConfigError, load_config
from tests import registry_fixtures as rf

ROOT = Path(__file__).resolve().parents[1]
# each scoring job starts an actor pool that imports MLflow and scikit-learn and loads the
# models: seconds on an idle machine, minutes on a loaded shared one
pytestmark = [pytest.mark.registry, pytest.mark.timeout(1800)]
REGISTERED = "flights-delay"


@pytest.fixture(scope="module")
def ray_local():
    """The session's local Ray (conftest ``ray_local``'s settings), started with retries: on
    a loaded shared machine the raylet can miss Ray's fixed 30 s start-up wait."""
    import ray

    from tests.conftest import ROOT as root

    for attempt in range(3):
        if ray.is_initialized():
            break
        try:
            ray.init(address="local", num_cpus=2, include_dashboard=False,
                     logging_level="WARNING",
                     runtime_env={"env_vars": {"PYTHONPATH": str(root)}})
        except Exception:  # noqa: BLE001 - Ray raises a bare Exception on the timeout
            ray.shutdown()
            if attempt == 2:
                raise
    yield ray


@pytest.fixture(scope="module")
def registry(flights_sample, mlflow_server, tmp_path_factory):
    """Feature dataset, latest labels, the two fitted models, their runs:/ URIs and the
    registered model ``flights-delay`` (v1 champion, v2 challenger)."""
    d = tmp_path_factory.mktemp("registry")
    sample = Path(flights_sample["dir"])
    features_dir = rf.features_dataset(sample, d / "features")
    features = pq.read_table(features_dir).to_pandas()
    labels = rf.latest_labels(sample)
    champion, challenger, x = rf.train_models(features, labels)
    runs = [rf.log_model(mlflow_server, m, x) for m in (champion, challenger)]
    rf.register(mlflow_server, REGISTERED, runs, {"champion": 1, "challenger": 2})
    return {"uri": mlflow_server, "features_dir": features_dir, "features": features,
            "labels": labels, "labels_dir": sample / "labels", "models": (champion, challenger),
            "runs": runs, "dir": d}


def job(reg: dict, out: Path, registered: str = REGISTERED, **sections) -> dict:
    cfg = {
        "name": "registry-test",
        "inputs": {
            "models": [{"name": "champion", "uri": f"models:/{registered}@champion"},
                       {"name": "challenger", "uri": f"models:/{registered}@challenger"}],
            "features": {"uri": str(reg["features_dir"])},
            "labels": {"uri": str(reg["labels_dir"]), "id_column": "prediction_id",
                       "timestamp_column": "label_timestamp"}},
        "columns": {"id": "prediction_id", "timestamp": "timestamp", "model": "model"},
        "tasks": [{"name": "delayed", "type": "binary", "label": "delayed",
                   "prediction": "predicted_delayed", "score": "score", "classes": [0, 1],
                   "positive_class": 1, "exact_scores": True}],
        "scoring": {"outputs": {"score": 1}, "threshold": 0.5, "registry_uri": reg["uri"],
                    "check_dependencies": False},
        "slices": {"overall": True, "columns": ["origin_state"], "min_slice_size": 1},
        "windows": {"size": "none", "start": "2001-02-01", "end": "2001-07-01"},
        "gates": [{"name": "auc-floor", "task": "delayed", "metric": "roc_auc", "min": 0.5}],
        "outputs": {"path": str(out), "report": False,
                    "mlflow": {"tracking_uri": reg["uri"], "experiment": "rayeval-registry"}},
        "ray": {"actors": 1},
    }
    for k, v in sections.items():
        cfg[k] = v if not isinstance(v, dict) or not isinstance(cfg.get(k), dict) else {
            **cfg[k], **v}
    return cfg


def run(cfg: dict):
    from rayeval.engine.run import run_job

    return run_job(load_config(data=cfg))


def test_scores_champion_and_challenger_like_sklearn(registry, ray_local, tmp_path):
    out = tmp_path / "out"
    res = run(job(registry, out, outputs={"predictions": True}))
    m = res.finalized.metrics
    overall = m[(m["slice"] == "overall") & m["class_label"].isna()]
    for name, model in zip(("champion", "challenger"), registry["models"]):
        want = rf.oracle(model, registry["features"], registry["labels"], "2001-02-01",
                         "2001-07-01")
        got = overall[overall["model"] == name]
        for metric in ("roc_auc", "accuracy", "log_loss", "brier_loss"):
            row = got[(got["metric"] == metric)
                      & (got["average"].isna() | (got["average"] == "binary"))]
            assert len(row) == 1, (name, metric)
            assert math.isclose(row["value"].iloc[0], want[metric], rel_tol=1e-9,
                                abs_tol=1e-12), (name, metric)
        assert int(got["n_labeled"].iloc[0]) == want["n_rows"]
    assert [x["version"] for x in res.manifest["models"]] == ["1", "2"]
    assert res.manifest["models"][0]["load_uri"] == f"models:/{REGISTERED}/1"
    # champion and challenger scored on the same rows
    cov = res.finalized.coverage
    cov = cov[cov["slice"] == "overall"].set_index("model")
    assert cov.loc["champion", "n_rows"] == cov.loc["challenger", "n_rows"]
    # outputs.predictions: the scored rows, hive-partitioned by date, committed with the run
    pred = pq.read_table(out / "predictions").to_pandas()
    f = registry["features"]
    f = f[(f["timestamp"] >= pd.Timestamp("2001-02-01", tz="UTC"))
          & (f["timestamp"] < pd.Timestamp("2001-07-01", tz="UTC"))].set_index("prediction_id")
    assert len(pred) == 2 * len(f) and res.manifest["predictions_files"] > 0
    for name, model in zip(("champion", "challenger"), registry["models"]):
        p = pred[pred["model"] == name].set_index("prediction_id")
        want = model.predict_proba(f.loc[p.index, rf.FEATURES])[:, 1]
        assert abs(p["score"].to_numpy() - want).max() < 1e-12
        assert (p["predicted_delayed"].to_numpy() == (want >= 0.5)).all()
    assert str(pred["date"].iloc[0]).startswith("2001-")
    assert not (out / "_staging").exists()


def test_config_validation():
    base = {"inputs": {"models": [{"name": "a", "uri": "models:/m@champion"}],
                       "features": {"uri": "x"}},
            "tasks": [{"name": "t", "type": "binary", "label": "y", "score": "s",
                       "prediction": "p", "positive_class": 1}],
            "scoring": {"outputs": {"s": 1}, "threshold": 0.5}}
    cfg = load_config(data=base)
    assert cfg.registered_model() == "m"
    with pytest.raises(ConfigError, match="exactly one of"):
        load_config(data={**base, "inputs": {**base["inputs"], "predictions": {"uri": "y"}}})
    with pytest.raises(ConfigError, match="not mapped"):
        load_config(data={**base, "scoring": {"outputs": {"s": 1}}})
    with pytest.raises(ConfigError, match="models:/<name>@<alias>"):
        load_config(data={**base, "inputs": {**base["inputs"],
                                             "models": [{"name": "a", "uri": "m@x"}]}})
    with pytest.raises(ConfigError, match="needs inputs.features"):
        load_config(data={**base, "inputs": {"models": base["inputs"]["models"]}})


# ------------------------------------------------------------------------------------------
# acting on the verdict
# ------------------------------------------------------------------------------------------

def client(reg):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=reg["uri"], registry_uri=reg["uri"])


def alias_version(reg, name, alias="champion"):
    return str(client(reg).get_model_version_by_alias(name, alias).version)


def actions_table(out: Path) -> pd.DataFrame:
    return pq.read_table(out / "actions").to_pandas()


def execute(cfg: dict, **kw) -> int:
    from rayeval.cli import execute as run_cli

    return run_cli(load_config(data=cfg), quiet=True, **kw)


def test_promote_dry_run_and_rollback(registry, ray_local, tmp_path):
    from rayeval.engine.acting import rollback

    name = "fd-promote"
    rf.register(registry["uri"], name, registry["runs"], {"champion": 1, "challenger": 2})
    out = tmp_path / "out"
    cfg = job(registry, out, name, actions={"enabled": True})
    assert execute(cfg, dry_run=True) == 0
    assert alias_version(registry, name) == "1"
    assert not (out / "actions").exists()
    assert "rayeval.validation" not in client(registry).get_model_version(name, "2").tags

    assert execute(cfg) == 0
    c = client(registry)
    assert alias_version(registry, name) == "2"
    tags = c.get_model_version(name, "2").tags
    assert tags["rayeval.validation"] == "passed"
    run_id = load_config(data=cfg).resolved_run_id()
    assert tags["rayeval.run_id"] == run_id
    assert tags["rayeval.blessing"]
    model_tags = c.get_registered_model(name).tags
    assert '"to": "2"' in model_tags["rayeval.last_move"]
    acts = actions_table(out)
    assert list(acts[["kind", "from_version", "to_version", "alias"]].itertuples(
        index=False, name=None)) == [("promote", "1", "2", "champion")]
    assert acts["run_id"].iloc[0] == run_id and "passed every gate" in acts["reason"].iloc[0]

    # the command line: a dry run prints the undo and changes nothing
    import yaml
    from typer.testing import CliRunner

    from rayeval.cli import app

    cfg_path = tmp_path / "job.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    r = CliRunner().invoke(app, ["rollback", name, "--config", str(cfg_path), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "dry run" in r.output and "version 2 -> 1 (undo" in r.output
    assert alias_version(registry, name) == "2"
    rollback(load_config(data=cfg), name, dry_run=False, say=lambda s: None)
    assert alias_version(registry, name) == "1"
    acts = actions_table(out).sort_values("seq")
    assert list(acts["kind"]) == ["promote", "undo"]
    assert list(acts["to_version"]) == ["2", "1"]
    from rayeval.io.registry_actions import ActionError

    with pytest.raises(ActionError, match="no rayeval alias move to undo"):
        rollback(load_config(data=cfg), name, dry_run=False, say=lambda s: None)


def test_failing_champion_rolls_back_to_the_last_passed_version(registry, ray_local, tmp_path):
    aucs = [rf.oracle(m, registry["features"], registry["labels"], "2001-02-01",
                      "2001-07-01")["roc_auc"] for m in registry["models"]]
    weak, strong = sorted(range(2), key=lambda i: aucs[i])
    name = "fd-rollback"
    # v1 strong (validated earlier), v2 weak: the champion, failing the AUC floor
    rf.register(registry["uri"], name, [registry["runs"][strong], registry["runs"][weak]],
                {"champion": 2})
    client(registry).set_model_version_tag(name, "1", "rayeval.validation", "passed")
    out = tmp_path / "out"
    floor = (aucs[weak] + aucs[strong]) / 2
    cfg = job(registry, out, name, actions={"enabled": True},
              gates=[{"name": "auc-floor", "task": "delayed", "metric": "roc_auc",
                      "min": floor}])
    cfg["inputs"]["models"] = cfg["inputs"]["models"][:1]  # the champion only
    assert execute(cfg) == 1  # a gate failed: still exit 1, after acting
    assert alias_version(registry, name) == "1"
    tags = client(registry).get_model_version(name, "2").tags
    assert tags["rayeval.validation"] == "failed" and tags["rayeval.failed_rules"] == "auc-floor"
    acts = actions_table(out)
    assert list(acts[["kind", "from_version", "to_version"]].itertuples(
        index=False, name=None)) == [("rollback", "2", "1")]


def test_failed_step_leaves_the_registry_as_it_was(registry):
    from rayeval.io.registry_actions import ActionError, Plan, Step, apply_plan

    name = "fd-atomic"
    rf.register(registry["uri"], name, registry["runs"], {"champion": 1})
    c = client(registry)
    c.set_model_version_tag(name, "1", "rayeval.validation", "passed")
    plan = Plan(name, [Step("version_tag", name, "rayeval.validation", "failed", "1"),
                       Step("model_tag", name, "rayeval.last_move", "x"),
                       Step("set_alias", name, "champion", "99")])  # no version 99
    with pytest.raises(ActionError, match=r"step 3/3 \(set alias fd-atomic@champion -> "
                                          r"version 99\) failed.*registry is as it was"):
        apply_plan(c, plan)
    assert c.get_model_version(name, "1").tags["rayeval.validation"] == "passed"
    assert "rayeval.last_move" not in c.get_registered_model(name).tags
    assert alias_version(registry, name) == "1"


# ------------------------------------------------------------------------------------------
# bad input: nothing written
# ------------------------------------------------------------------------------------------

def test_unknown_model_or_alias(registry, ray_local, tmp_path, capsys):
    out = tmp_path / "out"
    cfg = job(registry, out)
    cfg["inputs"]["models"][1]["uri"] = f"models:/{REGISTERED}@nope"
    assert execute(cfg) == 2
    assert f"models:/{REGISTERED}@nope" in capsys.readouterr().err
    cfg["inputs"]["models"][1]["uri"] = "models:/no-such-model/1"
    assert execute(cfg) == 2
    assert "models:/no-such-model/1" in capsys.readouterr().err
    assert not out.exists()


def test_signature_mismatch(registry, ray_local, tmp_path, capsys):
    f = registry["features"]
    bad = tmp_path / "features-bad"
    bad.mkdir()
    part = f[f["timestamp"] < pd.Timestamp("2001-03-01", tz="UTC")].copy()
    part["distance"] = part["distance"].astype(str)
    part.to_parquet(bad / "part-0.parquet", index=False)
    out = tmp_path / "out"
    cfg = job(registry, out)
    cfg["inputs"]["features"]["uri"] = str(bad)
    assert execute(cfg) == 2
    e = capsys.readouterr().err
    assert "'champion'" in e and "'distance'" in e and "string" in e and "long" in e
    part = f[f["timestamp"] < pd.Timestamp("2001-03-01", tz="UTC")].copy()
    part["hour"] = part["hour"].astype("Int8")
    part.loc[part.index[:3], "hour"] = pd.NA
    part.to_parquet(bad / "part-0.parquet", index=False)
    assert execute(cfg) == 2
    e = capsys.readouterr().err
    assert "'hour'" in e and "3 null" in e
    assert not out.exists()


def test_model_raising_on_some_batches(registry, ray_local, tmp_path, capsys):
    f = registry["features"]
    scored = f[(f["timestamp"] >= pd.Timestamp("2001-02-01", tz="UTC"))
               & (f["timestamp"] < pd.Timestamp("2001-07-01", tz="UTC"))]
    counts = scored["distance"].value_counts()
    bad = int(counts[counts == 1].index[0])  # in one scored row: one batch raises
    run_uri = rf.log_raising_model(registry["uri"], f, bad)
    rf.register(registry["uri"], "fd-raise", [run_uri], {"champion": 1})
    out = tmp_path / "out"
    cfg = job(registry, out, scoring={"batch_size": 2000})
    cfg["inputs"]["models"] = [{"name": "raiser", "uri": "models:/fd-raise@champion"}]
    assert execute(cfg) == 4
    e = capsys.readouterr().err
    assert "models:/fd-raise@champion" in e and "batch" in e and f"distance {bad}" in e
    assert not out.exists()


def test_registry_unreachable(registry, ray_local, tmp_path, capsys):
    from tests.conftest import free_port

    out = tmp_path / "out"
    dead = f"http://127.0.0.1:{free_port()}"
    cfg = job(registry, out, scoring={"registry_uri": dead})
    assert execute(cfg) == 6
    e = capsys.readouterr().err
    assert "unreachable" in e and dead in e
    assert not out.exists()


def test_example_config_validates():
    cfg = load_config(ROOT / "configs" / "flights-registry.yaml")
    assert cfg.inputs.models and cfg.actions.enabled is False
    assert cfg.registered_model() == "flights-delay"


def test_dependency_warning_names_the_packages(registry):
    from rayeval.io.models import ResolvedModel, dependency_warnings, using_registry

    x = registry["features"][rf.FEATURES].head(200)
    same = rf.log_model(registry["uri"], registry["models"][0], x)
    old = rf.log_model(registry["uri"], registry["models"][0], x,
                       pip_requirements=["scikit-learn==0.24.2", "no-such-package-xyz==1.0"])
    with using_registry(registry["uri"]):
        ok = dependency_warnings(ResolvedModel("a", same, same, None, None, None, None, {}))
        bad = dependency_warnings(ResolvedModel("b", old, old, None, None, None, None, {}))
    assert ok == []
    assert len(bad) == 1 and "scikit-learn==0.24.2 (installed" in bad[0]
    assert "no-such-package-xyz==1.0 (not installed)" in bad[0] and "'b'" in bad[0]
