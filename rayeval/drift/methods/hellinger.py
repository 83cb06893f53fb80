"""Hellinger distance of the binned distributions (Evidently ``hellinger``), in [0, 1]."""

from rayeval.drift import _math
from rayeval.drift.binning import NUMERIC
from rayeval.drift.methods import BOTH, DriftMethod, Pair, register


def hellinger(pair: Pair) -> dict:
    """Hellinger distance of the reference and current bin shares, in [0, 1]."""
    pr, pc = pair.binned_shares
    return {"statistic": _math.hellinger(pr, pc)}


register(DriftMethod("hellinger", BOTH, test=False, default_threshold=0.1, binned=True,
                     function=hellinger, reported=frozenset({NUMERIC}),
                     source="Evidently hellinger"))
