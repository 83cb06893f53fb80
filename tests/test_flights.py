"""The main job on the real flights example: end to end on a 1% sample (fast), and on the full 3M
flights (``-m full``), each checked against pandas + scikit-learn recomputed from the written
predictions and labels."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as pds
import pytest
from sklearn.metrics import (accuracy_score, average_precision_score, f1_score,
                             mean_absolute_error, roc_auc_score)

from rayeval.config import load_config
from rayeval.engine.run import run_job
from tests.conftest import ROOT, flights_source

CONFIG = ROOT / "configs" / "flights.yaml"


def flights_config(data_dir: Path, out: Path, *extra: str):
    return load_config(CONFIG, [f"inputs.predictions.uri={data_dir}/predictions",
                                f"inputs.labels.uri={data_dir}/labels",
                                f"outputs.path={out}", *extra])


def joined_frame(data_dir: Path) -> pd.DataFrame:
    """Predictions joined with the latest label per id, with Monday-start UTC weeks."""
    preds = pds.dataset(data_dir / "predictions", partitioning="hive").to_table().to_pandas()
    labels = pds.dataset(data_dir / "labels", partitioning="hive").to_table().to_pandas()
    labels = labels.sort_values("label_timestamp", kind="stable").drop_duplicates(
        "prediction_id", keep="last")
    df = preds.merge(labels[["prediction_id", "delayed", "delay_minutes"]], on="prediction_id")
    ts = df["timestamp"].dt.tz_convert("UTC")
    df["week"] = ts.dt.floor("D") - pd.to_timedelta(ts.dt.dayofweek, unit="D")
    return df[(ts >= pd.Timestamp("2001-02-05", tz="UTC")) & (ts < pd.Timestamp("2001-07-01",
                                                                               tz="UTC"))]


def check_against_sklearn(m: pd.DataFrame, df: pd.DataFrame, n_groups: int, seed: int) -> int:
    """Recompute the metrics of ``n_groups`` random (model, week, origin) groups; returns the
    number of groups checked."""
    groups = df.groupby(["model", "week", "origin"])
    keys = [k for k, g in groups if len(g) >= 50 and g.delayed.nunique() == 2]
    rng = np.random.default_rng(seed)
    checked = 0
    for i in rng.choice(len(keys), size=min(n_groups, len(keys)), replace=False):
        model, week, origin = keys[i]
        g = groups.get_group(keys[i])
        sel = m[(m.model == model) & (m.window_start == week) & (m.slice == f"origin={origin}")]
        val = {(r.task, r.metric, None if pd.isna(r.average) else r.average): r
               for r in sel.itertuples() if pd.isna(r.class_label)}
        auc = val[("delayed", "roc_auc", None)]
        assert abs(auc.value - roc_auc_score(g.delayed, g.score)) <= auc.error_bound + 1e-12
        ap = val[("delayed", "pr_auc", None)]
        assert abs(ap.value - average_precision_score(g.delayed, g.score)) <= ap.error_bound + 1e-12
        assert val[("delayed", "accuracy", None)].value == pytest.approx(
            accuracy_score(g.delayed, g.predicted_delayed), abs=1e-12)
        f1 = val[("delayed", "f1", "binary")]
        if not np.isnan(f1.value):
            assert f1.value == pytest.approx(f1_score(g.delayed, g.predicted_delayed), abs=1e-12)
        assert val[("delay_minutes", "mae", None)].value == pytest.approx(
            mean_absolute_error(g.delay_minutes, g.predicted_delay), rel=1e-9)
        assert auc.n_labeled == len(g)
        checked += 1
    return checked


@pytest.mark.slow
def test_flights_sample_end_to_end(ray_local, flights_sample, tmp_path):
    data = flights_sample["dir"]
    res = run_job(flights_config(data, tmp_path / "out"))
    print("durations", res.durations)
    m = res.finalized.metrics
    assert set(m.model) == {"delay-logreg-v1", "delay-hgb-v2"}
    assert set(m.task) == {"delayed", "delay_minutes"}
    assert set(m.slice_columns.fillna("")) == {"", "origin", "destination", "origin_state",
                                    "distance_band", "hour_band", "origin,hour_band"}
    assert m.window_start.nunique() == 21  # weeks 2001-02-05 .. 2001-06-25
    overall = m[(m.slice == "overall") & (m.metric == "roc_auc") & (m.task == "delayed")]
    assert (overall.value > 0.55).all() and (overall.error_bound <= 1e-4).all()
    d = res.drift
    assert {"distance", "hour", "origin", "day_of_week", "score", "delayed"} <= set(d.feature)
    assert not res.gates.empty
    for table in ("metrics", "confusion", "drift", "gates", "coverage"):
        assert len(pd.read_parquet(tmp_path / "out" / table)) > 0, table
    assert (tmp_path / "out" / "reports" / f"{res.run_id}.html").stat().st_size > 10_000
    assert check_against_sklearn(m, joined_frame(data), 15, seed=0) >= 5


@pytest.mark.full
def test_flights_full_matches_pandas_sklearn(ray_local, tmp_path_factory):
    """The full 3M-flight job; a handful of per-slice values recomputed with pandas+sklearn."""
    src = flights_source()
    if src is None:
        pytest.skip("flights data absent")
    sys.path.insert(0, str(ROOT / "examples" / "flights"))
    from prepare import prepare

    data = ROOT / "examples" / "flights" / "bucket"
    prepare(data, sample_frac=1.0, seed=0, data_dir=src)
    out = tmp_path_factory.mktemp("flights-full")
    res = run_job(flights_config(data, out, "outputs.mlflow.enabled=false"))
    written = pd.read_parquet(out / "metrics")
    assert len(written) == len(res.finalized.metrics)
    assert check_against_sklearn(written.astype({"class_label": object}), joined_frame(data), 20,
                                 seed=1) == 20
