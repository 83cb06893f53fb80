"""Probabilistic (score-based) metrics: ROC AUC, average precision, log loss, Brier score,
expected calibration error and top-k accuracy, per group, from small mergeable states.

Two specs follow the contract of :mod:`rayeval.metrics.base`:

- :class:`BinaryScoreSpec`: batch columns ``label`` (n,), ``score`` (n,) float positive-class
  probability, optional ``weight`` (n,).
- :class:`MulticlassScoreSpec`: batch columns ``label`` (n,), ``scores`` (n, K) float class
  probabilities (column j is ``classes[j]``), optional ``weight`` (n,).

The ranking metrics come from a sparse per-group score histogram
(:mod:`rayeval.metrics._score_hist`): small groups stay exact (one bucket per distinct score);
a group with more distinct scores than ``bucket_budget`` is coarsened to the finest resolution
that fits, a function of the group's data only, so results do not depend on partitioning.
Every ``roc_auc`` / ``pr_auc`` carries a guaranteed bound on its distance to the exact
(scikit-learn) value; ``exact=True`` never coarsens and matches scikit-learn to 1e-12.
Losses and calibration use exact per-group sums, independent of bucketing.

The multiclass spec is in :mod:`rayeval.metrics.scores_multiclass`; both are registered here as
the ``scores`` family.

Invalid rows are excluded and counted per group and reason (:meth:`invalid_counts`).
Weights: rows with weight 0 count in ``n_rows`` but affect no metric (as in scikit-learn).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from rayeval.core import kernels
from rayeval.metrics import _score_hist as sh
from rayeval.metrics import _score_math as sm
from rayeval.metrics._score_spec import (PROBABILITY_METRICS, ScoreState,  # noqa: F401
                                         _class_index, _column, _equals, _ScoreSpecBase,
                                         auto_bucket_budget, check_label_kind)
from rayeval.metrics.scores_multiclass import MulticlassScoreSpec
from rayeval.core.contract import MetricInfo
from rayeval.core.registry import register_family
from rayeval.core.state import HIGHER, LOWER, NEUTRAL, MetricResult, ResultColumns

__all__ = ["BinaryScoreSpec", "MulticlassScoreSpec", "ScoreState", "auto_bucket_budget"]


@dataclass(frozen=True)
class BinaryScoreSpec(_ScoreSpecBase):
    """Binary probabilistic metrics per group.

    Args:
        positive_class: label value meaning positive (labels are compared with ``==``); every
            other non-missing label is negative, unless ``classes`` is given.
        classes: ``None``, or the tuple of valid label values (the task's configured class
            list, ``positive_class`` among them): a label outside it is excluded from every
            score metric and counted as ``unknown_class`` (as the label metrics do).
        exact: keep one bucket per distinct score (no coarsening, bound 0).
        max_bound: target bound on ``|roc_auc - exact|`` and ``|pr_auc - exact|``; sizes the
            default budget (:func:`auto_bucket_budget`). A result whose bound ends above it is
            still reported, with its true bound.
        bucket_budget: max occupied buckets per group (``None``: from ``max_bound``).
        n_calibration_bins: equal-width bins on [0, 1] for ``ece`` / :meth:`calibration_curve`.

    Batch: ``label`` (n,) any dtype, ``score`` (n,) float in [0, 1], optional ``weight`` (n,)
    float >= 0.

    Metrics per group (``MetricResult.metric``):

    - ``roc_auc`` (higher is better): scikit-learn's ``roc_auc_score``; bucketed: within-bucket
      pairs count 1/2, ``error_bound = sum_b P_b N_b / (2 P N)``.
    - ``pr_auc`` (higher): average precision, step-wise as ``average_precision_score``; bucketed:
      the midpoint of the interval of every value consistent with the histogram, with its
      half-width as ``error_bound`` (derivation in
      :func:`~rayeval.metrics._score_math.average_precision_from_buckets`).
    - ``log_loss`` (lower): weighted mean of ``-log(clip(p))`` for positives and
      ``-log(clip(1 - p))`` for negatives, clipped to ``[eps, 1 - eps]`` (float64 eps) as
      scikit-learn >= 1.5, so p in {0, 1} costs at most 36.04 per row, never inf. Scores are
      cast to float64 (scikit-learn would clip float32 input at float32 eps).
    - ``brier_loss`` (lower; named ``brier_score`` before 0.2): weighted mean of ``(p - y)**2``
      (``brier_score_loss``).
    - ``ece`` (lower): ``sum_bins |sum w p - sum w y| / sum w`` over ``n_calibration_bins``
      equal-width bins, i.e. the bin-weight-averaged ``|mean score - fraction positive|``
      (Naeini et al. 2015, AAAI; Guo et al. 2017, ICML).
    - ``n_rows``, ``n_positive`` (neutral): valid rows and valid positive rows, unweighted.

    Undefined (NaN plus reason): ``empty`` (no valid row of positive weight), ``single_class``
    (roc_auc), ``no_positive_labels`` (pr_auc). A group is exact (bound 0) while its distinct
    scores fit the budget; each bound is computed from the merged state in O(buckets).

    Raises:
        ValueError: on invalid options.
    """

    positive_class: object = 1
    exact: bool = False
    max_bound: float = 1e-4
    bucket_budget: int | None = None
    n_calibration_bins: int = 10
    classes: tuple | None = None
    raw: bool = False

    INPUTS = {"label": "class_label", "score": "score", "weight": "weight?"}

    def metrics(self) -> tuple[MetricInfo, ...]:
        """Declared metrics (see the class docstring)."""
        info = self._info
        out = (info("roc_auc", HIGHER, 1, approximate=not self.exact),
               info("pr_auc", HIGHER, 2, approximate=not self.exact),
               info("log_loss", LOWER, 8), info("brier_loss", LOWER), info("ece", LOWER, 7),
               info("n_rows", NEUTRAL, needs_labels=False), info("n_positive", NEUTRAL))
        return tuple(i for i in out if not (self.raw and i.name in PROBABILITY_METRICS))

    def __post_init__(self) -> None:
        self._check_options()
        if self.classes is not None and self.positive_class not in self.classes:
            raise ValueError(f"Expected `positive_class` {self.positive_class!r} among `classes` "
                             f"{self.classes!r}.")

    def _layout(self) -> tuple:
        return ("binary_score", repr(self.positive_class), self._budget(),
                self.n_calibration_bins, repr(self.classes), self.raw)

    def _row_stats(self, batch, n) -> SimpleNamespace:
        """Grouping-independent per-row work: validation, loss terms, bucket keys and order."""
        label = _column(batch, "label", n)
        check_label_kind(label, self.positive_class, "`positive_class`")
        score = np.asarray(_column(batch, "score", n), dtype=np.float64)
        if score.ndim != 1:
            raise ValueError(f"Expected `score` of shape ({n},), got shape {score.shape}.")
        w, w_nonfinite, w_negative = sm.weight_conditions(batch.get("weight"), n)
        missing, out_of_range = sm.score_conditions(score, self.raw)
        if self.raw:  # ranking only: order-keeping scores in [0, 0.5)
            score = np.where(missing | out_of_range, 0.0, score)
            score = sm.raw_order_scores(score)
        unknown = (np.zeros(n, dtype=bool) if self.classes is None
                   else _class_index(label, self.classes) < 0)  # missing labels come first
        reason, ok = self._reasons([sm.missing_mask(label), unknown, missing, out_of_range,
                                    w_nonfinite, w_negative], n)
        p, w = score[ok], w[ok]
        y = _equals(label[ok], self.positive_class)
        nb = self.n_calibration_bins
        bins, log_loss, brier, wp, wy = kernels.binary_row_terms(
            p, y, w, sm.padded_bin_edges(nb), nb)  # one compiled pass (see _score_math)
        keep = w > 0
        keys = sh.exact_keys(p[keep])
        return SimpleNamespace(
            reason=reason, ok=ok, y=y, w=w, wp=wp, wy=wy, keep=keep, bins=bins,
            log_loss=log_loss, brier=brier, bucket_keys=keys, key_order=sh.key_order(keys),
            pos_w=wy[keep], neg_w=(w - wy)[keep])

    def _grouped_sums(self, r: SimpleNamespace, c: np.ndarray, g: int) -> dict:
        sums = kernels.binary_group_sums(np.asarray(c, dtype=np.int64), r.y, r.w, r.log_loss,
                                         r.brier, r.bins, r.wp, r.wy, g, self.n_calibration_bins)
        return dict(zip(("n_rows", "n_pos", "w", "log_loss", "brier", "cal"), sums))

    def finalize(self, state: ScoreState) -> list[MetricResult]:
        """One result per group and metric (see the class docstring for names and reasons);
        ranking metrics of all groups at once (:func:`~rayeval.metrics._score_math.ranking_metrics`)."""
        return self.finalize_columns(state).results()

    def finalize_columns(self, state: ScoreState) -> ResultColumns:
        """The values of :meth:`finalize` as columns (:class:`ResultColumns`)."""
        out = ResultColumns(state.keys)
        if not state.keys:
            return out
        a = state.sums.arrays
        rk = self._ranking(state)
        w = a.get("w", np.zeros(0))
        with np.errstate(divide="ignore", invalid="ignore"):
            pos_w = w > 0
            log_loss = np.where(pos_w, a.get("log_loss", w) / w, math.nan)
            brier = np.where(pos_w, a.get("brier", w) / w, math.nan)
            cal = a.get("cal", np.zeros((0, 3, 1)))
            ece = np.where(pos_w, np.abs(cal[:, 1] - cal[:, 2]).sum(axis=-1) / w, math.nan)
        empty = np.where(pos_w, "", "empty")
        out.add("roc_auc", rk["roc_auc"], HIGHER, np.asarray(rk["roc_reason"], dtype=object),
                rk["roc_bound"])
        out.add("pr_auc", rk["pr_auc"], HIGHER, np.asarray(rk["pr_reason"], dtype=object),
                rk["pr_bound"])
        if not self.raw:  # raw scores are no probabilities: no probability metric
            out.add("log_loss", log_loss, LOWER, empty)
            out.add("brier_loss", brier, LOWER, empty)
            out.add("ece", ece, LOWER, empty)
        out.add("n_rows", a.get("n_rows", w), NEUTRAL)
        out.add("n_positive", a.get("n_pos", w), NEUTRAL)
        return out

    def calibration_curve(self, state: ScoreState) -> list[tuple]:
        """Reliability diagram per group: equal-width bins, as scikit-learn's
        ``calibration_curve(strategy="uniform")`` (``prob_true`` = fraction_positive,
        ``prob_pred`` = mean_score), extended to weights.

        Returns:
            list of ``(key, bin_lower, bin_upper, weight, mean_score, fraction_positive)`` for
            every non-empty bin (weight > 0), in key then bin order; bins are ``[0, e1]`` then
            ``(e_i, e_i+1]``.
        """
        cal = state.sums.arrays.get("cal")
        return [(key, *row) for i, key in enumerate(state.keys)
                for row in sm.reliability(cal[i], self.n_calibration_bins)]


def _build(task):
    classes = tuple(task.classes) if task.classes is not None else None
    if task.type == "binary" and task.score:
        return BinaryScoreSpec(positive_class=task.positive_class, exact=task.exact_scores,
                               classes=classes, n_calibration_bins=task.calibration_bins,
                               raw=task.scores_are == "raw")
    if task.type == "multiclass" and task.scores:
        return MulticlassScoreSpec(classes=classes, top_k=tuple(task.top_k),
                                   exact=task.exact_scores,
                                   n_calibration_bins=task.calibration_bins,
                                   raw=task.scores_are == "raw")
    return None


def _columns(task) -> dict:
    if task.type == "binary":
        return {"label": task.label, "score": task.score}
    return {"label": task.label, "scores": tuple(task.scores or ())}


# the label metrics of the same task report their own ``n_rows``
register_family("scores", ("binary", "multiclass"), _build, _columns,
                renames={"n_rows": "n_rows_scored"})
