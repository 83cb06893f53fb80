"""The flights example, starting from the registry: a feature dataset (the flights without any
model's outputs) and two scikit-learn models trained on January, logged to MLflow (pyfunc
predicts ``predict_proba``) and registered as ``flights-delay`` v1 (alias ``champion``,
logistic regression) and v2 (alias ``challenger``, gradient-boosted trees), for
``configs/flights-registry.yaml``.

Usage (after ``rayeval demo`` or ``prepare.py`` wrote ``examples/flights/bucket``)::

    python examples/flights/registry.py [--bucket examples/flights/bucket]
        [--tracking-uri sqlite:///rayeval-output/flights-registry/registry.db]

The tests (``tests/test_registry.py``) and ``benchmarks/bench_registry.py`` use the same
functions on the 1% sample and the 3M rows.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

FEATURES = ["hour", "distance", "day_of_week", "origin_state"]
TRAIN_END = pd.Timestamp("2001-02-01", tz="UTC")
EXPERIMENT = "flights-delay-models"
#: types skops must be told to load (the gradient-boosted trees' predictors)
TRUSTED = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


def features_dataset(sample_dir: Path, out: Path) -> Path:
    """The flights sample's rows of one model, without the model's outputs: id, timestamp,
    slice and feature columns, one Parquet file per month."""
    t = pq.read_table(sample_dir / "predictions")
    df = t.to_pandas()
    df = df[df["model"] == df["model"].iloc[0]].drop(
        columns=["model", "predicted_delayed", "score", "predicted_delay", "date"],
        errors="ignore")
    df = df.sort_values(["timestamp", "prediction_id"]).reset_index(drop=True)
    month = df["timestamp"].dt.strftime("%Y-%m")
    for m, part in df.groupby(month):
        d = out / f"month={m}"
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), d / "part-0.parquet")
    return out


def latest_labels(sample_dir: Path) -> pd.DataFrame:
    """The labels, the latest per id (as rayeval joins them)."""
    lab = pq.read_table(sample_dir / "labels").to_pandas()
    lab = lab.sort_values(["label_timestamp"], kind="stable")
    return lab.drop_duplicates("prediction_id", keep="last").set_index("prediction_id")


def train_models(features: pd.DataFrame, labels: pd.DataFrame):
    """(champion logistic regression, challenger gradient boosting) on January."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    jan = features[features["timestamp"] < TRAIN_END]
    jan = jan[jan["prediction_id"].isin(labels.index)]
    x, y = jan[FEATURES], labels.loc[jan["prediction_id"], "delayed"].to_numpy()
    champion = Pipeline([
        ("encode", ColumnTransformer([
            ("onehot", OneHotEncoder(handle_unknown="ignore"), ["day_of_week", "origin_state"]),
            ("scale", StandardScaler(), ["hour", "distance"])])),
        ("model", LogisticRegression(max_iter=300))]).fit(x, y)
    challenger = Pipeline([
        ("encode", ColumnTransformer([
            ("ordinal", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
             ["day_of_week", "origin_state"])], remainder="passthrough")),
        ("model", HistGradientBoostingClassifier(max_iter=40, random_state=0))]).fit(x, y)
    return champion, challenger, x


@contextlib.contextmanager
def tracking(uri: str):
    import mlflow

    old = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(old[0])
        mlflow.set_registry_uri(old[1])


def log_model(uri: str, model, x: pd.DataFrame, name: str = "model", **kwargs) -> str:
    """Log a scikit-learn model (pyfunc predicts ``predict_proba``), return its runs:/ URI."""
    import warnings

    import mlflow
    from mlflow.models import infer_signature

    with tracking(uri), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.set_experiment(EXPERIMENT)
        sig = infer_signature(x, model.predict_proba(x.head(50)))
        with mlflow.start_run() as run:
            # MLflow 3 saves with skops, which loads only reviewed types: our own trees'
            # node arrays are trusted here (a registry of foreign models should review them)
            mlflow.sklearn.log_model(model, name=name, signature=sig,
                                     pyfunc_predict_fn="predict_proba",
                                     skops_trusted_types=TRUSTED, **kwargs)
    return f"runs:/{run.info.run_id}/{name}"


def register(uri: str, registered: str, run_uris: list[str],
             aliases: dict[str, int]) -> list[str]:
    """Register ``run_uris`` as versions 1.. of ``registered``; set ``aliases`` (alias ->
    version). Returns the versions."""
    import mlflow
    from mlflow.tracking import MlflowClient

    with tracking(uri):
        versions = [mlflow.register_model(u, registered).version for u in run_uris]
        client = MlflowClient()
        for alias, v in aliases.items():
            client.set_registered_model_alias(registered, alias, str(v))
    return [str(v) for v in versions]


def main(argv=None) -> None:
    import argparse
    import os

    import mlflow

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bucket", default="examples/flights/bucket")
    p.add_argument("--tracking-uri",
                   default="sqlite:///rayeval-output/flights-registry/registry.db")
    p.add_argument("--name", default="flights-delay")
    a = p.parse_args(argv)
    bucket = Path(a.bucket)
    if a.tracking_uri.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(a.tracking_uri[len("sqlite:///"):]) or ".", exist_ok=True)
    feats = bucket / "features"
    if not feats.exists():
        features_dataset(bucket, feats)
    features = pq.read_table(feats).to_pandas()
    champion, challenger, x = train_models(features, latest_labels(bucket))
    with tracking(a.tracking_uri):
        if mlflow.get_experiment_by_name(EXPERIMENT) is None:
            root = Path(a.tracking_uri[len("sqlite:///"):]).parent if a.tracking_uri.startswith(
                "sqlite:///") else Path("rayeval-output/flights-registry")
            mlflow.create_experiment(EXPERIMENT, (root / "mlartifacts").resolve().as_uri())
    runs = [log_model(a.tracking_uri, m, x) for m in (champion, challenger)]
    versions = register(a.tracking_uri, a.name, runs, {})
    from mlflow.tracking import MlflowClient

    with tracking(a.tracking_uri):
        c = MlflowClient()
        c.set_registered_model_alias(a.name, "champion", versions[0])
        c.set_registered_model_alias(a.name, "challenger", versions[1])
    print(f"features: {feats}\nregistered {a.name} versions {versions} (champion "
          f"{versions[0]}, challenger {versions[1]}) at {a.tracking_uri}")


if __name__ == "__main__":
    main()
