"""Coverage by simulation: 400 independent draws (fixed seeds) per metric, evaluated at once as
400 groups of one grouped state (in several batches, merged), so each test takes seconds. A 95%
interval must cover the true value in >= 94% of the draws (Wilson at n = 20, p = 0.98: >= 92%)."""

import numpy as np
import pytest
from scipy import integrate, stats

from rayeval.metrics.base import GroupIndex
from rayeval.metrics.classification import ClassificationSpec
from rayeval.metrics.regression import RegressionSpec
from rayeval.metrics.scores import BinaryScoreSpec
from rayeval.stats.intervals import delong, logit_interval, bootstrap_interval, wilson
from rayeval.stats.replicate import ReplicatedSpec
from rayeval.stats.views import view_for
from rayeval.stats.weights import replicate_matrix

DRAWS, B = 400, 200


def test_wilson_coverage_accuracy_n1000_p09():
    k = np.random.default_rng(11).binomial(1000, 0.9, DRAWS)
    lo, hi = wilson(k, 1000)
    assert ((lo <= 0.9) & (0.9 <= hi)).mean() >= 0.94


def test_wilson_coverage_small_n():
    k = np.random.default_rng(12).binomial(20, 0.98, DRAWS)
    lo, hi = wilson(k, 20)
    assert ((lo <= 0.98) & (0.98 <= hi)).mean() >= 0.92


def test_delong_coverage_roc_auc_100_positives():
    rng = np.random.default_rng(13)
    n_pos, n_neg = 100, 300
    y = np.tile(np.r_[np.ones(n_pos), np.zeros(n_neg)], DRAWS)
    x = rng.normal(size=y.size) + y  # AUC = Phi(1 / sqrt 2)
    group = np.repeat(np.arange(DRAWS), n_pos + n_neg)
    order = np.lexsort((x, group))
    out = delong(y[order], 1 - y[order], np.arange(0, y.size + 1, n_pos + n_neg))
    lo, hi = logit_interval(out["auc"], out["variance"])
    truth = stats.norm.cdf(1 / np.sqrt(2))
    assert ((lo <= truth) & (truth <= hi)).mean() >= 0.94


def _bootstrap(spec, columns: dict, n: int, metric: str, seed_offset: int):
    """(point value, lower, upper) per draw: the spec's own value, the replicate interval."""
    rep = ReplicatedSpec(view_for(spec), B)
    total = DRAWS * n
    group = np.repeat(np.arange(DRAWS), n)
    units = np.arange(total, dtype=np.uint64) + np.uint64(seed_offset * 10**9)
    state, point = rep.zero(), spec.zero()
    for rows in np.array_split(np.arange(total), 8):  # batches, merged
        g = GroupIndex(group[rows], tuple(range(DRAWS)))
        batch = {k: v[rows] for k, v in columns.items()}
        state = rep.merge(state, rep.accumulate_many(batch, replicate_matrix(units[rows], B),
                                                     [g])[0])
        point = spec.merge(point, spec.accumulate(spec.zero(), batch, g))
    vals = {(r.key, r.metric, r.class_label, r.average): r.value
            for r in spec.finalize(point)}
    key = metric if isinstance(metric, tuple) else (metric, None, None)
    value = np.array([vals[(k,) + key] for k in state.keys])
    reps = rep.values(state)[key]
    lo, hi = bootstrap_interval(value, reps[:, :B], reps[:, B])
    return value, lo, hi


def test_bootstrap_coverage_f1():
    n, rng = 1000, np.random.default_rng(14)
    y = rng.random(DRAWS * n) < 0.3
    pred = np.where(y, rng.random(y.size) < 0.8, rng.random(y.size) < 0.1)
    tp, fp, fn = 0.3 * 0.8, 0.7 * 0.1, 0.3 * 0.2
    truth = 2 * tp / (2 * tp + fp + fn)
    _, lo, hi = _bootstrap(ClassificationSpec(classes=(0, 1), positive_class=1),
                           {"label": y.astype(int), "prediction": pred.astype(int)}, n,
                           ("f1", None, "binary"), 1)
    assert ((lo <= truth) & (truth <= hi)).mean() >= 0.94


def test_bootstrap_coverage_rmse():
    n, rng = 1000, np.random.default_rng(15)
    target = rng.normal(10, 3, DRAWS * n)
    pred = target + rng.normal(0, 2, target.size)
    _, lo, hi = _bootstrap(RegressionSpec(), {"target": target, "prediction": pred}, n,
                           "rmse", 2)
    assert ((lo <= 2.0) & (2.0 <= hi)).mean() >= 0.94


def _population_average_precision(prevalence: float, shift: float) -> float:
    def integrand(t):
        s1, s0 = stats.norm.sf(t - shift), stats.norm.sf(t)
        precision = prevalence * s1 / (prevalence * s1 + (1 - prevalence) * s0)
        return precision * stats.norm.pdf(t - shift)
    return integrate.quad(integrand, -12, 12, limit=200)[0]


def test_bootstrap_coverage_pr_auc():
    n, rng = 1000, np.random.default_rng(16)
    y = rng.random(DRAWS * n) < 0.3
    x = rng.normal(size=y.size) + 1.5 * y
    truth = _population_average_precision(0.3, 1.5)
    _, lo, hi = _bootstrap(BinaryScoreSpec(positive_class=1, classes=(0, 1)),
                           {"label": y.astype(int), "score": stats.norm.cdf(x / 3)}, n,
                           "pr_auc", 3)
    assert ((lo <= truth) & (truth <= hi)).mean() >= 0.94
