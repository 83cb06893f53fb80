"""Grouped sparse histograms (pass 2): mergeability, sparsity, counters, dense tables."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from rayeval.drift import CategoricalBinning, Factorized, HistogramSpec, NumericBinning, histogram
from rayeval.drift.profile import cell_sums
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


def _assign_oracle(binning, x):
    """The bin of each value by two plain binary searches (the layout's definition)."""
    e = binning.edges
    if binning.exact:
        return np.searchsorted(e, x, "left") + np.searchsorted(e, x, "right")
    idx = np.searchsorted(e, x, "right")
    idx[x == e[-1]] = e.size - 1
    return idx


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 300), st.sampled_from(
    ["normal", "lognormal", "integers", "outlier", "tiny_span"]), st.booleans())
def test_assign_matches_binary_search(seed, m, shape, exact):
    """The lookup grid of ``assign`` gives exactly the binary-search bins, whatever the edges
    (spread, clustered, heavy-tailed, a huge outlier, a span near the float resolution)."""
    rng = np.random.default_rng(seed)
    raw = {"normal": lambda k: rng.normal(0, 1, k),
           "lognormal": lambda k: rng.lognormal(3, 1.5, k),
           "integers": lambda k: rng.integers(-50, 50, k).astype(float),
           "outlier": lambda k: np.append(rng.normal(0, 1, k - 1), 1e12),
           "tiny_span": lambda k: 1.0 + rng.integers(0, 64, k) * np.spacing(1.0)}[shape]
    edges = np.unique(raw(m + 1))
    if not exact and edges.size < 2:
        edges = np.array([0.0, 1.0])
    b = NumericBinning(edges, exact=exact)
    x = np.concatenate([raw(500), edges, np.nextafter(edges, np.inf),
                        np.nextafter(edges, -np.inf), [np.inf, -np.inf, 0.0, -1e300, 1e300]])
    got = b.assign(x)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, _assign_oracle(b, x))
    assert got.min() >= 0 and got.max() < b.n_bins


def test_assign_grid_used_or_skipped():
    spread = NumericBinning.from_edges(np.linspace(0, 1, 101))
    assert spread._grid[3] is not None
    clustered = NumericBinning.from_edges(np.append(np.linspace(0, 1, 100), 1e12))
    assert clustered._grid[3] is None  # every regular edge in one cell: binary search only
    for b in (spread, clustered, NumericBinning.from_values([2.0])):
        x = np.array([-np.inf, -1, 0, 0.5, 1, 2, 1e12, np.inf, np.nan])
        np.testing.assert_array_equal(b.assign(x), _assign_oracle(b, x))  # NaN: the last bin


def test_unweighted_state_equals_unit_weights():
    """No ``weight`` column takes shortcuts (counts instead of weighted sums): bit for bit the
    state of all-ones weights."""
    rng = np.random.default_rng(3)
    n = 4000
    groups = GroupIndex(rng.integers(0, 9, n), tuple(range(9)))
    for binning, batch in ((BINNINGS[0], _numeric_batch(rng, n)),
                           (BINNINGS[1], _numeric_batch(rng, n)),
                           (CategoricalBinning(("a", "b"), known=("a", "b", "c")),
                            {"value": np.array(["a", "b", "c", "z", None], dtype=object)[
                                rng.integers(0, 5, n)], "type_error": rng.random(n) < 0.02})):
        spec = HistogramSpec(binning)
        plain = {k: v for k, v in batch.items() if k != "weight"}
        a = spec.accumulate(spec.zero(), plain, groups)
        b = spec.accumulate(spec.zero(), {**plain, "weight": np.ones(n)}, groups)
        assert _state_equal(a, b)
        assert all(a.scalars.arrays[k].dtype == b.scalars.arrays[k].dtype for k in b.scalars.arrays)
        assert list(a.scalars.arrays) == list(b.scalars.arrays)


def test_factorized_value_column_equals_raw_values():
    rng = np.random.default_rng(4)
    n = 3000
    pool = np.array(["a", "b", "c", "new", None, 7], dtype=object)
    values = pool[rng.integers(0, 6, n)]
    groups = GroupIndex(rng.integers(0, 4, n), tuple(range(4)))
    spec = HistogramSpec(CategoricalBinning(("a", 7), known=("a", "b", 7)))
    col = Factorized.of(values)
    assert len(col) == n and np.array_equal(col.codes < 0, values == None)  # noqa: E711
    rows = np.flatnonzero(rng.random(n) < 0.6)
    sub = GroupIndex(groups.codes[rows], groups.keys)
    a = spec.accumulate(spec.zero(), {"value": values[rows]}, sub)
    b = spec.accumulate(spec.zero(), {"value": col[rows]}, sub)  # uniques of all rows, fine
    assert _state_equal(a, b)
    with pytest.raises(ValueError, match="codes"):
        Factorized(np.array([0, 2]), ["x"])


def test_cell_sums_dense_and_sparse_agree():
    rng = np.random.default_rng(5)
    cells = rng.integers(0, 50, 1000) * 7919
    v = rng.normal(size=1000)
    sparse = cell_sums(cells, {"n": None, "v": v}, 50 * 7919)  # 396k cells > 65536: np.unique
    dense = cell_sums(cells // 7919, {"n": None, "v": v}, 50)  # np.bincount
    np.testing.assert_array_equal(sparse[0] // 7919, dense[0])
    for k in ("n", "v"):
        np.testing.assert_array_equal(sparse[1][k], dense[1][k])
    assert dense[1]["n"].dtype == np.int64 and dense[1]["n"].sum() == 1000
