"""Synthetic prediction/label datasets for engine tests (seeded, small)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def make_frames(n: int = 6000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions of two models for ``n // 2`` ids over 3 weeks of 2024, and their labels
    (with 5% missing and 2% duplicated/corrected labels)."""
    rng = np.random.default_rng(seed)
    m = n // 2
    ids = np.array([f"p{i:06d}" for i in range(m)])
    ts = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 21 * 86400, m), unit="s")
    seg = rng.choice(["north", "south", "east", "west"], m, p=[0.4, 0.3, 0.2, 0.1])
    band = rng.choice(["lo", "hi"], m)
    x = rng.normal(size=m) + (seg == "north") * 0.3
    truth = (rng.random(m) < 1 / (1 + np.exp(-1.5 * x))).astype(np.int64)
    target = 10 * x + rng.normal(scale=3, size=m)
    frames = []
    for model, noise in (("champion", 0.8), ("challenger", 1.2)):
        s = 1 / (1 + np.exp(-(1.5 * x + rng.normal(scale=noise, size=m))))
        frames.append(pd.DataFrame({
            "id": ids, "timestamp": ts, "model": model, "segment": seg, "band": band,
            "feature_x": x, "score": s, "predicted": (s >= 0.5).astype(np.int64),
            "predicted_value": 10 * x + rng.normal(scale=4 * noise, size=m)}))
    preds = pd.concat(frames, ignore_index=True)
    labeled = rng.random(m) >= 0.05
    labels = pd.DataFrame({"id": ids[labeled], "label": truth[labeled],
                           "target": target[labeled],
                           "label_ts": ts[labeled] + pd.Timedelta(hours=6)})
    dup = labels.sample(frac=0.02, random_state=seed).copy()
    dup["label_ts"] = dup["label_ts"] + pd.Timedelta(hours=1)  # later correction wins
    labels = pd.concat([labels, dup], ignore_index=True)
    return preds, labels


def write_parquet(df: pd.DataFrame, root: Path, n_files: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(np.array_split(np.arange(len(df)), n_files)):
        pq.write_table(pa.Table.from_pandas(df.iloc[part], preserve_index=False),
                       root / f"part-{i:03d}.parquet")
    return root


def job_dict(pred_uri: str, label_uri: str | None, out: str, **extra) -> dict:
    cfg = {
        "name": "synthetic",
        "inputs": {"predictions": {"uri": pred_uri}},
        "columns": {"id": "id", "timestamp": "timestamp", "model": "model"},
        "tasks": [
            {"name": "clf", "type": "binary", "label": "label", "prediction": "predicted",
             "score": "score", "classes": [0, 1], "positive_class": 1},
            {"name": "reg", "type": "regression", "label": "target",
             "prediction": "predicted_value"},
        ],
        "slices": {"columns": ["segment"], "crosses": [["segment", "band"]]},
        "windows": {"size": "week"},
        "outputs": {"path": out, "report": False, "mlflow": {"enabled": False}},
    }
    if label_uri:
        cfg["inputs"]["labels"] = {"uri": label_uri, "timestamp_column": "label_ts"}
    for k, v in extra.items():
        cfg[k] = v
    return cfg
