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


def bit_length(x: np.ndarray) -> np.ndarray:
    """int64 (n,): ``int.bit_length`` of each non-negative int64, exact for every value: the
    exponent of the float64 conversion, less one where rounding up to a power of two made it
    one too large (only possible above 2**53)."""
    x = np.asarray(x, dtype=np.int64)
    e = np.frexp(x.astype(np.float64))[1].astype(np.int64)
    return e - ((x >> np.maximum(e - 1, 0)) == 0) * (x > 0)


def _fit_budget(h: ScoreHistogram, budget: int | None) -> ScoreHistogram:
    """Raise the shift of every cell over budget to the smallest shift that fits, in one pass.

    In a cell sorted by bucket, the number of distinct buckets after ``d`` more bits are dropped
    is ``1 + #{adjacent pairs whose keys differ in a bit above d}``: two lower-half keys ``x, y``
    stay apart iff ``bit_length(x ^ y) > d`` (the upper half compares ``M_k - r``, the bits of
    ``1 - s``), and a lower and an upper key never meet. A per-cell histogram of those bit
    lengths gives the smallest fitting ``d`` directly (counts are monotone in the shift).
    """
    if budget is None or h.cell.size == 0:
        return h
    counts = np.bincount(h.cell, minlength=h.n_cells)
    if counts.max() <= budget:
        return h
    over_cells = np.flatnonzero(counts > budget)
    rows = np.flatnonzero((counts > budget)[h.cell])  # contiguous per cell (sorted by cell)
    c, b = h.cell[rows], h.bucket[rows]
    k = h.shift[c]
    upper = b >= _UPPER
    v = np.where(upper, (_HALF_BITS >> k) - (b & _LOW_MASK), b)
    same = c[1:] == c[:-1]
    n_bits = np.where(upper[1:] == upper[:-1], bit_length(v[1:] ^ v[:-1]), 64)[same]
    local_of = np.zeros(h.n_cells, dtype=np.int64)
    local_of[over_cells] = np.arange(over_cells.size)
    local = local_of[c[1:][same]]
    width = 66  # bit lengths 0..64, plus one column that is always 0
    hist = np.bincount(local * width + n_bits, minlength=over_cells.size * width)
    at_least = hist.reshape(-1, width)[:, ::-1].cumsum(axis=1)[:, ::-1]  # #{n_bits >= j}
    extra = np.argmax(at_least[:, 1:] <= budget - 1, axis=1)  # smallest d: #{n_bits > d} fits
    shift = h.shift.copy()
    shift[over_cells] = np.minimum(h.shift[over_cells] + extra, MAX_SHIFT)
    k1 = shift[c]
    vd = v >> (k1 - k)  # coarsened lower keys, or coarsened bits of 1 - s (coarsen, reusing v)
    bucket = h.bucket.copy()
    bucket[rows] = np.where(upper, _UPPER + ((_HALF_BITS >> k1) - vd), vd)
    cell, bucket, pos, neg = _reduce_sorted(h.cell, bucket, h.pos, h.neg)
    return ScoreHistogram(shift, cell, bucket, pos, neg)


# Sorting uses one int64 key per entry: the cell in the high bits and the bucket at resolution
# max(shift, PREFIX_SHIFT) in the low 63 - PREFIX_SHIFT bits (2**(52 - PREFIX_SHIFT) buckets per
# octave). Entries whose prefixes tie but whose buckets differ (distinct scores within 2**-28
# relative of each other) are ordered by a second, exact sort of just those runs.
PREFIX_SHIFT = 24
_PREFIX_UPPER = np.int64(1 << (62 - PREFIX_SHIFT))


def _order_by_cell_then_key(cell: np.ndarray, keys: np.ndarray, n_cells: int) -> np.ndarray:
    """``np.lexsort((keys, cell))`` (same stable order), about twice as fast: a stable sort by
    key, then a stable sort by cell on the narrowest unsigned type (numpy's radix sort for
    16-bit and smaller integers)."""
    by_key = np.argsort(keys, kind="stable")
    c = cell[by_key]
    if n_cells <= 1 << 16:
        c = c.astype(np.uint16)
    return by_key[np.argsort(c, kind="stable")]


def _prefix_at(bucket: np.ndarray, shift: int) -> np.ndarray:
    """int64 (n,): keys at scalar ``shift`` as a prefix of ``63 - PREFIX_SHIFT`` bits, monotone:
    :func:`coarsen` to ``max(shift, PREFIX_SHIFT)`` with the upper-half flag moved down to bit
    ``62 - PREFIX_SHIFT`` (written out: 6 array passes instead of coarsen's 10)."""
    upper = bucket >= _UPPER
    if shift >= PREFIX_SHIFT:
        return np.where(upper, bucket + (_PREFIX_UPPER - _UPPER), bucket)
    d = PREFIX_SHIFT - shift
    top = (_HALF_BITS >> PREFIX_SHIFT) + _PREFIX_UPPER
    up = top - (((_HALF_BITS >> shift) + _UPPER - bucket) >> d)  # M - r: the bits of 1 - s
    return np.where(upper, up, bucket >> d)


def _sort_reduce(cell, bucket, pos, neg, cell_shift: np.ndarray, n_cells: int):
    """Entries sorted by (cell, bucket) with equal (cell, bucket) summed: the stable order of
    ``np.lexsort((bucket, cell))``, so sums are added in input order.

    ``cell_shift``: int64 (n_cells,), the shift of each cell's bucket keys. One stable argsort
    of a composite key (cell in the high bits, the bucket at resolution
    ``max(shift, PREFIX_SHIFT)`` in the low ones; timsort: input made of a few sorted runs, as in
    a merge, costs O(n)), then an exact sort of the rare runs of equal prefix holding different
    buckets. Falls back to two sorts when the cells need more than ``PREFIX_SHIFT`` bits.
    """
    if n_cells > 1 << PREFIX_SHIFT:
        order = _order_by_cell_then_key(cell, bucket, n_cells)
        return _reduce_sorted(cell[order], bucket[order], pos[order], neg[order])
    shifts = np.unique(cell_shift)
    if shifts.size <= 1:
        prefix = _prefix_at(bucket, int(shifts[0]) if shifts.size else 0)
    else:  # a few distinct shifts (coarsened cells): one pass each
        prefix = np.empty(bucket.size, dtype=np.int64)
        entry_shift = cell_shift[cell]
        for k in shifts.tolist():
            at = entry_shift == k
            prefix[at] = _prefix_at(bucket[at], k)
    comp = (cell.astype(np.int64) << (63 - PREFIX_SHIFT)) | prefix
    order = np.argsort(comp, kind="stable")
    cs, bs = comp[order], bucket[order]
    same = cs[1:] == cs[:-1]
    if not same.any():
        return cell[order], bs, pos[order], neg[order]
    clash = same & (bs[1:] != bs[:-1])
    if clash.any():
        at, run = _clash_positions(same, clash)
        order[at] = order[at][np.lexsort((bs[at], run))]
        return _reduce_sorted(cell[order], bucket[order], pos[order], neg[order])
    start = np.flatnonzero(np.concatenate([[True], ~same]))  # equal prefix = equal bucket here
    return (cell[order[start]], bs[start], np.add.reduceat(pos[order], start),
            np.add.reduceat(neg[order], start))


def _by_new_cell(h: ScoreHistogram, m: np.ndarray, bucket: np.ndarray):
    """``(cell, bucket, pos, neg)`` of ``h`` with cells renamed by ``m`` and put in new-cell order
    by moving whole cell segments (O(nnz); buckets stay sorted within each cell)."""
    c = m[h.cell]
    if m.size < 2 or bool(np.all(m[1:] > m[:-1])):  # order-preserving map: already sorted
        return c, bucket, h.pos, h.neg
    indptr = h.indptr()
    seg = np.argsort(m, kind="stable")  # old cells in new-cell order
    lens = np.diff(indptr)[seg]
    offsets = np.cumsum(lens) - lens
    idx = np.repeat(indptr[seg] - offsets, lens) + np.arange(int(lens.sum()))
    return c[idx], bucket[idx], h.pos[idx], h.neg[idx]


def _clash_positions(same: np.ndarray, clash: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted positions of every run (of equal truncated keys, ``same[i]``: positions i and
    i + 1 tie) that holds a clash, and the run id (its first position) of each; O(clashes x
    run length), no full-length pass: clashes are rare."""
    i = np.flatnonzero(clash)
    lo, hi = i.copy(), i + 1
    while True:  # widen each clash to its run of ties (runs are short)
        ext = lo > 0
        ext[ext] = same[lo[ext] - 1]
        if not ext.any():
            break
        lo[ext] -= 1
    while True:
        ext = hi < same.size
        ext[ext] = same[hi[ext]]
        if not ext.any():
            break
        hi[ext] += 1
    lo, first = np.unique(lo, return_index=True)
    hi = hi[first]
    lens = hi - lo + 1
    at = np.repeat(lo - (np.cumsum(lens) - lens), lens) + np.arange(int(lens.sum()))
    return at, np.repeat(lo, lens)


def key_order(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` for non-negative int64 keys, faster: the row index
    is packed into the low bits of each key (which a value sort then carries along: numpy's
    SIMD value sort beats its argsort), and runs whose truncated keys tie but whose full keys
    differ (scores within ~1e-10 relative of each other) are re-sorted exactly.

    Returns:
        int64 (n,) permutation.
    """
    n = keys.size
    bits = max(1, (n - 1).bit_length())
    if bits > 40:
        return np.argsort(keys, kind="stable")
    low = np.int64((1 << bits) - 1)
    packed = np.sort((keys & ~low) | np.arange(n, dtype=np.int64))
    order = packed & low
    high = packed & ~low
    same = high[1:] == high[:-1]
    if same.any():
        ks = keys[order]
        clash = same & (ks[1:] != ks[:-1])
        if clash.any():
            at, run = _clash_positions(same, clash)
            order[at] = order[at][np.lexsort((order[at], ks[at], run))]
    return order


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
    return from_key_order(cell, keys, key_order(keys), pos_w, neg_w, n_cells, budget)


def from_key_order(cell: np.ndarray, keys: np.ndarray, key_order: np.ndarray, pos_w: np.ndarray,
                   neg_w: np.ndarray, n_cells: int, budget: int | None) -> ScoreHistogram:
    """:func:`from_rows` given ``key_order = np.argsort(keys, kind="stable")`` (shared by every
    grouping of a batch): a stable sort of the cells in key order (numpy's radix sort for up to
    65,536 cells) gives the (cell, key) order of :func:`from_rows` without sorting keys again."""
    if cell.size == 0:
        return ScoreHistogram.empty(n_cells)
    c = cell[key_order]
    c = c.astype(np.uint16) if n_cells <= 1 << 16 else c.astype(np.int32 if n_cells < 1 << 31
                                                                  else np.int64)
    order = key_order[np.argsort(c, kind="stable")]
    c, b, p, q = _reduce_sorted(cell[order].astype(np.int64), keys[order],
                                pos_w[order].astype(np.float64, copy=False),
                                neg_w[order].astype(np.float64, copy=False))
    return _fit_budget(ScoreHistogram(np.zeros(n_cells, dtype=np.int64), c, b, p, q), budget)


def combine(hists: list[ScoreHistogram], maps: list[np.ndarray], n_cells: int,
            budget: int | None) -> ScoreHistogram:
    """Merge histograms into ``n_cells`` cells (``maps[i][c]``: new cell of ``hists[i]``'s cell
    ``c``; each map is injective).

    Every side is coarsened to the largest shift of each cell (order-preserving) and moved into
    new-cell order by whole cell segments, the sides are concatenated and put in (cell, bucket)
    order by :func:`_sort_reduce` (k sorted runs: timsort's k-way merge, O(n log k)), equal
    buckets are added, and cells over budget are re-fitted. Inputs are not modified.
    """
    shift = np.zeros(n_cells, dtype=np.int64)
    for h, m in zip(hists, maps):
        np.maximum.at(shift, m, h.shift)
    parts = []
    for h, m in zip(hists, maps):
        bucket = h.bucket
        if not np.array_equal(h.shift, shift[m]):  # per cell: usually nothing to coarsen
            bucket = coarsen(h.bucket, h.shift[h.cell], shift[m][h.cell])
        parts.append(_by_new_cell(h, m, bucket))
    if not parts:
        return ScoreHistogram.empty(n_cells)
    cell, bucket, pos, neg = (np.concatenate(x) for x in zip(*parts))
    cell, bucket, pos, neg = _sort_reduce(cell, bucket, pos, neg, shift, n_cells)
    return _fit_budget(ScoreHistogram(shift, cell, bucket, pos, neg), budget)
