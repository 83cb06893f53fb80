"""Airflow DAG: the daily rayeval evaluation, submitted to a Ray cluster, failing the task when
the Ray job fails or a gate fails.

Each daily run evaluates the latest window whose labels are mature as of the run's logical
date (``jobs/scheduled.py --now <logical date>``; Airflow 3's ``@daily`` is a cron trigger whose
logical date is the trigger time), so a backfill of past logical dates (``airflow backfill
create``) evaluates the windows those days would have, with the same run ids (a rerun replaces
its outputs).

Why not ``RaySubmitJobOperator`` (Google provider): it reports success for a Ray job that ended
FAILED. This DAG waits on the job itself with Ray's ``JobSubmissionClient`` and raises unless
the job SUCCEEDED; ``jobs/scheduled.py`` exits 1 when a gate fails (3 when results were written
but publishing failed, 2 bad config/input, 4 other), so a failed gate fails the task.

Needs ``ray[default]`` (the client, same minor version as the cluster) next to Airflow; rayeval
itself runs on the cluster. Settings (DAG params, defaults from the environment):
``ray_address`` (``RAYEVAL_RAY_ADDRESS``, the job server, e.g. ``http://ray-head:8265``),
``config`` (``RAYEVAL_CONFIG``, relative to the working dir), ``working_dir``
(``RAYEVAL_WORKING_DIR``: a local rayeval checkout uploaded with the job, or empty when the
cluster's image has it), ``label_delay_hours`` (``RAYEVAL_LABEL_DELAY_HOURS``, default 72),
``timeout_hours`` (6).
"""

from __future__ import annotations

import os
import shlex
import time
from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, Param, task

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
EXIT_MEANING = {"1": "a gate failed", "2": "bad config or input", "3": "results written but "
                "publishing failed", "4": "run failed"}


def submit_and_wait(address: str, entrypoint: str, runtime_env: dict, submission_id: str,
                    timeout_s: float, poll_s: float = 5.0, log=print) -> str:
    """Submit ``entrypoint`` to the Ray job server at ``address`` and wait for the job.

    Returns the job's logs when it SUCCEEDED. Raises ``RuntimeError`` naming the job, its final
    status and, for a non-zero exit, what the exit code means (a failed gate is exit code 1);
    ``TimeoutError`` (after stopping the job) when it runs longer than ``timeout_s``.
    """
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(address)
    client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env,
                      submission_id=submission_id)
    log(f"submitted Ray job {submission_id} to {address}: {entrypoint}")
    deadline = time.monotonic() + timeout_s
    while True:
        status = str(client.get_job_status(submission_id).value)
        if status in TERMINAL:
            break
        if time.monotonic() > deadline:
            client.stop_job(submission_id)
            raise TimeoutError(f"Ray job {submission_id} still {status} after {timeout_s:.0f}s "
                               "(stopped)")
        time.sleep(poll_s)
    logs = client.get_job_logs(submission_id)
    log(logs[-20000:])
    if status != "SUCCEEDED":
        message = client.get_job_info(submission_id).message or ""
        code = next((c for c in EXIT_MEANING if f"exit code {c}" in message), None)
        why = f" ({EXIT_MEANING[code]})" if code else ""
        raise RuntimeError(f"Ray job {submission_id} ended {status}{why}: {message}")
    return logs


def scheduled_entrypoint(config: str, now: datetime, label_delay_hours: float) -> str:
    """``python jobs/scheduled.py ...`` for the window mature at ``now`` (UTC)."""
    return shlex.join(["python", "jobs/scheduled.py", "--config", config, "--now",
                       now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                       "--label-delay-hours", f"{label_delay_hours:g}", "--quiet"])


with DAG(
    dag_id="rayeval_scheduled",
    description="Daily rayeval evaluation of the latest mature window on a Ray cluster",
    schedule="@daily",
    start_date=datetime(2000, 1, 1, tzinfo=timezone.utc),  # before any date to backfill
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 0},  # a gate verdict is not retried
    params={
        "ray_address": Param(os.environ.get("RAYEVAL_RAY_ADDRESS", "http://127.0.0.1:8265"),
                             type="string"),
        "config": Param(os.environ.get("RAYEVAL_CONFIG", "configs/flights.yaml"),
                        type="string"),
        "working_dir": Param(os.environ.get("RAYEVAL_WORKING_DIR", ""), type="string"),
        "label_delay_hours": Param(float(os.environ.get("RAYEVAL_LABEL_DELAY_HOURS", "72")),
                                   type="number", minimum=0),
        "timeout_hours": Param(6.0, type="number", exclusiveMinimum=0),
    },
    tags=["rayeval"],
) as dag:

    @task(execution_timeout=timedelta(hours=7))
    def evaluate(params=None, logical_date=None, ti=None, run_id=None) -> str:
        """Evaluate the window mature at this run's logical date; fail on a failed job."""
        runtime_env = {"env_vars": {"RAY_DEDUP_LOGS": "1"}}
        if params["working_dir"]:
            runtime_env.update(working_dir=params["working_dir"],
                               excludes=["examples/flights/data/", ".venv*/", "rayeval-output/"])
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in run_id)
        sid = f"rayeval-{safe}-try{ti.try_number}"
        submit_and_wait(params["ray_address"],
                        scheduled_entrypoint(params["config"], logical_date,
                                             float(params["label_delay_hours"])),
                        runtime_env, sid, timeout_s=float(params["timeout_hours"]) * 3600)
        return sid

    evaluate()
