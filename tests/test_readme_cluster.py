"""The README's cluster commands, run as written against a real Ray head, from a fresh copy of
the repository that holds the prepared flights example (a 1% sample) in its documented place.

The head reproduces the trap a new user meets: ``~/.ray/auth_token`` exists (``HOME`` is a
temporary folder holding one) and the head is started without ``RAY_AUTH_MODE``, so it requires
a token; the README's ``export RAY_AUTH_MODE=token`` must make ``ray job submit`` send it. Only
the job server's address is replaced (the head listens on free ports) and the README's
``ray start`` line is left to the fixture (free ports, own temp dir; never ``ray stop``)."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import BIN, ROOT, start_ray_head

# three flights jobs (one Ray head): run by .ci/run after the README command
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(2400)]

README_ADDRESS = "http://127.0.0.1:8265"


def readme_cluster_block() -> list[str]:
    """The README's bash block holding ``ray job submit``, continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    block = next(b for b in blocks if "ray job submit" in b)
    return [ln for ln in block.replace("\\\n", " ").splitlines() if ln.strip()]


def fresh_copy(dest: Path) -> Path:
    """The repository's files as a fresh clone has them (tracked and new, not ignored), without
    the 3M-row source data (the example is prepared already)."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if f.startswith("examples/flights/data/") or not (ROOT / f).is_file():
            continue
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dest / f)
    return dest


@pytest.fixture(scope="module")
def token_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    (home / ".ray").mkdir()
    (home / ".ray" / "auth_token").write_text(secrets.token_hex(16))
    return home


@pytest.fixture(scope="module")
def token_head(token_home):
    env = {"HOME": str(token_home)}
    with start_ray_head(**env) as head:
        yield head


def test_readme_submit_commands_as_written(token_head, token_home, flights_sample, tmp_path):
    assert token_head["auth_mode"] == "token"  # the trap is set: the head wants the token
    repo = fresh_copy(tmp_path / "clone")
    shutil.copytree(flights_sample["dir"], repo / "examples" / "flights" / "bucket")
    lines = readme_cluster_block()
    assert any(ln.startswith("export RAY_AUTH_MODE=token") for ln in lines)
    script = []
    for ln in lines:
        if ln.startswith(("ray start", "ray stop")):
            continue  # the head is the fixture's (free ports, own temp dir)
        script.append(ln.replace(README_ADDRESS, token_head["address"]))
        if ln.startswith("ray job submit"):
            script.append('echo "README-EXIT=$?"')
    assert sum(ln.startswith("ray job submit") for ln in script) == 3
    env = {k: v for k, v in token_head["env"].items()
           if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}  # what a new user's shell has
    env["HOME"] = str(token_home)
    r = subprocess.run(["bash", "-u", "-c", "\n".join(script)], cwd=repo,
                       env=env, capture_output=True, text=True, timeout=2400)
    head_log = Path(token_head["temp_dir"]) / "ray-start.log"
    codes = re.findall(r"README-EXIT=(\d+)", r.stdout)
    # 0, or 1: a gate failed on the 1% sample (weekly windows of a few hundred flights); both
    # mean the job ran and wrote its results
    assert len(codes) == 3 and set(codes) <= {"0", "1"}, (
        codes, r.stdout[:3000] + "\n...\n" + r.stdout[-3000:] + r.stderr[-3000:]
        + "\nhead: " + (head_log.read_text()[-2000:] if head_log.exists() else "gone"))
    assert "scan: done, " in r.stdout  # progress lines in the job's log (no terminal)
    out = repo / "rayeval-output" / "flights"
    runs = sorted(p.stem for p in (out / "manifests").glob("*.json"))
    # the backfill commits each week as its own run (the scheduled run replaced its week)
    weeks = pd.date_range("2001-02-05", "2001-06-25", freq="7D")
    assert runs == sorted([f"flights-delay-{d:%Y%m%d}T0000" for d in weeks]
                          + ["flights-delay-deep-dive-origin_ORD"]), runs
    m = pd.read_parquet(out / "metrics")
    assert set(m["run_id"]) == set(runs)
    assert (out / "mlflow.db").exists() and any((out / "reports").glob("*.html"))
    assert str(out) in r.stdout  # the summary says where the results are
    # nothing was written into the head's working_dir copies
    session = Path(token_head["temp_dir"])
    assert not [p for p in session.rglob("rayeval-output") if "working_dir_files" in str(p)]


def test_relative_paths_refused_in_a_submitted_job(token_head, token_home, tmp_path):
    """Without ``--base-dir`` a submitted job refuses the config's relative paths (exit 2),
    naming the field and the remedy, instead of writing into Ray's temporary copy."""
    repo = fresh_copy(tmp_path / "clone")
    env = dict(token_head["env"], HOME=str(token_home))
    r = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", token_head["address"],
         "--working-dir", ".", "--", "python", "jobs/backfill.py", "--config",
         "configs/flights.yaml", "--start", "2001-02-05", "--end", "2001-03-05"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode != 0
    text = r.stdout + r.stderr
    assert "inputs.predictions.uri is the relative path" in text, text[-3000:]
    assert '--base-dir "$PWD"' in text
    assert not (repo / "rayeval-output").exists()
