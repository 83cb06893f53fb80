"""Known shifts are flagged at the default thresholds; no shift is rarely flagged (measured false
positive rates, also quoted in rayeval/drift/thresholds.py); learned thresholds; dataset drift."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from rayeval.drift import (
    CategoricalProfileSpec, HistogramSpec, NumericProfileSpec, compare, dataset_drift,
    default_method, histogram, learned_threshold, psi_band,
)
from rayeval.metrics.base import GroupIndex

P = np.array([0.3, 0.25, 0.2, 0.12, 0.08, 0.05])
P_SHIFT = np.array([0.2, 0.25, 0.2, 0.12, 0.08, 0.15])
CATS = np.array(list("abcdef"), dtype=object)


def _run(kind: str, n: int, shift: bool, seed: int):
    """Full two-pass pipeline on one synthetic pair; returns the default-method DriftResult."""
    rng = np.random.default_rng(seed)
    if kind == "numeric":
        ref, cur = rng.normal(0, 1, n), rng.normal(0.5 if shift else 0.0, 1, n)
        spec = NumericProfileSpec()
    else:
        ref, cur = rng.choice(CATS, n, p=P), rng.choice(CATS, n, p=P_SHIFT if shift else P)
        spec = CategoricalProfileSpec()
    state = spec.accumulate(spec.zero(), {"value": ref}, GroupIndex.single(n))
    b = spec.binning(state, ())
    return compare(histogram(b, ref), histogram(b, cur), b)


# measured (200 seeds): numeric 500 ks 0.02, 5000 wasserstein_normed 0.0; categorical 500 chi2
# 0.06, 5000 jensen_shannon 0.0 (the binomial sd of a 5% rate over 200 seeds is 1.5%).
@pytest.mark.parametrize("kind,n,method,max_fpr", [
    ("numeric", 500, "ks", 0.09), ("numeric", 5000, "wasserstein_normed", 0.0),
    ("categorical", 500, "chi2", 0.09), ("categorical", 5000, "jensen_shannon", 0.0),
])
def test_default_false_positive_rate_and_power(kind, n, method, max_fpr):
    null = [_run(kind, n, False, s) for s in range(200)]
    assert {r.method for r in null} == {method}
    fpr = np.mean([r.drifted for r in null])
    assert fpr <= max_fpr, fpr
    shifted = [_run(kind, n, True, 1000 + s) for s in range(50)]
    assert all(r.drifted for r in shifted)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_large_reference_quantile_bins_estimate_and_bound(seed):
    r = _run("numeric", 5000, False, seed)  # 100 quantile bins, not exact
    rng = np.random.default_rng(seed)
    ref, cur = rng.normal(0, 1, 5000), rng.normal(0, 1, 5000)
    exact = stats.wasserstein_distance(ref, cur) / np.std(ref)
    assert 0 < r.error_bound < 0.06 and abs(r.statistic - exact) <= r.error_bound
    assert abs(r.statistic - exact) < 0.005  # the in-bin linear estimate is much closer


def test_learned_threshold_nannyml_style():
    rng = np.random.default_rng(3)
    ref = rng.normal(0, 1, 20_000)
    spec = NumericProfileSpec()
    b = spec.binning(spec.accumulate(spec.zero(), {"value": ref}, GroupIndex.single(ref.size)), ())
    hs = HistogramSpec(b)
    chunk_codes = np.repeat(np.arange(20), 1000)
    groups = GroupIndex(chunk_codes, tuple(range(20)))
    chunks = hs.table(hs.accumulate(hs.zero(), {"value": ref}, groups))
    whole = chunks.total()
    lt = learned_threshold(chunks, b, "jensen_shannon")
    assert lt.n_chunks == 20 and 0 <= lt.lower <= lt.mean < lt.upper
    flags = [compare(whole, histogram(b, rng.normal(0, 1, 1000)), b, "jensen_shannon", lt).drifted
             for _ in range(100)]
    assert np.mean(flags) <= 0.05
    shifted = compare(whole, histogram(b, rng.normal(0.5, 1, 1000)), b, "jensen_shannon", lt)
    assert shifted.drifted and shifted.threshold == lt.upper and shifted.decision == "statistic"
    lt_ks = learned_threshold(chunks, b, "ks")
    assert compare(whole, histogram(b, rng.normal(0.5, 1, 1000)), b, "ks", lt_ks).drifted
    with pytest.raises(ValueError, match="at least 2"):
        learned_threshold(chunks.take([0]), b, "psi")


def test_default_method_table():
    assert default_method("numeric", 1000) == ("ks", 0.05)
    assert default_method("numeric", 1001) == ("wasserstein_normed", 0.1)
    assert default_method("numeric", 10, n_distinct=5) == ("chi2", 0.05)
    assert default_method("numeric", 5, n_distinct=5) == ("ks", 0.05)  # no repeats: continuous
    assert default_method("numeric", 5000, n_distinct=2) == ("jensen_shannon", 0.1)
    assert default_method("categorical", 3) == ("chi2", 0.05)
    assert default_method("categorical", 10**6) == ("jensen_shannon", 0.1)
    with pytest.raises(ValueError, match="kind"):
        default_method("text", 5)
    assert [psi_band(v) for v in (0.05, 0.1, 0.25, float("nan"))] == [
        "stable", "moderate", "major", "undefined"]


def test_dataset_drift_share():
    results = [_run("numeric", 500, s < 3, s) for s in range(6)]  # 3 shifted features of 6
    d = dataset_drift(results)
    assert d.n_features == 6 and d.n_drifted >= 3 and d.drifted == (d.share_drifted >= 0.5)
    assert not dataset_drift(results, threshold=0.9).drifted
    empty = dataset_drift([])
    assert not empty.drifted and empty.undefined_reason == "empty"
    with pytest.raises(ValueError):
        dataset_drift(results, threshold=0)
