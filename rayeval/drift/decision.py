"""Which method decides a column's drift, and with which threshold (no statistics computed here).

Defaults follow Evidently's ``get_default_stattest`` (see :mod:`rayeval.drift.thresholds` for
the table and the measured false positive rates); :class:`LearnedThreshold` is the NannyML-style
threshold :func:`rayeval.drift.thresholds.learned_threshold` learns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from rayeval.drift.binning import CATEGORICAL, NUMERIC

SMALL_REFERENCE = 1000  # Evidently: reference rows at which defaults switch from tests to distances
FEW_VALUES = 5  # numeric features with at most this many distinct reference values act categorical


class MethodChoice(NamedTuple):
    """A method name (key of :data:`~rayeval.drift.methods.METHODS`) and its threshold."""

    method: str
    threshold: float


def default_method(kind: str, n_reference: int, n_distinct: int | None = None) -> MethodChoice:
    """Evidently-style default method and threshold (table in :mod:`rayeval.drift.thresholds`).

    Args:
        kind: ``numeric`` or ``categorical``.
        n_reference: rows with a value in the reference (of the group being compared).
        n_distinct: distinct reference values (numeric exact layout), None when many. A numeric
            feature is treated as categorical when ``n_distinct <= 5`` and ``n_distinct <
            n_reference``.

    Raises:
        ValueError: on an unknown ``kind`` or negative ``n_reference``.
    """
    if kind not in (NUMERIC, CATEGORICAL):
        raise ValueError(f"Expected `kind` in ['categorical', 'numeric'], got {kind!r}.")
    if n_reference < 0:
        raise ValueError(f"Expected `n_reference` >= 0, got {n_reference}.")
    small = n_reference <= SMALL_REFERENCE
    # a numeric reference acts categorical when it has few values that repeat (a tiny sample of a
    # continuous feature, all values distinct, keeps KS)
    cat_like = kind == CATEGORICAL or (n_distinct is not None and n_distinct <= FEW_VALUES
                                       and n_distinct < n_reference)
    if cat_like:
        return MethodChoice("chi2", 0.05) if small else MethodChoice("jensen_shannon", 0.1)
    return MethodChoice("ks", 0.05) if small else MethodChoice("wasserstein_normed", 0.1)


@dataclass(frozen=True)
class LearnedThreshold:
    """NannyML-style threshold learned from reference chunks.

    Attributes:
        method: the method whose statistic was measured.
        mean, std: mean and population std (ddof=0) of the chunk-vs-reference statistics.
        lower: ``max(mean - k std, 0)``; reported, not used to flag (a window larger than the
            chunks has less noise, so a low statistic is not drift).
        upper: ``mean + k std``; drift when the statistic exceeds it.
        n_chunks: chunks with a defined statistic.
    """

    method: str
    mean: float
    std: float
    lower: float
    upper: float
    n_chunks: int
