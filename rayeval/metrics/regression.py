"""Regression metrics per group from weighted sums, pairwise-combined moments and KLL sketches.

Formulas (weights ``w``, error ``e = prediction - target``, ``W = sum w``) and the scikit-learn
1.9 function each matches (``sklearn/metrics/_regression.py``):

- ``mean_error = sum w e / W``: the bias; positive means over-prediction (no sklearn function).
- ``mae = sum w |e| / W`` (``mean_absolute_error``), ``mse = sum w e^2 / W``
  (``mean_squared_error``), ``rmse = sqrt(mse)`` (``root_mean_squared_error``).
- ``r2 = 1 - sum w e^2 / sum w (y - ybar)^2`` (``r2_score``);
  ``explained_variance = 1 - Var_w(e) / Var_w(y)`` (``explained_variance_score``). The
  centred sums come from per-batch two-pass moments combined with Chan et al.'s pairwise update
  (see ``_math.py``), not from raw power sums.
- ``mape = sum_{y != 0} w |e| / |y| / sum_{y != 0} w`` (``mean_absolute_percentage_error`` on
  rows with a non-zero target), a fraction (0.1 = 10 %).
- ``smape = sum w 2|e| / (|p| + |y|) / W`` with ``0/0 := 0``, range [0, 2] (Makridakis 1993;
  Hyndman & Koehler, "Another look at measures of forecast accuracy", IJF 22(4), 2006).
- ``max_error = max |e|`` (``max_error``).
- ``median_absolute_error`` and ``p<100q>_absolute_error`` for each configured quantile ``q``:
  the ``q`` quantile of ``|e|`` from a KLL sketch (Karnin, Lang & Liberty, FOCS 2016; Apache
  DataSketches ``kll_doubles_sketch``), ``get_quantile(q, inclusive=True)``.

Ranges: ``r2`` and ``explained_variance`` in (-inf, 1] (``higher_is_better``); the error
metrics >= 0 (``lower_is_better``); ``mean_error`` any real (``neutral``: its sign matters).

Conventions:

- Rows with ``w == 0`` are valid and counted in ``n_rows`` but contribute nothing; ``max_error``
  and the quantiles use rows with ``w > 0``.
- Quantiles are **unweighted**: DataSketches 5.2's KLL has no weighted update. Their
  ``error_bound`` is a **rank** bound, not a value bound: the true normalized rank of the
  returned value is within ``error_bound`` of ``q`` (with ~99 % confidence, the sketch's
  ``normalized_rank_error(False)``). It is 0.0 while the sketch is exact (not in estimation
  mode); then the value equals ``np.quantile(|e|, q, method="inverted_cdf")``.
- Constant target (all targets with ``w > 0`` equal): ``r2`` and ``explained_variance`` are NaN
  with ``constant_target`` (scikit-learn's ``force_finite=True`` gives 1.0 for a perfect fit,
  else 0.0). Detected from the exact min and max of the target, not from a rounded variance.
- Zero targets are left out of ``mape`` (scikit-learn divides by ``max(|y|, eps)``, giving
  ~1e16-sized values); when every weighted target is zero, ``mape`` is NaN with ``zero_target``.
  :meth:`RegressionSpec.zero_target_counts` reports how many rows were left out.
- ``empty``: no valid rows or zero total weight; everything but ``n_rows`` is NaN.
- Invalid rows (missing = NaN, None or +-inf; negative or non-finite weight) are excluded and
  counted per group under the first matching reason of ``INVALID_REASONS``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from datasketches import kll_doubles_sketch

from rayeval.metrics._math import (combine_moments, compact_groups, first_reason,
                                   grouped_moments, weight_column, weight_problems)
from rayeval.metrics.base import (HIGHER, LOWER, NEUTRAL, Batch, GroupIndex, Key, MetricResult,
                                  StateMismatchError, common_rows, safe_div, union_keys)

INVALID_REASONS = ("missing_target", "missing_prediction", "negative_weight", "nonfinite_weight")
#: columns of ``RegressionState.sums`` (all weighted sums over valid rows)
SUMS = ("w", "w_abs_err", "w_sq_err", "w_ape", "w_nonzero_target", "w_smape")
#: columns of ``RegressionState.moments``: (mean, M2) of the target and of the error
MOMENTS = ("mean_y", "m2_y", "mean_e", "m2_e")


@dataclass(frozen=True)
class RegressionState:
    """Grouped sufficient statistics of :class:`RegressionSpec` (G groups).

    Attributes:
        keys: tuple of G unique group keys.
        rows: int64 (G, 2): valid rows, valid rows with a zero target.
        invalid: int64 (G, len(INVALID_REASONS)): excluded rows per reason.
        sums: float64 (G, len(SUMS)): additive weighted sums.
        moments: float64 (G, len(MOMENTS)): weighted means and centred sums of squares (weight
            ``sums[:, 0]``), combined pairwise.
        extrema: float64 (G, 3): max |e|, min y, max y over rows with w > 0 (-inf, inf, -inf
            when none).
        sketches: object (G,): serialized ``kll_doubles_sketch`` of |e| (bytes) or ``None``.
        sketch_k: the sketches' ``k`` (0 when the spec keeps no quantiles).
    """

    keys: tuple = ()
    rows: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    invalid: np.ndarray = field(
        default_factory=lambda: np.zeros((0, len(INVALID_REASONS)), np.int64))
    sums: np.ndarray = field(default_factory=lambda: np.zeros((0, len(SUMS))))
    moments: np.ndarray = field(default_factory=lambda: np.zeros((0, len(MOMENTS))))
    extrema: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    sketches: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    sketch_k: int = 0


def _numeric(batch: Batch, name: str, n: int) -> np.ndarray:
    """Required column ``name`` as float64 (n,) (None -> NaN). Raises KeyError when absent,
    TypeError/ValueError as :func:`~rayeval.metrics._math.weight_column`."""
    if batch.get(name) is None:
        raise KeyError(f"Expected column `{name}` in the batch, got columns {sorted(batch)}.")
    return weight_column(batch, n, name)


def _quantile_name(q: float) -> str:
    return "median_absolute_error" if q == 0.5 else f"p{q * 100:g}_absolute_error"


def _merge_sketch(a, b):
    if a is None:
        return b
    if b is None:
        return a
    sk = kll_doubles_sketch.deserialize(a)
    sk.merge(kll_doubles_sketch.deserialize(b))
    return sk.serialize()


@dataclass(frozen=True)
class RegressionSpec:
    """Error metrics of numeric predictions per group.

    Args:
        quantiles: quantile levels in (0, 1) of the absolute error to report (0.5 is named
            ``median_absolute_error``, ``q`` otherwise ``p{100 q}_absolute_error``); ``()`` keeps
            no sketches.
        sketch_k: KLL ``k`` in [8, 65535]: accuracy/size trade-off (200: ~1.3 % rank error).

    Batch columns: ``target`` (n,) and ``prediction`` (n,) numeric (NaN, None, +-inf = missing);
    optional ``weight`` (n,) float >= 0.

    Raises:
        ValueError: on invalid options.
    """

    quantiles: tuple = (0.5, 0.9, 0.99)
    sketch_k: int = 200

    def __post_init__(self) -> None:
        qs = tuple(float(q) for q in self.quantiles)
        if any(not 0.0 < q < 1.0 for q in qs) or len(set(qs)) != len(qs):
            raise ValueError(f"Expected unique `quantiles` in (0, 1), got {qs}.")
        object.__setattr__(self, "quantiles", qs)
        if not 8 <= int(self.sketch_k) <= 65535:
            raise ValueError(f"Expected `sketch_k` in [8, 65535], got {self.sketch_k}.")
        object.__setattr__(self, "sketch_k", int(self.sketch_k))

    @property
    def _k(self) -> int:
        return self.sketch_k if self.quantiles else 0

    # ---- contract -----------------------------------------------------------------------
    def zero(self) -> RegressionState:
        """The empty state (no groups); the two-sided identity of :meth:`merge`."""
        return RegressionState(sketch_k=self._k)

    def accumulate(self, state: RegressionState, batch: Batch,
                   groups: GroupIndex) -> RegressionState:
        """``state`` merged with the statistics of one batch.

        Sums and moments are vectorised (``np.bincount``); the sketches take one vector
        ``update`` per group present in the batch (one Python call per group, none per row).

        Raises:
            KeyError / TypeError / ValueError: missing, non-numeric or mis-shaped columns.
        """
        return self.merge(state, self.accumulate_many(batch, [groups])[0])

    def accumulate_many(self, batch: Batch, groupings: list[GroupIndex]) -> list[RegressionState]:
        """``[accumulate(zero(), batch, g) for g in groupings]`` with the row-level work
        (validation, errors) done once; raises as :meth:`accumulate`, and ValueError if the
        groupings are over different row counts."""
        if not groupings:
            return []
        n = common_rows(groupings)
        y = _numeric(batch, "target", n)
        p = _numeric(batch, "prediction", n)
        w = weight_column(batch, n)
        reason = first_reason([~np.isfinite(y), ~np.isfinite(p), *weight_problems(w, n)])
        ok = reason < 0
        bad = ~ok
        y, p = y[ok], p[ok]
        w = np.ones(y.size) if w is None else w[ok]
        e = p - y
        ae = np.abs(e)
        nz = y != 0
        den = np.abs(p) + np.abs(y)
        smape = np.divide(2.0 * ae, den, out=np.zeros_like(ae), where=den > 0)
        ape = np.divide(ae, np.abs(y), out=np.zeros_like(ae), where=nz)
        terms = [w * v for v in (ae, e * e, ape, nz, smape)]
        pos = w > 0
        ae_pos, y_pos = ae[pos], y[pos]
        out = []
        for groups in groupings:
            codes, keys = compact_groups(groups)
            g = len(keys)
            cv = codes[ok]
            w_y, mean_y, m2_y = grouped_moments(cv, g, y, w)
            _, mean_e, m2_e = grouped_moments(cv, g, e, w)
            sums = np.stack([w_y] + [np.bincount(cv, weights=t, minlength=g).astype(np.float64)
                                     for t in terms], axis=1)
            extrema = np.tile([-np.inf, np.inf, -np.inf], (g, 1))
            c_pos = cv[pos]
            np.maximum.at(extrema[:, 0], c_pos, ae_pos)
            np.minimum.at(extrema[:, 1], c_pos, y_pos)
            np.maximum.at(extrema[:, 2], c_pos, y_pos)
            rows = np.stack([np.bincount(cv, minlength=g), np.bincount(cv[~nz], minlength=g)],
                            axis=1)
            invalid = np.bincount(codes[bad] * len(INVALID_REASONS) + reason[bad],
                                  minlength=g * len(INVALID_REASONS)
                                  ).reshape(g, len(INVALID_REASONS))
            out.append(RegressionState(keys, rows.astype(np.int64), invalid.astype(np.int64),
                                       sums, np.stack([mean_y, m2_y, mean_e, m2_e], axis=1),
                                       extrema, self._sketch(c_pos, ae_pos, g), self._k))
        return out

    def _sketch(self, codes: np.ndarray, values: np.ndarray, g: int) -> np.ndarray:
        out = np.full(g, None, dtype=object)
        if not self.quantiles or not codes.size:
            return out
        # stable sort by group; on uint16 codes numpy uses a radix sort (same order, faster)
        order = np.argsort(codes.astype(np.uint16) if g <= 1 << 16 else codes, kind="stable")
        counts = np.bincount(codes, minlength=g)
        bounds = np.concatenate([[0], np.cumsum(counts)])
        vals = values[order]
        for i in np.flatnonzero(counts).tolist():
            sk = kll_doubles_sketch(self.sketch_k)
            sk.update(np.ascontiguousarray(vals[bounds[i]:bounds[i + 1]]))
            out[i] = sk.serialize()
        return out

    def merge(self, a: RegressionState, b: RegressionState) -> RegressionState:
        """Group-wise combination: sums add, moments combine pairwise (Chan et al.), extrema
        take max/min, sketches merge (a Python loop over the groups present in both states).

        Raises:
            StateMismatchError: the states' ``sketch_k`` differ.
        """
        if a.sketch_k != b.sketch_k:
            raise StateMismatchError(f"Cannot merge states with sketch_k {a.sketch_k} and "
                                     f"{b.sketch_k}.")
        if not a.keys:
            return b
        if not b.keys:
            return a
        keys, pa, pb = union_keys(a.keys, b.keys)
        g = len(keys)

        def add(x, y):
            out = np.zeros((g,) + x.shape[1:], dtype=x.dtype)
            out[pa] += x
            out[pb] += y
            return out

        sums = add(a.sums, b.sums)
        wa, wb = np.zeros(g), np.zeros(g)
        wa[pa], wb[pb] = a.sums[:, 0], b.sums[:, 0]
        ma, mb = np.zeros((g, len(MOMENTS))), np.zeros((g, len(MOMENTS)))
        ma[pa], mb[pb] = a.moments, b.moments
        moments = np.empty((g, len(MOMENTS)))
        for j in (0, 2):
            _, moments[:, j], moments[:, j + 1] = combine_moments(
                wa, ma[:, j], ma[:, j + 1], wb, mb[:, j], mb[:, j + 1])
        ext = np.tile([-np.inf, np.inf, -np.inf], (g, 1))
        ext[pa] = a.extrema
        b_arr = ext[pb]
        ext[pb] = np.stack([np.maximum(b_arr[:, 0], b.extrema[:, 0]),
                            np.minimum(b_arr[:, 1], b.extrema[:, 1]),
                            np.maximum(b_arr[:, 2], b.extrema[:, 2])], axis=1)
        sketches = np.full(g, None, dtype=object)
        sketches[pa] = a.sketches
        if self.quantiles:
            for j, i in enumerate(pb.tolist()):
                sketches[i] = _merge_sketch(sketches[i], b.sketches[j])
        return RegressionState(keys, add(a.rows, b.rows), add(a.invalid, b.invalid), sums,
                               moments, ext, sketches, a.sketch_k)

    def finalize(self, state: RegressionState) -> list[MetricResult]:
        """Metric values per group (names and conventions in the module docstring)."""
        if not state.keys:
            return []
        s = dict(zip(SUMS, state.sums.T))
        mo = dict(zip(MOMENTS, state.moments.T))
        w = s["w"]
        empty = ~(w > 0)
        constant = ~empty & ((state.extrema[:, 1] == state.extrema[:, 2]) | ~(mo["m2_y"] > 0))
        mse = safe_div(s["w_sq_err"], w)
        m2_y = np.where(constant | empty, 1.0, mo["m2_y"])
        no_nz = ~(s["w_nonzero_target"] > 0)
        zero_t = state.rows[:, 1] > 0
        cols = [
            ("mean_error", NEUTRAL, mo["mean_e"], None),
            ("mae", LOWER, safe_div(s["w_abs_err"], w), None),
            ("mse", LOWER, mse, None),
            ("rmse", LOWER, np.sqrt(mse), None),
            ("r2", HIGHER, 1.0 - s["w_sq_err"] / m2_y, (constant, "constant_target")),
            ("explained_variance", HIGHER, 1.0 - mo["m2_e"] / m2_y,
             (constant, "constant_target")),
            ("mape", LOWER, safe_div(s["w_ape"], s["w_nonzero_target"]),
             (no_nz, np.where(zero_t, "zero_target", "empty"))),
            ("smape", LOWER, safe_div(s["w_smape"], w), None),
            ("max_error", LOWER, state.extrema[:, 0], None),
        ]
        table = []
        for name, direction, val, undefined in cols:
            reason = np.where(empty, "empty", "")
            if undefined is not None:
                reason = np.where(~empty & undefined[0], undefined[1], reason)
            val = np.where(reason != "", np.nan, val)
            table.append((name, direction, val.tolist(), reason.tolist()))
        n_rows = state.rows[:, 0].tolist()
        out: list[MetricResult] = []
        for g, key in enumerate(state.keys):
            out.append(MetricResult(key, "n_rows", float(n_rows[g]), NEUTRAL))
            for name, direction, val, reason in table:
                out.append(MetricResult(key, name, val[g], direction, reason[g]))
            if self.quantiles:
                out.extend(self._quantiles(key, state.sketches[g], bool(empty[g])))
        return out

    def _quantiles(self, key: Key, blob, empty: bool) -> list[MetricResult]:
        if empty or blob is None:
            return [MetricResult(key, _quantile_name(q), math.nan, LOWER, "empty")
                    for q in self.quantiles]
        sk = kll_doubles_sketch.deserialize(blob)
        bound = sk.normalized_rank_error(False) if sk.is_estimation_mode() else 0.0
        return [MetricResult(key, _quantile_name(q), float(sk.get_quantile(q, True)), LOWER,
                             error_bound=bound) for q in self.quantiles]

    # ---- extra outputs ------------------------------------------------------------------
    def row_counts(self, state: RegressionState) -> dict[Key, float]:
        """Valid (counted) rows per group, unweighted."""
        return dict(zip(state.keys, state.rows[:, 0].astype(float).tolist()))

    def weight_sums(self, state: RegressionState) -> dict[Key, float]:
        """Total weight of valid rows per group (equals :meth:`row_counts` without weights)."""
        return dict(zip(state.keys, state.sums[:, 0].tolist()))

    def zero_target_counts(self, state: RegressionState) -> dict[Key, int]:
        """Valid rows per group whose target is 0 (left out of ``mape``)."""
        return dict(zip(state.keys, state.rows[:, 1].tolist()))

    def invalid_counts(self, state: RegressionState) -> dict[Key, dict[str, int]]:
        """Excluded rows per group and reason (every reason listed, zeros included); a row
        failing several checks counts once, under the first of ``INVALID_REASONS``."""
        return {k: dict(zip(INVALID_REASONS, row))
                for k, row in zip(state.keys, state.invalid.tolist())}
