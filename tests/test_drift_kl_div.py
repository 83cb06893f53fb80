"""The ``kl_div`` drift method against scipy (Evidently's formula: empty bins get eps)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from rayeval.drift import CategoricalBinning, compare, histogram


def _evidently_kl(ref_counts, cur_counts, eps=1e-4):
    p = np.asarray(ref_counts, float) / np.sum(ref_counts)
    q = np.asarray(cur_counts, float) / np.sum(cur_counts)
    return stats.entropy(np.where(p == 0, eps, p), np.where(q == 0, eps, q))


@pytest.mark.parametrize("seed", range(5))
def test_kl_div_matches_scipy_entropy(seed):
    rng = np.random.default_rng(seed)
    cats = np.array(list("abcde"), dtype=object)
    ref = rng.choice(cats, 500, p=[0.4, 0.3, 0.2, 0.1, 0.0])
    cur = rng.choice(cats, 300, p=[0.1, 0.2, 0.3, 0.2, 0.2])
    b = CategoricalBinning(("a", "b", "c", "d"), known=tuple("abcde"))
    r = compare(histogram(b, ref), histogram(b, cur), b, "kl_div")
    bins = ["a", "b", "c", "d"]
    rc = [np.sum(ref == c) for c in bins] + [np.sum(~np.isin(ref, bins))]
    cc = [np.sum(cur == c) for c in bins] + [np.sum(~np.isin(cur, bins))]
    assert r.statistic == pytest.approx(_evidently_kl(rc, cc), rel=1e-12)
    one_sided = any((a == 0) != (c == 0) for a, c in zip(rc, cc))
    assert r.smoothing == (1e-4 if one_sided else 0.0)
    assert r.drifted == (r.statistic >= 0.1) and r.threshold == 0.1


def test_kl_div_identical_is_zero_and_config_accepts_it():
    from rayeval.config import load_config

    b = CategoricalBinning(("a", "b"), known=("a", "b"))
    x = np.array(["a", "b", "b"], dtype=object)
    assert compare(histogram(b, x), histogram(b, x), b, "kl_div").statistic == 0.0
    load_config(data={"inputs": {"predictions": {"uri": "x"}},
                      "tasks": [{"name": "t", "type": "regression", "label": "y",
                                 "prediction": "p"}],
                      "drift": {"enabled": True, "reference": {"kind": "previous_window"},
                                "features": [{"name": "f", "kind": "categorical",
                                              "method": "kl_div"}]}})
