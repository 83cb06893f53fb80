"""The Airflow DAG (``deploy/airflow/rayeval_dag.py``) tested with Airflow itself, in its own
environment (Airflow must not enter rayeval's dependencies): ``.venv-airflow`` with
apache-airflow (pinned, :data:`AIRFLOW`) and the Ray client of the project's Ray version,
created on first use. The DAG imports without errors in a DagBag; ``dag.test()`` runs it
against a real local Ray head, once with a passing and once with a failing gate (the task, and
so the DAG run, must fail). Slow (installs Airflow once): behind the ``airflow`` marker, run by
``.ci/run`` after the README's test command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT
from tests.synth import job_dict, make_frames, write_parquet

pytestmark = pytest.mark.airflow
AIRFLOW = "apache-airflow==3.3.2"  # no constraints file: GitHub is not reachable from here
VENV = ROOT / ".venv-airflow"


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory):
    """``(python, env)``: the Airflow environment's interpreter and an environment with a fresh
    ``AIRFLOW_HOME`` whose metadata database is migrated."""
    import ray

    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
        subprocess.run([str(py), "-m", "pip", "install", "-q", AIRFLOW,
                        f"ray[default]=={ray.__version__}"], check=True, timeout=1800)
    home = tmp_path_factory.mktemp("airflow-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RAY_ADDRESS"))}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "deploy" / "airflow"))
    r = subprocess.run([str(VENV / "bin" / "airflow"), "db", "migrate"], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return py, env


def drive(airflow_env, logical_date: str = "-", conf: dict | None = None, extra_env=None):
    py, env = airflow_env
    r = subprocess.run([str(py), str(ROOT / "tests" / "airflow_driver.py"),
                        str(ROOT / "deploy" / "airflow"), logical_date, json.dumps(conf or {})],
                       env={**env, **(extra_env or {})}, capture_output=True, text=True,
                       timeout=900, cwd=ROOT)
    lines = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
    assert lines, f"exit {r.returncode}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return json.loads(lines[-1][len("RESULT "):]), r.stdout + r.stderr


def test_dag_imports_in_a_dagbag(airflow_env):
    res, _ = drive(airflow_env)
    assert res["import_errors"] == {}
    assert res["dag_ids"] == ["rayeval_scheduled"] and res["tasks"] == ["evaluate"]
    assert res["schedule"] == "@daily"


@pytest.mark.parametrize("gate_min, state", [(0.5, "success"), (0.999, "failed")])
def test_dag_run_against_ray_head(airflow_env, ray_head, tmp_path, gate_min, state):
    """Logical date 2024-01-20 (the daily trigger time) with a 72 h label delay: the latest
    mature week is 01-08 .. 01-15 (as ``jobs/scheduled.py`` computes it)."""
    preds, labels = make_frames(2000, seed=9)
    write_parquet(preds, tmp_path / "preds", 1)
    write_parquet(labels, tmp_path / "labels", 1)
    job = job_dict(str(tmp_path / "preds"), str(tmp_path / "labels"), str(tmp_path / "out"),
                   gates=[{"name": "acc", "task": "clf", "metric": "accuracy",
                           "min": gate_min}])
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump(job))
    conf = {"ray_address": ray_head["address"], "config": str(cfg), "working_dir": str(ROOT),
            "label_delay_hours": 72, "timeout_hours": 0.25}
    res, log = drive(airflow_env, "2024-01-20T00:00:00", conf,
                     {"RAY_AUTH_MODE": ray_head["env"]["RAY_AUTH_MODE"]})
    assert res["state"] == state and res["task_states"] == {"evaluate": state}, log[-4000:]
    gates = pd.read_parquet(tmp_path / "out" / "gates")  # the job ran and wrote its verdict
    assert set(gates["window_start"]) == {pd.Timestamp("2024-01-08", tz="UTC")}
    assert bool(gates["passed"].all()) == (state == "success")
    if state == "failed":
        assert "ended FAILED (a gate failed)" in log, log[-4000:]
