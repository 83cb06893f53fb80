"""Score registered models on Ray: a Ray Data ``map_batches`` stage in an actor pool whose
actors load every model once (``mlflow.pyfunc.load_model``) and predict each batch with each of
them, so champion and challenger are scored on the same rows.

A feature batch of ``n`` rows becomes one scored batch of ``n x models`` rows: the columns the
evaluation needs (id, timestamp, slices, labels...), the ``columns.model`` column holding each
model's reported name, and the task columns filled from the model's ``predict`` output by
``scoring.outputs``. The scored batches go straight to the reducer actors (the same partial
aggregation as a prediction log): nothing is written first.

Ray is imported only by the functions that build the stage: the preflight checks
(:func:`prepare_scoring`) run before a Ray session starts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from rayeval.config import JobConfig
from rayeval.io.models import ResolvedModel
from rayeval.io.readers import conform

#: MLflow signature type -> the Arrow type its column is cast to before ``predict``
_SIG_ARROW = {"long": pa.int64(), "integer": pa.int32(), "double": pa.float64(),
              "float": pa.float32(), "string": pa.string(), "boolean": pa.bool_(),
              "binary": pa.binary(), "datetime": pa.timestamp("ns")}


class ScoringError(RuntimeError):
    """A model failed on a batch: the message names the model URI and the batch."""


def _class_type(values) -> pa.DataType:
    return pa.int64() if all(isinstance(v, int) and not isinstance(v, bool)
                             for v in values) else pa.string()


def output_fields(cfg: JobConfig, label_types: dict[str, pa.DataType]) -> list[pa.Field]:
    """The task columns the models fill, with their types: scores float64, a regression
    prediction float64, a class prediction int64 or string (of ``classes``, else of the label
    column, else int64)."""
    out: dict[str, pa.DataType] = {}
    for t in cfg.tasks:
        for c in [t.score, *(t.scores or [])]:
            if c:
                out[c] = pa.float64()
        if t.prediction:
            if t.type == "regression":
                out[t.prediction] = pa.float64()
            elif t.classes is not None:
                out[t.prediction] = _class_type(t.classes)
            else:
                lt = label_types.get(t.label, pa.int64())
                out[t.prediction] = pa.string() if not pa.types.is_integer(lt) else pa.int64()
    return [pa.field(c, typ) for c, typ in out.items()]


def filled_columns(cfg: JobConfig) -> list[str]:
    """The columns the scorer fills: the model column and the tasks' model outputs."""
    return [cfg.columns.model] + [f.name for f in output_fields(cfg, {})]


def scored_schema(cfg: JobConfig, passthrough: pa.Schema,
                  label_types: dict[str, pa.DataType]) -> pa.Schema:
    """Schema of a scored batch: the passed-through feature columns, the model column, the
    task columns the models fill."""
    fields = [f for f in passthrough if f.name != cfg.columns.model]
    fields.append(pa.field(cfg.columns.model, pa.string()))
    fields += [f for f in output_fields(cfg, label_types) if f.name not in passthrough.names]
    return pa.schema(fields)


def _derived_predictions(cfg: JobConfig) -> list[tuple[str, str, object, object]]:
    """``(prediction column, score column, positive class, other class)`` of the binary tasks
    whose predicted class comes from ``scoring.threshold``."""
    out = []
    if cfg.scoring.threshold is None:
        return out
    for t in cfg.tasks:
        if t.type == "binary" and t.prediction and t.score:
            classes = t.classes or [0, 1]
            other = next(c for c in classes if c != t.positive_class)
            out.append((t.prediction, t.score, t.positive_class, other))
    return out


class Scorer:
    """Callable class for ``map_batches``: loads every model once per actor, scores batches.

    Args:
        models: the resolved models (``load_uri`` pinned, ``outputs`` mapping, signature).
        registry_uri: MLflow registry/tracking URI the actors load from.
        schema: the scored batch schema (:func:`scored_schema`).
        passthrough: feature columns copied to the scored batch.
        model_column, id_column, timestamp_column: names, for the batch description of errors.
        derived: binary predictions from ``scoring.threshold`` (:func:`_derived_predictions`).
        threshold: ``scoring.threshold``.
    """

    def __init__(self, models: list[ResolvedModel], registry_uri: str, schema: pa.Schema,
                 passthrough: list[str], model_column: str, id_column: str | None,
                 timestamp_column: str | None, derived: list, threshold: float | None,
                 sink: dict | None = None):
        import mlflow.pyfunc

        from rayeval.io.models import using_registry

        self.models, self.schema, self.passthrough = models, schema, passthrough
        self.model_column, self.id_column, self.ts_column = model_column, id_column, timestamp_column
        self.derived, self.threshold = derived, threshold
        self.sink = sink
        self.nonce = __import__("uuid").uuid4().hex[:12]
        self.loaded = []
        self.batches = 0
        with using_registry(registry_uri):
            for m in models:
                try:
                    self.loaded.append(mlflow.pyfunc.load_model(m.load_uri))
                except Exception as e:
                    raise ScoringError(f"Model {m.name!r} ({m.uri}, loaded as {m.load_uri}) "
                                       f"could not be loaded: {type(e).__name__}: {e}") from None

    def _describe(self, table: pa.Table) -> str:
        """``batch 3 of this actor: 1,000 rows, id 10..20, timestamp A..B``."""
        parts = [f"batch {self.batches} of this scoring actor: {table.num_rows:,} rows"]
        for label, col in (("id", self.id_column), ("timestamp", self.ts_column)):
            if col and col in table.column_names and table.num_rows:
                mm = pc.min_max(table[col])
                parts.append(f"{label} {mm['min'].as_py()} .. {mm['max'].as_py()}")
        return ", ".join(parts)

    def _features(self, m: ResolvedModel, table: pa.Table) -> pd.DataFrame:
        cols = {}
        for name, typ, _ in m.inputs or ():
            if name not in table.column_names:
                continue
            col = table[name]
            target = _SIG_ARROW.get(typ)
            if typ in ("long", "integer") and col.null_count:
                raise ValueError(f"integer input {name!r} has {col.null_count} null value(s)")
            if target is not None and col.type != target:
                col = col.cast(target)
            cols[name] = col
        return pa.table(cols).to_pandas()

    @staticmethod
    def _select(out, selector, n: int) -> np.ndarray:
        if isinstance(out, pd.DataFrame):
            col = out[selector] if isinstance(selector, str) else out.iloc[:, selector or 0]
            return col.to_numpy()
        if isinstance(out, pd.Series):
            return out.to_numpy()
        arr = np.asarray(out)
        if arr.ndim == 1:
            if selector not in (None, 0):
                raise ValueError(f"output selector {selector!r} on a 1-D output")
            return arr
        if isinstance(selector, str):
            raise ValueError(f"output selector {selector!r} on an array output (use an index)")
        return arr[:, selector or 0]

    def __call__(self, table: pa.Table) -> pa.Table:
        self.batches += 1
        n = table.num_rows
        base = conform(table.select([c for c in self.passthrough if c in table.column_names]),
                       pa.schema([self.schema.field(c) for c in self.passthrough]))
        pass_cols = base.columns
        parts = []
        for m, model in zip(self.models, self.loaded):
            cols = dict(zip(self.passthrough, pass_cols))
            cols[self.model_column] = pa.array([m.name] * n, pa.string())
            try:
                out = model.predict(self._features(m, table))
                for col, selector in m.outputs.items():
                    values = self._select(out, selector, n)
                    if len(values) != n:
                        raise ValueError(f"output {selector!r} has {len(values)} values for "
                                         f"{n} rows")
                    cols[col] = pa.array(values, from_pandas=True).cast(
                        self.schema.field(col).type)
                for pred, score, pos, other in self.derived:
                    s = cols[score].to_numpy(zero_copy_only=False)
                    typ = self.schema.field(pred).type
                    cols[pred] = pa.array(np.where(s >= self.threshold, pos, other)).cast(typ)
            except Exception as e:
                raise ScoringError(f"Model {m.name!r} ({m.uri}, version {m.version or '-'}) "
                                   f"failed on {self._describe(table)}: {type(e).__name__}: "
                                   f"{e}") from None
            parts.append(pa.table([cols.get(f.name, pa.nulls(n, f.type)) for f in self.schema],
                                  schema=self.schema))
        scored = pa.concat_tables(parts)
        if self.sink is not None:
            self._write(scored)
        return scored

    def _write(self, scored: pa.Table) -> None:
        """Stage the scored rows as ``date=YYYY-MM-DD/<run_id>~<actor>-<batch>.parquet``
        (UTC date of the timestamp; ``date=none`` without one) under the sink's folder."""
        import pyarrow.parquet as pq

        from rayeval.io.writers import output_fs

        fs, root = output_fs(self.sink["path"], self.sink.get("storage_options"))
        ts = scored[self.ts_column] if self.ts_column in scored.column_names else None
        if ts is not None and pa.types.is_timestamp(ts.type):
            day = pc.strftime(ts.cast(pa.timestamp("us", tz="UTC")), format="%Y-%m-%d")
            day = pc.fill_null(day, "none")
        else:
            day = pa.array(["none"] * scored.num_rows)
        for d in pc.unique(day).to_pylist():
            part = scored.filter(pc.equal(day, d))
            path = f"{root}/date={d}/{self.sink['run_id']}~{self.nonce}-{self.batches}.parquet"
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            with fs.open(path, "wb") as f:
                pq.write_table(part, f, compression="zstd")


def fit_scorer_cpus(actors: int, reducer_cpus: float, read_num_cpus: float) -> float:
    """CPUs per scoring actor: what the reducer actors (``reducer_cpus`` in total) and one read
    task leave of the cluster, shared by ``actors`` (at least 0.05 each; a reservation is only
    accounting). An actor pool that takes every CPU starves the read tasks (Ray issue
    #44687)."""
    import ray

    total = float(ray.cluster_resources().get("CPU", 1.0))
    room = total - reducer_cpus - read_num_cpus
    return max(0.05, min(1.0, room / actors))


def scoring_actors(cfg: JobConfig) -> int:
    """``scoring.actors``, ``auto``: one per CPU of the cluster but one (at least 1)."""
    import ray

    n = cfg.scoring.actors
    if n == "auto":
        n = max(1, int(ray.cluster_resources().get("CPU", 1.0)) - 1)
    return int(n)


def scoring_transform(cfg: JobConfig, models: list[ResolvedModel], registry_uri: str,
                      schema: pa.Schema, passthrough: list[str], reducer_cpus: float,
                      sink: dict | None = None):
    """``Dataset -> Dataset`` adding the scoring stage (``map_batches`` with
    ``ActorPoolStrategy``) to a feature dataset."""
    from ray.data import ActorPoolStrategy

    k = scoring_actors(cfg)
    num_cpus = cfg.scoring.actor_num_cpus or fit_scorer_cpus(k, reducer_cpus,
                                                             cfg.ray.read_num_cpus)
    derived = [d for d in _derived_predictions(cfg)
               if not all(d[0] in m.outputs for m in models)]
    kwargs = dict(models=models, registry_uri=registry_uri, schema=schema,
                  passthrough=passthrough, model_column=cfg.columns.model,
                  id_column=cfg.columns.id, timestamp_column=cfg.columns.timestamp,
                  derived=derived, threshold=cfg.scoring.threshold, sink=sink)

    def transform(ds):
        return ds.map_batches(Scorer, fn_constructor_kwargs=kwargs,
                              compute=ActorPoolStrategy(size=k), num_cpus=num_cpus,
                              batch_size=cfg.scoring.batch_size, batch_format="pyarrow",
                              zero_copy_batch=True)

    transform.actors, transform.num_cpus = k, num_cpus
    return transform


def scoring_error(e: BaseException) -> ScoringError | None:
    """The ScoringError a scoring actor raised, recovered from Ray's wrapped exception (by
    cause chain, else from the formatted remote traceback); ``None`` when it is none."""
    marker = "ScoringError: "
    text = str(e)
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, ScoringError):
            return ScoringError(str(e))
        e = getattr(e, "cause", None) or e.__cause__ or e.__context__
    if marker in text:
        return ScoringError(text.rsplit(marker, 1)[1].split("\n", 1)[0].strip())
    return None


class ScoringPlan:
    """What the scan needs to score ``inputs.models`` (see :func:`prepare_scoring`):
    ``models`` (resolved), ``registry_uri``, ``read_columns`` (projection of the feature
    dataset), ``passthrough`` (feature columns copied to the scored rows), ``schema`` (of a
    scored batch), ``warnings`` (dependency mismatches)."""

    def __init__(self, cfg, models, registry_uri, read_columns, passthrough, schema, warnings):
        self.cfg, self.models, self.registry_uri = cfg, models, registry_uri
        self.read_columns, self.passthrough, self.schema = read_columns, passthrough, schema
        self.warnings = warnings

    def transform(self, reducer_cpus: float, sink: dict | None = None):
        """The scoring stage; ``sink``: ``{"path", "storage_options", "run_id"}`` where the
        scorers stage the scored rows (``outputs.predictions``)."""
        return scoring_transform(self.cfg, self.models, self.registry_uri, self.schema,
                                 self.passthrough, reducer_cpus, sink)


def prepare_scoring(cfg: JobConfig, features, required: dict[str, str], registry_uri: str,
                    label_types: dict[str, pa.DataType]) -> ScoringPlan:
    """Resolve the models, check their signatures against the feature dataset (``features``,
    a :class:`~rayeval.io.readers.DatasetInfo`) and their dependencies against this
    environment, and lay out the scored batches. ``required``: the columns the evaluation
    needs (:func:`rayeval.engine.run.required_prediction_columns`) but the ones the scorer
    fills (:func:`filled_columns`).

    Raises:
        InputError: unknown model/alias/version, a signature the dataset does not fit.
        RegistryUnavailable: the registry did not answer.
    """
    import warnings as _w

    from rayeval.io.models import check_signature, dependency_warnings, resolve_models, \
        using_registry

    models = resolve_models(cfg, registry_uri)
    warnings: list[str] = []
    for m in models:
        check_signature(m, features)
    if cfg.scoring.check_dependencies:
        with using_registry(registry_uri), _w.catch_warnings():
            _w.simplefilter("ignore")
            for m in models:
                warnings += dependency_warnings(m)
    names = set(features.schema.names)
    no_sig = [m.name for m in models if m.inputs is None]
    if no_sig:
        from rayeval.io.readers import InputError

        raise InputError(f"Model(s) {no_sig} have no column signature: log them with a "
                         "signature (mlflow.models.infer_signature) so rayeval knows which "
                         "feature columns to pass")
    passthrough = [c for c in required if c in names]
    inputs = [c for m in models for c in m.input_columns if c in names]
    read_columns = list(dict.fromkeys(passthrough + inputs))
    schema = scored_schema(cfg, pa.schema([features.schema.field(c) for c in passthrough]),
                           label_types)
    return ScoringPlan(cfg, models, registry_uri, read_columns, passthrough, schema, warnings)
