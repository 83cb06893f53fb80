"""Job configuration: pydantic models of the YAML job config, validated once, frozen.

Unknown keys are rejected and every error names the field path. Any key can be overridden from
the environment (``RAYEVAL__<SECTION>__<KEY>``, e.g. ``RAYEVAL__OUTPUTS__MLFLOW__TRACKING_URI``,
see :func:`env_overrides`) and on the command line (``--set``, which wins). Left unset, S3
endpoints and credentials fall back to the standard AWS chain (``AWS_ENDPOINT_URL_S3``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``) and the tracking URI to
``MLFLOW_TRACKING_URI``. Secrets are never written to logs, params or manifests.

Load with :func:`load_config` (YAML path plus ``key.path=value`` overrides).

The sections live in one module per idea (:mod:`._base`, :mod:`.inputs`, :mod:`.tasks`,
:mod:`.monitoring`, :mod:`.gates`, :mod:`.outputs`), the whole job in :mod:`.job` and the
loader in :mod:`.loader`; this package re-exports them all, so ``from rayeval.config import X``
is the import path to use.
"""

from __future__ import annotations

from rayeval.config._base import Scalar, utc
from rayeval.config.inputs import (ColumnsConfig, DatasetConfig, InputsConfig, ModelInput,
                                   PolicyConfig, StorageConfig, redact_uri, storage_options)
from rayeval.config.tasks import (TASK_TYPES, AnyTask, BinaryTask, MulticlassTask, RegressionTask,
                                  SlicesConfig, TaskConfig, WindowsConfig, parse_duration)
from rayeval.config.monitoring import DriftConfig, DriftFeature, EstimationConfig, ReferenceConfig
from rayeval.config.gates import (ComparisonPair, ComparisonsConfig, GateRule, IntervalsConfig,
                                  LAST_PASSING_RUN)
from rayeval.config.outputs import (ActionsConfig, MLflowConfig, OutputSelector, OutputsConfig,
                                    PrometheusAlertsConfig, PrometheusConfig, RayConfig,
                                    ScoringConfig)
from rayeval.config.job import JobConfig
from rayeval.config.loader import ConfigError, ENV_PREFIX, env_overrides, load_config

__all__ = [
    "ActionsConfig", "AnyTask", "BinaryTask", "ColumnsConfig", "ComparisonPair",
    "ComparisonsConfig", "ConfigError", "DatasetConfig", "DriftConfig", "DriftFeature",
    "ENV_PREFIX", "EstimationConfig", "GateRule", "InputsConfig", "IntervalsConfig", "JobConfig",
    "LAST_PASSING_RUN", "MLflowConfig", "ModelInput", "MulticlassTask", "OutputSelector",
    "OutputsConfig", "PolicyConfig", "PrometheusAlertsConfig", "PrometheusConfig", "RayConfig",
    "ReferenceConfig", "RegressionTask", "Scalar", "ScoringConfig", "SlicesConfig", "StorageConfig",
    "TASK_TYPES", "TaskConfig", "WindowsConfig", "env_overrides", "load_config", "parse_duration",
    "redact_uri", "storage_options", "utc",
]
