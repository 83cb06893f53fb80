"""Real components for the tests: a local Ray, a Ray head with its job server, moto's S3 server
over HTTP, and an MLflow tracking server. Each starts once per session, only when a test asks."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
EXAMPLE_DATA = ROOT / "examples" / "flights" / "data"
BIN = Path(sys.executable).parent
#: seconds a server started by a fixture may take to answer (raise it on a loaded machine)
START_TIMEOUT = float(os.environ.get("RAYEVAL_TEST_START_TIMEOUT", "120"))


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
        except urllib.error.HTTPError as e:  # an answer: Ray 2.60's dashboard says 401 (token auth)
            if e.code < 500:
                return
            last = e
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
def ray_head():
    """A real Ray head started with ``ray start --head --block`` (job server on a free port).

    Yields ``{"address": job-server URL, "gcs": GCS address, "env": environment for the ``ray``
    CLI, "temp_dir"}`` (see :func:`start_ray_head`)."""
    with start_ray_head() as head:
        yield head


@contextlib.contextmanager
def start_ray_head(**env_extra: str):
    """A real Ray head started with ``ray start --head --block`` (job server on a free port),
    with ``env_extra`` added to its environment (e.g. ``HOME`` holding ``.ray/auth_token``).

    Yields ``{"address": job-server URL, "gcs": GCS address, "env": environment for the ``ray``
    CLI, "temp_dir", "auth_mode"}``. Isolated from any other Ray on the machine: every port is
    free-picked
    (the dashboard agent's default 52365 would collide with another local Ray) and the session
    lives in its own short ``--temp-dir`` (so ``/tmp/ray/ray_current_cluster`` is not
    overwritten and bare ``ray.init()`` elsewhere does not attach to it). ``--block`` keeps
    ``ray start`` in the foreground with kernel fate-sharing: stopping it (by its pid, then its
    own process group) stops exactly this head. Never ``ray stop``: it kills every Ray process
    on the machine, other sessions' included. The venv's ``bin`` leads ``PATH`` so a job's
    ``python`` entrypoint is the venv's.
    """
    import signal
    import tempfile

    dash, gcs = free_port(), free_port()
    temp = tempfile.mkdtemp(prefix="rh", dir="/tmp")  # short: AF_UNIX socket paths <= 107
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **env_extra)
    env.pop("RAY_ADDRESS", None)
    cmd = [str(BIN / "ray"), "start", "--head", "--block", "--num-cpus=2",
           "--disable-usage-stats", f"--port={gcs}", "--dashboard-host=127.0.0.1",
           f"--dashboard-port={dash}", "--include-dashboard=true", f"--temp-dir={temp}",
           f"--dashboard-agent-listen-port={free_port()}",
           f"--dashboard-agent-grpc-port={free_port()}",
           f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
           f"--ray-client-server-port={free_port()}", "--object-store-memory=300000000"]
    log_path = Path(temp) / "ray-start.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        try:
            wait_http(address + "/api/version", 120)
        except RuntimeError:
            raise RuntimeError(f"ray head did not start (exit code {proc.poll()}):\n"
                               + log_path.read_text()[-3000:]) from None
        # Ray 2.60 turns token auth on when a token exists (~/.ray/auth_token), but the job
        # client only sends it with RAY_AUTH_MODE=token: mirror the head's mode for the CLI.
        with urllib.request.urlopen(address + "/api/authentication_mode", timeout=10) as r:
            mode = json.load(r).get("authentication_mode", "disabled")
        env["RAY_AUTH_MODE"] = "token" if mode == "token" else "disabled"
        yield {"address": address, "gcs": f"127.0.0.1:{gcs}", "env": env, "temp_dir": temp,
               "auth_mode": mode}
    finally:
        proc.terminate()  # ray start's SIGTERM handler kills the node's processes (no drain)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers in this head's own process group
        except ProcessLookupError:
            pass
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server over HTTP on a free port, with dummy credentials in the environment
    (as s3fs's own tests do). Yields the endpoint URL."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one INFO line per request
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


@contextlib.contextmanager
def http_server(name: str, cmd: list[str], url: str, health: str, log_dir: Path,
                timeout: float):
    """Run ``cmd`` (a server answering at ``url``) until the block ends: waits for
    ``url + health`` to answer, raises with the log's tail when it does not, and stops the
    process (terminate, then kill) after."""
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            wait_http(url + health, timeout)
        except RuntimeError:
            raise RuntimeError(f"{name} did not start (exit code {proc.poll()}):\n"
                               + log_path.read_text()[-3000:]) from None
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` (sqlite backend, local artifacts) on a free port."""
    d = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{d}/mlflow.db",
           "--artifacts-destination", str(d / "artifacts"), "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1"]
    with http_server("mlflow server", cmd, f"http://127.0.0.1:{port}", "/health", d,
                     START_TIMEOUT) as u:
        yield u


def debian_binary(name: str) -> str:
    """Path of a Debian-packaged binary (``prometheus-pushgateway``, ``promtool``): installed by
    ``.ci/run`` (``apt-get install prometheus-pushgateway prometheus``). A missing one fails the
    test, naming the install command (never a silent skip)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: apt-get install -y prometheus-pushgateway prometheus "
                    "(as .ci/run does)")
    return path


@pytest.fixture(scope="session")
def pushgateway(tmp_path_factory):
    """A real Prometheus Pushgateway (Debian's ``prometheus-pushgateway``) on a free loopback
    port, persisting to its own temporary file. Yields its base URL."""
    d = tmp_path_factory.mktemp("pushgateway")
    port = free_port()
    cmd = [debian_binary("prometheus-pushgateway"), f"--web.listen-address=127.0.0.1:{port}",
           f"--persistence.file={d / 'pushgateway.data'}"]
    with http_server("pushgateway", cmd, f"http://127.0.0.1:{port}", "/-/ready", d, 60) as u:
        yield u


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
