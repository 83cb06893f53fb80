"""Pass 2: sparse, mergeable, grouped histograms over a reference-fixed binning.

:class:`HistogramSpec` follows the grouped-state contract of :mod:`rayeval.metrics.base`. Its
state keeps per-group scalars densely (G,) and the bins *sparsely* (only occupied ``(group, bin)``
cells), so a batch's partial state is bounded by its own row count, not by slices x bins
(DESIGN section 7). The fan-out is one ``np.bincount`` over ``group * B + bin`` (dense cell
space) or one ``np.unique`` over it (huge cell space, see :func:`rayeval.drift.profile.cell_sums`).

Batch columns:
    ``value`` (n,): numeric (float64-convertible, NaN = missing) or categorical (hashables,
    ``None``/NaN = missing, or a :class:`~rayeval.drift.binning.Factorized` column), per the
    binning's kind;
    ``weight`` (n,), optional: float >= 0;
    ``type_error`` (n,), optional: bool, rows whose raw value failed to parse (counted, excluded).

Per-group scalars (float64 weighted sums unless noted): ``rows`` (int64, rows with a value),
``weight``, ``w2`` (sum of squared weights, for Kish's effective sample size), ``missing``,
``type_error``; numeric: ``nonfinite`` (+-inf values; they sit in the under/overflow bins), ``m1``
and ``m2`` (sums of ``w*(x-c)`` and ``w*(x-c)**2`` over finite values, ``c`` = the binning's
``center``); categorical: ``unseen`` (values never seen in the reference; also counted in
``other``; the distinct unseen categories themselves are kept too, up to
:data:`UNSEEN_CAP` per group, for chi-squared's degrees of freedom). Per-cell arrays: ``count``
(weighted); numeric also ``sum``, the weighted sum of
``x - anchor`` of the finite values (``anchor`` = the bin's finite bound, see
:attr:`NumericBinning.anchors`), which makes Wasserstein bounds tight and out-of-range exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from rayeval.drift.binning import CategoricalBinning, NumericBinning, factorize
from rayeval.drift._columns import _numeric_column, _weights, cell_sums, present_groups
from rayeval.core.contract import SpecBase
from rayeval.core.state import (
    GroupIndex, KeyedArrays, MetricResult, StateMismatchError, merge_keyed, union_keys,
)

Binning = NumericBinning | CategoricalBinning
NUMERIC_SCALARS = ("rows", "weight", "w2", "missing", "type_error", "nonfinite", "m1", "m2")
CATEGORICAL_SCALARS = ("rows", "weight", "w2", "missing", "type_error", "unseen")


@dataclass(frozen=True, eq=False)
class HistogramState:
    """Grouped sparse histogram state (treat as immutable).

    Attributes:
        binning_id: the layout the counts refer to; states of different layouts never merge.
        n_bins: ``B``.
        scalars: :class:`KeyedArrays` of (G,) per-group scalars (module docstring).
        cell: int64 (nnz,), sorted unique ``g * B + b`` (``g`` = position in ``scalars.keys``).
        cells: name -> float64 (nnz,) per-cell sums (``count``; numeric also ``sum``).
    """

    binning_id: str
    n_bins: int
    scalars: KeyedArrays
    cell: np.ndarray
    cells: Mapping[str, np.ndarray]
    #: categorical: group position -> the distinct categories unseen in the reference met with
    #: positive weight (at most :data:`UNSEEN_CAP`, the smallest by type name and ``repr``),
    #: for the degrees of freedom of chi-squared over the union of categories
    unseen_values: Mapping[int, frozenset] = field(default_factory=dict)

    @property
    def keys(self) -> tuple:
        return self.scalars.keys


#: distinct unseen categories kept per group; beyond it their count is a lower bound
UNSEEN_CAP = 1000


def _cap(values) -> frozenset:
    """``values`` as a frozenset of at most :data:`UNSEEN_CAP` members, the smallest by
    ``(type name, repr)``: capping a union of capped sets gives the cap of the union, so the
    kept set does not depend on the merge order."""
    if len(values) <= UNSEEN_CAP:
        return frozenset(values)
    return frozenset(sorted(values, key=lambda v: (type(v).__name__, repr(v)))[:UNSEEN_CAP])


def _merge_unseen(a: HistogramState, pa_: np.ndarray, b: HistogramState, pb: np.ndarray) -> dict:
    """The unseen-category sets of two states, by their positions in the merged keys."""
    if not a.unseen_values and not b.unseen_values:
        return {}
    out: dict[int, set] = {}
    for st, pos in ((a, pa_), (b, pb)):
        for g, vals in st.unseen_values.items():
            out.setdefault(int(pos[g]), set()).update(vals)
    return {g: _cap(v) for g, v in out.items()}


@dataclass(frozen=True, eq=False)
class Histograms:
    """Dense view of some groups' histograms, the input of every drift statistic.

    Attributes:
        binning_id: layout id (checked by :func:`rayeval.drift.compare.compare`).
        keys: tuple (G,) of group keys.
        counts: float64 (G, B) weighted bin counts.
        sums: float64 (G, B) per-bin sums of ``x - anchor`` (numeric), else ``None``.
        scalars: name -> float64 (G,) per-group scalars (see module docstring).
    """

    binning_id: str
    keys: tuple
    counts: np.ndarray
    sums: np.ndarray | None
    scalars: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.keys)

    def take(self, positions: Sequence[int], keys: Sequence | None = None) -> "Histograms":
        """Rows at ``positions`` (int), optionally re-keyed."""
        p = np.asarray(positions, dtype=np.int64)
        keys = tuple(self.keys[i] for i in p) if keys is None else tuple(keys)
        return Histograms(self.binning_id, keys, self.counts[p],
                          None if self.sums is None else self.sums[p],
                          {k: v[p] for k, v in self.scalars.items()})

    def __getitem__(self, key) -> "Histograms":
        """The one-row histogram of group ``key``.

        Raises:
            KeyError: if ``key`` is absent.
        """
        return self.take([self.keys.index(key)])

    def total(self, key=("total",)) -> "Histograms":
        """One row: the sum of all rows (histograms are additive), keyed ``key``."""
        return Histograms(self.binning_id, (key,), self.counts.sum(0, keepdims=True),
                          None if self.sums is None else self.sums.sum(0, keepdims=True),
                          {k: (v.max(0, keepdims=True) if k == "unseen_distinct"  # lower bound
                               else v.sum(0, keepdims=True)) for k, v in self.scalars.items()})

    @property
    def n_eff(self) -> np.ndarray:
        """float64 (G,) Kish effective sample size ``weight**2 / w2`` (= rows when unweighted)."""
        w, w2 = self.scalars["weight"], self.scalars["w2"]
        return np.divide(w * w, w2, out=np.zeros_like(w), where=w2 > 0)

    def unweighted(self) -> np.ndarray:
        """bool (G,): every weight was 1 (then exact small-sample p-values apply)."""
        r = self.scalars["rows"]
        return (self.scalars["weight"] == r) & (self.scalars["w2"] == r)


@dataclass(frozen=True)
class HistogramSpec(SpecBase):
    """Grouped histograms of one feature over a fixed ``binning``.

    Args:
        binning: :class:`NumericBinning` or :class:`CategoricalBinning` (from the reference).
    """

    binning: Binning

    family = "drift_histogram"

    def inputs(self) -> dict:
        return {"value": "numeric_value" if self.numeric else "category_value",
                "weight": "weight?", "type_error": "flag?"}

    @property
    def numeric(self) -> bool:
        return isinstance(self.binning, NumericBinning)

    def _names(self) -> tuple[tuple, tuple]:
        if self.numeric:
            return NUMERIC_SCALARS, ("count", "sum")
        return CATEGORICAL_SCALARS, ("count",)

    def zero(self) -> HistogramState:
        _, cells = self._names()
        return HistogramState(self.binning.binning_id, self.binning.n_bins, KeyedArrays(),
                              np.zeros(0, np.int64), {c: np.zeros(0) for c in cells})

    def accumulate(self, state: HistogramState, batch: Mapping[str, np.ndarray],
                   groups: GroupIndex) -> HistogramState:
        """``state`` merged with the histograms of one batch (columns in the module docstring).

        Raises:
            ValueError: on a missing/malformed ``value``, ``weight`` or ``type_error`` column.
            StateMismatchError: if ``state`` belongs to another binning.
        """
        groups, _ = present_groups(groups)
        n, g, codes = groups.n_rows, groups.n_groups, groups.codes
        w = _weights(batch, n)  # None: every weight is 1 (sums are then plain counts)
        te = np.zeros(n, dtype=bool)
        if batch.get("type_error") is not None:
            te = np.asarray(batch["type_error"], dtype=bool)
            if te.shape != (n,):
                raise ValueError(f"Expected `type_error` of shape ({n},), got {te.shape}.")
        if self.numeric:
            x = _numeric_column(batch, n)
            missing = np.isnan(x) & ~te
        else:
            if "value" not in batch:
                raise ValueError(f"Expected batch column `value`, got columns {sorted(batch)}.")
            vcodes, uniques, missing = factorize(batch["value"])
            if vcodes.size != n:
                raise ValueError(f"Expected `value` of shape ({n},), got ({vcodes.size},).")
            missing = missing & ~te
        valid = ~missing & ~te
        every = bool(valid.all())

        def pick(a: np.ndarray) -> np.ndarray:  # the valid rows (no copy when all are)
            return a if every else a[valid]

        def wsum(keys: np.ndarray, weights: np.ndarray | None, mask: np.ndarray) -> np.ndarray:
            """float64 (G,): ``weights`` (``None``: 1 per row) of the ``mask`` rows per group."""
            return np.bincount(keys[mask], None if weights is None else weights[mask],
                               g).astype(np.float64, copy=False)

        cv = pick(codes)
        wv = None if w is None else pick(w)
        scal = {"missing": wsum(codes, w, missing), "type_error": wsum(codes, w, te)}
        b_cells = self.binning.n_bins
        if self.numeric:
            xv = pick(x)
            bins = self.binning.assign(xv)
            fin = np.isfinite(xv)
            finite = bool(fin.all())
            xf, cf, bf = (xv, cv, bins) if finite else (xv[fin], cv[fin], bins[fin])
            dx = xf - self.binning.center
            wdx = dx if w is None else (wv if finite else wv[fin]) * dx  # w * dx == dx for w = 1
            scal["nonfinite"] = np.zeros(g) if finite else wsum(cv, wv, ~fin)
            scal["m1"] = np.bincount(cf, wdx, g)
            scal["m2"] = np.bincount(cf, wdx * dx, g)
            dev = xf - self.binning.anchors[bf]
            if not finite:  # +-inf rows carry no value sum
                dev_all = np.zeros(xv.size)
                dev_all[fin] = dev
                dev = dev_all
            per_row = {"count": wv, "sum": dev if w is None else wv * dev}
        else:
            ub, uu = self.binning.assign_unique(uniques)
            vc = pick(vcodes)
            bins, unseen = ub[vc], uu[vc]
            scal["unseen"] = wsum(cv, wv, unseen)
            per_row = {"count": wv}
            unseen_values = {}
            if uu.any():
                met = unseen if wv is None else unseen & (wv > 0)
                pairs = np.unique(cv[met] * len(uniques) + vc[met])
                sets: dict[int, set] = {}
                for g_, u_ in zip(*(a.tolist() for a in np.divmod(pairs, len(uniques)))):
                    sets.setdefault(g_, set()).add(uniques[u_])
                unseen_values = {g_: _cap(v) for g_, v in sets.items()}
        cell, cells = cell_sums(cv * b_cells + bins, per_row, g * b_cells)
        if w is None:  # unweighted: the cell counts add up to the group row counts exactly
            rows = np.bincount(cell // b_cells, cells["count"], g).astype(np.int64)
            scal.update(rows=rows, weight=rows.astype(np.float64), w2=rows.astype(np.float64))
        else:
            scal.update(rows=np.bincount(cv, minlength=g).astype(np.int64),
                        weight=np.bincount(cv, wv, g), w2=np.bincount(cv, wv * wv, g))
        cells["count"] = cells["count"].astype(np.float64, copy=False)
        scal = {name: scal[name] for name in self._names()[0]}
        part = HistogramState(self.binning.binning_id, b_cells, KeyedArrays(groups.keys, scal),
                              cell, cells, {} if self.numeric else unseen_values)
        return self.merge(state, part)

    def merge(self, a: HistogramState, b: HistogramState) -> HistogramState:
        """Add two states group by group and cell by cell; inputs are not mutated.

        Raises:
            StateMismatchError: if the states use different binnings.
        """
        for s in (a, b):
            if s.binning_id != self.binning.binning_id:
                raise StateMismatchError(f"Cannot merge histograms of binning {s.binning_id} with "
                                         f"spec binning {self.binning.binning_id}.")
        if not a.keys:
            return b
        if not b.keys:
            return a
        _, pa, pb = union_keys(a.keys, b.keys)
        nb = a.n_bins
        flat = np.concatenate([pa[a.cell // nb] * nb + a.cell % nb,
                               pb[b.cell // nb] * nb + b.cell % nb])
        cell, inv = np.unique(flat, return_inverse=True)
        cells = {k: np.bincount(inv, np.concatenate([a.cells[k], b.cells[k]]), cell.size)
                 for k in a.cells}
        return HistogramState(a.binning_id, nb, merge_keyed(a.scalars, b.scalars), cell, cells,
                              _merge_unseen(a, pa, b, pb))

    def finalize(self, state: HistogramState) -> list[MetricResult]:
        """The state as results (for the mergeability harness and debugging): per group one
        result per scalar, and per occupied bin ``bin_count`` (and ``bin_sum``) with
        ``class_label`` = bin index."""
        out = []
        for i, key in enumerate(state.keys):
            out += [MetricResult(key, name, float(arr[i]))
                    for name, arr in state.scalars.arrays.items()]
        g, b = np.divmod(state.cell, state.n_bins)
        for name, arr in state.cells.items():
            out += [MetricResult(state.keys[gi], "bin_" + name, v, class_label=bi)
                    for gi, bi, v in zip(g.tolist(), b.tolist(), arr.tolist())]
        return out

    def table(self, state: HistogramState, keys: Sequence | None = None) -> Histograms:
        """Dense :class:`Histograms` of ``keys`` (default: all groups, in state order); a key
        absent from the state gets an all-zero (empty) row."""
        names, cell_names = self._names()
        keys = state.keys if keys is None else tuple(keys)
        if len(set(keys)) != len(keys):
            raise ValueError("Expected unique `keys`, got repeated keys.")
        pos = state.scalars.index()
        nb, g, gs = self.binning.n_bins, len(keys), len(state.keys)
        rows = np.array([pos.get(k, gs) for k in keys], dtype=np.int64)  # gs: the empty row
        out_row = np.full(gs + 1, -1, dtype=np.int64)
        out_row[rows] = np.arange(g)
        gi, bi = np.divmod(state.cell, nb)
        sel = out_row[gi] >= 0
        dense = {}
        for c in cell_names:
            dense[c] = np.zeros((g, nb))
            dense[c][out_row[gi[sel]], bi[sel]] = state.cells[c][sel]
        scal = {}
        for name in names:
            arr = state.scalars.arrays.get(name, np.zeros(gs))
            scal[name] = np.append(np.asarray(arr, dtype=np.float64), 0.0)[rows]
        if not self.numeric:
            scal["unseen_distinct"] = np.array(
                [len(state.unseen_values.get(int(r), ())) for r in rows], dtype=np.float64)
        return Histograms(state.binning_id, keys, dense["count"], dense.get("sum"), scal)


def histogram(binning: Binning, values, weights=None, type_error=None, key=("all",)) -> Histograms:
    """One-row :class:`Histograms` of ``values`` (n,) with optional ``weights``/``type_error``
    masks (n,): a convenience over :class:`HistogramSpec` for a single group."""
    n = len(values)
    spec = HistogramSpec(binning)
    batch = {"value": values, "weight": weights, "type_error": type_error}
    state = spec.accumulate(spec.zero(), batch, GroupIndex.single(n, key))
    return spec.table(state, [key])

