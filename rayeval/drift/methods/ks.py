"""Two-sample Kolmogorov-Smirnov test from the binned CDFs (numeric): ``scipy.stats.ks_2samp``.

The statistic ``sup |F_ref - F_cur|`` is estimated from the histograms with a guaranteed
``error_bound`` (0 in the exact layout); the p-value uses Kish's effective sample sizes for
weighted histograms (formulas and sources in :mod:`rayeval.drift._math`)."""

from rayeval.drift import _math
from rayeval.drift.binning import NUMERIC
from rayeval.drift.methods import DriftMethod, Pair, register


def ks(pair: Pair) -> dict:
    """Two-sample Kolmogorov-Smirnov statistic from the binned CDFs with its error bound, and
    its p-value.
    """
    r, _, c, _ = pair.shares
    ref, cur = pair.reference, pair.current
    stat, bound = _math.ks_binned(r, c, pair.binning.bounds[2])
    exact_ok = ref.unweighted() & cur.unweighted()
    pval = _math.ks_pvalue(stat, ref.n_eff, cur.n_eff, exact_ok, pair.options.ks_p_method)
    return {"statistic": stat, "p_value": pval, "error_bound": bound}


register(DriftMethod("ks", frozenset({NUMERIC}), test=True, default_threshold=0.05,
                     binned=False, function=ks, reported=frozenset({NUMERIC}),
                     source="scipy.stats.ks_2samp"))
