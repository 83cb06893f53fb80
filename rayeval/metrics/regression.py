"""Regression metrics per group from weighted sums, pairwise-combined moments and quantile
histograms.

Formulas (weights ``w``, error ``e = prediction - target``, ``W = sum w``) and the scikit-learn
1.9 function each matches (``sklearn/metrics/_regression.py``):

- ``mean_signed_deviation = sum w e / W`` (named ``mean_error`` before 0.2): the bias; positive
  means over-prediction (no sklearn function).
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
  the weighted inverted-CDF ``q`` quantile of ``|e|`` (``numpy.quantile(|e|, q,
  method="inverted_cdf", weights=w)``) from a
  :class:`~rayeval.metrics.quantiles.GroupedLogHistogram` (DDSketch-style relative grid,
  deterministic and merge-order independent).

Ranges: ``r2`` and ``explained_variance`` in (-inf, 1] (``higher_is_better``); the error
metrics >= 0 (``lower_is_better``); ``mean_signed_deviation`` any real (``neutral``: its sign
matters).

Conventions:

- Rows with ``w == 0`` are valid and counted in ``n_rows`` but contribute nothing; ``max_error``
  and the quantiles use rows with ``w > 0``.
- Quantiles are weighted (rows with ``w > 0``). Their ``error_bound`` is a guaranteed
  **absolute value** bound,
  ``|value - exact| <= error_bound <= 2**-(quantile_bits + 1) * exact`` (0.39 % relative at
  the default 7 bits); 0.0 when the bucket, clipped to the group's exact
  ``[min |e|, max |e|]``, holds a single value. The same data gives the same quantiles
  whatever the batch split, merge order or run (no random compaction, unlike a KLL sketch). scikit-learn's
  ``median_absolute_error`` averages the two middle values for an even count; inverted-CDF takes
  the lower one.
- Constant target (all targets with ``w > 0`` equal): ``r2`` and ``explained_variance`` are NaN
  with ``constant_target`` (scikit-learn's ``force_finite=True`` gives 1.0 for a perfect fit,
  else 0.0). Detected from the exact min and max of the target, not from a rounded variance.
- Zero targets are left out of ``mape`` (scikit-learn divides by ``max(|y|, eps)``, giving
  ~1e16-sized values); when every weighted target is zero, ``mape`` is NaN with ``zero_target``.
  The metric ``n_rows_zero_target`` (and :meth:`RegressionSpec.zero_target_counts`) reports
  how many rows were left out.
- ``empty``: no valid rows or zero total weight; everything but ``n_rows`` is NaN.
- Invalid rows (missing = NaN, None or +-inf; negative or non-finite weight) are excluded and
  counted per group under the first matching reason of ``INVALID_REASONS``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from rayeval.metrics._math import (combine_moments, compact_groups, first_reason,
                                   grouped_moments, weight_column, weight_problems)
from rayeval.core.contract import MetricInfo, SpecBase
from rayeval.core.registry import register_family
from rayeval.core.state import (HIGHER, LOWER, NEUTRAL, Batch, GroupIndex, Key, MetricResult,
                                ResultColumns, StateMismatchError, common_rows, safe_div,
                                union_keys)
from rayeval.metrics.quantiles import GroupedLogHistogram, bucket_index

INVALID_REASONS = ("missing_target", "missing_prediction", "negative_weight", "nonfinite_weight")
#: columns of ``RegressionState.sums`` (all weighted sums over valid rows)
SUMS = ("w", "w_abs_err", "w_sq_err", "w_ape", "w_nonzero_target", "w_smape")
#: columns of ``RegressionState.moments``: (mean, M2) of the target and of the error
MOMENTS = ("mean_y", "m2_y", "mean_e", "m2_e")
#: ``RegressionState.extrema`` of a group without rows: max |e|, min y, max y, min |e|
_NO_EXTREMA = [-np.inf, np.inf, -np.inf, np.inf]


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
        extrema: float64 (G, 4): max |e|, min y, max y, min |e| over rows with w > 0 (-inf,
            inf, -inf, inf when none).
        abs_errors: weighted histogram of |e| per group (rows with w > 0) on the
            ``quantile_bits`` grid; empty when the spec keeps no quantiles.
    """

    keys: tuple = ()
    rows: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    invalid: np.ndarray = field(
        default_factory=lambda: np.zeros((0, len(INVALID_REASONS)), np.int64))
    sums: np.ndarray = field(default_factory=lambda: np.zeros((0, len(SUMS))))
    moments: np.ndarray = field(default_factory=lambda: np.zeros((0, len(MOMENTS))))
    extrema: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    abs_errors: GroupedLogHistogram = field(default_factory=lambda: GroupedLogHistogram(7))


def _numeric(batch: Batch, name: str, n: int) -> np.ndarray:
    """Required column ``name`` as float64 (n,) (None -> NaN). Raises KeyError when absent,
    TypeError/ValueError as :func:`~rayeval.metrics._math.weight_column`."""
    if batch.get(name) is None:
        raise KeyError(f"Expected column `{name}` in the batch, got columns {sorted(batch)}.")
    return weight_column(batch, n, name)


#: the scalar metrics and their directions, in output order (after ``n_rows``)
_SCALARS = (("mean_signed_deviation", NEUTRAL), ("mae", LOWER), ("mse", LOWER), ("rmse", LOWER),
            ("r2", HIGHER), ("explained_variance", HIGHER), ("mape", LOWER), ("smape", LOWER),
            ("max_error", LOWER))


def _quantile_name(q: float) -> str:
    return "median_absolute_error" if q == 0.5 else f"p{q * 100:g}_absolute_error"


@dataclass(frozen=True)
class RegressionSpec(SpecBase):
    """Error metrics of numeric predictions per group.

    Args:
        quantiles: quantile levels in (0, 1) of the absolute error to report (0.5 is named
            ``median_absolute_error``, ``q`` otherwise ``p{100 q}_absolute_error``); ``()`` keeps
            no histograms.
        quantile_bits: grid resolution in [1, 12] of the |e| histograms: quantiles within
            ``2**-(bits + 1)`` relative (7: 0.39 %), at most ``2**bits`` cells per group and
            power of two of |e|.

    Batch columns: ``target`` (n,) and ``prediction`` (n,) numeric (NaN, None, +-inf = missing);
    optional ``weight`` (n,) float >= 0.

    Raises:
        ValueError: on invalid options.
    """

    quantiles: tuple = (0.5, 0.9, 0.99)
    quantile_bits: int = 7

    def __post_init__(self) -> None:
        qs = tuple(float(q) for q in self.quantiles)
        if any(not 0.0 < q < 1.0 for q in qs) or len(set(qs)) != len(qs):
            raise ValueError(f"Expected unique `quantiles` in (0, 1), got {qs}.")
        object.__setattr__(self, "quantiles", qs)
        if not 1 <= int(self.quantile_bits) <= 12:
            raise ValueError(f"Expected `quantile_bits` in [1, 12], got {self.quantile_bits}.")
        object.__setattr__(self, "quantile_bits", int(self.quantile_bits))

    family = "regression"
    INPUTS = {"target": "numeric_target", "prediction": "numeric_prediction", "weight": "weight?"}

    def metrics(self) -> tuple[MetricInfo, ...]:
        """Declared metrics (see the module docstring); one ``*_absolute_error`` per quantile,
        named as :meth:`finalize` names it."""
        head = {"mae": 1, "rmse": 2, "mean_signed_deviation": 3, "r2": 4}
        return ((MetricInfo("n_rows", NEUTRAL, self.family, needs_labels=False),
                 # rows left out of mape because their target is 0
                 MetricInfo("n_rows_zero_target", NEUTRAL, self.family))
                + tuple(MetricInfo(name, d, self.family, headline=head.get(name, 0))
                        for name, d in _SCALARS)
                + tuple(MetricInfo(_quantile_name(q), LOWER, self.family, approximate=True)
                        for q in self.quantiles))

    # ---- contract -----------------------------------------------------------------------
    def zero(self) -> RegressionState:
        """The empty state (no groups); the two-sided identity of :meth:`merge`."""
        return RegressionState(abs_errors=GroupedLogHistogram(self.quantile_bits))

    def accumulate(self, state: RegressionState, batch: Batch,
                   groups: GroupIndex) -> RegressionState:
        """``state`` merged with the statistics of one batch.

        Sums and moments are vectorised (``np.bincount``); the |e| histograms take one sort of
        the batch's (group, bucket) cells.

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
        weighted = w is not None
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
        w_pos = w[pos] if weighted else None
        b_pos = bucket_index(ae_pos, self.quantile_bits) if self.quantiles else None
        out = []
        for groups in groupings:
            codes, keys = compact_groups(groups)
            g = len(keys)
            cv = codes[ok]
            w_y, mean_y, m2_y = grouped_moments(cv, g, y, w)
            _, mean_e, m2_e = grouped_moments(cv, g, e, w)
            sums = np.stack([w_y] + [np.bincount(cv, weights=t, minlength=g).astype(np.float64)
                                     for t in terms], axis=1)
            extrema = np.tile(_NO_EXTREMA, (g, 1))
            c_pos = cv[pos]
            np.maximum.at(extrema[:, 0], c_pos, ae_pos)
            np.minimum.at(extrema[:, 1], c_pos, y_pos)
            np.maximum.at(extrema[:, 2], c_pos, y_pos)
            np.minimum.at(extrema[:, 3], c_pos, ae_pos)
            rows = np.stack([np.bincount(cv, minlength=g), np.bincount(cv[~nz], minlength=g)],
                            axis=1)
            invalid = np.bincount(codes[bad] * len(INVALID_REASONS) + reason[bad],
                                  minlength=g * len(INVALID_REASONS)
                                  ).reshape(g, len(INVALID_REASONS))
            out.append(RegressionState(keys, rows.astype(np.int64), invalid.astype(np.int64),
                                       sums, np.stack([mean_y, m2_y, mean_e, m2_e], axis=1),
                                       extrema, self._histogram(c_pos, b_pos, w_pos)))
        return out

    def _histogram(self, codes: np.ndarray, buckets, weights) -> GroupedLogHistogram:
        if not self.quantiles:
            return GroupedLogHistogram(self.quantile_bits)
        return GroupedLogHistogram.from_buckets(codes, buckets, weights, self.quantile_bits)

    def merge(self, a: RegressionState, b: RegressionState) -> RegressionState:
        """Group-wise combination: sums add, moments combine pairwise (Chan et al.), extrema
        take max/min, |e| histograms add cell by cell.

        Raises:
            StateMismatchError: the states' histogram grids (``quantile_bits``) differ.
        """
        if a.abs_errors.bits != b.abs_errors.bits:
            raise StateMismatchError(f"Cannot merge states with quantile_bits "
                                     f"{a.abs_errors.bits} and {b.abs_errors.bits}.")
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
        ext = np.tile(_NO_EXTREMA, (g, 1))
        ext[pa] = a.extrema
        b_arr = ext[pb]
        ext[pb] = np.stack([np.maximum(b_arr[:, 0], b.extrema[:, 0]),
                            np.minimum(b_arr[:, 1], b.extrema[:, 1]),
                            np.maximum(b_arr[:, 2], b.extrema[:, 2]),
                            np.minimum(b_arr[:, 3], b.extrema[:, 3])], axis=1)
        hist = a.abs_errors.merge(b.abs_errors.remap(pb))  # a's groups keep positions 0..
        return RegressionState(keys, add(a.rows, b.rows), add(a.invalid, b.invalid), sums,
                               moments, ext, hist)

    def finalize(self, state: RegressionState) -> list[MetricResult]:
        """Metric values per group (names and conventions in the module docstring)."""
        return self.finalize_columns(state).results()

    def finalize_columns(self, state: RegressionState) -> ResultColumns:
        """The values of :meth:`finalize` as columns (:class:`ResultColumns`)."""
        out = ResultColumns(state.keys)
        if not state.keys:
            return out
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
            ("mean_signed_deviation", mo["mean_e"], None),
            ("mae", safe_div(s["w_abs_err"], w), None),
            ("mse", mse, None),
            ("rmse", np.sqrt(mse), None),
            ("r2", 1.0 - s["w_sq_err"] / m2_y, (constant, "constant_target")),
            ("explained_variance", 1.0 - mo["m2_e"] / m2_y,
             (constant, "constant_target")),
            ("mape", safe_div(s["w_ape"], s["w_nonzero_target"]),
             (no_nz, np.where(zero_t, "zero_target", "empty"))),
            ("smape", safe_div(s["w_smape"], w), None),
            ("max_error", state.extrema[:, 0], None),
        ]
        out.add("n_rows", state.rows[:, 0].astype(np.float64), NEUTRAL)
        # rows left out of mape (target 0), reported next to it in the metrics table
        out.add("n_rows_zero_target", state.rows[:, 1].astype(np.float64), NEUTRAL)
        direction_of = dict(_SCALARS)
        for name, val, undefined in cols:
            direction = direction_of[name]
            reason = np.where(empty, "empty", "")
            if undefined is not None:
                reason = np.where(~empty & undefined[0], undefined[1], reason)
            out.add(name, np.where(reason != "", np.nan, val), direction, reason)
        if self.quantiles:
            g = len(state.keys)
            qv, qb = state.abs_errors.quantiles(g, self.quantiles, state.extrema[:, 3],
                                                state.extrema[:, 0])
            for j, q in enumerate(self.quantiles):
                undefined = empty | np.isnan(qv[:, j])
                out.add(_quantile_name(q), np.where(undefined, np.nan, qv[:, j]), LOWER,
                        np.where(undefined, "empty", ""), np.where(undefined, 0.0, qb[:, j]))
        return out

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


register_family("regression", ("regression",),
                lambda task: RegressionSpec(quantiles=tuple(task.quantiles)),
                lambda task: {"target": task.label, "prediction": task.prediction})
