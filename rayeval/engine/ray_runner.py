"""The Ray layer: read Parquet with Ray Data, reduce batches in long-lived actors, tree merge.

This module (with :mod:`rayeval.engine.reducers`, the actor pool and the merge, and
:mod:`rayeval.engine.session`) is the only place that imports Ray. The plan is
streaming: ``read_parquet`` over an explicit file list -> ``streaming_split`` into a pool of
:class:`Reducer` actors (started once per job and reused by every pass) -> each actor turns every
batch into small partial states (never rows) and merges them in place -> the actors' partials are
merged in a tree of Ray tasks; only the final merged state reaches the driver. No row-level
shuffle happens, and no per-batch partial crosses a process boundary.

Reader settings are pinned after measurement (``../shared/NOTES.md``, ``BENCHMARKS.md``):
DataSource V1 with an explicit file list and ``override_num_blocks``; Ray never lists a prefix.
"""

from __future__ import annotations

import logging
import re
import time
import warnings

import pyarrow as pa
import ray
from ray.data import DataContext

from rayeval.config import RayConfig
from rayeval.engine.plan import EvalPlan
# the actor pool and the merge, re-exported from here as before
from rayeval.engine.reducers import (Reducer, ReducerPool, RowCounter,  # noqa: F401
                                     balance, fit_actor_cpus, merge_states, nbytes, tree_merge,
                                     worker_runtime_env)
from rayeval.io.readers import DatasetInfo, InputError


def configure_data_context(target_block_mib: int) -> None:
    """Pin the measured reader settings (V1 datasource, block size) and quiet Ray Data."""
    ctx = DataContext.get_current()
    ctx.use_datasource_v2 = False  # V1: explicit file lists, honours override_num_blocks
    ctx.target_max_block_size = target_block_mib * 1024 * 1024
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    for name in ("ray.data", "ray.data._internal"):
        logging.getLogger(name).setLevel(logging.WARNING)


def read_tasks(n_files: int, actors: int, n_rows: int) -> int:
    """Read tasks for a pass (``override_num_blocks``): ``max(4 x actors, cluster CPUs, one
    per million rows)``, at most one per file. Each task streams its files out in blocks of
    ``target_block_mib``. Measured (BENCHMARKS.md, session 4, 2 actors on 2 CPUs): 360k rows
    in 180 files took 2.4-2.6 s a pass with 4-8 tasks against 7.0 s with 36 and 7.6 s with one
    per file; on 30M rows with 20 drift features, 8 tasks made the scan slower (91-97 s) than
    one per file (79 s), hence the term in the row count."""
    cpus = int(ray.cluster_resources().get("CPU", 1.0))
    return int(max(1, min(n_files, max(4 * actors, cpus, n_rows // 1_000_000))))


def time_filter(schema: pa.Schema, time_range: tuple | None):
    """Arrow filter expression keeping the rows of ``time_range = (column, start_ns, end_ns)``
    (``None`` bounds: open; left-closed, like the windows) and the rows with no timestamp (the
    plan counts them); ``None`` when there is nothing to push down or the column is not a
    timestamp. Naive timestamps are UTC, as everywhere in rayeval."""
    if time_range is None:
        return None
    name, start, end = time_range
    if (start is None and end is None) or name not in schema.names:
        return None
    t = schema.field(name).type
    if not pa.types.is_timestamp(t):
        return None
    import pyarrow.compute as pc

    col = pc.field(name)
    typ = pa.timestamp("ns", tz=t.tz)
    keep = None
    if start is not None:
        keep = col >= pa.scalar(int(start), typ)
    if end is not None:
        upper = col < pa.scalar(int(end), typ)
        keep = upper if keep is None else keep & upper
    return col.is_null() | keep


def read_dataset(ds_info: DatasetInfo, columns: list[str], num_blocks: int,
                 read_num_cpus: float = 0.25, time_range: tuple | None = None):
    """Ray Data dataset over the explicit file list, projected to ``columns``, with the time
    range pushed into the Parquet scan (:func:`time_filter`: row groups outside it are skipped
    by their statistics, rows outside it never leave the read task).

    Read tasks ask for ``read_num_cpus`` (I/O bound), so an actor pool sized to the CPUs never
    starves them (Ray issue #44687)."""
    # timestamps are read at ns (a lossless superset of the files' units; the reducers
    # truncate to the unified schema's us), so sub-microsecond values never fail the scan
    fields = [ds_info.schema.field(c) for c in columns]
    fields = [f.with_type(pa.timestamp("ns", tz=f.type.tz)) if pa.types.is_timestamp(f.type)
              else f for f in fields]
    schema = pa.schema(fields)
    expr = time_filter(schema, time_range)
    extra = {} if expr is None else {"filter": expr}
    with warnings.catch_warnings():  # V1's `filter` is deprecated for V2's Dataset.filter
        warnings.simplefilter("ignore", DeprecationWarning)
        return ray.data.read_parquet(
            ds_info.paths, filesystem=ds_info.filesystem, columns=columns, partitioning=None,
            schema=schema, override_num_blocks=num_blocks, num_cpus=read_num_cpus, **extra)


def aggregate(plan: EvalPlan, ds_info: DatasetInfo, columns: list[str], source: str, *,
              ray_cfg: RayConfig, pool: ReducerPool | None = None,
              time_range: tuple | None = None, transform=None,
              out_schema: pa.Schema | None = None) -> dict:
    """Scan ``ds_info`` once and return the merged partial of ``plan`` over all its rows.

    Ray Data reads the files (projection pushed into the Parquet scan) and hands the blocks to
    the reducer actors through ``streaming_split`` (blocks go to whichever actor asks next);
    each actor merges its batches in place and returns one partial; the actors' partials are
    merged (and the lazy score states compacted) in a tree of Ray tasks. No row-level shuffle.

    Args:
        plan: the evaluation plan (shipped once through the object store).
        ds_info: inspected dataset (explicit files, unified schema).
        columns: columns to read.
        source: ``current`` or ``reference``.
        ray_cfg: the job's Ray options: ``batch_size`` (rows per batch; ``None`` picks ~4
            batches per actor, 50k to 2M rows), ``merge_fan_in``, ``target_block_mib``,
            ``read_num_cpus``, and the pool size when ``pool`` is not given.
        time_range: ``(timestamp column, start_ns, end_ns)`` pushed into the read
            (:func:`time_filter`), or ``None``.
        transform: ``Dataset -> Dataset`` between the read and the reducers (the scoring
            stage of :mod:`rayeval.engine.scoring`), with ``out_schema`` the schema of the
            batches it yields.
        pool: a running :class:`ReducerPool` to reuse (one per job); else one is started and
            stopped here. The pass appends its record to ``pool.passes`` (rows, files, read
            tasks, batch size, wall seconds of the reduce and merge steps, and per actor its
            rows, batches and seconds waiting for batches, reducing (wall and CPU) and storing
            its partial).

    Returns:
        The merged partial (a dict of states).

    A reducer actor (or its node) that dies takes its partial state with it: the pass is then
    restarted from scratch with a fresh pool, at most ``ray_cfg.pass_retries`` times (the
    pass record's ``restarts`` lists why), so rows are never lost or counted twice.

    Raises:
        InputError: bad input found by a worker (re-raised unwrapped).
        WorkerLostError: an actor died in every attempt of the pass.
    """
    configure_data_context(ray_cfg.target_block_mib)
    own = pool is None
    if own:
        pool = ReducerPool(ray_cfg)
    lost: list[str] = []
    try:
        while True:
            try:
                merged, record = _one_pass(plan, ds_info, columns, source, ray_cfg, pool,
                                           time_range, transform, out_schema)
            except Exception as e:  # a worker's InputError arrives wrapped in Ray's errors
                why = actor_loss(e) if _input_error(e) is None else None
                if why is None:
                    from rayeval.engine.scoring import scoring_error

                    cause = (_input_error(e) or scoring_error(e)
                             or _read_error(e, ds_info, columns))
                    if cause is not None:
                        raise cause from None
                    raise
                lost.append(why)
                if len(lost) > ray_cfg.pass_retries:
                    raise WorkerLostError(
                        f"A reducer actor or its node died during the {source} pass over "
                        f"{ds_info.uri} {len(lost)} time(s) ({'; '.join(lost)}); the pass was "
                        f"restarted {len(lost) - 1} time(s) (ray.pass_retries="
                        f"{ray_cfg.pass_retries}) and nothing was committed") from None
                pool.restart()  # the dead actor's partial is lost whole: start the pass over
                continue
            record["restarts"] = lost
            pool.passes.append(record)
            return merged
    finally:
        if own:
            pool.close()


class WorkerLostError(RuntimeError):
    """A reducer actor (or its node) died in every attempt of a pass."""


#: Ray errors that mean a process or node holding a pass's partial state is gone
_LOSS_MARKERS = ("ActorDiedError", "ActorUnavailableError", "RayActorError", "NodeDiedError",
                 "OwnerDiedError", "ObjectLostError", "WorkerCrashedError",
                 "ObjectReconstructionFailed", "The actor died", "actor died unexpectedly")


def actor_loss(e: BaseException) -> str | None:
    """A one-line reason when ``e`` (or its cause chain) says a Ray actor, worker or node died,
    else ``None``."""
    from ray import exceptions as rex

    kinds = (rex.RayActorError, rex.NodeDiedError, rex.ObjectLostError, rex.WorkerCrashedError)
    seen = set()
    cur = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, kinds):
            return f"{type(cur).__name__}: {str(cur).strip().splitlines()[0][:200]}"
        nxt = getattr(cur, "cause", None)
        cur = nxt if isinstance(nxt, BaseException) and nxt is not cur else (
            cur.__cause__ or cur.__context__)
    text = str(e)
    for m in _LOSS_MARKERS:
        if m in text:
            return f"{m}: {text.strip().splitlines()[0][:200]}"
    return None


def _one_pass(plan: EvalPlan, ds_info: DatasetInfo, columns: list[str], source: str,
              ray_cfg: RayConfig, pool: ReducerPool, time_range: tuple | None,
              transform=None, out_schema: pa.Schema | None = None) -> tuple[dict, dict]:
    """One attempt of :func:`aggregate`'s pass: ``(merged partial, its pass record)``."""
    n_rows = max(ds_info.num_rows, 1)
    k = len(pool.actors)
    batch_size = ray_cfg.batch_size
    if batch_size is None:
        batch_size = int(min(max(n_rows // (4 * k), 50_000), 2_000_000))
    num_blocks = read_tasks(len(ds_info.files), k, n_rows)
    plan_ref = ray.put(plan)
    schema = out_schema or pa.schema([ds_info.schema.field(c) for c in columns])
    ds = read_dataset(ds_info, columns, num_blocks, ray_cfg.read_num_cpus, time_range)
    if transform is not None:
        ds = transform(ds)
    splits = ds.streaming_split(k, equal=False)
    drift = getattr(plan, "drift", None)
    name = ("scan" if source == "current"
            else f"reference {getattr(drift, 'phase', '')}".strip())
    counter = pool.counter()
    t0 = time.perf_counter()
    refs = [actor.reduce.remote(plan_ref, split, source, schema, batch_size, counter)
            for actor, split in zip(pool.actors, splits)]
    tick = None
    if counter is not None:
        def tick(final=False):
            rows = ray.get(counter.get.remote())
            pool.progress(progress_line(name, rows, ds_info.num_rows,
                                        time.perf_counter() - t0, final))
    _wait_all(refs, tick, pool.progress_seconds)
    if tick is not None:
        tick(final=True)
    parts = ray.get(refs)
    t1 = time.perf_counter()
    actors = [p.pop("_pass") for p in parts]
    merged = tree_merge(plan_ref, parts, ray_cfg.merge_fan_in, plan=plan, actors=pool.actors)
    t2 = time.perf_counter()
    record = {
        "pass": name,
        "rows": ds_info.num_rows, "files": len(ds_info.files), "columns": len(columns),
        "read_tasks": num_blocks, "batch_size": batch_size,
        "reduce_wall_s": round(t1 - t0, 3), "merge_wall_s": round(t2 - t1, 3),
        "actors": [{k: round(v, 3) if isinstance(v, float) else v
                    for k, v in a.items()} for a in actors]}
    return merged, record


def _wait_all(refs: list, tick=None, seconds: float = 1.0) -> None:
    """Wait for every ref; raise the first worker error as soon as it arrives (the other
    actors would otherwise keep reading). ``tick()`` is called every ``seconds`` meanwhile."""
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1,
                                 timeout=None if tick is None else seconds)
        if done:
            ray.get(done)
        elif tick is not None:
            tick()


def progress_line(name: str, rows: int, total: int, seconds: float, final: bool = False) -> str:
    """``scan: 1,200,000 / 6,000,000 rows (20%), 400,000 rows/s, 3s`` (``total``: rows in the
    files' footers; rows outside the scanned time range are skipped by the read, so a pass can
    end below 100%); ``final``: ``scan: done, ...``."""
    share = f" ({rows / total:.0%})" if total else ""
    rate = rows / seconds if seconds > 0 else 0.0
    return (f"{name}: {'done, ' if final else ''}{rows:,} / {total:,} rows{share}, "
            f"{rate:,.0f} rows/s, {seconds:.0f}s")


_READ_MARKERS = ("OSError", "ArrowInvalid", "ArrowIOError", "ArrowException", "thrift",
                 "Parquet", "parquet")


def _read_error(e: BaseException, ds_info: DatasetInfo, columns: list[str],
                max_check_bytes: int = 4 << 30) -> InputError | None:
    """An InputError for a Parquet file Ray Data could not decode (a corrupt data page passes
    the footer check at inspect time), naming the file when the dataset is small enough
    (``max_check_bytes``) to re-read file by file on this process; ``None`` when ``e`` is no
    read error."""
    text = str(e)
    if not any(m in text for m in _READ_MARKERS):
        return None
    lines = [ln.strip() for ln in text.splitlines()
             if re.match(r"\s*([\w.]+\.)?\w*(Error|Exception|Invalid)\b.*:", ln)]
    detail = lines[-1] if lines else text.strip().splitlines()[-1][:300]
    where = f"one of the {len(ds_info.files)} file(s) of {ds_info.uri}"
    if sum(f.size for f in ds_info.files) <= max_check_bytes:
        import pyarrow.dataset as pads

        for f in ds_info.files:
            try:
                part = pads.dataset(f.path, filesystem=ds_info.filesystem, format="parquet")
                part.to_table(columns=[c for c in columns if c in part.schema.names])
            except (OSError, pa.ArrowException) as err:
                where, detail = f"{f.path} ({f.num_rows} rows by its footer)", str(err)
                break
    return InputError(f"Cannot decode Parquet data in {where}: {detail}")


def _input_error(e: BaseException) -> InputError | None:
    """The InputError a worker raised, recovered from Ray's wrapped exception (by cause chain,
    else from the formatted remote traceback)."""
    marker = f"{InputError.__module__}.{InputError.__qualname__}: "
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
