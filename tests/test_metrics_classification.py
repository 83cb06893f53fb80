"""ClassificationSpec: oracle tests against scikit-learn, edge cases, mergeability."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, cohen_kappa_score,
                             confusion_matrix, matthews_corrcoef, multilabel_confusion_matrix,
                             jaccard_score, precision_recall_fscore_support)

from rayeval.metrics.base import GroupIndex, StateMismatchError, results_by_key
from rayeval.metrics.classification import INVALID_REASONS, ClassificationSpec
from tests.harness import assert_results_equal, check_mergeable

RTOL = ATOL = 1e-12
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # sklearn's undefined warnings
INT_CLASSES = [0, 1, 2, 3]
STR_CLASSES = ["cat", "dog", "emu", "yak"]


def run(spec, batch, groups=None):
    n = len(batch["label"])
    groups = groups or GroupIndex.single(n)
    state = spec.accumulate(spec.zero(), batch, groups)
    return state, results_by_key(spec.finalize(state))


def make_data(rng, n, classes, weighted=False, n_groups=1, accuracy=0.6):
    y = rng.choice(classes, size=n, p=np.linspace(1, 2, len(classes)) / np.linspace(
        1, 2, len(classes)).sum())
    p = np.where(rng.random(n) < accuracy, y, rng.choice(classes, size=n))
    batch = {"label": y, "prediction": p}
    if weighted:
        w = rng.gamma(2.0, 1.0, size=n)
        w[rng.random(n) < 0.1] = 0.0
        batch["weight"] = w
    codes = rng.integers(0, n_groups, size=n)
    return batch, GroupIndex(codes, tuple(f"g{i}" for i in range(n_groups)))


def _sk_specificity(y, p, w, labels, zd):
    mcm = multilabel_confusion_matrix(y, p, labels=labels, sample_weight=w).astype(float)
    tn, fp = mcm[:, 0, 0], mcm[:, 0, 1]
    return tn, fp


def _sk_jaccard(y, p, w, labels, zd):
    """Per-class ``jaccard_score`` with our ``zero_division`` (nan too: scikit-learn takes only
    0 or 1) where a class has neither labels nor predictions of positive weight."""
    vals = jaccard_score(y, p, labels=labels, sample_weight=w, average=None,
                         zero_division=0.0 if math.isnan(zd) else zd)
    mcm = multilabel_confusion_matrix(y, p, labels=labels, sample_weight=w).astype(float)
    den = mcm[:, 1, 1] + mcm[:, 0, 1] + mcm[:, 1, 0]
    return np.where(den > 0, vals, zd)


def _avg(vals, weights):
    keep = ~np.isnan(vals)
    if not keep.any() or weights[keep].sum() == 0:
        return math.nan
    return float(np.average(vals[keep], weights=weights[keep]))


def expected(y, p, w, zd, positive=None, fixed=None, averages=("micro", "macro", "weighted")):
    """{(metric, class_label, average): value} from scikit-learn for one group's rows."""
    y, p = list(y), list(p)
    present = sorted(set(y) | set(p))
    per_class = list(fixed) if fixed is not None else present
    wt = np.ones(len(y)) if w is None else np.asarray(w)
    total = wt.sum()
    out = {("n_rows", None, None): float(len(y))}
    out[("accuracy", None, None)] = accuracy_score(y, p, sample_weight=w)
    out[("balanced_accuracy", None, None)] = balanced_accuracy_score(y, p, sample_weight=w)
    single = (len({a for a, b in zip(y, wt) if b > 0}) < 2
              or len({a for a, b in zip(p, wt) if b > 0}) < 2)
    out[("mcc", None, None)] = math.nan if single else matthews_corrcoef(y, p, sample_weight=w)
    same_single = ({a for a, b in zip(y, wt) if b > 0} == {a for a, b in zip(p, wt) if b > 0}
                   and len({a for a, b in zip(y, wt) if b > 0}) == 1)
    out[("cohen_kappa", None, None)] = (math.nan if same_single or total <= 0
                                        else cohen_kappa_score(y, p, sample_weight=w))
    prf = precision_recall_fscore_support(y, p, labels=per_class, sample_weight=w,
                                          zero_division=zd, average=None)
    tn, fp = _sk_specificity(y, p, w, per_class, zd)
    spec = np.array([a / (a + b) if a + b > 0 else zd for a, b in zip(tn, fp)])
    cm = confusion_matrix(y, p, labels=per_class, sample_weight=w)
    jac = _sk_jaccard(y, p, w, per_class, zd)
    for i, c in enumerate(per_class):
        for name, arr in zip(("precision", "recall", "f1", "support"), prf):
            out[(name, c, None)] = float(arr[i])
        out[("specificity", c, None)] = float(spec[i])
        out[("jaccard", c, None)] = float(jac[i])
        out[("prevalence", c, None)] = float(cm[i].sum() / total)
        out[("predicted_positive_rate", c, None)] = float(cm[:, i].sum() / total)
    # averages over the classes present in the group (macro skips absent classes)
    tn, fp = _sk_specificity(y, p, w, present, zd)
    spec = np.array([a / (a + b) if a + b > 0 else zd for a, b in zip(tn, fp)])
    support = precision_recall_fscore_support(y, p, labels=present, sample_weight=w,
                                              zero_division=zd)[3].astype(float)
    for avg in averages:
        vals = precision_recall_fscore_support(y, p, labels=present, sample_weight=w,
                                               zero_division=zd, average=avg)
        per = precision_recall_fscore_support(y, p, labels=present, sample_weight=w,
                                              zero_division=zd, average=None)
        for name, v, pc in zip(("precision", "recall", "f1"), vals, per):
            pc = np.asarray(pc, float)
            if avg == "weighted" and support[~np.isnan(pc)].sum() == 0:
                v = math.nan  # our convention; sklearn falls back to the unweighted mean
            out[(name, None, avg)] = float(v)
        if avg == "micro":
            mcm = multilabel_confusion_matrix(y, p, labels=present, sample_weight=w).sum(0)
            jac = (jaccard_score(y, p, labels=present, sample_weight=w, average="micro")
                   if mcm[1, 1] + mcm[0, 1] + mcm[1, 0] > 0 else zd)
        else:  # the mean over classes with a defined value, as for precision and recall
            per = _sk_jaccard(y, p, w, present, zd)
            jac = _avg(per, np.ones(len(per)) if avg == "macro" else support)
        out[("jaccard", None, avg)] = float(jac)
        if avg == "micro":
            den = tn.sum() + fp.sum()
            out[("specificity", None, avg)] = tn.sum() / den if den > 0 else zd
        else:
            out[("specificity", None, avg)] = _avg(spec, np.ones(len(spec))
                                                   if avg == "macro" else support)
    if positive is not None:
        vals = precision_recall_fscore_support(y, p, pos_label=positive, sample_weight=w,
                                               zero_division=zd, average="binary")
        for name, v in zip(("precision", "recall", "f1"), vals):
            out[(name, None, "binary")] = float(v)
        out[("jaccard", None, "binary")] = float(_sk_jaccard(y, p, w, [positive], zd)[0])
        out[("specificity", None, "binary")] = out[("specificity", positive, None)] if (
            "specificity", positive, None) in out else float("nan")
    return out


def assert_matches(got: dict, want: dict):
    assert set(got) == set(want), set(got) ^ set(want)
    for k, v in want.items():
        r = got[k]
        if math.isnan(v):
            assert math.isnan(r.value) and r.undefined_reason, (k, r)
        else:
            assert r.value == pytest.approx(v, rel=RTOL, abs=ATOL), (k, r.value, v)


# ---- oracle tests -------------------------------------------------------------------------
@pytest.mark.parametrize("fixed", [False, True])
@pytest.mark.parametrize("zd", [0.0, 1.0, math.nan])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("classes", [INT_CLASSES, STR_CLASSES, INT_CLASSES[:2], STR_CLASSES[:2]])
def test_oracle_one_group(classes, weighted, zd, fixed):
    rng = np.random.default_rng(len(classes) + weighted)
    batch, groups = make_data(rng, 300, classes, weighted)
    positive = classes[1] if len(classes) == 2 else None
    spec = ClassificationSpec(classes=tuple(classes) if fixed else None, positive_class=positive,
                              zero_division=zd)
    _, res = run(spec, batch, groups)
    assert_matches(res["g0"], expected(batch["label"], batch["prediction"], batch.get("weight"),
                                       zd, positive, fixed=classes if fixed else None))


@pytest.mark.parametrize("weighted", [False, True])
def test_oracle_per_group(weighted):
    rng = np.random.default_rng(7)
    batch, groups = make_data(rng, 600, STR_CLASSES, weighted, n_groups=5, accuracy=0.3)
    spec = ClassificationSpec(zero_division=0.0)
    _, res = run(spec, batch, groups)
    assert set(res) == set(groups.keys)
    for code, key in enumerate(groups.keys):
        m = groups.codes == code
        w = batch["weight"][m] if weighted else None
        assert_matches(res[key], expected(batch["label"][m], batch["prediction"][m], w, 0.0))


def test_fixed_classes_report_absent_classes_and_count_unknown():
    y = np.array([1, 2, 1, 5, 2, 1])
    p = np.array([1, 1, 2, 1, 7, 1])
    spec = ClassificationSpec(classes=(1, 2, 3), zero_division=0.0)
    state, res = run(spec, {"label": y, "prediction": p})
    inv = spec.invalid_counts(state)[()]
    assert inv["unknown_class"] == 1  # label 5
    assert inv["unknown_predicted_class"] == 1  # label 2 predicted as 7
    keep = np.array([True, True, True, False, False, True])
    want = expected(y[keep], p[keep], None, 0.0, fixed=(1, 2, 3))
    assert_matches(res[()], want)
    absent = res[()][("precision", 3, None)]
    assert absent.value == 0.0 and absent.undefined_reason == "zero_division"
    assert res[()][("support", 3, None)].value == 0.0


def test_integral_float_labels_match_int_labels():
    y = np.array([0.0, 1.0, np.nan, 2.0, 1.0])
    p = np.array([0, 1, 1, 1, 2])
    spec = ClassificationSpec()
    state, res = run(spec, {"label": y, "prediction": p})
    _, res_int = run(spec, {"label": np.array([0, 1, 2, 1]), "prediction": np.array([0, 1, 1, 2])})
    assert {k: r.value for k, r in res[()].items()} == pytest.approx(
        {k: r.value for k, r in res_int[()].items()}, nan_ok=True)
    assert spec.invalid_counts(state)[()]["missing_label"] == 1
    assert all(isinstance(c, int) for _, c, _ in res[()] if c is not None)


def test_confusion_records_match_sklearn():
    rng = np.random.default_rng(3)
    batch, groups = make_data(rng, 200, STR_CLASSES, weighted=True, n_groups=2)
    spec = ClassificationSpec()
    state, _ = run(spec, batch, groups)
    recs = spec.confusion_records(state)
    for code, key in enumerate(groups.keys):
        m = groups.codes == code
        cm = confusion_matrix(batch["label"][m], batch["prediction"][m], labels=STR_CLASSES,
                              sample_weight=batch["weight"][m])
        got = np.zeros_like(cm)
        for k, t, p, c in recs:
            if k == key:
                got[STR_CLASSES.index(t), STR_CLASSES.index(p)] = c
        np.testing.assert_allclose(got, cm, rtol=1e-12)
    assert all(c != 0 for *_, c in recs)


# ---- edge cases ---------------------------------------------------------------------------
def test_invalid_rows_counted_per_group_and_reason():
    y = np.array([1, None, 2, 1, np.nan, 2, 1], dtype=object)
    p = np.array([1, 1, None, 2, 1, 2, 1], dtype=object)
    w = np.array([1.0, 1.0, 1.0, -1.0, 1.0, np.inf, 0.0])
    groups = GroupIndex(np.array([0, 0, 0, 1, 1, 1, 2]), ("a", "b", "c"))
    spec = ClassificationSpec()
    state, res = run(spec, {"label": y, "prediction": p, "weight": w}, groups)
    inv = spec.invalid_counts(state)
    assert inv["a"] == dict(zip(INVALID_REASONS, [1, 1, 0, 0, 0, 0]))
    assert inv["b"] == dict(zip(INVALID_REASONS, [1, 0, 1, 1, 0, 0]))
    assert spec.row_counts(state) == {"a": 1.0, "b": 0.0, "c": 1.0}
    assert spec.weight_sums(state) == {"a": 1.0, "b": 0.0, "c": 0.0}
    for key in ("b", "c"):  # no valid rows / zero total weight
        for (metric, _, _), r in res[key].items():
            if metric in ("n_rows", "support"):
                assert not r.undefined_reason
            else:
                assert math.isnan(r.value) and r.undefined_reason == "empty", r
    assert res["b"][("n_rows", None, None)].value == 0.0
    assert res["c"][("n_rows", None, None)].value == 1.0


@pytest.mark.parametrize("zd", [0.0, 1.0, math.nan])
def test_single_class_and_constant_predictions(zd):
    spec = ClassificationSpec(zero_division=zd)
    _, res = run(spec, {"label": np.array(["a"] * 4), "prediction": np.array(["a"] * 4)})
    r = res[()]
    assert r[("accuracy", None, None)].value == 1.0
    for m in ("mcc", "cohen_kappa"):  # sklearn returns 0.0 / nan here
        assert math.isnan(r[(m, None, None)].value)
        assert r[(m, None, None)].undefined_reason == "single_class"
    spec_r = r[("specificity", "a", None)]
    assert spec_r.undefined_reason == "zero_division" and (
        spec_r.value == zd or math.isnan(zd) and math.isnan(spec_r.value))
    _, res = run(spec, {"label": np.array([0, 1, 1, 2]), "prediction": np.array([1, 1, 1, 1])})
    r = res[()]
    assert r[("mcc", None, None)].undefined_reason == "single_class"
    # kappa is defined for constant predictions against several label classes: 0.0
    assert r[("cohen_kappa", None, None)].value == cohen_kappa_score([0, 1, 1, 2], [1] * 4) == 0
    assert not r[("cohen_kappa", None, None)].undefined_reason
    prec0 = r[("precision", 0, None)]
    assert prec0.undefined_reason == "zero_division"
    assert_matches(r, {**expected([0, 1, 1, 2], [1, 1, 1, 1], None, zd)})


def test_zero_weights_match_sklearn_and_keep_classes():
    y = np.array([0, 1, 2, 2, 1, 0])
    p = np.array([0, 2, 2, 1, 1, 0])
    w = np.array([1.0, 0.0, 2.0, 1.0, 3.0, 0.5])
    _, res = run(ClassificationSpec(zero_division=0.0), {"label": y, "prediction": p,
                                                         "weight": w})
    assert_matches(res[()], expected(y, p, w, 0.0))


def test_nan_zero_division_averages_skip_undefined_classes():
    y = np.array([0, 0, 1, 1])
    p = np.array([0, 0, 0, 2])  # class 1 never predicted, class 2 never true
    _, res = run(ClassificationSpec(), {"label": y, "prediction": p})
    r = res[()]
    assert math.isnan(r[("precision", 1, None)].value)
    assert r[("precision", None, "macro")].value == pytest.approx((2 / 3 + 0.0) / 2)
    assert r[("precision", None, "macro")].undefined_reason == ""
    assert_matches(r, expected(y, p, None, math.nan))


def test_binary_average_when_positive_class_never_seen():
    spec = ClassificationSpec(positive_class="yes", zero_division=0.0)
    _, res = run(spec, {"label": np.array(["no", "no"]), "prediction": np.array(["no", "no"])})
    r = res[()]
    assert r[("recall", None, "binary")].undefined_reason == "zero_division"
    assert r[("recall", None, "binary")].value == 0.0
    assert ("recall", "yes", None) not in r  # discovered mode: only present classes


# ---- type and option errors ---------------------------------------------------------------
@pytest.mark.parametrize("label,pred", [
    (np.array(["1", "0"]), np.array([1, 0])),
    (np.array([1.0, 0.0]), np.array(["1", "0"], dtype=object)),
])
def test_type_mismatch_raises_naming_both_dtypes(label, pred):
    with pytest.raises(TypeError) as exc:
        run(ClassificationSpec(), {"label": label, "prediction": pred})
    assert str(label.dtype) in str(exc.value) and str(pred.dtype) in str(exc.value)


def test_other_type_errors():
    spec = ClassificationSpec()
    with pytest.raises(TypeError, match="mixes"):
        run(spec, {"label": np.array([1, "a"], dtype=object), "prediction": np.array([1, 1])})
    with pytest.raises(TypeError, match="`classes`"):
        run(ClassificationSpec(classes=(0, 1)),
            {"label": np.array(["0"]), "prediction": np.array(["1"])})
    # a non-integral number is no class: excluded and counted, never fatal (scikit-learn would
    # take 0.5 as a class of its own; rayeval's classes are integers or strings)
    st, res = run(spec, {"label": np.array([0.5, 1.0, 0.0, 1.0, 0.0]),
                         "prediction": np.array([1, 1, 0, 0, np.inf]),
                         "weight": np.array([1.0, 1.0, 2.0, 1.0, 1.0])})
    inv = spec.invalid_counts(st)[()]
    assert inv["unknown_class"] == 1 and inv["unknown_predicted_class"] == 1
    assert res[()][("accuracy", None, None)].value == pytest.approx(
        accuracy_score([1, 0, 1], [1, 0, 0], sample_weight=[1, 2, 1]))
    obj = np.array([0.5, 1, None, 0], dtype=object)
    st, _ = run(spec, {"label": obj, "prediction": np.array([1, 1, 1, 0])})
    assert spec.invalid_counts(st)[()]["unknown_class"] == 1
    a, _ = run(spec, {"label": np.array([1]), "prediction": np.array([1])})
    b, _ = run(spec, {"label": np.array(["x"]), "prediction": np.array(["x"])})
    with pytest.raises(TypeError):
        spec.merge(a, b)
    with pytest.raises(TypeError, match="earlier batches"):
        spec.accumulate(a, {"label": np.array(["x"]), "prediction": np.array(["x"])},
                        GroupIndex.single(1))


def test_option_validation():
    with pytest.raises(ValueError, match="positive_class"):
        ClassificationSpec(classes=(0, 1, 2), positive_class=1)
    with pytest.raises(ValueError, match="positive_class"):
        ClassificationSpec(classes=(0, 1), positive_class=5)
    with pytest.raises(ValueError, match="zero_division"):
        ClassificationSpec(zero_division=0.5)
    with pytest.raises(ValueError, match="averages"):
        ClassificationSpec(averages=("samples",))
    with pytest.raises(TypeError, match="classes"):
        ClassificationSpec(classes=(0, "a"))
    spec = ClassificationSpec(positive_class=1)
    with pytest.raises(ValueError, match="at most 2"):
        run(spec, {"label": np.array([0, 1, 2]), "prediction": np.array([0, 1, 1])})
    with pytest.raises(StateMismatchError):
        fixed = ClassificationSpec(classes=(0, 1))
        fixed.merge(fixed.zero(), ClassificationSpec(classes=(0, 2)).zero())


# ---- mergeability -------------------------------------------------------------------------
def _dirty(rng, batch, classes):
    n = len(batch["label"])
    y = batch["label"].astype(object)
    y[rng.random(n) < 0.05] = None
    p = batch["prediction"].astype(object)
    p[rng.random(n) < 0.05] = np.nan
    out = {"label": y, "prediction": p}
    if "weight" in batch:
        w = batch["weight"].copy()
        w[rng.random(n) < 0.03] = -1.0
        w[rng.random(n) < 0.03] = np.nan
        out["weight"] = w
    return out


MERGE_CASES = [
    ("int-weighted-dirty", ClassificationSpec(), INT_CLASSES, True, True),
    ("str-rare-classes", ClassificationSpec(zero_division=0.0),
     STR_CLASSES + ["zebra", "ant"], False, False),
    ("binary", ClassificationSpec(positive_class="dog"), STR_CLASSES[:2], True, True),
    ("fixed-with-unknown", ClassificationSpec(classes=(0, 1, 2), zero_division=1.0),
     INT_CLASSES, True, False),
]


@pytest.mark.parametrize("name,spec,classes,weighted,dirty", MERGE_CASES,
                         ids=[c[0] for c in MERGE_CASES])
def test_mergeable(name, spec, classes, weighted, dirty):
    rng = np.random.default_rng(11)
    batch, groups = make_data(rng, 400, classes, weighted, n_groups=6, accuracy=0.4)
    if dirty:
        batch = _dirty(rng, batch, classes)
    for seed in range(3):
        check_mergeable(spec, batch, groups, seed=seed)


def test_merge_unions_classes_regardless_of_order():
    spec = ClassificationSpec()
    a, _ = run(spec, {"label": np.array(["z", "z"]), "prediction": np.array(["z", "b"])})
    b, _ = run(spec, {"label": np.array(["a"]), "prediction": np.array(["a"])})
    ab, ba = spec.merge(a, b), spec.merge(b, a)
    assert ab.classes == ba.classes == ("a", "b", "z")
    assert_results_equal(spec.finalize(ab), spec.finalize(ba), 0, 0)
    assert a.classes == ("b", "z")  # inputs untouched
    assert pickle.loads(pickle.dumps(ab)).classes == ab.classes


@settings(max_examples=40, deadline=None)
@given(data=st.lists(st.tuples(st.integers(0, 3), st.sampled_from("abc"), st.sampled_from("abcd"),
                               st.sampled_from([0.0, 0.5, 1.0, 2.5])), min_size=1, max_size=60),
       seed=st.integers(0, 2**16), zd=st.sampled_from([0.0, 1.0, math.nan]))
def test_mergeable_property(data, seed, zd):
    codes, y, p, w = (np.array(col) for col in zip(*data))
    keys = tuple(range(int(codes.max()) + 1))
    batch = {"label": y, "prediction": p, "weight": w.astype(float)}
    spec = ClassificationSpec(zero_division=zd)
    check_mergeable(spec, batch, GroupIndex(codes, keys), seed=seed, n_splits=2)
