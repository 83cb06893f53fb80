"""A job's MLflow run, logged in two parts so that its slowest part overlaps the scan (no Ray).

Creating the run is the slow part on a first run (importing MLflow, creating the sqlite store's
tables, the experiment and the run: 20-70 s measured on a busy 2-core machine, see
BENCHMARKS.md); it needs no result, so :meth:`MLflowLog.start` does it, with the params, in a
background thread while the job reads labels and scans. :meth:`MLflowLog.finish` then logs the
tags, the metric history (batches of 1,000) and the artifacts once the tables are written. A
job that fails in between marks its run FAILED (KILLED on Ctrl-C), never leaves it RUNNING; the
run carries the ``rayeval.run_id`` tag from the start, so the next successful run of that id
soft-deletes it like any older run.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from rayeval.config import JobConfig, redact_uri
from rayeval.io import mlflow_writer


def tracking_uri(cfg: JobConfig) -> str:
    """Configured URI, else ``MLFLOW_TRACKING_URI``, else sqlite in the output folder."""
    uri = cfg.outputs.mlflow.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    if cfg.outputs.path.startswith("s3://"):
        return "sqlite:///mlflow.db"
    Path(cfg.outputs.path).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{os.path.abspath(os.path.join(cfg.outputs.path, 'mlflow.db'))}"


class MLflowLog:
    """The MLflow run of one job execution (see the module docstring). ``start()`` returns at
    once; ``finish(result)`` fills ``result.mlflow_run_id`` or ``result.mlflow_error`` and
    ``result.manifest["mlflow"]``; ``abort()`` marks the run FAILED / KILLED."""

    def __init__(self, cfg: JobConfig, run_id: str):
        self.cfg, self.run_id = cfg, run_id
        self.uri: str | None = None
        self._run: mlflow_writer.PendingRun | None = None
        self._error: str | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        cfg = self.cfg
        self.uri = tracking_uri(cfg)
        art_root = None
        if self.uri.startswith("sqlite:") and not cfg.outputs.path.startswith("s3://"):
            art_root = Path(os.path.abspath(cfg.outputs.path), "mlartifacts").as_uri()
        params = mlflow_writer.flatten(cfg.redacted())

        def work():
            try:
                self._run = mlflow_writer.start_run(
                    self.uri, cfg.outputs.mlflow.experiment, self.run_id, params,
                    artifact_location=art_root, tags={"rayeval.run_id": self.run_id})
            except mlflow_writer.MLflowUnavailable as e:
                self._error = str(e)
            except Exception as e:  # never let the thread die silently
                self._error = f"MLflow logging failed: {type(e).__name__}: {e}"

        self._thread = threading.Thread(target=work, name="rayeval-mlflow-start", daemon=True)
        self._thread.start()

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def abort(self, interrupted: bool = False) -> None:
        """The job failed: mark the run KILLED (``interrupted``) or FAILED."""
        self._join()
        mlflow_writer.abort_run(self._run, "KILLED" if interrupted else "FAILED")

    def finish(self, result) -> None:
        """Log the results of ``result`` (a :class:`~rayeval.engine.run.RunResult`)."""
        self._join()
        if self._error is None and self._run is not None:
            keys: dict[str, str] = {}  # sanitised key -> name, for the keys sanitising changed
            hist, tags, arts = metric_history(result, keys), run_tags(result), artifacts(result)
            with tempfile.TemporaryDirectory(prefix="rayeval-mlflow-keys-") as tmp:
                if keys:  # the mapping is an artifact of the run
                    key_file = os.path.join(tmp, "mlflow_keys.json")
                    with open(key_file, "w") as f:
                        json.dump(dict(sorted(keys.items())), f, indent=1)
                    arts.append((key_file, "mlflow"))
                    tags["rayeval.renamed_keys"] = str(len(keys))
                try:
                    result.mlflow_run_id = mlflow_writer.finish_run(self._run, tags, hist, arts)
                except mlflow_writer.MLflowUnavailable as e:
                    self._error = str(e)
        result.mlflow_error = self._error
        result.manifest["mlflow"] = {"tracking_uri": redact_uri(self.uri),
                                     "run_id": result.mlflow_run_id,
                                     "error": result.mlflow_error}


def run_tags(result) -> dict[str, str]:
    """The run's tags: rayeval run id, config hash, input fingerprint, gate verdict, blessing
    (``BLESSED`` / ``NOT_BLESSED``), versions."""
    m = result.manifest
    return {"rayeval.run_id": result.run_id, "rayeval.config_hash": m["config_hash"],
            "rayeval.input_fingerprint": m["input_fingerprint"],
            "rayeval.gates": "passed" if result.gates_passed else "failed",
            "rayeval.blessing": (getattr(result, "blessing", None) or {}).get("status", ""),
            **{f"version.{k}": v for k, v in m["versions"].items()}}


def metric_history(result, mapping: dict | None = None) -> list[tuple[str, float, int, int]]:
    """Overall metrics, champion vs challenger comparisons and drift statistics per window,
    on one step per window; ``mapping`` receives ``{key: name}`` of the keys sanitising
    changed (:func:`~rayeval.io.mlflow_writer.sanitize_key`)."""
    steps = mlflow_writer.window_steps(result.finalized.metrics, result.drift)
    hist = mlflow_writer.overall_metric_history(result.finalized.metrics, steps, mapping)
    hist += mlflow_writer.comparison_history(result.finalized.comparisons, steps)
    if result.drift is not None and not result.drift.empty:
        hist += drift_history(result.drift, steps, mapping)
    return hist


def artifacts(result) -> list[tuple[str, str]]:
    """``(local path, artifact folder)`` of every local output file of the run."""
    return [(p, os.path.dirname(rel).split("/")[0]) for rel, p in result.outputs.items()
            if not p.startswith("s3://") and os.path.exists(p)]


def drift_history(drift: pd.DataFrame, steps: dict | None = None, mapping: dict | None = None
                  ) -> list[tuple[str, float, int, int]]:
    """Overall-slice drift statistics (each column's verdict statistic) as ``(key, value,
    ts_ms, step)``; ``steps``: window start -> MLflow step shared with the metric history
    (default: drift's own windows); ``mapping``: see :func:`metric_history`."""
    from rayeval.io.mlflow_writer import sanitize_key, window_steps

    step_of = window_steps(drift) if steps is None else steps
    df = drift[(drift["slice"] == "overall")
               & np.isfinite(drift["statistic"].to_numpy(dtype=np.float64))]
    out = []
    for r in df.itertuples(index=False):
        ts = int(pd.Timestamp(r.window_end).value // 10**6) if not pd.isna(r.window_end) else 0
        key = sanitize_key(f"drift/{r.model}/{r.kind}/{r.feature}/{r.method}", mapping)
        out.append((key, float(r.statistic), ts, step_of.get(r.window_start, 0)))
    return out


