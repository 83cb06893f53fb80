"""Helpers of tests/test_registry.py: the flights registry example's functions, a scikit-learn
oracle on the same rows, and a model that raises on some batches."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "flights"))

from registry import (EXPERIMENT, FEATURES, features_dataset, latest_labels, log_model,  # noqa: E402,F401
                      register, tracking, train_models)


def oracle(model, features: pd.DataFrame, labels: pd.DataFrame, start=None, end=None) -> dict:
    """scikit-learn's metrics of ``model`` on the labelled feature rows in [start, end)."""
    from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score

    f = features
    if start is not None:
        f = f[f["timestamp"] >= pd.Timestamp(start, tz="UTC")]
    if end is not None:
        f = f[f["timestamp"] < pd.Timestamp(end, tz="UTC")]
    f = f[f["prediction_id"].isin(labels.index)]
    y = labels.loc[f["prediction_id"], "delayed"].to_numpy()
    p = model.predict_proba(f[FEATURES])[:, 1]
    return {"roc_auc": roc_auc_score(y, p), "accuracy": accuracy_score(y, p >= 0.5),
            "log_loss": log_loss(y, np.clip(p, 1e-15, 1 - 1e-15)),
            "brier_loss": brier_score_loss(y, p), "n_rows": len(y)}


try:
    import mlflow.pyfunc as _pyfunc

    class RaisingModel(_pyfunc.PythonModel):
        """Probability 0.5 for every row; raises on a batch holding ``distance == bad``."""

        def __init__(self, bad: int):
            self.bad = bad

        def predict(self, context, model_input, params=None):
            if (model_input["distance"] == self.bad).any():
                raise RuntimeError(f"cannot score distance {self.bad}")
            return pd.DataFrame({"p0": np.full(len(model_input), 0.5),
                                 "p1": np.full(len(model_input), 0.5)})
except ImportError:  # pragma: no cover
    RaisingModel = None


def log_raising_model(uri: str, x: pd.DataFrame, bad: int) -> str:
    import warnings

    import mlflow
    from mlflow.models import infer_signature

    with tracking(uri), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.set_experiment(EXPERIMENT)
        with mlflow.start_run() as run:
            mlflow.pyfunc.log_model(name="model", python_model=RaisingModel(bad),
                                    signature=infer_signature(x[FEATURES]))
    return f"runs:/{run.info.run_id}/model"
