"""Share of the current (weighted) mass in categories never seen in the reference
(categorical). Undefined (``too_many_reference_categories``) when the reference had more
categories than its profile tracked: rare reference values would look unseen."""

import numpy as np

from rayeval.core.state import safe_div
from rayeval.drift.binning import CATEGORICAL
from rayeval.drift.methods import DriftMethod, Pair, register


def unseen_share(pair: Pair) -> dict:
    """Share of the current (weighted) mass in categories the reference never saw, in [0, 1]."""
    cur = pair.current
    stat = safe_div(cur.scalars["unseen"], cur.scalars["weight"])
    reason = np.full(pair.n, "", dtype=object)
    if not getattr(pair.binning, "known_complete", True):
        reason[:] = "too_many_reference_categories"
    return {"statistic": stat, "reason": reason}


register(DriftMethod("unseen_share", frozenset({CATEGORICAL}), test=False,
                     default_threshold=0.05, binned=True, function=unseen_share,
                     reported=frozenset({CATEGORICAL}), source="share of current mass unseen"))
