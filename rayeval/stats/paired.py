"""Paired tests and multiple-testing control (pure numpy/scipy).

- :func:`mcnemar`: McNemar's test on the discordant counts b (baseline right, candidate wrong)
  and c: exact two-sided binomial test (``binomtest(b, b + c, 0.5)``) up to ``b + c`` =
  :data:`EXACT_MAX`, the continuity-corrected chi-squared above (Edwards 1948).
- :func:`bootstrap_p_value`: two-sided p-value of a difference from its paired bootstrap
  replicates (the share of centred replicates at least as extreme as the observed
  difference, plus-one corrected: Davison & Hinkley 1997, eq. 4.11).
- :func:`benjamini_hochberg`: BH step-up adjusted p-values (Benjamini & Hochberg, JRSS B
  57, 1995), NaNs left out of the family.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

#: discordant pairs up to which McNemar is exact
EXACT_MAX = 10_000


def mcnemar(b, c) -> np.ndarray:
    """Two-sided McNemar p-values.

    Args:
        b, c: arrays of one shape: discordant counts (rounded to integers for the exact
            test; weighted counts allowed).

    Returns:
        float64 array; 1.0 where ``b + c == 0``, NaN where a count is NaN.
    """
    b = np.asarray(b, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    out = np.full(b.shape, np.nan)
    flat_b, flat_c, flat = b.ravel(), c.ravel(), out.ravel()
    for i in range(flat_b.size):
        x, y = flat_b[i], flat_c[i]
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        n = x + y
        if n <= 0:
            flat[i] = 1.0
        elif n <= EXACT_MAX:
            k, n_int = int(round(min(x, y))), int(round(n))
            flat[i] = stats.binomtest(k, n_int, 0.5).pvalue if n_int > 0 else 1.0
        else:
            chi2 = (abs(x - y) - 1.0) ** 2 / n
            flat[i] = float(stats.chi2.sf(chi2, 1))
    return out


def bootstrap_p_value(difference, replicates, centre) -> np.ndarray:
    """Two-sided p-value of H0: difference = 0 from paired bootstrap replicates.

    Args:
        difference: float (G,) observed differences (candidate - baseline).
        replicates: float (G, B) replicate differences.
        centre: float (G,) the full-sample difference on the replicates' grid.

    Returns:
        float (G,): ``(1 + #{|d*_b - centre| >= |difference|}) / (1 + B_defined)``; NaN where
        the difference or every replicate is NaN.
    """
    d = np.asarray(difference, dtype=np.float64)
    dev = np.abs(np.asarray(replicates, dtype=np.float64) - np.asarray(centre)[:, None])
    ok = np.isfinite(dev)
    hits = ((dev >= np.abs(d)[:, None] - 1e-12) & ok).sum(axis=1)
    n = ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.minimum(1.0, (1.0 + hits) / (1.0 + n))
    return np.where(np.isfinite(d) & (n > 0), p, np.nan)


def benjamini_hochberg(p_values) -> np.ndarray:
    """BH adjusted p-values of one family (NaN entries are no hypotheses).

    ``p_adj_(i) = min_{j >= i} min(1, m p_(j) / j)`` over the m defined p-values sorted
    ascending; a hypothesis is rejected at FDR level q when ``p_adj <= q``.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    ranked = p[order] * m / np.arange(1, m + 1)
    adj = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    out[order] = adj
    return out


def paired_difference(base_value, cand_value, base_reps, cand_reps, level: float = 0.95):
    """Candidate - baseline with its paired bootstrap interval and p-value.

    The replicates of both models come from the same weights (a fixed hash of the prediction
    id), so ``cand_reps - base_reps`` is the paired bootstrap of the difference.

    Args:
        base_value, cand_value: float (G,) point values.
        base_reps, cand_reps: float (G, B + 1) replicate values, last column the full sample
            on the replicates' grid (:meth:`~rayeval.stats.replicate.ReplicatedSpec.values`).
        level: two-sided level of the interval.

    Returns:
        ``(difference, lower, upper, p_value)``, float (G,) each.
    """
    from rayeval.stats.intervals import bootstrap_interval

    diff = np.asarray(cand_value, dtype=np.float64) - np.asarray(base_value, dtype=np.float64)
    d = np.asarray(cand_reps, dtype=np.float64) - np.asarray(base_reps, dtype=np.float64)
    b = d.shape[1] - 1
    lo, hi = bootstrap_interval(diff, d[:, :b], d[:, b], level)
    return diff, lo, hi, bootstrap_p_value(diff, d[:, :b], d[:, b])
