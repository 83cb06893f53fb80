"""Reference-fixed bin layouts for drift histograms, and value factorisation.

A binning is fixed from the *reference alone* (pass 1, :mod:`rayeval.drift.profile`) and then used
unchanged for the reference and every current window (pass 2, :mod:`rayeval.drift.histogram`), so
histograms of any partition merge by addition and the data under test never moves the yardstick
(unlike Evidently's pooled edges).

Numeric layouts (``NumericBinning``), with ``v``/``e`` the sorted finite edges:

- ``exact`` (the reference has at most ``exact_max_distinct`` distinct values
  ``v_0 < ... < v_{k-1}``):
  ``2k + 1`` bins ``(-inf, v_0), {v_0}, (v_0, v_1), {v_1}, ..., {v_{k-1}}, (v_{k-1}, +inf)``.
  Reference mass sits on the point bins only, so every statistic computed from the histograms is the
  statistic of the raw samples (current values off the reference grid land in the open bins and are
  bounded, not lost);
- ``quantile`` (edges ``e_0 = ref min < ... < e_{m-1} = ref max``, from reference quantiles, or
  configured): ``m + 1`` bins ``(-inf, e_0), [e_0, e_1), ..., [e_{m-2}, e_{m-1}], (e_{m-1}, +inf)``.

In both layouts bin 0 is the underflow (below the reference minimum) and bin ``B - 1`` the overflow
(above the reference maximum), which gives the out-of-range rate without extra counters.

Categorical layout (``CategoricalBinning``): the ``top_k`` most frequent reference categories, then
one ``other`` bin for the rest. Categories never seen in the reference go to ``other`` and are also
counted as *unseen* by the histogram.

Categorical values are factorised (:func:`factorize`) into int codes and a few distinct values,
which are then mapped to bins one distinct value at a time; a :class:`Factorized` column carries
that work from one batch column to every model and spec that reads it.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Sequence

import numpy as np

NUMERIC = "numeric"
CATEGORICAL = "categorical"


@dataclass(frozen=True, eq=False)
class NumericBinning:
    """Fixed numeric bin layout (see module docstring).

    Attributes:
        edges: float64 array (m,), finite, strictly increasing. ``exact``: the distinct reference
            values; otherwise the quantile (or configured) edges, ``edges[0]``/``edges[-1]`` being
            the reference minimum/maximum.
        exact: True for the value-per-bin layout (statistics match the raw-sample formulas).
        center: shift for the moment sums kept by histograms (the reference mean), for precision.

    Raises:
        ValueError: if ``edges`` is not finite and strictly increasing, or a quantile layout has
            fewer than 2 edges.
    """

    edges: np.ndarray
    exact: bool
    center: float = 0.0
    kind: str = field(default=NUMERIC, init=False)

    def __post_init__(self) -> None:
        edges = np.array(self.edges, dtype=np.float64).reshape(-1)
        edges.setflags(write=False)
        object.__setattr__(self, "edges", edges)
        center = float(self.center)
        object.__setattr__(self, "center", center if math.isfinite(center) else 0.0)
        if not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
            raise ValueError("Expected `edges` finite and strictly increasing, got "
                             f"{edges[:8]}{'...' if edges.size > 8 else ''}.")
        if not self.exact and edges.size < 2:
            raise ValueError(f"Expected at least 2 `edges` for a quantile layout, "
                             f"got {edges.size}.")

    @classmethod
    def from_values(cls, values: Sequence[float], center: float = 0.0) -> "NumericBinning":
        """Exact layout over the distinct finite ``values`` (any order, repeats allowed)."""
        v = np.asarray(values, dtype=np.float64)
        return cls(np.unique(v[np.isfinite(v)]), exact=True, center=center)

    @classmethod
    def from_edges(cls, edges: Sequence[float], center: float | None = None) -> "NumericBinning":
        """Quantile-style layout over configured ``edges`` (out of range = outside the edges)."""
        e = np.asarray(edges, dtype=np.float64)
        return cls(e, exact=False, center=float(np.mean(e)) if center is None else center)

    @property
    def n_bins(self) -> int:
        """Number of bins ``B`` including underflow and overflow."""
        return 2 * self.edges.size + 1 if self.exact else self.edges.size + 1

    @property
    def n_distinct(self) -> int | None:
        """Number of distinct reference values in exact mode, else ``None``."""
        return int(self.edges.size) if self.exact else None

    @cached_property
    def binning_id(self) -> str:
        """Content hash identifying the layout; histograms of different layouts never merge."""
        h = hashlib.sha1(b"exact" if self.exact else b"quantile")
        h.update(self.edges.tobytes())
        return "num:" + h.hexdigest()[:16]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NumericBinning) and other.binning_id == self.binning_id

    def __hash__(self) -> int:
        return hash(self.binning_id)

    def assign(self, x: np.ndarray) -> np.ndarray:
        """Bin index (int64, in ``[0, B)``) of each non-NaN value of ``x`` (float64 (n,)).

        ``-inf``/``+inf`` go to the underflow/overflow bins. NaN must be filtered by the caller.
        """
        x = np.ascontiguousarray(x, dtype=np.float64)
        e = self.edges
        if e.size == 0:
            return np.zeros(x.size, dtype=np.int64)
        r = self._count_le(x)
        if self.exact:  # bin 2r is the open interval above e_{r-1}, 2r - 1 the point e_{r-1}
            prev = np.concatenate([[np.nan], e])  # e_{r-1}; NaN: nothing is below e_0
            return 2 * r - (prev.take(r) == x)
        r[x == e[-1]] = e.size - 1  # the last regular bin is closed: [e_{m-2}, e_{m-1}]
        return r

    def _count_le(self, x: np.ndarray) -> np.ndarray:
        """int64 (n,): the number of edges ``<= x`` (``searchsorted(edges, x, "right")``).

        A uniform grid of cells over ``[e_0, e_{m-1}]`` gives each value the count at its cell's
        start, one step adds the (at most one) edge inside the cell below the value, and every
        result is checked against its neighbouring edges: values that fail (rounding at a cell
        border, a cell holding several edges, infinities) get a binary search. Exact whatever the
        data; several times faster than ``searchsorted`` alone on well-spread edges.
        """
        e = self.edges
        lo, scale, n_cells, lut, below, above = self._grid
        if lut is None:
            return np.searchsorted(e, x, "right").astype(np.int64)
        with np.errstate(over="ignore", invalid="ignore"):  # huge/NaN: a wrong cell, fixed below
            t = x - lo
            t *= scale
            t += 1.0
            np.clip(t, 0.0, n_cells + 1.0, out=t)
            r = lut.take(t.astype(np.int64), mode="clip")
        r += above.take(r) <= x
        ok = below.take(r) <= x
        ok &= x < above.take(r)
        bad = ~ok
        if bad.any():
            rows = np.flatnonzero(bad)
            r[rows] = np.searchsorted(e, x[rows], "right")
        return r

    @cached_property
    def _grid(self) -> tuple:
        """Lookup data of :meth:`_count_le`: ``(lo, scale, n_cells, lut, below, above)``.

        Cell ``c`` (1..n_cells) covers ``[lo + (c-1) / scale, lo + c / scale)``, cell 0 what is
        below ``lo = e_0`` and cell ``n_cells + 1`` what is above; ``lut`` (int64) holds the
        number of edges ``<=`` each cell's start. ``below[r] = e_{r-1}`` and ``above[r] = e_r``
        (float64 (m + 2,), padded with ``-inf``/``+inf``) bound the values with count ``r``.
        ``lut`` is ``None`` (binary search only) when more than a quarter of the edges share a
        cell with another edge (a heavy-tailed reference) or the range is degenerate.
        """
        e = self.edges
        m = e.size
        below = np.concatenate([[-np.inf], e, [np.inf]])
        above = np.concatenate([e, [np.inf, np.inf]])
        n_cells = min(64 * m, 1 << 14)
        scale = n_cells / (e[-1] - e[0]) if m > 1 else math.inf
        lut = None
        if math.isfinite(scale):
            starts = e[0] + np.arange(n_cells + 1) / scale
            lut = np.concatenate([[0], np.searchsorted(e, starts, "right")]).astype(np.int64)
            per_cell = np.diff(lut[1:])
            if per_cell[per_cell > 1].sum() > m / 4:
                lut = None
        return e[0], scale, n_cells, lut, below, above

    @cached_property
    def bounds(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(lo, hi, is_point)``: float64 (B,) bin bounds (``+-inf`` for the open ends) and a
        bool (B,) mask of the single-value bins of the exact layout."""
        e, b = self.edges, self.n_bins
        if self.exact:
            lo = np.concatenate([[-np.inf], e])  # open bins 2i: (lo_i, hi_i)
            hi = np.concatenate([e, [np.inf]])
            out_lo, out_hi = np.empty(b), np.empty(b)
            out_lo[0::2], out_hi[0::2] = lo, hi
            out_lo[1::2], out_hi[1::2] = e, e
            point = np.zeros(b, dtype=bool)
            point[1::2] = True
            return out_lo, out_hi, point
        lo = np.concatenate([[-np.inf], e])
        hi = np.concatenate([e, [np.inf]])
        return lo, hi, np.zeros(b, dtype=bool)

    @cached_property
    def anchors(self) -> np.ndarray:
        """float64 (B,): per-bin shift of the value sums (finite lower bound, else upper bound,
        else ``center``); values in a bin all lie on one side of its anchor."""
        lo, hi, _ = self.bounds
        return np.where(np.isfinite(lo), lo, np.where(np.isfinite(hi), hi, self.center))


@dataclass(frozen=True, eq=False)
class CategoricalBinning:
    """Fixed categorical layout: ``categories`` then ``other``.

    Attributes:
        categories: tuple of the top-k reference categories (most frequent first); bin ``i`` holds
            ``categories[i]`` and bin ``len(categories)`` (= ``B - 1``) holds ``other``.
        known: tuple of every category the reference profile tracked (a superset of
            ``categories``); values outside it are *unseen*.
        known_complete: False when the reference had more categories than its profile could track
            (then a rare reference category may be counted as unseen).
    """

    categories: tuple
    known: tuple = ()
    known_complete: bool = True
    kind: str = field(default=CATEGORICAL, init=False)

    def __post_init__(self) -> None:
        cats = tuple(self.categories)
        object.__setattr__(self, "categories", cats)
        object.__setattr__(self, "known", tuple(dict.fromkeys(cats + tuple(self.known))))
        if len(set(cats)) != len(cats):
            raise ValueError("Expected unique `categories`, got repeats.")

    @property
    def n_bins(self) -> int:
        """``len(categories) + 1`` (the last bin is ``other``)."""
        return len(self.categories) + 1

    @property
    def n_distinct(self) -> int:
        return len(self.known)

    @cached_property
    def binning_id(self) -> str:
        h = hashlib.sha1()
        for c in self.categories:
            h.update(f"{type(c).__name__}:{c!r}\x00".encode())
        return "cat:" + h.hexdigest()[:16]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CategoricalBinning) and other.binning_id == self.binning_id

    def __hash__(self) -> int:
        return hash(self.binning_id)

    @cached_property
    def _index(self) -> dict:
        return {c: i for i, c in enumerate(self.categories)}

    @cached_property
    def _known(self) -> frozenset:
        return frozenset(self.known)

    def assign_unique(self, uniques: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Bin of each *distinct* batch value (a dict lookup per distinct value, not per row).

        Returns:
            ``(bins, unseen)``: int64 (u,) bin indices and bool (u,) unseen flags.
        """
        other = len(self.categories)
        bins = np.fromiter((self._index.get(u, other) for u in uniques), np.int64, len(uniques))
        unseen = np.fromiter((u not in self._known for u in uniques), bool, len(uniques))
        return bins, unseen


@dataclass(frozen=True, eq=False)
class Factorized:
    """A categorical column factorised once, to be shared by several row subsets and specs.

    Pass it as a batch ``value`` column (see :func:`factorize`) so that a column is hashed once
    per batch, not once per model or per spec.

    Attributes:
        codes: int64 (n,) indices into ``uniques``, ``-1`` where the value is missing.
        uniques: list (u,) of distinct non-missing values (Python scalars); after row selection
            it may hold values no row refers to any more.

    Raises:
        ValueError: if ``codes`` is not 1-d or lies outside ``[-1, u)``.
    """

    codes: np.ndarray
    uniques: list

    def __post_init__(self) -> None:
        codes = np.asarray(self.codes, dtype=np.int64)
        object.__setattr__(self, "codes", codes)
        if not isinstance(self.uniques, list):
            object.__setattr__(self, "uniques", list(self.uniques))
        if codes.ndim != 1:
            raise ValueError(f"Expected `codes` of shape (n,), got shape {codes.shape}.")
        if codes.size and (codes.min() < -1 or codes.max() >= len(self.uniques)):
            raise ValueError(f"Expected `codes` in [-1, {len(self.uniques)}), got range "
                             f"[{codes.min()}, {codes.max()}].")

    @classmethod
    def of(cls, values: Any) -> "Factorized":
        """Factorise ``values`` (anything :func:`factorize` accepts)."""
        codes, uniques, _ = factorize(values)
        return cls(codes, uniques)

    def __len__(self) -> int:
        return int(self.codes.size)

    def __getitem__(self, rows) -> "Factorized":
        """The rows selected by ``rows`` (int index array, bool mask or slice), same uniques."""
        return Factorized(self.codes[rows], self.uniques)


def factorize(values: Any) -> tuple[np.ndarray, list, np.ndarray]:
    """Factorise a categorical column, vectorised over rows.

    Args:
        values: array-like (n,) of hashable values (``None`` and float NaN (and NaT) are
            missing), or a :class:`Factorized` column (returned as is, no hashing).

    Returns:
        ``(codes, uniques, missing)``: int64 (n,) codes into ``uniques`` (``-1`` where missing),
        the list of distinct non-missing values (Python scalars; for a :class:`Factorized`
        input its ``uniques``, possibly with values no row uses), and the bool (n,) missing mask.

    Raises:
        TypeError: if a value is unhashable.

    Typed arrays go through ``np.unique``; object arrays (strings from Arrow, mixed types) are
    factorised by ``hash`` with the grouping verified elementwise (no per-row Python loop).
    """
    if isinstance(values, Factorized):
        return values.codes, values.uniques, values.codes < 0
    arr = np.asarray(values)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    n = arr.size
    kind = arr.dtype.kind
    if kind in "fc":
        missing = np.isnan(arr)
    elif kind in "mM":
        missing = np.isnat(arr)
    elif kind == "O":
        missing = np.asarray(np.equal(arr, None), dtype=bool)
        with np.errstate(invalid="ignore"):
            missing |= np.asarray(np.not_equal(arr, arr), dtype=bool)
    else:
        missing = np.zeros(n, dtype=bool)
    codes = np.full(n, -1, dtype=np.int64)
    valid = arr[~missing]
    if valid.size == 0:
        return codes, [], missing
    if kind == "O":  # hashing is O(n) C calls; sorting objects is O(n log n) Python compares
        inv, uniques = _factorize_by_hash(valid)
    else:
        uniq, inv = np.unique(valid, return_inverse=True)
        uniques = uniq.tolist()
    codes[~missing] = np.asarray(inv, dtype=np.int64).reshape(-1)
    return codes, uniques, missing


def _factorize_by_hash(obj: np.ndarray) -> tuple[np.ndarray, list]:
    """Factorise an object array by ``hash``; rows that differ from their hash group's first
    value (a genuine collision, e.g. ``hash(-1) == hash(-2)``) are re-coded with a dict over
    those rows only (equal values always share a hash, so groups never need joining)."""
    try:
        hashes = np.frompyfunc(hash, 1, 1)(obj).astype(np.int64)
    except TypeError as exc:
        raise TypeError(f"Expected hashable categorical `value`s: {exc}") from None
    _, first, inv = np.unique(hashes, return_index=True, return_inverse=True)
    inv = inv.reshape(-1)
    reps = obj[first]
    differ = ~np.asarray(np.equal(obj, reps[inv]), dtype=bool)
    uniques = reps.tolist()
    if differ.any():
        extra: dict = {}
        rows = np.flatnonzero(differ)
        inv[rows] = np.fromiter((extra.setdefault(v, len(uniques) + len(extra)) for v in obj[rows]),
                                np.int64, rows.size)
        uniques += list(extra)
    return inv, uniques
