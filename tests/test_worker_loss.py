"""Worker loss: a reducer actor's process is SIGKILLed, or the worker node running it is removed,
in the middle of the scan on a multi-node Ray (``ray.cluster_utils.Cluster``, in its own
process: tests/worker_loss_driver.py). rayeval restarts the pass from scratch (the dead actor's
partial state is lost whole, the survivors' partials are dropped with them), so the run
finishes with the undisturbed run's results and row counts; with ``ray.pass_retries=0`` it
fails with a clear error and commits nothing."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import ROOT
from tests.synth import make_frames, write_parquet

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def preds(tmp_path_factory):
    d = tmp_path_factory.mktemp("worker-loss")
    frame, labels = make_frames(40_000, seed=8)
    lab = labels.sort_values("label_ts").drop_duplicates("id", keep="last")
    frame = frame.merge(lab[["id", "label", "target"]], on="id", how="left")
    write_parquet(frame, d / "preds", 8)
    return d


def drive(preds, out, kill: str, retries: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(ROOT)
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "worker_loss_driver.py"),
                        str(preds / "preds"), str(out), kill, str(retries)], env=env,
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.parametrize("kill", ["process", "node"])
def test_killed_reducer_restarts_the_pass_with_identical_results(preds, tmp_path, kill):
    res = drive(preds, tmp_path / "out", kill, retries=1)
    assert res["killed"], res
    assert "error" not in res, res["error"]
    assert res["hit"]["rows"] == res["calm"]["rows"]  # no row lost or counted twice
    assert any(r for r in res["hit"]["restarts"]), res["hit"]["restarts"]
    calm = pd.read_json(io.StringIO(res["calm"]["metrics"]), orient="split")
    hit = pd.read_json(io.StringIO(res["hit"]["metrics"]), orient="split")
    assert len(calm) > 1000
    pd.testing.assert_frame_equal(calm, hit, check_exact=False, rtol=1e-12)


def test_without_retries_the_run_fails_and_commits_nothing(preds, tmp_path):
    out = tmp_path / "out"
    res = drive(preds, out, "process", retries=0)
    assert res["killed"] and "error" in res, res
    assert "WorkerLostError" in res["error"] and "nothing was committed" in res["error"]
    assert not (out / "manifests" / "hit.json").exists()
    assert not any((out / "metrics").rglob("hit.parquet"))
