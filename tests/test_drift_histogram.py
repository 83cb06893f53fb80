"""Grouped sparse histograms (pass 2): mergeability, sparsity, counters, dense tables."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from rayeval.drift import CategoricalBinning, HistogramSpec, NumericBinning, histogram
from rayeval.metrics.base import GroupIndex, StateMismatchError
from tests.harness import check_mergeable


def _state_equal(a, b) -> bool:
    return (a.keys == b.keys and np.array_equal(a.cell, b.cell)
            and all(np.array_equal(a.cells[k], b.cells[k]) for k in a.cells)
            and all(np.array_equal(a.scalars.arrays[k], b.scalars.arrays[k])
                    for k in a.scalars.arrays))


def _numeric_batch(rng, n):
    x = rng.normal(0, 2, n)
    x[rng.random(n) < 0.05] = np.nan
    x[rng.random(n) < 0.01] = np.inf
    te = rng.random(n) < 0.03
    w = rng.uniform(0, 3, n).round(2)
    return {"value": x, "weight": w, "type_error": te}


BINNINGS = [
    NumericBinning.from_edges(np.linspace(-3, 3, 13)),
    NumericBinning.from_values(np.round(np.linspace(-3, 3, 25), 1)),
]


@pytest.mark.parametrize("binning", BINNINGS, ids=["quantile", "exact"])
def test_numeric_histogram_mergeable(binning):
    rng = np.random.default_rng(0)
    n = 3000
    batch = _numeric_batch(rng, n)
    groups = GroupIndex(rng.integers(0, 7, n), tuple(("w", i) for i in range(7)))
    check_mergeable(HistogramSpec(binning), batch, groups, atol=1e-9, state_equal=_state_equal)


def test_categorical_histogram_mergeable():
    rng = np.random.default_rng(1)
    n = 2000
    pool = np.array(["a", "b", "c", "new", None, 7], dtype=object)
    batch = {"value": pool[rng.integers(0, 6, n)], "weight": rng.uniform(0, 1, n)}
    groups = GroupIndex(rng.integers(0, 5, n), tuple(range(5)))
    binning = CategoricalBinning(("a", "b"), known=("a", "b", "c", 7))
    check_mergeable(HistogramSpec(binning), batch, groups, atol=1e-9, state_equal=_state_equal)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 60), st.integers(1, 6), st.booleans())
def test_histogram_mergeable_hypothesis(seed, n, g, weighted):
    rng = np.random.default_rng(seed)
    x = rng.choice([-1.0, 0.0, 0.5, 2.0, np.nan, 9.0, -np.inf], n) + (rng.random(n) < 0.3) * 0.25
    batch = {"value": x, "weight": rng.uniform(0, 2, n)} if weighted else {"value": x}
    groups = GroupIndex(rng.integers(0, g, n), tuple(range(g)))
    spec = HistogramSpec(NumericBinning.from_values([-1.0, 0.0, 0.5, 2.0]))
    if n == 0:
        groups = GroupIndex(np.zeros(0, np.int64), ())
    check_mergeable(spec, batch, groups, seed=seed % 1000, atol=1e-9, state_equal=_state_equal)


def test_counters_and_table():
    b = NumericBinning.from_edges([0.0, 1.0, 2.0])
    x = np.array([-1.0, 0.0, 0.5, 1.0, 2.0, 3.0, np.nan, np.inf, 5.0])
    te = np.zeros(x.size, bool)
    te[-1] = True
    w = np.array([1, 1, 1, 1, 1, 1, 2, 1, 4.0])
    h = histogram(b, x, w, te)
    np.testing.assert_array_equal(h.counts[0], [1, 2, 2, 2])  # under, [0,1), [1,2], over (3, inf)
    s = {k: float(v[0]) for k, v in h.scalars.items()}
    assert s["rows"] == 7 and s["weight"] == 7 and s["missing"] == 2 and s["type_error"] == 4
    assert s["nonfinite"] == 1
    np.testing.assert_allclose(h.sums[0], [-1.0, 0.5, 1.0, 1.0])  # x - anchor, inf excluded
    assert s["m1"] == pytest.approx(np.sum(np.array([-1, 0, 0.5, 1, 2, 3]) - b.center))


def test_unseen_categories_counted_in_other_and_unseen():
    b = CategoricalBinning(("a",), known=("a", "b"))
    h = histogram(b, np.array(["a", "b", "z", "z", None], dtype=object))
    np.testing.assert_array_equal(h.counts[0], [1, 3])
    assert h.scalars["unseen"][0] == 2 and h.scalars["missing"][0] == 1


def test_state_is_sparse_and_table_fills_absent_keys():
    rng = np.random.default_rng(2)
    n, g = 500, 400  # many small groups: dense would be g * B cells
    b = NumericBinning.from_edges(np.linspace(0, 1, 1001))
    spec = HistogramSpec(b)
    groups = GroupIndex(rng.integers(0, g, n), tuple(range(g)))
    state = spec.accumulate(spec.zero(), {"value": rng.random(n)}, groups)
    assert state.cell.size <= n
    t = spec.table(state, [3, "absent"])
    assert t.counts.shape == (2, b.n_bins) and t.counts[1].sum() == 0
    assert t.counts[0].sum() == (groups.codes == 3).sum()
    assert spec.table(state).total().counts.sum() == n
    with pytest.raises(ValueError, match="unique"):
        spec.table(state, [1, 1])


def test_mismatched_binnings_refuse_to_merge():
    a = HistogramSpec(NumericBinning.from_edges([0.0, 1.0]))
    b = HistogramSpec(NumericBinning.from_edges([0.0, 2.0]))
    sb = b.accumulate(b.zero(), {"value": np.array([0.5])}, GroupIndex.single(1))
    with pytest.raises(StateMismatchError):
        a.merge(a.zero(), sb)


def test_bad_columns():
    spec = HistogramSpec(NumericBinning.from_edges([0.0, 1.0]))
    g = GroupIndex.single(2)
    with pytest.raises(ValueError, match="`value`"):
        spec.accumulate(spec.zero(), {}, g)
    with pytest.raises(ValueError, match="`weight`"):
        spec.accumulate(spec.zero(), {"value": np.ones(2), "weight": np.array([1.0, -1.0])}, g)
    with pytest.raises(ValueError, match="numeric"):
        spec.accumulate(spec.zero(), {"value": np.array(["a", "b"])}, g)
    with pytest.raises(ValueError, match="type_error"):
        spec.accumulate(spec.zero(), {"value": np.ones(2), "type_error": np.ones(3, bool)}, g)
