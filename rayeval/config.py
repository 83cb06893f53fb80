"""Job configuration: pydantic models of the YAML job config, validated once, frozen.

Unknown keys are rejected and every error names the field path. Any key can be overridden from
the environment (``RAYEVAL__<SECTION>__<KEY>``, e.g. ``RAYEVAL__OUTPUTS__MLFLOW__TRACKING_URI``,
see :func:`env_overrides`) and on the command line (``--set``, which wins). Left unset, S3
endpoints and credentials fall back to the standard AWS chain (``AWS_ENDPOINT_URL_S3``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``) and the tracking URI to
``MLFLOW_TRACKING_URI``. Secrets are never written to logs, params or manifests.

Load with :func:`load_config` (YAML path plus ``key.path=value`` overrides).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Optional, Union

import yaml
from pydantic import (BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator,
                      model_validator)


Scalar = Union[int, str, bool]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageConfig(_Frozen):
    """Object-store options for ``s3://`` URIs (s3fs). Unset fields fall back to the standard
    AWS chain (environment, profile, instance metadata)."""

    endpoint_url: Optional[str] = None
    region: Optional[str] = None
    anon: bool = False
    # SecretStr: never shown by repr, str, tracebacks or model_dump (``.get_secret_value()``)
    access_key_id: Optional[SecretStr] = None
    secret_access_key: Optional[SecretStr] = None
    #: botocore retries (every request: throttling such as 503 SlowDown, 500/502/504, connection
    #: resets and timeouts), with exponential backoff and jitter; ``max_attempts`` counts the
    #: first attempt; ``adaptive`` also rate-limits the client after throttling
    max_attempts: int = Field(default=8, ge=1, le=50)
    retry_mode: Literal["standard", "adaptive"] = "standard"


class DatasetConfig(_Frozen):
    """One Parquet dataset (file, directory or hive-partitioned prefix, local or ``s3://``)."""

    uri: str
    id_column: Optional[str] = None  # labels: join key when it differs from columns.id
    timestamp_column: Optional[str] = None  # labels: label arrival time (keep latest)


class ReferenceConfig(_Frozen):
    """Where the drift reference comes from.

    kind:
        ``dataset``: a separate dataset (``uri``);
        ``time_range``: ``[start, end)`` of the predictions dataset;
        ``previous_window``: each window against the one before it.
    """

    kind: Literal["dataset", "time_range", "previous_window"] = "time_range"
    uri: Optional[str] = None
    start: Optional[datetime] = None
    end: Optional[datetime] = None

    @model_validator(mode="after")
    def _check(self):
        if self.kind == "dataset" and not self.uri:
            raise ValueError("reference.kind 'dataset' needs reference.uri")
        if self.kind == "time_range" and (self.start is None or self.end is None):
            raise ValueError("reference.kind 'time_range' needs reference.start and reference.end")
        if self.start and self.end and utc(self.start) >= utc(self.end):
            raise ValueError(f"reference.start {self.start} must be before reference.end "
                             f"{self.end}")
        return self


class ModelInput(_Frozen):
    """One registered model to score: ``uri`` is ``models:/<name>@<alias>``,
    ``models:/<name>/<version>`` or ``runs:/<run id>/<path>``; ``name`` is the model name
    rayeval reports it under (the ``columns.model`` value of its rows); ``outputs``
    overrides ``scoring.outputs`` for this model."""

    name: str
    uri: str
    outputs: Optional[dict[str, Union[int, str, None]]] = None

    @field_validator("uri")
    @classmethod
    def _uri(cls, v):
        if not _MODEL_URI.fullmatch(v):
            raise ValueError(f"model uri {v!r}: expected models:/<name>@<alias>, "
                             "models:/<name>/<version> or runs:/<run id>/<path>")
        return v


#: accepted model URIs (``models:/name@alias``, ``models:/name/version``, ``runs:/id/path``)
_MODEL_URI = re.compile(r"models:/[^/@]+(@[\w.-]+|/\d+)|runs:/[0-9a-f]+/.+")


class InputsConfig(_Frozen):
    """Input datasets: predictions (a prediction log), or ``models`` (registered models scored
    on the ``features`` dataset, which carries the id, timestamp, slice and feature columns
    and, unless ``labels`` is set, the labels); a separate labels dataset joined on the id
    (optional), and object-store options for ``s3://`` URIs."""

    predictions: Optional[DatasetConfig] = None
    models: Optional[list[ModelInput]] = None
    features: Optional[DatasetConfig] = None
    labels: Optional[DatasetConfig] = None
    storage: StorageConfig = StorageConfig()

    @model_validator(mode="after")
    def _check_kind(self):
        if (self.predictions is None) == (self.models is None):
            raise ValueError("inputs: set exactly one of `predictions` (a prediction log) and "
                             "`models` (registered models to score)")
        if self.models is not None:
            if not self.models:
                raise ValueError("inputs.models: at least one model is required")
            if self.features is None:
                raise ValueError("inputs.models needs inputs.features (the dataset to score)")
            names = [m.name for m in self.models]
            if len(set(names)) != len(names):
                raise ValueError(f"inputs.models: names must be unique, got {names}")
        elif self.features is not None:
            raise ValueError("inputs.features is the dataset `models` score; with "
                             "`predictions` leave it out")
        return self

    @property
    def source(self) -> DatasetConfig:
        """The dataset the scan reads: the predictions, or the features the models score."""
        return self.predictions if self.predictions is not None else self.features


class ColumnsConfig(_Frozen):
    """Column mapping of the data contract (DESIGN section 4)."""

    id: str = "id"
    timestamp: str = "timestamp"
    model: Optional[str] = "model"
    weight: Optional[str] = None


class TaskConfig(_Frozen):
    """One evaluation task over the joined rows.

    ``label`` and ``prediction`` name columns (the label may live in the labels dataset).
    ``score`` (binary) or ``scores`` (multiclass, one column per class, in ``classes`` order).
    A job's tasks are parsed as a discriminated union on ``type`` (:class:`BinaryTask`,
    :class:`MulticlassTask`, :class:`RegressionTask`, each with its type's rules); a
    ``TaskConfig`` built directly is checked by the rules of its ``type`` too.
    """

    name: str
    type: Literal["binary", "multiclass", "regression"]
    label: str
    prediction: Optional[str] = None
    score: Optional[str] = None
    scores: Optional[list[str]] = None
    classes: Optional[list[Scalar]] = None
    positive_class: Optional[Scalar] = None
    metrics: Optional[list[str]] = None  # None: the default set of the task type
    exact_scores: bool = False  # exact ROC/PR AUC (distinct scores) instead of bucketed
    # probability: scores in [0, 1] (every score metric); raw: margins / logits, any finite
    # value (ranking metrics only: ROC / PR AUC, top-k accuracy; no log loss, Brier, ECE)
    scores_are: Literal["probability", "raw"] = "probability"
    zero_division: Union[Literal["nan"], float] = "nan"  # 0, 1 or nan (scikit-learn's option)
    calibration_bins: int = Field(default=10, ge=1, le=1000)  # equal-width bins of ECE
    top_k: list[int] = [2]
    quantiles: list[float] = [0.5, 0.9, 0.99]

    @model_validator(mode="after")
    def _check(self):
        TASK_TYPES[self.type].check_type(self)
        if (self.positive_class is not None and self.classes is not None
                and self.positive_class not in self.classes):
            raise ValueError(f"task {self.name!r}: `positive_class` {self.positive_class!r} is "
                             f"not one of `classes` {self.classes}")
        if self.metrics is not None and len(set(self.metrics)) != len(self.metrics):
            raise ValueError(f"task {self.name!r}: `metrics` lists a name twice: "
                             f"{self.metrics}")
        zd = float(self.zero_division)
        if not (math.isnan(zd) or zd in (0.0, 1.0)):
            raise ValueError(f"task {self.name!r}: `zero_division` must be 0, 1 or nan, got "
                             f"{self.zero_division!r}")
        return self

    def check_type(self) -> None:
        """The rules of the task's ``type`` (raises ValueError)."""


class _ClassificationTask(TaskConfig):
    def check_type(self) -> None:
        if not (self.prediction or self.score or self.scores):
            raise ValueError(f"task {self.name!r}: needs `prediction`, `score` or `scores`")
        if self.scores is not None and (self.classes is None
                                        or len(self.classes) != len(self.scores)):
            raise ValueError(f"task {self.name!r}: `scores` needs `classes` of the same length")


class BinaryTask(_ClassificationTask):
    """A binary classification task (``type: binary``)."""

    type: Literal["binary"] = "binary"

    def check_type(self) -> None:
        _ClassificationTask.check_type(self)
        if self.classes is not None and len(self.classes) != 2:
            raise ValueError(f"task {self.name!r}: binary `classes` must have 2 values, "
                             f"got {self.classes}")
        if self.score and self.positive_class is None:
            raise ValueError(f"task {self.name!r}: binary `score` needs `positive_class`")


class MulticlassTask(_ClassificationTask):
    """A multiclass classification task (``type: multiclass``)."""

    type: Literal["multiclass"] = "multiclass"


class RegressionTask(TaskConfig):
    """A regression task (``type: regression``)."""

    type: Literal["regression"] = "regression"

    def check_type(self) -> None:
        if not self.prediction:
            raise ValueError(f"task {self.name!r}: regression needs `prediction`")


TASK_TYPES = {"binary": BinaryTask, "multiclass": MulticlassTask, "regression": RegressionTask}
#: a task of a job config: its ``type`` picks the model (pydantic discriminated union)
AnyTask = Annotated[Union[BinaryTask, MulticlassTask, RegressionTask],
                    Field(discriminator="type")]


class SlicesConfig(_Frozen):
    """Slices: ``overall``, one slice per value of each column in ``columns``, and ``crosses``
    (lists of >= 2 columns). Slices with fewer labelled rows than ``min_slice_size`` are left out
    of the metric tables (counted in the manifest); a slice spec with more distinct values than
    ``max_slices`` fails the run with a clear error."""

    overall: bool = True
    columns: list[str] = []
    crosses: list[list[str]] = []
    min_slice_size: int = Field(default=1, ge=1)
    max_slices: int = Field(default=10_000, ge=1)

    @field_validator("crosses")
    @classmethod
    def _crosses(cls, v):
        for c in v:
            if len(c) < 2:
                raise ValueError(f"a cross needs at least 2 columns, got {c}")
        return v


class WindowsConfig(_Frozen):
    """UTC windows, left-closed, right-open: ``size`` in none/hour/day/week (Monday)/month and
    the evaluated range ``[start, end)`` (naive datetimes taken as UTC)."""

    size: Literal["none", "hour", "day", "week", "month"] = "none"
    start: Optional[datetime] = None  # inclusive, UTC (naive taken as UTC)
    end: Optional[datetime] = None  # exclusive
    # label maturity (see rayeval.engine.maturity): a window is mature when its end plus
    # `mature_after` (a duration: 72h, 3d, 90m) is at or before `as_of` (default: the run's
    # start) and its label coverage (overall slice, per model) reaches `min_label_coverage`
    mature_after: Optional[str] = None
    min_label_coverage: Optional[float] = Field(default=None, ge=0, le=1)
    as_of: Optional[datetime] = None
    gate_immature: bool = False  # gates also on immature windows (default: mature only)

    @model_validator(mode="after")
    def _check(self):
        if self.start and self.end and utc(self.start) >= utc(self.end):
            raise ValueError(f"windows.start {self.start} must be before windows.end {self.end}")
        if self.mature_after is not None:
            parse_duration(self.mature_after)
        return self


def parse_duration(text: str):
    """``"72h"``, ``"3d"``, ``"90m"``, ``"1w"``, ``"3600s"`` (one number and a unit) as a
    ``timedelta``.

    Raises:
        ValueError: naming the text and the accepted form.
    """
    from datetime import timedelta

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(text))
    if not m:
        raise ValueError(f"windows.mature_after must be a duration such as 72h, 3d, 90m, 1w or "
                         f"3600s, got {text!r}")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
    return timedelta(**{unit: float(m.group(1))})


class EstimationConfig(_Frozen):
    """Performance estimation without labels (CBPE, :mod:`rayeval.metrics.cbpe`) for binary
    tasks with ``score`` and multiclass tasks with ``scores`` (both with ``prediction``): written
    to the ``estimated`` table per model, window and slice, next to the measured value where
    labels exist; a measured value missing its estimate by more than
    ``concept_shift_tolerance`` (and 3 sampling errors, for accuracy) is a concept-shift
    warning."""

    enabled: bool = False
    concept_shift_tolerance: float = Field(default=0.05, gt=0, le=1)


class DriftFeature(_Frozen):
    """One monitored input column: ``kind`` numeric or categorical; ``method`` and ``threshold``
    override the defaults of :func:`rayeval.drift.default_method`."""

    name: str
    kind: Literal["numeric", "categorical"]
    method: Optional[str] = None  # default: by kind and reference size
    threshold: Optional[float] = None
    edges: Optional[list[float]] = None  # numeric: fixed bin edges (widened to the reference range)

    @model_validator(mode="after")
    def _check_edges_and_method(self):
        from rayeval.drift.methods import METHODS

        if self.edges is not None:
            e = self.edges
            if self.kind != "numeric":
                raise ValueError(f"`edges` apply to numeric features, not {self.kind} "
                                 f"feature {self.name!r}")
            if len(e) < 2 or not all(math.isfinite(x) for x in e) or any(
                    b <= a for a, b in zip(e, e[1:])):
                raise ValueError(f"`edges` of feature {self.name!r} must be >= 2 finite, "
                                 f"strictly increasing numbers, got {e}")

        if self.method is None or self.method == "auto":
            return self
        m = METHODS.get(self.method)
        if m is None:
            raise ValueError(f"unknown drift method {self.method!r} for feature {self.name!r}; "
                             f"expected one of {sorted(METHODS)} or 'auto'")
        if self.kind not in m.kinds:
            raise ValueError(f"drift method {self.method!r} does not apply to {self.kind} "
                             f"feature {self.name!r} (it takes {', '.join(sorted(m.kinds))})")
        if m.default_threshold is None and self.threshold is None:
            raise ValueError(f"drift method {self.method!r} has no default threshold: set "
                             f"`threshold` for feature {self.name!r}")
        return self


class DriftConfig(_Frozen):
    """Drift and data-quality monitoring: features, predictions and labels against a reference;
    bins fixed from the reference alone (``n_bins`` quantile bins or exact values, or a
    feature's configured ``edges``; top ``top_k_categories`` + other); Jensen-Shannon in base
    ``js_base`` (the default thresholds are for base 2); optional learned thresholds (mean + 3
    std over reference chunks of ``learned_chunk``); dataset drift when the share of drifted
    features reaches ``dataset_drift_share``."""

    enabled: bool = True
    features: list[DriftFeature] = []
    predictions: bool = True  # score / predicted class drift
    labels: bool = True  # label (class mix / target) drift
    reference: ReferenceConfig = ReferenceConfig(kind="previous_window")
    n_bins: int = Field(default=100, ge=2, le=1000)
    top_k_categories: int = Field(default=20, ge=1)
    slices: bool = True  # also per slice (else overall only)
    dataset_drift_share: float = Field(default=0.5, gt=0, le=1)
    js_base: float = Field(default=2.0, gt=1)  # Jensen-Shannon log base (2: values in [0, 1])
    learned_thresholds: bool = False  # NannyML-style mean + 3 std over reference chunks
    learned_chunk: Literal["hour", "day", "week"] = "day"  # reference chunk size for them

    @model_validator(mode="after")
    def _check_learned(self):
        if self.enabled and self.learned_thresholds and self.reference.kind == "previous_window":
            raise ValueError("learned_thresholds need a fixed reference (time_range or dataset) "
                             "to cut into chunks, not previous_window")
        return self


#: ``GateRule.baseline`` value naming the last BLESSED run of the same job in the output path
LAST_PASSING_RUN = "last_passing_run"


class GateRule(_Frozen):
    """A gate, checked for every model, window and selected slice (see ``rayeval.engine.gates``).

    Kinds (exactly one):

    - threshold: ``on`` (``value``, ``ci_lower`` or ``ci_upper``) of ``metric`` must be >=
      ``min`` and/or <= ``max``;
    - change: against ``baseline`` (a model of this run, or ``last_passing_run``: the last
      BLESSED run of this job in ``outputs.path``), the metric may get worse (in its direction)
      by at most ``max_drop`` (absolute) or ``max_relative_drop`` (fraction of the baseline);
    - test against a ``baseline`` model (needs a ``comparisons`` pair): ``non_inferiority``
      (the paired interval of candidate - baseline excludes a loss larger than ``margin``) or
      ``superiority`` (significantly better at the Benjamini-Hochberg adjusted level
      ``comparisons.fdr``).

    ``slices``: ``overall`` (default, or the older ``slice``: one slice name), ``all``, or a list
    of slice names; slices with fewer labelled rows than ``min_slice_size`` are skipped
    (``overall`` never is). ``model``: only this model (default: every model but the baseline).
    ``dataset_drift_share`` gates drift (threshold only).
    """

    name: str
    metric: str
    task: Optional[str] = None
    slice: str = "overall"
    slices: Union[Literal["overall", "all"], list[str], None] = None
    min_slice_size: int = Field(default=0, ge=0)
    on: Literal["value", "ci_lower", "ci_upper"] = "value"
    min: Optional[float] = None
    max: Optional[float] = None
    model: Optional[str] = None
    baseline: Optional[str] = None
    max_drop: Optional[float] = Field(default=None, ge=0)
    max_relative_drop: Optional[float] = Field(default=None, ge=0)
    test: Optional[Literal["non_inferiority", "superiority"]] = None
    margin: float = Field(default=0.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data):
        # YAML 1.1 reads the bare key `on` as the boolean true: take it back as `on`
        if isinstance(data, dict) and "on" not in data:
            for key in (True, "true", "True"):
                if key in data:
                    data = dict(data)
                    data["on"] = data.pop(key)
                    break
        return data

    @model_validator(mode="after")
    def _check_bounds(self):
        for b in (self.min, self.max, self.max_drop, self.max_relative_drop):
            if b is not None and math.isnan(b):
                raise ValueError(f"gate {self.name!r}: a bound must be a number, not NaN")
        threshold = self.min is not None or self.max is not None
        change = self.max_drop is not None or self.max_relative_drop is not None
        kinds = [k for k, on in (("min/max", threshold), ("max_drop/max_relative_drop", change),
                                 ("test", self.test is not None)) if on]
        if not kinds:
            raise ValueError(f"gate {self.name!r}: needs `min` and/or `max`, or a `baseline` "
                             "with `max_drop`, `max_relative_drop` or `test` (a gate without a "
                             "bound would always pass)")
        if len(kinds) > 1 or (self.max_drop is not None and self.max_relative_drop is not None):
            raise ValueError(f"gate {self.name!r}: one kind of rule per gate, got "
                             f"{' and '.join(kinds)}")
        if (change or self.test) and not self.baseline:
            raise ValueError(f"gate {self.name!r}: a change or test rule needs `baseline` (a "
                             f"model, or {LAST_PASSING_RUN!r})")
        if threshold and self.baseline:
            raise ValueError(f"gate {self.name!r}: `min`/`max` are absolute bounds; against a "
                             "`baseline` use `max_drop`, `max_relative_drop` or `test`")
        if self.test and self.baseline == LAST_PASSING_RUN:
            raise ValueError(f"gate {self.name!r}: `test` compares two models of this run on "
                             f"the same rows; {LAST_PASSING_RUN!r} is another run")
        if self.test and self.on != "value":
            raise ValueError(f"gate {self.name!r}: a `test` rule reads the paired interval or "
                             "p-value itself; leave `on` at `value`")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"gate {self.name!r}: `min` {self.min} > `max` {self.max} can "
                             "never pass")
        return self

    @property
    def slice_selection(self):
        """``"overall"``, ``"all"`` or a list of slice names (``slices``, else ``slice``)."""
        if self.slices is None:
            return "overall" if self.slice == "overall" else [self.slice]
        return self.slices


class IntervalsConfig(_Frozen):
    """Confidence intervals of every metric (see ``rayeval.stats``): closed forms (Wilson,
    DeLong) where they exist, else a one-pass Poisson bootstrap with ``replicates`` replicates
    whose weights are a fixed hash of (``unit`` value, replicate): rows of one unit (default:
    the prediction id; a user or session column when its rows are correlated) share weights."""

    enabled: bool = False
    level: float = Field(default=0.95, gt=0.5, lt=1.0)
    replicates: int = Field(default=200, ge=10, le=2000)
    unit: Optional[str] = None  # default: columns.id


class ComparisonPair(_Frozen):
    """One champion vs challenger comparison: ``candidate - baseline`` on the same rows."""

    baseline: str
    candidate: str

    @model_validator(mode="after")
    def _check(self):
        if self.baseline == self.candidate:
            raise ValueError(f"comparisons: baseline and candidate are both "
                             f"{self.baseline!r}")
        return self


class ComparisonsConfig(_Frozen):
    """Paired model comparisons per task, metric, slice and window (see ``rayeval.stats``):
    rows paired by prediction id within a window, differences with paired intervals and
    p-values, Benjamini-Hochberg adjusted across the slices of a window at ``fdr``.
    ``metrics``: the metrics compared (default: every metric with replicates, overall values
    and the binary average; no per-class values)."""

    pairs: list[ComparisonPair] = []
    fdr: float = Field(default=0.05, gt=0.0, lt=1.0)
    metrics: Optional[list[str]] = None


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


class PolicyConfig(_Frozen):
    """Input policies: duplicate prediction ids (``error`` or ``keep_latest`` by timestamp),
    several labels for one id (``keep_latest`` by label timestamp), a weight column absent
    from some prediction files (``missing_weight``: ``error``, the default, fails naming the
    files; ``weight_one``: rows without a weight, in those files or null, weigh 1, with a
    warning naming the files and rows), and the data-quality
    policy ``max_invalid_share``: the largest share (0..1) of a model's rows in a window that
    a task may exclude for a reason, one number or ``{key: share}`` with keys ``all``, a reason,
    ``<task>/all`` or ``<task>/<reason>`` (see :mod:`rayeval.engine.quality`); exceeding it
    fails a ``data-quality`` gate (exit code 1)."""

    duplicate_predictions: Literal["error", "keep_latest"] = "keep_latest"
    duplicate_labels: Literal["keep_latest"] = "keep_latest"
    missing_weight: Literal["error", "weight_one"] = "error"
    max_invalid_share: Optional[Union[Annotated[float, Field(ge=0, le=1)],
                                      dict[str, Annotated[float, Field(ge=0, le=1)]]]] = None


class JobConfig(_Frozen):
    """A whole evaluation job. See ``configs/`` for examples."""

    name: str = "rayeval"
    run_id: Optional[str] = None  # default: name + config hash + window range

    @field_validator("name", "run_id")
    @classmethod
    def _file_name_safe(cls, v):
        # both end up in file names (tables, manifest, report): one path component only
        if v is not None and not _SAFE_NAME.fullmatch(v):
            raise ValueError(f"{v!r} must be letters, digits, '.', '_' or '-' (it names the "
                             "output files), not starting with '.'")
        return v
    inputs: InputsConfig
    columns: ColumnsConfig = ColumnsConfig()
    tasks: list[AnyTask]
    slices: SlicesConfig = SlicesConfig()
    windows: WindowsConfig = WindowsConfig()
    drift: DriftConfig = DriftConfig(enabled=False)
    gates: list[GateRule] = []
    intervals: IntervalsConfig = IntervalsConfig()
    estimation: EstimationConfig = EstimationConfig()
    comparisons: ComparisonsConfig = ComparisonsConfig()
    outputs: OutputsConfig = OutputsConfig()
    ray: RayConfig = RayConfig()
    policy: PolicyConfig = PolicyConfig()
    models: Optional[list[str]] = None  # restrict to these model versions
    filters: dict[str, list[Scalar]] = {}  # keep rows whose column value is in the list
    scoring: ScoringConfig = ScoringConfig()
    actions: ActionsConfig = ActionsConfig()

    @model_validator(mode="after")
    def _check(self):
        names = [t.name for t in self.tasks]
        if not names:
            raise ValueError("tasks: at least one task is required")
        if len(set(names)) != len(names):
            raise ValueError(f"tasks: names must be unique, got {names}")
        gates = [g.name for g in self.gates]
        if len(set(gates)) != len(gates):
            raise ValueError(f"gates: names must be unique, got {gates}")
        pairs = self.comparisons.pairs
        if pairs and not self.intervals.enabled:
            raise ValueError("comparisons: paired intervals need the bootstrap replicates; "
                             "set intervals.enabled: true")
        if pairs and not self.columns.model:
            raise ValueError("comparisons: need columns.model (the column naming the model)")
        if pairs and self.models is not None:
            absent = sorted({m for p in pairs for m in (p.baseline, p.candidate)}
                            - set(self.models))
            if absent:
                raise ValueError(f"comparisons: models {absent} are not in `models` "
                                 f"{self.models}: they would never be read")
        if self.inputs.models is not None:
            self._check_scoring()
        elif self.outputs.predictions or self.actions.enabled:
            raise ValueError("outputs.predictions and actions need inputs.models (registered "
                             "models to score)")
        return self

    def _check_scoring(self) -> None:
        """With ``inputs.models``: every task column a model fills is mapped in
        ``scoring.outputs`` (or the model's ``outputs``), a binary prediction may come from
        ``scoring.threshold``, no label is a model output, and drift (whose reference would
        need scoring too) is off."""
        if not self.columns.model:
            raise ValueError("inputs.models needs columns.model (the column rayeval fills with "
                             "each model's name)")
        if self.drift.enabled:
            raise ValueError("drift with inputs.models is not supported: monitor drift on the "
                             "predictions dataset written with outputs.predictions")
        labels = {t.label for t in self.tasks}
        task_cols = {c for t in self.tasks for c in [t.prediction, t.score, *(t.scores or [])]
                     if c}
        for m in self.inputs.models:
            mapping = m.outputs if m.outputs is not None else self.scoring.outputs
            extra = sorted(set(mapping) - task_cols - labels)
            if extra:
                raise ValueError(f"model {m.name!r}: outputs map {extra}, which no task reads "
                                 f"(task columns: {sorted(task_cols)})")
            bad = sorted(labels & set(mapping))
            if bad:
                raise ValueError(f"model {m.name!r}: outputs map label column(s) {bad}; labels "
                                 "come from inputs.features or inputs.labels")
            for t in self.tasks:
                need = [c for c in [t.score, *(t.scores or [])] if c]
                if t.prediction and not (t.type == "binary" and t.score
                                         and self.scoring.threshold is not None):
                    need.append(t.prediction)
                missing = [c for c in need if c not in mapping]
                if missing:
                    raise ValueError(
                        f"model {m.name!r}: task {t.name!r} column(s) {missing} are not mapped "
                        "to a model output: add them to scoring.outputs (column name, column "
                        "index or null)" + (" or set scoring.threshold" if t.type == "binary"
                                            and t.score else ""))
        if self.actions.enabled and not self.gates:
            raise ValueError("actions need gates: without a gate every model would pass")
        if self.actions.enabled and self.actions.model is None:
            regs = {m.uri.split("/")[1].split("@")[0] for m in self.inputs.models
                    if m.uri.startswith("models:/")}
            if len(regs) != 1:
                raise ValueError("actions.model: name the registered model to act on (the "
                                 f"models' URIs name {sorted(regs) or 'none'})")

    def registered_model(self) -> Optional[str]:
        """The registered model the actions move aliases of (``actions.model``, else the one
        name the ``models:/`` URIs share)."""
        if self.actions.model:
            return self.actions.model
        regs = {m.uri.split("/")[1].split("@")[0] for m in self.inputs.models or []
                if m.uri.startswith("models:/")}
        return regs.pop() if len(regs) == 1 else None

    def slice_specs(self) -> list[tuple[str, ...]]:
        """Slice specs in output order: ``()`` (overall), single columns, crosses."""
        specs: list[tuple[str, ...]] = [()] if self.slices.overall else []
        specs += [(c,) for c in self.slices.columns]
        specs += [tuple(c) for c in self.slices.crosses]
        return specs

    def redacted(self) -> dict:
        """The config as a dict with secrets replaced by ``***``: S3 keys, and the user
        information (``user:password@``) of the S3 endpoint and MLflow tracking URIs."""
        d = self.model_dump(mode="json")
        st = d["inputs"]["storage"]
        for k in ("access_key_id", "secret_access_key"):
            if st.get(k):
                st[k] = "***"
        st["endpoint_url"] = redact_uri(st.get("endpoint_url"))
        ml = d["outputs"]["mlflow"]
        ml["tracking_uri"] = redact_uri(ml.get("tracking_uri"))
        pg = d["outputs"]["prometheus"]
        pg["pushgateway_url"] = redact_uri(pg.get("pushgateway_url"))
        d["scoring"]["registry_uri"] = redact_uri(d["scoring"].get("registry_uri"))
        return d

    def config_hash(self) -> str:
        """sha256 (first 12 hex) of the redacted config, canonical JSON."""
        return _short_hash(self.redacted())

    def results_hash(self) -> str:
        """sha256 (first 12 hex) of the parts of the config that decide the results: all but
        ``ray`` (execution tuning) and ``outputs`` (where and how results are written)."""
        d = {k: v for k, v in self.redacted().items() if k not in ("ray", "outputs", "actions")}
        d["inputs"] = {k: v for k, v in d["inputs"].items()  # storage: access only
                       if k != "storage" and not (k in ("models", "features") and v is None)}
        d["scoring"] = {k: v for k, v in d["scoring"].items()  # execution tuning and access
                        if k not in ("actors", "actor_num_cpus", "batch_size", "registry_uri",
                                     "check_dependencies")}
        if self.inputs.models is None:  # the run ids of prediction-log jobs stay as they were
            d.pop("scoring")
        return _short_hash(d)

    def resolved_run_id(self) -> str:
        """``run_id`` if set, else ``<name>-<results hash>`` (a rerun of the same evaluation
        replaces its outputs, whatever its Ray tuning or output options)."""
        if self.run_id:
            return self.run_id
        return f"{self.name}-{self.results_hash()}"


def _short_hash(obj) -> str:
    """First 12 hex digits of the sha256 of ``obj`` as canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def utc(dt: datetime) -> datetime:
    """Naive datetimes are taken as UTC; aware ones are converted to UTC."""
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


class ConfigError(ValueError):
    """A job config that cannot be loaded or validated; the message names file and field."""


def _set_path(d: dict, dotted: str, value: Any) -> None:
    """Set ``value`` at ``dotted`` (``a.b.c``; an integer part indexes a list, e.g.
    ``tasks.0.label``). Missing mapping levels are created.

    Raises:
        ValueError: an index out of range, or an index into something that is no list.
    """
    keys = dotted.split(".")
    cur: Any = d
    for i, k in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(cur, list):
            if not k.lstrip("-").isdigit() or not -len(cur) <= int(k) < len(cur):
                raise ValueError(f"{'.'.join(keys[:i]) or 'the config'} is a list of "
                                 f"{len(cur)}: expected an index in [0, {len(cur)}), got {k!r}")
            if last:
                cur[int(k)] = value
            else:
                cur = cur[int(k)]
            continue
        if not isinstance(cur, dict):
            raise ValueError(f"{'.'.join(keys[:i])} is a {type(cur).__name__}, not a mapping")
        if last:
            cur[k] = value
        else:
            if not isinstance(cur.get(k), (dict, list)):
                cur[k] = {}
            cur = cur[k]


_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

#: prefix of environment variables that override config keys (``__`` separates the parts)
ENV_PREFIX = "RAYEVAL__"


def env_overrides(environ: Mapping[str, str] | None = None) -> list[tuple[str, str, Any]]:
    """``(variable, key.path, value)`` of every ``RAYEVAL__<PART>__<PART>...`` variable, sorted:
    ``RAYEVAL__INPUTS__STORAGE__SECRET_ACCESS_KEY`` sets ``inputs.storage.secret_access_key``,
    ``RAYEVAL__OUTPUTS__MLFLOW__TRACKING_URI`` the tracking URI. Values are strings (pydantic
    converts numbers and booleans), or YAML when they start with ``[`` or ``{``. They override
    the config file and are overridden by ``--set``."""
    env = os.environ if environ is None else environ
    out = []
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or len(var) == len(ENV_PREFIX):
            continue
        raw = env[var]
        key = ".".join(part.lower() for part in var[len(ENV_PREFIX):].split("__"))
        # storage, MLflow and Pushgateway values (keys, endpoints, URIs) are strings, never
        # parsed
        secret = key.startswith(("inputs.storage.", "outputs.mlflow.",
                                 "outputs.prometheus.pushgateway_url"))
        value = raw
        if not secret and raw.lstrip().startswith(("[", "{")):
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError:
                raise ConfigError(f"Environment variable {var}: a value starting with '[' or "
                                  "'{' must be a YAML list or mapping (value not shown)"
                                  ) from None
        out.append((var, key, value))
    return out


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None,
                data: dict | None = None, base_dir: str | None = None) -> JobConfig:
    """Load and validate a job config.

    Args:
        path: YAML file (relative: to the current directory, else to the base directory).
            Relative local dataset URIs, output paths and ``sqlite:///`` tracking URIs are
            relative to ``base_dir`` (else ``RAYEVAL_BASE_DIR``, else the current directory;
            inside a ``ray job submit`` working_dir copy a relative one is an error, see
            :mod:`rayeval.paths`).
        overrides: ``key.path=value`` strings; values are parsed as YAML (``windows.size=day``,
            ``ray.actors=2``, ``slices.columns=[origin]``); an integer part indexes a list
            (``tasks.0.label=target``). Applied after the ``RAYEVAL__...`` environment
            variables (:func:`env_overrides`), which are applied after the file.
        data: a dict instead of a file.
        base_dir: the base directory of relative local paths (see :mod:`rayeval.paths`).

    Returns:
        The frozen :class:`JobConfig`.

    Raises:
        ConfigError: unreadable file, bad YAML, bad override or validation error; the message
            names the file and each failing field path.
    """
    from rayeval import paths

    base = paths.base_dir(base_dir)
    src = str(path) if path is not None else "<dict>"
    if (path is not None and base and not os.path.isabs(path) and not os.path.exists(path)
            and os.path.exists(os.path.join(base, path))):
        path = os.path.join(base, path)
    if data is None:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise ConfigError(f"Cannot read config {src}: {e.strerror}") from None
        try:
            data = yaml.safe_load(text) or {}
        except (yaml.YAMLError, ValueError) as e:  # ValueError: impossible dates (2001-02-30)
            raise ConfigError(f"Config {src} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config {src}: expected a mapping at top level, got {type(data).__name__}")
    data = json.loads(json.dumps(data, default=str))  # deep copy
    from_env = env_overrides()
    for var, key, value in from_env:
        try:
            _set_path(data, key, value)
        except ValueError as e:
            raise ConfigError(f"Environment variable {var}: {e}") from None
    for ov in overrides or []:
        if "=" not in ov:
            raise ConfigError(f"Override {ov!r}: expected key.path=value")
        k, v = ov.split("=", 1)
        try:
            _set_path(data, k.strip(), yaml.safe_load(v))
        except (yaml.YAMLError, ValueError) as e:
            raise ConfigError(f"Override {ov!r}: value is not valid: {e}") from None
    try:
        paths.resolve_paths(data, base, src)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    try:
        return JobConfig.model_validate(data)
    except ValidationError as e:
        lines = [f"Config {src} is invalid ({e.error_count()} error(s)):"]
        env_of = {key: var for var, key, _ in from_env}
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "<root>"
            var = next((v for k, v in env_of.items() if loc == k or loc.startswith(k + ".")),
                       None)
            lines.append(f"  - {loc}: {err['msg']}" + (f" (set by {var})" if var else ""))
        raise ConfigError("\n".join(lines)) from None


def redact_uri(text: str | None) -> str | None:
    """``text`` (a URI, or a message holding URIs) with the user information of every
    ``scheme://user:password@`` replaced by ``***@``; ``None`` stays ``None``."""
    return text if not text else re.sub(r"(\w+://)[^/@\s]+@", r"\1***@", text)


def storage_options(cfg: StorageConfig) -> dict:
    """s3fs keyword arguments from the config, falling back to the environment / AWS chain."""
    endpoint = cfg.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get(
        "AWS_ENDPOINT_URL")
    opts: dict[str, Any] = {"anon": cfg.anon}
    if cfg.access_key_id:
        opts["key"] = cfg.access_key_id.get_secret_value()
    if cfg.secret_access_key:
        opts["secret"] = cfg.secret_access_key.get_secret_value()
    client_kwargs: dict[str, Any] = {}
    if endpoint:
        client_kwargs["endpoint_url"] = endpoint
    region = cfg.region or os.environ.get("AWS_REGION")
    if region and not endpoint:  # moto rejects region_name with a custom endpoint (NOTES.md)
        client_kwargs["region_name"] = region
    if client_kwargs:
        opts["client_kwargs"] = client_kwargs
    # retries are botocore's (the retry handler of every request, pickled to the workers with
    # these options), not a loop of ours; s3fs adds its own few rounds for SlowDown and
    # connection errors on top
    opts["config_kwargs"] = {"retries": {"total_max_attempts": cfg.max_attempts,
                                         "mode": cfg.retry_mode}}
    return opts
