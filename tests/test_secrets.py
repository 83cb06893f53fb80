"""Secrets never leak: planted S3 keys (config fields marked secret), an MLflow password and token
are searched for in every output of a real run submitted with ``ray job submit`` (tables,
manifest, report, audit, alerts, MLflow params/tags/metrics/artifacts, the job's logs, every
log file of the Ray head) and in the error text of failing runs: none appears."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import BIN, ROOT
from tests.synth import job_dict, make_frames, write_parquet

pytestmark = pytest.mark.faults

KEY_ID = "AKIAPLANTEDKEYID7Q3Z"
SECRET = "planted-s3-secret-9vXq2LmN"
ML_PASSWORD = "planted-mlflow-pw-Rt5"
ML_TOKEN = "planted-mlflow-token-Kp8"
PLANTED = (KEY_ID, SECRET, ML_PASSWORD, ML_TOKEN)
BUCKET = "rayeval-secrets"


def leaks(text: str) -> list[str]:
    return [p for p in PLANTED if p in text]


def scan_files(root: Path) -> dict[str, list[str]]:
    """Planted values found in any file under ``root``: Parquet files by their decoded
    content (compressed bytes would hide a value), everything else by its bytes."""
    found = {}
    for p in root.rglob("*"):
        if not p.is_file():
            continue
        if p.suffix == ".parquet":
            text = pq.read_table(p).to_pandas().to_csv()
        else:
            text = p.read_bytes().decode("utf-8", errors="replace")
        hit = leaks(text)
        if hit:
            found[str(p)] = hit
    return found


def test_planted_secrets_appear_in_no_output(ray_head, mlflow_server, s3_server, tmp_path):
    import s3fs
    from mlflow.tracking import MlflowClient

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server})
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    preds, labels = make_frames(2000, seed=4)
    write_parquet(preds, tmp_path / "p", 2)
    write_parquet(labels, tmp_path / "l", 1)
    fs.put(str(tmp_path / "p") + "/", f"{BUCKET}/preds/", recursive=True)
    fs.put(str(tmp_path / "l") + "/", f"{BUCKET}/labels/", recursive=True)

    out = tmp_path / "out"
    job = job_dict(f"s3://{BUCKET}/preds", f"s3://{BUCKET}/labels", str(out),
                   gates=[{"name": "auc", "task": "clf", "metric": "roc_auc", "min": 0.5}])
    job["inputs"]["storage"] = {"endpoint_url": s3_server, "access_key_id": KEY_ID,
                                "secret_access_key": SECRET}
    job["outputs"].update(report=True, mlflow={
        "enabled": True, "experiment": "secrets",
        "tracking_uri": mlflow_server.replace("://", f"://alice:{ML_PASSWORD}@", 1)})
    conf = tmp_path / "job.yaml"
    conf.write_text(yaml.safe_dump(job))

    runtime_env = {"working_dir": str(ROOT), "excludes": ["examples/flights/data/"],
                   "env_vars": {"MLFLOW_TRACKING_TOKEN": ML_TOKEN}}
    r = subprocess.run([str(BIN / "ray"), "job", "submit", "--address", ray_head["address"],
                        "--runtime-env-json", json.dumps(runtime_env), "--", "python",
                        "jobs/backfill.py", "--config", str(conf), "--start", "2024-01-08",
                        "--end", "2024-01-15"], env=ray_head["env"], capture_output=True,
                       text=True, timeout=600, cwd=ROOT)
    console = r.stdout + r.stderr
    assert r.returncode == 0, console[-4000:]
    assert not leaks(console)

    # every file the run wrote: tables, manifest, report, audit, alerts
    assert (out / "manifests").exists() and (out / "audit").exists()
    assert scan_files(out) == {}

    # MLflow: params, tags, metric keys, every artifact
    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name("secrets")
    runs = client.search_runs([exp.experiment_id])
    assert runs
    for run in runs:
        blob = json.dumps({"params": run.data.params, "tags": run.data.tags,
                           "metrics": sorted(run.data.metrics)})
        assert not leaks(blob)
        local = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "art")))
        assert scan_files(local) == {}

    # the Ray job's logs and every log file of the head (drivers, workers, raylet, GCS)
    jobs = subprocess.run([str(BIN / "ray"), "job", "list", "--address", ray_head["address"]],
                          env=ray_head["env"], capture_output=True, text=True, timeout=60)
    job_ids = [w.strip("',") for w in jobs.stdout.split() if w.strip("',").startswith("raysubmit_")]
    for jid in job_ids:
        logs = subprocess.run([str(BIN / "ray"), "job", "logs", jid, "--address",
                               ray_head["address"]], env=ray_head["env"], capture_output=True,
                              text=True, timeout=60)
        assert not leaks(logs.stdout + logs.stderr), jid
    log_dirs = [d for d in Path(ray_head["temp_dir"]).glob("session_*/logs")]
    assert log_dirs
    found = {}
    for d in log_dirs:
        for p in d.rglob("*"):
            # the runtime env agent records the job's runtime env (Ray's own bookkeeping of the
            # MLFLOW_TRACKING_TOKEN we handed it, not a rayeval output)
            if p.is_file() and "runtime_env" not in p.name:
                hit = leaks(p.read_bytes().decode("utf-8", errors="replace"))
                if hit:
                    found[str(p)] = hit
    assert found == {}


def test_secrets_absent_from_error_text(tmp_path):
    """Failing runs (an S3 endpoint that refuses connections; a tracking server that is down)
    print errors without the planted keys, password or token."""
    from tests.conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    job = job_dict("s3://nowhere/preds", None, str(tmp_path / "out"))
    job["inputs"]["storage"] = {"endpoint_url": dead, "access_key_id": KEY_ID,
                                "secret_access_key": SECRET, "max_attempts": 1}
    conf = tmp_path / "job.yaml"
    conf.write_text(yaml.safe_dump(job))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(MLFLOW_TRACKING_TOKEN=ML_TOKEN, COLUMNS="200")
    r = subprocess.run([str(BIN / "rayeval"), "run", str(conf), "--quiet", "--set",
                        f"outputs.mlflow.tracking_uri=http://bob:{ML_PASSWORD}@{dead[7:]}",
                        "--set", f"inputs.storage.secret_access_key={SECRET}"],
                       capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert r.returncode in (2, 4), r.stdout + r.stderr
    assert not leaks(r.stdout + r.stderr), r.stdout + r.stderr
    assert not (tmp_path / "out").exists() or scan_files(tmp_path / "out") == {}
