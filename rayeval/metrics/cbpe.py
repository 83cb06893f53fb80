"""Confidence-based performance estimation (CBPE, as NannyML defines it): performance of a
classifier estimated from its calibrated scores alone, for windows whose labels have not arrived.

With a calibrated score ``p_i = P(y_i = k)`` for a class ``k`` and the predicted class
``yhat_i``, the expected one-vs-rest confusion counts of class ``k`` are (weights ``w_i``)::

    TP_k = sum_{yhat=k} w p        FP_k = sum_{yhat=k} w (1 - p)
    FN_k = sum_{yhat!=k} w p       TN_k = sum_{yhat!=k} w (1 - p)

and the estimates are the metrics of those counts: accuracy ``sum_k TP_k / sum w`` (binary:
``(TP + TN) / n``), precision ``TP / (TP + FP)``, recall ``TP / (TP + FN)``, F1
``2 TP / (2 TP + FP + FN)`` (multiclass: macro averages over the classes), and ROC AUC the area
under the expected ROC curve ``TPR(t) = sum_{p>=t} w p / sum w p``,
``FPR(t) = sum_{p>=t} w (1-p) / sum w (1-p)`` from (0, 0) (NannyML's ``estimate_roc_auc``
starts at its first threshold, a triangle of area ``FPR_0 TPR_0 / 2`` less). Sources: NannyML
docs, "Estimation of Performance of the Monitored Model" / CBPE
(``nannyml/performance_estimation/confidence_based/metrics.py``).

The state is mergeable per group (slice x window): expected counts are sums, and ROC AUC reads
a fixed-edge histogram of expected positive / negative mass over ``n_bins`` equal score bins
(within a bin the order is unknown: ``error_bound`` = half the mass of within-bin pairs).
``sampling_se`` of accuracy is the standard error of the realised accuracy when the scores are
calibrated (``sqrt(sum w^2 q (1-q)) / sum w``, ``q`` = probability the prediction is right): a
measured accuracy that misses the estimate by several of these is a sign that the scores are no
longer calibrated for the data: concept shift, CBPE's known failure mode (it assumes
``P(y | score)`` does not change).

Pure numpy; rows with a score outside [0, 1] or NaN, or a predicted class outside ``classes``,
are left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rayeval.core.state import GroupIndex, KeyedArrays, grouped_sum, merge_keyed, safe_div

#: metrics CBPE estimates, in output order
ESTIMATED_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
N_BINS = 128


@dataclass(frozen=True)
class CBPESpec:
    """Mergeable CBPE state per group.

    Args:
        classes: the task's class values; binary: ``(negative, positive)``.
        binary: one score column (the positive class's probability) when true, else one score
            column per class in ``classes`` order.
        n_bins: equal-width score bins of the ROC AUC histogram.
    """

    classes: tuple
    binary: bool
    n_bins: int = N_BINS

    @property
    def n_targets(self) -> int:
        """One-vs-rest targets: 1 (the positive class) for binary, else one per class."""
        return 1 if self.binary else len(self.classes)

    def zero(self) -> KeyedArrays:
        return KeyedArrays()

    def merge(self, a: KeyedArrays, b: KeyedArrays) -> KeyedArrays:
        return merge_keyed(a, b)

    def accumulate(self, state: KeyedArrays, batch: dict, groups: GroupIndex) -> KeyedArrays:
        """Add one batch: ``batch["prediction"]`` (n,) predicted classes, ``batch["score"]``
        (n,) positive-class scores (binary) or ``batch["scores"]`` (n, K), optional
        ``batch["weight"]`` (n,)."""
        return merge_keyed(state, self.accumulate_many(batch, [groups])[0])

    def accumulate_many(self, batch: dict, groupings: list[GroupIndex]) -> list[KeyedArrays]:
        """One state per grouping of the same rows (row work done once)."""
        pred = np.asarray(batch["prediction"])
        p = (np.asarray(batch["score"], dtype=np.float64)[:, None] if self.binary
             else np.asarray(batch["scores"], dtype=np.float64))
        n = len(pred)
        w = np.asarray(batch.get("weight", np.ones(n)), dtype=np.float64)
        targets = [self.classes[1]] if self.binary else list(self.classes)
        is_pred = np.stack([_equal(pred, c) for c in targets], 1)  # (n, K)
        known = np.zeros(n, dtype=bool)
        for c in self.classes:
            known |= _equal(pred, c)
        valid = known & np.all((p >= 0) & (p <= 1), axis=1) & np.isfinite(w)
        w = np.where(valid, w, 0.0)
        p = np.where(valid[:, None], p, 0.0)
        # probability that the prediction is right: the predicted class's score
        q = np.sum(np.where(is_pred, p, 0.0), axis=1) if not self.binary else np.where(
            is_pred[:, 0], p[:, 0], 1 - p[:, 0])
        q = np.where(valid, q, 0.0)
        cols = {}
        for j, (sel, mass) in enumerate(((is_pred, p), (is_pred, 1 - p), (~is_pred, p),
                                         (~is_pred, 1 - p))):
            cols[j] = w[:, None] * np.where(sel, mass, 0.0) * valid[:, None]  # (n, K)
        bins = np.minimum((p * self.n_bins).astype(np.int64), self.n_bins - 1)
        out = []
        for g in groupings:
            G, K, B = g.n_groups, self.n_targets, self.n_bins
            conf = np.zeros((G, K, 4))
            hist = np.zeros((G, K, B, 3))
            for k in range(K):
                for j in range(4):
                    conf[:, k, j] = grouped_sum(g.codes, G, cols[j][:, k])
                idx = g.codes * B + bins[:, k]
                hist[:, k, :, 0] = np.bincount(idx, w * p[:, k], G * B).reshape(G, B)
                hist[:, k, :, 1] = np.bincount(idx, w * (1 - p[:, k]) * valid,
                                               G * B).reshape(G, B)
                # a row's own positive and negative mass tie exactly: not an ordering doubt
                hist[:, k, :, 2] = np.bincount(idx, w * w * p[:, k] * (1 - p[:, k]),
                                               G * B).reshape(G, B)
            out.append(KeyedArrays(g.keys, {
                "n": grouped_sum(g.codes, G, w), "n_rows": grouped_sum(g.codes, G,
                                                                        valid.astype(float)),
                "acc_var": grouped_sum(g.codes, G, w * w * q * (1 - q)),
                "conf": conf, "hist": hist}))
        return out

    def finalize(self, state: KeyedArrays) -> list[tuple]:
        """``(key, metric, value, sampling_se, error_bound, n_rows)`` per group and estimated
        metric (:data:`ESTIMATED_METRICS`); undefined estimates are NaN."""
        out = []
        for i, key in enumerate(state.keys):
            a = {name: arr[i] for name, arr in state.arrays.items()}
            est = estimates(a["conf"], a["hist"], float(a["n"]), self.binary)
            se = math.sqrt(a["acc_var"]) / a["n"] if a["n"] > 0 else math.nan
            for m in ESTIMATED_METRICS:
                value, bound = est[m]
                out.append((key, m, value, se if m == "accuracy" else math.nan, bound,
                            int(round(float(a["n_rows"])))))
        return out


def _equal(values: np.ndarray, c) -> np.ndarray:
    try:
        return np.asarray(values == c, dtype=bool)
    except (TypeError, ValueError):
        return np.array([v == c for v in values], dtype=bool)


def counts_metrics(tp, fp, fn) -> tuple[float, float, float]:
    """``(precision, recall, f1)`` of (expected) counts; NaN where undefined."""
    return (float(safe_div(np.float64(tp), np.float64(tp + fp))),
            float(safe_div(np.float64(tp), np.float64(tp + fn))),
            float(safe_div(np.float64(2 * tp), np.float64(2 * tp + fp + fn))))


def binned_roc_auc(pos: np.ndarray, neg: np.ndarray, own: np.ndarray | None = None
                   ) -> tuple[float, float]:
    """Area under the ROC curve of per-bin positive / negative mass (bins in increasing score
    order; ties within a bin count one half), and its bound from the unknown order within a
    bin: ``sum_b (pos_b neg_b - own_b) / (2 P N)``, ``own_b`` the mass pairs of a row with
    itself (``sum w^2 p (1-p)``, exact ties). NaN when either mass is zero."""
    P, N = float(pos.sum()), float(neg.sum())
    if P <= 0 or N <= 0:
        return math.nan, math.nan
    pos_above = np.cumsum(pos[::-1])[::-1] - pos  # positive mass in higher bins
    auc = float(np.sum(neg * (pos_above + pos / 2)) / (P * N))
    pairs = pos * neg - (0 if own is None else own)
    return auc, float(np.sum(np.maximum(pairs, 0)) / (2 * P * N))


def estimates(conf: np.ndarray, hist: np.ndarray, n: float, binary: bool) -> dict:
    """Estimated metric -> ``(value, error_bound)`` from one group's expected counts ``conf``
    (K, 4: TP, FP, FN, TN) and histogram ``hist`` (K, B, 3: positive, negative, own-pair
    mass)."""
    if n <= 0:
        return {m: (math.nan, math.nan) for m in ESTIMATED_METRICS}
    per = [counts_metrics(*conf[k, :3]) for k in range(conf.shape[0])]
    aucs = [binned_roc_auc(*(hist[k, :, j] for j in range(3))) for k in range(conf.shape[0])]
    if binary:
        tp, fp, fn, tn = conf[0]
        accuracy = float((tp + tn) / n)
        (precision, recall, f1), auc = per[0], aucs[0]
    else:
        accuracy = float(conf[:, 0].sum() / n)
        precision, recall, f1 = (_nanmean([x[i] for x in per]) for i in range(3))
        auc = (_nanmean([a for a, _ in aucs]), _nanmean([b for _, b in aucs]))
    return {"accuracy": (accuracy, 0.0), "precision": (precision, 0.0),
            "recall": (recall, 0.0), "f1": (f1, 0.0), "roc_auc": auc}


def _nanmean(values) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


def concept_shift(estimated: float, measured: float, sampling_se: float = math.nan,
                  tolerance: float = 0.05) -> bool:
    """Whether a measured value misses its CBPE estimate by more than ``tolerance`` (absolute)
    and, when the sampling standard error is known, by more than 3 of them: the scores no
    longer describe ``P(y | score)`` (concept shift) or were never calibrated. NaN: False."""
    if not (math.isfinite(estimated) and math.isfinite(measured)):
        return False
    gap = abs(measured - estimated)
    return gap > tolerance and (not math.isfinite(sampling_se) or gap > 3 * sampling_se)
