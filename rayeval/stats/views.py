"""Replicate views of the metric families (see :mod:`rayeval.stats.replicate`).

What each view keeps per group and replicate (its state size, chosen for an interval, not for
the point value's resolution):

- :class:`ClassificationView`: the C x C confusion counts (float32), metrics by the
  classification spec's own ``finalize_columns`` (same formulas, names, reasons).
- :class:`BinaryScoreView`: 20 equal-width score buckets (rounded up to a multiple of the
  calibration bins) of positives and negatives, the log-loss and Brier sums and the score sum
  per calibration bin (float64: sums of losses, merged in any order; 2 M + 2 + bins slots:
  52 at the default 10 bins, 84 KB per group at B = 200): ROC AUC (comparisons only), PR AUC (step-wise average precision over the
  buckets), log loss, Brier loss, ECE. The point values keep their ~1e-4 grid; only the spread
  comes from these buckets.
- :class:`RegressionView`: 9 weighted sums (n, |e|, e^2, |e|/|y|, y != 0, sMAPE term, e, y,
  y^2; float64: ``r2`` subtracts two of them): mean_signed_deviation, mae, mse, rmse, r2,
  explained_variance, mape, smape. Max error and error quantiles get no bootstrap interval (a
  bootstrap of a maximum is inconsistent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rayeval.metrics.base import KeyedArrays
from rayeval.metrics._score_math import binary_log_loss_terms, calibration_bin_ids

#: score buckets per replicate (at least; a multiple of the calibration bins)
SCORE_BUCKETS = 20


def _by_metric(cols, n: int, shape: tuple) -> dict[tuple, np.ndarray]:
    """A ``ResultColumns`` over ``n`` pseudo-groups as ``(metric, class, average) -> array``."""
    text = cols.text
    metric_v, metric_c = text["metric"]
    class_v, class_c = text["class_label"]
    avg_v, avg_c = text["average"]
    group, value = cols.group, cols.value
    combo = (metric_c * (len(class_v) + 1) + class_c) * (len(avg_v) + 1) + avg_c
    out = {}
    for code in np.unique(combo).tolist():
        sel = combo == code
        i = int(np.flatnonzero(sel)[0])
        key = (metric_v[metric_c[i]], class_v[class_c[i]], avg_v[avg_c[i]])
        arr = np.full(n, np.nan)
        arr[group[sel]] = value[sel]
        out[key] = arr.reshape(shape)
    return out


@dataclass(frozen=True)
class ClassificationView:
    """Confusion counts of a :class:`~rayeval.metrics.classification.ClassificationSpec`
    with fixed ``classes``."""

    spec: object
    dtype: type = np.float32

    def __post_init__(self) -> None:
        if self.spec.classes is None:
            raise ValueError("A classification replicate view needs fixed `classes`.")

    @property
    def n_slots(self) -> int:
        return len(self.spec.classes) ** 2

    def rows(self, batch, n):
        from rayeval.metrics.classification import _class_column, _lookup

        lab, lab_miss, _, lab_bad = _class_column(batch, "label", n)
        pred, pred_miss, _, pred_bad = _class_column(batch, "prediction", n)
        ti, t_known = _lookup(self.spec.classes, lab)
        pi, p_known = _lookup(self.spec.classes, pred)
        valid = ~(lab_miss | pred_miss | lab_bad | pred_bad) & t_known & p_known
        c = len(self.spec.classes)
        slots = (ti * c + pi)[valid][:, None]
        return valid, slots, np.ones(slots.shape)

    def metrics(self, sums):
        c = len(self.spec.classes)
        if c == 2 and self.spec.positive_class in self.spec.classes:
            return _binary_metrics(sums, self.spec.classes.index(self.spec.positive_class))
        return self._generic_metrics(sums)

    def _generic_metrics(self, sums):
        """Every metric by the spec's own ``finalize_columns`` on (g x (B + 1)) pseudo-groups."""
        from rayeval.metrics.classification import ClassificationState

        c = len(self.spec.classes)
        shape = sums.shape[:-1]
        conf = sums.reshape(-1, c, c).astype(np.float64)
        n = conf.shape[0]
        present = np.rint(conf).astype(np.int64)
        table = KeyedArrays(tuple(range(n)), {
            "confusion": conf, "label_rows": present.sum(axis=2),
            "pred_rows": present.sum(axis=1),
            "invalid": np.zeros((n, 6), dtype=np.int64)})
        kind = "str" if isinstance(self.spec.classes[0], str) else "int"
        cols = self.spec.finalize_columns(ClassificationState(self.spec.classes, kind, table))
        return _by_metric(cols, n, shape)


def _binary_metrics(sums, pos: int) -> dict[tuple, np.ndarray]:
    """The headline binary metrics from (..., 4) confusion sums (row-major true x predicted),
    as the classification spec computes them (same formulas; NaN where a denominator is 0):
    accuracy, balanced accuracy, MCC, Cohen's kappa and the positive class's precision,
    recall, F1, specificity. Per-class values and micro/macro/weighted averages get no
    bootstrap here (per-class proportions have Wilson intervals)."""
    m = sums.astype(np.float64).reshape(sums.shape[:-1] + (2, 2))
    neg = 1 - pos
    tp, fn = m[..., pos, pos], m[..., pos, neg]
    fp, tn = m[..., neg, pos], m[..., neg, neg]
    n = tp + fn + fp + tn
    with np.errstate(divide="ignore", invalid="ignore"):
        recall, spec_ = tp / (tp + fn), tn / (tn + fp)
        has_pos, has_neg = (tp + fn) > 0, (tn + fp) > 0
        balanced = np.where(has_pos & has_neg, (recall + spec_) / 2,
                            np.where(has_pos, recall, np.where(has_neg, spec_, np.nan)))
        po = (tp + tn) / n
        pe = ((tp + fp) * (tp + fn) + (tn + fn) * (tn + fp)) / (n * n)
        kappa = np.where(pe < 1, (po - pe) / (1 - pe), np.nan)
        mcc = (tp * tn - fp * fn) / np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        out = {("accuracy", None, None): po, ("balanced_accuracy", None, None): balanced,
               ("mcc", None, None): mcc, ("cohen_kappa", None, None): kappa,
               ("precision", None, "binary"): tp / (tp + fp),
               ("recall", None, "binary"): recall,
               ("f1", None, "binary"): 2 * tp / (2 * tp + fp + fn),
               ("specificity", None, "binary"): spec_}
    return {k: np.where(n > 0, v, np.nan) for k, v in out.items()}


@dataclass(frozen=True)
class BinaryScoreView:
    """Coarse score histogram and loss sums of a
    :class:`~rayeval.metrics.scores.BinaryScoreSpec`."""

    spec: object
    dtype: type = np.float64

    @property
    def sub(self) -> int:
        return max(1, math.ceil(SCORE_BUCKETS / self.spec.n_calibration_bins))

    @property
    def n_buckets(self) -> int:
        return self.sub * self.spec.n_calibration_bins

    @property
    def n_slots(self) -> int:
        return 2 * self.n_buckets + 2 + self.spec.n_calibration_bins

    def rows(self, batch, n):
        label = np.asarray(batch["label"])
        p = np.asarray(batch["score"], dtype=np.float64)
        missing = (label == None) | (label != label)  # noqa: E711 (elementwise)
        valid = ~np.asarray(missing, dtype=bool) & np.isfinite(p) & (p >= 0) & (p <= 1)
        if self.spec.classes is not None:
            valid &= np.isin(label, list(self.spec.classes))
        p = p[valid]
        y = label[valid] == self.spec.positive_class
        nb, k = self.spec.n_calibration_bins, self.sub
        cal = calibration_bin_ids(p, nb)
        bucket = cal * k + np.clip(((p * nb - cal) * k).astype(np.int64), 0, k - 1)
        m = self.n_buckets
        slots = np.stack([y * m + bucket, np.full(p.size, 2 * m), np.full(p.size, 2 * m + 1),
                          2 * m + 2 + cal], axis=1)
        values = np.stack([np.ones(p.size), binary_log_loss_terms(y, p), (p - y) ** 2, p],
                          axis=1)
        return valid, slots, values

    def metrics(self, sums):
        m, k = self.n_buckets, self.sub
        neg, pos = sums[..., :m], sums[..., m:2 * m]
        wp = sums[..., 2 * m + 2:]
        w = neg.sum(-1) + pos.sum(-1)
        p_tot, n_tot = pos.sum(-1), neg.sum(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            below = np.cumsum(neg, axis=-1) - neg
            auc = (pos * (below + 0.5 * neg)).sum(-1) / (p_tot * n_tot)
            tp = np.cumsum(pos[..., ::-1], axis=-1)
            fp = np.cumsum(neg[..., ::-1], axis=-1)
            pr = (pos[..., ::-1] * np.where(tp + fp > 0, tp / (tp + fp), 0.0)).sum(-1) / p_tot
            cal_w = pos.reshape(pos.shape[:-1] + (-1, k)).sum(-1)
            cal_p = wp
            ece = np.abs(cal_p - cal_w).sum(-1) / w
            out = {"roc_auc": auc, "pr_auc": pr, "log_loss": sums[..., 2 * m] / w,
                   "brier_loss": sums[..., 2 * m + 1] / w, "ece": ece}
        out["roc_auc"] = np.where((p_tot > 0) & (n_tot > 0), auc, np.nan)
        out["pr_auc"] = np.where(p_tot > 0, pr, np.nan)
        return {(name, None, None): np.where(w > 0, v, np.nan) for name, v in out.items()}


@dataclass(frozen=True)
class RegressionView:
    """Weighted error and target sums of a :class:`~rayeval.metrics.regression.RegressionSpec`."""

    spec: object = None
    dtype: type = np.float64
    n_slots: int = 9

    def rows(self, batch, n):
        y = np.asarray(batch["target"], dtype=np.float64)
        p = np.asarray(batch["prediction"], dtype=np.float64)
        valid = np.isfinite(y) & np.isfinite(p)
        y, p = y[valid], p[valid]
        e = p - y
        ae = np.abs(e)
        nz = y != 0
        den = np.abs(p) + np.abs(y)
        smape = np.divide(2.0 * ae, den, out=np.zeros_like(ae), where=den > 0)
        ape = np.divide(ae, np.abs(y), out=np.zeros_like(ae), where=nz)
        values = np.stack([np.ones(y.size), ae, e * e, ape, nz, smape, e, y, y * y], axis=1)
        return valid, np.broadcast_to(np.arange(9), values.shape), values

    def metrics(self, sums):
        w, ae, se, ape, nz, smape, e, y, yy = np.moveaxis(sums, -1, 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ss_y = yy - y * y / w
            ss_e = se - e * e / w
            mse = se / w
            out = {"mean_signed_deviation": e / w, "mae": ae / w, "mse": mse, "rmse": np.sqrt(mse),
                   "r2": 1.0 - se / ss_y, "explained_variance": 1.0 - ss_e / ss_y,
                   "mape": np.where(nz > 0, ape / nz, np.nan), "smape": smape / w}
        return {(k, None, None): np.where(w > 0, v, np.nan) for k, v in out.items()}


def view_for(spec) -> object | None:
    """The replicate view of a metric spec, or ``None`` when its family has none (multiclass
    score metrics; classification without fixed ``classes``)."""
    from rayeval.metrics.classification import ClassificationSpec
    from rayeval.metrics.regression import RegressionSpec
    from rayeval.metrics.scores import BinaryScoreSpec

    if isinstance(spec, ClassificationSpec):
        return ClassificationView(spec) if spec.classes is not None else None
    if isinstance(spec, BinaryScoreSpec):
        return BinaryScoreView(spec)
    if isinstance(spec, RegressionSpec):
        return RegressionView(spec)
    return None
