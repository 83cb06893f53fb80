"""The whole job config (:class:`JobConfig`): its sections, the checks that span sections,
and the hashes that name a run."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Optional

from pydantic import field_validator, model_validator

from rayeval.config._base import Scalar, _Frozen
from rayeval.config.gates import ComparisonsConfig, GateRule, IntervalsConfig
from rayeval.config.inputs import ColumnsConfig, InputsConfig, PolicyConfig, redact_uri
from rayeval.config.monitoring import DriftConfig, EstimationConfig
from rayeval.config.outputs import ActionsConfig, OutputsConfig, RayConfig, ScoringConfig
from rayeval.config.tasks import AnyTask, SlicesConfig, WindowsConfig


_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")


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
