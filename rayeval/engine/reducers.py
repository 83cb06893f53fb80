"""The reducer actors of a job and the merge of their partials: :class:`Reducer` (turns the
batches of one streaming split into merged partial states), :class:`ReducerPool` (the job's
actors, started once, sized to leave CPUs to Ray Data's read tasks), and :func:`tree_merge`
(the actors' partials merged in balanced groups over a tree of Ray tasks or actor calls; small
ones on the driver). Passes are run by :mod:`rayeval.engine.ray_runner`."""

from __future__ import annotations

import itertools
import os
import time

import pyarrow as pa
import ray

from rayeval.config import RayConfig
from rayeval.core._jit import CACHE_ENV, node_cache_dir
from rayeval.core.contract import state_nbytes as nbytes
from rayeval.engine.plan import EvalPlan
from rayeval.io.readers import InputError, conform


@ray.remote
class Reducer:
    """A long-lived reduction actor: consumes one streaming split of a dataset, turns each batch
    into its partial states and merges them in place, and returns one partial per pass.

    Rows never leave the actor; only its merged partial (small per-slice sufficient statistics,
    lazily merged score histograms, compacted by the final merge) does. The same actors serve every
    pass of a job (drift reference profiles, reference histograms, the scan), so a job starts
    its pool once.
    """

    def warm(self) -> None:
        """Import the modules a pass needs (sent at pool start, so the actors' start-up and
        imports overlap the driver's inspect and label stages instead of the first pass)."""
        import rayeval.engine.drift_plan  # noqa: F401
        import rayeval.engine.plan  # noqa: F401
        from rayeval.core import kernels

        kernels.warm_up()

    def reduce(self, plan: EvalPlan, split, source: str, schema: pa.Schema,
               batch_size: int | None, counter=None) -> dict[str, tuple]:
        """Merged partial of ``plan`` over the batches of ``split`` (a ``DataIterator``), one
        object per state: ``{name: (ObjectRef of the state, its size in bytes)}``, so the
        final merge fetches only the states it merges (the refs live as long as the actor).

        The result also holds ``"_pass"``: this actor's rows, batches and seconds spent
        waiting for batches (``wait_s``: reading upstream), reducing them (``reduce_s``; its
        CPU seconds ``reduce_cpu_s``, all threads of the actor, so the gap to ``reduce_s`` is
        time the actor lost to other processes) and storing its partial (``store_s``). The
        partial is stored uncompacted (lazy score runs): the final merge compacts once.
        ``counter``: a :class:`RowCounter` told the rows of every batch (for progress).

        Raises:
            InputError: a batch with bad input (the message names the column and block rows).
        """
        merged = plan.zero()
        stats = {"rows": 0, "batches": 0, "wait_s": 0.0, "reduce_s": 0.0, "reduce_cpu_s": 0.0,
                 "store_s": 0.0}
        batches = iter(split.iter_batches(batch_size=batch_size, batch_format="pyarrow",
                                          prefetch_batches=1))
        while True:
            t0 = time.perf_counter()
            table = next(batches, None)
            t1 = time.perf_counter()
            c1 = time.process_time()
            stats["wait_s"] += t1 - t0
            if table is None:
                break
            try:
                partial = plan.batch_partial(conform(table, schema), source)
            except (TypeError, ValueError) as e:  # InputError is a ValueError
                raise InputError(str(e)) from None
            merged = plan.merge(merged, partial)
            stats["reduce_s"] += time.perf_counter() - t1
            stats["reduce_cpu_s"] += time.process_time() - c1
            stats["rows"] += table.num_rows
            stats["batches"] += 1
            if counter is not None:
                counter.add.remote(table.num_rows)  # fire and forget
        t0 = time.perf_counter()
        out: dict = {}
        for name in list(merged):  # store one state at a time: one copy each
            state = merged.pop(name)
            out[name] = (ray.put(state), nbytes(state))
            del state
        stats["store_s"] = time.perf_counter() - t0
        out["_pass"] = stats
        return out

    def merge(self, plan: EvalPlan, names: list[str], *sources, compact: bool = False) -> dict:
        """:func:`merge_states` on this actor: the final merge runs in the pool's processes,
        which have imported the engine already (a fresh Ray task worker first spends ~1-2 s
        importing it)."""
        return merge_states(plan, names, sources, compact)


@ray.remote(num_cpus=0)
class RowCounter:
    """Rows reduced so far in the current pass, told by the reducers batch by batch and read
    by the driver for its progress lines."""

    def __init__(self):
        self.rows = 0

    def add(self, n: int) -> None:
        self.rows += int(n)

    def reset(self) -> None:
        self.rows = 0

    def get(self) -> int:
        return self.rows


class ReducerPool:
    """The job's :class:`Reducer` actors: ``ray_cfg.actors`` of them (``auto``: one per CPU of
    the cluster), with the CPUs per actor of :func:`fit_actor_cpus`, started once per job
    (``ray_cfg``: :class:`RayConfig`).

    Use as a context manager (the actors are killed on exit) or call :meth:`close`."""

    def __init__(self, ray_cfg: RayConfig):
        n = ray_cfg.actors
        if n == "auto":
            n = max(1, int(ray.cluster_resources().get("CPU", 1.0)))
        num_cpus = fit_actor_cpus(n, ray_cfg.actor_num_cpus, ray_cfg.read_num_cpus)
        self.actor_cpus = num_cpus  #: CPUs each actor reserves
        self._warming: dict = {}  # actor -> its start-up call (awaited by restart)
        self.actors = [self._start() for _ in range(n)]
        self.num_cpus = num_cpus * n  #: CPUs the pool reserves
        #: one record per pass run on this pool (see :func:`aggregate`), for the manifest
        self.passes: list[dict] = []
        #: called with a progress line (rows done / total, rate) about every
        #: ``progress_seconds`` while a pass runs; ``None``: no progress
        self.progress = None
        self.progress_seconds = 1.0
        self._counter = None

    def __enter__(self) -> "ReducerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for actor in self.actors + ([self._counter] if self._counter is not None else []):
            ray.kill(actor)
        self.actors = []
        self._warming.clear()
        self._counter = None

    def counter(self):
        """The pool's :class:`RowCounter` (reset), or ``None`` without a progress callback."""
        if self.progress is None:
            return None
        if self._counter is None:
            self._counter = RowCounter.remote()
        self._counter.reset.remote()
        return self._counter

    def restart(self) -> None:
        """Replace every actor by a fresh one (after one died: the survivors hold partials of
        the failed pass attempt, which are dropped with them)."""
        n = len(self.actors)
        self.close()
        self.actors = [self._start() for _ in range(n)]
        self._await_start()

    def _start(self):
        """A new :class:`Reducer`; its start-up and imports run while the driver goes on."""
        actor = Reducer.options(num_cpus=self.actor_cpus,
                                runtime_env=worker_runtime_env()).remote()
        self._warming[actor] = actor.warm.remote()
        return actor

    def _await_start(self, rounds: int = 5, pause_s: float = 2.0) -> None:
        """Wait for every actor's start-up; replace an actor that dies before it is up (after
        a node died, Ray may still place a new actor on that node until its health check
        marks it dead: such an actor held no state, so losing it is not a lost pass)."""
        from ray.exceptions import RayActorError

        for _ in range(rounds):
            dead = []
            for i, actor in enumerate(self.actors):
                started = self._warming.pop(actor, None)  # None: up since an earlier round
                try:
                    if started is not None:
                        ray.get(started)
                except RayActorError:
                    dead.append(i)
            if not dead:
                return
            time.sleep(pause_s)
            for i in dead:
                self.actors[i] = self._start()


def worker_runtime_env() -> dict:
    """Runtime environment of the reducer actors: a node-local ``NUMBA_CACHE_DIR`` (the
    driver's own when set, else :func:`rayeval.core._jit.node_cache_dir`), so all workers of a
    node share one compiled-kernel cache whatever the package directory allows; merged with
    the job's runtime environment by Ray."""
    return {"env_vars": {CACHE_ENV: os.environ.get(CACHE_ENV) or node_cache_dir()}}


def fit_actor_cpus(actors: int, actor_num_cpus: float, read_num_cpus: float) -> float:
    """CPUs per reducer actor, lowered when the pool would leave no room for Ray Data's own
    tasks: ``read_parquet`` samples file footers in tasks that ask for 1 CPU (the read hangs
    while no CPU is free; measured on Ray 2.60), and an actor pool that takes every CPU
    starves the read tasks (Ray issue #44687). Keeps ``max(1, read_num_cpus + 0.25)`` CPUs
    free (on a cluster with fewer CPUs than that, the actors reserve none). A CPU reservation
    is accounting only: an actor at 0.5 CPU still uses a whole core.
    """
    total = float(ray.cluster_resources().get("CPU", 0.0))
    room = total - max(1.0, read_num_cpus + 0.25)
    if total and actors * actor_num_cpus > room:
        return max(room, 0.0) / actors
    return actor_num_cpus


def merge_states(plan: EvalPlan, names: list[str], sources, compact: bool = False) -> dict:
    """Merge the states ``names`` of ``sources`` (each a reducer's ``{name: ObjectRef}`` or a
    lower tree node's ``{name: state}``), one source at a time. ``_counters``, ``_matched`` and
    ``_ids`` travel with the group that names them. ``compact`` (the root of a group): compact the
    states and precompute their finalize-time work, in parallel with the other groups."""
    merged = plan.zero() if "_counters" in names else {"_counters": {}}
    for src in sources:
        part = {"_counters": {}} | {n: src[n] for n in names if n in src}
        remote = [n for n, v in part.items() if isinstance(v, ray.ObjectRef)]
        part.update(zip(remote, ray.get([part[n] for n in remote])))
        merged = plan.merge(merged, part)
    return plan.compact(merged, prepare=True) if compact else merged


@ray.remote(num_cpus=0.25)
def _merge(plan: EvalPlan, names: list[str], *sources, compact: bool = False) -> dict:
    """:func:`merge_states` in a Ray task (used without a reducer pool)."""
    return merge_states(plan, names, sources, compact)


def balance(sizes: dict[str, int], n_groups: int) -> list[list[str]]:
    """Names split into at most ``n_groups`` groups of near-equal total size (longest
    processing time first: each name, largest first, joins the lightest group); ``_counters``,
    ``_matched`` and ``_ids`` (whose merge adds to the counters) go to the first group."""
    first = ["_counters", "_matched", "_ids"]
    groups: list[list[str]] = [first] + [[] for _ in range(n_groups - 1)]
    load = [sizes.get("_ids", 0)] + [0] * (n_groups - 1)
    for name in sorted(set(sizes) - set(first), key=lambda k: (-sizes[k], k)):
        i = load.index(min(load))
        groups[i].append(name)
        load[i] += sizes[name]
    return [g for g in groups if g]


#: partials up to this many bytes in total are merged on the driver: a Ray task would first
#: have to import the engine in a fresh worker (~2 s measured on the flights reference profiles,
#: whose merge itself takes 6 ms)
LOCAL_MERGE_BYTES = 64 << 20


def tree_merge(plan_ref, sources: list[dict], fan_in: int, plan: EvalPlan | None = None,
               actors: list | None = None) -> dict:
    """Merge the reducers' partials (``{name: (ObjectRef, bytes)}`` each): the states are split
    into groups of near-equal size (one per CPU, at most 8) merged and compacted in parallel,
    each group over a tree of fan-in ``fan_in`` when there are more reducers than that. The
    driver joins the groups' dicts: it holds one copy of the final partial (numpy buffers read
    zero-copy from the object store), never its inputs.

    The merges run on ``actors`` (the reducer pool, round robin) when given, else in Ray tasks.
    With ``plan`` (the object behind ``plan_ref``) given and at most
    :data:`LOCAL_MERGE_BYTES` of partials, the driver merges them itself."""
    if not sources:
        return ray.get(plan_ref).zero()
    sizes: dict[str, int] = {}
    for src in sources:
        for name, (_, size) in src.items():
            sizes[name] = sizes.get(name, 0) + size
    refs = [{name: ref for name, (ref, _) in src.items()} for src in sources]
    if plan is not None and sum(sizes.values()) <= LOCAL_MERGE_BYTES:
        merged = plan.zero()
        for src in refs:
            names = list(src)
            merged = plan.merge(merged, dict(zip(names, ray.get([src[n] for n in names]))))
        return plan.compact(merged, prepare=True)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    groups = balance(sizes, max(1, min(8, cpus)))
    mergers = itertools.cycle([a.merge for a in actors] if actors else [_merge])

    def remote_merge(names, parts, compact=False):
        return next(mergers).remote(plan_ref, names, *parts, compact=compact)

    roots = []
    for names in groups:
        rest = refs
        while len(rest) > fan_in:
            rest = [remote_merge(names, rest[i:i + fan_in]) for i in range(0, len(rest), fan_in)]
        roots.append(remote_merge(names, rest, compact=True))
    out: dict = {}
    for names, part in zip(groups, ray.get(roots)):
        out |= {k: v for k, v in part.items() if k in names}
    return out
