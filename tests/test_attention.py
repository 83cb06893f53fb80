"""Ranking of bad and credible slices: Wilson bounds against scipy, AUC trials from the smaller
class, interval bounds preferred when present, and a 34-row AUC 0.0 no longer leads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from rayeval.io.attention import credible_bound, rank_worst, wilson_bound


@pytest.mark.parametrize("k,n", [(0, 34), (1, 1), (17, 34), (30, 31), (412, 5000)])
def test_wilson_matches_scipy(k, n):
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_bound(np.array([k / n]), np.array([n]), True)[0] == pytest.approx(
        ci.high, abs=2e-4)  # scipy uses z = 1.95996..., we 1.96
    assert wilson_bound(np.array([k / n]), np.array([n]), False)[0] == pytest.approx(
        ci.low, abs=2e-4)


def _rows(slices):
    """metrics rows: (slice, auc, n_labeled, n_positive) per slice, one window."""
    out = []
    for s, auc, n, pos in slices:
        base = {"task": "t", "model": "m", "window_start": pd.Timestamp("2024-01-01", tz="UTC"),
                "slice": s, "slice_columns": "origin", "class_label": None, "average": None,
                "n_labeled": n, "ci_lower": np.nan, "ci_upper": np.nan}
        out += [{**base, "metric": "roc_auc", "value": auc, "direction": "higher_is_better"},
                {**base, "metric": "n_positive", "value": float(pos), "direction": "neutral"},
                {**base, "metric": "n_rows_scored", "value": float(n), "direction": "neutral"}]
    return pd.DataFrame(out)


def test_small_perfectly_bad_slice_does_not_lead():
    m = _rows([("origin=TINY", 0.0, 34, 1), ("origin=BIG", 0.58, 20000, 4000),
               ("origin=MID", 0.45, 400, 60), ("origin=OK", 0.72, 20000, 4000)])
    auc = m[m.metric == "roc_auc"]
    ranked = rank_worst(auc, m)
    assert ranked.slice.tolist() == ["origin=MID", "origin=BIG", "origin=OK", "origin=TINY"]
    b = ranked.set_index("slice")["bound"]
    # TINY's AUC rests on its 1 positive: Wilson upper bound of 0 of 1 trial
    assert b["origin=TINY"] == pytest.approx(wilson_bound(np.array([0.0]), np.array([1]),
                                                          True)[0])
    assert b["origin=MID"] == pytest.approx(wilson_bound(np.array([0.45]), np.array([60]),
                                                         True)[0])


def test_interval_bound_replaces_the_stand_in():
    m = _rows([("origin=A", 0.5, 1000, 500), ("origin=B", 0.6, 1000, 500)])
    auc = m[m.metric == "roc_auc"].copy()
    auc["ci_upper"] = [0.9, 0.62]  # A's interval is wide: B is the credibly worse one
    auc["ci_lower"] = [0.1, 0.58]
    assert rank_worst(auc, m).slice.tolist() == ["origin=B", "origin=A"]
    assert credible_bound(auc, m).tolist() == [0.9, 0.62]


def test_lower_is_better_errors_use_the_lower_bound():
    rows = pd.DataFrame({"slice": ["a", "b"], "metric": "mae", "value": [9.0, 6.0],
                         "direction": "lower_is_better", "n_labeled": [4, 10000]})
    b = credible_bound(rows)
    assert b[0] == pytest.approx(9.0 - 1.96 * 9.0 / 2) and b[1] == pytest.approx(
        6.0 - 1.96 * 6.0 / 100)
    assert rank_worst(rows).slice.tolist() == ["b", "a"]
