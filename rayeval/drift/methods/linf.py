"""L-infinity distance ``max |p_ref - p_cur|`` of the binned distributions (NannyML), in [0, 1]."""

from rayeval.drift import _math
from rayeval.drift.binning import CATEGORICAL
from rayeval.drift.methods import BOTH, DriftMethod, Pair, register


def linf(pair: Pair) -> dict:
    """L-infinity distance ``max |p - q|`` of the reference and current bin shares, in [0, 1]."""
    pr, pc = pair.binned_shares
    return {"statistic": _math.linf(pr, pc)}


register(DriftMethod("linf", BOTH, test=False, default_threshold=0.1, binned=True,
                     function=linf, reported=frozenset({CATEGORICAL}), source="NannyML L-infinity"))
