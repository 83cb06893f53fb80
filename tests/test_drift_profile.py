"""Reference profiles (pass 1) and binnings: mergeability, exact/quantile layouts, factorisation."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from rayeval.drift import (
    CategoricalBinning, CategoricalProfileSpec, Factorized, NumericBinning, NumericProfileSpec,
    factorize,
)
from rayeval.metrics.base import GroupIndex, StateMismatchError, results_by_key
from tests.harness import check_mergeable


def _groups(rng, n, g):
    return GroupIndex(rng.integers(0, g, n), tuple(("m", i) for i in range(g)))


def _num_state_equal(a, b) -> bool:
    return (a.keys == b.keys and np.array_equal(a.hist.cells, b.hist.cells)
            and np.array_equal(a.hist.weights, b.hist.weights)
            and all(np.array_equal(x, y) for x, y in zip((a.lo, a.hi, a.mean, a.m2),
                                                          (b.lo, b.hi, b.mean, b.m2)))
            and all((x is None and y is None) or np.array_equal(x, y)
                    for x, y in zip(a.distinct, b.distinct)))


def _cat_state_equal(a, b) -> bool:
    return a.keys == b.keys and a.freqs == b.freqs


def test_numeric_profile_mergeable():
    rng = np.random.default_rng(1)
    n = 3000
    x = rng.normal(10, 3, n)
    x[rng.random(n) < 0.05] = np.nan
    x[:3] = [np.inf, -np.inf, np.inf]
    x[100:400] = np.round(x[100:400])  # some ties
    groups = _groups(rng, n, 4)
    spec = NumericProfileSpec(n_bins=20, exact_max_distinct=50)
    res = check_mergeable(spec, {"value": x}, groups, state_equal=_num_state_equal)
    by = results_by_key(res)
    for i, key in enumerate(groups.keys):
        xs = x[groups.codes == i]
        fin = xs[np.isfinite(xs)]
        r = by[key]
        assert r[("count", None, None)].value == fin.size
        assert r[("missing", None, None)].value == np.isnan(xs).sum()
        assert r[("nonfinite", None, None)].value == np.isinf(xs).sum()
        assert r[("min", None, None)].value == fin.min()
        assert math.isclose(r[("std", None, None)].value, np.std(fin), rel_tol=1e-9)
        assert r[("n_distinct", None, None)].undefined_reason == "too_many_distinct"


def test_numeric_profile_exact_layout_deterministic():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 30, 2000).astype(float)
    spec = NumericProfileSpec(exact_max_distinct=40)
    whole = spec.accumulate(spec.zero(), {"value": x}, GroupIndex.single(x.size))
    a = spec.accumulate(spec.zero(), {"value": x[:700]}, GroupIndex.single(700))
    b = spec.accumulate(spec.zero(), {"value": x[700:]}, GroupIndex.single(1300))
    bw, bm = spec.binning(whole, ()), spec.binning(spec.merge(b, a), ())
    assert bw.exact and bw == bm
    np.testing.assert_array_equal(bw.edges, np.unique(x))
    assert bw.n_bins == 2 * 30 + 1 and math.isclose(bw.center, x.mean())


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000))
def test_quantile_edges_within_grid_bound_and_split_independent(seed):
    rng = np.random.default_rng(seed)
    x = rng.lognormal(0, 1, 20_000)
    spec = NumericProfileSpec(n_bins=10, exact_max_distinct=100)
    parts = np.array_split(x, 5)
    state = spec.zero()
    for p in parts:  # merged from partitions, as the engine does
        part = spec.accumulate(spec.zero(), {"value": p}, GroupIndex.single(p.size))
        state = spec.merge(state, part)
    b = spec.binning(state, ())
    assert not b.exact and b.edges[0] == x.min() and b.edges[-1] == x.max()
    exact = np.quantile(x, np.arange(1, 10) / 10, method="inverted_cdf")
    np.testing.assert_allclose(b.edges[1:-1], exact, rtol=2.0 ** -(spec.bits + 1), atol=0)
    # another split and merge order gives the very same edges (deterministic)
    other = spec.zero()
    for p in np.array_split(rng.permutation(x), 3)[::-1]:
        other = spec.merge(spec.accumulate(spec.zero(), {"value": p}, GroupIndex.single(p.size)),
                           other)
    np.testing.assert_array_equal(spec.binning(other, ()).edges, b.edges)


def test_numeric_binning_layouts_and_assign():
    b = NumericBinning.from_values([3.0, 1.0, 2.0, 2.0])
    assert b.exact and b.n_bins == 7
    x = np.array([-np.inf, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, np.inf])
    np.testing.assert_array_equal(b.assign(x), [0, 0, 1, 2, 3, 5, 6, 6])
    lo, hi, point = b.bounds
    np.testing.assert_array_equal(point, [0, 1, 0, 1, 0, 1, 0])
    q = NumericBinning.from_edges([0.0, 1.0, 2.0])
    assert q.n_bins == 4
    np.testing.assert_array_equal(q.assign(np.array([-1, 0, 0.5, 1, 2, 2.5])), [0, 1, 1, 2, 2, 3])
    empty = NumericBinning.from_values([])
    assert empty.n_bins == 1 and empty.assign(np.array([5.0]))[0] == 0
    with pytest.raises(ValueError, match="strictly increasing"):
        NumericBinning([1.0, 1.0], exact=False)
    with pytest.raises(ValueError, match="at least 2"):
        NumericBinning([1.0], exact=False)
    assert pickle.loads(pickle.dumps(q)) == q and q != b


def test_constant_reference_binning():
    spec = NumericProfileSpec(exact_max_distinct=0)  # forces the quantile path
    s = spec.accumulate(spec.zero(), {"value": np.full(50, 7.0)}, GroupIndex.single(50))
    b = spec.binning(s, ())
    assert b.exact and list(b.edges) == [7.0]


def test_categorical_profile_mergeable_mixed_types():
    rng = np.random.default_rng(3)
    n = 2000
    pool = np.array(["a", "b", "c", 1, 2, 2.5, None, float("nan"), True], dtype=object)
    v = pool[rng.integers(0, pool.size, n)]
    w = rng.uniform(0, 2, n).round(1)
    groups = _groups(rng, n, 3)
    spec = CategoricalProfileSpec(top_k=3)
    res = check_mergeable(spec, {"value": v, "weight": w}, groups, state_equal=_cat_state_equal,
                          atol=1e-9)
    by = results_by_key(res)
    key = groups.keys[0]
    rows = groups.codes == 0
    assert by[key][("missing", None, None)].value == sum(
        x is None or (isinstance(x, float) and x != x) for x in v[rows])
    expected_a = w[rows & np.array([x == "a" for x in v])].sum()
    assert math.isclose(by[key][("category_weight", "a", None)].value, expected_a, rel_tol=1e-12)
    s = spec.accumulate(spec.zero(), {"value": v, "weight": w}, groups)
    b = spec.binning(s, key)
    assert b.n_bins == 4 and b.known_complete and len(b.known) == 6  # True == 1


def test_categorical_profile_capacity_overflow_is_bounded():
    rng = np.random.default_rng(4)
    v = np.concatenate([np.repeat(["hot1", "hot2"], 3000), rng.integers(0, 5000, 4000).astype(str)])
    spec = CategoricalProfileSpec(top_k=2, capacity=100)
    state = spec.zero()
    for part in np.array_split(rng.permutation(v), 7):
        state = spec.merge(state, spec.accumulate(spec.zero(), {"value": part},
                                                  GroupIndex.single(part.size)))
    b = spec.binning(state, ())
    assert set(b.categories) == {"hot1", "hot2"} and not b.known_complete
    off = state.scalars.arrays["offset"][0]
    f = state.freqs[0]
    assert len(f) <= 100 and 3000 - off <= f["hot1"] <= 3000


def test_profile_merge_mismatch():
    with pytest.raises(StateMismatchError):
        a = NumericProfileSpec(bits=10)
        b = NumericProfileSpec(bits=12)
        b.merge(a.zero(), b.zero())
    with pytest.raises(StateMismatchError):
        CategoricalProfileSpec(capacity=50).merge(CategoricalProfileSpec(capacity=60).zero(),
                                                  CategoricalProfileSpec(capacity=50).zero())


def test_factorize():
    codes, uniq, miss = factorize(np.array(["b", None, "a", "b", float("nan"), 3], dtype=object))
    assert list(miss) == [False, True, False, False, True, False]
    assert [uniq[c] for c in codes[~miss]] == ["b", "a", "b", 3]
    codes, uniq, miss = factorize(np.array([2.0, np.nan, 1.0, 2.0]))
    assert uniq == [1.0, 2.0] and list(codes) == [1, -1, 0, 1]
    codes, uniq, miss = factorize(np.array(["x", "y", "x"]))
    assert uniq == ["x", "y"] and not miss.any()
    vals = np.array([-1, -2, -1, "a", -2, 1.0, 1], dtype=object)  # hash(-1) == hash(-2)
    codes, uniq, miss = factorize(vals)
    assert [uniq[c] for c in codes] == list(vals) and len(uniq) == 4
    with pytest.raises(TypeError, match="hashable"):
        factorize(np.array([[1], "a", 2], dtype=object))


def test_categorical_binning_assign():
    b = CategoricalBinning(("a", "b"), known=("a", "b", "c"))
    bins, unseen = b.assign_unique(["a", "c", "z", "b"])
    assert list(bins) == [0, 2, 2, 1] and list(unseen) == [False, False, True, False]
    with pytest.raises(ValueError, match="unique"):
        CategoricalBinning(("a", "a"))


@pytest.mark.parametrize("cap", [0, 1, 5, 40])
def test_distinct_values_at_the_cap(cap):
    """The prefix shortcut of the distinct-value check changes nothing: exact layout iff at most
    ``cap`` distinct values, wherever the extra values sit."""
    rng = np.random.default_rng(cap)
    spec = NumericProfileSpec(exact_max_distinct=cap)
    for n_distinct in (cap, cap + 1):
        base = rng.permutation(np.arange(n_distinct, dtype=float))
        for x in (np.concatenate([np.repeat(base[:1], 5 * cap + 9), base]),  # late newcomers
                  np.concatenate([base, np.repeat(base[:1], 5 * cap + 9)])):  # all up front
            if x.size == 0:
                continue
            st_ = spec.accumulate(spec.zero(), {"value": x}, GroupIndex.single(x.size))
            d = st_.distinct[0]
            if n_distinct <= cap:
                np.testing.assert_array_equal(d, np.unique(x))
            else:
                assert d is None


def test_categorical_profile_of_factorized_column():
    rng = np.random.default_rng(6)
    pool = np.array(["a", "b", "c", None, 4], dtype=object)
    v = pool[rng.integers(0, 5, 1500)]
    w = rng.uniform(0, 2, 1500)
    groups = _groups(rng, 1500, 3)
    spec = CategoricalProfileSpec(top_k=2)
    a = spec.accumulate(spec.zero(), {"value": v, "weight": w}, groups)
    col = Factorized.of(v)
    b = spec.accumulate(spec.zero(), {"value": col, "weight": w}, groups)
    assert _cat_state_equal(a, b)
    for x, y in zip(a.freqs, b.freqs):  # unweighted counts stay ints, weighted sums floats
        assert all(type(x[k]) is type(y[k]) for k in x)
    rows = np.flatnonzero(v != "a")
    sub = GroupIndex(groups.codes[rows], groups.keys)
    c = spec.accumulate(spec.zero(), {"value": col[rows]}, sub)  # "a" among uniques, no row
    assert all("a" not in f for f in c.freqs)
    assert all(isinstance(n, int) for f in c.freqs for n in f.values())
