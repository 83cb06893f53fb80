"""Numerics of the score metrics (private): row validation, per-row losses, ranking metrics
from one cell's bucket histogram with their guaranteed error bounds.

Sources: ROC AUC as the Mann-Whitney statistic with ties counted 1/2 (Hanley & McNeil 1982; equal
to scikit-learn's trapezoidal ``roc_auc_score``); average precision as scikit-learn's step-wise
``average_precision_score`` (no interpolation); log loss with scikit-learn >= 1.5 clipping to
``[eps, 1 - eps]``, ``eps`` = float64 machine epsilon; Brier score as scikit-learn's
``brier_score_loss`` (``scale_by_half="auto"``); ECE after Naeini et al. 2015 (AAAI) and
Guo et al. 2017 (ICML).
"""

from __future__ import annotations

import math

import numpy as np

from rayeval.core import kernels

EPS = float(np.finfo(np.float64).eps)
# Added to every bucketed bound to cover floating-point rounding of the sums (values are in [0, 1]).
ROUNDING_PAD = 1e-12


def missing_mask(values: np.ndarray) -> np.ndarray:
    """bool (n,): entries that are ``None`` or NaN (float or object arrays); else all False."""
    v = np.asarray(values)
    if v.dtype.kind == "f":
        return np.isnan(v)
    if v.dtype.kind == "O":
        return np.asarray((v == None) | (v != v), dtype=bool)  # noqa: E711 (elementwise)
    return np.zeros(v.shape, dtype=bool)


def first_reason(conditions: list[np.ndarray], n: int) -> np.ndarray:
    """int64 (n,): index of the first true condition per row, ``-1`` when none is true."""
    out = np.full(n, -1, dtype=np.int64)
    for i in range(len(conditions) - 1, -1, -1):  # earlier reasons overwrite later ones
        out[conditions[i]] = i
    return out


def weight_conditions(weight: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate an optional weight column.

    Returns:
        ``(w, nonfinite, negative)``: float64 weights (ones when ``weight`` is None; invalid
        entries set to 0) and the bool masks of NaN/inf and negative weights.

    Raises:
        ValueError: if ``weight`` is not of shape (n,).
    """
    if weight is None:
        z = np.zeros(n, dtype=bool)
        return np.ones(n, dtype=np.float64), z, z
    w = np.asarray(weight, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"Expected `weight` of shape ({n},), got shape {w.shape}.")
    nonfinite = ~np.isfinite(w)
    negative = w < 0
    return np.where(nonfinite | negative, 0.0, w), nonfinite, negative


def score_conditions(scores: np.ndarray, raw: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(missing, out_of_range)`` bool masks of a float64 (n,) or (n, K) score array; a row of a
    2-D array is flagged when any of its entries is. Out of range: outside [0, 1], or (``raw``
    scores: margins, logits) not finite."""
    missing = np.isnan(scores)
    out = ~missing & (~np.isfinite(scores) if raw else ~((scores >= 0.0) & (scores <= 1.0)))
    if scores.ndim == 2:
        return missing.any(axis=1), out.any(axis=1)
    return missing, out


_MAX_FINITE_BITS = np.uint64(np.float64(np.finfo(np.float64).max).view(np.uint64))
_SIGN = np.uint64(1 << 63)


def raw_order_scores(scores: np.ndarray) -> np.ndarray:
    """Map finite raw scores (margins, logits; any float64 shape) into ``[0, 0.5)`` keeping
    their order, for the ranking histograms (which take scores in [0, 1]).

    Each value's IEEE-754 bits become a total-order integer (``-0.0 == 0.0``), shifted to be
    non-negative and divided by 8, read back as the bits of a double below 0.5 (where the
    histogram keeps every bit). Order is kept exactly; values whose order keys differ only in
    the 3 lowest bits (within about 2e-15 relative) tie. ROC / PR AUC depend on the order only,
    so they equal scikit-learn's on the raw scores (up to such ties); a sigmoid would not:
    it saturates to 1.0 above ~37 and ties every large margin.
    """
    s = np.asarray(scores, dtype=np.float64) + 0.0  # -0.0 -> +0.0
    bits = s.view(np.uint64)
    mag = bits & ~_SIGN
    # total order: negatives below zero by magnitude; shifted by max so the key is >= 0
    key = np.where(bits & _SIGN, _MAX_FINITE_BITS - mag, _MAX_FINITE_BITS + mag)
    return (key >> np.uint64(3)).view(np.float64)


def binary_log_loss_terms(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """float64 (n,): ``-log(clip(p))`` for positives, ``-log(clip(1 - p))`` for negatives, clipped
    to ``[eps, 1 - eps]`` as scikit-learn >= 1.5 does (so p in {0, 1} gives at most
    ``-log(eps)`` = 36.04 per row, never inf)."""
    q = np.where(y, p, 1.0 - p)
    return -np.log(np.clip(q, EPS, 1.0 - EPS))


def padded_bin_edges(n_bins: int) -> np.ndarray:
    """float64 (n_bins + 1,): ``-inf``, the interior edges of ``linspace(0, 1, n_bins + 1)``,
    ``inf`` (the edges :func:`calibration_bin_ids` corrects against)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.concatenate([[-np.inf], edges[1:-1], [np.inf]])


def calibration_bin_ids(p: np.ndarray, n_bins: int) -> np.ndarray:
    """int64 (n,): equal-width bin of each score in ``[0, 1]``, exactly as scikit-learn's
    ``calibration_curve(strategy="uniform")`` (``searchsorted`` on the interior edges, left
    side: a score on an edge falls in the lower bin). Computed as ``floor(p * n_bins)`` and
    corrected by one against the ``linspace`` edges (no binary search)."""
    padded = padded_bin_edges(n_bins)
    b = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    return b - (padded[b] >= p) + (padded[b + 1] < p)


def top_k_ranks(scores: np.ndarray, true_idx: np.ndarray) -> np.ndarray:
    """int64 (n,): 0-based rank of the true class per row, ties broken as scikit-learn's
    ``top_k_accuracy_score`` (stable ascending argsort reversed: among equal scores the later
    column ranks first)."""
    n, k = scores.shape
    s_true = scores[np.arange(n), true_idx][:, None]
    later = np.arange(k)[None, :] > true_idx[:, None]
    return ((scores > s_true) | ((scores == s_true) & later)).sum(axis=1).astype(np.int64)


def roc_auc_from_buckets(pos: np.ndarray, neg: np.ndarray, exact: bool) -> tuple[float, float, str]:
    """ROC AUC of one cell from its bucket weights (buckets in ascending score order).

    ``AUC = sum_b P_b (N_<b + N_b / 2) / (P N)``: pairs across buckets are ordered exactly,
    pairs inside a bucket are counted as ties (1/2). The exact value gives each within-bucket pair
    a credit in [0, 1] instead of 1/2, hence the guaranteed bound
    ``|AUC - AUC_exact| <= sum_b P_b N_b / (2 P N)`` (0 when buckets are distinct scores).

    Returns:
        ``(value, bound, undefined_reason)``; NaN with ``empty`` / ``single_class``.
    """
    p_tot, n_tot = float(pos.sum()), float(neg.sum())
    if p_tot == 0.0 and n_tot == 0.0:
        return math.nan, 0.0, "empty"
    if p_tot == 0.0 or n_tot == 0.0:
        return math.nan, 0.0, "single_class"
    below = np.cumsum(neg) - neg
    denom = p_tot * n_tot
    value = float(np.sum(pos * (below + 0.5 * neg))) / denom
    bound = 0.0 if exact else 0.5 * float(np.sum(pos * neg)) / denom + ROUNDING_PAD
    return value, bound, ""


def average_precision_from_buckets(pos: np.ndarray, neg: np.ndarray,
                                   exact: bool) -> tuple[float, float, str]:
    """Average precision (step-wise, scikit-learn's ``average_precision_score``) of one cell.

    Buckets in ascending score order. With buckets visited from the highest score down, let
    ``p, q`` be a bucket's positive/negative weight and ``A, F`` the positive/negative weight of
    all higher buckets. AP = (1/P) * sum over score levels of ``p_t * precision_t``. Inside a
    bucket the levels are unknown; a level holding ``p_t`` with cumulative in-bucket positive
    weight ``a_t`` (including itself) and negative weight ``f_t <= q`` contributes
    ``p_t (A + a_t) / (A + a_t + F + f_t)``, which lies between ``p_t g(a_t)`` and
    ``p_t h(a_t)``, ``g(a) = (A + a) / (A + a + F + q)``, ``h(a) = (A + a) / (A + a + F)``, both
    increasing. Since the ``a_t`` are right ends of consecutive pieces of ``[0, p]``:

    - ``sum_t p_t h(a_t) <= U = p h(p)`` (reached: all positives tied above the negatives);
    - ``sum_t p_t g(a_t) >= L = integral_0^p g = p - D ln(1 + p / (A + D))``, ``D = F + q``
      (approached: negatives first, positives spread thin).

    So the exact AP lies in ``[sum L, sum U] / P``, the tightest interval the histogram allows.
    We report its midpoint and half-width (the bound); exact cells (distinct scores) report the
    step-wise value itself with bound 0.

    Returns:
        ``(value, bound, undefined_reason)``; NaN with ``empty`` / ``no_positive_labels``.
    """
    p_tot, n_tot = float(pos.sum()), float(neg.sum())
    if p_tot == 0.0 and n_tot == 0.0:
        return math.nan, 0.0, "empty"
    if p_tot == 0.0:
        return math.nan, 0.0, "no_positive_labels"
    p, q = pos[::-1], neg[::-1]
    tp, fp = np.cumsum(p), np.cumsum(q)
    has = p > 0
    p, q, tp, fp = p[has], q[has], tp[has], fp[has]
    step = p * tp / (tp + fp)
    if exact:
        return float(np.sum(step)) / p_tot, 0.0, ""
    a_above, d = tp - p, fp  # A and D = F + q
    upper = p * tp / (tp + (fp - q))
    ratio = np.divide(p, a_above + d, out=np.zeros(p.shape), where=(a_above + d) > 0)
    lower = np.where(d > 0, p - d * np.log1p(ratio), p)
    lo, hi = float(np.sum(lower)), float(np.sum(upper))
    return 0.5 * (lo + hi) / p_tot, 0.5 * (hi - lo) / p_tot + ROUNDING_PAD, ""


def roc_curve_from_buckets(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, tpr)`` float64 arrays (n_buckets + 1,) at thresholds at each bucket's lower edge,
    from the highest bucket down, starting at (0, 0); NaN when a class is absent."""
    p, q = pos[::-1], neg[::-1]
    tp = np.concatenate([[0.0], np.cumsum(p)])
    fp = np.concatenate([[0.0], np.cumsum(q)])
    p_tot, n_tot = tp[-1], fp[-1]
    fpr = fp / n_tot if n_tot > 0 else np.full(fp.shape, np.nan)
    tpr = tp / p_tot if p_tot > 0 else np.full(tp.shape, np.nan)
    return fpr, tpr


def ranking_metrics(pos: np.ndarray, neg: np.ndarray, indptr: np.ndarray,
                    exact: np.ndarray, single: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """ROC AUC and average precision of many cells at once, as :func:`roc_auc_from_buckets`
    and :func:`average_precision_from_buckets` per cell (same formulas, bounds and reasons;
    one compiled pass per cell, :func:`rayeval.core.kernels.ranking`).

    A bucket holding one distinct score (``single``) is exact even in a coarsened cell: its
    pairs are ties (1/2 in ROC AUC, one precision step in average precision, as scikit-learn
    treats tied scores), so it adds no bound term; a cell whose buckets are all exact reports
    bound 0.

    Args:
        pos, neg: float64 (nnz,), bucket weights, cells contiguous, buckets ascending in score.
        indptr: int64 (n_cells + 1,), cell ``c`` owns ``indptr[c]:indptr[c + 1]``.
        exact: bool (n_cells,), cells whose buckets are distinct scores (bound 0).
        single: bool (nnz,) or None (none), buckets holding one distinct score.

    Returns:
        dict of (n_cells,) arrays: ``roc_auc``, ``roc_bound``, ``roc_reason``, ``pr_auc``,
        ``pr_bound``, ``pr_reason`` (reasons are object arrays of str, ``""`` when defined).
    """
    pos = np.asarray(pos, dtype=np.float64)
    if single is None:
        single = np.zeros(pos.size, dtype=bool)
    res = kernels.ranking(pos, np.asarray(neg, dtype=np.float64), np.asarray(single, dtype=bool),
                          np.asarray(indptr, dtype=np.int64), np.asarray(exact, dtype=bool))
    out = dict(zip(("roc_auc", "roc_bound", "pr_auc", "pr_bound"), res[:4]))
    p_tot, n_tot = res[4], res[5]
    empty = (p_tot == 0.0) & (n_tot == 0.0)
    one_class = ~empty & ((p_tot == 0.0) | (n_tot == 0.0))
    for k in ("roc_auc", "roc_bound"):
        out[k][empty | one_class] = math.nan if k == "roc_auc" else 0.0
    out["roc_reason"] = np.where(empty, "empty", np.where(one_class, "single_class", "")
                                 ).astype(object)
    no_pos = p_tot == 0.0
    out["pr_auc"][no_pos] = math.nan
    out["pr_bound"][no_pos] = 0.0
    out["pr_reason"] = np.where(empty, "empty", np.where(no_pos, "no_positive_labels", "")
                                ).astype(object)
    return out


def reliability(cal: np.ndarray, n_bins: int) -> list[tuple]:
    """``(bin_lower, bin_upper, weight, mean_score, fraction_positive)`` of every non-empty
    equal-width bin of one calibration table ``cal`` (3, n_bins): weight, weighted score and
    weighted positive label per bin."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    w, ws, wy = cal
    return [(float(edges[b]), float(edges[b + 1]), float(w[b]), float(ws[b] / w[b]),
             float(wy[b] / w[b])) for b in np.flatnonzero(w > 0)]
