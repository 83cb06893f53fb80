"""Integration tests with real components, no mocks: S3 over HTTP (moto server + s3fs), a Ray
head with its job server (``ray job submit``), an MLflow tracking server and the sqlite default
store, the ``rayeval`` CLI and the ``jobs/`` entry points as subprocesses.

One synthetic dataset (``tests/synth.py``: two models, three weeks of January 2024) is written
once per module as hive-partitioned predictions (``date=YYYY-MM-DD/part.parquet``, 21 files) and
two label files; the S3 copy holds the same bytes. Every result is compared with an in-process
``run_job`` on the local files (``assert_same_metrics`` from ``test_engine``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from rayeval.config import StorageConfig, load_config, storage_options
from rayeval.engine.run import run_job
from tests.conftest import BIN, ROOT
from tests.synth import job_dict, make_frames, write_parquet
from tests.test_engine import assert_same_metrics

BUCKET = "rayeval-integration"
WEEK2 = ("2024-01-08", "2024-01-15")  # one whole week: 7 daily partitions


# ---------------------------------------------------------------------------------------------
# shared data and reference runs (module scope)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("integration")
    preds, labels = make_frames(6000, seed=7)
    days = preds["timestamp"].dt.strftime("%Y-%m-%d")
    for day, part in preds.groupby(days):
        p = d / "preds" / f"date={day}"
        p.mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), p / "part.parquet")
    write_parquet(labels, d / "labels", 2)
    return {"dir": d, "preds": preds, "labels": labels, "days": sorted(days.unique())}


def local_cfg(data, out, **extra):
    d = data["dir"]
    return job_dict(str(d / "preds"), str(d / "labels"), str(out), **extra)


GATES = [{"name": "auc", "task": "clf", "metric": "roc_auc", "min": 0.5}]


@pytest.fixture(scope="module")
def local_full(ray_local, data, tmp_path_factory):
    """The whole range on the local files: the reference every other run is compared with. It
    also logs to MLflow's default store (sqlite in the output folder; no tracking URI set)."""
    out = tmp_path_factory.mktemp("local-full")
    cfg = load_config(data=local_cfg(data, out, gates=GATES, outputs={
        "path": str(out), "report": False,
        "mlflow": {"enabled": True, "experiment": "it-sqlite"}}))
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        res = run_job(cfg)
    finally:
        mp.undo()
    return {"cfg": cfg, "res": res, "out": out}


def week(metrics: pd.DataFrame, start: str) -> pd.DataFrame:
    return metrics[metrics["window_start"] == pd.Timestamp(start, tz="UTC")]


def week2_rows(data) -> int:
    ts = data["preds"]["timestamp"]
    return int(((ts >= pd.Timestamp(WEEK2[0], tz="UTC"))
                & (ts < pd.Timestamp(WEEK2[1], tz="UTC"))).sum())


def read_run_table(out: Path, table: str, run_id: str) -> pd.DataFrame:
    files = list((out / table).glob(f"run_date=*/{run_id}.parquet"))
    assert len(files) == 1, files
    return pd.read_parquet(files[0])


# ---------------------------------------------------------------------------------------------
# 1. S3 over HTTP (moto server)


@pytest.fixture(scope="module")
def s3(ray_local, s3_server, data):
    """The dataset uploaded to a moto S3 server. ``ray_local`` is requested first on purpose:
    its worker processes start before the fixture puts the endpoint and credentials into the
    driver's environment, as on a cluster whose nodes do not share the driver's environment."""
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server})  # no region_name: moto
    fs.mkdir(BUCKET)
    fs.put(str(data["dir"] / "preds") + "/", f"{BUCKET}/preds/", recursive=True)
    fs.put(str(data["dir"] / "labels") + "/", f"{BUCKET}/labels/", recursive=True)
    fs.invalidate_cache()
    assert len(fs.glob(f"{BUCKET}/preds/date=*/part.parquet")) == len(data["days"]) == 21
    assert len(fs.glob(f"{BUCKET}/labels/*.parquet")) == 2
    return {"endpoint": s3_server, "fs": fs, "so": storage_options(StorageConfig())}


def s3_cfg(out, **extra):
    return job_dict(f"s3://{BUCKET}/preds", f"s3://{BUCKET}/labels", out, **extra)


def test_s3_filesystem_reaches_workers(s3):
    """The filesystem object pickled to a Ray worker carries the endpoint and credentials: the
    worker reads from the S3 server although its own environment has neither."""
    import ray

    from rayeval.io.readers import resolve_filesystem

    fs, path = resolve_filesystem(f"s3://{BUCKET}/preds/date=2024-01-01/part.parquet",
                                  StorageConfig())

    @ray.remote(num_cpus=0.1)
    def read_in_worker(fs, path):
        env = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID")}
        opts = fs.handler.fs.storage_options
        with fs.open_input_file(path) as f:
            return env, opts["client_kwargs"]["endpoint_url"], pq.read_table(f).num_rows

    env, endpoint, rows = ray.get(read_in_worker.remote(fs, path))
    assert env == {"AWS_ENDPOINT_URL_S3": None, "AWS_ACCESS_KEY_ID": None}  # the point of it
    assert endpoint == s3["endpoint"]
    with fs.open_input_file(path) as f:
        assert rows == pq.read_table(f).num_rows > 0


def test_s3_equals_local(s3, local_full, tmp_path):
    ref = local_full["res"]
    res = run_job(load_config(data=s3_cfg(str(tmp_path / "out"))))
    assert_same_metrics(res.finalized.metrics, ref.finalized.metrics)
    assert res.manifest["row_counts"] == ref.manifest["row_counts"]
    ins = res.manifest["inputs"]
    assert len(ins["predictions"]) == 21 and len(ins["labels"]) == 2
    assert all(f["path"].startswith(f"{BUCKET}/preds/date=") for f in ins["predictions"])
    assert sorted(f["size"] for f in ins["predictions"]) == sorted(
        f["size"] for f in ref.manifest["inputs"]["predictions"])  # the same bytes


def test_s3_partition_pruning_and_s3_output(s3, local_full, data):
    """``windows.start/end`` prune the ``date=`` partitions before any footer is read (7 of 21
    files listed in the manifest); the week's metrics equal the full run's; the outputs are
    committed under an ``s3://`` prefix and read back with pandas + s3fs."""
    out = f"s3://{BUCKET}/out/week2"
    cfg = load_config(data=s3_cfg(out, windows={"size": "week", "start": WEEK2[0],
                                                "end": WEEK2[1]}))
    res = run_job(cfg)
    listed = [f["path"] for f in res.manifest["inputs"]["predictions"]]
    assert listed == [f"{BUCKET}/preds/date=2024-01-{d:02d}/part.parquet" for d in range(8, 15)]
    assert res.manifest["row_counts"]["rows_read"] == week2_rows(data)
    assert_same_metrics(res.finalized.metrics, week(local_full["res"].finalized.metrics,
                                                    WEEK2[0]))

    fs = s3["fs"]
    fs.invalidate_cache()
    run_id = cfg.resolved_run_id()
    assert f"manifests/{run_id}.json" in res.outputs
    assert all(p.startswith(f"{BUCKET}/out/week2/") for p in res.outputs.values())
    assert not fs.exists(f"{BUCKET}/out/week2/_staging")
    written = pd.read_parquet(f"{out}/metrics", storage_options=s3["so"])
    assert (written["run_id"] == run_id).all()
    assert_same_metrics(written, res.finalized.metrics)
    coverage = pd.read_parquet(f"{out}/coverage", storage_options=s3["so"])
    assert len(coverage) == len(res.finalized.coverage)
    with fs.open(f"{BUCKET}/out/week2/manifests/{run_id}.json") as f:
        man = json.load(f)
    assert man["run_id"] == run_id and man["inputs"]["predictions"] == \
        res.manifest["inputs"]["predictions"]


# ---------------------------------------------------------------------------------------------
# 2. ray job submit against a real head, and the jobs/ entry points


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def submit(head: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``ray job submit --working-dir <repo> -- python <args>``; the exit code follows the job's.
    The flights data under examples/ is not needed by these jobs: excluded from the upload."""
    cmd = [str(BIN / "ray"), "job", "submit", "--address", head["address"],
           "--working-dir", str(ROOT),
           "--runtime-env-json", json.dumps({"excludes": ["examples/flights/data/"]}),
           "--", "python", *args]
    r = subprocess.run(cmd, env=head["env"], capture_output=True, text=True, timeout=timeout,
                       cwd=ROOT)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r


@pytest.mark.slow
def test_ray_job_submit_backfill(ray_head, data, local_full, tmp_path):
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "job.yaml", local_cfg(data, out))
    r = submit(ray_head, "jobs/backfill.py", "--config", str(cfg), "--start", WEEK2[0],
               "--end", WEEK2[1], "--quiet")
    run_id = f"synthetic-{WEEK2[0].replace('-', '')}T0000"  # one window: the scheduled run id
    assert "succeeded" in r.stdout + r.stderr and run_id in r.stdout
    assert "1 computed" in r.stdout
    written = read_run_table(out, "metrics", run_id)
    assert (written["run_id"] == run_id).all()
    assert_same_metrics(written, week(local_full["res"].finalized.metrics, WEEK2[0]))
    man = json.loads((out / "manifests" / f"{run_id}.json").read_text())
    assert len(man["inputs"]["predictions"]) == 7
    assert man["row_counts"]["rows_read"] == week2_rows(data)
    assert man["config"]["windows"]["start"].startswith(WEEK2[0])


@pytest.mark.slow
def test_ray_job_submit_scheduled(ray_head, data, local_full, tmp_path):
    """``--now`` 2024-01-20 with a 72 h label delay: the cutoff 2024-01-17 lies in the week of
    01-15 (not complete), so the latest mature week is 01-08 .. 01-15."""
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "job.yaml", local_cfg(data, out))
    submit(ray_head, "jobs/scheduled.py", "--config", str(cfg), "--now", "2024-01-20T00:00:00",
           "--label-delay-hours", "72", "--quiet")
    run_id = "synthetic-20240108T0000"
    written = read_run_table(out, "metrics", run_id)
    assert set(written["window_start"]) == {pd.Timestamp(WEEK2[0], tz="UTC")}
    assert_same_metrics(written, week(local_full["res"].finalized.metrics, WEEK2[0]))


@pytest.mark.slow
def test_deep_dive_subprocess_local_ray(data, tmp_path):
    """``jobs/deep_dive.py`` without a cluster: the job starts (and stops) its own local Ray."""
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "job.yaml", local_cfg(data, out))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    r = subprocess.run([sys.executable, "jobs/deep_dive.py", "--config", str(cfg),
                        "--filter", "segment=north", "--crosses", "segment,band",
                        "--set", "ray.num_cpus=2", "--quiet"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    run_id = "synthetic-deep-dive-segment_north"
    m = read_run_table(out, "metrics", run_id)
    assert m["slice_columns"].isna().any()  # overall
    assert set(m["slice_columns"].dropna()) == {"segment", "segment,band"}  # crosses replaced
    assert set(m.loc[m.slice_columns.notna(), "slice"]) == {
        "segment=north", "segment=north,band=lo", "segment=north,band=hi"}
    assert m["window_start"].nunique() == 21  # daily windows over three weeks
    north = data["preds"][data["preds"]["segment"] == "north"]
    cov = read_run_table(out, "coverage", run_id)
    assert cov.loc[cov.slice == "overall", "n_rows"].sum() == len(north)


# ---------------------------------------------------------------------------------------------
# 3. MLflow (sqlite default store, tracking server) and 4. the rayeval CLI


def check_mlflow_run(client, experiment: str, run_id: str, cfg, metrics: pd.DataFrame) -> str:
    """One FINISHED run named ``run_id``: config params, tags, per-window metric history
    (step = window index, timestamp = window end in ms), the tables and manifest as artifacts.
    Returns the MLflow run id."""
    from mlflow.entities import ViewType

    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], f"attributes.run_name = '{run_id}'",
                              run_view_type=ViewType.ALL)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    p = run.data.params
    assert p["name"] == "synthetic" and p["windows.size"] == "week"
    assert p["inputs.predictions.uri"] == cfg.inputs.predictions.uri
    assert p["slices.min_slice_size"] == "1" and p["outputs.mlflow.experiment"] == experiment
    t = run.data.tags
    assert t["rayeval.gates"] == "passed" and t["rayeval.config_hash"] == cfg.config_hash()
    assert t["rayeval.run_id"] == run_id

    sel = metrics[(metrics.slice == "overall") & (metrics.task == "clf")
                  & (metrics.model == "champion") & (metrics.metric == "roc_auc")
                  & metrics.class_label.isna() & metrics.average.isna()]
    sel = sel.sort_values("window_start")
    assert len(sel) == 3
    hist = sorted(client.get_metric_history(run.info.run_id, "clf/champion/roc_auc"),
                  key=lambda x: x.step)
    assert [h.step for h in hist] == [0, 1, 2]
    assert [h.timestamp for h in hist] == [int(pd.Timestamp(w).value // 10**6)
                                           for w in sel.window_end]
    assert [h.value for h in hist] == pytest.approx(sel.value.tolist(), rel=1e-12)

    arts = {a.path for d in ("metrics", "manifests", "coverage")
            for a in client.list_artifacts(run.info.run_id, d)}
    assert {f"metrics/{run_id}.parquet", f"manifests/{run_id}.json",
            f"coverage/{run_id}.parquet"} <= arts
    return run.info.run_id


def test_mlflow_sqlite_default_store(local_full):
    from mlflow.tracking import MlflowClient

    res, out = local_full["res"], local_full["out"]
    assert res.mlflow_error is None and res.mlflow_run_id
    db = out / "mlflow.db"
    assert db.exists() and res.manifest["mlflow"]["tracking_uri"] == f"sqlite:///{db}"
    rid = check_mlflow_run(MlflowClient(tracking_uri=f"sqlite:///{db}"), "it-sqlite",
                           res.run_id, local_full["cfg"], res.finalized.metrics)
    assert rid == res.mlflow_run_id


def rayeval(*args: str, env: dict | None = None, timeout: float = 300):
    env = {k: v for k, v in (env or os.environ).items() if k != "RAY_ADDRESS"}
    env["COLUMNS"] = "200"  # rich wraps at 80 columns without a terminal
    return subprocess.run([str(BIN / "rayeval"), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


@pytest.mark.slow
def test_cli_run_attached_logs_to_mlflow_server(ray_head, mlflow_server, data, local_full,
                                                tmp_path):
    """``rayeval run <cfg> --set ...`` exits 0; ``ray.address`` attaches it to the running head;
    the run is logged to the MLflow tracking server (artifacts uploaded through it) and its
    tables equal the in-process reference."""
    from mlflow.tracking import MlflowClient

    out = tmp_path / "out"
    cfg_path = write_config(tmp_path / "job.yaml", local_cfg(data, tmp_path / "unused"))
    overrides = [f"outputs.path={out}", "outputs.mlflow.enabled=true",
                 "outputs.mlflow.experiment=it-server",
                 f"ray.address={ray_head['gcs']}", "run_id=cli-run", f"gates={GATES}"]
    # credentials in the tracking URI (from the environment): sent as basic auth, never shown
    with_user = mlflow_server.replace("://", "://alice:Hunter2secret@", 1)
    env = dict(ray_head["env"], RAYEVAL__OUTPUTS__MLFLOW__TRACKING_URI=with_user)
    r = rayeval("run", str(cfg_path), *[a for o in overrides for a in ("--set", o)], "--quiet",
                env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "cli-run" in r.stdout and not (tmp_path / "unused").exists()
    assert "Hunter2secret" not in r.stdout + r.stderr
    assert "Hunter2secret" not in (out / "manifests" / "cli-run.json").read_text()
    overrides.append(f"outputs.mlflow.tracking_uri={with_user}")  # the same config hash
    written = read_run_table(out, "metrics", "cli-run")
    assert_same_metrics(written, local_full["res"].finalized.metrics)

    cfg = load_config(cfg_path, overrides)
    client = MlflowClient(tracking_uri=mlflow_server)
    rid = check_mlflow_run(client, "it-server", "cli-run", cfg, written)
    local = client.download_artifacts(rid, "metrics/cli-run.parquet", str(tmp_path))
    assert_same_metrics(pd.read_parquet(local), written)
    man = json.loads((out / "manifests" / "cli-run.json").read_text())
    assert man["config_hash"] == cfg.config_hash()


CONFIGS = sorted((ROOT / "configs").glob("*.y*ml"))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_cli_validate_shipped_configs(config):
    r = rayeval("validate", str(config), "--skip-inputs")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok" in r.stdout and "run_id=" in r.stdout


def test_cli_bad_config_exits_2_naming_fields(data, tmp_path):
    bad = local_cfg(data, tmp_path / "out")
    bad["windows"] = {"size": "fortnight"}
    bad["slices"]["min_slice_size"] = 0
    cfg = write_config(tmp_path / "bad.yaml", bad)
    for cmd in ("validate", "run"):
        r = rayeval(cmd, str(cfg))
        assert r.returncode == 2, (cmd, r.stdout, r.stderr)
        assert "windows.size" in r.stderr and "slices.min_slice_size" in r.stderr, r.stderr
    r = rayeval("validate", str(write_config(tmp_path / "ok.yaml", local_cfg(data, "x"))),
                "--set", "ray.actors=0")
    assert r.returncode == 2 and "ray.actors" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()
