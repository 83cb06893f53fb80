"""Edge cases: empty bins, vanished and new categories, constant and all-missing features,
identical samples, tiny references, empty current, infinities, argument errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats

from rayeval.drift import (
    METHODS, CategoricalBinning, CategoricalProfileSpec, NumericBinning, NumericProfileSpec,
    compare, compare_rows, data_quality, histogram,
)
from rayeval.metrics.base import GroupIndex, StateMismatchError

NUMERIC_METHODS = [m for m, v in METHODS.items() if "numeric" in v.kinds]
CATEGORICAL_METHODS = [m for m, v in METHODS.items() if "categorical" in v.kinds]


def _numeric(ref, cur, **kw):
    spec = NumericProfileSpec(**kw)
    ref = np.asarray(ref, dtype=float)
    b = spec.binning(spec.accumulate(spec.zero(), {"value": ref}, GroupIndex.single(ref.size)), ())
    return b, histogram(b, ref), histogram(b, np.asarray(cur, dtype=float))


def _categorical(ref, cur, top_k=20):
    spec = CategoricalProfileSpec(top_k=top_k)
    ref = np.asarray(ref, dtype=object)
    b = spec.binning(spec.accumulate(spec.zero(), {"value": ref}, GroupIndex.single(ref.size)), ())
    return b, histogram(b, ref), histogram(b, np.asarray(cur, dtype=object))


def _all(b, hr, hc, methods):
    return {m: compare(hr, hc, b, m, threshold=1.0 if m == "wasserstein" else None)
            for m in methods}


def test_identical_samples_give_zero():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, 300)
    for b, hr, hc in (_numeric(x, x), _numeric(x, x, exact_max_distinct=10),
                      _categorical(rng.choice(list("abc"), 300), None) if False else
                      _categorical(*(2 * [rng.choice(list("abc"), 300)]))):
        methods = NUMERIC_METHODS if b.kind == "numeric" else CATEGORICAL_METHODS
        for m, r in _all(b, hr, hc, methods).items():
            assert r.statistic == pytest.approx(0, abs=1e-12), m
            assert not r.drifted and r.undefined_reason == "", m
            if METHODS[m].test:
                assert r.p_value == pytest.approx(1.0), m


def test_empty_bins_and_smoothing_recorded():
    b = NumericBinning.from_values([0.0, 1.0, 2.0])
    hr = histogram(b, np.array([0.0, 1.0, 2.0] * 10))
    same = compare(hr, histogram(b, np.array([0.0, 1.0, 2.0] * 5)), b, "psi")
    assert same.statistic == 0 and same.smoothing == 0  # bins empty on both sides need no eps
    gone = compare(hr, histogram(b, np.array([0.0, 1.0] * 5)), b, "psi")  # value 2 disappears
    eps = 1e-4
    expected = 2 * (0.5 - 1 / 3) * math.log(0.5 * 3) + (eps - 1 / 3) * math.log(eps * 3)
    assert gone.smoothing == eps and gone.statistic == pytest.approx(expected)
    assert compare(hr, histogram(b, np.array([0.0, 1.0] * 5)), b, "psi", eps=1e-3).smoothing == 1e-3


def test_category_disappears_and_new_category():
    ref = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    cur = ["a"] * 50 + ["b"] * 30 + ["zz"] * 20  # c vanishes, zz is new
    b, hr, hc = _categorical(ref, cur)
    res = _all(b, hr, hc, CATEGORICAL_METHODS)
    assert all(math.isfinite(r.statistic) for r in res.values())
    o = stats.chi2_contingency(np.array([[50, 30, 20, 0], [50, 30, 0, 20]]), correction=False)
    assert res["chi2"].p_value == pytest.approx(o.pvalue) and res["chi2"].drifted
    assert res["unseen_share"].statistic == pytest.approx(0.2) and res["unseen_share"].drifted
    assert res["linf"].statistic == pytest.approx(0.2)
    q = data_quality(hc, b)[0]
    assert q.unseen_category_rate == pytest.approx(0.2) and math.isnan(q.out_of_range_rate)
    # with top_k=1, b and c are "other" but known: not unseen
    b1, hr1, hc1 = _categorical(ref, ["b", "c", "a"])
    assert compare(hr1, hc1, b1, "unseen_share").statistic == 0


def test_chi2_over_the_union_of_categories_with_several_new_ones():
    """Two categories unseen in the reference: pooled in "other", but chi-squared's degrees of
    freedom count each (scipy on the 2 x 4 union table), in any split of the current rows."""
    from rayeval.drift import HistogramSpec

    ref = ["a"] * 50 + ["b"] * 50
    cur = ["a"] * 40 + ["b"] * 40 + ["x"] * 5 + ["y"] * 15
    b, hr, hc = _categorical(ref, cur)
    o = stats.chi2_contingency(np.array([[50, 50, 0, 0], [40, 40, 5, 15]]), correction=False)
    r = compare(hr, hc, b, "chi2")
    assert r.statistic == pytest.approx(o.statistic, rel=1e-12)
    assert r.p_value == pytest.approx(o.pvalue, rel=1e-9)  # dof 3, not 2
    spec = HistogramSpec(b)
    vals = np.asarray(cur, dtype=object)
    rng = np.random.default_rng(1)
    for _ in range(3):  # the unseen sets merge: same p-value from any split and order
        perm = rng.permutation(vals.size)
        parts = [spec.accumulate(spec.zero(), {"value": vals[p]}, GroupIndex.single(p.size))
                 for p in np.array_split(perm, 4)]
        merged = spec.zero()
        for i in rng.permutation(4):
            merged = spec.merge(merged, parts[i])
        r2 = compare(hr, spec.table(merged, [()]), b, "chi2")
        assert r2.p_value == pytest.approx(o.pvalue, rel=1e-9)
    # a category known to the reference but outside its top-k shares "other" with the new
    # ones: the pooled column is then a real column of the top-k + other table
    b1, hr1, hc1 = _categorical(ref + ["c"] * 10, cur, top_k=2)
    o1 = stats.chi2_contingency(np.array([[50, 50, 10], [40, 40, 20]]), correction=False)
    assert compare(hr1, hc1, b1, "chi2").p_value == pytest.approx(o1.pvalue, rel=1e-9)


def test_constant_column():
    b, hr, hc = _numeric([5.0] * 40, [5.0] * 10)
    assert b.exact and b.n_bins == 3
    res = _all(b, hr, hc, NUMERIC_METHODS)
    assert all(r.statistic == 0 and not r.drifted for r in res.values())
    moved = _all(b, hr, histogram(b, np.array([5.1] * 10)), NUMERIC_METHODS)
    assert moved["ks"].statistic == 1 and moved["ks"].drifted
    # Evidently: std floor 0.001 -> W1 0.1 / 0.001 = 100
    assert moved["wasserstein_normed"].statistic == pytest.approx(100.0)
    assert data_quality(histogram(b, np.array([5.1] * 10)), b)[0].out_of_range_rate == 1.0


def test_all_missing_feature():
    b, hr, hc = _numeric([np.nan] * 20, [1.0, np.nan])
    assert b.n_bins == 1
    for m, r in _all(b, hr, hc, NUMERIC_METHODS).items():
        assert r.undefined_reason == "empty_reference" and math.isnan(r.statistic), m
        assert not r.drifted
    q = data_quality(hr, b)[0]
    assert q.missing_rate == 1.0 and math.isnan(q.out_of_range_rate)
    assert [r.undefined_reason for r in q.results()][2:] == ["empty", "empty"]
    cb, chr_, chc = _categorical([None] * 5, ["a"])
    assert compare(chr_, chc, cb, "chi2").undefined_reason == "empty_reference"


@pytest.mark.parametrize("n_ref", [1, 2, 3, 4, 5])
def test_tiny_reference(n_ref):
    rng = np.random.default_rng(n_ref)
    ref, cur = rng.normal(0, 1, n_ref), rng.normal(0, 1, 100)
    b, hr, hc = _numeric(ref, cur)
    r = compare(hr, hc, b)
    o = stats.ks_2samp(ref, cur)
    assert r.method == "ks" and r.statistic == pytest.approx(o.statistic)
    assert r.p_value == pytest.approx(o.pvalue)
    for m, res in _all(b, hr, hc, NUMERIC_METHODS).items():
        assert res.undefined_reason == "" and math.isfinite(res.statistic), m


def test_empty_current():
    b, hr, hc = _numeric([1.0, 2.0, 3.0], [])
    for m, r in _all(b, hr, hc, NUMERIC_METHODS).items():
        assert r.undefined_reason == "empty_current" and not r.drifted, m
    assert data_quality(hc, b)[0].undefined_reason == "empty"


def test_infinite_values():
    b, hr, hc = _numeric([1.0, 2.0, 3.0], [1.0, np.inf, -np.inf, 2.0])
    assert compare(hr, hc, b, "wasserstein_normed").undefined_reason == "nonfinite_values"
    ks = compare(hr, hc, b, "ks")
    oracle = stats.ks_2samp([1.0, 2, 3], [1.0, np.inf, -np.inf, 2]).statistic
    assert ks.statistic == pytest.approx(oracle)
    q = data_quality(hc, b)[0]
    assert q.nonfinite_rate == 0.5 and q.out_of_range_rate == 0.5


def test_type_errors_reported():
    b = NumericBinning.from_values([1.0, 2.0])
    h = histogram(b, np.array([1.0, np.nan, np.nan, 2.0]), type_error=np.array([0, 1, 0, 0], bool))
    q = data_quality(h, b)[0]
    assert q.type_error_rate == 0.25 and q.missing_rate == 0.25
    assert {r.metric: r.value for r in q.results()}["type_error_rate"] == 0.25


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=6, max_size=6), st.lists(st.integers(0, 5), min_size=6,
                                                                      max_size=6))
def test_distances_in_range_never_nan(ref_counts, cur_counts):
    b = CategoricalBinning(tuple("abcde"))
    ref = np.repeat(np.array(list("abcdez"), dtype=object), ref_counts)
    cur = np.repeat(np.array(list("abcdez"), dtype=object), cur_counts)
    hr, hc = histogram(b, ref), histogram(b, cur)
    for m in ("psi", "jensen_shannon", "hellinger", "linf", "chi2", "unseen_share"):
        r = compare(hr, hc, b, m)
        if r.undefined_reason:
            assert r.undefined_reason in ("empty_reference", "empty_current")
            continue
        assert math.isfinite(r.statistic) and r.statistic >= 0, m
        if m in ("jensen_shannon", "hellinger", "linf", "unseen_share"):
            assert r.statistic <= 1, m


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(1e-300, 1e300), min_size=1, max_size=12),
       st.integers(0, 11), st.floats(-1e-12, 1e-12))
def test_js_distance_never_nan_on_near_identical_float_weights(weights, at, eps):
    """Weighted histograms that differ by rounding only (or not at all): the distance is a
    finite number in [0, 1], ~0, never NaN from ``sqrt`` of a negative rounding residue."""
    from rayeval.drift import _math

    w = np.asarray(weights)
    p = w / w.sum()
    q = p.copy()
    q[at % q.size] *= 1 + eps
    q /= q.sum()
    d = _math.js_distance(p[None, :], q[None, :], 2.0)[0]
    assert math.isfinite(d) and 0 <= d <= 1e-5
    assert _math.js_distance(p[None, :], p[None, :], 2.0)[0] == 0.0


def test_argument_errors():
    b, hr, hc = _numeric([1.0, 2.0, 3.0], [1.0])
    cb, chr_, chc = _categorical(["a"], ["a"])
    with pytest.raises(ValueError, match="supports"):
        compare(chr_, chc, cb, "ks")
    with pytest.raises(ValueError, match="no default threshold"):
        compare(hr, hc, b, "wasserstein")
    with pytest.raises(ValueError, match="method-specific"):
        compare(hr, hc, b, "auto", threshold=0.1)
    with pytest.raises(ValueError, match="`method`"):
        compare(hr, hc, b, "kl")
    with pytest.raises(StateMismatchError):
        compare(hr, hc, NumericBinning.from_values([1.0]), "ks")
    with pytest.raises(ValueError, match="rows"):
        compare_rows(hc.take([0, 0], keys=[1, 2]), hc.take([0, 0, 0], keys=[1, 2, 3]), b, "ks")
