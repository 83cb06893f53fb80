"""Fast test of the flights example's data preparation (examples/flights/prepare.py) on a 1 % sample."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "flights"
DATA = EXAMPLE / "data"

if not ((DATA / "flights-3m.parquet").is_file() and (DATA / "airports.csv").is_file()):
    pytest.skip(f"flights source data absent from {DATA} (see examples/flights/data/README.md)",
                allow_module_level=True)
pytest.importorskip("sklearn", reason="the flights example needs scikit-learn (pip install .[example])")


def _load_module():
    spec = importlib.util.spec_from_file_location("flights_prepare", EXAMPLE / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


prep = _load_module()
FRAC, SEED = 0.01, 0


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("flights") / "ds"
    return prep.prepare(out, sample_frac=FRAC, seed=SEED)


def _read(root: str) -> pd.DataFrame:
    return ds.dataset(root, format="parquet", partitioning="hive").to_table().to_pandas()


def test_result_dict(built):
    assert built["skipped"] is False
    n = built["rows"]["flights"]
    assert n == round(3_000_000 * FRAC)
    assert built["rows"]["predictions"] == 2 * n
    for key in ("predictions_dir", "labels_dir", "marker"):
        assert Path(built[key]).exists()
    assert json.loads(Path(built["marker"]).read_text())["rows"] == built["rows"]


def test_prediction_schema_and_partitioning(built):
    root = Path(built["predictions_dir"])
    parts = sorted(p.name for p in root.iterdir())
    assert 175 <= len(parts) <= 182 and parts[0] == "date=2001-01-01"
    assert len(parts) == built["files"]["predictions"]
    total = 0
    for part in parts:
        files = list((root / part).iterdir())
        assert [f.name for f in files] == ["part-0.parquet"], part  # one file per day
        t = pq.read_table(files[0])
        assert t.schema.equals(prep.PREDICTION_SCHEMA), t.schema
        day = pd.Timestamp(part.split("=", 1)[1], tz="UTC")
        ts = t["timestamp"].to_pandas()
        assert ((ts >= day) & (ts < day + pd.Timedelta(days=1))).all(), part
        total += t.num_rows
    assert total == built["rows"]["predictions"]

    df = _read(str(root))
    assert set(df["model"]) == {"delay-logreg-v1", "delay-hgb-v2"}
    per_id = df.groupby("prediction_id")["model"].agg(["size", "nunique"])
    assert (per_id["size"] == 2).all() and (per_id["nunique"] == 2).all()
    assert set(df["predicted_delayed"].unique()) <= {0, 1}
    assert ((df["score"] >= 0) & (df["score"] <= 1)).all()
    assert (df["predicted_delayed"] == (df["score"] >= 0.5)).all()
    assert np.isfinite(df["predicted_delay"]).all()
    assert set(df["distance_band"]) <= set(prep.DISTANCE_BANDS)
    assert set(df["hour_band"]) <= set(prep.HOUR_BANDS)
    assert set(df["day_of_week"]) == set(prep.DAY_NAMES)
    assert df["hour"].between(0, 23).all()
    assert not df["origin_state"].isna().any()
    # both model rows of a flight carry the same flight attributes
    attrs = ["timestamp", "origin", "destination", "distance", "hour", "day_of_week"]
    assert (df.groupby("prediction_id")[attrs].nunique() == 1).all().all()


def test_labels_join_and_policy(built):
    labels_root = Path(built["labels_dir"])
    for part in labels_root.iterdir():
        t = pq.read_table(part / "part-0.parquet")
        assert t.schema.equals(prep.LABEL_SCHEMA), t.schema
        day = pd.Timestamp(part.name.split("=", 1)[1], tz="UTC")
        ts = t["label_timestamp"].to_pandas()
        assert ((ts >= day) & (ts < day + pd.Timedelta(days=1))).all(), part  # partitioned by arrival date
    labels = _read(str(labels_root))
    preds = _read(built["predictions_dir"])
    assert len(labels) == built["rows"]["labels"]

    flights = preds.drop_duplicates("prediction_id").set_index("prediction_id")
    assert set(labels["prediction_id"]) <= set(flights.index)  # every label joins a prediction

    counts = built["labels"]
    labelled = labels["prediction_id"].nunique()
    assert labelled == counts["labelled_flights"]
    unlabelled = len(flights) - labelled
    assert unlabelled == counts["missing_flights"] + counts["not_yet_arrived_flights"]
    assert 0.005 * len(flights) < counts["missing_flights"] < 0.02 * len(flights)  # ~1 % missing

    sizes = labels.groupby("prediction_id").size()
    assert set(sizes.unique()) == {1, 2}
    assert (sizes == 2).sum() == counts["duplicate_flights"] > 0  # ~0.2 % re-delivered / corrected
    assert labels["delayed"].isin([0, 1]).all()
    assert (labels["delayed"] == (labels["delay_minutes"] > 15)).all()

    # lags: first label 2-72 h after departure; a second row strictly later; nothing after the snapshot
    dep = flights.loc[labels["prediction_id"], "timestamp"].reset_index(drop=True)
    lag_h = ((labels["label_timestamp"] - dep) / pd.Timedelta(hours=1)).to_numpy()
    first = ~labels.sort_values("label_timestamp").duplicated("prediction_id").sort_index()
    assert (lag_h[first.to_numpy()] >= 2).all() and (lag_h[first.to_numpy()] <= 72).all()
    assert (lag_h <= 72 + 48).all()
    as_of = pd.Timestamp(json.loads(Path(built["marker"]).read_text())["as_of"])
    assert (labels["label_timestamp"] <= as_of).all()

    # corrections: the later row differs from the earlier one for some duplicated flights
    dup = labels[labels["prediction_id"].isin(sizes[sizes == 2].index)].sort_values(["prediction_id", "label_timestamp"])
    changed = dup.groupby("prediction_id")["delay_minutes"].nunique() > 1
    assert changed.sum() == counts["corrected_flights"] > 0


def test_models_beat_trivial_baseline(built):
    from sklearn.metrics import roc_auc_score

    preds = _read(built["predictions_dir"])
    labels = _read(built["labels_dir"]).sort_values("label_timestamp")
    latest = labels.drop_duplicates("prediction_id", keep="last")[["prediction_id", "delayed"]]
    joined = preds.merge(latest, on="prediction_id", how="inner")
    test = joined[joined["timestamp"] >= pd.Timestamp("2001-02-01", tz="UTC")]
    for model, g in test.groupby("model"):
        auc = roc_auc_score(g["delayed"], g["score"])
        assert auc > 0.55, (model, auc)
        assert abs(auc - built["eval"][model]["auc_feb_jun"]) < 0.02  # reported AUC matches the written data


def test_idempotent_skip(built):
    out = Path(built["out_dir"])
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again = prep.prepare(out, sample_frac=FRAC, seed=SEED)
    assert again["skipped"] is True and again["rows"] == built["rows"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    assert prep.main(["--out", str(out), "--sample-frac", str(FRAC), "--seed", str(SEED)]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_cli_prints_a_short_summary(built, capsys):
    out = Path(built["out_dir"])
    assert prep.main(["--out", str(out), "--sample-frac", str(FRAC), "--seed", str(SEED)]) == 0
    text = capsys.readouterr().out
    assert len(text.splitlines()) <= 6, text
    assert f"{built['rows']['predictions']:,} prediction rows" in text
    assert "Feb-Jun ROC AUC" in text and str(out / prep.MARKER) in text
    assert prep.main(["--out", str(out), "--sample-frac", str(FRAC), "--seed", str(SEED),
                      "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == built["rows"]


def test_refuses_foreign_directory(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "something.txt").write_text("not ours")
    with pytest.raises(FileExistsError):
        prep.prepare(out, sample_frac=FRAC, seed=SEED)
    assert (out / "something.txt").read_text() == "not ours"


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    calls = []
    real = prep.write_partitioned

    def flaky(table, column, root, **kw):
        calls.append(root)
        if len(calls) == 2:  # predictions written, then "crash" while writing labels
            raise KeyboardInterrupt("simulated interruption")
        return real(table, column, root, **kw)

    monkeypatch.setattr(prep, "write_partitioned", flaky)
    with pytest.raises(KeyboardInterrupt):
        prep.prepare(out, sample_frac=0.002, seed=SEED)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # temp dir cleaned up too

    monkeypatch.setattr(prep, "write_partitioned", real)
    first = prep.prepare(out, sample_frac=0.002, seed=SEED)
    assert first["skipped"] is False and (out / prep.MARKER).is_file()
    # other parameters: our own dataset is replaced atomically, not merged
    second = prep.prepare(out, sample_frac=0.002, seed=SEED + 1)
    assert second["skipped"] is False and second["params"]["seed"] == SEED + 1
    assert len(list((out / "predictions").rglob("*.parquet"))) == second["files"]["predictions"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
