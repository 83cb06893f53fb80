"""The multiclass score spec (:class:`MulticlassScoreSpec`): batch columns ``label`` (n,),
``scores`` (n, K) float class probabilities (column j is ``classes[j]``), optional ``weight``
(n,); one-vs-rest ROC / PR AUC, log loss, Brier score, ECE and top-k accuracy. Registered with
the binary spec as the ``scores`` family in :mod:`rayeval.metrics.scores`, which also holds the
shared documentation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from rayeval.core.contract import MetricInfo
from rayeval.core.state import HIGHER, LOWER, NEUTRAL, MetricResult, grouped_sum
from rayeval.metrics import _score_hist as sh
from rayeval.metrics import _score_math as sm
from rayeval.metrics._score_spec import (PROBABILITY_METRICS, ScoreState, _class_index, _column,
                                         _res, _ScoreSpecBase, check_label_kind)


@dataclass(frozen=True)
class MulticlassScoreSpec(_ScoreSpecBase):
    """Multiclass probabilistic metrics per group.

    Args:
        classes: tuple of K >= 2 unique labels; column j of ``scores`` is ``classes[j]``.
        top_k: tuple of ints >= 1; one ``top_{k}_accuracy`` metric each.
        exact, max_bound, bucket_budget: as :class:`BinaryScoreSpec` (budget per group and
            class: each class keeps its own one-vs-rest histogram).
        n_calibration_bins: equal-width bins of each class's one-vs-rest ECE (default 10).

    Batch: ``label`` (n,), ``scores`` (n, K) float in [0, 1], optional ``weight`` (n,) >= 0.

    Metrics per group: ``roc_auc`` one-vs-rest per class (``class_label`` set) and averaged
    (``average`` ``macro`` / ``weighted``, as scikit-learn's
    ``roc_auc_score(multi_class="ovr")``, weights = weighted class prevalence; classes whose AUC
    is undefined are skipped, where scikit-learn would raise); ``pr_auc`` the same way (per
    class ``average_precision_score(y == c, scores[:, c])``, averaged as
    ``average_precision_score(label_binarize(y), scores, average=...)``); ``ece`` one-vs-rest
    per class (the binary ECE of ``scores[:, c]`` against ``y == c`` over
    ``n_calibration_bins`` equal-width bins) and averaged (``macro``: the classwise ECE of Kull
    et al., NeurIPS 2019; ``weighted`` by class prevalence), with :meth:`calibration_curve` per
    class; ``log_loss`` (scikit-learn
    ``log_loss(labels=classes)``: ``-log(clip(p_true, eps, 1 - eps))``, scores not
    renormalised); ``brier_loss`` (mean of ``sum_k (p_k - y_k)**2``, halved when K == 2, as
    scikit-learn's ``brier_score_loss(scale_by_half="auto")``); ``top_{k}_accuracy`` (weighted
    share of rows whose label is among the k highest scores; ties as scikit-learn's
    ``top_k_accuracy_score``: the later column wins; equals it for K >= 3 and sorted
    ``classes``); ``n_rows``. Reasons: ``missing_label``, ``unknown_class``, ``missing_score``
    (any NaN in the row), ``score_out_of_range``, ``nonfinite_weight``, ``negative_weight``.

    Raises:
        ValueError: on invalid options.
    """

    classes: tuple = ()
    top_k: tuple = (2,)
    exact: bool = False
    max_bound: float = 1e-4
    bucket_budget: int | None = None
    n_calibration_bins: int = 10
    raw: bool = False

    INPUTS = {"label": "class_label", "scores": "scores", "weight": "weight?"}

    def metrics(self) -> tuple[MetricInfo, ...]:
        """Declared metrics (see the class docstring)."""
        info = self._info
        ovr = {"per_class": True, "averages": ("macro", "weighted")}
        out = (info("roc_auc", HIGHER, 5, approximate=not self.exact, **ovr),
               info("pr_auc", HIGHER, 6, approximate=not self.exact, **ovr),
               info("ece", LOWER, 7, **ovr), info("log_loss", LOWER, 8),
               info("brier_loss", LOWER),
               *(info(f"top_{k}_accuracy", HIGHER) for k in self.top_k),
               info("n_rows", NEUTRAL, needs_labels=False))
        return tuple(i for i in out if not (self.raw and i.name in PROBABILITY_METRICS))

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "top_k", tuple(self.top_k))
        self._check_options()
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"Expected `classes` of >= 2 unique labels, got {self.classes!r}.")
        if not all(isinstance(k, (int, np.integer)) and k >= 1 for k in self.top_k):
            raise ValueError(f"Expected `top_k` a tuple of ints >= 1, got {self.top_k!r}.")

    @property
    def _n_classes_hist(self) -> int:
        return len(self.classes)

    def _layout(self) -> tuple:
        return ("multiclass_score", tuple(repr(c) for c in self.classes), self._budget(),
                self.top_k, self.n_calibration_bins, self.raw)

    def _row_stats(self, batch, n) -> SimpleNamespace:
        """Grouping-independent per-row work: validation, loss terms, one-vs-rest bucket keys
        (row-major: entry ``i * K + j`` is row i, class j) and their order."""
        label = _column(batch, "label", n)
        check_label_kind(label, self.classes[0], "`classes[0]`")
        kk = len(self.classes)
        scores = np.asarray(_column(batch, "scores", n), dtype=np.float64)
        if scores.shape != (n, kk):
            raise ValueError(f"Expected `scores` of shape ({n}, {kk}), got {scores.shape}.")
        w, w_nonfinite, w_negative = sm.weight_conditions(batch.get("weight"), n)
        idx = _class_index(label, self.classes)
        missing_label = sm.missing_mask(label)
        missing, out_of_range = sm.score_conditions(scores, self.raw)
        if self.raw:  # ranking only (one-vs-rest AUC, top-k): order-keeping scores
            bad = (missing | out_of_range)[:, None]
            scores = sm.raw_order_scores(np.where(bad | ~np.isfinite(scores), 0.0, scores))
        reason, ok = self._reasons([missing_label, ~missing_label & (idx < 0), missing,
                                    out_of_range, w_nonfinite, w_negative], n)
        s, w, t = scores[ok], w[ok], idx[ok]
        m = t.size
        onehot = np.zeros((m, kk), dtype=np.float64)
        onehot[np.arange(m), t] = 1.0
        p_true = s[np.arange(m), t]
        brier = ((s - onehot) ** 2).sum(axis=1) * (0.5 if kk == 2 else 1.0)
        ranks = sm.top_k_ranks(s, t)
        keep = w > 0
        keys = sh.exact_keys(s[keep].ravel())
        return SimpleNamespace(
            reason=reason, ok=ok, w=w, t=t, keep=keep, scores=s, onehot=onehot,
            bins=sm.calibration_bin_ids(s.ravel(), self.n_calibration_bins).reshape(m, kk),
            log_loss=-w * np.log(np.clip(p_true, sm.EPS, 1.0 - sm.EPS)), brier=w * brier,
            top_k=[w * (ranks < k) for k in self.top_k],
            bucket_keys=keys, key_order=sh.key_order(keys),
            pos_w=(w[keep][:, None] * onehot[keep]).ravel(),
            neg_w=(w[keep][:, None] * (1.0 - onehot[keep])).ravel())

    def _grouped_sums(self, r: SimpleNamespace, c: np.ndarray, g: int) -> dict:
        kk = len(self.classes)
        return {
            "n_rows": grouped_sum(c, g),
            "w": grouped_sum(c, g, r.w),
            "w_class": grouped_sum(c, g, r.w, kk, r.t),
            "log_loss": grouped_sum(c, g, r.log_loss),
            "brier": grouped_sum(c, g, r.brier),
            "top_k": np.stack([grouped_sum(c, g, v) for v in r.top_k], axis=-1)
            if self.top_k else np.zeros((g, 0)),
            # (G, K, 3, bins): weight, weighted score and weighted one-vs-rest label per bin
            "cal": np.stack([np.stack([grouped_sum(c, g, v, self.n_calibration_bins,
                                                   r.bins[:, j])
                                       for v in (r.w, r.w * r.scores[:, j],
                                                 r.w * r.onehot[:, j])], axis=1)
                             for j in range(kk)], axis=1),
        }

    def finalize(self, state: ScoreState) -> list[MetricResult]:
        """One result per group and metric (see the class docstring for names and reasons)."""
        out: list[MetricResult] = []
        if not state.keys:
            return out
        a = state.sums.arrays
        kk = len(self.classes)
        rk = self._ranking(state)
        cal = a.get("cal", np.zeros((len(state.keys), kk, 3, self.n_calibration_bins)))
        with np.errstate(divide="ignore", invalid="ignore"):  # (G, K): NaN where w == 0
            ece_all = np.abs(cal[:, :, 1] - cal[:, :, 2]).sum(axis=-1) / a["w"][:, None]
        zero_bound = np.zeros(len(ece_all.ravel()))
        no_reason = [""] * len(zero_bound)
        per_class = (("roc_auc", rk["roc_auc"].tolist(), rk["roc_bound"].tolist(),
                      rk["roc_reason"], "single_class"),
                     ("pr_auc", rk["pr_auc"].tolist(), rk["pr_bound"].tolist(),
                      rk["pr_reason"], "no_positive_labels"),
                     ("ece", ece_all.ravel().tolist(), zero_bound.tolist(), no_reason, "empty"))
        for i, key in enumerate(state.keys):
            w = a["w"][i]
            empty = "" if w > 0 else "empty"
            prev = a["w_class"][i]
            for metric, values, bounds_, reasons, undefined in per_class:
                direction = LOWER if metric == "ece" else HIGHER
                vals = np.array(values[i * kk:(i + 1) * kk], dtype=np.float64)
                bounds = np.array(bounds_[i * kk:(i + 1) * kk], dtype=np.float64)
                for j, cls in enumerate(self.classes):  # K classes per group
                    r = reasons[i * kk + j] or ("" if w > 0 else "empty")
                    out.append(_res(key, metric, vals[j], direction, r, bounds[j], cls))
                ok = ~np.isnan(vals)
                reason = "empty" if w <= 0 else undefined
                for avg, wts in (("macro", np.ones(kk)), ("weighted", prev)):
                    wts = wts[ok]
                    if ok.any() and wts.sum() > 0:
                        wts = wts / wts.sum()
                        out.append(_res(key, metric, vals[ok] @ wts, direction, "",
                                        bounds[ok] @ wts, None, avg))
                    else:
                        out.append(_res(key, metric, math.nan, direction, reason, 0.0, None,
                                        avg))
            out.append(_res(key, "log_loss", a["log_loss"][i] / w if w > 0 else math.nan, LOWER,
                            empty))
            out.append(_res(key, "brier_loss", a["brier"][i] / w if w > 0 else math.nan, LOWER,
                            empty))
            for j, k in enumerate(self.top_k):
                out.append(_res(key, f"top_{k}_accuracy",
                                a["top_k"][i][j] / w if w > 0 else math.nan, HIGHER, empty))
            out.append(_res(key, "n_rows", a["n_rows"][i], NEUTRAL))
        if self.raw:  # raw scores are no probabilities: no probability metric
            out = [r for r in out if r.metric not in PROBABILITY_METRICS]
        return out

    def calibration_curve(self, state: ScoreState) -> list[tuple]:
        """One-vs-rest reliability diagram per group and class (equal-width bins, as
        scikit-learn's ``calibration_curve(y == c, scores[:, c], strategy="uniform")``,
        extended to weights).

        Returns:
            list of ``(key, class, bin_lower, bin_upper, weight, mean_score,
            fraction_positive)`` for every non-empty bin, in key, class, bin order.
        """
        cal = state.sums.arrays.get("cal")
        return [(key, cls, *row) for i, key in enumerate(state.keys)
                for j, cls in enumerate(self.classes)
                for row in sm.reliability(cal[i, j], self.n_calibration_bins)]
