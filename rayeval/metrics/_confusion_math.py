"""Formulas of the label metrics over merged confusion matrices (private): per-class ratios,
their averages, accuracy, balanced accuracy, MCC and Cohen's kappa, vectorised over groups.
Conventions and scikit-learn sources in :mod:`rayeval.metrics.classification`.
"""

from __future__ import annotations

import numpy as np

from rayeval.core.state import KeyedArrays, safe_div


class _Stats:
    """Vectorised per-group, per-class counts of one finalized table (internal)."""

    def __init__(self, tab: KeyedArrays, zero_division: float) -> None:
        m = tab.arrays["confusion"]
        c = m.shape[1]
        off = 1.0 - np.eye(c)
        self.fill = zero_division
        self.t = m.sum(axis=2)                    # weighted labels per class (G, C)
        self.p = m.sum(axis=1)                    # weighted predictions per class (G, C)
        self.tp = np.diagonal(m, axis1=1, axis2=2).copy()
        self.fp = (m * off).sum(axis=1)
        self.fn = (m * off).sum(axis=2)
        self.neg = self.t @ off                   # weight of rows whose label is another class
        self.tn = np.maximum(self.neg - self.fp, 0.0)
        self.w = self.t.sum(axis=1)
        self.n_rows = tab.arrays["label_rows"].sum(axis=1)
        self.present = (tab.arrays["label_rows"] + tab.arrays["pred_rows"]) > 0
        self.empty = ~(self.w > 0)
        self.off_obs = (m * off).sum(axis=(1, 2))
        self.off_exp = np.einsum("gi,gj,ij->g", self.p, self.t, off)

    def _reasons(self, zd: np.ndarray, value: np.ndarray | None = None) -> np.ndarray:
        empty = self.empty if zd.ndim == 1 else self.empty[:, None]
        out = np.where(zd, "zero_division", "")
        if value is not None:
            out = np.where(np.isnan(value), "zero_division", out)
        return np.where(empty, "empty", out)

    def _ratio(self, num, den):
        zd = ~(den > 0)
        val = np.where(zd, self.fill, safe_div(num, den))
        return val, zd

    def _num_den(self, name: str, reduce=None):
        r = reduce or (lambda x: x)
        return {"precision": (r(self.tp), r(self.p)), "recall": (r(self.tp), r(self.t)),
                "f1": (2 * r(self.tp), r(self.t) + r(self.p)),
                "specificity": (r(self.tn), r(self.neg)),
                "jaccard": (r(self.tp), r(self.t) + r(self.p) - r(self.tp))}[name]

    def ratio(self, name: str):
        """Per-class value (G, C) and reason (G, C) of one of :data:`RATIOS`."""
        val, zd = self._ratio(*self._num_den(name))
        empty = self.empty[:, None]
        return np.where(empty, np.nan, val), self._reasons(zd)

    def share(self, x: np.ndarray):
        val = safe_div(x, self.w[:, None])
        return val, self._reasons(np.zeros(x.shape, dtype=bool))

    def average(self, name: str, avg: str):
        """Averaged value (G,) and reason (G,) over the classes present in each group."""
        pres = self.present
        if avg == "micro":
            val, zd = self._ratio(*self._num_den(name, lambda x: np.where(pres, x, 0).sum(1)))
            return np.where(self.empty, np.nan, val), self._reasons(zd)
        val, zd = self._ratio(*self._num_den(name))
        use = pres & ~np.isnan(val)
        wts = np.where(use, 1.0 if avg == "macro" else self.t, 0.0)
        out = safe_div(np.where(use, val * wts, 0.0).sum(1), wts.sum(1))
        all_zd = ~(pres & ~zd).any(axis=1)
        out = np.where(self.empty, np.nan, out)
        return out, self._reasons(all_zd, out)

    @property
    def accuracy(self):
        val = np.where(self.empty, np.nan, safe_div(self.tp.sum(1), self.w))
        return val, self._reasons(np.zeros(val.shape, dtype=bool))

    @property
    def balanced_accuracy(self):
        has = self.t > 0
        rec = np.where(has, safe_div(self.tp, self.t, 0.0), 0.0).sum(1)
        val = np.where(self.empty, np.nan, safe_div(rec, has.sum(1)))
        return val, self._reasons(np.zeros(val.shape, dtype=bool))

    def _single(self):
        single = ((self.t > 0).sum(1) < 2) | ((self.p > 0).sum(1) < 2)
        reasons = np.where(self.empty, "empty", np.where(single, "single_class", ""))
        return single | self.empty, reasons

    @property
    def mcc(self):
        bad, reasons = self._single()
        n = self.w
        cov_tp = self.tp.sum(1) * n - (self.t * self.p).sum(1)
        cov_pp = n * n - (self.p * self.p).sum(1)
        cov_tt = n * n - (self.t * self.t).sum(1)
        den = np.sqrt(np.where(bad, 1.0, cov_pp * cov_tt))
        return np.where(bad, np.nan, cov_tp / den), reasons

    @property
    def kappa(self):
        # undefined only when chance disagreement is 0: labels and predictions all one and
        # the same class (one-sided constant predictions give 0.0, as scikit-learn)
        bad = self.empty | (self.off_exp <= 0)
        reasons = np.where(self.empty, "empty", np.where(bad, "single_class", ""))
        expected = safe_div(self.off_exp, self.w, 1.0)
        val = 1.0 - safe_div(self.off_obs, np.where(bad, 1.0, expected))
        return np.where(bad, np.nan, val), reasons
