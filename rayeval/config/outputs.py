"""Output and execution sections of a job config: where results go (tables, MLflow,
Prometheus), how registered models are scored, what is done in the registry afterwards, and
the Ray options."""

from __future__ import annotations

import re
from typing import Annotated, Literal, Optional, Union

from pydantic import Field, field_validator

from rayeval.config._base import _Frozen


_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class MLflowConfig(_Frozen):
    """MLflow logging: tracking URI (default ``MLFLOW_TRACKING_URI`` or sqlite in the output
    folder) and experiment name."""

    enabled: bool = True
    tracking_uri: Optional[str] = None  # default: MLFLOW_TRACKING_URI or sqlite in output dir
    experiment: str = "rayeval"


class PrometheusAlertsConfig(_Frozen):
    """Thresholds of the generated Prometheus alerting rules (``rayeval alerts``): label
    coverage below ``min_label_coverage``, no successful run for ``stale_after_hours``, and how
    long a condition must hold (``for_minutes``) before an alert fires. The drift-share alert
    uses ``drift.dataset_drift_share``."""

    min_label_coverage: float = Field(default=0.5, ge=0, le=1)
    stale_after_hours: float = Field(default=26.0, gt=0)
    for_minutes: int = Field(default=0, ge=0)


class PrometheusConfig(_Frozen):
    """Push a bounded run summary to a Prometheus Pushgateway after each committed run (see
    :mod:`rayeval.io.prometheus`): ``pushgateway_url`` (unset: no push), the ``job`` name and
    extra ``grouping`` labels of the pushed group, at most 10 ``slices`` pushed besides
    ``overall``, and the ``metrics`` pushed (default: those the gates name plus a headline few).
    """

    pushgateway_url: Optional[str] = None
    job: str = "rayeval"
    grouping: dict[str, str] = {}
    slices: list[str] = Field(default=[], max_length=10)
    metrics: Optional[list[str]] = None
    timeout_seconds: float = Field(default=10.0, gt=0)
    alerts: PrometheusAlertsConfig = PrometheusAlertsConfig()

    @field_validator("job")
    @classmethod
    def _job(cls, v):
        if not v or "/" in v:
            raise ValueError(f"outputs.prometheus.job must be a non-empty name without '/', got "
                             f"{v!r}")
        return v

    @field_validator("grouping")
    @classmethod
    def _grouping(cls, v):
        for k in v:
            if not _LABEL_NAME.fullmatch(k) or k.startswith("__") or k in ("job",):
                raise ValueError(f"outputs.prometheus.grouping: {k!r} is not a usable Prometheus "
                                 "label name ([a-zA-Z_][a-zA-Z0-9_]*, not 'job', no leading __)")
        return v


class OutputsConfig(_Frozen):
    """Output prefix (local or ``s3://``) for the Parquet tables, manifest and report; optional
    MLflow logging and Prometheus Pushgateway publishing; ``predictions``: with
    ``inputs.models``, also write the scored rows as a hive-partitioned ``predictions/``
    dataset (committed with the tables, for audit and reruns)."""

    path: str = "rayeval-output"
    mlflow: MLflowConfig = MLflowConfig()
    prometheus: PrometheusConfig = PrometheusConfig()
    report: bool = True
    predictions: bool = False
    #: seconds a run waits for another run's commit of the same run id (its commit lock)
    lock_wait_s: float = Field(default=120.0, ge=0)


#: a model output selector: a column name (DataFrame output), a column index (2-D array) or
#: ``None`` (1-D output)
OutputSelector = Union[int, str, None]


class ScoringConfig(_Frozen):
    """How ``inputs.models`` are scored (Ray Data ``map_batches`` in an actor pool; each actor
    loads every model once with ``mlflow.pyfunc.load_model``).

    ``outputs`` maps a task column (a task's ``prediction``, ``score`` or ``scores`` column) to
    the part of the model's ``predict`` output that fills it: a column name of a DataFrame
    output, a column index of a 2-D output (e.g. ``1`` of ``predict_proba``'s ``(n, 2)``
    array), or ``null`` for a 1-D output. ``threshold``: a binary task's ``prediction``
    column, when not mapped, is ``positive_class`` where its score >= threshold, else the
    other class. ``registry_uri``: where ``models:/`` URIs resolve (default
    ``MLFLOW_REGISTRY_URI``, else the tracking URI). ``actors``: scoring actors (``auto``: one
    per CPU but one); ``actor_num_cpus``: CPUs each reserves (``None``: what the reducers
    and read tasks leave, see :func:`rayeval.engine.scoring.fit_scorer_cpus`).
    ``batch_size``: rows per ``predict`` call."""

    outputs: dict[str, OutputSelector] = {}
    threshold: Optional[float] = Field(default=None, ge=0, le=1)
    registry_uri: Optional[str] = None
    actors: Union[Literal["auto"], Annotated[int, Field(ge=1)]] = "auto"
    actor_num_cpus: Optional[float] = Field(default=None, gt=0)
    batch_size: int = Field(default=65_536, ge=1)
    check_dependencies: bool = True


class ActionsConfig(_Frozen):
    """Acting on the verdict in the model registry (off by default; only after the results are
    committed). The models scored as ``models:/<model>@<challenger_alias>`` and
    ``models:/<model>@<champion_alias>`` are the challenger and the champion. ``promote``: a
    challenger whose gates all pass gets the champion alias; ``rollback``: a champion whose
    gates fail (and no promotion) moves the champion alias back to the latest earlier version
    rayeval tagged ``rayeval.validation=passed``. Every evaluated version is tagged with its
    verdict, run id and blessing path; every alias move is recorded as model tags and in the
    append-only ``actions`` table."""

    enabled: bool = False
    model: Optional[str] = None  # registered model name (default: the one the URIs name)
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"
    promote: bool = True
    rollback: bool = True


class RayConfig(_Frozen):
    """Ray options: cluster address (None: ``RAY_ADDRESS`` or a local Ray), reducer pool size
    (``auto``: one actor per CPU of the cluster when the job starts; measured faster than one
    actor on 2 CPUs, see BENCHMARKS.md) and CPUs per actor (fitted to leave 1 CPU for Ray Data's
    tasks), CPUs per read task, rows
    per batch (None: about 4 batches per actor, 50k to 2M rows), Ray Data block size, and the
    fan-in of the merge tree over the reducers' partial states."""

    address: Optional[str] = None  # None: attach to a running cluster or start a local one
    num_cpus: Optional[int] = None  # only for a local cluster
    actors: Union[Literal["auto"], Annotated[int, Field(ge=1)]] = "auto"
    actor_num_cpus: float = Field(default=1.0, gt=0)
    read_num_cpus: float = Field(default=0.25, gt=0)  # per Parquet read task (I/O bound)
    batch_size: Optional[int] = Field(default=None, ge=1)  # None: ~4 batches per actor
    target_block_mib: int = Field(default=16, ge=1)
    merge_fan_in: int = Field(default=8, ge=2)
    #: times a pass is restarted from scratch (new actors, new read) after a reducer actor or
    #: its node died; the dead actor's partial state is lost whole, so a restart never counts
    #: a row twice. 0: fail at once.
    pass_retries: int = Field(default=1, ge=0, le=5)
