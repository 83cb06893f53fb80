"""Drift statistics between reference and current histograms, and per-feature data quality.

:func:`compare_rows` compares many (reference, current) histogram pairs at once (rows of
:class:`~rayeval.drift.histogram.Histograms`, the reference broadcast when it has one row);
:func:`compare` is the one-pair form. Methods: the registry :data:`METHODS` of
:mod:`rayeval.drift.methods` (one module per method; formulas in :mod:`rayeval.drift._math`):

============================  ===========  ========  =======  ====================================
method                        kinds        decision  default  matches
============================  ===========  ========  =======  ====================================
``ks``                        numeric      p < t     0.05     ``scipy.stats.ks_2samp``
``wasserstein``               numeric      s >= t    (none)   ``scipy.stats.wasserstein_distance``
``wasserstein_normed``        numeric      s >= t    0.1      Evidently ``wasserstein``: W1 /
                                                              max(ref std (ddof=0), ``std_floor``)
``chi2``                      both         p < t     0.05     ``scipy.stats.chi2_contingency``
``psi``                       both         s >= t    0.1      Evidently ``psi`` (eps 1e-4)
``jensen_shannon``            both         s >= t    0.1      ``scipy...jensenshannon(base=2)``
``hellinger``                 both         s >= t    0.1      Evidently ``hellinger``
``linf``                      both         s >= t    0.1      L-infinity (NannyML)
``unseen_share``              categorical  s >= t    0.05     share of current mass unseen in ref
``kl_div``                    both         s >= t    0.1      Evidently ``kl_div`` (only when set)
============================  ===========  ========  =======  ====================================

KS and Wasserstein estimate the raw-sample statistic and report a guaranteed ``error_bound``
(0 in the exact layout). PSI, Jensen-Shannon, Hellinger, L-infinity and chi-squared are statistics
*of the binned distributions* (as in Evidently/NannyML), so they are exact for the binning
(``error_bound`` 0); for numeric features they use at most ``n_coarse`` (10) groups of consecutive
bins of about equal reference mass (reference deciles, the usual PSI layout) unless the reference
occupies at most ``n_coarse`` bins. Jensen-Shannon here is base 2 (0..1); Evidently uses base e,
whose threshold 0.1 equals 0.1 / sqrt(ln 2) = 0.120 in base 2, so our default is a bit stricter.
Chi-squared is over the union of categories: categories unseen in the reference share the
"other" bin, which leaves the statistic unchanged (their reference count is 0), and each adds a
degree of freedom (up to 1,000 distinct per group; a lower bound beyond). It is Pearson's
statistic without Yates' correction by default (``yates=False``): scipy's
``chi2_contingency`` applies Yates only when dof == 1 (two categories), which would make the
two-category case differ from every other K; uncorrected 2x2 chi-squared equals the squared
two-proportion z statistic that Evidently uses for binary features. Weighted histograms enter
chi-squared and the KS p-value through Kish's effective sample size ``(sum w)^2 / sum w^2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rayeval.core.state import LOWER, MetricResult, StateMismatchError, safe_div
from rayeval.drift.binning import NUMERIC
from rayeval.drift.decision import LearnedThreshold, default_method
from rayeval.drift.histogram import Binning, Histograms
from rayeval.drift.methods import BOTH, METHODS, DriftMethod, Options, Pair  # noqa: F401
from rayeval.drift.methods.wasserstein import reference_std  # noqa: F401

Method = DriftMethod  # the former name


@dataclass(frozen=True)
class DriftResult:
    """One drift comparison.

    Attributes:
        method: a key of :data:`METHODS`.
        statistic: float; the method's statistic (KS D, W1, PSI, distance, chi-squared...); NaN
            when undefined.
        p_value: float in [0, 1] for tests (``ks``, ``chi2``), NaN for distances.
        threshold: float the decision used (upper learned threshold in learned mode).
        drifted: ``p_value < threshold`` for tests, ``statistic >= threshold`` for distances,
            ``statistic > threshold`` in learned mode; False when undefined.
        error_bound: guaranteed bound on ``|statistic - raw-sample statistic|`` (KS, Wasserstein),
            0 when exact or for binned statistics.
        smoothing: epsilon substituted for empty-bin proportions (PSI), else 0.
        undefined_reason: ``empty_reference``, ``empty_current``, ``nonfinite_values`` or "".
        n_reference, n_current: rows with a value on each side.
        decision: ``p_value`` or ``statistic``: what was compared with ``threshold``.
    """

    method: str
    statistic: float
    p_value: float
    threshold: float
    drifted: bool
    error_bound: float = 0.0
    smoothing: float = 0.0
    undefined_reason: str = ""
    n_reference: float = 0.0
    n_current: float = 0.0
    decision: str = "statistic"


def _broadcast(ref: Histograms, cur: Histograms) -> Histograms:
    if len(ref) == len(cur):
        return ref
    if len(ref) != 1:
        raise ValueError(f"Expected `reference` with 1 or {len(cur)} rows, got {len(ref)}.")
    return ref.take(np.zeros(len(cur), dtype=np.int64))


def statistics(reference: Histograms, current: Histograms, binning: Binning, method: str, *,
               eps: float = 1e-4, n_coarse: int | None = 10, base: float = 2.0,
               yates: bool = False, ks_p_method: str = "auto", std_floor: float = 1e-3
               ) -> dict[str, np.ndarray]:
    """Raw per-row arrays (G,) ``statistic``, ``p_value``, ``error_bound``, ``smoothing`` and
    ``reason`` (object) for one explicit ``method``; see :func:`compare_rows` for arguments."""
    m = METHODS.get(method)
    if m is None:
        raise ValueError(f"Expected `method` in {sorted(METHODS)} or 'auto', got {method!r}.")
    if binning.kind not in m.kinds:
        raise ValueError(f"Method {method!r} supports {sorted(m.kinds)} features, "
                         f"got {binning.kind}.")
    for name, h in (("reference", reference), ("current", current)):
        if h.binning_id != binning.binning_id:
            raise StateMismatchError(f"`{name}` histograms use binning {h.binning_id}, "
                                     f"expected {binning.binning_id}.")
    ref = _broadcast(reference, current)
    g = len(current)
    pair = Pair(ref, current, binning, Options(eps, n_coarse, base, yates, ks_p_method,
                                               std_floor))
    _, rt, _, ct = pair.shares
    got = m.function(pair)
    stat = np.array(got["statistic"], dtype=np.float64)
    pval = np.array(got.get("p_value", np.full(g, math.nan)), dtype=np.float64)
    bound = np.array(got.get("error_bound", np.zeros(g)), dtype=np.float64)
    smooth = np.array(got.get("smoothing", np.zeros(g)), dtype=np.float64)
    reason = np.array(got.get("reason", np.full(g, "", dtype=object)), dtype=object)
    reason[ct <= 0] = "empty_current"
    reason[rt <= 0] = "empty_reference"
    undefined = reason != ""
    stat[undefined], pval[undefined], bound[undefined] = math.nan, math.nan, 0.0
    smooth[undefined] = 0.0
    return {"statistic": stat, "p_value": pval, "error_bound": bound, "smoothing": smooth,
            "reason": reason, "n_reference": ref.scalars["rows"],
            "n_current": current.scalars["rows"]}


def compare_rows(reference: Histograms, current: Histograms, binning: Binning,
                 method: str | None = "auto", threshold: Any = None,
                 **options) -> list[DriftResult]:
    """Compare each row of ``current`` with the matching row of ``reference`` (or its only row).

    Args:
        reference: :class:`Histograms` with 1 or ``len(current)`` rows, same binning.
        current: :class:`Histograms` with G rows.
        binning: the layout both were built with.
        method: a key of :data:`METHODS`, or ``"auto"``/None for :func:`default_method` per row
            (by kind, reference rows and the binning's distinct count).
        threshold: float, a :class:`~rayeval.drift.thresholds.LearnedThreshold`, or None for the
            method's default.
        **options: ``eps`` (PSI smoothing, 1e-4), ``n_coarse`` (numeric binned methods, 10; None
            keeps every bin), ``base`` (Jensen-Shannon log base, 2), ``yates`` (False),
            ``ks_p_method`` (``auto``/``exact``/``asymp``), ``std_floor`` (1e-3).

    Returns:
        list of G :class:`DriftResult`, in ``current`` row order.

    Raises:
        ValueError: unknown method, method/kind mismatch, missing default threshold, a
            threshold with ``auto``, or row counts that do not broadcast.
        StateMismatchError: histograms of another binning.
    """
    if method in (None, "auto"):
        if threshold is not None:
            raise ValueError("Expected `threshold` None with method 'auto' (thresholds are "
                             f"method-specific), got {threshold!r}.")
        ref = _broadcast(reference, current)
        rows = ref.scalars["rows"]
        choice = [default_method(binning.kind, int(n), binning.n_distinct) for n in rows]
        out: list = [None] * len(current)
        for ch in set(choice):
            idx = [i for i, c in enumerate(choice) if c == ch]
            res = compare_rows(ref.take(idx), current.take(idx), binning, ch.method,
                               ch.threshold, **options)
            for i, r in zip(idx, res):
                out[i] = r
        return out
    m = METHODS.get(method)
    if m is None:
        raise ValueError(f"Expected `method` in {sorted(METHODS)} or 'auto', got {method!r}.")
    learned = isinstance(threshold, LearnedThreshold)
    if learned:
        thr, decision = float(threshold.upper), "statistic"
    else:
        thr = m.default_threshold if threshold is None else float(threshold)
        if thr is None:
            raise ValueError(f"Method {method!r} has no default threshold; pass `threshold`.")
        decision = "p_value" if m.test else "statistic"
    s = statistics(reference, current, binning, method, **options)
    with np.errstate(invalid="ignore"):
        if learned:
            drifted = s["statistic"] > thr
        elif m.test:
            drifted = s["p_value"] < thr
        else:
            drifted = s["statistic"] >= thr
    return [DriftResult(method, float(s["statistic"][i]), float(s["p_value"][i]), thr,
                        bool(drifted[i]), float(s["error_bound"][i]), float(s["smoothing"][i]),
                        s["reason"][i], float(s["n_reference"][i]), float(s["n_current"][i]),
                        decision) for i in range(len(current))]


def compare(reference: Histograms, current: Histograms, binning: Binning,
            method: str | None = "auto", threshold: Any = None, **options) -> DriftResult:
    """One pair: :func:`compare_rows` for one-row ``reference`` and ``current``.

    Raises:
        ValueError: if either has more than one row (and as :func:`compare_rows`).
    """
    if len(reference) != 1 or len(current) != 1:
        raise ValueError(f"Expected one-row histograms, got {len(reference)} and {len(current)} "
                         "rows; use compare_rows.")
    return compare_rows(reference, current, binning, method, threshold, **options)[0]


@dataclass(frozen=True)
class DataQuality:
    """Data quality of one feature in one group (weighted shares, NaN when not applicable).

    Attributes:
        key: group key.
        kind: ``numeric`` or ``categorical``.
        n_rows: total weight (values + missing + type errors).
        missing_rate, type_error_rate: shares of ``n_rows``.
        out_of_range_rate: numeric: share of values below the reference min or above its max.
        nonfinite_rate: numeric: share of values that are +-inf (also out of range).
        unseen_category_rate: categorical: share of values never seen in the reference.
        undefined_reason: ``empty`` when there are no rows.
    """

    key: Any
    kind: str
    n_rows: float
    missing_rate: float
    type_error_rate: float
    out_of_range_rate: float = math.nan
    nonfinite_rate: float = math.nan
    unseen_category_rate: float = math.nan
    undefined_reason: str = ""

    def results(self) -> list[MetricResult]:
        """The kind's rates as ``lower_is_better`` :class:`MetricResult` rows (NaN with reason
        ``empty`` when there is nothing to take a share of)."""
        names = ["missing_rate", "type_error_rate"] + (
            ["out_of_range_rate", "nonfinite_rate"] if self.kind == NUMERIC
            else ["unseen_category_rate"])
        out = []
        for n in names:
            v = getattr(self, n)
            out.append(MetricResult(self.key, n, v, LOWER, "empty" if math.isnan(v) else ""))
        return out


def data_quality(hist: Histograms, binning: Binning) -> list[DataQuality]:
    """Per row of ``hist``: missing, type-error, out-of-range/non-finite (numeric) or
    unseen-category (categorical) rates. Value-based rates are shares of the values present."""
    s = hist.scalars
    total = s["weight"] + s["missing"] + s["type_error"]
    miss, terr = safe_div(s["missing"], total), safe_div(s["type_error"], total)
    out = []
    for i, key in enumerate(hist.keys):
        reason = "" if total[i] > 0 else "empty"
        kw: dict = {}
        if binning.kind == NUMERIC:
            c = hist.counts[i]
            oor = c[0] + c[-1] if c.size > 1 else c[0]
            kw["out_of_range_rate"] = float(safe_div(oor, s["weight"][i]))
            kw["nonfinite_rate"] = float(safe_div(s["nonfinite"][i], s["weight"][i]))
        else:
            kw["unseen_category_rate"] = (
                float(safe_div(s["unseen"][i], s["weight"][i])) if binning.known_complete
                else math.nan)  # past the profile's capacity, rare reference values look unseen
        out.append(DataQuality(key, binning.kind, float(total[i]), float(miss[i]), float(terr[i]),
                               undefined_reason=reason, **kw))
    return out
