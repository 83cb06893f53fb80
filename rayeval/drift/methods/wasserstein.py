"""Wasserstein-1 distance (numeric), raw and normalised by the reference std.

``wasserstein`` matches ``scipy.stats.wasserstein_distance`` (no default threshold: its unit is
the feature's); ``wasserstein_normed`` is Evidently's ``wasserstein`` test: W1 divided by
``max(reference std (ddof=0), std_floor)``, drift at >= 0.1. Both are estimated from the
histograms' per-bin sums with a guaranteed ``error_bound`` (formulas in
:mod:`rayeval.drift._math`); a side with +-inf values is undefined (``nonfinite_values``)."""

import numpy as np

from rayeval.core.state import safe_div
from rayeval.drift import _math
from rayeval.drift.binning import NUMERIC
from rayeval.drift.methods import DriftMethod, Pair, register


def reference_std(h) -> np.ndarray:
    """float64 (G,) weighted population std (ddof=0) of the finite values of
    :class:`~rayeval.drift.histogram.Histograms` ``h``, from the exact shifted moments ``m1``,
    ``m2``; NaN for an empty row.

    Evidently's ``wasserstein`` test divides by ``max(np.std(reference), 0.001)``: ``np.std`` is
    ddof=0 (its pandas path; its Spark path uses ``Series.std()``, ddof=1, larger by a factor
    ``sqrt(n / (n - 1))``). We use ddof=0 and the same 0.001 floor (``std_floor``).
    """
    w = h.scalars["weight"] - h.scalars["nonfinite"]
    mean = safe_div(h.scalars["m1"], w)
    return np.sqrt(np.maximum(safe_div(h.scalars["m2"], w) - mean * mean, 0.0))


def wasserstein(pair: Pair) -> dict:
    """Wasserstein-1 distance of the reference and current distributions from their histograms,
    in the feature's units, with its error bound.
    """
    r, rt, c, ct = pair.shares
    ref, cur = pair.reference, pair.current
    lo, hi, point = pair.binning.bounds
    sr = np.divide(ref.sums, rt[:, None], out=np.zeros_like(r), where=rt[:, None] > 0)
    sc = np.divide(cur.sums, ct[:, None], out=np.zeros_like(c), where=ct[:, None] > 0)
    stat, bound = _math.wasserstein_binned(r, c, sr, sc, lo, hi, point)
    reason = np.full(pair.n, "", dtype=object)
    reason[(ref.scalars["nonfinite"] > 0) | (cur.scalars["nonfinite"] > 0)] = "nonfinite_values"
    return {"statistic": stat, "error_bound": bound, "reason": reason}


def wasserstein_normed(pair: Pair) -> dict:
    """Wasserstein-1 distance divided by the reference's standard deviation (Evidently's normed
    Wasserstein), unitless.
    """
    out = wasserstein(pair)
    norm = np.maximum(reference_std(pair.reference), pair.options.std_floor)
    return {**out, "statistic": out["statistic"] / norm, "error_bound": out["error_bound"] / norm}


register(DriftMethod("wasserstein", frozenset({NUMERIC}), test=False, default_threshold=None,
                     binned=False, function=wasserstein, reported=frozenset({NUMERIC}),
                     source="scipy.stats.wasserstein_distance"))
register(DriftMethod("wasserstein_normed", frozenset({NUMERIC}), test=False,
                     default_threshold=0.1, binned=False, function=wasserstein_normed,
                     reported=frozenset({NUMERIC}), source="Evidently wasserstein"))
