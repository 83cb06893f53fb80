"""Paired tests and multiple-testing control (pure numpy/scipy).

- :func:`mcnemar`: McNemar's test on the discordant counts b (baseline right, candidate wrong)
  and c: exact two-sided binomial test (``binomtest(b, b + c, 0.5)``) up to ``b + c`` =
  :data:`EXACT_MAX`, the continuity-corrected chi-squared above (Edwards 1948).
- :func:`bootstrap_p_value`: two-sided Wald p-value of a difference from its paired bootstrap
  replicates' standard deviation (Efron & Tibshirani 1993, ch. 16), consistent with the
  normal bootstrap interval.
- :func:`benjamini_hochberg`: BH step-up adjusted p-values (Benjamini & Hochberg, JRSS B
  57, 1995), NaNs left out of the family.
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

from rayeval.stats.intervals import replicate_sd

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
    """Two-sided p-value of H0: difference = 0 from paired bootstrap replicates: the Wald test
    ``2 * (1 - Phi(|d| / sd_b))`` with the replicates' standard deviation ``sd_b``, the same
    one the normal bootstrap interval uses (:func:`~rayeval.stats.intervals.bootstrap_interval`),
    so ``p < 1 - level`` exactly when that interval excludes 0. (A replicate-count p-value,
    ``(1 + hits) / (1 + B)``, cannot go below ``1 / (B + 1)``; adjusted across thousands of
    slices it never reached significance even where the interval excluded 0.)

    Args:
        difference: float (G,) observed differences (candidate - baseline).
        replicates: float (G, B) replicate differences.
        centre: float (G,) the full-sample difference on the replicates' grid.

    Returns:
        float (G,) p-values; NaN where the difference is NaN or fewer than half of the
        replicates (or fewer than 2) are defined; 1 for a zero difference with zero spread,
        0 for a non-zero difference with zero spread.
    """
    d = np.abs(np.asarray(difference, dtype=np.float64))
    sd, ok = replicate_sd(replicates, centre)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(sd > 0, d / np.where(sd > 0, sd, 1.0), np.where(d > 0, np.inf, 0.0))
    p = 2.0 * special.ndtr(-z)
    return np.where(np.isfinite(d) & ok, np.minimum(p, 1.0), np.nan)


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
