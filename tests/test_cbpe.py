"""CBPE (confidence-based performance estimation, NannyML's definition): hand-computed cases,
NannyML's own formulas, merge invariance, a calibrated simulation (the estimate within its
sampling error of the truth) and a concept-shift simulation (the warning fires)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from rayeval.core.state import GroupIndex
from rayeval.metrics.cbpe import CBPESpec, concept_shift


def run(spec, batch, n_groups=1, codes=None):
    n = len(batch["prediction"])
    codes = np.zeros(n, dtype=np.int64) if codes is None else codes
    g = GroupIndex(codes, tuple(range(n_groups)))
    st = spec.accumulate(spec.zero(), batch, g)
    return {(k, m): (v, se, b) for k, m, v, se, b, _ in spec.finalize(st)}


def nannyml_binary(y_pred, proba):
    """NannyML's binary CBPE estimators (confidence_based/metrics.py), as written there."""
    tp = np.where(y_pred == 1, proba, 0).sum()
    fp = np.where(y_pred == 1, 1 - proba, 0).sum()
    fn = np.where(y_pred == 0, proba, 0).sum()
    tn = np.where(y_pred == 0, 1 - proba, 0).sum()
    thresholds = np.sort(proba)[::-1]
    tpr = np.cumsum(thresholds) / np.cumsum(thresholds)[-1]
    fpr = np.cumsum(1 - thresholds) / np.cumsum(1 - thresholds)[-1]
    auc_nml = float(np.trapezoid(tpr, fpr))
    return {"accuracy": (tp + tn) / len(proba), "precision": tp / (tp + fp),
            "recall": tp / (tp + fn), "f1": 2 * tp / (2 * tp + fp + fn),
            "roc_auc": auc_nml + fpr[0] * tpr[0] / 2}  # + the triangle from (0, 0)


def test_binary_hand_computed():
    p = np.array([0.9, 0.6, 0.3, 0.2])
    pred = np.array([1, 1, 0, 0])
    r = run(CBPESpec((0, 1), True), {"prediction": pred, "score": p})
    # TP = 1.5, FP = 0.5, FN = 0.5, TN = 1.5
    for m in ("accuracy", "precision", "recall", "f1"):
        assert r[(0, m)][0] == pytest.approx(0.75)
    # expected ROC: area 3.2 / (P N = 4) = 0.8 (NannyML's code: 0.78875 + 0.05 * 0.45 / 2)
    assert r[(0, "roc_auc")][0] == pytest.approx(0.8)
    assert r[(0, "roc_auc")][2] == 0  # every score in its own bin
    ref = nannyml_binary(pred, p)
    for m, v in ref.items():
        assert r[(0, m)][0] == pytest.approx(v)
    # sampling SE of accuracy: q = (0.9, 0.6, 0.7, 0.8) -> sqrt(sum q(1-q)) / 4
    assert r[(0, "accuracy")][1] == pytest.approx(math.sqrt(0.09 + 0.24 + 0.21 + 0.16) / 4)


def test_multiclass_hand_computed():
    s = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.3, 0.5]])
    pred = np.array(["a", "b", "b"])
    r = run(CBPESpec(("a", "b", "c"), False), {"prediction": pred, "scores": s})
    assert r[(0, "accuracy")][0] == pytest.approx(1.6 / 3)
    # class a: TP .7 FP .3 FN .3; b: TP .9 FP 1.1 FN .2; c: TP 0 FP 0 FN .9 (precision NaN)
    assert r[(0, "precision")][0] == pytest.approx((0.7 + 0.45) / 2)
    assert r[(0, "recall")][0] == pytest.approx((0.7 + 0.9 / 1.1 + 0.0) / 3)
    assert r[(0, "f1")][0] == pytest.approx((1.4 / 2.0 + 1.8 / 3.1 + 0.0) / 3)


def test_weights_and_invalid_rows():
    p = np.array([0.9, 0.6, 0.3, 0.2, 1.5, np.nan])
    pred = np.array([1, 1, 0, 0, 1, 1])
    w = np.array([2.0, 1, 1, 1, 1, 1])
    r = run(CBPESpec((0, 1), True), {"prediction": pred, "score": p, "weight": w})
    dup = run(CBPESpec((0, 1), True), {"prediction": pred[[0, 0, 1, 2, 3]],
                                       "score": p[[0, 0, 1, 2, 3]]})
    for m in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        assert r[(0, m)][0] == pytest.approx(dup[(0, m)][0])


def test_merge_invariance():
    rng = np.random.default_rng(1)
    n = 3000
    p = rng.random(n)
    pred = (p > 0.4).astype(int)
    codes = rng.integers(0, 3, n)
    spec = CBPESpec((0, 1), True)
    whole = run(spec, {"prediction": pred, "score": p}, 3, codes)
    order = rng.permutation(n)
    parts = np.array_split(order, 4)
    states = []
    for part in parts:
        keys = tuple(sorted(set(codes[part].tolist())))
        g = GroupIndex(np.searchsorted(keys, codes[part]), keys)
        states.append(spec.accumulate(spec.zero(), {"prediction": pred[part], "score": p[part]},
                                      g))
    merged = spec.zero()
    for st in reversed(states):
        merged = spec.merge(st, merged)
    split = {(k, m): (v, se, b) for k, m, v, se, b, _ in spec.finalize(merged)}
    for key, (v, se, b) in whole.items():
        assert split[key][0] == pytest.approx(v, rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_calibrated_simulation_within_sampling_error(seed):
    """Labels drawn from the scores (calibrated): each estimate is within its sampling error of
    the realised metric (accuracy: 3 of its own standard errors; the others: 0.03 absolute)."""
    rng = np.random.default_rng(seed)
    n = 20_000
    p = rng.beta(2, 3, n)
    y = (rng.random(n) < p).astype(int)
    pred = (p >= 0.5).astype(int)
    r = run(CBPESpec((0, 1), True), {"prediction": pred, "score": p})
    acc, se, _ = r[(0, "accuracy")]
    assert abs(acc - accuracy_score(y, pred)) <= 3 * se
    assert 0.002 < se < 0.005
    for m, fn in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
        assert r[(0, m)][0] == pytest.approx(fn(y, pred), abs=0.03)
    auc, _, bound = r[(0, "roc_auc")]
    assert abs(auc - roc_auc_score(y, p)) <= 0.02 + bound
    assert not concept_shift(acc, accuracy_score(y, pred), se)


def test_multiclass_calibrated_simulation():
    rng = np.random.default_rng(7)
    n = 20_000
    s = rng.dirichlet([1.0, 1.5, 2.0], n)
    y = np.array([rng.choice(3, p=row) for row in s[:2000]])  # labels for a subsample
    s = s[:2000]
    pred = s.argmax(1)
    r = run(CBPESpec((0, 1, 2), False), {"prediction": pred, "scores": s})
    acc, se, _ = r[(0, "accuracy")]
    assert abs(acc - accuracy_score(y, pred)) <= 3 * se
    assert r[(0, "roc_auc")][0] == pytest.approx(
        roc_auc_score(y, s, multi_class="ovr", average="macro"), abs=0.04)


def test_concept_shift_fires():
    """The same scores, but P(y | score) changed (half the rows' labels follow 1 - p): the
    estimate still says what calibrated scores imply, the measured accuracy falls, the
    warning fires."""
    rng = np.random.default_rng(3)
    n = 20_000
    p = rng.beta(2, 3, n)
    shifted = rng.random(n) < 0.5
    y = (rng.random(n) < np.where(shifted, 1 - p, p)).astype(int)
    pred = (p >= 0.5).astype(int)
    r = run(CBPESpec((0, 1), True), {"prediction": pred, "score": p})
    acc, se, _ = r[(0, "accuracy")]
    measured = accuracy_score(y, pred)
    assert acc - measured > 0.1
    assert concept_shift(acc, measured, se)
    assert not concept_shift(acc, acc + 0.01, se)
    assert not concept_shift(math.nan, measured, se)
