"""Raw scores (margins, logits): a task declares ``scores_are: raw`` once in its config; ROC
and PR AUC (order-only) equal scikit-learn's on the raw values, log loss / Brier / ECE are not
produced (they read scores as probabilities), and a gate on them is a config error."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, top_k_accuracy_score

from rayeval.config import ConfigError, load_config
from rayeval.engine.gates import check_gates
from rayeval.engine.plan import EvalPlan
from rayeval.engine.results import finalize
from rayeval.metrics._score_math import raw_order_scores
from tests.synth import job_dict, make_frames


def test_raw_order_keys_keep_the_order():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 50, 5000), [0.0, -0.0, 5e-324, -5e-324, 1e308, -1e308,
                                                   np.finfo(float).max, -np.finfo(float).max,
                                                   1e-300, -1e-300, 40.0, 40.000000001]])
    k = raw_order_scores(x)
    assert ((k >= 0) & (k < 0.5)).all()
    order = np.argsort(x, kind="stable")
    assert (np.diff(k[order]) >= 0).all()  # never out of order
    xs = np.sort(x)
    distinct = np.diff(xs) > 1e-12 * np.maximum(np.abs(xs[1:]), 1e-300)
    assert (np.diff(np.sort(k))[distinct] > 0).all()  # distinct values stay distinct
    assert raw_order_scores(np.array([-0.0]))[0] == raw_order_scores(np.array([0.0]))[0]


def _frame(seed: int = 2):
    preds, labels = make_frames(4000, seed=seed)
    df = preds.merge(labels.drop_duplicates("id", keep="last"), on="id")
    p = df["score"].clip(1e-12, 1 - 1e-12)
    df["margin"] = 6.0 * np.log(p / (1 - p))  # logits beyond +-40 too (a sigmoid saturates)
    df.loc[df.index % 97 == 0, "margin"] *= 30
    return df


@pytest.mark.parametrize("exact", [True, False])
def test_raw_binary_scores_give_sklearn_ranking_metrics(exact):
    df = _frame()
    data = job_dict("p", None, "o", windows={"size": "none"})
    data["tasks"] = [{"name": "clf", "type": "binary", "label": "label", "score": "margin",
                      "classes": [0, 1], "positive_class": 1, "scores_are": "raw",
                      "exact_scores": exact}]
    cfg = load_config(data=data)
    plan = EvalPlan(cfg, None)
    part = plan.accumulate(plan.zero(), pa.Table.from_pandas(df, preserve_index=False))
    res = finalize(plan, part, "r")
    m = res.metrics
    assert not set(m.metric) & {"log_loss", "brier_loss", "ece"}
    assert res.invalid.empty  # margins outside [0, 1] are not "out of range"
    for model, part_ in df.groupby("model"):
        got = m[(m.model == model) & (m.slice == "overall")].set_index("metric")
        auc = roc_auc_score(part_.label, part_.margin)
        ap = average_precision_score(part_.label, part_.margin)
        tol_auc = 1e-12 if exact else got.loc["roc_auc", "error_bound"] + 1e-12
        tol_ap = 1e-12 if exact else got.loc["pr_auc", "error_bound"] + 1e-12
        assert abs(got.loc["roc_auc", "value"] - auc) <= tol_auc
        assert abs(got.loc["pr_auc", "value"] - ap) <= tol_ap


def test_raw_multiclass_logits_give_sklearn_ovr_auc_and_top_k():
    rng = np.random.default_rng(5)
    n = 3000
    y = rng.integers(0, 3, n)
    logits = rng.normal(0, 3, (n, 3)) + 2.5 * np.eye(3)[y]
    logits[::50] *= 40
    import pandas as pd
    df = pd.DataFrame({"timestamp": pd.Timestamp("2024-01-01", tz="UTC"), "model": "m",
                       "label": y, "s0": logits[:, 0], "s1": logits[:, 1], "s2": logits[:, 2]})
    data = job_dict("p", None, "o", windows={"size": "none"})
    data["slices"] = {}
    data["tasks"] = [{"name": "mc", "type": "multiclass", "label": "label",
                      "scores": ["s0", "s1", "s2"], "classes": [0, 1, 2], "scores_are": "raw",
                      "exact_scores": True, "top_k": [2]}]
    cfg = load_config(data=data)
    plan = EvalPlan(cfg, None)
    part = plan.accumulate(plan.zero(), pa.Table.from_pandas(df, preserve_index=False))
    m = finalize(plan, part, "r").metrics
    assert not set(m.metric) & {"log_loss", "brier_loss", "ece"}
    macro = m[(m.metric == "roc_auc") & (m.average == "macro")].value.iloc[0]
    # one-vs-rest on each raw column (a softmax would reorder a column: not the same AUC)
    assert macro == pytest.approx(np.mean([roc_auc_score(y == c, logits[:, c])
                                           for c in range(3)]), abs=1e-12)
    for c in range(3):
        got = m[(m.metric == "roc_auc") & (m.class_label == str(c))].value.iloc[0]
        assert got == pytest.approx(roc_auc_score(y == c, logits[:, c]), abs=1e-12)
    top2 = m[m.metric == "top_2_accuracy"].value.iloc[0]
    assert top2 == pytest.approx(top_k_accuracy_score(y, logits, k=2), abs=1e-12)


def test_gate_on_a_probability_metric_of_raw_scores_is_a_config_error():
    data = job_dict("p", None, "o")
    data["tasks"][0]["scores_are"] = "raw"
    data["gates"] = [{"name": "ll", "metric": "log_loss", "task": "clf", "max": 0.5}]
    with pytest.raises(ConfigError, match="log_loss"):
        check_gates(load_config(data=data))
