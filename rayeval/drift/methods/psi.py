"""Population stability index of the binned distributions (Evidently ``psi``): empty bins on
one side get ``eps`` (1e-4), recorded in ``smoothing``. Bands: < 0.1 stable, 0.1-0.2 moderate,
> 0.2 major (Siddiqi 2006)."""

import numpy as np

from rayeval.drift import _math
from rayeval.drift.methods import BOTH, DriftMethod, Pair, register


def psi(pair: Pair) -> dict:
    """Population stability index ``sum (q - p) ln(q / p)`` of the bin shares (smoothed empty
    bins).
    """
    pr, pc = pair.binned_shares
    eps = pair.options.eps
    stat, smoothed = _math.psi(pr, pc, eps)
    return {"statistic": stat, "smoothing": np.where(smoothed, eps, 0.0)}


register(DriftMethod("psi", BOTH, test=False, default_threshold=0.1, binned=True, function=psi,
                     reported=BOTH, source="Evidently psi"))
