"""Real components for the tests: a local Ray, a Ray head with its job server, moto's S3 server
over HTTP, and an MLflow tracking server. Each starts once per session, only when a test asks."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
EXAMPLE_DATA = ROOT / "examples" / "flights" / "data"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float) -> None:
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except OSError as e:
            last = e
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout}s: {last}")


@pytest.fixture(scope="session")
def ray_local():
    """An in-process local Ray (2 CPUs, no dashboard) shared by the engine tests."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False,
                 logging_level="WARNING", runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory):
    """A real Ray head started with ``ray start --head`` (job server on a free port).

    Yields the dashboard/job-server address. Stopped with ``ray stop`` at the end.
    """
    dash = free_port()
    gcs = free_port()
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    cmd = [str(BIN / "ray"), "start", "--head", "--num-cpus=2", "--disable-usage-stats",
           f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
           "--include-dashboard=true"]
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=120)
    address = f"http://127.0.0.1:{dash}"
    try:
        wait_http(address + "/api/version", 60)
        yield {"address": address, "gcs": f"127.0.0.1:{gcs}"}
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], env=env, capture_output=True,
                       timeout=120)


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server over HTTP on a free port, with dummy credentials in the environment
    (as s3fs's own tests do). Yields the endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    old = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                          "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_ENDPOINT_URL_S3=endpoint, AWS_DEFAULT_REGION="us-east-1")
    try:
        yield endpoint
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` (sqlite backend, local artifacts) on a free port."""
    d = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{d}/mlflow.db",
         "--artifacts-destination", str(d / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=open(d / "server.log", "wb"), stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_http(uri + "/health", 90)
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def flights_source() -> Path | None:
    """The flights data: the project's copy, else ../shared/data; None when absent."""
    for d in (EXAMPLE_DATA, SHARED_DATA):
        if (d / "flights-3m.parquet").exists():
            return d
    return None


@pytest.fixture(scope="session")
def flights_sample(tmp_path_factory):
    """The flights example prepared on a 1% sample (predictions + labels folders)."""
    src = flights_source()
    if src is None:
        pytest.skip("flights data absent (examples/flights/data and ../shared/data)")
    sys.path.insert(0, str(ROOT / "examples" / "flights"))
    from prepare import prepare

    out = tmp_path_factory.mktemp("flights-sample")
    info = prepare(out, sample_frac=0.01, seed=0, data_dir=src)
    return {"dir": out, **info}


@pytest.fixture
def clean_dir(tmp_path):
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)
