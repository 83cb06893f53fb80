"""Machinery shared by the score specs (private): the state, zero/merge/accumulate, bookkeeping.

See :mod:`rayeval.metrics.scores` for the public specs and :mod:`rayeval.metrics._score_hist`
for the histogram and its order-independence argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Mapping

import numpy as np

from rayeval.core.contract import MetricInfo, SpecBase
from rayeval.metrics import _score_hist as sh
from rayeval.metrics import _score_math as sm
from rayeval.metrics.base import (Batch, GroupIndex, Key, KeyedArrays, MetricResult,
                                  StateMismatchError, common_rows, grouped_sum, merge_keyed)
from rayeval.metrics.classification import _INT, _KIND_NAME, _STR, _class_column, _kind_of


#: metrics that read scores as probabilities: not produced for raw scores (``raw=True``)
PROBABILITY_METRICS = frozenset({"log_loss", "brier_loss", "ece"})

def auto_bucket_budget(max_bound: float) -> int:
    """Default buckets per group for a target bound: ``2 ** ceil(log2(6 / max_bound))``, clamped
    to ``[64, 2**22]`` (65,536 for 1e-4).

    Why: with ``B`` equal-mass buckets and labels independent of scores (the worst case) the
    ROC AUC bound is ``1 / (2B)`` and the PR AUC bound about ``3 ln(B) / (16 B)`` (the error
    concentrates in the top buckets of the ranking); resolution moves in factors of two, so as
    few as ``B/2`` buckets may be filled. ``6 / max_bound`` covers both with margin (measured on
    1M rows, uniform, [0.49, 0.51] and Beta(0.5, 20) scores: bounds 1.2e-5 to 7.7e-5).

    Raises:
        ValueError: if ``max_bound`` is not in (0, 1).
    """
    if not (0.0 < max_bound < 1.0):
        raise ValueError(f"Expected `max_bound` in (0, 1), got {max_bound}.")
    return int(min(max(2 ** math.ceil(math.log2(6.0 / max_bound)), 64), 2 ** 22))


# A state keeps up to MAX_RUNS histograms ("runs", each with its own group keys) side by side;
# merging concatenates run lists and compacts them into one only past MAX_RUNS (and on demand):
# one k-way merge instead of one full merge per tree level.
MAX_RUNS = 8
_FIELDS = ("layout", "sums", "runs", "cells_per_group", "budget")


@dataclass(frozen=True)
class ScoreState:
    """Grouped state of a score spec (immutable; pickles).

    Attributes:
        layout: what merging states must agree on (spec kind, classes, budget, bins...).
        sums: dense per-group sums (:class:`~rayeval.metrics.base.KeyedArrays`), keys = groups.
        runs: tuple of ``(keys, ScoreHistogram)``: partial histograms whose cell ``i * K + j``
            is group ``keys[i]``, class column j (K = ``cells_per_group``: 1 for binary, the
            class count for one-vs-rest); their sum is the state's histogram.
        cells_per_group: K above. budget: the spec's bucket budget (``None``: exact).
        ranking: ``None``, or the ROC AUC / PR AUC arrays of every cell precomputed by
            :meth:`_ScoreSpecBase.prepare` (carried in pickles, so a merge task can do the
            finalize-time ranking work in parallel; merges never keep it).
    """

    layout: tuple
    sums: KeyedArrays
    runs: tuple = ()
    cells_per_group: int = 1
    budget: int | None = None
    ranking: Mapping | None = None

    def __getstate__(self):
        # not the cached compacted histogram; the 5 fields alone when nothing is precomputed
        fields = tuple(getattr(self, f) for f in _FIELDS)
        return fields if self.ranking is None else fields + (self.ranking,)

    def __setstate__(self, state) -> None:
        for f, v in zip(_FIELDS + ("ranking",), state):
            object.__setattr__(self, f, v)
        if len(state) == len(_FIELDS):
            object.__setattr__(self, "ranking", None)

    @property
    def keys(self) -> tuple:
        """The group keys, in state order."""
        return self.sums.keys

    @property
    def hist(self) -> sh.ScoreHistogram:
        """The runs compacted into one histogram, cell ``i * K + j`` = group ``keys[i]``, class
        j (computed once, then cached)."""
        cached = self.__dict__.get("_hist")
        if cached is None:
            cached = compact_runs(self.runs, self.keys, self.cells_per_group, self.budget)
            object.__setattr__(self, "_hist", cached)
        return cached

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (histogram runs plus dense sums)."""
        return (sum(h.nbytes for _, h in self.runs)
                + sum(a.nbytes for a in self.sums.arrays.values()))


def compact_runs(runs: tuple, keys: tuple, k: int, budget: int | None) -> sh.ScoreHistogram:
    """One histogram over ``keys`` (K = ``k`` cells per group) from ``(run_keys, hist)`` runs
    (see :class:`ScoreState`); every run key must be in ``keys``."""
    if len(runs) == 1 and runs[0][0] == keys:
        return runs[0][1]
    where = {key: i for i, key in enumerate(keys)}
    inner = np.arange(k, dtype=np.int64)
    maps = [(np.fromiter((where[x] for x in rk), dtype=np.int64, count=len(rk))[:, None] * k
             + inner).ravel() for rk, _ in runs]
    return sh.combine([h for _, h in runs], maps, len(keys) * k, budget)


def _equals(values: np.ndarray, target) -> np.ndarray:
    """bool (n,): ``values == target`` elementwise (all False when the types do not compare)."""
    eq = np.asarray(values == target)
    return np.broadcast_to(eq, values.shape[:1]).astype(bool) if eq.dtype == bool else (
        np.zeros(values.shape[:1], dtype=bool))


def check_label_kind(label: np.ndarray, expected, what: str) -> None:
    """Raise when the label column's class type (integer or string) differs from the configured
    class ``expected`` (``positive_class`` or a ``classes`` entry, named by ``what``): "1" never
    silently mismatches 1 (every such label would count as a negative or an unknown class).

    Raises:
        TypeError: the label column holds the other class type, mixes types, or is neither
            integer nor string (a float column counts as integer when its values are
            integral; a column with no value passes).
    """
    kind = label.dtype.kind
    if kind in "biuf":
        got = _INT
    elif kind in "US":
        got = _STR
    else:
        got = _class_column({"label": label}, "label", label.shape[0])[2]
    want = _kind_of(expected)
    if got is not None and got != want:
        raise TypeError(f"`label` holds {_KIND_NAME[got]} classes (dtype {label.dtype}) but "
                        f"{what}={expected!r} is {_KIND_NAME[want]}; convert one so both use "
                        "the same class type.")


def _class_index(label: np.ndarray, classes) -> np.ndarray:
    """int64 (n,): position of each label in ``classes`` (compared with ``==``; the first
    match wins), -1 for a label in none of them (missing or unknown)."""
    idx = np.full(label.shape[:1], -1, dtype=np.int64)
    for j, c in enumerate(classes):  # loop over the K classes, not rows
        idx[_equals(label, c) & (idx < 0)] = j
    return idx


def _column(batch: Batch, name: str, n: int) -> np.ndarray:
    if name not in batch:
        raise KeyError(f"Expected column `{name}` in batch, got columns {sorted(batch)}.")
    col = np.asarray(batch[name])
    if col.shape[:1] != (n,):
        raise ValueError(f"Expected `{name}` with {n} rows, got shape {col.shape}.")
    return col


class _ScoreSpecBase(SpecBase):
    """Shared zero/merge/accumulate/bookkeeping of the score specs (not public)."""

    family = "scores"

    REASONS: tuple = ("missing_label", "unknown_class", "missing_score", "score_out_of_range",
                      "nonfinite_weight", "negative_weight")
    _n_classes_hist = 1  # histogram cells per group

    def _info(self, name, direction, head=0, **kw) -> MetricInfo:
        """A score metric's declaration (for :meth:`metrics`)."""
        return MetricInfo(name, direction, self.family, needs_scores=True, headline=head, **kw)

    def _budget(self) -> int | None:
        if self.exact:
            return None
        return self.bucket_budget if self.bucket_budget is not None else auto_bucket_budget(
            self.max_bound)

    def _check_options(self) -> None:
        if not isinstance(self.exact, (bool, np.bool_)):
            raise ValueError(f"Expected `exact` a bool, got {self.exact!r}.")
        if not (0.0 < self.max_bound < 1.0):
            raise ValueError(f"Expected `max_bound` in (0, 1), got {self.max_bound}.")
        if self.bucket_budget is not None and (
                not isinstance(self.bucket_budget, (int, np.integer)) or self.bucket_budget < 2):
            raise ValueError(f"Expected `bucket_budget` an int >= 2 or None, got "
                             f"{self.bucket_budget!r}.")
        nb = self.n_calibration_bins
        if not isinstance(nb, (int, np.integer)) or isinstance(nb, bool) or nb < 1:
            raise ValueError(f"Expected `n_calibration_bins` an int >= 1, got {nb!r}.")

    def zero(self) -> ScoreState:
        """The identity of :meth:`merge`: no groups."""
        return ScoreState(self._layout(), KeyedArrays(), (), self._n_classes_hist, self._budget())

    def merge(self, a: ScoreState, b: ScoreState) -> ScoreState:
        """Merge two states group by group (commutative, associative; inputs untouched).

        Raises:
            StateMismatchError: if the states were built by differently configured specs.
        """
        for s in (a, b):
            if s.layout != self._layout():
                raise StateMismatchError(
                    f"Cannot merge a state with layout {s.layout} into spec {self._layout()}.")
        if not a.keys:
            return b
        if not b.keys:
            return a
        sums = merge_keyed(a.sums, b.sums)
        runs = a.runs + b.runs
        if len(runs) > MAX_RUNS:
            runs = ((sums.keys, compact_runs(runs, sums.keys, self._n_classes_hist,
                                             self._budget())),)
        return ScoreState(self._layout(), sums, runs, self._n_classes_hist, self._budget())

    def compact(self, state: ScoreState) -> ScoreState:
        """``state`` with its histogram runs compacted into one (same values; what pickles is
        then the final histogram)."""
        if len(state.runs) <= 1:
            return state
        return ScoreState(state.layout, state.sums, ((state.keys, state.hist),),
                          state.cells_per_group, state.budget)

    def prepare(self, state: ScoreState) -> ScoreState:
        """``state`` compacted, with its ranking metrics (:meth:`_ranking`) precomputed and
        carried along: a state that will only be finalized (the engine's final merge tasks
        call this, in parallel, instead of leaving the work to the driver)."""
        state = self.compact(state)
        return ScoreState(state.layout, state.sums, state.runs, state.cells_per_group,
                          state.budget, self._ranking(state))

    def accumulate(self, state: ScoreState, batch: Batch, groups: GroupIndex) -> ScoreState:
        """``state`` merged with the statistics of one batch (vectorised; inputs untouched).

        Raises:
            KeyError: if a required column is missing. ValueError: on wrong shapes.
        """
        return self.merge(state, self.accumulate_many(batch, [groups])[0])

    def accumulate_many(self, batch: Batch, groupings: list[GroupIndex]) -> list[ScoreState]:
        """One state per grouping of the same batch, as ``[accumulate(zero(), batch, g) for g
        in groupings]`` (identical states), with the row-level work done once: validation,
        per-row loss terms, bucket keys and their sort order (each grouping then only needs a
        stable sort by group code, a radix sort for up to 65,536 cells).

        Raises:
            KeyError: if a required column is missing. ValueError: on wrong shapes or if the
            groupings do not all cover the batch's rows.
        """
        if not groupings:
            return []
        n = common_rows(groupings)
        rows = self._row_stats(batch, n)
        out = []
        for groups in groupings:
            present = np.flatnonzero(np.bincount(groups.codes, minlength=groups.n_groups))
            remap = np.zeros(groups.n_groups, dtype=np.int64)
            remap[present] = np.arange(present.size)
            codes, keys = remap[groups.codes], tuple(groups.keys[i] for i in present)
            g = len(keys)
            arrays = self._grouped_sums(rows, codes[rows.ok], g)
            arrays["invalid"] = grouped_sum(codes[~rows.ok], g, None, len(self.REASONS),
                                            rows.reason[~rows.ok])
            k = self._n_classes_hist
            cells = codes[rows.ok][rows.keep]
            if k > 1:
                cells = (cells[:, None] * k + np.arange(k)).ravel()
            if rows.__dict__.get("sorted_keys") is None:  # rows in key order, once per batch
                o = rows.key_order
                rows.sorted_keys, rows.sorted_pos, rows.sorted_neg = (
                    rows.bucket_keys[o], rows.pos_w[o], rows.neg_w[o])
            hist = sh.from_sorted(cells[rows.key_order], rows.sorted_keys, rows.sorted_pos,
                                  rows.sorted_neg, g * k, self._budget())
            out.append(ScoreState(self._layout(), KeyedArrays(keys, arrays), ((keys, hist),), k,
                                  self._budget()))
        return out

    def _reasons(self, conditions: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
        """``(reason, ok)``: first failing condition per row (-1: valid) and the valid mask."""
        reason = sm.first_reason(conditions, n)
        return reason, reason < 0

    def row_counts(self, state: ScoreState) -> dict:
        """``{key: number of valid rows}`` (float; unweighted, zero-weight rows included)."""
        n = state.sums.arrays.get("n_rows", np.zeros(0))
        return {k: float(n[i]) for i, k in enumerate(state.keys)}

    def weight_sums(self, state: ScoreState) -> dict:
        """``{key: total weight of valid rows}`` (equals :meth:`row_counts` without weights)."""
        w = state.sums.arrays.get("w", np.zeros(0))
        return {k: float(w[i]) for i, k in enumerate(state.keys)}

    def invalid_counts(self, state: ScoreState) -> dict:
        """``{key: {reason: count}}`` of excluded rows, every reason of :attr:`REASONS` listed
        (zeros included); a row failing several checks counts once, under the first reason."""
        inv = state.sums.arrays.get("invalid", np.zeros((0, len(self.REASONS)), np.int64))
        return {k: dict(zip(self.REASONS, inv[i].tolist())) for i, k in enumerate(state.keys)}

    def _ranking(self, state: ScoreState) -> dict[str, np.ndarray]:
        """ROC AUC / PR AUC with bounds and reasons of every histogram cell (vectorised)."""
        if state.ranking is not None:
            return state.ranking
        h = state.hist
        exact = np.full(h.n_cells, bool(self.exact)) | (h.shift == 0)
        return sm.ranking_metrics(h.pos, h.neg, h.indptr(), exact, h.rep >= 0)

    def _rank_metrics(self, state: ScoreState, cell: int, indptr: np.ndarray):
        lo, hi = indptr[cell], indptr[cell + 1]
        pos, neg = state.hist.pos[lo:hi], state.hist.neg[lo:hi]
        exact = self.exact or state.hist.shift[cell] == 0
        return pos, neg, exact

    def roc_curve_points(self, state: ScoreState, key: Key, class_index: int = 0):
        """ROC curve of one group from its histogram (for reports).

        Args:
            key: the group key; class_index: one-vs-rest class column (multiclass only).

        Returns:
            ``(fpr, tpr, thresholds)`` float64 arrays of length n_buckets + 1, thresholds
            decreasing (first ``inf``, then each bucket's lowest possible score, as
            ``sklearn.metrics.roc_curve``); equals scikit-learn's full curve
            (``drop_intermediate=False``) when the group is exact.

        Raises:
            KeyError: if ``key`` is not in the state.
        """
        i = state.sums.index()[key]
        cell = i * self._n_classes_hist + class_index
        indptr = state.hist.indptr()
        pos, neg, _ = self._rank_metrics(state, cell, indptr)
        fpr, tpr = sm.roc_curve_from_buckets(pos, neg)
        lo_edge, _ = sh.bucket_edges(state.hist.bucket[indptr[cell]:indptr[cell + 1]],
                                     state.hist.shift[cell])
        return fpr, tpr, np.concatenate([[np.inf], lo_edge[::-1]])


def _res(key, metric, value, direction, reason="", bound=0.0, cls=None, avg=None):
    return MetricResult(key, metric, float(value), direction, reason, float(bound), cls, avg)
