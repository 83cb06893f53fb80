"""MLflow writer: one run per job execution (mlflow's client; no Ray).

Params: the flattened, redacted config. Metrics: overall-slice values per window as metric history
(``step`` = window index, ``timestamp`` = window end in ms), keys ``<task>/<model>/<metric>`` plus
class/average suffixes, sanitised to MLflow's key grammar ``^[/\\w.\\- :]*$`` (250 characters);
non-finite values are never logged (they stay in the Parquet tables with their reason). Tags:
run_id, config hash, input fingerprint, versions, gate verdict. Artifacts: the output tables,
manifest and report.

A tracking server that does not answer is detected with a 5 s health probe before anything is
logged; :class:`MLflowUnavailable` is raised and the caller reports it (results are already in
Parquet).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import math
import os
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Iterable, Mapping

import pandas as pd

from rayeval.config import redact_uri

_BAD = re.compile(r"[^\w.\- :/]")


class MLflowUnavailable(RuntimeError):
    """The tracking store could not be reached or rejected the run."""


def sanitize_key(key: str, mapping: dict | None = None) -> str:
    """Map any string to a valid MLflow metric/param/tag key (``^[/\\w.\\- :]*$``, <= 250
    chars, no leading ``/``, no ``//``, no ``..``), injectively: a valid key is kept as is; a
    key that had to change gets ``-h`` and 8 hex digits of its SHA-256 appended (``MAP@k`` ->
    ``MAP_k-h1f2e...``, ``MAP#k`` -> ``MAP_k-h9c0d...``: two models or metrics whose names differ
    only in rejected characters keep two histories). ``mapping`` (when given) receives
    ``{sanitised: original}`` for every changed key (logged as ``mlflow_keys.json``)."""
    k = _BAD.sub("_", key)
    k = re.sub(r"/+", "/", k).lstrip("/")
    k = k.replace("..", "_.")
    if k == key and len(k) <= 250:
        return k
    k = f"{k[:239]}-h{hashlib.sha256(key.encode()).hexdigest()[:8]}"
    if mapping is not None:
        mapping[k] = key
    return k


def flatten(d: Mapping, prefix: str = "") -> dict[str, str]:
    """Flatten a nested dict to ``a.b.c -> str(value)`` (values cut to 6000 chars)."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = str(v)[:6000]
    return out


def split_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """``(uri without user information, user, password)`` of an http(s) URI such as
    ``https://user:password@host/``; the credentials are percent-decoded (``None`` when absent).
    MLflow gets them through ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``, so the
    URI it prints, logs and puts in its errors never holds the password."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return uri, None, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    clean = urllib.parse.urlunsplit(parts._replace(netloc=host))
    return clean, urllib.parse.unquote(user), urllib.parse.unquote(password)


@contextlib.contextmanager
def _credentials_env(user: str | None, password: str | None):
    """MLflow's basic-auth variables set for the block (previous values restored)."""
    if user is None:
        yield
        return
    keys = {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password or ""}
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_reachable(tracking_uri: str, timeout: float = 5.0) -> None:
    """Raise :class:`MLflowUnavailable` when an http(s) tracking server does not answer
    (credentials in the URI go in a basic-auth header, as MLflow sends them)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    clean, user, password = split_credentials(tracking_uri)
    req = urllib.request.Request(clean.rstrip("/") + "/health")
    if user is not None:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            if r.status >= 400:
                raise MLflowUnavailable(f"MLflow server {redact_uri(tracking_uri)} answered "
                                        f"{r.status}")
    except OSError as e:
        raise MLflowUnavailable(f"MLflow server {redact_uri(tracking_uri)} is unreachable: "
                                f"{redact_uri(str(e))}") from None


def window_steps(*tables: pd.DataFrame | None) -> dict:
    """MLflow step of each window: its index among the sorted window starts of every row of
    ``tables`` (metrics, drift), so a window has one step in every metric history."""
    starts = set()
    for t in tables:
        if t is not None and len(t):
            starts.update(t["window_start"].dropna().unique())
    return {w: i for i, w in enumerate(sorted(starts))}


def overall_metric_history(metrics: pd.DataFrame, steps: dict | None = None,
                           mapping: dict | None = None) -> list[tuple[str, float, int, int]]:
    """``(key, value, timestamp_ms, step)`` for every finite overall-slice value; ``steps``:
    window start -> step (default :func:`window_steps` of ``metrics``); ``mapping``: see
    :func:`sanitize_key`."""
    step_of = window_steps(metrics) if steps is None else steps
    df = metrics[metrics["slice"] == "overall"]
    df = df[pd.notna(df["value"]) & df["value"].map(lambda v: math.isfinite(v))]
    if df.empty:
        return []
    out = []
    for row in df.itertuples(index=False):
        parts = [row.task, row.model, row.metric]
        if row.class_label is not None and not pd.isna(row.class_label):
            parts.append(f"class_{row.class_label}")
        if row.average is not None and not pd.isna(row.average):
            parts.append(row.average)
        ts = row.window_end
        ts_ms = int(pd.Timestamp(ts).value // 10**6) if not pd.isna(ts) else 0
        step = step_of.get(row.window_start, 0)
        out.append((sanitize_key("/".join(str(p) for p in parts), mapping), float(row.value),
                    ts_ms, step))
    return out


def comparison_history(comparisons: pd.DataFrame, steps: dict
                       ) -> list[tuple[str, float, int, int]]:
    """Overall-slice comparisons as metric history: ``compare/<task>/<candidate>_vs_<baseline>/
    <metric>/{difference,ci_lower,ci_upper,p_adjusted}`` per window step (finite values)."""
    if comparisons is None or comparisons.empty:
        return []
    out = []
    df = comparisons[comparisons["slice"] == "overall"]
    for row in df.itertuples(index=False):
        base = f"compare/{row.task}/{row.candidate}_vs_{row.baseline}/{row.metric}"
        ts = row.window_end
        ts_ms = int(pd.Timestamp(ts).value // 10**6) if not pd.isna(ts) else 0
        step = steps.get(row.window_start, 0)
        for name in ("difference", "ci_lower", "ci_upper", "p_adjusted"):
            v = float(getattr(row, name))
            if math.isfinite(v):
                out.append((sanitize_key(f"{base}/{name}"), v, ts_ms, step))
    return out


def replace_older_runs(client, experiment_id: str, keep: str, run_id: str | None) -> int:
    """Delete (MLflow's soft delete) the other runs of ``experiment_id`` tagged with the same
    rayeval ``run_id``: a rerun replaces its MLflow run as it replaces its Parquet files.
    Called once the new run is FINISHED, so a failed rerun keeps the old one. Returns how many
    were deleted."""
    if not run_id:
        return 0
    quoted = run_id.replace("'", "\\'")
    old = client.search_runs([experiment_id], f"tags.`rayeval.run_id` = '{quoted}'",
                             max_results=1000)
    gone = 0
    for r in old:
        if r.info.run_id != keep:
            client.delete_run(r.info.run_id)
            gone += 1
    return gone


def log_run(tracking_uri: str, experiment: str, run_name: str, params: Mapping[str, str],
            tags: Mapping[str, str], metric_history: Iterable[tuple[str, float, int, int]],
            artifacts: Iterable[tuple[str, str]], artifact_location: str | None = None) -> str:
    """Log one job execution as an MLflow run; returns the MLflow run id
    (:func:`start_run` then :func:`finish_run`).

    Args:
        artifacts: ``(local_path, artifact_dir)`` pairs.
        artifact_location: artifact root of a new experiment (default: the store's; for a
            sqlite store that is ``./mlruns`` of the working directory).

    Raises:
        MLflowUnavailable: the store is unreachable or a call failed.
    """
    run = start_run(tracking_uri, experiment, run_name, params, artifact_location)
    return finish_run(run, tags, metric_history, artifacts)


@dataclass
class PendingRun:
    """An MLflow run created by :func:`start_run` (status RUNNING) and not finished yet."""

    client: object
    tracking_uri: str  # without credentials
    user: str | None
    password: str | None
    experiment_id: str
    run_id: str


def _failing(tracking_uri: str, run: PendingRun | None = None):
    """Context: any MLflow error becomes :class:`MLflowUnavailable` (URI redacted); with
    ``run``, the run is first marked FAILED (KILLED on Ctrl-C), never left RUNNING."""
    @contextlib.contextmanager
    def ctx():
        try:
            yield
        except MLflowUnavailable:
            raise
        except BaseException as e:  # also Ctrl-C: never leave a run RUNNING forever
            if run is not None:
                with contextlib.suppress(Exception):
                    run.client.set_terminated(run.run_id, "KILLED" if isinstance(
                        e, KeyboardInterrupt) else "FAILED")
            if not isinstance(e, Exception):
                raise
            raise MLflowUnavailable(f"MLflow logging to {redact_uri(tracking_uri)} failed: "
                                    f"{type(e).__name__}: {redact_uri(str(e))}") from None
    return ctx()


def start_run(tracking_uri: str, experiment: str, run_name: str, params: Mapping[str, str],
              artifact_location: str | None = None,
              tags: Mapping[str, str] | None = None) -> PendingRun:
    """Create the run (and its experiment, and a sqlite store's tables, on first use) and log
    its params: the part of the logging that needs no result, so a job does it while its scan
    runs. Finish with :func:`finish_run`, or :func:`abort_run` when the job fails.

    Raises:
        MLflowUnavailable: the store is unreachable or a call failed.
    """
    check_reachable(tracking_uri)
    clean, user, password = split_credentials(tracking_uri)
    with _credentials_env(user, password), _failing(clean):
        from mlflow.entities import Param, RunTag
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=clean)
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else client.create_experiment(
            experiment, artifact_location=artifact_location)
        rid = client.create_run(exp_id, run_name=run_name).info.run_id
        run = PendingRun(client, clean, user, password, exp_id, rid)
        with _failing(clean, run):
            ps = [Param(sanitize_key(k), v) for k, v in params.items()]
            ts = [RunTag(sanitize_key(k), str(v)[:5000]) for k, v in (tags or {}).items()]
            for i in range(0, max(len(ps), 1), 100):  # MLflow's limit of params per batch
                client.log_batch(rid, params=ps[i:i + 100], tags=ts if i == 0 else [])
        return run


def finish_run(run: PendingRun, tags: Mapping[str, str],
               metric_history: Iterable[tuple[str, float, int, int]],
               artifacts: Iterable[tuple[str, str]]) -> str:
    """Log tags, the metric history (batches of 1,000) and the artifacts of a :func:`start_run` run, mark it FINISHED and soft-delete older runs
    of the same rayeval run id; returns the MLflow run id.

    Raises:
        MLflowUnavailable: a call failed (the run is marked FAILED).
    """
    from mlflow.entities import Metric, RunTag

    client, rid = run.client, run.run_id
    with _credentials_env(run.user, run.password), _failing(run.tracking_uri, run):
        ts = [RunTag(sanitize_key(k), str(v)[:5000]) for k, v in tags.items()]
        ms = [Metric(k, v, t, s) for k, v, t, s in metric_history if math.isfinite(v)]
        client.log_batch(rid, tags=ts, metrics=ms[:1000 - len(ts)])
        rest = ms[1000 - len(ts):]
        for i in range(0, len(rest), 1000):
            client.log_batch(rid, metrics=rest[i:i + 1000])
        for local, art_dir in artifacts:
            client.log_artifact(rid, local, art_dir)
        client.set_terminated(rid, "FINISHED")
    with _credentials_env(run.user, run.password), _failing(run.tracking_uri):
        replace_older_runs(client, run.experiment_id, rid, tags.get("rayeval.run_id"))
    return rid


def abort_run(run: PendingRun | None, status: str = "FAILED") -> None:
    """Mark a :func:`start_run` run ``status`` (the job failed before its results): never left
    RUNNING. Errors are ignored (the job's own error is the one to report)."""
    if run is None:
        return
    with _credentials_env(run.user, run.password), contextlib.suppress(Exception):
        run.client.set_terminated(run.run_id, status)
