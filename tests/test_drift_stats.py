"""Drift statistics against their oracles: scipy exactly in the exact layout, within the reported
bound otherwise; PSI / Hellinger / L-infinity by hand."""

from __future__ import annotations

import math
from dataclasses import astuple

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon

from rayeval.drift import (
    CategoricalBinning, HistogramSpec, NumericBinning, compare, compare_rows, histogram,
)
from rayeval.metrics.base import GroupIndex

TOL = 1e-12


def _exact_pair(ref, cur, wr=None, wc=None):
    b = NumericBinning.from_values(ref, center=float(np.mean(ref)))
    return b, histogram(b, ref, wr), histogram(b, cur, wc)


CASES = {
    "continuous": lambda rng: (rng.normal(0, 1, 300), rng.normal(0.2, 1.1, 250)),
    "ties": lambda rng: (rng.integers(0, 12, 400).astype(float),
                         rng.integers(2, 15, 333).astype(float)),
    "tiny": lambda rng: (np.array([1.0, 2.0, 2.0]), np.array([0.5, 2.0, 3.0, 3.0, 9.0])),
    "unequal": lambda rng: (rng.exponential(1, 50), rng.exponential(1.3, 2000)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_ks_exact_layout_matches_scipy(case):
    ref, cur = CASES[case](np.random.default_rng(0))
    b, hr, hc = _exact_pair(ref, cur)
    for p_method, scipy_method in (("auto", "auto"), ("asymp", "asymp"), ("exact", "exact")):
        r = compare(hr, hc, b, "ks", ks_p_method=p_method)
        o = stats.ks_2samp(ref, cur, method=scipy_method)
        assert r.error_bound == 0
        assert r.statistic == pytest.approx(o.statistic, abs=TOL)
        assert r.p_value == pytest.approx(o.pvalue, rel=1e-9, abs=TOL)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 40), st.integers(1, 300), st.integers(1, 300))
def test_ks_binned_within_bound(seed, n_edges, n_r, n_c):
    rng = np.random.default_rng(seed)
    ref = rng.gamma(2, 1, n_r)
    cur = rng.gamma(2, 1, n_c) + rng.choice([0, 0.5])
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, n_edges)))
    if edges.size < 2:
        edges = np.array([edges[0], edges[0] + 1])
    b = NumericBinning.from_edges(edges)
    r = compare(histogram(b, ref), histogram(b, cur), b, "ks")
    d = stats.ks_2samp(ref, cur).statistic
    assert abs(r.statistic - d) <= r.error_bound + TOL
    rc, cc = histogram(b, ref).counts[0] / n_r, histogram(b, cur).counts[0] / n_c
    assert r.error_bound <= np.maximum(rc, cc).max() + TOL


def test_weighted_ks_and_wasserstein():
    rng = np.random.default_rng(1)
    ref, cur = rng.integers(0, 20, 500).astype(float), rng.integers(0, 25, 400).astype(float)
    wr, wc = rng.uniform(0, 2, 500), rng.uniform(0, 2, 400)
    b, hr, hc = _exact_pair(ref, cur, wr, wc)
    grid = np.union1d(ref, cur)
    fr = np.array([wr[ref <= x].sum() for x in grid]) / wr.sum()
    fc = np.array([wc[cur <= x].sum() for x in grid]) / wc.sum()
    d = np.abs(fr - fc).max()
    r = compare(hr, hc, b, "ks")
    assert r.statistic == pytest.approx(d, abs=TOL) and r.error_bound == 0
    n1, n2 = wr.sum() ** 2 / (wr**2).sum(), wc.sum() ** 2 / (wc**2).sum()
    en = np.round(n1 * n2 / (n1 + n2))
    assert r.p_value == pytest.approx(stats.kstwo.sf(d, en), rel=1e-9)
    # current has values (21..24) off the reference grid: exact only if they do not straddle
    w = compare(hr, hc, b, "wasserstein", threshold=1.0)
    assert abs(w.statistic - stats.wasserstein_distance(ref, cur, wr, wc)) <= w.error_bound + 1e-9


@pytest.mark.parametrize("case", sorted(CASES))
def test_wasserstein_exact_on_grid_matches_scipy(case):
    ref, cur = CASES[case](np.random.default_rng(2))
    cur = np.concatenate([ref[: len(cur)], [ref.min() - 3.0, ref.max() + 4.5]])  # on grid + out
    b, hr, hc = _exact_pair(ref, cur)
    r = compare(hr, hc, b, "wasserstein", threshold=1.0)
    assert r.error_bound == pytest.approx(0, abs=1e-12)
    assert r.statistic == pytest.approx(stats.wasserstein_distance(ref, cur), rel=1e-9, abs=TOL)
    n = compare(hr, hc, b, "wasserstein_normed")
    evidently = stats.wasserstein_distance(ref, cur) / max(np.std(ref), 0.001)
    assert n.statistic == pytest.approx(evidently, rel=1e-9, abs=TOL)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 30), st.booleans())
def test_wasserstein_binned_within_bound(seed, n_edges, weighted):
    rng = np.random.default_rng(seed)
    ref = rng.normal(0, 1, int(rng.integers(1, 200)))
    cur = rng.normal(rng.choice([0, 0.3, 2.0]), rng.choice([0.5, 1, 3]), int(rng.integers(1, 200)))
    wr = rng.uniform(0.1, 2, ref.size) if weighted else None
    wc = rng.uniform(0.1, 2, cur.size) if weighted else None
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, n_edges)))
    b = NumericBinning.from_edges(edges) if edges.size > 1 else NumericBinning.from_values(edges)
    r = compare(histogram(b, ref, wr), histogram(b, cur, wc), b, "wasserstein", threshold=1.0)
    exact = stats.wasserstein_distance(ref, cur, wr, wc)
    assert abs(r.statistic - exact) <= r.error_bound + 1e-9 * (1 + exact)


def _cat_pair(ref, cur, top_k=20, wr=None, wc=None):
    cats, cnt = np.unique(ref, return_counts=True)
    order = np.argsort(-cnt, kind="stable")
    b = CategoricalBinning(tuple(cats[order][:top_k].tolist()), tuple(cats.tolist()))
    return b, histogram(b, ref, wr), histogram(b, cur, wc)


def _props(ref, cur):
    cats = np.union1d(ref, cur)
    p = np.array([(ref == c).sum() for c in cats], float)
    q = np.array([(cur == c).sum() for c in cats], float)
    return p / p.sum(), q / q.sum(), p, q


@pytest.mark.parametrize("k", [2, 3, 6])
def test_categorical_chi2_matches_scipy(k):
    rng = np.random.default_rng(k)
    cats = np.array(list("abcdef"))[:k]
    ref = rng.choice(cats, 300, p=np.ones(k) / k)
    cur = rng.choice(cats, 200, p=np.linspace(1, 2, k) / np.linspace(1, 2, k).sum())
    b, hr, hc = _cat_pair(ref, cur)
    _, _, p, q = _props(ref, cur)
    for yates in (False, True):
        r = compare(hr, hc, b, "chi2", yates=yates)
        o = stats.chi2_contingency(np.stack([p, q]), correction=yates)
        assert r.statistic == pytest.approx(o.statistic, rel=1e-9)
        assert r.p_value == pytest.approx(o.pvalue, rel=1e-9)
    if k == 2:  # uncorrected 2x2 chi-squared == squared two-proportion z-test (Evidently z-test)
        p1, p2 = (ref == cats[0]).mean(), (cur == cats[0]).mean()
        pp = (p1 * 300 + p2 * 200) / 500
        z = (p1 - p2) / math.sqrt(pp * (1 - pp) * (1 / 300 + 1 / 200))
        assert compare(hr, hc, b, "chi2").statistic == pytest.approx(z * z, rel=1e-9)


def test_categorical_distances_match_oracles():
    rng = np.random.default_rng(5)
    ref = rng.choice(list("abcde"), 1000, p=[0.4, 0.3, 0.2, 0.1, 0.0])
    cur = rng.choice(list("abcdez"), 800, p=[0.2, 0.3, 0.2, 0.1, 0.1, 0.1])  # e, z unseen
    b, hr, hc = _cat_pair(ref, cur)
    # e and z both land in "other" (never in the reference): compare on the binned layout
    pr = np.array([(ref == c).mean() for c in b.categories] + [0.0])
    pc = np.array([(cur == c).mean() for c in b.categories] + [np.isin(cur, ["e", "z"]).mean()])
    js = compare(hr, hc, b, "jensen_shannon")
    assert js.statistic == pytest.approx(jensenshannon(pr, pc, base=2), rel=1e-12)
    assert compare(hr, hc, b, "jensen_shannon", base=math.e).statistic == pytest.approx(
        jensenshannon(pr, pc), rel=1e-12)
    eps = 1e-4
    ps, cs = np.where(pr == 0, eps, pr), np.where(pc == 0, eps, pc)
    psi = compare(hr, hc, b, "psi")
    assert psi.statistic == pytest.approx(np.sum((cs - ps) * np.log(cs / ps)), rel=1e-12)
    assert psi.smoothing == eps
    hel = np.sqrt(np.sum((np.sqrt(pr) - np.sqrt(pc)) ** 2) / 2)
    assert compare(hr, hc, b, "hellinger").statistic == pytest.approx(hel, rel=1e-12)
    assert compare(hr, hc, b, "linf").statistic == pytest.approx(np.abs(pr - pc).max(), rel=1e-12)
    unseen = compare(hr, hc, b, "unseen_share").statistic
    assert unseen == pytest.approx(np.isin(cur, ["e", "z"]).mean())


def test_numeric_few_values_binned_methods_value_by_value():
    rng = np.random.default_rng(6)
    ref = rng.choice([0.0, 1.0, 2.0, 5.0], 600)
    cur = rng.choice([0.0, 1.0, 2.0, 5.0], 500, p=[0.1, 0.2, 0.3, 0.4])
    b, hr, hc = _exact_pair(ref, cur)
    pr, pc, p, q = _props(ref, cur)
    assert compare(hr, hc, b, "psi").statistic == pytest.approx(np.sum((pc - pr) * np.log(pc / pr)))
    o = stats.chi2_contingency(np.stack([p, q]), correction=False)
    assert compare(hr, hc, b, "chi2").p_value == pytest.approx(o.pvalue, rel=1e-9)
    assert compare(hr, hc, b, "jensen_shannon").statistic == pytest.approx(
        jensenshannon(pr, pc, base=2), rel=1e-12)


def test_numeric_psi_uses_reference_deciles():
    rng = np.random.default_rng(7)
    ref, cur = rng.normal(0, 1, 5000), rng.normal(0.3, 1, 5000)
    b = NumericBinning.from_edges(np.quantile(ref, np.linspace(0, 1, 101)))
    hr, hc = histogram(b, ref), histogram(b, cur)
    dec = np.quantile(ref, np.linspace(0, 1, 11))  # deciles by hand, open ends
    rr = np.histogram(np.clip(ref, dec[0], dec[-1]), dec)[0] / ref.size
    cc = np.histogram(np.clip(cur, dec[0], dec[-1]), dec)[0] / cur.size
    by_hand = np.sum((cc - rr) * np.log(cc / rr))
    assert compare(hr, hc, b, "psi").statistic == pytest.approx(by_hand, rel=0.05)
    fine = compare(hr, hc, b, "psi", n_coarse=None).statistic
    assert fine > by_hand  # 100 bins: same shift, more sampling noise


def _same(a, b) -> bool:
    ta, tb = astuple(a), astuple(b)
    return all(x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
               for x, y in zip(ta, tb))


def test_compare_rows_vectorised_equals_per_row():
    rng = np.random.default_rng(8)
    b = NumericBinning.from_edges(np.linspace(-3, 3, 31))
    spec = HistogramSpec(b)
    n = 4000
    codes = rng.integers(0, 6, n)
    x = rng.normal(codes * 0.1, 1)
    state = spec.accumulate(spec.zero(), {"value": x}, GroupIndex(codes, tuple(range(6))))
    tab = spec.table(state, range(6))
    ref = histogram(b, rng.normal(0, 1, 3000))
    methods = ("ks", "wasserstein_normed", "psi", "jensen_shannon", "hellinger", "chi2", "linf")
    for method in methods:
        rows = compare_rows(ref, tab, b, method)
        assert all(_same(r, compare(ref, tab[k], b, method)) for k, r in enumerate(rows))
        paired = compare_rows(tab, tab.take([1, 2, 3, 4, 5, 0]), b, method)
        assert _same(paired[0], compare(tab[0], tab[1], b, method))
    assert {r.method for r in compare_rows(ref, tab, b)} == {"wasserstein_normed"}  # 3000 rows
    assert {r.method for r in compare_rows(tab, tab, b)} == {"ks"}  # about 670 rows each


@pytest.mark.parametrize("en", [10_001, 30_000, 200_000])  # kstwo.sf takes seconds at 1e6
def test_ks_pvalue_asymptotic_above_switch(en):
    """Above ``KS_ASYMP_MIN_EN`` the p-value is the corrected Kolmogorov limit: within 0.15 / en
    of ``kstwo.sf`` (and 0.2% relative for p > 1e-6) over the whole range of ``d``."""
    from rayeval.drift import _math

    assert en > _math.KS_ASYMP_MIN_EN
    d = np.array([0.3, 0.8, 1.0, 1.36, 1.63, 2.0, 3.0, 4.5]) / math.sqrt(en)
    n = np.full(d.size, 2.0 * en)  # en = n1 n2 / (n1 + n2) = en
    p = _math.ks_pvalue(d, n, n, np.zeros(d.size, bool), "asymp")
    want = stats.kstwo.sf(d, en)
    np.testing.assert_allclose(p, want, rtol=0, atol=0.15 / en)
    big = want > 1e-6
    np.testing.assert_allclose(p[big], want[big], rtol=2e-3)
    plain = stats.kstwobign.sf(d * math.sqrt(en))  # the uncorrected limit is much further off
    assert np.abs(plain - want).max() > 10 * np.abs(p - want).max()


def test_ks_pvalue_kstwo_at_and_below_switch():
    from rayeval.drift import _math

    en = np.array([50.0, 3_000.0, 10_000.0])
    d = np.array([0.2, 0.03, 0.0136])
    p = _math.ks_pvalue(d, 2 * en, 2 * en, np.zeros(3, bool), "asymp")
    np.testing.assert_allclose(p, stats.kstwo.sf(d, en), rtol=1e-12)


@pytest.mark.parametrize("p,q", [
    ([5e-324, 1.0], [0.0, 1.0]),                       # a subnormal share against an empty bin
    ([1e-310, 0.5, 0.5], [0.0, 0.4, 0.6]),
    ([4e-320, 1.0], [1e-300, 1.0]),
    ([2.5e-308, 0.3, 0.7], [3e-315, 0.7, 0.3]),
    ([0.2, 0.3, 0.5], [0.5, 0.3, 0.2]),
])
def test_jensen_shannon_is_stable_for_subnormal_shares(p, q):
    """An underflowing share must not push the distance to its maximum: the oracle is scipy's
    ``jensenshannon`` where it is finite, else the exact value in 60-digit arithmetic (mpmath;
    scipy itself returns inf when ``m`` underflows)."""
    import mpmath
    from scipy.spatial.distance import jensenshannon

    from rayeval.drift._math import js_distance

    p, q = np.array(p), np.array(q)
    p, q = p / p.sum(), q / q.sum()
    got = js_distance(p[None], q[None], base=2.0)[0]
    ref = jensenshannon(p, q, base=2.0)
    if not np.isfinite(ref):
        mpmath.mp.dps = 60
        P, Q = [mpmath.mpf(float(x)) for x in p], [mpmath.mpf(float(x)) for x in q]

        def kl(a, b):
            return sum(x * mpmath.log(x / ((x + y) / 2)) for x, y in zip(a, b) if x > 0)

        ref = float(mpmath.sqrt((kl(P, Q) + kl(Q, P)) / 2 / mpmath.log(2)))
    assert got == pytest.approx(ref, rel=1e-12, abs=1e-150)  # terms below 1e-300 underflow
    assert got < 1.0 or ref == 1.0
