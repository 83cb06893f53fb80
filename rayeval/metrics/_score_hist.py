"""Sparse, mergeable, self-coarsening score histograms (private to the score metrics).

A histogram holds, for many *cells* (a cell is a group, or a (group, class) pair for
one-vs-rest), the positive and negative weight per occupied score bucket, in COO form sorted by
cell then bucket. Only occupied buckets are stored, so a batch's partial is bounded by its own
rows, and each cell holds at most ``budget`` buckets.

Bucket keys
-----------
A score ``s`` in ``[0, 1]`` maps to an int64 key that is monotone in ``s`` and, at shift 0,
injective (the key *is* the score: exact mode). The map is symmetric around 0.5 so both tails get
relative resolution (fine buckets near 0 *and* near 1, where the top of a ranking sits):

- ``s < 0.5``: ``key = bits(s) >> k`` (IEEE-754 bit pattern of a non-negative double is monotone);
- ``s >= 0.5``: ``key = 2**62 + (M_k - (bits(1 - s) >> k))`` with ``M_k = bits(0.5) >> k``;
  ``1 - s`` is exact for ``s`` in ``[0.5, 1]`` (Sterbenz lemma), so no information is lost.

``k`` (the cell's *shift*, 0..62) drops ``k`` low bits: at shift ``k`` every octave
``[2**-j, 2**-j+1)`` of ``s`` (or of ``1 - s``) holds ``2**(52 - k)`` equal-width buckets. Shifts
are nested: the key at shift ``k + d`` is a function of the key at shift ``k`` (:func:`coarsen`),
so occupied-bucket counts only fall as ``k`` grows, and at shift 62 a cell has at most two buckets.

Order independence
------------------
A cell's shift is always the *smallest* ``k >= (shift of its inputs)`` whose occupied-bucket count
fits the budget. For any subset of the data, the count at every ``k`` is at most the count of the
union, so every partial's shift is <= ``k*`` (the smallest fitting shift of the union), and a merge
(coarsen both sides to the larger shift, add, re-fit) lands on exactly ``k*``. Hence the final
buckets are a function of the union of the data only, whatever the split, order or tree shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_SHIFT = 62
_UPPER = np.int64(1 << 62)
_LOW_MASK = np.int64((1 << 62) - 1)
_HALF_BITS = np.int64(np.float64(0.5).view(np.int64))


def exact_keys(scores: np.ndarray) -> np.ndarray:
    """Bucket keys at shift 0 (one key per distinct score).

    Args:
        scores: float64 array (n,), values in ``[0, 1]`` (validated by the caller); -0.0 allowed.

    Returns:
        int64 array (n,), strictly monotone in the score.
    """
    s = np.asarray(scores, dtype=np.float64) + 0.0  # -0.0 -> +0.0
    upper = s >= 0.5
    low_bits = s.view(np.int64)
    up_bits = (1.0 - s).view(np.int64)
    return np.where(upper, _UPPER + (_HALF_BITS - up_bits), low_bits)


def coarsen(keys: np.ndarray, shift_from: np.ndarray, shift_to: np.ndarray) -> np.ndarray:
    """Keys at a coarser shift (``shift_to >= shift_from``, elementwise, broadcastable).

    Returns int64 keys; monotone non-decreasing in ``keys`` for fixed shifts.
    """
    keys = np.asarray(keys, dtype=np.int64)
    k0 = np.asarray(shift_from, dtype=np.int64)
    k1 = np.asarray(shift_to, dtype=np.int64)
    d = k1 - k0
    upper = keys >= _UPPER
    r = keys & _LOW_MASK
    low = r >> d
    up = (_HALF_BITS >> k1) - (((_HALF_BITS >> k0) - r) >> d)
    return np.where(upper, _UPPER + up, low)


def bucket_edges(keys: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest score a bucket can hold.

    Args:
        keys: int64 (n,) bucket keys; shift: int (n,) or scalar, the cells' shifts.

    Returns:
        ``(lo, hi)`` float64 arrays (n,) with ``lo <= s <= hi`` for every score ``s`` of the
        bucket; at shift 0 both equal the bucket's score.
    """
    keys = np.asarray(keys, dtype=np.int64)
    k = np.broadcast_to(np.asarray(shift, dtype=np.int64), keys.shape)
    upper = keys >= _UPPER
    r = keys & _LOW_MASK
    width = (np.int64(1) << k) - 1
    # lower half: bits in [r << k, (r << k) + width], capped below 0.5
    lo_low = (r << k).view(np.float64)
    hi_low = np.minimum((r << k) + width, _HALF_BITS - 1).view(np.float64)
    # upper half: bits(1 - s) in [w << k, (w << k) + width], w = M_k - r, capped at bits(0.5)
    w = (_HALF_BITS >> k) - r
    w_lo = w << k
    w_hi = np.minimum(w_lo + width, _HALF_BITS)
    lo_up = 1.0 - w_hi.view(np.float64)
    hi_up = 1.0 - w_lo.view(np.float64)
    return np.where(upper, lo_up, lo_low), np.where(upper, hi_up, hi_low)


@dataclass(frozen=True)
class ScoreHistogram:
    """COO histogram of ``n_cells`` cells.

    Attributes:
        shift: int64 (n_cells,), each cell's shift (0 = exact distinct scores).
        cell: int64 (nnz,), sorted; bucket: int64 (nnz,), sorted within a cell.
        pos, neg: float64 (nnz,), positive and negative weight of the bucket (never both 0).
    """

    shift: np.ndarray
    cell: np.ndarray
    bucket: np.ndarray
    pos: np.ndarray
    neg: np.ndarray

    @property
    def n_cells(self) -> int:
        return int(self.shift.size)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.shift, self.cell, self.bucket, self.pos, self.neg))

    def indptr(self) -> np.ndarray:
        """int64 (n_cells + 1,): cell ``c`` owns rows ``indptr[c]:indptr[c + 1]``."""
        return np.searchsorted(self.cell, np.arange(self.n_cells + 1), side="left")

    @classmethod
    def empty(cls, n_cells: int = 0) -> "ScoreHistogram":
        z = np.zeros(0, dtype=np.int64)
        return cls(np.zeros(n_cells, dtype=np.int64), z, z, z.astype(np.float64),
                   z.astype(np.float64))


def _reduce_sorted(cell, bucket, pos, neg):
    """Collapse equal (cell, bucket) runs of arrays sorted by (cell, bucket)."""
    if cell.size == 0:
        return cell, bucket, pos, neg
    start = np.ones(cell.size, dtype=bool)
    start[1:] = (cell[1:] != cell[:-1]) | (bucket[1:] != bucket[:-1])
    if start.all():
        return cell, bucket, pos, neg
    idx = np.flatnonzero(start)
    return cell[idx], bucket[idx], np.add.reduceat(pos, idx), np.add.reduceat(neg, idx)


def _distinct_per_cell(cell, keys, n_cells):
    first = np.ones(cell.size, dtype=bool)
    first[1:] = (cell[1:] != cell[:-1]) | (keys[1:] != keys[:-1])
    return np.bincount(cell[first], minlength=n_cells)


def _fit_budget(h: ScoreHistogram, budget: int | None) -> ScoreHistogram:
    """Raise the shift of every cell over budget to the smallest shift that fits (vectorised
    binary search over all such cells at once; counts are monotone in the shift)."""
    if budget is None or h.cell.size == 0:
        return h
    counts = np.bincount(h.cell, minlength=h.n_cells)
    if counts.max() <= budget:
        return h
    over = counts > budget
    lo = h.shift.copy()                    # infeasible for cells over budget
    hi = np.where(over, MAX_SHIFT, h.shift)  # feasible (<= 2 buckets) since budget >= 2
    rows = over[h.cell]
    c, b = h.cell[rows], h.bucket[rows]
    k0 = h.shift[c]
    while True:
        todo = over & (hi - lo > 1)
        if not todo.any():
            break
        mid = np.where(todo, (lo + hi) // 2, hi)
        n = _distinct_per_cell(c, coarsen(b, k0, mid[c]), h.n_cells)
        fits = n <= budget
        hi = np.where(todo & fits, mid, hi)
        lo = np.where(todo & ~fits, mid, lo)
    shift = np.where(over, hi, h.shift)
    bucket = coarsen(h.bucket, h.shift[h.cell], shift[h.cell])
    cell, bucket, pos, neg = _reduce_sorted(h.cell, bucket, h.pos, h.neg)
    return ScoreHistogram(shift, cell, bucket, pos, neg)


def _order_by_cell_then_key(cell: np.ndarray, keys: np.ndarray, n_cells: int) -> np.ndarray:
    """``np.lexsort((keys, cell))`` (same stable order), about twice as fast: a stable sort by
    key, then a stable sort by cell on the narrowest unsigned type (numpy's radix sort for
    16-bit and smaller integers)."""
    by_key = np.argsort(keys, kind="stable")
    c = cell[by_key]
    if n_cells <= 1 << 16:
        c = c.astype(np.uint16)
    return by_key[np.argsort(c, kind="stable")]


def from_rows(cell: np.ndarray, keys: np.ndarray, pos_w: np.ndarray, neg_w: np.ndarray,
              n_cells: int, budget: int | None) -> ScoreHistogram:
    """Histogram of rows.

    Args:
        cell: int64 (n,) cell of each row, in ``[0, n_cells)``.
        keys: int64 (n,) exact keys (:func:`exact_keys`).
        pos_w, neg_w: float64 (n,) weight counted as positive / negative (rows with both 0
            must be dropped by the caller).
        budget: max buckets per cell (``None``: exact, never coarsen).
    """
    order = _order_by_cell_then_key(cell, keys, n_cells)
    c, b = cell[order], keys[order]
    c, b, p, q = _reduce_sorted(c, b, pos_w[order].astype(np.float64),
                                neg_w[order].astype(np.float64))
    h = ScoreHistogram(np.zeros(n_cells, dtype=np.int64), c.astype(np.int64), b, p, q)
    return _fit_budget(h, budget)


def _sorted_by_cell(cell, bucket, pos, neg):
    """Stable sort by cell (buckets are already sorted within each cell); no-op when sorted."""
    if cell.size < 2 or bool(np.all(cell[1:] >= cell[:-1])):
        return cell, bucket, pos, neg
    o = np.argsort(cell, kind="stable")
    return cell[o], bucket[o], pos[o], neg[o]


def _insert_positions(ca, ka, cb, kb, n_cells):
    """For each (cb, kb) pair, the number of (ca, ka) pairs strictly smaller (both sides sorted
    by cell then bucket): a vectorised binary search inside each cell's segment of ``a``,
    O(m log S) for m queries into S entries."""
    indptr = np.searchsorted(ca, np.arange(n_cells + 1), side="left")
    lo, hi = indptr[cb], indptr[cb + 1]
    act = lo < hi
    while act.any():
        mid = (lo + hi) >> 1
        less = np.zeros(lo.size, dtype=bool)
        less[act] = ka[mid[act]] < kb[act]
        lo = np.where(act & less, mid + 1, lo)
        hi = np.where(act & ~less, mid, hi)
        act = lo < hi
    return lo


def combine(a: ScoreHistogram, map_a: np.ndarray, b: ScoreHistogram, map_b: np.ndarray,
            n_cells: int, budget: int | None) -> ScoreHistogram:
    """Merge two histograms into ``n_cells`` cells (``map_a[i]``: new cell of ``a``'s cell i).

    Both sides are coarsened to the larger shift of each cell (order-preserving), the smaller
    side is inserted into the larger by binary search (no global re-sort: O(S + m log S)),
    equal buckets are added, and cells over budget are re-fitted. Inputs are not modified.
    """
    shift = np.zeros(n_cells, dtype=np.int64)
    np.maximum.at(shift, map_a, a.shift)
    np.maximum.at(shift, map_b, b.shift)
    sides = []
    for h, m in ((a, map_a), (b, map_b)):
        c = m[h.cell]
        # per cell, not per bucket: coarsening (and re-sorting) is skipped when no cell's
        # shift changes or no cell moves out of order (the usual case for a running state)
        bucket = h.bucket
        if not np.array_equal(h.shift, shift[m]):
            bucket = coarsen(h.bucket, h.shift[h.cell], shift[c])
        if m.size > 1 and bool(np.all(m[1:] > m[:-1])):  # order-preserving map: still sorted
            sides.append((c, bucket, h.pos, h.neg))
        else:
            sides.append(_sorted_by_cell(c, bucket, h.pos, h.neg))
    big, small = sorted(sides, key=lambda t: -t[0].size)  # stable: ties keep (a, b) order
    ins = _insert_positions(big[0], big[1], small[0], small[1], n_cells)
    n_small = small[0].size
    at_small = ins + np.arange(n_small)
    at_big = np.ones(big[0].size + n_small, dtype=bool)
    at_big[at_small] = False
    merged = []
    for x_big, x_small in zip(big, small):
        out = np.empty(at_big.size, dtype=x_big.dtype)
        out[at_big] = x_big
        out[at_small] = x_small
        merged.append(out)
    cell, bucket, pos, neg = _reduce_sorted(*merged)
    return _fit_budget(ScoreHistogram(shift, cell, bucket, pos, neg), budget)
