"""Jensen-Shannon distance of the binned distributions,
``scipy.spatial.distance.jensenshannon(base=2)`` (range 0..1; ``base`` changes it)."""

from rayeval.drift import _math
from rayeval.drift.methods import BOTH, DriftMethod, Pair, register


def jensen_shannon(pair: Pair) -> dict:
    """Jensen-Shannon distance of the reference and current bin shares (base ``drift.js_base``,
    default 2: range 0..1).
    """
    pr, pc = pair.binned_shares
    return {"statistic": _math.js_distance(pr, pc, pair.options.base)}


register(DriftMethod("jensen_shannon", BOTH, test=False, default_threshold=0.1, binned=True,
                     function=jensen_shannon, reported=BOTH,
                     source="scipy.spatial.distance.jensenshannon"))
