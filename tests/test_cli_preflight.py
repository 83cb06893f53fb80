"""What a new user meets first at the command line: inputs checked before Ray starts (``validate``
and ``run``), ``--version``, the exit codes of the docstring and the README, and ``report``
defaulting to the latest run. The CLI runs as a subprocess (the installed entry point)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import rayeval
from rayeval.io.writers import RunWriter
from tests.conftest import BIN, ROOT
from tests.synth import job_dict, make_frames


def cli(*args: str, cwd: Path = ROOT, timeout: float = 120, **env) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    e.update(COLUMNS="200", **env)
    return subprocess.run([str(BIN / "rayeval"), *args], capture_output=True, text=True,
                          timeout=timeout, env=e, cwd=cwd)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("preflight")
    preds, labels = make_frames(400, seed=3)
    for name, df in (("preds", preds), ("labels", labels)):
        (d / name).mkdir()
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), d / name / "p.parquet")
    return d


def config(path: Path, data: Path, **changes) -> Path:
    cfg = job_dict(str(data / "preds"), str(data / "labels"), str(path.parent / "out"))
    for k, v in changes.items():
        cfg[k] = v
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_validate_checks_inputs_and_reports_them(data, tmp_path):
    ok = cli("validate", str(config(tmp_path / "ok.yaml", data)))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "predictions: 400 rows in 1 file(s)" in ok.stdout, ok.stdout
    assert "labels: 193 rows in 1 file(s)" in ok.stdout, ok.stdout
    # the config only (the shipped configs are validated this way without their data)
    bad = config(tmp_path / "bad.yaml", data, inputs={"predictions": {"uri": "no/such/dir"}})
    assert cli("validate", str(bad), "--skip-inputs").returncode == 0
    r = cli("validate", str(bad))
    assert r.returncode == 2
    assert "Input path does not exist: no/such/dir" in r.stderr
    assert str(ROOT / "no/such/dir") in r.stderr  # where a relative path was looked for


def test_validate_names_a_missing_column(data, tmp_path):
    cfg = job_dict(str(data / "preds"), str(data / "labels"), str(tmp_path / "out"))
    cfg["slices"]["columns"] = ["segment", "no_such_column"]
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    r = cli("validate", str(p))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "no_such_column" in r.stderr and "400 rows in 1 files" in r.stderr, r.stderr


def test_run_checks_inputs_before_ray_starts(data, tmp_path):
    """A bad input path exits 2 with the input error although the Ray address does not
    answer: the inputs were checked before Ray was contacted (else: exit 4, a Ray error)."""
    bad = config(tmp_path / "bad.yaml", data, inputs={"predictions": {"uri": str(tmp_path / "x")}})
    t0 = time.monotonic()
    r = cli("run", str(bad), "--set", "ray.address=127.0.0.1:1")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Input path does not exist" in r.stderr and "before Ray started" in r.stderr
    assert not (tmp_path / "out").exists()
    print(f"\nbad input path reported after {time.monotonic() - t0:.1f}s")


def test_version():
    r = cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"rayeval {rayeval.__version__}"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{rayeval.__version__}"' in pyproject


def test_exit_codes_agree_with_the_readme():
    """The CLI docstring and the README list the same exit codes 0-4."""
    import rayeval.cli as c

    readme = (ROOT / "README.md").read_text()
    listed = re.search(r"Exit codes: (.*?)\n\n", readme, re.S).group(1)
    for code in range(5):
        assert re.search(rf"\b{code} ", c.__doc__), code
        assert re.search(rf"\b{code} ", listed), code
    assert (c.EXIT_GATES, c.EXIT_INPUT, c.EXIT_MLFLOW, c.EXIT_ERROR) == (1, 2, 3, 4)


def test_report_defaults_to_the_latest_run(tmp_path):
    from tests.test_report import make_coverage, make_metrics

    out = tmp_path / "out"
    for i, run in enumerate(["zz-older", "aa-newer"]):  # alphabetical order is the wrong one
        with RunWriter(str(out), run) as w:
            w.write_table("metrics", make_metrics(3, 2).assign(run_id=run))
            w.write_table("coverage", make_coverage(3, 2).assign(run_id=run))
            w.write_json(f"manifests/{run}.json", {"run_id": run, "config": {"name": "t"}})
            w.commit()
        os.utime(out / "manifests" / f"{run}.json", ns=(10**18 + i, 10**18 + i))
    r = cli("report", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert (out / "reports" / "aa-newer.html").exists()
    assert not (out / "reports" / "zz-older.html").exists()
    empty = cli("report", str(tmp_path / "nothing"))
    assert empty.returncode == 2 and "no run under" in empty.stderr


def test_progress_lines_without_a_terminal():
    """Stages at once; a pass's rows at most every ``seconds`` and when it is done."""
    import io

    from rich.console import Console

    from rayeval.cli import ProgressLines

    buf = io.StringIO()
    p = ProgressLines(Console(file=buf, width=200), seconds=3600)
    for line in ["inspect", "scan", "scan: 10 / 100 rows (10%), 5 rows/s, 2s",
                 "scan: 20 / 100 rows (20%), 5 rows/s, 4s",
                 "scan: done, 100 / 100 rows (100%), 5 rows/s, 20s", "write"]:
        p(line)
    out = [ln.split("] ", 1)[1] for ln in buf.getvalue().splitlines()]
    assert out == ["inspect", "scan", "scan: 10 / 100 rows (10%), 5 rows/s, 2s",
                   "scan: done, 100 / 100 rows (100%), 5 rows/s, 20s", "write"]


def test_relative_paths_resolve_against_the_base_dir(tmp_path, monkeypatch):
    """``--base-dir`` / ``RAYEVAL_BASE_DIR`` resolve relative local paths (inputs, outputs, a
    sqlite tracking URI); s3:// and absolute paths are kept; inside a Ray job's working_dir
    copy a relative path without a base directory is refused, naming the field."""
    from rayeval.config import ConfigError, load_config

    data = job_dict("bucket/preds", "bucket/labels", "out/flights")
    data["outputs"]["mlflow"] = {"tracking_uri": "sqlite:///out/mlflow.db"}
    monkeypatch.delenv("RAYEVAL_BASE_DIR", raising=False)
    plain = load_config(data=data)
    assert plain.inputs.predictions.uri == "bucket/preds"  # relative to the current directory
    cfg = load_config(data=data, base_dir=str(tmp_path))
    assert cfg.inputs.predictions.uri == str(tmp_path / "bucket/preds")
    assert cfg.inputs.labels.uri == str(tmp_path / "bucket/labels")
    assert cfg.outputs.path == str(tmp_path / "out/flights")
    assert cfg.outputs.mlflow.tracking_uri == f"sqlite:///{tmp_path}/out/mlflow.db"
    keep = dict(data, inputs={"predictions": {"uri": "s3://b/p"},
                              "labels": {"uri": "/abs/labels"}})
    kept = load_config(data=keep, base_dir=str(tmp_path))
    assert (kept.inputs.predictions.uri, kept.inputs.labels.uri) == ("s3://b/p", "/abs/labels")

    copy = tmp_path / "session" / "runtime_resources" / "working_dir_files" / "_ray_pkg_abc"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    with pytest.raises(ConfigError, match=r"inputs\.predictions\.uri is the relative path "
                                          r"'bucket/preds'.*--base-dir \"\$PWD\""):
        load_config(data=data)
    monkeypatch.setenv("RAYEVAL_BASE_DIR", str(tmp_path))
    assert load_config(data=data).outputs.path == str(tmp_path / "out/flights")
