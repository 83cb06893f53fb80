"""Pass 1: mergeable reference profiles that fix the drift bin layouts.

:class:`NumericProfileSpec` keeps, per group, a quantile histogram on a fixed relative grid
(:class:`~rayeval.metrics.quantiles.GroupedLogHistogram`, DDSketch-style), exact
count/min/max/mean/M2 (Chan et al. 1979 parallel moments) and the set of distinct values while it stays small (so small or discrete
references get the *exact* layout). :class:`CategoricalProfileSpec` keeps weighted category
frequencies in a Misra-Gries summary (mergeable, Agarwal et al. 2012: exact while the number of
categories is at most ``capacity``, otherwise every count is under-estimated by at most the
recorded ``offset``).

Both follow the grouped-state contract of :mod:`rayeval.metrics.base` (``zero / accumulate /
merge / finalize``) and add ``binning(state, key)``; merging never mutates an input. The batch
column is ``value`` (n,); the numeric profile ignores weights (any edges are valid; weights enter the histograms), the
categorical one ranks categories by ``weight`` when given.

Both layouts are deterministic: the same reference gives the same bin edges whatever the split
across workers, the merge order or the run (a KLL sketch, used before, compacts at random). The
price of the fixed grid: a quantile edge is only resolved to ``2**-bits`` of the value's
magnitude (0.024 % at 12 bits), so a feature whose spread is tiny next to its magnitude (epoch
seconds over a few days, say) gets fewer than ``n_bins`` bins; give it ``edges`` or centre it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from rayeval.core.contract import SpecBase
from rayeval.drift._columns import (_groups_of, _numeric_column, _weights,  # noqa: F401
                                    cell_sums, present_groups)
from rayeval.drift.binning import CategoricalBinning, NumericBinning, factorize
from rayeval.metrics.base import (
    GroupIndex, KeyedArrays, MetricResult, StateMismatchError, merge_keyed, union_keys,
)
from rayeval.metrics._math import combine_moments
from rayeval.metrics.quantiles import GroupedLogHistogram


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class NumericProfileState:
    """Grouped numeric profile.

    Attributes:
        scalars: :class:`KeyedArrays` with float64/int64 (G,) arrays ``count`` (finite values),
            ``missing`` (NaN), ``nonfinite`` (+-inf); merged by addition.
        lo, hi: float64 (G,) min/max of finite values (``+inf``/``-inf`` when none).
        mean, m2: float64 (G,) mean and sum of squared deviations of finite values.
        hist: histogram of the finite values per group (group ``i`` = ``keys[i]``).
        distinct: tuple (G,) of sorted float64 distinct finite values, or ``None`` once more
            than the spec's ``exact_max_distinct`` were seen.
    """

    bits: int
    cap: int
    scalars: KeyedArrays
    lo: np.ndarray
    hi: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    hist: GroupedLogHistogram
    distinct: tuple

    @property
    def keys(self) -> tuple:
        return self.scalars.keys


@dataclass(frozen=True)
class NumericProfileSpec(SpecBase):
    """Reference profile of a numeric feature; ``binning`` fixes its drift bins.

    Args:
        n_bins: number of regular quantile bins when the reference is not small (>= 2).
        exact_max_distinct: use the exact value-per-bin layout when the reference has at most this
            many distinct values (statistics then equal their raw-sample versions).
        bits: resolution of the quantile grid in [1, 12] (bucket width <= ``2**-bits`` of the
            value's magnitude).

    Raises:
        ValueError: on out-of-range arguments.
    """

    n_bins: int = 100
    exact_max_distinct: int = 1000
    bits: int = 12

    family = "drift_profile"
    INPUTS = {"value": "numeric_value"}

    def __post_init__(self) -> None:
        if self.n_bins < 2:
            raise ValueError(f"Expected `n_bins` >= 2, got {self.n_bins}.")
        if self.exact_max_distinct < 0:
            raise ValueError(f"Expected `exact_max_distinct` >= 0, got {self.exact_max_distinct}.")
        if not 1 <= self.bits <= 12:
            raise ValueError(f"Expected `bits` in [1, 12], got {self.bits}.")

    def zero(self) -> NumericProfileState:
        e = np.zeros(0)
        return NumericProfileState(self.bits, self.exact_max_distinct, KeyedArrays(),
                                   e, e, e, e, GroupedLogHistogram(self.bits), ())

    def accumulate(self, state: NumericProfileState, batch: Mapping[str, np.ndarray],
                   groups: GroupIndex) -> NumericProfileState:
        """Profile of ``batch["value"]`` (float64-convertible (n,); NaN = missing) per group.

        Raises:
            ValueError: if ``value`` is missing, not numeric or of the wrong length.
        """
        x = _numeric_column(batch, groups.n_rows)
        groups, _ = present_groups(groups)
        g, codes = groups.n_groups, groups.codes
        fin = np.isfinite(x)
        nan = np.isnan(x)
        count = np.bincount(codes[fin], minlength=g)
        scal = KeyedArrays(groups.keys, {
            "count": count.astype(np.int64),
            "missing": np.bincount(codes[nan], minlength=g).astype(np.int64),
            "nonfinite": np.bincount(codes[~fin & ~nan], minlength=g).astype(np.int64),
        })
        xf, cf = (x, codes) if fin.all() else (x[fin], codes[fin])
        lo, hi = np.full(g, np.inf), np.full(g, -np.inf)
        mean = np.divide(np.bincount(cf, xf, g), count, out=np.zeros(g), where=count > 0)
        m2 = np.bincount(cf, (xf - mean[cf]) ** 2, g)
        distinct = []
        groups_rows = [slice(None)] if g == 1 else _groups_of(cf, g)
        for i, rows in enumerate(groups_rows):  # a loop over groups, not rows
            vals = xf[rows]
            if vals.size:
                lo[i], hi[i] = vals.min(), vals.max()
            distinct.append(_distinct(vals, self.exact_max_distinct))
        hist = GroupedLogHistogram.from_values(cf, xf, None, self.bits)
        part = NumericProfileState(self.bits, self.exact_max_distinct, scal, lo, hi, mean, m2,
                                   hist, tuple(distinct))
        return self.merge(state, part)

    def merge(self, a: NumericProfileState, b: NumericProfileState) -> NumericProfileState:
        """Combine two profiles group by group; inputs are not mutated.

        Raises:
            StateMismatchError: if the states were built with different ``bits`` or cap.
        """
        if (a.bits, a.cap) != (b.bits, b.cap):
            raise StateMismatchError(f"Cannot merge numeric profiles with (bits, cap) "
                                     f"{(a.bits, a.cap)} and {(b.bits, b.cap)}.")
        if not a.keys:
            return b
        if not b.keys:
            return a
        keys, pa, pb = union_keys(a.keys, b.keys)
        g = len(keys)
        scal = merge_keyed(a.scalars, b.scalars)
        na, nb = np.zeros(g), np.zeros(g)
        na[pa], nb[pb] = a.scalars.arrays["count"], b.scalars.arrays["count"]
        ma, mb, sa, sb = (np.zeros(g) for _ in range(4))
        ma[pa], mb[pb], sa[pa], sb[pb] = a.mean, b.mean, a.m2, b.m2
        _, mean, m2 = combine_moments(na, ma, sa, nb, mb, sb)
        lo, hi = np.full(g, np.inf), np.full(g, -np.inf)
        lo[pa], hi[pa] = a.lo, a.hi
        lo[pb], hi[pb] = np.minimum(lo[pb], b.lo), np.maximum(hi[pb], b.hi)
        dist: list = [None] * g
        filled = np.zeros(g, dtype=bool)
        for src, pos in ((a, pa), (b, pb)):
            for i, p in enumerate(pos):
                if not filled[p]:
                    dist[p], filled[p] = src.distinct[i], True
                    continue
                da, db = dist[p], src.distinct[i]
                u = None if da is None or db is None else np.union1d(da, db)
                dist[p] = u if u is not None and u.size <= a.cap else None
        hist = a.hist.merge(b.hist.remap(pb))
        return NumericProfileState(a.bits, a.cap, scal, lo, hi, mean, m2, hist, tuple(dist))

    def finalize(self, state: NumericProfileState) -> list[MetricResult]:
        """Per group: ``count``, ``missing``, ``nonfinite``, ``min``, ``max``, ``mean``, ``std``
        (population, ddof=0), ``n_distinct`` (NaN, reason ``too_many_distinct``, above the cap)
        and ``quantile_buckets`` (occupied cells of the quantile grid). Quantile edges come from
        :meth:`binning`."""
        out = []
        arr = state.scalars.arrays
        cells = np.bincount(state.hist.groups, minlength=len(state.keys))
        for i, key in enumerate(state.keys):
            n = int(arr["count"][i])
            empty = "" if n else "empty"
            vals = {
                "count": (n, ""), "missing": (int(arr["missing"][i]), ""),
                "nonfinite": (int(arr["nonfinite"][i]), ""),
                "min": (state.lo[i] if n else math.nan, empty),
                "max": (state.hi[i] if n else math.nan, empty),
                "mean": (state.mean[i] if n else math.nan, empty),
                "std": (math.sqrt(max(state.m2[i], 0.0) / n) if n else math.nan, empty),
                "quantile_buckets": (int(cells[i]), ""),
            }
            d = state.distinct[i]
            vals["n_distinct"] = (math.nan, "too_many_distinct") if d is None else (d.size, "")
            out += [MetricResult(key, m, float(v), undefined_reason=r)
                    for m, (v, r) in vals.items()]
        return out

    def binning(self, state: NumericProfileState, key) -> NumericBinning:
        """The bin layout of group ``key``: exact over its distinct values when they are at most
        ``exact_max_distinct``, else ``n_bins`` quantile bins (inverted-CDF quantiles at
        ``i / n_bins`` from the grid histogram, each within ``2**-(bits+1)`` of the exact one's
        magnitude, with the exact min and max as outer edges, deduplicated).

        Raises:
            KeyError: if ``key`` is not in the state.
        """
        i = state.scalars.index()[key]
        center = float(state.mean[i])
        d = state.distinct[i]
        if d is not None:
            return NumericBinning(d, exact=True, center=center)
        ranks = np.arange(1, self.n_bins) / self.n_bins
        one = state.hist.take(np.array([i]))
        q = one.quantiles(1, ranks, state.lo[i:i + 1], state.hi[i:i + 1])[0][0]
        edges = np.unique(np.clip(np.concatenate([[state.lo[i]], q, [state.hi[i]]]),
                                  state.lo[i], state.hi[i]))
        # a single distinct value cannot make a quantile bin: it is the exact layout
        return NumericBinning(edges, exact=edges.size < 2, center=center)


def _distinct(x: np.ndarray, cap: int) -> np.ndarray | None:
    """Sorted distinct values of float64 ``x`` (n,), or ``None`` when there are more than ``cap``.

    A prefix of ``2 (cap + 1)`` values is checked first: when it already holds more than ``cap``
    distinct values (any continuous column), the full sort is skipped.
    """
    head = 2 * (cap + 1)
    if x.size > head and np.unique(x[:head]).size > cap:
        return None
    u = np.unique(x)
    return u if u.size <= cap else None


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class CategoricalProfileState:
    """Grouped categorical profile.

    Attributes:
        scalars: :class:`KeyedArrays` with (G,) ``count`` (rows with a value), ``missing``
            (rows without) int64, and ``offset`` float64, the Misra-Gries under-count bound.
        freqs: tuple (G,) of dicts category -> weighted count (at most ``capacity`` entries).
    """

    capacity: int
    scalars: KeyedArrays
    freqs: tuple

    @property
    def keys(self) -> tuple:
        return self.scalars.keys


def _order_key(item: tuple) -> tuple:
    """Deterministic ranking: weight desc, then type and repr (mixed types cannot be compared)."""
    cat, w = item
    return (-w, type(cat).__name__, repr(cat))


@dataclass(frozen=True)
class CategoricalProfileSpec(SpecBase):
    """Reference profile of a categorical feature; ``binning`` fixes its top-k categories.

    Args:
        top_k: categories kept as their own bins (the rest is ``other``), >= 1.
        capacity: categories tracked per group by the Misra-Gries summary (exact up to this many).
    """

    top_k: int = 20
    capacity: int = 1000

    family = "drift_profile"
    INPUTS = {"value": "category_value", "weight": "weight?"}

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"Expected `top_k` >= 1, got {self.top_k}.")
        if self.capacity < self.top_k:
            raise ValueError(f"Expected `capacity` >= top_k ({self.top_k}), got {self.capacity}.")

    def zero(self) -> CategoricalProfileState:
        return CategoricalProfileState(self.capacity, KeyedArrays(), ())

    def accumulate(self, state: CategoricalProfileState, batch: Mapping[str, np.ndarray],
                   groups: GroupIndex) -> CategoricalProfileState:
        """Weighted category frequencies of ``batch["value"]`` (hashables (n,); ``None``/NaN =
        missing), optional ``batch["weight"]`` (float >= 0 (n,)).

        Raises:
            ValueError: if ``value`` is absent or ``weight`` invalid.
        """
        if "value" not in batch:
            raise ValueError(f"Expected batch column `value`, got columns {sorted(batch)}.")
        codes, uniques, missing = factorize(batch["value"])
        w = _weights(batch, groups.n_rows)
        groups, _ = present_groups(groups)
        g, gc = groups.n_groups, groups.codes
        ok = ~missing
        scal = KeyedArrays(groups.keys, {
            "count": np.bincount(gc[ok], minlength=g).astype(np.int64),
            "missing": np.bincount(gc[missing], minlength=g).astype(np.int64),
            "offset": np.zeros(g),
        })
        u = max(len(uniques), 1)
        pair, sums = cell_sums(gc[ok] * u + codes[ok], {"w": None if w is None else w[ok]}, g * u)
        tot = sums["w"]
        freqs: list = [{} for _ in range(g)]
        for p, t in zip(pair.tolist(), tot.tolist()):  # distinct (group, category) pairs only
            freqs[p // u][uniques[p % u]] = t
        freqs, offs = zip(*(self._reduce(f) for f in freqs)) if g else ((), ())
        scal.arrays["offset"][:] = offs
        return self.merge(state, CategoricalProfileState(self.capacity, scal, tuple(freqs)))

    def _reduce(self, f: dict) -> tuple[dict, float]:
        """Misra-Gries reduction to ``capacity`` entries; returns the dict and the decrement."""
        if len(f) <= self.capacity:
            return f, 0.0
        cut = sorted(f.values(), reverse=True)[self.capacity]
        return {c: v - cut for c, v in f.items() if v - cut > 0}, float(cut)

    def merge(self, a: CategoricalProfileState,
              b: CategoricalProfileState) -> CategoricalProfileState:
        """Combine two profiles; inputs are not mutated.

        Raises:
            StateMismatchError: if the capacities differ.
        """
        if a.capacity != b.capacity:
            raise StateMismatchError(f"Cannot merge categorical profiles with capacity "
                                     f"{a.capacity} and {b.capacity}.")
        if not a.keys:
            return b
        if not b.keys:
            return a
        keys, pa, pb = union_keys(a.keys, b.keys)
        scal = merge_keyed(a.scalars, b.scalars)
        freqs: list = list(a.freqs) + [{} for _ in range(len(keys) - len(a.keys))]
        extra = np.zeros(len(keys))
        for p, f in zip(pb, b.freqs):
            d = dict(freqs[p])  # copy: the inputs' dicts are never mutated
            for c, v in f.items():
                d[c] = d.get(c, 0.0) + v
            freqs[p], extra[p] = self._reduce(d)
        arrays = dict(scal.arrays)
        arrays["offset"] = arrays["offset"] + extra
        return CategoricalProfileState(a.capacity, KeyedArrays(keys, arrays), tuple(freqs))

    def finalize(self, state: CategoricalProfileState) -> list[MetricResult]:
        """Per group: ``count``, ``missing``, ``n_categories`` (tracked) and one
        ``category_weight`` per tracked category (``class_label`` = category, ``error_bound`` =
        the Misra-Gries offset)."""
        out = []
        arr = state.scalars.arrays
        for i, key in enumerate(state.keys):
            off = float(arr["offset"][i])
            out += [MetricResult(key, "count", float(arr["count"][i])),
                    MetricResult(key, "missing", float(arr["missing"][i])),
                    MetricResult(key, "n_categories", float(len(state.freqs[i])), error_bound=off)]
            out += [MetricResult(key, "category_weight", float(v), error_bound=off, class_label=c)
                    for c, v in state.freqs[i].items()]
        return out

    def binning(self, state: CategoricalProfileState, key, top_k: int | None = None
                ) -> CategoricalBinning:
        """The ``top_k`` (default: the spec's) most frequent categories of group ``key``, ties
        broken by type name and ``repr`` (deterministic), plus every tracked category as known.

        Raises:
            KeyError: if ``key`` is not in the state.
        """
        i = state.scalars.index()[key]
        ranked = [c for c, _ in sorted(state.freqs[i].items(), key=_order_key)]
        k = self.top_k if top_k is None else top_k
        return CategoricalBinning(tuple(ranked[:k]), tuple(ranked),
                                  known_complete=bool(state.scalars.arrays["offset"][i] == 0))
