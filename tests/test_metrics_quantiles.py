"""GroupedLogHistogram: grid properties, numpy oracle, merge order independence."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rayeval.metrics.quantiles import GroupedLogHistogram, bucket_bounds, bucket_index

finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=1, max_size=50), st.integers(1, 12))
def test_bucket_index_is_monotone_and_bounds_contain_values(xs, bits):
    x = np.sort(np.array(xs, dtype=np.float64))
    b = bucket_index(x, bits)
    assert (np.diff(b) >= 0).all()
    lo, hi = bucket_bounds(b, bits)
    assert (lo <= x).all() and (x <= hi).all()
    # relative width <= 2**-bits (away from the subnormal range)
    big = (np.abs(x) > 1e-300) & np.isfinite(hi) & np.isfinite(lo)
    width = hi[big] - lo[big]
    assert (width <= 2.0 ** -bits * np.minimum(np.abs(lo[big]), np.abs(hi[big])) * (1 + 1e-15)
            ).all()


def test_signed_zero_and_extremes():
    b = bucket_index(np.array([-0.0, 0.0, 5e-324, -5e-324, 1.7e308, -1.7e308]), 7)
    assert b[0] == b[1] == 0 and b[2] == 0 and b[3] == -1
    lo, hi = bucket_bounds(b, 7)
    assert lo[4] <= 1.7e308 <= hi[4] and lo[5] <= -1.7e308 <= hi[5]


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("bits", [3, 7, 12])
def test_quantiles_match_numpy_inverted_cdf_within_bound(weighted, bits):
    rng = np.random.default_rng(bits)
    n = 3000
    codes = rng.integers(0, 4, n)
    x = np.concatenate([rng.normal(-2, 3, n // 2), rng.lognormal(0, 2, n - n // 2)])
    x[rng.random(n) < 0.05] = 0.0
    w = rng.gamma(1.0, 2.0, n) if weighted else None
    h = GroupedLogHistogram.from_values(codes, x, w, bits)
    levels = [0.0, 0.01, 0.25, 0.5, 0.9, 0.999, 1.0]
    lower = np.array([x[codes == g].min() for g in range(5) if g < 4] + [0.0])
    upper = np.array([x[codes == g].max() for g in range(5) if g < 4] + [0.0])
    vals, bounds = h.quantiles(5, levels, lower, upper)
    assert np.isnan(vals[4]).all()  # group 4 has no values
    for g in range(4):
        m = codes == g
        exact = np.quantile(x[m], levels, method="inverted_cdf",
                            weights=None if w is None else w[m])
        assert (np.abs(vals[g] - exact) <= bounds[g]).all()
        assert (bounds[g] <= 2.0 ** -(bits + 1) * np.abs(exact) * (1 + 1e-12) + 5e-324).all()
    ones = np.ones(n) if w is None else w
    np.testing.assert_allclose(h.totals(5), [ones[codes == g].sum() for g in range(5)])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), finite), min_size=1, max_size=80),
       st.integers(0, 2**16))
def test_merge_is_order_independent(rows, seed):
    rng = np.random.default_rng(seed)
    codes = np.array([r[0] for r in rows])
    x = np.array([r[1] for r in rows], dtype=np.float64)
    whole = GroupedLogHistogram.from_values(codes, x, None, 5)
    parts = [GroupedLogHistogram.from_values(codes[i], x[i], None, 5)
             for i in np.array_split(rng.permutation(x.size), int(rng.integers(1, 5)))]
    acc = GroupedLogHistogram(5)
    for p in rng.permutation(len(parts)):
        acc = acc.merge(parts[p]) if rng.random() < 0.5 else parts[p].merge(acc)
    np.testing.assert_array_equal(acc.cells, whole.cells)
    np.testing.assert_array_equal(acc.weights, whole.weights)


def test_remap_take_and_errors():
    h = GroupedLogHistogram.from_values(np.array([0, 1, 1, 2]), np.array([1.0, 2.0, 2.0, 3.0]),
                                        None, 7)
    r = h.remap(np.array([2, 0, 1]))
    vals, _ = r.quantiles(3, [0.5])
    np.testing.assert_allclose(vals[:, 0], [2.0, 3.0, 1.0], rtol=2.0 ** -8)
    t = h.take(np.array([1, 2]))
    np.testing.assert_array_equal(t.totals(2), [2.0, 1.0])
    with pytest.raises(ValueError, match="bits"):
        GroupedLogHistogram(7).merge(GroupedLogHistogram(8))
    with pytest.raises(ValueError, match="bits"):
        bucket_index(np.ones(2), 13)
    with pytest.raises(ValueError, match="shape"):
        GroupedLogHistogram.from_values(np.zeros(2, np.int64), np.ones(3), None, 7)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("span", ["narrow", "wide"])
def test_cells_and_sums_match_a_unique_oracle(weighted, span):
    """Both summation paths of ``from_buckets`` (dense bincount for a narrow (group, bucket)
    span, sort for a wide one) give the cells and sums of ``np.unique``."""
    rng = np.random.default_rng(7)
    n = 5_000
    codes = rng.integers(0, 6, n)
    x = rng.normal(50, 10, n) if span == "narrow" else rng.choice([1e-300, -3.0, 1e300], n)
    w = rng.integers(1, 5, n).astype(float) if weighted else None
    h = GroupedLogHistogram.from_values(codes, x, w, 7)
    cells = (codes << 25) | (bucket_index(x, 7) + (1 << 23))
    u, inv = np.unique(cells, return_inverse=True)
    expect = np.bincount(inv.ravel(), w, u.size)
    np.testing.assert_array_equal(h.cells, u)
    np.testing.assert_array_equal(h.weights, expect)
    assert h.weights.dtype == np.float64
