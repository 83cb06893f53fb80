"""RegressionSpec: oracle tests against scikit-learn and numpy, edge cases, mergeability."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (explained_variance_score, max_error, mean_absolute_error,
                             mean_absolute_percentage_error, mean_squared_error, r2_score,
                             root_mean_squared_error)

from rayeval.metrics.base import GroupIndex, StateMismatchError, results_by_key
from rayeval.metrics.regression import INVALID_REASONS, RegressionSpec
from tests.harness import assert_results_equal, check_mergeable

RTOL = ATOL = 1e-12
QUANTILE_NAMES = {0.5: "median_absolute_error", 0.9: "p90_absolute_error",
                  0.99: "p99_absolute_error"}


def run(spec, batch, groups=None):
    groups = groups or GroupIndex.single(len(batch["target"]))
    state = spec.accumulate(spec.zero(), batch, groups)
    return state, results_by_key(spec.finalize(state))


def value(res, metric):
    return res[(metric, None, None)]


def make_data(rng, n, weighted=False, n_groups=1, offset=0.0):
    y = offset + rng.normal(3.0, 2.0, size=n)
    p = y + rng.normal(0.2, 1.0, size=n)
    batch = {"target": y, "prediction": p}
    if weighted:
        w = rng.gamma(2.0, 1.0, size=n)
        w[rng.random(n) < 0.1] = 0.0
        batch["weight"] = w
    codes = rng.integers(0, n_groups, size=n)
    return batch, GroupIndex(codes, tuple(f"g{i}" for i in range(n_groups)))


def expected(y, p, w):
    """Values from scikit-learn (and numpy where sklearn has no function)."""
    e = p - y
    ae = np.abs(e)
    pos = np.ones(len(y), bool) if w is None else w > 0
    smape = np.divide(2 * ae, np.abs(p) + np.abs(y), out=np.zeros_like(ae),
                      where=(np.abs(p) + np.abs(y)) > 0)
    return {
        "n_rows": float(len(y)),
        "mean_signed_deviation": np.average(e, weights=w),
        "mae": mean_absolute_error(y, p, sample_weight=w),
        "mse": mean_squared_error(y, p, sample_weight=w),
        "rmse": root_mean_squared_error(y, p, sample_weight=w),
        "r2": r2_score(y, p, sample_weight=w),
        "explained_variance": explained_variance_score(y, p, sample_weight=w),
        "mape": mean_absolute_percentage_error(y, p, sample_weight=w),
        "smape": np.average(smape, weights=w),
        "max_error": max_error(y[pos], p[pos]),
    }


def assert_matches(res, want, rtol=RTOL):
    for metric, v in want.items():
        r = value(res, metric)
        assert not r.undefined_reason, r
        assert r.value == pytest.approx(v, rel=rtol, abs=ATOL), (metric, r.value, v)


# ---- oracle tests -------------------------------------------------------------------------
@pytest.mark.parametrize("weighted", [False, True])
def test_oracle_one_group(weighted):
    rng = np.random.default_rng(1)
    batch, groups = make_data(rng, 2000, weighted)
    _, res = run(RegressionSpec(), batch, groups)
    assert_matches(res["g0"], expected(batch["target"], batch["prediction"], batch.get("weight")))


@pytest.mark.parametrize("weighted", [False, True])
def test_oracle_per_group(weighted):
    rng = np.random.default_rng(2)
    batch, groups = make_data(rng, 1500, weighted, n_groups=7)
    _, res = run(RegressionSpec(quantiles=()), batch, groups)
    assert set(res) == set(groups.keys)
    for code, key in enumerate(groups.keys):
        m = groups.codes == code
        w = batch["weight"][m] if weighted else None
        assert_matches(res[key], expected(batch["target"][m], batch["prediction"][m], w))
        assert not any(r.metric.endswith("absolute_error") for r in res[key].values())


def test_large_offset_is_numerically_stable():
    """r2 and explained variance are shift-invariant; raw power sums would lose them at 1e9."""
    rng = np.random.default_rng(3)
    batch, groups = make_data(rng, 3000, weighted=True, offset=1e9)
    spec = RegressionSpec(quantiles=())
    parts = np.array_split(np.arange(3000), 7)
    state = spec.zero()
    for idx in parts:
        sub = {k: v[idx] for k, v in batch.items()}
        state = spec.merge(state, spec.accumulate(spec.zero(), sub, GroupIndex.single(len(idx),
                                                                                      "g0")))
    res = results_by_key(spec.finalize(state))["g0"]
    y0, p0 = batch["target"] - 1e9, batch["prediction"] - 1e9
    w = batch["weight"]
    for metric, fn in (("r2", r2_score), ("explained_variance", explained_variance_score)):
        assert value(res, metric).value == pytest.approx(fn(y0, p0, sample_weight=w), rel=1e-6)


# ---- quantiles ----------------------------------------------------------------------------
def _exact_quantile(ae, q, w=None):
    return np.quantile(ae, q, method="inverted_cdf", weights=w)


@pytest.mark.parametrize("weighted", [False, True])
def test_quantiles_within_value_bound_of_numpy(weighted):
    """Oracle: numpy's (weighted) inverted-CDF quantile lies within the reported value bound,
    and the bound is within the grid's 2**-(bits+1) relative guarantee."""
    rng = np.random.default_rng(4)
    batch, groups = make_data(rng, 5000, weighted=weighted, n_groups=3)
    spec = RegressionSpec(quantiles=(0.1, 0.5, 0.9, 0.99, 1.0 - 1e-9))
    _, res = run(spec, batch, groups)
    for code, key in enumerate(groups.keys):
        m = groups.codes == code
        w = batch["weight"][m] if weighted else np.ones(m.sum())
        pos = w > 0
        ae = np.abs(batch["prediction"] - batch["target"])[m][pos]
        for q in spec.quantiles:
            name = QUANTILE_NAMES.get(q, f"p{q * 100:g}_absolute_error")
            r = value(res[key], name)
            exact = _exact_quantile(ae, q, w[pos] if weighted else None)
            assert abs(r.value - exact) <= r.error_bound, (key, q, r.value, exact)
            assert r.error_bound <= 2.0 ** -8 * exact * (1 + 1e-12)
            assert r.value <= ae.max()


def test_quantiles_exact_on_single_value_buckets():
    """Values on the grid's bucket starts with max_error clipping give exact (bound 0)
    results at the top; a one-row group is exact."""
    _, res = run(RegressionSpec(quantiles=(0.5, 0.99)),
                 {"target": np.zeros(1), "prediction": np.array([0.3])})
    for name in ("median_absolute_error", "p99_absolute_error"):
        r = value(res[()], name)
        assert r.value == 0.3 and r.error_bound == 0.0


def test_quantiles_do_not_depend_on_split_or_order():
    """Deterministic: any split, order and merge tree gives identical (bit-equal) quantiles."""
    rng = np.random.default_rng(5)
    n = 40_000
    batch, groups = make_data(rng, n, n_groups=4)
    spec = RegressionSpec()
    want = None
    for trial in range(4):
        perm = rng.permutation(n)
        states = [spec.accumulate(spec.zero(), {k: v[idx] for k, v in batch.items()},
                                  GroupIndex(groups.codes[idx], groups.keys))
                  for idx in np.array_split(perm, int(rng.integers(2, 9)))]
        while len(states) > 1:  # random pairwise merge tree
            i, j = sorted(rng.choice(len(states), 2, replace=False))
            b, a = states.pop(j), states.pop(i)
            states.append(spec.merge(a, b) if trial % 2 else spec.merge(b, a))
        got = {(r.key, r.metric): (r.value, r.error_bound) for r in spec.finalize(states[0])
               if r.metric.endswith("absolute_error") and r.metric != "max_error"}
        assert want is None or got == want
        want = got


# ---- edge cases ---------------------------------------------------------------------------
def test_constant_target_is_undefined_for_r2():
    y = np.full(5, 0.1)
    p = np.array([0.1, 0.2, 0.0, 0.1, 0.3])
    _, res = run(RegressionSpec(), {"target": y, "prediction": p,
                                    "weight": np.array([0.3, 0.1, 0.7, 0.2, 0.9])})
    for metric in ("r2", "explained_variance"):
        r = value(res[()], metric)
        assert math.isnan(r.value) and r.undefined_reason == "constant_target"
    assert r2_score(y, p) == 0.0  # sklearn's force_finite convention, documented as different
    assert value(res[()], "mae").undefined_reason == ""


def test_zero_targets_are_left_out_of_mape():
    y = np.array([0.0, 2.0, -4.0, 0.0, 1.0])
    p = np.array([1.0, 1.0, -5.0, 0.0, 1.5])
    w = np.array([1.0, 2.0, 1.0, 1.0, 0.5])
    spec = RegressionSpec()
    state, res = run(spec, {"target": y, "prediction": p, "weight": w})
    nz = y != 0
    assert value(res[()], "mape").value == pytest.approx(
        mean_absolute_percentage_error(y[nz], p[nz], sample_weight=w[nz]), rel=RTOL)
    assert spec.zero_target_counts(state) == {(): 2}
    assert value(res[()], "n_rows_zero_target").value == 2  # reported in the metrics table
    # smape: 0/0 row (y = p = 0) counts as 0
    smape = np.array([2 / 1, 2 / 3, 2 / 9, 0.0, 1 / 2.5])
    assert value(res[()], "smape").value == pytest.approx(np.average(smape, weights=w), rel=RTOL)
    _, res = run(spec, {"target": np.zeros(3), "prediction": np.ones(3)})
    r = value(res[()], "mape")
    assert math.isnan(r.value) and r.undefined_reason == "zero_target"


def test_invalid_rows_and_empty_groups():
    y = np.array([1.0, np.nan, 2.0, np.inf, 3.0, None, 4.0, 5.0], dtype=object)
    p = np.array([1.5, 1.0, None, 2.0, 3.0, 1.0, -np.inf, 5.5], dtype=object)
    w = np.array([1.0, 1.0, 1.0, 1.0, -2.0, 1.0, 1.0, 0.0])
    groups = GroupIndex(np.array([0, 0, 0, 1, 1, 1, 1, 2]), ("a", "b", "c", "unused"))
    spec = RegressionSpec()
    state, res = run(spec, {"target": y, "prediction": p, "weight": w}, groups)
    assert set(res) == {"a", "b", "c"}  # groups without rows are not kept
    inv = spec.invalid_counts(state)
    assert inv["a"] == dict(zip(INVALID_REASONS, [1, 1, 0, 0]))
    assert inv["b"] == dict(zip(INVALID_REASONS, [2, 1, 1, 0]))
    assert spec.row_counts(state) == {"a": 1.0, "b": 0.0, "c": 1.0}
    assert spec.weight_sums(state) == {"a": 1.0, "b": 0.0, "c": 0.0}
    assert value(res["a"], "mae").value == 0.5
    for key, n in (("b", 0.0), ("c", 1.0)):  # no rows / zero total weight
        for (metric, _, _), r in res[key].items():
            if metric == "n_rows":
                assert r.value == n and not r.undefined_reason
            elif metric == "n_rows_zero_target":
                assert r.value == 0.0 and not r.undefined_reason
            else:
                assert math.isnan(r.value) and r.undefined_reason == "empty", r


def test_errors():
    spec = RegressionSpec()
    with pytest.raises(TypeError, match="target"):
        run(spec, {"target": np.array(["1.0"]), "prediction": np.array([1.0])})
    with pytest.raises(TypeError, match="prediction"):
        run(spec, {"target": np.array([1.0]), "prediction": np.array(["x"], dtype=object)})
    with pytest.raises(KeyError, match="prediction"):
        run(spec, {"target": np.array([1.0])})
    with pytest.raises(ValueError, match="quantiles"):
        RegressionSpec(quantiles=(1.5,))
    with pytest.raises(ValueError, match="quantile_bits"):
        RegressionSpec(quantile_bits=13)
    with pytest.raises(StateMismatchError):
        spec.merge(spec.zero(), RegressionSpec(quantile_bits=9).zero())


def test_quantile_names():
    spec = RegressionSpec(quantiles=(0.5, 0.75, 0.999))
    _, res = run(spec, {"target": np.arange(5.0), "prediction": np.arange(5.0) + 1})
    names = {m for m, _, _ in res[()]}
    assert {"median_absolute_error", "p75_absolute_error", "p99.9_absolute_error"} <= names


# ---- mergeability -------------------------------------------------------------------------
def _dirty(rng, batch):
    out = {k: v.copy() for k, v in batch.items()}
    n = len(out["target"])
    out["target"][rng.random(n) < 0.04] = np.nan
    out["prediction"][rng.random(n) < 0.04] = np.inf
    out["target"][rng.random(n) < 0.05] = 0.0
    if "weight" in out:
        out["weight"][rng.random(n) < 0.03] = -1.0
    return out


@pytest.mark.parametrize("weighted", [False, True])
def test_mergeable_with_quantiles(weighted):
    rng = np.random.default_rng(8)
    batch, groups = make_data(rng, 600, weighted, n_groups=6)
    batch = _dirty(rng, batch)
    for seed in range(3):
        check_mergeable(RegressionSpec(), batch, groups, seed=seed)


def test_mergeable_large_groups_without_sketches():
    rng = np.random.default_rng(9)
    batch, groups = make_data(rng, 20_000, True, n_groups=3, offset=50.0)
    check_mergeable(RegressionSpec(quantiles=()), _dirty(rng, batch), groups)


@settings(max_examples=40, deadline=None)
@given(data=st.lists(st.tuples(st.integers(0, 3),
                               st.sampled_from([0.0, 1.0, -2.5, 1e6, np.nan]),
                               st.floats(-1e3, 1e3, allow_nan=False),
                               st.sampled_from([0.0, 0.5, 1.0, 3.0])), min_size=1, max_size=60),
       seed=st.integers(0, 2**16))
def test_mergeable_property(data, seed):
    codes, y, p, w = (np.array(col) for col in zip(*data))
    batch = {"target": y.astype(float), "prediction": p.astype(float), "weight": w.astype(float)}
    groups = GroupIndex(codes, tuple(range(int(codes.max()) + 1)))
    check_mergeable(RegressionSpec(), batch, groups, seed=seed, n_splits=2)


def test_zero_is_identity_exactly():
    rng = np.random.default_rng(10)
    batch, groups = make_data(rng, 100, True, n_groups=2)
    spec = RegressionSpec()
    s = spec.accumulate(spec.zero(), batch, groups)
    assert_results_equal(spec.finalize(spec.merge(spec.zero(), s)), spec.finalize(s), 0, 0)
