"""Drift: reference-fixed binnings, mergeable histograms, drift statistics (pure numpy).

Two passes (the engine does the I/O):

1. over the reference, :class:`NumericProfileSpec` / :class:`CategoricalProfileSpec` build
   mergeable profiles; ``spec.binning(state, key)`` fixes a :class:`NumericBinning` /
   :class:`CategoricalBinning` from the reference alone;
2. :class:`HistogramSpec` accumulates sparse grouped histograms with that binning over reference
   and current data; ``spec.table(state, keys)`` gives dense :class:`Histograms`.

Then :func:`compare` / :func:`compare_rows` compute :class:`DriftResult` statistics,
:func:`data_quality` the per-feature quality rates, :func:`default_method`,
:func:`learned_threshold` and :func:`dataset_drift` the decisions. Each drift method is one
module of :mod:`rayeval.drift.methods`, registered in :data:`METHODS`.
"""

from rayeval.drift.binning import CategoricalBinning, Factorized, NumericBinning, factorize
from rayeval.drift.compare import (
    DataQuality, DriftResult, Method, compare, compare_rows, data_quality, reference_std,
    statistics,
)
from rayeval.drift.methods import METHODS, DriftMethod, register, reported_methods
from rayeval.drift.histogram import HistogramSpec, HistogramState, Histograms, histogram
from rayeval.drift.profile import (
    CategoricalProfileSpec, CategoricalProfileState, NumericProfileSpec, NumericProfileState,
)
from rayeval.drift.thresholds import (
    PSI_BANDS, DatasetDrift, LearnedThreshold, MethodChoice, dataset_drift, default_method,
    learned_threshold, psi_band,
)

__all__ = [
    "CategoricalBinning", "CategoricalProfileSpec", "CategoricalProfileState", "DataQuality",
    "DatasetDrift", "DriftMethod", "DriftResult", "Factorized", "HistogramSpec", "HistogramState", "Histograms",
    "LearnedThreshold", "METHODS", "Method", "MethodChoice", "NumericBinning",
    "NumericProfileSpec", "NumericProfileState", "PSI_BANDS", "compare", "compare_rows",
    "data_quality", "dataset_drift", "default_method", "factorize", "histogram",
    "learned_threshold", "psi_band", "reference_std", "register", "reported_methods",
    "statistics",
]
