"""The GitHub Actions example (``examples/ci/github-actions-model-gate.yml``): its gate and
summary steps are run for real with bash (the ``${{ }}`` expressions filled in as GitHub would),
on a PR model that passes and one that fails: the gate step's exit code is what blocks a merge."""

from __future__ import annotations

import os
import re
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml

from rayeval.config import load_config
from tests.conftest import BIN, ROOT
from tests.synth import write_parquet

CI = ROOT / "examples" / "ci"
EXPR = {"github.event.pull_request.number": "7", "github.sha": "abc123",
        "github.repository_owner": "acme"}


def workflow() -> dict:
    wf = yaml.safe_load((CI / "github-actions-model-gate.yml").read_text())
    wf["on"] = wf.pop(True, wf.get("on"))  # YAML 1.1 reads the key `on` as true
    return wf


def step(name: str) -> dict:
    (s,) = [s for s in workflow()["jobs"]["model-gate"]["steps"] if s.get("name") == name]
    return s


def script(name: str) -> str:
    return re.sub(r"\$\{\{\s*([\w.]+)\s*\}\}", lambda m: EXPR[m.group(1)], step(name)["run"])


def test_workflow_shape():
    wf = workflow()
    assert "pull_request" in wf["on"]
    gate = step("Evaluate and gate")
    assert "continue-on-error" not in gate and "|| true" not in gate["run"]
    assert "rayeval run examples/ci/pr-gate.yaml" in gate["run"]
    assert step("Gate summary")["if"] == "always()"
    load_config(CI / "pr-gate.yaml")


def holdout(n: int, calibrated: bool, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    p = 1 / (1 + np.exp(-2 * x))
    label = (rng.random(n) < p).astype(np.int64)
    score = p if calibrated else rng.permutation(p)
    return pd.DataFrame({"id": np.arange(n), "model": "pr-7",
                         "timestamp": pd.Timestamp("2024-03-01", tz="UTC"),
                         "segment": rng.choice(["a", "b"], n), "score": score,
                         "predicted": (score >= 0.5).astype(np.int64), "label": label})


@pytest.mark.parametrize("calibrated, code", [(True, 0), (False, 1)])
@pytest.mark.slow
def test_gate_step_blocks_a_bad_model(tmp_path, calibrated, code):
    write_parquet(holdout(4000, calibrated, seed=11), tmp_path / "ci-data" / "predictions", 2)
    (tmp_path / "examples" / "ci").mkdir(parents=True)
    (tmp_path / "examples" / "ci" / "pr-gate.yaml").write_text((CI / "pr-gate.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}",
               GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"))
    r = subprocess.run(["bash", "-c", script("Evaluate and gate")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == code, r.stdout[-3000:] + r.stderr[-3000:]
    s = subprocess.run(["bash", "-c", script("Gate summary")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert s.returncode == 0, s.stderr
    summary = (tmp_path / "summary.md").read_text()
    if code == 0:
        assert summary.startswith("## rayeval gate: passed")
    else:
        assert summary.startswith("## rayeval gate: FAILED") and "- auc-floor (pr-7" in summary
