"""MLflow keys are unique per name: sanitising that changes a name adds a hash of the original,
and the run keeps the mapping (``mlflow/mlflow_keys.json``)."""

from __future__ import annotations

import json

import pandas as pd

from rayeval.io.mlflow_writer import _BAD, sanitize_key


def test_sanitize_is_injective_and_keeps_valid_keys():
    names = ["clf/MAP@k/roc_auc", "clf/MAP#k/roc_auc", "clf/MAP_k/roc_auc", "a//b", "/a/b",
             "a..b", "x" * 300, "x" * 299 + "y", "clf/v1.2/f1"]
    mapping: dict = {}
    keys = [sanitize_key(n, mapping) for n in names]
    assert len(set(keys)) == len(names)  # the old sanitising sent MAP@k and MAP#k to one key
    assert keys[2] == "clf/MAP_k/roc_auc" and keys[-1] == "clf/v1.2/f1"  # valid: unchanged
    for k in keys:
        assert not _BAD.search(k) and len(k) <= 250 and not k.startswith("/")
        assert "//" not in k and ".." not in k
    assert mapping == {k: n for k, n in zip(keys, names) if k != n}
    assert sanitize_key("clf/MAP@k/roc_auc") == keys[0]  # deterministic across runs


def test_colliding_model_names_log_two_histories(tmp_path):
    from mlflow.tracking import MlflowClient

    from rayeval.config import load_config
    from rayeval.engine.results import Finalized
    from rayeval.engine.mlflow_log import MLflowLog
    from rayeval.engine.run import RunResult
    from tests.synth import job_dict

    cfg = load_config(data=job_dict("p", None, str(tmp_path / "out"), outputs={
        "path": str(tmp_path / "out"), "mlflow": {"enabled": True}}))
    w = pd.Timestamp("2024-01-01", tz="UTC")
    metrics = pd.DataFrame({"task": "clf", "model": ["MAP@k", "MAP#k"], "slice": "overall",
                            "metric": "roc_auc", "class_label": None, "average": None,
                            "window_start": w, "window_end": w + pd.Timedelta(days=7),
                            "value": [0.7, 0.9]})
    fin = Finalized(metrics, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), {}, 0, None)
    manifest = {"config_hash": "h", "input_fingerprint": "f", "versions": {}}
    result = RunResult("r1", fin, None, pd.DataFrame({"passed": []}), {}, manifest)
    ml = MLflowLog(cfg, "r1")
    ml.start()
    ml.finish(result)
    assert result.mlflow_error is None, result.mlflow_error
    client = MlflowClient(tracking_uri=result.manifest["mlflow"]["tracking_uri"])
    run = client.get_run(result.mlflow_run_id)
    assert sorted(run.data.metrics.values()) == [0.7, 0.9]  # two keys, not one history
    path = client.download_artifacts(result.mlflow_run_id, "mlflow/mlflow_keys.json",
                                     str(tmp_path))
    mapping = json.loads(open(path).read())
    assert sorted(mapping.values()) == ["clf/MAP#k/roc_auc", "clf/MAP@k/roc_auc"]
    assert set(mapping) == set(run.data.metrics)
