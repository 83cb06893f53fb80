"""Audit trail and concurrent commits: every run appends one audit record and never rewrites one;
two runs of one run id never interleave their files (local folders and S3 via moto)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

from rayeval.config import load_config
from rayeval.engine.run import run_job
from rayeval.io.audit import AUDIT_SCHEMA, append_audit, audit_record, read_audit, redact_command
from rayeval.io.exclusive import CommitLock, ConcurrentRunError, holder_info, put_if_absent
from rayeval.io.writers import RunWriter, commit_token, output_fs
from tests.conftest import BIN, ROOT
from tests.synth import job_dict, make_frames, write_parquet

BUCKET = "rayeval-commit"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("audit-data")
    preds, labels = make_frames(3000, seed=5)
    write_parquet(preds, d / "preds", 3)
    write_parquet(labels, d / "labels", 1)
    return d


def cfg_for(data, out, **extra):
    return load_config(data=job_dict(str(data / "preds"), str(data / "labels"), str(out),
                                     **extra))


@pytest.mark.slow
def test_every_run_appends_one_audit_record(ray_local, data, tmp_path):
    out = tmp_path / "out"
    cfg = cfg_for(data, out, gates=[{"name": "auc", "task": "clf", "metric": "roc_auc",
                                     "min": 0.5}])
    first = run_job(cfg)
    files1 = sorted(p for p in (out / "audit").rglob("*.parquet"))
    assert len(files1) == 1
    snapshot = {p: p.read_bytes() for p in files1}
    rec = read_audit(str(out))
    assert list(rec.columns) == AUDIT_SCHEMA.names and len(rec) == 1
    r = rec.iloc[0]
    assert r.run_id == first.run_id and r.status == "committed" and r.gate_verdict == "passed"
    assert r.config_hash == first.manifest["config_hash"] == cfg.config_hash()
    assert r.input_fingerprint == first.manifest["input_fingerprint"]
    assert r.output_location == str(out) and r.host == socket.gethostname() and r.user
    assert r.command and r.time.tzinfo is not None
    assert any("committed" in a and first.manifest["commit_id"] in a for a in r.actions)

    second = run_job(cfg)  # a rerun of the same run id: adds a record, rewrites none
    files2 = sorted(p for p in (out / "audit").rglob("*.parquet"))
    assert len(files2) == 2 and set(files1) < set(files2)
    assert all(p.read_bytes() == b for p, b in snapshot.items())
    rec = read_audit(str(out))
    assert list(rec.run_id) == [first.run_id] * 2 and rec.time.is_monotonic_increasing
    assert any(f"replaced commit {first.manifest['commit_id']}" in a for a in rec.actions[1])
    assert second.manifest["commit_id"] != first.manifest["commit_id"]
    # the result tables hold one run's rows (replaced), the audit holds both runs
    m = pd.read_parquet(out / "metrics")
    assert len(m) == len(second.finalized.metrics)
    # a reader without rayeval: pyarrow.dataset over the folder, one schema
    import pyarrow.dataset as pads
    assert pads.dataset(out / "audit", format="parquet").to_table().num_rows == 2


@pytest.mark.slow
def test_failed_run_is_audited_and_commits_nothing(ray_local, data, tmp_path):
    out = tmp_path / "out"
    cfg = cfg_for(data, out)
    run_job(cfg)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet") if "audit" not in str(p)}
    fs, root = output_fs(str(out))
    # another run holds the commit lock of this run id (this process: alive) and never lets go
    with CommitLock(fs, root, cfg.resolved_run_id()):
        slow = cfg.model_copy(update={"outputs": cfg.outputs.model_copy(
            update={"lock_wait_s": 0.5})})
        with pytest.raises(ConcurrentRunError, match="being committed by run") as e:
            run_job(slow)
    assert "pid" in str(e.value) and "nothing was committed" in str(e.value)
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet") if "audit" not in str(p)}
    assert after == before
    rec = read_audit(str(out))
    assert list(rec.status) == ["committed", "failed"]
    assert "ConcurrentRunError" in rec.error.iloc[1] and pd.isna(rec.gate_verdict.iloc[1])
    assert not list((out / "_staging").glob("*")) if (out / "_staging").exists() else True


def test_input_error_writes_no_audit(ray_local, data, tmp_path):
    cfg = cfg_for(data, tmp_path / "out", columns={"id": "id", "timestamp": "nope",
                                                   "model": "model"})
    from rayeval.io.readers import InputError
    with pytest.raises(InputError):
        run_job(cfg)
    assert not (tmp_path / "out").exists()


def test_command_secrets_are_redacted():
    cmd = redact_command(["rayeval", "run", "c.yaml", "--set",
                          "inputs.storage.secret_access_key=hunter2", "--set",
                          "outputs.mlflow.tracking_uri=http://bob:pw123@host:5000",
                          "--set", "ray.actors=2"])
    assert "hunter2" not in cmd and "pw123" not in cmd and "ray.actors=2" in cmd


def test_first_commit_wins(tmp_path):
    """Two writers of one run id that both started before either committed: the first to
    commit wins; the second fails naming the conflict and leaves the first's files alone."""
    from tests.test_report import make_metrics

    out = str(tmp_path / "out")
    fs, root = output_fs(out)
    token = commit_token(fs, root, "r1")
    assert token is None
    a = RunWriter(out, "r1", expect_commit=token)
    b = RunWriter(out, "r1", expect_commit=token)
    for w, v in ((a, "a"), (b, "b")):
        w.__enter__()
        w.write_table("metrics", make_metrics(1, 1).assign(run_id="r1", model=v))
        w.write_json("manifests/r1.json", {"commit_id": w.commit_id, "who": v})
    b.commit()
    with pytest.raises(ConcurrentRunError, match="first run to commit wins"):
        a.commit()
    a.__exit__(None, None, None)
    assert pd.read_parquet(f"{out}/metrics").model.unique().tolist() == ["b"]
    assert json.load(open(f"{out}/manifests/r1.json"))["who"] == "b"
    assert commit_token(fs, root, "r1") == b.commit_id
    assert not os.path.exists(f"{out}/_staging")


def test_stale_lock_of_a_dead_process_is_broken(tmp_path):
    out = str(tmp_path / "out")
    fs, root = output_fs(out)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    info = holder_info("r1", 900) | {"pid": dead.pid}
    assert put_if_absent(fs, f"{root}/_locks/r1.lock", json.dumps(info).encode())
    w = RunWriter(out, "r1", lock_wait_s=0)
    with w:
        w.write_json("manifests/r1.json", {"commit_id": w.commit_id})
        w.commit()
    assert w.lock_report["stale_lock_broken"]["pid"] == dead.pid
    assert not os.path.exists(f"{root}/_locks/r1.lock")


def test_lock_waits_for_the_holder_then_commits(tmp_path):
    out = str(tmp_path / "out")
    fs, root = output_fs(out)
    lock = CommitLock(fs, root, "r1").__enter__()
    threading.Timer(0.6, lock.__exit__, (None, None, None)).start()
    w = RunWriter(out, "r1", lock_wait_s=30)
    with w:
        w.write_json("manifests/r1.json", {"commit_id": w.commit_id})
        w.commit()
    assert w.lock_report["lock_waited_s"] >= 0.4


def test_put_if_absent_and_audit_on_s3(s3_server):
    """moto implements ``If-None-Match: *``: the second create of a key is refused, and the
    lock and audit records work on an ``s3://`` prefix."""
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server})
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    key = f"{BUCKET}/x/once.bin"
    assert put_if_absent(fs, key, b"first") is True
    assert put_if_absent(fs, key, b"second") is False
    assert fs.cat(key) == b"first"
    so = {"client_kwargs": {"endpoint_url": s3_server}}
    s3fs_, root = output_fs(f"s3://{BUCKET}/out", so)
    with CommitLock(s3fs_, root, "r1") as held:
        other = CommitLock(s3fs_, root, "r1", wait_s=0.3)
        with pytest.raises(ConcurrentRunError, match=held.info["host"]):
            other.__enter__()
    assert not fs.exists(f"{root}/_locks/r1.lock")
    for _ in range(2):
        append_audit(s3fs_, root, audit_record("r1", status="committed"))
    assert len(read_audit(f"s3://{BUCKET}/out", so)) == 2


def _cli_run(config: str, run_id: str, out: str, env: dict, extra: list[str]):
    cmd = [str(BIN / "rayeval"), "run", config, "--quiet", "--set", f"run_id={run_id}",
           "--set", f"outputs.path={out}", "--set", "ray.actors=1",
           # two jobs share the 2-CPU head: actors reserving whole CPUs would starve the reads
           "--set", "ray.actor_num_cpus=0.25", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.faults
@pytest.mark.parametrize("where", ["local", "s3"])
def test_two_concurrent_runs_one_wins(ray_head, data, tmp_path, where, request):
    """Two real ``rayeval run`` processes on one Ray cluster write the same run id at the same
    time with different slicings: one exits 0, the other exits 4 naming the conflict (or, if
    they happened not to overlap, replaced it cleanly); every table then holds exactly the
    winner's rows."""
    import yaml

    env = dict(ray_head["env"], PYTHONPATH=str(ROOT), RAY_ADDRESS=ray_head["gcs"])
    if where == "s3":
        endpoint = request.getfixturevalue("s3_server")
        import s3fs
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint})
        if not fs.exists(BUCKET):
            fs.mkdir(BUCKET)
        env.update({k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                               "AWS_ENDPOINT_URL_S3")})
        out = f"s3://{BUCKET}/concurrent"
    else:
        out = str(tmp_path / "out")
    conf = tmp_path / "job.yaml"
    conf.write_text(yaml.safe_dump(job_dict(str(data / "preds"), str(data / "labels"), out)))
    a = _cli_run(str(conf), "same", out, env, ["--set", "slices.crosses=[]"])
    time.sleep(0.5)
    b = _cli_run(str(conf), "same", out, env, ["--set", "slices.columns=[band]"])
    try:
        outs = [p.communicate(timeout=300)[0] for p in (a, b)]
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
    codes = [a.returncode, b.returncode]
    assert sorted(codes) in ([0, 4], [0, 0]), outs
    if 4 in codes:
        loser = " ".join(outs[codes.index(4)].split())  # the console wraps long lines
        assert "committed by another run" in loser and "nothing of this run" in loser
    so = {"client_kwargs": {"endpoint_url": env.get("AWS_ENDPOINT_URL_S3")}} \
        if where == "s3" else None
    fs, root = output_fs(out, so)
    with fs.open(f"{root}/manifests/same.json") as f:
        manifest = json.load(f)
    winner_slices = manifest["config"]["slices"]
    m = pd.read_parquet(f"{out}/metrics", storage_options=so)
    cov = pd.read_parquet(f"{out}/coverage", storage_options=so)
    expected_cols = {"overall"} | {",".join(c) for c in [[x] for x in winner_slices["columns"]]
                                   + winner_slices["crosses"]}
    for df in (m, cov):
        assert set(df.slice_columns.fillna("overall").replace("", "overall")) <= expected_cols
    audit = read_audit(out, so)
    assert sorted(audit.status) == sorted("committed" if c == 0 else "failed" for c in codes)
