"""Score metrics: oracles (scikit-learn), error bounds, mergeability, edge cases."""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.calibration import calibration_curve
from sklearn.metrics import (average_precision_score, brier_score_loss, log_loss,
                             roc_auc_score, roc_curve, top_k_accuracy_score)

from rayeval.metrics import _score_hist as sh
from rayeval.metrics import _score_math as sm
from rayeval.metrics.base import GroupIndex, StateMismatchError, results_by_key
from rayeval.metrics.scores import BinaryScoreSpec, MulticlassScoreSpec, auto_bucket_budget
from tests.harness import check_mergeable, sub_groups, take

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def one(results, metric, key=(), cls=None, avg=None):
    return results_by_key(results)[key][(metric, cls, avg)]


def make_binary(rng, n, kind="uniform", p_label=None):
    if kind == "uniform":
        s = rng.random(n)
    elif kind == "ties":
        s = np.round(rng.random(n), 1)
    elif kind == "narrow":
        s = 0.49 + 0.02 * rng.random(n)
    elif kind == "extremes":
        s = rng.choice([0.0, 1.0, 0.5, 1e-300, 1 - 1e-16], size=n)
    else:  # mixture
        s = np.where(rng.random(n) < 0.5, rng.random(n), np.round(rng.random(n), 2))
    y = rng.random(n) < (s if p_label is None else p_label)
    return s, y.astype(np.int64)


def run(spec, batch, groups=None):
    n = len(batch["label"])
    groups = groups or GroupIndex.single(n)
    state = spec.accumulate(spec.zero(), batch, groups)
    return state, spec.finalize(state)


# ---------------------------------------------------------------- binary oracles (exact)
@pytest.mark.parametrize("kind", ["uniform", "ties", "extremes", "mixture"])
@pytest.mark.parametrize("weighted", [False, True])
def test_binary_exact_matches_sklearn(kind, weighted):
    rng = np.random.default_rng(hash((kind, weighted)) % 2**32)
    n = 3000
    s, y = make_binary(rng, n, kind)
    w = rng.exponential(size=n) * (rng.random(n) > 0.1) if weighted else None
    batch = {"label": y, "score": s} | ({"weight": w} if weighted else {})
    for spec in (BinaryScoreSpec(exact=True), BinaryScoreSpec()):  # default: small group exact
        _, res = run(spec, batch)
        kw = {"sample_weight": w}
        expect = {
            "roc_auc": roc_auc_score(y, s, **kw),
            "pr_auc": average_precision_score(y, s, **kw),
            "log_loss": log_loss(y, s, labels=[0, 1], **kw),
            "brier_loss": brier_score_loss(y, s, **kw),
        }
        for metric, value in expect.items():
            r = one(res, metric)
            assert abs(r.value - value) <= 1e-12, (metric, r.value, value)
            assert r.error_bound == 0.0 and r.undefined_reason == ""
        assert one(res, "n_rows").value == n
        assert one(res, "n_positive").value == y.sum()


@pytest.mark.parametrize("weighted", [False, True])
def test_ece_and_calibration_curve(weighted):
    rng = np.random.default_rng(3)
    n = 2000
    s, y = make_binary(rng, n, "mixture")
    s[:20] = np.linspace(0, 1, 11).repeat(2)[:20]  # scores on the bin edges
    w = rng.exponential(size=n) if weighted else np.ones(n)
    spec = BinaryScoreSpec(n_calibration_bins=10)
    state, res = run(spec, {"label": y, "score": s} | ({"weight": w} if weighted else {}))
    curve = spec.calibration_curve(state)
    edges = np.linspace(0, 1, 11)
    bins = np.searchsorted(edges[1:-1], s)
    tot = np.bincount(bins, w, 10)
    nz = tot > 0
    mean_s = np.bincount(bins, w * s, 10)[nz] / tot[nz]
    frac = np.bincount(bins, w * y, 10)[nz] / tot[nz]
    np.testing.assert_allclose([c[4] for c in curve], mean_s, rtol=0, atol=1e-12)
    np.testing.assert_allclose([c[5] for c in curve], frac, rtol=0, atol=1e-12)
    if not weighted:
        prob_true, prob_pred = calibration_curve(y, s, n_bins=10, strategy="uniform")
        np.testing.assert_allclose([c[5] for c in curve], prob_true, atol=1e-12)
        np.testing.assert_allclose([c[4] for c in curve], prob_pred, atol=1e-12)
    ece = np.sum(tot[nz] / tot.sum() * np.abs(mean_s - frac))
    assert abs(one(res, "ece").value - ece) <= 1e-12
    assert [c[1] for c in curve] == list(edges[:-1][nz])


def test_multiple_groups_match_sklearn_per_group():
    rng = np.random.default_rng(5)
    n = 4000
    s, y = make_binary(rng, n, "ties")
    w = rng.exponential(size=n)
    codes = rng.integers(0, 7, n)
    groups = GroupIndex(codes, tuple(("slice", i) for i in range(7)))
    for spec in (BinaryScoreSpec(exact=True), BinaryScoreSpec(bucket_budget=4)):
        _, res = run(spec, {"label": y, "score": s, "weight": w}, groups)
        for g, key in enumerate(groups.keys):
            m = codes == g
            for metric, fn in (("roc_auc", roc_auc_score), ("pr_auc", average_precision_score)):
                r = one(res, metric, key)
                exact = fn(y[m], s[m], sample_weight=w[m])
                assert abs(r.value - exact) <= r.error_bound + 1e-12
                if spec.exact:
                    assert r.error_bound == 0.0
            r = one(res, "log_loss", key)
            assert abs(r.value - log_loss(y[m], s[m], sample_weight=w[m], labels=[0, 1])) < 1e-12


# ---------------------------------------------------------------- bucketed bounds
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 400),
       kind=st.sampled_from(["uniform", "ties", "narrow", "extremes", "mixture"]),
       budget=st.sampled_from([2, 3, 8, 40]), weighted=st.booleans(),
       p_label=st.sampled_from([None, 0.5, 0.05, 0.95]))
def test_bucketed_within_reported_bound(seed, n, kind, budget, weighted, p_label):
    rng = np.random.default_rng(seed)
    s, y = make_binary(rng, n, kind, p_label)
    w = rng.exponential(size=n) * (rng.random(n) > 0.2) if weighted else None
    batch = {"label": y, "score": s} | ({"weight": w} if weighted else {})
    state, res = run(BinaryScoreSpec(bucket_budget=budget), batch)
    assert np.bincount(state.hist.cell, minlength=1).max(initial=0) <= budget
    wy = w if weighted else np.ones(n)
    has_pos, has_neg = (wy[y == 1] > 0).any(), (wy[y == 0] > 0).any()
    roc, ap = one(res, "roc_auc"), one(res, "pr_auc")
    if has_pos and has_neg:
        assert abs(roc.value - roc_auc_score(y, s, sample_weight=w)) <= roc.error_bound + 1e-12
    else:
        assert math.isnan(roc.value) and roc.undefined_reason in ("single_class", "empty")
    if has_pos:
        assert abs(ap.value - average_precision_score(y, s, sample_weight=w)) <= (
            ap.error_bound + 1e-12)
    else:
        assert math.isnan(ap.value) and ap.undefined_reason in ("no_positive_labels", "empty")


def test_pr_bound_is_tight_when_positives_lead_each_bucket():
    # Within each bucket all positives share the top score: the exact AP equals the upper end
    # of the interval, so the error must be (almost) the whole reported bound.
    base = np.repeat(np.arange(1, 41) / 100.0, 10)
    y = np.tile(np.r_[np.ones(5), np.zeros(5)], 40).astype(int)
    s = base + np.where(y == 1, 0.004, 0.0) + np.tile(np.arange(10) * 1e-4, 40) * (1 - y)
    _, res = run(BinaryScoreSpec(bucket_budget=40), {"label": y, "score": s})
    ap = one(res, "pr_auc")
    err = abs(ap.value - average_precision_score(y, s))
    assert 0 < ap.error_bound and err <= ap.error_bound + 1e-12


@pytest.mark.parametrize("kind", ["uniform", "narrow"])
def test_default_bound_at_one_million_rows(kind):
    rng = np.random.default_rng(11)
    n = 1_000_000
    s, y = make_binary(rng, n, kind)
    state, res = run(BinaryScoreSpec(), {"label": y, "score": s})
    assert state.hist.pos.size <= auto_bucket_budget(1e-4) == 65536
    assert state.nbytes < 2.2e6
    roc, ap = one(res, "roc_auc"), one(res, "pr_auc")
    assert 0 < roc.error_bound <= 1e-4 and 0 < ap.error_bound <= 1e-4
    assert abs(roc.value - roc_auc_score(y, s)) <= roc.error_bound
    assert abs(ap.value - average_precision_score(y, s)) <= ap.error_bound


# ---------------------------------------------------------------- mergeability
def _hist_by_key(state):
    ip = state.hist.indptr()
    k = len(state.hist.shift) // max(len(state.keys), 1)
    out = {}
    for i, key in enumerate(state.keys):
        for j in range(k):
            c = i * k + j
            out[(key, j)] = (int(state.hist.shift[c]), state.hist.bucket[ip[c]:ip[c + 1]].tolist(),
                             state.hist.pos[ip[c]:ip[c + 1]].tolist())
    return out


def _state_equal(a, b):
    return (a.keys == b.keys and a.layout == b.layout
            and all(np.array_equal(x, y) for x, y in zip(
                (a.hist.shift, a.hist.cell, a.hist.bucket, a.hist.pos, a.hist.neg),
                (b.hist.shift, b.hist.cell, b.hist.bucket, b.hist.pos, b.hist.neg))))


def _grouped_batch(seed, n=1500, n_groups=6, multiclass=False):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, n_groups, n)
    groups = GroupIndex(codes, tuple(f"g{i}" for i in range(n_groups)))
    w = rng.exponential(size=n)
    w[rng.random(n) < 0.05] = 0.0
    if multiclass:
        sc = np.round(rng.dirichlet(np.ones(3), n), 2)
        lab = rng.integers(0, 3, n).astype(object)
        lab[:5] = None
        return {"label": lab, "scores": sc, "weight": w}, groups
    s, y = make_binary(rng, n, "mixture")
    s[:3] = [np.nan, 1.5, -0.1][: min(3, n)]
    return {"label": y, "score": s, "weight": w}, groups


@pytest.mark.parametrize("spec", [BinaryScoreSpec(exact=True), BinaryScoreSpec(bucket_budget=5),
                                  BinaryScoreSpec(bucket_budget=64), BinaryScoreSpec()],
                         ids=["exact", "b5", "b64", "default"])
def test_binary_mergeable(spec):
    batch, groups = _grouped_batch(0)
    check_mergeable(spec, batch, groups, state_equal=_state_equal)


@pytest.mark.parametrize("spec", [
    MulticlassScoreSpec(classes=(0, 1, 2), top_k=(1, 2), exact=True),
    MulticlassScoreSpec(classes=(0, 1, 2), top_k=(1, 2), bucket_budget=6)], ids=["exact", "b6"])
def test_multiclass_mergeable(spec):
    batch, groups = _grouped_batch(1, multiclass=True)
    check_mergeable(spec, batch, groups, state_equal=_state_equal)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), parts=st.sampled_from([2, 3, 6, 9, 20]),
       budget=st.sampled_from([2, 4, 16, 100]))
def test_bucketed_resolution_is_partition_independent(seed, parts, budget):
    rng = np.random.default_rng(seed)
    batch, groups = _grouped_batch(seed, n=int(rng.integers(1, 600)), n_groups=3)
    spec = BinaryScoreSpec(bucket_budget=budget)
    whole = spec.accumulate(spec.zero(), batch, groups)
    cuts = np.sort(rng.integers(0, groups.n_rows + 1, parts - 1))
    states = [spec.accumulate(spec.zero(), take(batch, i), sub_groups(groups, i))
              for i in np.split(rng.permutation(groups.n_rows), cuts)]
    merged = spec.zero()
    for i in rng.permutation(len(states)):
        merged = spec.merge(merged, states[i])
    assert len(merged.runs) <= 8  # more than 8 parts: runs were compacted on the way
    a, b = _hist_by_key(whole), _hist_by_key(merged)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k][:2] == b[k][:2]  # same shift and buckets, exactly
        np.testing.assert_allclose(a[k][2], b[k][2], rtol=1e-12)


def test_merge_rejects_other_layout():
    a = BinaryScoreSpec(bucket_budget=8)
    b = BinaryScoreSpec(bucket_budget=16)
    s = b.accumulate(b.zero(), {"label": np.array([1]), "score": np.array([0.3])},
                     GroupIndex.single(1))
    with pytest.raises(StateMismatchError):
        a.merge(a.zero(), s)


# ---------------------------------------------------------------- edge cases
def test_invalid_rows_counted_and_excluded():
    lab = np.array([1, 0, None, 1, 0, 1, 0, 1, np.nan], dtype=object)
    s = np.array([0.9, 0.1, 0.5, np.nan, np.inf, 1.2, 0.3, 0.8, 0.5])
    w = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -1.0, np.nan, 1.0])
    spec = BinaryScoreSpec()
    state, res = run(spec, {"label": lab, "score": s, "weight": w})
    assert spec.invalid_counts(state)[()] == {
        "missing_label": 2, "unknown_class": 0, "missing_score": 1, "score_out_of_range": 2,
        "nonfinite_weight": 1, "negative_weight": 1}
    assert spec.row_counts(state) == {(): 2.0}
    assert one(res, "roc_auc").value == 1.0


def test_empty_group_and_single_class():
    spec = BinaryScoreSpec()
    lab = np.array([1, 1, 0, 0, 1])
    s = np.array([np.nan, 0.2, 0.3, 0.4, 0.5])
    groups = GroupIndex(np.array([0, 1, 1, 2, 2]), ("bad", "neg_pos", "mixed"))
    lab2 = np.array([1, 0, 0, 0, 0])
    state, res = run(spec, {"label": lab2, "score": s}, groups)
    r = results_by_key(res)
    assert r["bad"][("roc_auc", None, None)].undefined_reason == "empty"
    assert r["bad"][("log_loss", None, None)].undefined_reason == "empty"
    assert r["bad"][("n_rows", None, None)].value == 0
    assert r["neg_pos"][("roc_auc", None, None)].undefined_reason == "single_class"
    assert r["neg_pos"][("pr_auc", None, None)].undefined_reason == "no_positive_labels"
    assert math.isnan(r["neg_pos"][("pr_auc", None, None)].value)
    assert r["neg_pos"][("log_loss", None, None)].undefined_reason == ""
    _, res = run(spec, {"label": lab, "score": np.full(5, 0.7)})
    assert one(res, "roc_auc").value == 0.5  # all scores equal
    _, res = run(spec, {"label": np.ones(3, int), "score": np.array([0.1, 0.2, 0.3])})
    assert one(res, "pr_auc").value == 1.0 and one(res, "roc_auc").undefined_reason == "single_class"


def test_empty_batch_adds_no_group():
    spec = BinaryScoreSpec()
    state = spec.accumulate(spec.zero(), {"label": np.zeros(0), "score": np.zeros(0)},
                            GroupIndex(np.zeros(0, dtype=np.int64), ("a",)))
    assert state.keys == () and spec.finalize(state) == []


def test_zero_weights_and_probabilities_zero_one():
    y = np.array([1, 0, 1, 0, 1, 0])
    s = np.array([1.0, 0.0, 0.0, 1.0, 0.6, 0.4])
    w = np.array([1.0, 2.0, 0.5, 0.0, 0.0, 3.0])
    _, res = run(BinaryScoreSpec(), {"label": y, "score": s, "weight": w})
    assert abs(one(res, "log_loss").value - log_loss(y, s, sample_weight=w)) < 1e-12
    assert math.isfinite(one(res, "log_loss").value)
    assert abs(one(res, "roc_auc").value - roc_auc_score(y, s, sample_weight=w)) < 1e-12
    _, res = run(BinaryScoreSpec(), {"label": y, "score": s, "weight": np.zeros(6)})
    assert one(res, "log_loss").undefined_reason == "empty"
    assert one(res, "n_rows").value == 6


def test_string_labels_and_roc_curve_points():
    rng = np.random.default_rng(2)
    s = np.round(rng.random(300), 2)
    lab = np.where(rng.random(300) < s, "spam", "ham")
    spec = BinaryScoreSpec(positive_class="spam", exact=True)
    state, res = run(spec, {"label": lab, "score": s})
    assert abs(one(res, "roc_auc").value - roc_auc_score(lab == "spam", s)) < 1e-12
    fpr, tpr, thr = spec.roc_curve_points(state, ())
    f2, t2, th2 = roc_curve(lab == "spam", s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, f2, atol=1e-12)
    np.testing.assert_allclose(tpr, t2, atol=1e-12)
    np.testing.assert_array_equal(thr, th2)


def test_bad_options_and_columns():
    with pytest.raises(ValueError, match="max_bound"):
        BinaryScoreSpec(max_bound=0.0)
    with pytest.raises(ValueError, match="bucket_budget"):
        BinaryScoreSpec(bucket_budget=1)
    with pytest.raises(ValueError, match="classes"):
        MulticlassScoreSpec(classes=(1, 1))
    with pytest.raises(ValueError, match="top_k"):
        MulticlassScoreSpec(classes=(0, 1), top_k=(0,))
    with pytest.raises(KeyError, match="score"):
        BinaryScoreSpec().accumulate(BinaryScoreSpec().zero(), {"label": np.zeros(2)},
                                     GroupIndex.single(2))
    spec = MulticlassScoreSpec(classes=(0, 1, 2))
    with pytest.raises(ValueError, match="scores"):
        spec.accumulate(spec.zero(), {"label": np.zeros(2), "scores": np.zeros((2, 2))},
                        GroupIndex.single(2))


# ---------------------------------------------------------------- bucket keys
@SETTINGS
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=200), st.integers(0, 62),
       st.integers(0, 62))
def test_keys_monotone_nested_and_edges(values, k1, k2):
    s = np.sort(np.array(values, dtype=np.float64))
    keys = sh.exact_keys(s)
    assert np.all(np.diff(keys) >= 0) and np.all((np.diff(keys) == 0) == (np.diff(s) == 0))
    a, b = min(k1, k2), max(k1, k2)
    direct = sh.coarsen(keys, 0, b)
    assert np.array_equal(sh.coarsen(sh.coarsen(keys, 0, a), a, b), direct)
    assert np.all(np.diff(direct) >= 0)
    lo, hi = sh.bucket_edges(direct, b)
    assert np.all(lo <= s) and np.all(s <= hi)
    assert np.array_equal(sh.bucket_edges(keys, 0)[0], s + 0.0)


# ---------------------------------------------------------------- multiclass
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("k", [2, 3, 5])
def test_multiclass_matches_sklearn(weighted, k):
    rng = np.random.default_rng(k + 10 * weighted)
    n = 2500
    sc = rng.dirichlet(np.ones(k), n)
    cnt = rng.integers(0, 3, (n // 2, k))
    cnt[cnt.sum(axis=1) == 0, 0] = 1
    sc[: n // 2] = cnt / cnt.sum(axis=1, keepdims=True)  # ties, incl. ties for the top class
    sc[0] = np.eye(k)[0]
    lab = np.array([rng.choice(k, p=p / p.sum()) if p.sum() > 0 else 0 for p in sc + 1e-3])
    w = rng.exponential(size=n) * (rng.random(n) > 0.1) if weighted else None
    classes = tuple(range(k))
    spec = MulticlassScoreSpec(classes=classes, top_k=(1, 2, 3), exact=True)
    _, res = run(spec, {"label": lab, "scores": sc} | ({"weight": w} if weighted else {}))
    for j in classes:
        expect = roc_auc_score(lab == j, sc[:, j], sample_weight=w)
        assert abs(one(res, "roc_auc", cls=j).value - expect) < 1e-12
        expect = average_precision_score(lab == j, sc[:, j], sample_weight=w)
        assert abs(one(res, "pr_auc", cls=j).value - expect) < 1e-12
    onehot = np.eye(k)[lab]
    for avg in ("macro", "weighted"):
        expect = average_precision_score(onehot, sc, average=avg, sample_weight=w)
        assert abs(one(res, "pr_auc", avg=avg).value - expect) < 1e-12
    if k > 2:
        for avg in ("macro", "weighted"):
            expect = roc_auc_score(lab, sc, multi_class="ovr", average=avg, sample_weight=w,
                                   labels=classes)
            assert abs(one(res, "roc_auc", avg=avg).value - expect) < 1e-12
        for t in (1, 2, 3):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expect = top_k_accuracy_score(lab, sc, k=t, sample_weight=w, labels=classes)
            assert abs(one(res, f"top_{t}_accuracy").value - expect) < 1e-12
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ll = log_loss(lab, sc, sample_weight=w, labels=classes)
        br = brier_score_loss(lab, sc, sample_weight=w, labels=classes)
    assert abs(one(res, "log_loss").value - ll) < 1e-12
    assert abs(one(res, "brier_loss").value - br) < 1e-12


@pytest.mark.parametrize("weighted", [False, True])
def test_multiclass_one_vs_rest_ece_and_calibration_curve(weighted):
    rng = np.random.default_rng(11 + weighted)
    n, k = 3000, 3
    sc = rng.dirichlet(np.ones(k) * 0.7, n)
    sc[:9] = np.array([[0.1, 0.2, 0.7], [0.3, 0.3, 0.4], [0.5, 0.5, 0.0]]).repeat(3, axis=0)
    lab = np.array([rng.choice(k, p=p) for p in sc])
    w = rng.exponential(size=n) if weighted else np.ones(n)
    spec = MulticlassScoreSpec(classes=(0, 1, 2), n_calibration_bins=10)
    state, res = run(spec, {"label": lab, "scores": sc} | ({"weight": w} if weighted else {}))
    curve = spec.calibration_curve(state)
    eces = []
    for j in range(k):
        y, s = (lab == j).astype(float), sc[:, j]
        bins = np.searchsorted(np.linspace(0, 1, 11)[1:-1], s)  # scikit-learn's binning
        tot = np.bincount(bins, w, 10)
        nz = tot > 0
        mean_s = np.bincount(bins, w * s, 10)[nz] / tot[nz]
        frac = np.bincount(bins, w * y, 10)[nz] / tot[nz]
        ece = np.sum(tot[nz] / tot.sum() * np.abs(mean_s - frac))
        eces.append(ece)
        r = one(res, "ece", cls=j)
        assert abs(r.value - ece) <= 1e-12 and not r.undefined_reason
        mine = [c for c in curve if c[1] == j]
        np.testing.assert_allclose([c[5] for c in mine], mean_s, atol=1e-12)
        np.testing.assert_allclose([c[6] for c in mine], frac, atol=1e-12)
        if not weighted:
            prob_true, prob_pred = calibration_curve(y, s, n_bins=10, strategy="uniform")
            np.testing.assert_allclose([c[6] for c in mine], prob_true, atol=1e-12)
            np.testing.assert_allclose([c[5] for c in mine], prob_pred, atol=1e-12)
    prev = np.array([w[lab == j].sum() for j in range(k)])
    assert abs(one(res, "ece", avg="macro").value - np.mean(eces)) <= 1e-12
    assert abs(one(res, "ece", avg="weighted").value - prev @ eces / prev.sum()) <= 1e-12


def test_multiclass_pr_auc_undefined_class_skipped_and_empty_group():
    sc = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]])
    lab = np.array([0, 1, 0, 1])
    _, res = run(MulticlassScoreSpec(classes=(0, 1, 2)), {"label": lab, "scores": sc})
    r = one(res, "pr_auc", cls=2)
    assert math.isnan(r.value) and r.undefined_reason == "no_positive_labels"
    expect = np.mean([average_precision_score(lab == j, sc[:, j]) for j in (0, 1)])
    assert abs(one(res, "pr_auc", avg="macro").value - expect) < 1e-12
    assert one(res, "ece", cls=2).value == pytest.approx(0.1)  # scores 0.1, never the class
    _, res = run(MulticlassScoreSpec(classes=(0, 1, 2)),
                 {"label": lab, "scores": sc, "weight": np.zeros(4)})
    for m in ("pr_auc", "ece"):
        assert one(res, m, avg="macro").undefined_reason == "empty"
        assert math.isnan(one(res, m, cls=0).value)


def test_multiclass_bucketed_bounds_and_invalid():
    rng = np.random.default_rng(4)
    n = 3000
    sc = rng.dirichlet(np.ones(3), n)
    lab = np.array(["a", "b", "c"])[rng.integers(0, 3, n)].astype(object)
    lab[:4] = ["zz", None, "a", "b"]
    sc[2] = [np.nan, 0.5, 0.5]
    sc[3] = [1.5, 0.0, 0.0]
    spec = MulticlassScoreSpec(classes=("a", "b", "c"), bucket_budget=16)
    state, res = run(spec, {"label": lab, "scores": sc})
    assert spec.invalid_counts(state)[()] == {
        "missing_label": 1, "unknown_class": 1, "missing_score": 1, "score_out_of_range": 1,
        "nonfinite_weight": 0, "negative_weight": 0}
    ok = np.arange(n) >= 4
    for j, c in enumerate(spec.classes):
        r = one(res, "roc_auc", cls=c)
        assert 0 < r.error_bound and abs(r.value - roc_auc_score(lab[ok] == c, sc[ok, j])) <= (
            r.error_bound + 1e-12)
    r = one(res, "roc_auc", avg="macro")
    exp = roc_auc_score(lab[ok].astype(str), sc[ok], multi_class="ovr", average="macro")
    assert abs(r.value - exp) <= r.error_bound + 1e-12
    assert pickle.loads(pickle.dumps(state)).keys == state.keys


def test_multiclass_missing_class_skipped_in_macro():
    sc = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]])
    lab = np.array([0, 1, 0, 1])
    _, res = run(MulticlassScoreSpec(classes=(0, 1, 2)), {"label": lab, "scores": sc})
    assert one(res, "roc_auc", cls=2).undefined_reason == "single_class"
    assert one(res, "roc_auc", avg="macro").value == 1.0
    _, res = run(MulticlassScoreSpec(classes=(0, 1, 2)),
                 {"label": np.zeros(4, int), "scores": sc})
    assert one(res, "roc_auc", avg="weighted").undefined_reason == "single_class"


# ---------------------------------------------------------------- vectorised ranking metrics
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n_cells=st.integers(1, 40))
def test_ranking_metrics_equal_per_cell_functions(seed, n_cells):
    rng = np.random.default_rng(seed)
    lens = rng.choice([0, 1, 2, 3, 7, 64, 300], n_cells)
    indptr = np.concatenate([[0], np.cumsum(lens)])
    nnz = int(indptr[-1])
    pos = rng.exponential(size=nnz) * (rng.random(nnz) < 0.6)
    neg = rng.integers(0, 4, nnz).astype(float) * (rng.random(nnz) < 0.7)
    exact = rng.random(n_cells) < 0.5
    got = sm.ranking_metrics(pos, neg, indptr, exact)
    for c in range(n_cells):
        p, q = pos[indptr[c]:indptr[c + 1]], neg[indptr[c]:indptr[c + 1]]
        for name, fn in (("roc", sm.roc_auc_from_buckets), ("pr", sm.average_precision_from_buckets)):
            value, bound, reason = fn(p, q, bool(exact[c]))
            key = "roc_auc" if name == "roc" else "pr_auc"
            assert got[f"{name}_reason"][c] == reason
            np.testing.assert_allclose(got[key][c], value, rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(got[f"{name}_bound"][c], bound, rtol=1e-9, atol=1e-15)


@SETTINGS
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=300), st.integers(2, 50),
       st.integers(1, 3))
def test_fit_budget_picks_the_smallest_fitting_shift(values, budget, n_cells):
    s = np.array(values, dtype=np.float64)
    cell = np.arange(s.size) % n_cells
    h = sh.from_rows(cell, sh.exact_keys(s), np.ones(s.size), np.zeros(s.size), n_cells, budget)
    for c in range(n_cells):
        keys = sh.exact_keys(s[cell == c])
        k = int(h.shift[c])
        assert np.unique(sh.coarsen(keys, 0, k)).size == (h.cell == c).sum() <= budget
        if k > 0:
            assert np.unique(sh.coarsen(keys, 0, k - 1)).size > budget


@SETTINGS
@given(st.lists(st.floats(0.0, 1.0), min_size=0, max_size=300), st.booleans())
def test_key_order_is_a_stable_argsort(values, near_ties):
    s = np.array(values, dtype=np.float64)
    if near_ties and s.size:  # distinct scores that share all but the lowest bits
        s = np.concatenate([s, np.nextafter(s, 1.0), s])
    keys = sh.exact_keys(s)
    assert np.array_equal(sh.key_order(keys), np.argsort(keys, kind="stable"))


@SETTINGS
@given(st.lists(st.floats(0.0, 1.0), min_size=0, max_size=100), st.integers(1, 40))
def test_calibration_bins_equal_searchsorted(values, n_bins):
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    p = np.concatenate([np.array(values, dtype=np.float64), edges,
                        np.nextafter(edges, 2.0).clip(0, 1), np.nextafter(edges, -1.0).clip(0, 1)])
    assert np.array_equal(sm.calibration_bin_ids(p, n_bins), np.searchsorted(edges[1:-1], p))


def test_bit_length_exact_near_powers_of_two():
    vals = [0, 1, 2, 3, (1 << 53) - 1, 1 << 53, (1 << 53) + 1, (1 << 62) - 1, 1 << 62,
            (1 << 63) - 1, (1 << 62) + (1 << 61) - 1]
    vals += [(1 << k) + d for k in range(1, 62) for d in (-1, 0, 1)]
    assert sh.bit_length(np.array(vals, dtype=np.int64)).tolist() == [v.bit_length() for v in vals]


@pytest.mark.parametrize("spec", [
    BinaryScoreSpec(bucket_budget=4),
    MulticlassScoreSpec(classes=(0, 1, 2), top_k=(1, 2), bucket_budget=6)], ids=["binary", "multi"])
def test_prepare_precomputes_the_same_ranking(spec):
    """``prepare`` (used by the engine's final merge tasks) carries the ranking metrics in the
    pickle; finalize gives the same results; a merge drops them; plain states pickle as
    before (5 fields)."""
    batch, groups = _grouped_batch(1, multiclass=isinstance(spec, MulticlassScoreSpec))
    idx = np.arange(0, len(groups.codes), 2)
    half = {k: np.asarray(v)[idx] for k, v in batch.items()}
    state = spec.merge(spec.accumulate(spec.zero(), batch, groups),
                       spec.accumulate(spec.zero(), half, sub_groups(groups, idx)))
    assert len(state.runs) == 2
    prepared = pickle.loads(pickle.dumps(spec.prepare(state)))
    assert prepared.ranking is not None and len(prepared.runs) == 1
    assert str(spec.finalize(prepared)) == str(spec.finalize(state))
    assert spec.merge(prepared, state).ranking is None
    assert len(state.__getstate__()) == 5 and len(prepared.__getstate__()) == 6


def test_labels_outside_classes_are_excluded_and_counted():
    """With the task's class list, a label outside it (here 2) is no negative: excluded from
    every score metric and counted as unknown_class (oracle: scikit-learn on the rest)."""
    rng = np.random.default_rng(3)
    s, y = make_binary(rng, 400, "mixture")
    label = y.astype(object)
    label[:25] = 2
    spec = BinaryScoreSpec(classes=(0, 1), exact=True)
    state = spec.accumulate(spec.zero(), {"label": label, "score": s}, GroupIndex.single(len(s)))
    res = spec.finalize(state)
    ok = np.arange(len(s)) >= 25
    assert one(res, "roc_auc").value == pytest.approx(roc_auc_score(y[ok], s[ok]), abs=1e-12)
    assert one(res, "log_loss").value == pytest.approx(log_loss(y[ok], s[ok]), abs=1e-12)
    assert one(res, "n_rows").value == ok.sum()
    assert spec.invalid_counts(state)[()]["unknown_class"] == 25
    plain = BinaryScoreSpec(exact=True)  # without classes: every other label is negative
    st2 = plain.accumulate(plain.zero(), {"label": label, "score": s}, GroupIndex.single(len(s)))
    assert one(plain.finalize(st2), "n_rows").value == len(s)
    with pytest.raises(StateMismatchError):
        spec.merge(state, st2)
    with pytest.raises(ValueError, match="positive_class"):
        BinaryScoreSpec(classes=(0, 2))


@pytest.mark.parametrize("labels, positive", [
    (np.array(["1", "0", "1"]), 1), (np.array([1, 0, 1]), "1"),
    (np.array(["1", "0", None], dtype=object), 1), (np.array([1.0, 0.0, np.nan]), "1")])
def test_binary_score_label_type_mismatch_is_an_error(labels, positive):
    spec = BinaryScoreSpec(positive_class=positive)
    batch = {"label": labels, "score": np.array([0.9, 0.2, 0.7])}
    with pytest.raises(TypeError, match="same class type"):
        spec.accumulate(spec.zero(), batch, GroupIndex.single(3))


def test_multiclass_score_label_type_mismatch_is_an_error():
    spec = MulticlassScoreSpec(classes=(0, 1, 2))
    batch = {"label": np.array(["0", "2"]), "scores": np.full((2, 3), 1 / 3)}
    with pytest.raises(TypeError, match="classes\\[0\\]"):
        spec.accumulate(spec.zero(), batch, GroupIndex.single(2))
    # same types pass, missing labels of any dtype pass
    for lab in (np.array([0, 2]), np.array([None, None], dtype=object)):
        spec.accumulate(spec.zero(), {"label": lab, "scores": np.full((2, 3), 1 / 3)},
                        GroupIndex.single(2))


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, None])
def test_calibration_bins_option_checked(bad):
    for make in (lambda: BinaryScoreSpec(n_calibration_bins=bad),
                 lambda: MulticlassScoreSpec(classes=(0, 1, 2), n_calibration_bins=bad)):
        with pytest.raises(ValueError, match="n_calibration_bins"):
            make()
