"""rayeval.stats against oracles: scipy's binomtest (Wilson, McNemar), a direct O(n^2)
DeLong, brute-force weighted recomputation with the same replicate weights, a hand-computed
Benjamini-Hochberg case, plus the merge harness (any batch split gives the same replicates)."""

import numpy as np
import pytest
from scipy import stats

from rayeval.metrics.base import GroupIndex
from rayeval.metrics.classification import ClassificationSpec
from rayeval.metrics.regression import RegressionSpec
from rayeval.metrics.scores import BinaryScoreSpec
from rayeval.stats.intervals import delong, logit_interval, bootstrap_interval, wilson
from rayeval.stats.paired import benjamini_hochberg, bootstrap_p_value, mcnemar
from rayeval.stats.replicate import ReplicatedSpec
from rayeval.stats.views import view_for
from rayeval.stats.weights import poisson_weights, replicate_matrix


def test_weights_are_a_fixed_function_of_unit_and_replicate():
    h = np.array([5, 17, 5, 2**63 + 11], dtype=np.uint64)
    w = poisson_weights(h, 201)
    assert w.shape == (4, 201) and w.dtype == np.uint8
    assert (w[0] == w[2]).all()  # same unit, same weights
    assert (poisson_weights(h[::-1], 201)[::-1] == w).all()  # order/batch independent
    assert (poisson_weights(h, 201, chunk=1) == w).all()
    assert (poisson_weights(h, 50) == w[:, :50]).all()  # replicate b does not depend on B
    big = poisson_weights(np.arange(20_000, dtype=np.uint64), 100).ravel()
    freq = np.bincount(big, minlength=6)[:6] / big.size
    assert np.allclose(freq, stats.poisson(1).pmf(np.arange(6)), atol=2e-3)
    assert abs(big.mean() - 1) < 0.005 and abs(big.var() - 1) < 0.01


@pytest.mark.parametrize("k,n", [(0, 5), (3, 20), (19, 20), (20, 20), (500, 1000)])
def test_wilson_matches_scipy(k, n):
    ci = stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
    lo, hi = wilson(k, n, 0.95)
    assert lo == pytest.approx(ci.low, abs=1e-12) and hi == pytest.approx(ci.high, abs=1e-12)
    assert np.isnan(wilson(0, 0)[0])


def _delong_direct(pos_scores, neg_scores):
    """DeLong et al. 1988 with O(n^2) placements (ties 1/2)."""
    psi = lambda x, y: 1.0 if x > y else (0.5 if x == y else 0.0)  # noqa: E731
    m, n = len(pos_scores), len(neg_scores)
    v10 = np.array([np.mean([psi(x, y) for y in neg_scores]) for x in pos_scores])
    v01 = np.array([np.mean([psi(x, y) for x in pos_scores]) for y in neg_scores])
    auc = v10.mean()
    return auc, v10.var(ddof=1) / m + v01.var(ddof=1) / n


def test_delong_matches_direct_computation_with_ties():
    rng = np.random.default_rng(1)
    cells = []
    for _ in range(3):
        pos = np.round(rng.normal(1, 1, 23), 1)
        neg = np.round(rng.normal(0, 1, 31), 1)
        cells.append((pos, neg))
    ps, ns, indptr = [], [], [0]
    for pos, neg in cells:
        u = np.unique(np.concatenate([pos, neg]))
        ps.append(np.array([np.sum(pos == v) for v in u], float))
        ns.append(np.array([np.sum(neg == v) for v in u], float))
        indptr.append(indptr[-1] + u.size)
    out = delong(np.concatenate(ps), np.concatenate(ns), np.array(indptr))
    for i, (pos, neg) in enumerate(cells):
        auc, var = _delong_direct(pos, neg)
        assert out["auc"][i] == pytest.approx(auc, rel=1e-12)
        assert out["variance"][i] == pytest.approx(var, rel=1e-10)
    one = delong(np.array([1.0, 0.0]), np.array([0.0, 0.0]), np.array([0, 2]))
    assert np.isnan(one["auc"][0]) and np.isnan(one["variance"][0])


def test_mcnemar_exact_and_chi_squared():
    assert mcnemar(3, 12) == pytest.approx(stats.binomtest(3, 15, 0.5).pvalue)
    assert mcnemar(0, 0) == 1.0
    b, c = 6000, 5400
    assert mcnemar(b, c) == pytest.approx(stats.chi2.sf((abs(b - c) - 1) ** 2 / (b + c), 1))


def test_benjamini_hochberg_hand_computed():
    # m = 5: sorted p 0.01, 0.02, 0.03, 0.04, 0.5 -> 0.05, 0.05, 0.05, 0.05, 0.5
    p = np.array([0.04, 0.01, np.nan, 0.5, 0.03, 0.02])
    adj = benjamini_hochberg(p)
    assert np.allclose(adj, [0.05, 0.05, np.nan, 0.5, 0.05, 0.05], equal_nan=True)
    # monotone step-up: 0.001, 0.04, 0.045 -> 0.003, 0.045, 0.045
    assert np.allclose(benjamini_hochberg([0.045, 0.001, 0.04]), [0.045, 0.003, 0.045])


def test_bootstrap_p_value():
    reps = np.array([[-0.2, 0.1, 0.3, -0.1], [1, 1, 1, 1.0], [1, 1, 1, 1.0]])
    p = bootstrap_p_value(np.array([0.15, 0.0, 0.2]), reps, np.array([0.0, 1.0, 1.0]))
    sd = np.std(reps[0], ddof=1)  # replicates around their centre 0
    assert p[0] == pytest.approx(2 * stats.norm.sf(0.15 / sd))
    assert p[1] == pytest.approx(1.0) and p[2] == 0.0  # zero spread: 0 vs non-zero difference


def test_bootstrap_p_value_agrees_with_interval():
    # p < 0.05 exactly when the 95% normal bootstrap interval excludes 0, and no floor at
    # 1 / (B + 1): a difference 10 sd away gets p ~ 1e-23, not 1/51
    rng = np.random.default_rng(3)
    reps = rng.normal(size=(400, 50)) * 0.01
    d = rng.normal(size=400) * 0.03
    p = bootstrap_p_value(d, reps + d[:, None], d)
    lo, hi = bootstrap_interval(d, reps + d[:, None], d, level=0.95)
    assert np.array_equal(p < 0.05, (lo > 0) | (hi < 0))
    assert bootstrap_p_value(np.array([0.1]), reps[:1], np.zeros(1))[0] < 1e-6


# ---- replicate states ---------------------------------------------------------------------

def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1)
    return {"labels": {"label": y, "prediction": (p > 0.5).astype(int)},
            "scores": {"label": y, "score": p},
            "regression": {"target": y * 3.0 + rng.normal(size=n), "prediction": 3 * p}}


SPECS = {"labels": ClassificationSpec(classes=(0, 1), positive_class=1),
         "scores": BinaryScoreSpec(positive_class=1, classes=(0, 1)),
         "regression": RegressionSpec()}


@pytest.mark.parametrize("family", ["labels", "regression"])
def test_replicate_equals_brute_force_weighted_metric(family):
    """Replicate b of the state == the family's own metric on the rows weighted W[:, b]."""
    n, b = 400, 30
    batch = _data(n)[family]
    spec = SPECS[family]
    groups = GroupIndex(np.arange(n) % 3, ("a", "b", "c"))
    w = replicate_matrix(np.arange(n, dtype=np.uint64), b)
    rep = ReplicatedSpec(view_for(spec), b)
    values = rep.values(rep.accumulate_many(batch, w, [groups])[0])
    for j in (0, 7, b):  # two replicates and the full sample
        res = spec.finalize(spec.accumulate(spec.zero(), dict(batch, weight=w[:, j]), groups))
        for r in res:
            key = (r.metric, r.class_label, r.average)
            if key in values and r.metric != "n_rows":
                got = values[key][("a", "b", "c").index(r.key), j]
                assert got == pytest.approx(r.value, rel=1e-6, abs=1e-9, nan_ok=True), key


def test_score_replicates_brute_force():
    n, b = 500, 20
    batch = _data(n, 3)["scores"]
    w = replicate_matrix(np.arange(n, dtype=np.uint64), b)
    rep = ReplicatedSpec(view_for(SPECS["scores"]), b)
    values = rep.values(rep.accumulate_many(batch, w, [GroupIndex.single(n)])[0])
    y, p = batch["label"] == 1, batch["score"]
    bucket = np.minimum((p * 20).astype(int), 19)  # 2 x 10 calibration bins
    for j in (0, 5, b):
        ww = w[:, j]
        ll = -np.sum(ww * np.log(np.clip(np.where(y, p, 1 - p), 2.2e-16, 1))) / ww.sum()
        assert values[("log_loss", None, None)][0, j] == pytest.approx(ll, rel=1e-9)
        brier = np.sum(ww * (p - y) ** 2) / ww.sum()
        assert values[("brier_loss", None, None)][0, j] == pytest.approx(brier, rel=1e-9)
        # ROC AUC on the bucket grid: weighted Mann-Whitney with ties 1/2
        bp, bn = bucket[y], bucket[~y]
        wp, wn = ww[y], ww[~y]
        gt = (bp[:, None] > bn[None, :]) + 0.5 * (bp[:, None] == bn[None, :])
        auc = (wp[:, None] * wn[None, :] * gt).sum() / (wp.sum() * wn.sum())
        assert values[("roc_auc", None, None)][0, j] == pytest.approx(auc, rel=1e-9)


@pytest.mark.parametrize("family", ["labels", "scores", "regression"])
def test_replicates_do_not_depend_on_the_batch_split(family):
    n, b = 600, 25
    batch = _data(n, 5)[family]
    ids = np.arange(n, dtype=np.uint64) * np.uint64(7919)
    codes = np.arange(n) % 4
    rep = ReplicatedSpec(view_for(SPECS[family]), b)

    def state_of(rows):
        sub = {k: v[rows] for k, v in batch.items()}
        g = GroupIndex(codes[rows], ("a", "b", "c", "d"))
        return rep.accumulate_many(sub, replicate_matrix(ids[rows], b), [g])[0]

    whole = rep.values(state_of(np.arange(n)))
    rng = np.random.default_rng(9)
    perm = rng.permutation(n)
    parts = [state_of(part) for part in np.array_split(perm, 5)]
    merged = rep.zero()
    for s in parts[::-1]:
        merged = rep.merge(merged, s)
    split = rep.values(merged)
    order = [merged.keys.index(k) for k in ("a", "b", "c", "d")]
    for key, v in whole.items():
        assert np.allclose(v, split[key][order], rtol=1e-9, equal_nan=True), key


def test_bootstrap_interval():
    reps = np.array([[0.0, 1, 2, 3, 4], [0.0, 1, 2, 3, 4], [np.nan] * 4 + [1.0]])
    lo, hi = bootstrap_interval(np.array([1.0, 2.0, 1.0]), reps, np.array([2.0, np.nan, 1.0]))
    half = 1.959963984540054 * np.std([0, 1, 2, 3, 4], ddof=1)
    assert lo[0] == pytest.approx(1.0 - half) and hi[0] == pytest.approx(1.0 + half)
    assert np.isnan(lo[1:]).all() and np.isnan(hi[1:]).all()
    lo, hi = logit_interval(np.array([0.8, 1.0]), np.array([0.0025, 0.0]))
    assert 0 < lo[0] < 0.8 < hi[0] < 1 and lo[1] == hi[1] == 1.0
