"""Default methods and thresholds, learned thresholds, and dataset-level drift.

Defaults follow Evidently's ``get_default_stattest`` (anchors: reference size 1000, five values):

=====================  ============================  =========================================
reference rows         numeric                       categorical (and numeric with <= 5 values)
=====================  ============================  =========================================
<= 1000                ``ks``, p < 0.05               ``chi2``, p < 0.05
> 1000                 ``wasserstein_normed`` >= 0.1  ``jensen_shannon`` >= 0.1
=====================  ============================  =========================================

Differences from Evidently: the distinct-value count comes from the reference binning alone (not
reference and current pooled), and a numeric feature counts as few-valued only when its values
repeat (``n_distinct < n_reference``), so a 1-5 row continuous reference still gets KS; binary
features use uncorrected chi-squared, which equals Evidently's two-proportion z-test;
Jensen-Shannon is in base 2 (see :mod:`rayeval.drift.compare`).
PSI bands (Siddiqi 2006, common credit-risk practice): < 0.1 stable, 0.1-0.2 moderate, > 0.2 major.

Measured at these defaults through the full two-pass pipeline (``tests/test_drift_synthetic.py``,
200 seeds, reference and current of equal size; the binomial sd of a 5% rate over 200 seeds is
1.5%): false positive rates with no shift: numeric N(0, 1), 500 rows, ``ks``: 0.02 (scipy's own
``ks_2samp`` gives the same p-values: the exact test is conservative); 5000 rows,
``wasserstein_normed``: 0.0 (null statistic mean 0.026, max 0.074); categorical (6 categories),
500 rows, ``chi2``: 0.06; 5000 rows, ``jensen_shannon``: 0.0 (null mean 0.019, max 0.039).
Power: a 0.5-std mean shift and a category-mix change (0.3 -> 0.2 and 0.05 -> 0.15) are flagged
in 200 of 200 seeds at both sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from rayeval.drift.compare import DriftResult, statistics
from rayeval.drift.decision import (FEW_VALUES, SMALL_REFERENCE, LearnedThreshold,  # noqa: F401
                                    MethodChoice, default_method)
from rayeval.drift.histogram import Binning, Histograms
from rayeval.drift.methods import METHODS

PSI_BANDS = (0.1, 0.2)


def psi_band(value: float) -> str:
    """PSI band: ``stable`` (< 0.1), ``moderate`` (0.1 to 0.2), ``major`` (>= 0.2), or
    ``undefined`` for NaN."""
    if math.isnan(value):
        return "undefined"
    return "stable" if value < PSI_BANDS[0] else "moderate" if value < PSI_BANDS[1] else "major"


def learned_threshold(chunks: Histograms, binning: Binning, method: str, k_std: float = 3.0,
                      **options) -> LearnedThreshold:
    """Threshold ``mean +- k_std * std`` of the statistic of each reference chunk against the
    whole reference (the sum of the chunks), as NannyML's standard-deviation thresholds.

    Args:
        chunks: :class:`Histograms`, one row per reference chunk (e.g. keyed by chunk index);
            use chunks of about the size of the windows that will be monitored.
        binning: their layout; method: a key of ``METHODS`` (tests use their statistic, e.g.
            KS D, not the p-value); k_std: width in standard deviations (> 0).
        **options: as :func:`~rayeval.drift.compare.compare_rows`.

    Raises:
        ValueError: fewer than 2 chunks with a defined statistic, or ``k_std <= 0``.

    Measured (N(0, 1) reference of 20,000 rows in 20 chunks of 1000, 400 independent 1000-row
    windows per method): false positive rate 0.015 (``jensen_shannon``), 0.013 (``ks``), 0.043
    (``psi``), 0.038 (``wasserstein_normed``); a 0.5-std shift flagged every time. Chunks are part
    of the whole reference (as in NannyML), so an independent window looks slightly further away.
    """
    if not k_std > 0:
        raise ValueError(f"Expected `k_std` > 0, got {k_std}.")
    if method not in METHODS:
        raise ValueError(f"Expected `method` in {sorted(METHODS)}, got {method!r}.")
    s = statistics(chunks.total(), chunks, binning, method, **options)["statistic"]
    s = s[np.isfinite(s)]
    if s.size < 2:
        raise ValueError(f"Expected at least 2 reference chunks with a defined {method} "
                         f"statistic, got {s.size}.")
    mean, std = float(np.mean(s)), float(np.std(s))
    return LearnedThreshold(method, mean, std, max(mean - k_std * std, 0.0), mean + k_std * std,
                            int(s.size))


@dataclass(frozen=True)
class DatasetDrift:
    """Dataset-level drift verdict.

    Attributes:
        n_features: results given; n_defined: those with a defined statistic.
        n_drifted: defined results flagged as drifted.
        share_drifted: ``n_drifted / n_defined`` (NaN when none is defined).
        threshold: share at or above which the dataset drifted (Evidently ``drift_share``).
        drifted: ``share_drifted >= threshold`` (False when undefined).
        undefined_reason: ``empty`` when no result is defined, else "".
    """

    n_features: int
    n_defined: int
    n_drifted: int
    share_drifted: float
    threshold: float
    drifted: bool
    undefined_reason: str = ""


def dataset_drift(results: Iterable[DriftResult], threshold: float = 0.5) -> DatasetDrift:
    """Share of drifted features among the defined ones, against ``threshold`` (default 0.5,
    Evidently's ``drift_share``; drift when the share is >= threshold).

    Raises:
        ValueError: if ``threshold`` is not in (0, 1].
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"Expected `threshold` in (0, 1], got {threshold}.")
    results = list(results)
    defined = [r for r in results if not r.undefined_reason]
    n_drift = sum(r.drifted for r in defined)
    if not defined:
        return DatasetDrift(len(results), 0, 0, math.nan, threshold, False, "empty")
    share = n_drift / len(defined)
    return DatasetDrift(len(results), len(defined), n_drift, share, threshold, share >= threshold)
