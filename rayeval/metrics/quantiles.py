"""Deterministic mergeable quantiles: a sparse per-group histogram on a relative (float-bit) grid.

The grid is fixed and data-independent: a finite float64 ``x`` falls in the bucket given by its
sign, exponent and top ``bits`` mantissa bits (``x.view(int64) >> (52 - bits)``, mirrored for
negative values), so a bucket ``[lo, hi)`` is at most ``2**-bits * |lo|`` wide. This is the
logarithmic bucketing of DDSketch (Masson, Rim & Lee, "DDSketch: a fast and fully-mergeable
quantile sketch with relative-error guarantees", VLDB 2019) with ``gamma = 1 + 2**-bits``
(piecewise-linear inside a binade), and HDR Histogram's float layout.

Why not a KLL / t-digest sketch: their results depend on the merge order and (KLL) on random
compaction, so the same data split differently across Ray workers gives different quantiles.
Here a histogram is a set of ``(group, bucket) -> weight`` cells: merging adds weights, which is
commutative and associative (exactly for integer weights, to rounding for fractional ones), so a
rerun gives the same quantiles whatever the split or order.

Guarantee: :meth:`GroupedLogHistogram.quantiles` returns, per group and level ``q``, the
midpoint of the bucket that holds the exact inverted-CDF quantile (``numpy.quantile(x, q,
method="inverted_cdf", weights=w)``: the smallest ``x`` whose cumulative weight reaches ``q W``)
intersected with the optional exact ``[lower, upper]`` range of the group, and the half-width of
that interval as an **absolute value bound**: ``|returned - exact| <= bound <= 2**-(bits+1) *
|exact|`` (relative error 0.39 % at ``bits=7``). Size: one cell per occupied bucket, at most
``2**bits`` per binade of the data and never more than its distinct values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: mantissa bits of the grid, inclusive range
MIN_BITS, MAX_BITS = 1, 12
#: a cell is ``group << _SHIFT | (bucket + _OFFSET)``; buckets lie in [-2**23, 2**23) for bits <= 12
_SHIFT = 25
_OFFSET = 1 << 23
_MASK = (1 << _SHIFT) - 1


def _check_bits(bits: int) -> int:
    if not MIN_BITS <= int(bits) <= MAX_BITS:
        raise ValueError(f"Expected `bits` in [{MIN_BITS}, {MAX_BITS}], got {bits}.")
    return int(bits)


def bucket_index(x: np.ndarray, bits: int) -> np.ndarray:
    """Bucket of each value on the ``bits`` grid.

    Args:
        x: float64 (n,) finite values (NaN and +-inf must be removed first).
        bits: mantissa bits kept, in [1, 12].

    Returns:
        int64 (n,), non-decreasing in ``x`` (``x <= y`` implies ``index(x) <= index(y)``), in
        ``[-2**(11 + bits), 2**(11 + bits))``; ``-0.0`` and ``0.0`` share bucket 0.

    Raises:
        ValueError: on ``bits`` out of range.
    """
    s = 52 - _check_bits(bits)
    x = np.asarray(x, dtype=np.float64) + 0.0  # -0.0 -> 0.0
    mag = np.abs(x).view(np.int64) >> s
    return np.where(x < 0, -mag - 1, mag)


def bucket_bounds(index: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` float64 arrays: every value of bucket ``index`` lies in ``[lo, hi]``."""
    s = 52 - _check_bits(bits)
    index = np.asarray(index, dtype=np.int64)
    neg = index < 0
    mag = np.where(neg, -index - 1, index)
    a = (mag << s).view(np.float64)
    b = ((mag + 1) << s).view(np.float64)  # the next bucket's start (inf past the largest)
    return np.where(neg, -b, a), np.where(neg, -a, b)


def _reduce_sorted(cells: np.ndarray, weights: np.ndarray | None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Sum ``weights`` over runs of equal ``cells`` (sorted int64 (m,)); returns the unique
    cells and their float64 sums (``weights=None``: the run lengths)."""
    if cells.size == 0:
        return cells, np.zeros(0)
    start = np.flatnonzero(np.concatenate([[True], cells[1:] != cells[:-1]]))
    if weights is None:
        return cells[start], np.diff(np.append(start, cells.size)).astype(np.float64)
    return cells[start], np.add.reduceat(weights, start)


@dataclass(frozen=True, eq=False)
class GroupedLogHistogram:
    """Sparse histograms of G groups on the ``bits`` grid (see the module docstring).

    Attributes:
        bits: grid resolution (bucket width <= ``2**-bits`` relative), in [1, 12].
        cells: int64 (m,) sorted unique ``group << 25 | (bucket + 2**23)``; ``group`` is a
            position in the owning state's key tuple.
        weights: float64 (m,) total weight per cell (> 0).

    Treat as immutable; every operation returns a new histogram.
    """

    bits: int
    cells: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def from_values(cls, codes: np.ndarray, values: np.ndarray, weights: np.ndarray | None,
                    bits: int) -> "GroupedLogHistogram":
        """Histogram of ``values`` per group.

        Args:
            codes: int64 (n,) group position of each value, >= 0.
            values: float64 (n,) finite values.
            weights: float64 (n,) weights > 0, or ``None`` for weight 1 each. (Rows with weight
                0 add nothing and must be left out by the caller.)
            bits: grid resolution in [1, 12].

        Raises:
            ValueError: on ``bits`` out of range or mismatched shapes.
        """
        return cls.from_buckets(codes, bucket_index(values, bits), weights, bits)

    @classmethod
    def from_buckets(cls, codes: np.ndarray, buckets: np.ndarray, weights: np.ndarray | None,
                     bits: int) -> "GroupedLogHistogram":
        """:meth:`from_values` from precomputed ``bucket_index(values, bits)`` (int64 (n,)),
        so several groupings of one batch share that work.

        Cells are summed by one dense ``np.bincount`` over ``groups x bucket span`` when that
        space has at most ``max(4 n, 65536)`` cells (no sort: 5-10x faster on a 1M-row
        batch of one group), else by a sort; both give the same cells and sums (to rounding
        for fractional weights: each sums in its own order)."""
        codes = np.asarray(codes, dtype=np.int64)
        if codes.shape != np.shape(buckets) or (weights is not None and
                                                codes.shape != np.shape(weights)):
            raise ValueError(f"Expected codes, values and weights of one shape (n,), got "
                             f"{codes.shape}, {np.shape(buckets)}, "
                             f"{None if weights is None else np.shape(weights)}.")
        bits = _check_bits(bits)
        buckets = np.asarray(buckets, dtype=np.int64)
        w = None if weights is None else np.asarray(weights, np.float64)
        if codes.size:  # dense: one bincount over (group, bucket) when the span is small
            b_lo, b_hi = int(buckets.min()), int(buckets.max())
            span, n_groups = b_hi - b_lo + 1, int(codes.max()) + 1
            if n_groups * span <= max(4 * codes.size, 1 << 16):
                key = codes * span + (buckets - b_lo)
                sums = np.bincount(key, w, n_groups * span)
                occupied = np.flatnonzero(sums)  # weights are > 0: a used cell sums > 0
                g, b = np.divmod(occupied, span)
                cells = (g << _SHIFT) | (b + (b_lo + _OFFSET))
                return cls(bits, cells, sums[occupied].astype(np.float64, copy=False))
        cells = (codes << _SHIFT) | (buckets + _OFFSET)
        if w is None:  # counts: a value sort is enough
            c, s = _reduce_sorted(np.sort(cells), None)
        else:
            order = np.argsort(cells)
            c, s = _reduce_sorted(cells[order], w[order])
        return cls(bits, c, s)

    @property
    def groups(self) -> np.ndarray:
        """int64 (m,) group position of each cell."""
        return self.cells >> _SHIFT

    @property
    def buckets(self) -> np.ndarray:
        """int64 (m,) grid bucket of each cell."""
        return (self.cells & _MASK) - _OFFSET

    def remap(self, positions: np.ndarray) -> "GroupedLogHistogram":
        """The same histograms with group ``i`` renamed ``positions[i]`` (int64 (G,), unique)."""
        if not self.cells.size:
            return self
        cells = (np.asarray(positions, np.int64)[self.groups] << _SHIFT) | (self.cells & _MASK)
        order = np.argsort(cells, kind="stable")
        return GroupedLogHistogram(self.bits, cells[order], self.weights[order])

    def merge(self, other: "GroupedLogHistogram") -> "GroupedLogHistogram":
        """Cell-wise sum with ``other`` (groups already on the same positions, see
        :meth:`remap`). O(m_self + m_other log m_self): ``other`` is inserted by binary search.

        Raises:
            ValueError: if the two grids differ (``bits``).
        """
        if self.bits != other.bits:
            raise ValueError(f"Cannot merge histograms with bits {self.bits} and {other.bits}.")
        if not other.cells.size:
            return self
        if not self.cells.size:
            return other
        a, wa = self.cells, self.weights
        b, wb = other.cells, other.weights
        if b.size > a.size:
            a, wa, b, wb = b, wb, a, wa
        pos = np.searchsorted(a, b)
        hit = pos < a.size
        hit[hit] = a[pos[hit]] == b[hit]
        w = wa.copy()
        w[pos[hit]] += wb[hit]
        new = ~hit
        if not new.any():
            return GroupedLogHistogram(self.bits, a, w)
        return GroupedLogHistogram(self.bits, np.insert(a, pos[new], b[new]),
                                   np.insert(w, pos[new], wb[new]))

    def take(self, keep: np.ndarray) -> "GroupedLogHistogram":
        """Only the groups whose position is in ``keep`` (int64, sorted), renumbered 0.. in
        that order."""
        keep = np.asarray(keep, np.int64)
        g = self.groups
        i = np.searchsorted(keep, g)
        ok = (i < keep.size)
        ok[ok] = keep[i[ok]] == g[ok]
        cells = (i[ok] << _SHIFT) | (self.cells[ok] & _MASK)
        return GroupedLogHistogram(self.bits, cells, self.weights[ok])

    def quantiles(self, n_groups: int, levels, lower: np.ndarray | None = None,
                  upper: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Inverted-CDF quantiles per group with their absolute value bound.

        Args:
            n_groups: G (groups ``0..G-1``; a group without cells gets NaN).
            levels: Q quantile levels in [0, 1].
            lower, upper: optional float64 (G,) exact min / max of each group's values: the
                estimate and bound are taken on the bucket intersected with ``[lower, upper]``.

        Returns:
            ``(values, bounds)``, float64 (G, Q) each; ``|values - exact| <= bounds``.
        """
        q = np.asarray(levels, dtype=np.float64).reshape(-1)
        vals = np.full((n_groups, q.size), np.nan)
        bounds = np.full((n_groups, q.size), np.nan)
        if not self.cells.size or not q.size:
            return vals, bounds
        g = self.groups
        start = np.flatnonzero(np.concatenate([[True], g[1:] != g[:-1]]))
        present = g[start]
        cum = np.cumsum(self.weights)
        before = np.concatenate([[0.0], cum])[start]
        end = np.concatenate([start[1:], [g.size]])
        total = cum[end - 1] - before
        # first cell whose cumulative weight reaches q * W (tolerance for summation rounding)
        need = before[:, None] + q[None, :] * total[:, None] * (1 - 1e-12)
        idx = np.searchsorted(cum, need, side="left")
        idx = np.clip(idx, start[:, None], (end - 1)[:, None])
        lo, hi = bucket_bounds(self.buckets[idx], self.bits)
        if lower is not None:
            lo = np.maximum(lo, np.asarray(lower, np.float64)[present][:, None])
        if upper is not None:
            hi = np.minimum(hi, np.asarray(upper, np.float64)[present][:, None])
        hi = np.maximum(hi, lo)
        mid = lo + (hi - lo) / 2
        vals[present] = mid
        # one ulp up so that the bound also holds after the subtractions' rounding
        bounds[present] = np.nextafter(np.maximum(mid - lo, hi - mid), np.inf) * (lo < hi)
        return vals, bounds

    def totals(self, n_groups: int) -> np.ndarray:
        """float64 (G,) total weight per group."""
        return np.bincount(self.groups, weights=self.weights, minlength=n_groups).astype(float)

    @property
    def nbytes(self) -> int:
        return int(self.cells.nbytes + self.weights.nbytes)
