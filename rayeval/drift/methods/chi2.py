"""Pearson's chi-squared test of homogeneity of the binned distributions
(``scipy.stats.chi2_contingency``, without Yates' correction unless ``yates``).

Counts are scaled to Kish's effective sample sizes for weighted histograms. It runs over the
union of categories: categories unseen in the reference share the "other" bin, which leaves the
statistic unchanged (their reference count is 0), and each adds a degree of freedom (up to
1,000 distinct per group; a lower bound beyond)."""

import numpy as np

from rayeval.core.state import safe_div
from rayeval.drift import _math
from rayeval.drift.methods import BOTH, DriftMethod, Pair, register
from rayeval.drift.binning import CATEGORICAL


def chi2(pair: Pair) -> dict:
    """Chi-squared test of homogeneity of the reference and current (effective) counts: the 2 x
    k contingency table over the union of categories, each unseen category one more degree of
    freedom (scipy.stats.chi2_contingency).
    """
    ref, cur = pair.reference, pair.current
    rc, cc = pair.binned_counts
    sr = safe_div(ref.n_eff, ref.scalars["weight"], 0.0)[:, None]
    sc = safe_div(cur.n_eff, cur.scalars["weight"], 0.0)[:, None]
    extra = 0
    distinct = cur.scalars.get("unseen_distinct")
    if distinct is not None and rc.shape[1]:  # over the union of categories: "other"
        # holding only unseen categories (no reference mass) is one column each
        pooled = (rc[:, -1] <= 0) & (cc[:, -1] > 0)
        extra = np.where(pooled, np.maximum(distinct - 1, 0), 0).astype(np.int64)
    stat, pval, _ = _math.chi2_homogeneity(rc * sr, cc * sc, pair.options.yates, extra)
    return {"statistic": stat, "p_value": pval}


register(DriftMethod("chi2", BOTH, test=True, default_threshold=0.05, binned=True,
                     function=chi2, reported=frozenset({CATEGORICAL}),
                     source="scipy.stats.chi2_contingency"))
