"""Input sections of a job config: object-store options, the datasets (a prediction log, or
registered models scored on a features dataset, plus labels), the column mapping and the input
policies; :func:`storage_options` turns the storage section into s3fs options and
:func:`redact_uri` hides the user information of URIs."""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field, SecretStr, field_validator, model_validator

from rayeval.config._base import _Frozen


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
