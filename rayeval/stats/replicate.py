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

from rayeval.metrics.base import Batch, GroupIndex, KeyedArrays, merge_keyed


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

    State: :class:`KeyedArrays` with ``sums`` of shape (G, S, B + 1) (last column: the full
    sample, weight 1 per row).

    Args:
        view: a :class:`ReplicateView`.
        replicates: B >= 2.
    """

    view: Any
    replicates: int = 200

    def __post_init__(self) -> None:
        if self.replicates < 2:
            raise ValueError(f"Expected `replicates` >= 2, got {self.replicates}.")

    def zero(self) -> KeyedArrays:
        return KeyedArrays()

    def accumulate_many(self, batch: Batch, weights: np.ndarray,
                        groupings: list[GroupIndex]) -> list[KeyedArrays]:
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
            out.append(KeyedArrays(keys, {"sums": sums}))
        return out

    def merge(self, a: KeyedArrays, b: KeyedArrays) -> KeyedArrays:
        return merge_keyed(a, b)

    def values(self, state: KeyedArrays, groups: np.ndarray | None = None
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
