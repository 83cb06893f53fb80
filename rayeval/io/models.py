"""Registered models as an input: resolve ``models:/`` and ``runs:/`` URIs in the MLflow
registry, check each model's signature against the feature dataset before any scoring, and warn
when a model's dependencies differ from the running environment (MLflow's client; no Ray).

A ``models:/<name>@<alias>`` URI is resolved once, on the driver, to its version; the scoring
actors load ``models:/<name>/<version>``, so an alias moved while the job runs cannot mix two
versions in one evaluation, and the manifest and the actions name the version evaluated.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from typing import Iterator, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from rayeval.config import JobConfig, ModelInput, redact_uri
from rayeval.io.readers import DatasetInfo, InputError

#: MLflow column types -> the Arrow type kinds a dataset column may have to feed it (the
#: scorer casts the column to the signature's type, so MLflow's own enforcement passes)
_COMPATIBLE = {
    "long": ("int",), "integer": ("int",), "double": ("int", "float"),
    "float": ("int", "float"), "string": ("string",), "boolean": ("bool",),
    "binary": ("binary",), "datetime": ("timestamp",),
}


class RegistryUnavailable(RuntimeError):
    """The model registry (MLflow tracking server) could not be reached."""


@dataclass(frozen=True)
class ResolvedModel:
    """One ``inputs.models`` entry resolved in the registry.

    ``load_uri`` is what the scoring actors load (an alias pinned to its version);
    ``inputs`` the signature's input columns as ``(name, MLflow type, required)``
    (``None``: the model has no column signature)."""

    name: str
    uri: str
    load_uri: str
    registered_name: Optional[str]
    version: Optional[str]
    alias: Optional[str]
    run_id: Optional[str]
    outputs: dict
    inputs: Optional[tuple[tuple[str, str, bool], ...]] = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def input_columns(self) -> list[str]:
        return [c for c, _, _ in self.inputs or ()]

    def describe(self) -> dict:
        """JSON-able record for the manifest."""
        return {"name": self.name, "uri": self.uri, "load_uri": self.load_uri,
                "registered_name": self.registered_name, "version": self.version,
                "alias": self.alias, "run_id": self.run_id,
                "inputs": [list(x) for x in self.inputs or ()]}


def registry_uri(cfg: JobConfig, tracking_uri: str) -> str:
    """``scoring.registry_uri``, else ``MLFLOW_REGISTRY_URI``, else ``tracking_uri``."""
    return cfg.scoring.registry_uri or os.environ.get("MLFLOW_REGISTRY_URI") or tracking_uri


@contextlib.contextmanager
def using_registry(uri: str) -> Iterator[None]:
    """MLflow's tracking and registry URIs set to ``uri`` for the block (restored after), with
    credentials in an ``http(s)://user:password@`` URI sent as basic auth, never printed."""
    import mlflow

    from rayeval.io.mlflow_writer import _credentials_env, split_credentials

    clean, user, password = split_credentials(uri)
    old_t, old_r = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    with _credentials_env(user, password):
        mlflow.set_tracking_uri(clean)
        mlflow.set_registry_uri(clean)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(old_t)
            mlflow.set_registry_uri(old_r)


def check_registry(uri: str, timeout: float = 5.0) -> None:
    """Raise :class:`RegistryUnavailable` when an http(s) registry does not answer within
    ``timeout`` seconds (MLflow's client would retry for minutes)."""
    from rayeval.io.mlflow_writer import MLflowUnavailable, check_reachable

    try:
        check_reachable(uri, timeout)
    except MLflowUnavailable as e:
        raise RegistryUnavailable(f"Model registry unreachable: {e}") from None


_MODELS_URI = re.compile(r"models:/(?P<name>[^/@]+)(@(?P<alias>[\w.-]+)|/(?P<version>\d+))")


def resolve_model(m: ModelInput, default_outputs: dict) -> ResolvedModel:
    """Resolve one model in the current registry (see :func:`using_registry`): an alias to its
    version, a version to its run; read its signature.

    Raises:
        InputError: unknown registered model, alias, version or run, or no MLmodel there.
        RegistryUnavailable: the registry did not answer.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    outputs = dict(m.outputs if m.outputs is not None else default_outputs)
    match = _MODELS_URI.fullmatch(m.uri)
    registered = alias = version = run_id = None
    load_uri = m.uri
    try:
        if match:
            client = MlflowClient()
            registered, alias = match["name"], match["alias"]
            if alias:
                mv = client.get_model_version_by_alias(registered, alias)
            else:
                mv = client.get_model_version(registered, match["version"])
            version, run_id = str(mv.version), mv.run_id
            load_uri = f"models:/{registered}/{version}"
        else:
            run_id = m.uri.split("/")[1]
        info = mlflow.models.get_model_info(load_uri)
    except MlflowException as e:
        code = getattr(e, "error_code", "")
        text = redact_uri(str(e).splitlines()[0] if str(e) else type(e).__name__)
        if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND") or (
                "not found" in text.lower() or "does not exist" in text.lower()):
            raise InputError(f"Model {m.name!r}: {m.uri} not found in the registry: "
                             f"{text}") from None
        raise RegistryUnavailable(f"Model {m.name!r}: the registry failed on {m.uri}: "
                                  f"{text}") from None
    except OSError as e:
        raise RegistryUnavailable(f"Model {m.name!r}: cannot read {m.uri}: "
                                  f"{redact_uri(str(e))}") from None
    inputs = None
    sig = info.signature
    if sig is not None and sig.inputs is not None and sig.inputs.has_input_names() and not (
            sig.inputs.is_tensor_spec()):
        inputs = tuple((c.name, c.type.name, bool(getattr(c, "required", True)))
                       for c in sig.inputs.inputs)
    return ResolvedModel(m.name, m.uri, load_uri, registered, version, alias, run_id, outputs,
                         inputs)


def resolve_models(cfg: JobConfig, uri: str) -> list[ResolvedModel]:
    """Every ``inputs.models`` entry resolved in the registry at ``uri`` (checked reachable
    first)."""
    check_registry(uri)
    with using_registry(uri):
        return [resolve_model(m, cfg.scoring.outputs) for m in cfg.inputs.models]


def _kind(t: pa.DataType) -> str:
    """The readers' type kind, with booleans and binary apart (MLflow types them apart)."""
    from rayeval.io.readers import _kind as reader_kind

    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "binary"
    return reader_kind(t)


def null_counts(ds: DatasetInfo, columns: list[str]) -> dict[str, Optional[int]]:
    """Null values per column over every file of ``ds``, from the Parquet footers' statistics
    (``None``: some row group has no statistics for it, so the count is unknown)."""
    out: dict[str, Optional[int]] = dict.fromkeys(columns, 0)
    for f in ds.files:
        with ds.filesystem.open_input_file(f.path) as fh:
            md = pq.ParquetFile(fh).metadata
        names = [md.schema.column(i).path for i in range(md.num_columns)]
        for c in columns:
            if c not in names or out[c] is None:
                continue
            j = names.index(c)
            for g in range(md.num_row_groups):
                st = md.row_group(g).column(j).statistics
                if st is None or not st.has_null_count:
                    out[c] = None
                    break
                out[c] += st.null_count
    return out


def check_signature(model: ResolvedModel, ds: DatasetInfo) -> None:
    """Check ``model``'s signature against the feature dataset's schema before scoring: every
    required input column present, of a compatible type, and an integer input without nulls
    (MLflow cannot feed a null to an integer column).

    Raises:
        InputError: naming the model, the column, the dataset's and the signature's types.
    """
    if model.inputs is None:
        return
    names = set(ds.schema.names)
    where = f"model {model.name!r} ({model.uri})"
    missing = [c for c, _, req in model.inputs if req and c not in names]
    if missing:
        raise InputError(f"Signature of {where} needs column(s) {missing} that the feature "
                         f"dataset {ds.uri} lacks; it has {sorted(names)}")
    ints = []
    for col, typ, _ in model.inputs:
        if col not in names:
            continue
        t = ds.schema.field(col).type
        ok = _COMPATIBLE.get(typ)
        if ok is not None and _kind(t) not in ok:
            raise InputError(f"Signature of {where}: column {col!r} is {t} in {ds.uri}, "
                             f"incompatible with the model's {typ} input")
        if typ in ("long", "integer"):
            ints.append(col)
    for col, n in null_counts(ds, ints).items():
        if n:
            raise InputError(f"Signature of {where}: integer column {col!r} "
                             f"({ds.schema.field(col).type}, the model's "
                             f"{dict((c, t) for c, t, _ in model.inputs)[col]} input) has {n:,} "
                             f"null value(s) in {ds.uri}; MLflow cannot feed a null to an "
                             "integer input")


def dependency_warnings(model: ResolvedModel) -> list[str]:
    """One warning naming the packages whose version in ``model``'s requirements
    (``mlflow.pyfunc.get_model_dependencies``) differs from the running environment (or
    that are not installed); empty when they all match or the model lists none."""
    from importlib import metadata

    import mlflow
    from mlflow.exceptions import MlflowException
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        path = mlflow.pyfunc.get_model_dependencies(model.load_uri)
        with open(path) as f:
            lines = f.read().splitlines()
    except (MlflowException, OSError) as e:
        return [f"model {model.name!r} ({model.uri}): dependencies not readable: {e}"]
    diffs = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        try:
            have = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            diffs.append(f"{req} (not installed)")
            continue
        if req.specifier and not req.specifier.contains(have, prereleases=True):
            diffs.append(f"{req} (installed {have})")
    if not diffs:
        return []
    return [f"model {model.name!r} ({model.uri}) was logged with dependencies that differ from "
            f"this environment: {', '.join(diffs)}"]
