"""Invariants every registered spec and metric must satisfy (after scikit-learn's test_common).

The cases are derived from the registries, not listed by hand: every metric family registered
in :mod:`rayeval.core.registry` is built for example tasks of each type it serves, and its
batches are generated from the roles its spec declares (``spec.inputs()``). A new family or
metric gets every test here without a line added to this file; a new drift state spec is one
line in :data:`DRIFT_SPECS`.

Per spec: the merge harness (zero identity, inputs untouched, pickle, any split / order /
tree), ``accumulate`` leaves the batch untouched, ``accumulate_many`` equals one
``accumulate`` per grouping, an approximate result stays within its bound of the exact spec's
value, and every emitted result matches its declaration (name, direction, per class, average,
approximate). Per metric: its name matches its direction (``*_score`` higher is better,
``*_error`` / ``*_loss`` lower).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from rayeval.config import TaskConfig
from rayeval.core import registry
from rayeval.core.contract import (HIGHER, LOWER, MetricInfo, Spec, SpecBase,
                                   name_matches_direction)
from rayeval.core.state import GroupIndex
from rayeval.drift import CategoricalBinning, HistogramSpec, NumericBinning
from rayeval.drift.profile import CategoricalProfileSpec, NumericProfileSpec
from tests.harness import check_mergeable, sub_groups, take

N = 1500
#: example tasks per type: every registered family builds its spec from these
EXAMPLE_TASKS = [
    TaskConfig(name="binary", type="binary", label="y", prediction="p", score="s",
               positive_class=1),
    TaskConfig(name="binary_exact", type="binary", label="y", score="s", positive_class=1,
               exact_scores=True, classes=[0, 1]),
    TaskConfig(name="multiclass", type="multiclass", label="y", prediction="p",
               scores=["s0", "s1", "s2"], classes=[0, 1, 2], top_k=[1, 2]),
    TaskConfig(name="multiclass_zd0", type="multiclass", label="y", prediction="p",
               zero_division=0.0),
    TaskConfig(name="regression", type="regression", label="y", prediction="p",
               quantiles=[0.5, 0.9, 0.999]),
]

DRIFT_SPECS = [
    HistogramSpec(NumericBinning.from_edges(np.linspace(-3, 3, 13))),
    HistogramSpec(CategoricalBinning(("a", "b"), known=("a", "b", "c"))),
    NumericProfileSpec(n_bins=10),
    CategoricalProfileSpec(top_k=2, capacity=8),
]


def _task_cases():
    for task in EXAMPLE_TASKS:
        for family, spec in registry.task_specs(task).items():
            yield pytest.param(task, family, spec, id=f"{task.name}-{family}")


TASK_CASES = list(_task_cases())
SPEC_CASES = ([pytest.param(p.values[2], id=p.id) for p in TASK_CASES]
              + [pytest.param(s, id=f"{type(s).__name__}-{i}") for i, s in enumerate(DRIFT_SPECS)])


def _n_classes(spec) -> int:
    classes = getattr(spec, "classes", None)
    return len(classes) if classes else 3


def make_batch(spec, n: int = N, seed: int = 0) -> dict:
    """A batch with every key of ``spec.inputs()``, generated from its role: ties, a few
    missing values and zero weights included."""
    rng = np.random.default_rng(seed)
    k = 2 if getattr(spec, "positive_class", None) is not None else _n_classes(spec)
    out = {}
    for key, role in spec.inputs().items():
        role = role.rstrip("?")
        if role in ("class_label", "class_prediction"):
            v = rng.integers(0, k, n).astype(object)
            v[rng.random(n) < 0.02] = None
        elif role == "score":
            v = np.round(rng.random(n), 2)
            v[rng.random(n) < 0.02] = np.nan
        elif role == "scores":
            v = rng.dirichlet(np.ones(k), n)
        elif role in ("numeric_target", "numeric_prediction", "numeric_value"):
            v = rng.normal(0, 2, n).round(2)
            v[rng.random(n) < 0.02] = np.nan
        elif role == "category_value":
            v = rng.choice(np.array(["a", "b", "c", "d", None], dtype=object), n,
                           p=[0.4, 0.3, 0.15, 0.1, 0.05])
        elif role == "weight":
            v = rng.uniform(0, 3, n).round(1)
        elif role == "flag":
            v = rng.random(n) < 0.02
        else:
            raise AssertionError(f"no generator for role {role!r}")
        out[key] = v
    return out


def make_groups(n: int = N, seed: int = 1, n_groups: int = 5) -> GroupIndex:
    rng = np.random.default_rng(seed)
    return GroupIndex(rng.integers(0, n_groups, n), tuple(("g", i) for i in range(n_groups)))


def _approximate(spec) -> bool:
    return any(m.approximate for m in spec.metrics()) or isinstance(
        spec, (NumericProfileSpec, CategoricalProfileSpec))


# ---- per spec -----------------------------------------------------------------------------
@pytest.mark.parametrize("spec", SPEC_CASES)
def test_contract(spec):
    assert isinstance(spec, Spec) and isinstance(spec, SpecBase)
    assert spec.family
    roles = {r.rstrip("?") for r in spec.inputs().values()}
    assert roles, "a spec declares the batch keys it reads"


@pytest.mark.parametrize("spec", SPEC_CASES)
def test_merge_harness(spec):
    batch, groups = make_batch(spec), make_groups()
    check_mergeable(spec, batch, groups, atol=1e-9, rtol=1e-9,
                    use_error_bound=_approximate(spec))


@pytest.mark.parametrize("spec", SPEC_CASES)
def test_accumulate_leaves_batch_untouched(spec):
    batch, groups = make_batch(spec), make_groups()
    before = {k: v.copy() for k, v in batch.items()}
    spec.accumulate(spec.zero(), batch, groups)
    spec.accumulate_many(batch, [groups, GroupIndex.single(N)])
    for k, v in batch.items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


@pytest.mark.parametrize("spec", SPEC_CASES)
def test_accumulate_many_equals_accumulate(spec):
    from tests.harness import assert_results_equal

    batch = make_batch(spec)
    groupings = [make_groups(), GroupIndex.single(N, ("all",)), make_groups(seed=5, n_groups=2)]
    many = spec.accumulate_many(batch, groupings)
    assert len(many) == len(groupings)
    for g, state in zip(groupings, many):
        one = spec.accumulate(spec.zero(), batch, g)
        assert_results_equal(spec.finalize(state), spec.finalize(one), rtol=1e-12)
        # and a state from accumulate_many keeps merging like any other
        idx = np.arange(N // 2)
        half = spec.accumulate(spec.zero(), take(batch, idx), sub_groups(g, idx))
        spec.finalize(spec.merge(half, state))
    assert spec.accumulate_many(batch, []) == []


@pytest.mark.parametrize("spec", SPEC_CASES)
def test_compact_and_prepare_keep_values(spec):
    from tests.harness import assert_results_equal

    state = spec.accumulate(spec.zero(), make_batch(spec), make_groups())
    for s in (spec.compact(state), spec.prepare(state)):
        assert_results_equal(spec.finalize(s), spec.finalize(state), rtol=1e-12)
    assert spec.nbytes(state) > 0


@pytest.mark.parametrize("task,family,spec", TASK_CASES)
def test_results_match_declarations(task, family, spec):
    """Every result is declared, with its direction, class and average variants; every
    declared metric is emitted on a batch with every class present."""
    declared = {m.name: m for m in spec.metrics()}
    assert len(declared) == len(spec.metrics()), "a metric is declared twice"
    state = spec.accumulate(spec.zero(), make_batch(spec), make_groups())
    cols = spec.finalize_columns(state)
    results = cols.results()
    assert results, "a non-empty state gives results"
    emitted = set()
    for r in results:
        info = declared.get(r.metric)
        assert info is not None, f"{r.metric} is emitted but not declared"
        emitted.add(r.metric)
        assert r.direction == info.direction, r
        assert info.family == family
        if r.class_label is not None:
            assert info.per_class, r
        if r.average is not None:
            assert r.average in info.averages, r
        if r.error_bound > 0:
            assert info.approximate, r
    assert emitted == set(declared), set(declared) ^ emitted


@pytest.mark.parametrize("task,family,spec", TASK_CASES)
def test_error_bound_holds(task, family, spec):
    """An approximate value is within its bound of the exact value (the spec's exact twin,
    ``exact=True``, where the family has one; otherwise within the declared bound of itself
    merged in another split, which the harness checks)."""
    if not any(m.approximate for m in spec.metrics()) or not hasattr(spec, "exact"):
        pytest.skip("no exact twin")
    exact = dataclasses.replace(spec, exact=True)
    rng = np.random.default_rng(3)
    batch, groups = make_batch(spec, n=20_000, seed=4), make_groups(n=20_000)
    if "score" in batch:  # many distinct scores, so the approximate spec coarsens
        batch["score"] = rng.random(20_000)
    approx = dataclasses.replace(spec, bucket_budget=32)
    got = {(r.key, r.metric, r.class_label, r.average): r
           for r in approx.finalize(approx.accumulate(approx.zero(), batch, groups))}
    want = {(r.key, r.metric, r.class_label, r.average): r
            for r in exact.finalize(exact.accumulate(exact.zero(), batch, groups))}
    assert set(got) == set(want)
    coarse = 0
    for k, r in got.items():
        if math.isnan(r.value):
            assert math.isnan(want[k].value)
            continue
        assert abs(r.value - want[k].value) <= r.error_bound + 1e-12, (k, r, want[k])
        coarse += r.error_bound > 0
    assert coarse, "the bucket budget must have made some value approximate"


# ---- per metric ---------------------------------------------------------------------------
def _all_infos():
    seen = {}
    for task in EXAMPLE_TASKS:
        for name, info in registry.task_metrics(task).items():
            seen.setdefault(name, info)
    return sorted(seen.items())


@pytest.mark.parametrize("name,info", _all_infos(), ids=lambda x: x if isinstance(x, str) else "")
def test_name_matches_direction(name, info):
    assert name == info.name
    assert name_matches_direction(name, info.direction)
    if name.endswith("_score"):
        assert info.direction == HIGHER
    if name.endswith(("_error", "_loss")):
        assert info.direction == LOWER
    assert name not in registry.RENAMED, f"{name} is a former name"


def test_metric_info_rejects_contradicting_names():
    with pytest.raises(ValueError, match="brier_score"):
        MetricInfo("brier_score", LOWER, "scores")
    with pytest.raises(ValueError, match="mean_error"):
        MetricInfo("mean_error", "neutral", "regression")
    with pytest.raises(ValueError, match="direction"):
        MetricInfo("x", "up", "scores")


def test_quantile_names_are_the_emitted_names():
    """The regression family emits ``p99.9_absolute_error`` for q = 0.999; gate validation
    and ``metrics:`` lists must accept exactly that name (they read the declarations)."""
    from rayeval.config import ConfigError, load_config
    from rayeval.engine.gates import check_gates

    task = EXAMPLE_TASKS[-1]
    names = registry.task_metrics(task)
    assert "p99.9_absolute_error" in names and "p100_absolute_error" not in names
    base = {"name": "q", "inputs": {"predictions": {"uri": "x"}},
            "tasks": [{"name": "r", "type": "regression", "label": "y", "prediction": "p",
                       "quantiles": [0.5, 0.999]}]}
    check_gates(load_config(data={**base, "gates": [
        {"name": "tail", "metric": "p99.9_absolute_error", "max": 10}]}))
    with pytest.raises(ConfigError, match="p100_absolute_error"):
        check_gates(load_config(data={**base, "gates": [
            {"name": "tail", "metric": "p100_absolute_error", "max": 10}]}))


def test_renamed_metric_names_are_explained():
    from rayeval.config import ConfigError, load_config
    from rayeval.engine.gates import check_gates

    cfg = load_config(data={"name": "q", "inputs": {"predictions": {"uri": "x"}},
                            "tasks": [{"name": "b", "type": "binary", "label": "y",
                                       "score": "s", "positive_class": 1}],
                            "gates": [{"name": "g", "metric": "brier_score", "max": 1}]})
    with pytest.raises(ConfigError, match="renamed to 'brier_loss'"):
        check_gates(cfg)


def test_every_family_serves_a_task_type():
    fams = registry.families()
    assert {"labels", "scores", "regression"} <= set(fams)
    served = {t for f in fams.values() for t in f.task_types}
    assert served == {"binary", "multiclass", "regression"}
    for task in EXAMPLE_TASKS:
        for family, spec in registry.task_specs(task).items():
            assert set(fams[family].columns(task)) == set(spec.required_inputs()), family


# ---- per drift method ---------------------------------------------------------------------
def _drift_case(kind: str, shift: float, seed: int = 0, n: int = 4000):
    """A reference binning and histograms of the reference and of three current rows (the
    same distribution, ``shift`` applied to the third)."""
    from rayeval.drift import histogram

    rng = np.random.default_rng(seed)
    if kind == "numeric":
        spec = NumericProfileSpec(n_bins=20)
        ref = rng.normal(0, 1, n)
        curs = [rng.normal(0, 1, n), rng.normal(0, 1, n // 2), rng.normal(shift, 1, n)]
    else:
        spec = CategoricalProfileSpec(top_k=5)
        cats = np.array(list("abcdef"), dtype=object)
        p = np.array([0.3, 0.25, 0.2, 0.1, 0.1, 0.05])
        q = np.roll(p, 2) if shift else p
        ref = rng.choice(cats, n, p=p)
        curs = [rng.choice(cats, n, p=p), rng.choice(cats, n // 2, p=p), rng.choice(cats, n, p=q)]
    state = spec.accumulate(spec.zero(), {"value": ref}, GroupIndex.single(len(ref)))
    binning = spec.binning(state, ())
    hs = HistogramSpec(binning)
    groups = GroupIndex(np.repeat(np.arange(3), [len(c) for c in curs]), ((0,), (1,), (2,)))
    cur_state = hs.accumulate(hs.zero(), {"value": np.concatenate(curs)}, groups)
    return binning, histogram(binning, ref), hs, cur_state, np.concatenate(curs), groups


def _method_cases():
    from rayeval.drift.methods import METHODS

    for name, m in METHODS.items():
        for kind in sorted(m.kinds):
            yield pytest.param(name, kind, id=f"{name}-{kind}")


@pytest.mark.parametrize("method,kind", list(_method_cases()))
def test_drift_method_invariants(method, kind):
    """Every registered drift method: defined on ordinary data; a big shift drifts at the
    default threshold and no shift does not; rows are compared independently; the result does
    not depend on how the current rows were split into batches; binned statistics are exact
    for the binning (bound 0), estimated ones carry a finite bound; tests give p-values in
    [0, 1], distances none."""
    from rayeval.drift import compare_rows
    from rayeval.drift.methods import METHODS

    m = METHODS[method]
    thr = 1e9 if m.default_threshold is None else None  # a distance in the feature's unit
    binning, ref, hs, cur_state, values, groups = _drift_case(kind, shift=1.5)
    cur = hs.table(cur_state)
    res = compare_rows(ref, cur, binning, method, thr)
    for r in res:
        assert r.undefined_reason == "" and math.isfinite(r.statistic), r
        assert r.error_bound == 0.0 if m.binned else 0.0 <= r.error_bound < math.inf
        if m.test:
            assert 0.0 <= r.p_value <= 1.0 and r.decision == "p_value"
        else:
            assert math.isnan(r.p_value) and r.decision == "statistic"
    if m.default_threshold is not None and method != "unseen_share":
        assert not res[0].drifted and res[2].drifted, res
        assert res[2].statistic > res[0].statistic or m.test
    # rows are independent of each other
    for i in range(3):
        one = compare_rows(ref, cur.take([i]), binning, method, thr)[0]
        assert one == res[i] or (one.statistic == pytest.approx(res[i].statistic, rel=1e-12)
                                 and one.p_value == pytest.approx(res[i].p_value, rel=1e-9,
                                                                  nan_ok=True))
    # any split of the current rows into batches gives the same statistic
    rng = np.random.default_rng(7)
    order = rng.permutation(len(values))
    parts = np.array_split(order, 4)
    merged = hs.zero()
    for idx in parts[::-1]:
        merged = hs.merge(merged, hs.accumulate(hs.zero(), take({"value": values}, idx),
                                                sub_groups(groups, idx)))
    again = compare_rows(ref, hs.table(merged, cur.keys), binning, method, thr)
    for a, b in zip(again, res):
        assert a.statistic == pytest.approx(b.statistic, rel=1e-9, abs=1e-12)
        assert a.drifted == b.drifted


def test_metric_names_used_elsewhere_are_declared():
    """Modules that still name metrics (interval methods and ranges, the Prometheus default
    set) name only metrics the registered specs declare: a rename cannot leave them behind."""
    from rayeval.io.prometheus import DEFAULT_METRICS
    from rayeval.stats import metric_intervals as mi

    declared = {name for name, _ in _all_infos()}
    used = (set(mi.WILSON_METRICS) | set(mi.RANKING_METRICS) | set(mi.COUNTS) | set(mi.RANGES)
            | set(DEFAULT_METRICS))
    for task in EXAMPLE_TASKS:
        for spec in registry.task_specs(task).values():
            used |= mi.interval_metrics(spec, bootstrap=True)
    assert used <= declared, sorted(used - declared)
