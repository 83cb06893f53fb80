"""The MLflow run created during the scan (engine/mlflow_log.py) against the default sqlite
store: a job that fails after it was created marks it FAILED (never RUNNING), and the next
successful run of the same run id replaces it and logs the whole run."""

from __future__ import annotations

import pandas as pd
import pytest

from rayeval.config import load_config
from rayeval.engine.run import run_job
from rayeval.io.readers import InputError
from tests.synth import job_dict, make_frames, write_parquet


@pytest.mark.slow
def test_failed_job_marks_its_run_failed_and_a_rerun_replaces_it(ray_local, tmp_path,
                                                                  monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    preds, labels = make_frames(1000, seed=2)
    dup = pd.concat([preds, preds.iloc[:3]], ignore_index=True)  # 3 repeated ids
    write_parquet(dup, tmp_path / "dup", 1)
    write_parquet(preds, tmp_path / "preds", 2)
    write_parquet(labels, tmp_path / "labels", 1)
    out = tmp_path / "out"
    base = job_dict(str(tmp_path / "dup"), str(tmp_path / "labels"), str(out), run_id="job-1",
                    outputs={"path": str(out), "report": False,
                             "mlflow": {"enabled": True, "experiment": "e"}},
                    policy={"duplicate_predictions": "error"})
    with pytest.raises(InputError, match="duplicate prediction id"):
        run_job(load_config(data=base))  # found by the scan: after the run was created
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name("e").experiment_id
    failed = client.search_runs([exp], "tags.`rayeval.run_id` = 'job-1'")
    assert [r.info.status for r in failed] == ["FAILED"]
    assert failed[0].data.params  # the params were logged while the job scanned

    ok = dict(base, inputs={"predictions": {"uri": str(tmp_path / "preds")},
                            "labels": {"uri": str(tmp_path / "labels"),
                                       "timestamp_column": "label_ts"}})
    res = run_job(load_config(data=ok))
    assert res.mlflow_error is None and res.manifest["mlflow"]["run_id"] == res.mlflow_run_id
    assert "mlflow" in res.durations
    runs = client.search_runs([exp], "tags.`rayeval.run_id` = 'job-1'")
    assert [r.info.run_id for r in runs] == [res.mlflow_run_id]  # the FAILED one was replaced
    run = client.get_run(res.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.data.tags["rayeval.gates"] == "passed"
    auc = client.get_metric_history(res.mlflow_run_id, "clf/champion/roc_auc")
    assert len(auc) == res.finalized.metrics["window_start"].nunique()
    arts = {a.path for a in client.list_artifacts(res.mlflow_run_id)}
    assert {"metrics", "manifests"} <= arts
    assert client.get_run(failed[0].info.run_id).info.lifecycle_stage == "deleted"
