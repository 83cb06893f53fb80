"""The Ray layer: read Parquet with Ray Data, partial aggregation in an actor pool, tree merge.

This module (with :mod:`rayeval.engine.session`) is the only place that imports Ray. The plan is
streaming: ``read_parquet`` over an explicit file list -> ``map_batches`` with the callable class
:class:`PartialAggregator` in an ``ActorPoolStrategy`` pool (each call turns one batch into a small
pickled partial state, never rows) -> the partials are merged in a tree of Ray tasks with fan-in
``merge_fan_in`` while the scan is still running; only the final merged state reaches the driver.
No row-level shuffle happens.

Reader settings are pinned after measurement (``../shared/NOTES.md``, ``BENCHMARKS.md``):
DataSource V1 with an explicit file list and ``override_num_blocks``; Ray never lists a prefix.
"""

from __future__ import annotations

import logging
import pickle
from typing import Iterator

import numpy as np
import pyarrow as pa
import ray
from ray.data import ActorPoolStrategy, DataContext

from rayeval.engine.plan import EvalPlan
from rayeval.io.readers import DatasetInfo, InputError, conform


class PartialAggregator:
    """Callable class for ``map_batches``: one Arrow batch -> one row holding a pickled partial."""

    def __init__(self, plan, source: str, schema: pa.Schema):
        self.plan: EvalPlan = ray.get(plan) if isinstance(plan, ray.ObjectRef) else plan
        self.source = source
        self.schema = schema

    def __call__(self, table: pa.Table) -> pa.Table:
        try:
            partial = self.plan.batch_partial(conform(table, self.schema), self.source)
        except (TypeError, ValueError) as e:  # InputError is a ValueError
            raise InputError(str(e)) from None
        return pa.table({"partial": _binary(pickle.dumps(partial, protocol=5))})


def _binary(data: bytes) -> pa.Array:
    """A one-value large_binary array over ``data``, without copying it (a partial's pickle
    is ~270 MB per 1.2M-row batch of the flights job; a copy into a fresh Arrow buffer costs
    up to ~2 s/GB)."""
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64))
    return pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(data)])


def _load(block) -> list[dict]:
    """The partials of a merged node (a dict) or of a ``map_batches`` output block (a table
    with one pickled partial per row, unpickled straight from the Arrow buffer: no bytes
    copy)."""
    if isinstance(block, dict):
        return [block]
    if "partial" not in block.column_names:  # an empty input block yields an empty table
        return []
    out = []
    for chunk in block.column("partial").chunks:
        if not len(chunk):
            continue
        width = np.int64 if pa.types.is_large_binary(chunk.type) else np.int32
        offsets = np.frombuffer(chunk.buffers()[1], dtype=width)[
            chunk.offset:chunk.offset + len(chunk) + 1].tolist()
        data = memoryview(chunk.buffers()[2])
        out += [pickle.loads(data[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]
    return out


@ray.remote(num_cpus=0.25)
def _merge(plan: EvalPlan, *items, compact: bool = False) -> dict:
    merged = plan.zero()
    for item in items:
        for p in _load(item):
            merged = plan.merge(merged, p)
    return plan.compact(merged) if compact else merged


def fit_actor_cpus(actors: int, actor_num_cpus: float, read_num_cpus: float) -> float:
    """CPUs per actor, lowered when the pool would leave no room for the read tasks and the
    merge tasks (an actor pool that takes every CPU starves the reads and hangs: Ray issue
    #44687). Keeps ``read_num_cpus`` + 0.25 CPU free."""
    total = float(ray.cluster_resources().get("CPU", 0.0))
    room = total - read_num_cpus - 0.25
    if total and actors * actor_num_cpus > room:
        if room <= 0:
            raise InputError(f"The cluster has {total:g} CPUs: too few for {actors} actor(s) "
                             f"plus read tasks")
        return room / actors
    return actor_num_cpus


def configure_data_context(target_block_mib: int) -> None:
    """Pin the measured reader settings (V1 datasource, block size) and quiet Ray Data."""
    ctx = DataContext.get_current()
    ctx.use_datasource_v2 = False  # V1: explicit file lists, honours override_num_blocks
    ctx.target_max_block_size = target_block_mib * 1024 * 1024
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    for name in ("ray.data", "ray.data._internal"):
        logging.getLogger(name).setLevel(logging.WARNING)


def read_dataset(ds_info: DatasetInfo, columns: list[str], num_blocks: int,
                 read_num_cpus: float = 0.25):
    """Ray Data dataset over the explicit file list, projected to ``columns``.

    Read tasks ask for ``read_num_cpus`` (I/O bound), so an actor pool sized to the CPUs never
    starves them (Ray issue #44687)."""
    return ray.data.read_parquet(
        ds_info.paths, filesystem=ds_info.filesystem, columns=columns, partitioning=None,
        schema=pa.schema([ds_info.schema.field(c) for c in columns]),
        override_num_blocks=num_blocks, num_cpus=read_num_cpus)


def aggregate(plan: EvalPlan, ds_info: DatasetInfo, columns: list[str], source: str, *,
              actors: int, actor_num_cpus: float, batch_size: int | None, fan_in: int,
              target_block_mib: int, read_num_cpus: float = 0.25) -> dict:
    """Scan ``ds_info`` once and return the merged partial of ``plan`` over all its rows.

    Args:
        plan: the evaluation plan (shipped once through the object store).
        ds_info: inspected dataset (explicit files, unified schema).
        columns: columns to read (projection pushed into the Parquet scan).
        source: ``current`` or ``reference``.
        actors: actor pool size (keep below the cluster's CPUs: Ray issue #44687).
        batch_size: rows per ``map_batches`` call; ``None`` picks ~4 batches per actor.
        fan_in: partials merged per tree node.

    Returns:
        The merged partial (a dict of states).
    """
    configure_data_context(target_block_mib)
    actor_num_cpus = fit_actor_cpus(actors, actor_num_cpus, read_num_cpus)
    n_rows = max(ds_info.num_rows, 1)
    if batch_size is None:
        batch_size = int(min(max(n_rows // (4 * actors), 50_000), 2_000_000))
    num_blocks = int(min(max(len(ds_info.files), 2 * actors), max(n_rows // 10_000, 1), 2000))
    plan_ref = ray.put(plan)
    schema = pa.schema([ds_info.schema.field(c) for c in columns])
    ds = read_dataset(ds_info, columns, num_blocks, read_num_cpus)
    ds = ds.map_batches(
        PartialAggregator, fn_constructor_args=(plan_ref, source, schema), batch_format="pyarrow",
        batch_size=batch_size, compute=ActorPoolStrategy(size=actors), num_cpus=actor_num_cpus,
        zero_copy_batch=True)
    try:
        return tree_merge(plan_ref, _block_refs(ds), fan_in)
    except Exception as e:  # a worker's InputError arrives wrapped in Ray's task errors
        cause = _input_error(e)
        if cause is not None:
            raise cause from None
        raise


def _input_error(e: BaseException) -> InputError | None:
    """The InputError a worker raised, recovered from Ray's wrapped exception (by cause chain,
    else from the formatted remote traceback)."""
    marker = "rayeval.io.readers.InputError: "
    text = str(e)
    if marker in text:
        return InputError(text.split(marker, 1)[1].split("\n", 1)[0].strip())
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, InputError):
            return InputError(str(e))
        inner = getattr(e, "cause", None)
        if isinstance(inner, BaseException) and inner is not e:
            e = inner
            continue
        e = e.__cause__ or e.__context__
    return None


def _block_refs(ds) -> Iterator:
    for bundle in ds.iter_internal_ref_bundles():
        for block_ref in bundle.block_refs:
            yield block_ref


def tree_merge(plan_ref, refs: Iterator, fan_in: int) -> dict:
    """Merge partials in a tree of Ray tasks as they stream in; returns the final partial."""
    levels: list[list] = [[]]
    for ref in refs:
        levels[0].append(ref)
        lvl = 0
        while len(levels[lvl]) >= fan_in:
            node = _merge.remote(plan_ref, *levels[lvl])
            levels[lvl] = []
            if len(levels) == lvl + 1:
                levels.append([])
            levels[lvl + 1].append(node)
            lvl += 1
    rest = [r for level in levels for r in level]
    while len(rest) > fan_in:
        rest = [_merge.remote(plan_ref, *rest[i:i + fan_in]) for i in range(0, len(rest), fan_in)]
    if not rest:
        return ray.get(plan_ref).zero()
    # the root is merged (and its lazy states compacted) remotely too: the driver holds one
    # copy of the final partial (numpy buffers read zero-copy from the object store), never
    # the root's inputs
    return ray.get(_merge.remote(plan_ref, *rest, compact=True))
