"""A boolean label column with ``classes: [false, true]`` runs (it used to pass validate and
crash run with exit 4), with scikit-learn's answers; bools are the classes 0 and 1."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from rayeval.config import load_config
from rayeval.engine.run import run_job
from tests.synth import job_dict, make_frames, write_parquet


@pytest.mark.parametrize("separate_labels", [False, True])
def test_boolean_labels_and_predictions(ray_local, tmp_path, separate_labels):
    preds, labels = make_frames(3000, seed=11)
    labels = labels.drop_duplicates("id", keep="last")
    labels["label"] = labels["label"].astype(bool)
    preds["predicted"] = preds["predicted"].astype(bool)
    joined = preds.merge(labels[["id", "label"]], on="id")
    write_parquet(preds if separate_labels else joined, tmp_path / "preds", 2)
    write_parquet(labels, tmp_path / "labels", 1)
    data = job_dict(str(tmp_path / "preds"),
                    str(tmp_path / "labels") if separate_labels else None,
                    str(tmp_path / "out"), windows={"size": "none"})
    data["tasks"] = [{"name": "clf", "type": "binary", "label": "label",
                      "prediction": "predicted", "score": "score", "classes": [False, True],
                      "positive_class": True}]
    m = run_job(load_config(data=data)).finalized.metrics
    ov = m[(m.slice == "overall") & m.class_label.isna()]
    for model, part in joined.groupby("model"):
        got = ov[ov.model == model].set_index(["metric", "average"])["value"]
        f1 = f1_score(part.label, part.predicted)
        assert got[("f1", "binary")] == pytest.approx(f1, rel=1e-12)
        auc = roc_auc_score(part.label, part.score)
        roc = ov[(ov.model == model) & (ov.metric == "roc_auc")].value.iloc[0]
        assert roc == pytest.approx(auc, abs=1e-4)
        assert np.isfinite(roc)
