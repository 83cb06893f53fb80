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

from rayeval.core import kernels
from rayeval.core._jit import typed_list

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
        offsets: int64 (n_cells + 1,): cell ``c`` owns entries ``offsets[c]:offsets[c + 1]``
            (:meth:`indptr`; :attr:`cell` expands it to one cell per entry).
        bucket: int64 (nnz,), sorted within a cell.
        pos, neg: float64 (nnz,), positive and negative weight of the bucket (never both 0).
        rep: int64 (nnz,), the exact key (:func:`exact_keys`) of the bucket's only distinct
            score, -1 when it holds several: a bucket of one distinct score (a block of tied
            scores, or any bucket at shift 0) is exact, its ranking terms need no bound.
    """

    shift: np.ndarray
    offsets: np.ndarray
    bucket: np.ndarray
    pos: np.ndarray
    neg: np.ndarray
    rep: np.ndarray

    @property
    def n_cells(self) -> int:
        return int(self.shift.size)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.shift, self.offsets, self.bucket, self.pos, self.neg,
                                      self.rep))

    def indptr(self) -> np.ndarray:
        """int64 (n_cells + 1,): cell ``c`` owns rows ``indptr[c]:indptr[c + 1]``."""
        return self.offsets

    @property
    def cell(self) -> np.ndarray:
        """int64 (nnz,): the cell of each entry (sorted)."""
        return np.repeat(np.arange(self.n_cells, dtype=np.int64), np.diff(self.offsets))

    @classmethod
    def empty(cls, n_cells: int = 0) -> "ScoreHistogram":
        z = np.zeros(0, dtype=np.int64)
        return cls(np.zeros(n_cells, dtype=np.int64), np.zeros(n_cells + 1, dtype=np.int64), z,
                   z.astype(np.float64), z.astype(np.float64), z)


def bit_length(x: np.ndarray) -> np.ndarray:
    """int64 (n,): ``int.bit_length`` of each non-negative int64, exact for every value: the
    exponent of the float64 conversion, less one where rounding up to a power of two made it
    one too large (only possible above 2**53)."""
    x = np.asarray(x, dtype=np.int64)
    e = np.frexp(x.astype(np.float64))[1].astype(np.int64)
    return e - ((x >> np.maximum(e - 1, 0)) == 0) * (x > 0)


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
    """:func:`from_rows` given ``key_order = np.argsort(keys, kind="stable")``."""
    key_order = np.asarray(key_order, dtype=np.int64)
    return from_sorted(np.asarray(cell)[key_order], np.asarray(keys)[key_order],
                       np.asarray(pos_w)[key_order], np.asarray(neg_w)[key_order], n_cells,
                       budget)


def from_sorted(cell: np.ndarray, keys: np.ndarray, pos_w: np.ndarray, neg_w: np.ndarray,
                n_cells: int, budget: int | None) -> ScoreHistogram:
    """:func:`from_rows` of rows already in stable key order (keys ascending; a batch puts its
    rows in key order once and shares them between its groupings): rows are counting-sorted
    by cell, equal keys added, and each cell over budget coarsened to its smallest fitting
    shift (:func:`rayeval.core.kernels.build_histogram`, linear in the rows)."""
    if cell.size == 0:
        return ScoreHistogram.empty(n_cells)
    return ScoreHistogram(*kernels.build_histogram(
        np.asarray(cell, dtype=np.int64), np.asarray(keys, dtype=np.int64),
        np.asarray(pos_w, dtype=np.float64), np.asarray(neg_w, dtype=np.float64),
        int(n_cells), _budget_arg(budget)))


def _budget_arg(budget: int | None) -> int:
    return 0 if budget is None else int(budget)


def combine(hists: list[ScoreHistogram], maps: list[np.ndarray], n_cells: int,
            budget: int | None) -> ScoreHistogram:
    """Merge histograms into ``n_cells`` cells (``maps[i][c]``: new cell of ``hists[i]``'s cell
    ``c``; each map is injective).

    Each new cell takes the largest shift of its inputs; its sorted runs (one per input) are
    merged k-way with the keys coarsened on the fly, equal buckets added in input order, and
    the cell re-fitted to the budget (:func:`rayeval.core.kernels.merge_histograms`, linear in
    the entries for a bounded number of inputs). Inputs are not modified.
    """
    if not hists:
        return ScoreHistogram.empty(n_cells)
    lists = [typed_list([getattr(h, f) for h in hists])
             for f in ("offsets", "bucket", "pos", "neg", "rep")]
    maps = typed_list([np.asarray(m, dtype=np.int64) for m in maps])
    shifts = typed_list([h.shift for h in hists])
    return ScoreHistogram(*kernels.merge_histograms(*lists, maps, shifts,
                                                    int(n_cells), _budget_arg(budget)))
