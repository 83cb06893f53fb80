"""``accumulate_many`` (one batch, several groupings: the engine's slice specs) must build
exactly the states of ``accumulate(zero(), batch, g)`` per grouping."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from rayeval.metrics.base import GroupIndex
from rayeval.metrics.classification import ClassificationSpec
from rayeval.metrics.regression import RegressionSpec
from rayeval.metrics.scores import BinaryScoreSpec, MulticlassScoreSpec
from tests.harness import assert_results_equal


def _groupings(rng, n):
    return [GroupIndex.single(n),
            GroupIndex(rng.integers(0, 7, n), tuple(("a", i) for i in range(7))),
            GroupIndex(rng.integers(0, 300, n), tuple(range(300)))]


def _batches(rng, n):
    y = rng.integers(0, 3, n)
    s = rng.dirichlet(np.ones(3), n)
    s[: n // 3] = np.round(s[: n // 3], 1)  # ties
    s[n // 3: n // 3 + 5] = np.nan  # invalid rows
    w = rng.exponential(size=n) * (rng.random(n) > 0.1)
    lab = y.astype(float)
    lab[:4] = np.nan
    return [
        (ClassificationSpec(classes=(0, 1, 2)), {"label": lab, "prediction": s.argmax(1)}),
        (ClassificationSpec(), {"label": y, "prediction": s.argmax(1), "weight": w}),
        (BinaryScoreSpec(bucket_budget=16), {"label": y == 1, "score": s[:, 1]}),
        (BinaryScoreSpec(), {"label": y == 1, "score": s[:, 1], "weight": w}),
        (MulticlassScoreSpec(classes=(0, 1, 2), bucket_budget=8), {"label": y, "scores": s}),
        (RegressionSpec(quantiles=()), {"target": np.where(lab == 2, 0.0, lab * 3.5),
                                        "prediction": s[:, 0], "weight": w}),
        (RegressionSpec(), {"target": np.where(lab == 2, 0.0, lab * 3.5), "prediction": s[:, 0]}),
    ]


@pytest.mark.parametrize("case", range(7))
def test_accumulate_many_equals_accumulate_per_grouping(case):
    rng = np.random.default_rng(case)
    n = 3000
    spec, batch = _batches(rng, n)[case]
    groupings = _groupings(rng, n)
    many = spec.accumulate_many(batch, groupings)
    assert len(many) == len(groupings)
    for g, state in zip(groupings, many):
        one = spec.accumulate(spec.zero(), batch, g)
        a, b = spec.finalize(state), spec.finalize(one)
        assert pickle.dumps(state) == pickle.dumps(one)
        assert_results_equal(a, b, rtol=0.0)
    assert spec.accumulate_many(batch, []) == []


def test_accumulate_many_rejects_groupings_of_other_batches():
    spec = BinaryScoreSpec()
    batch = {"label": np.zeros(3), "score": np.zeros(3)}
    with pytest.raises(ValueError, match="every grouping over 3 rows"):
        spec.accumulate_many(batch, [GroupIndex.single(3), GroupIndex.single(4)])
    with pytest.raises(ValueError, match="every grouping over 3 rows"):
        ClassificationSpec().accumulate_many({"label": np.zeros(3), "prediction": np.zeros(3)},
                                             [GroupIndex.single(3), GroupIndex.single(2)])
