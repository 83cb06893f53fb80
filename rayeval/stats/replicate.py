"""One generic replicated state: Poisson bootstrap replicates of any linear metric family.

A *replicate view* of a metric family says how each valid row adds to a small, fixed vector
of sums per group (its *slots*: confusion cells, coarse score buckets, loss sums, error
moments) and how metric values follow from those sums. :class:`ReplicatedSpec` wraps any view
and keeps, per group, the sums of all B replicates plus the full sample on the view's grid:
``sums[g, s, b] = sum_rows W[row, b] * value[row, s]`` with the (n, B + 1) weight matrix of
:func:`rayeval.stats.weights.replicate_matrix`. That is one sparse (groups x slots, rows) by
dense (rows, B + 1) product per batch and grouping, so a batch costs O(rows x B) and the state
O(groups x slots x B): never rows. States merge by addition (``merge_keyed``), like every
other additive state, so the replicates are identical for any batching, partitioning and
worker count.

The views (:mod:`rayeval.stats.views`) choose a coarse grid for what only needs the spread of
the replicates (32 score buckets instead of the point value's ~1e-4 resolution); the interval is
the percentile interval of ``theta*_b - theta*_full`` around the point value
(:func:`~rayeval.stats.intervals.shifted_percentile`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy import sparse

from rayeval.metrics.base import Batch, GroupIndex, KeyedArrays

#: runs a replicate state keeps side by side before summing them into one
MAX_RUNS = 16


@dataclass(frozen=True)
class ReplicateState:
    """Replicate sums of many groups, kept as *runs* (one per merged batch partial) and summed
    into one table only when there are more than :data:`MAX_RUNS` or when read: merging two
    states concatenates their runs, so a reducer's many merges never re-copy the whole state.

    Attributes:
        runs: tuple of :class:`KeyedArrays` with ``sums`` (g, S, B + 1) each.
    """

    runs: tuple = ()

    @property
    def table(self) -> KeyedArrays:
        """The runs summed into one :class:`KeyedArrays` (computed once)."""
        cached = self.__dict__.get("_table")
        if cached is None:
            cached = _sum_runs(self.runs)
            object.__setattr__(self, "_table", cached)
        return cached

    @property
    def keys(self) -> tuple:
        return self.table.keys

    @property
    def arrays(self):
        return self.table.arrays

    def __getstate__(self):
        return {"runs": (self.table,) if len(self.runs) > 1 else self.runs}

    def __setstate__(self, st) -> None:
        object.__setattr__(self, "runs", st["runs"])


def _sum_runs(runs: tuple) -> KeyedArrays:
    """One table from many runs: the union of their keys, one allocation, one add per run."""
    runs = [r for r in runs if r.keys]
    if not runs:
        return KeyedArrays()
    if len(runs) == 1:
        return runs[0]
    position: dict = {}
    for r in runs:
        for k in r.keys:
            position.setdefault(k, len(position))
    first = runs[0].arrays["sums"]
    out = np.zeros((len(position),) + first.shape[1:], dtype=first.dtype)
    for r in runs:
        idx = np.fromiter((position[k] for k in r.keys), dtype=np.int64, count=len(r.keys))
        out[idx] += r.arrays["sums"]
    return KeyedArrays(tuple(position), {"sums": out})


class ReplicateView(Protocol):
    """What :class:`ReplicatedSpec` needs from a metric family.

    Attributes:
        n_slots: S, the length of a group's sum vector.
        dtype: float dtype of the sums (float32 for counts, float64 for moments).
    """

    n_slots: int
    dtype: Any

    def rows(self, batch: Batch, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(valid, slots, values)``: bool (n,) rows that count, int64 (n_valid, m) slot of
        each of a valid row's m contributions, float (n_valid, m) their values (the row
        weight included)."""

    def metrics(self, sums: np.ndarray) -> dict[tuple, np.ndarray]:
        """``(metric, class_label, average) -> values`` of shape ``sums.shape[:-1]`` from sums
        of shape (..., S)."""


@dataclass(frozen=True)
class ReplicatedSpec:
    """Bootstrap replicates of one view, per group.

    State: :class:`ReplicateState`, sums of shape (G, S, B + 1) per group (last column: the
    full sample, weight 1 per row).

    Args:
        view: a :class:`ReplicateView`.
        replicates: B >= 2.
    """

    view: Any
    replicates: int = 200

    def __post_init__(self) -> None:
        if self.replicates < 2:
            raise ValueError(f"Expected `replicates` >= 2, got {self.replicates}.")

    def zero(self) -> ReplicateState:
        return ReplicateState()

    def accumulate_many(self, batch: Batch, weights: np.ndarray,
                        groupings: list[GroupIndex]) -> list[ReplicateState]:
        """One replicate state per grouping of one batch.

        Args:
            batch: the family's batch columns (as its metric spec reads them).
            weights: float (n, B + 1) from :func:`~rayeval.stats.weights.replicate_matrix`
                (row weights included there, so the view's values carry no weight again:
                the view sees the batch without its ``weight`` column).
            groupings: group indexes over the batch's n rows.

        Raises:
            ValueError: ``weights`` of the wrong shape.
        """
        if not groupings:
            return []
        n = groupings[0].n_rows
        b1 = self.replicates + 1
        if weights.shape != (n, b1):
            raise ValueError(f"Expected replicate weights of shape ({n}, {b1}), got "
                             f"{weights.shape}.")
        unweighted = {k: v for k, v in batch.items() if k != "weight"}
        valid, slots, values = self.view.rows(unweighted, n)
        s = self.view.n_slots
        rows = np.flatnonzero(valid)
        w = weights[rows].astype(self.view.dtype, copy=False)
        m = slots.shape[1] if slots.ndim == 2 else 0
        out = []
        for groups in groupings:
            codes = groups.codes[rows]
            used, inverse = np.unique(codes, return_inverse=True)
            g = used.size
            r = (inverse[:, None] * s + slots).ravel()
            c = np.repeat(np.arange(rows.size), m)
            mat = sparse.csr_matrix((values.ravel().astype(self.view.dtype), (r, c)),
                                    shape=(g * s, rows.size))
            sums = np.asarray(mat @ w).reshape(g, s, b1)
            keys = tuple(groups.keys[i] for i in used.tolist())
            out.append(ReplicateState((KeyedArrays(keys, {"sums": sums}),)))
        return out

    def merge(self, a: ReplicateState, b: ReplicateState) -> ReplicateState:
        """Both states' runs side by side (summed into one above :data:`MAX_RUNS`); inputs
        untouched."""
        runs = a.runs + b.runs
        return ReplicateState((_sum_runs(runs),) if len(runs) > MAX_RUNS else runs)

    def compact(self, state: ReplicateState) -> ReplicateState:
        """The same state as one run (what is pickled)."""
        return ReplicateState((state.table,)) if len(state.runs) > 1 else state

    def values(self, state: ReplicateState, groups: np.ndarray | None = None
               ) -> dict[tuple, np.ndarray]:
        """``(metric, class_label, average) -> float (g, B + 1)`` replicate values (last column:
        the full sample on the view's grid) of the groups at positions ``groups`` of
        ``state.keys`` (default: all, in order): only the groups that are reported need them."""
        if not state.keys:
            return {}
        sums = state.arrays["sums"]
        if groups is not None:
            sums = sums[np.asarray(groups, dtype=np.int64)]
        if not len(sums):
            return {}
        return self.view.metrics(np.moveaxis(sums, 1, 2))  # (g, B + 1, S)
