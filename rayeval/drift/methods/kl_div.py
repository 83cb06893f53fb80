"""Kullback-Leibler divergence ``KL(ref || cur) = sum p_ref ln(p_ref / p_cur)`` of the binned
distributions (Evidently ``kl_div``: ``scipy.stats.entropy(ref, cur)`` after replacing empty
bins' proportions by ``eps`` = 1e-4 on both sides, threshold 0.1), in nats, >= 0; a row
with no bin (empty histograms) is left to the caller's ``empty`` reasons.

Not reported by default: set ``method: kl_div`` on a feature to use it. Smoothing is recorded in
``smoothing`` (``eps`` when a bin was empty on exactly one side, as PSI)."""

import numpy as np

from rayeval.drift.methods import BOTH, DriftMethod, Pair, register


def kl_divergence(p: np.ndarray, q: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """KL divergence of normalised rows ``p`` (G, B) from ``q`` (G, B), empty proportions
    replaced by ``eps`` and rows renormalised (as ``scipy.stats.entropy`` does):
    ``(value (G,), smoothed (G,))``."""
    zp, zq = p == 0, q == 0
    ps, qs = np.where(zp, eps, p), np.where(zq, eps, q)
    with np.errstate(invalid="ignore", divide="ignore"):  # a row without bins: NaN
        ps = ps / ps.sum(axis=1, keepdims=True)
        qs = qs / qs.sum(axis=1, keepdims=True)
        value = np.maximum(np.sum(ps * np.log(ps / qs), axis=1), 0.0)
    return value, np.any(zp != zq, axis=1)


def kl_div(pair: Pair) -> dict:
    """Kullback-Leibler divergence of the current from the reference bin shares (smoothed empty
    bins), in nats.
    """
    pr, pc = pair.binned_shares
    eps = pair.options.eps
    stat, smoothed = kl_divergence(pr, pc, eps)
    return {"statistic": stat, "smoothing": np.where(smoothed, eps, 0.0)}


register(DriftMethod("kl_div", BOTH, test=False, default_threshold=0.1, binned=True,
                     function=kl_div, source="Evidently kl_div (scipy.stats.entropy)"))
