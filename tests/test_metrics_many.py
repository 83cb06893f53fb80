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


def test_result_columns_blocks_round_trip_to_results():
    """ResultColumns: blocks (masked, per-class, reason arrays) give the MetricResult list a
    per-group loop would, and ``from_results`` inverts ``results``."""
    from rayeval.metrics.base import HIGHER, NEUTRAL, MetricResult, ResultColumns

    keys = [("m", 0, ("a",)), ("m", 0, ("b",)), ("m", 1, ("a",))]
    rc = ResultColumns(keys)
    rc.add("n_rows", np.array([3.0, 0.0, 5.0]))
    rc.add("recall", np.array([0.5, np.nan, 1.0]), HIGHER, np.array(["", "empty", ""]),
           class_label=1, mask=np.array([True, True, False]))
    rc.add("recall", 0.25, HIGHER, class_label=True, error_bound=np.array([0.0, 0.1, 0.2]))
    got = rc.results()
    assert len(rc) == len(got) == 8
    assert [r.key for r in got] == [keys[0]] * 3 + [keys[1]] * 3 + [keys[2]] * 2
    assert got[1] == MetricResult(keys[0], "recall", 0.5, HIGHER, "", 0.0, 1)
    assert got[4].undefined_reason == "empty" and np.isnan(got[4].value)
    assert got[5].error_bound == 0.1 and got[5].class_label is True  # True and 1 stay apart
    assert got[0] == MetricResult(keys[0], "n_rows", 3.0, NEUTRAL)
    again = ResultColumns.from_results(got).results()
    assert [(r.key, r.metric, r.class_label, r.undefined_reason, r.error_bound) for r in again] \
        == [(r.key, r.metric, r.class_label, r.undefined_reason, r.error_bound) for r in got]
    with pytest.raises(ValueError, match="shape"):
        rc.add("bad", np.zeros(2))
    assert ResultColumns([]).results() == [] and len(ResultColumns.from_results([])) == 0
