"""Every output table has one fixed schema: a folder of mixed runs (with and without invalid rows,
drift, windows) reads as one dataset with pandas, pyarrow.dataset and DuckDB; missing values are
null; the latest run is found by ``run_started_at``; slice names keep a missing value and the
string "null" apart."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from rayeval.config import load_config
from rayeval.engine.run import run_job
from rayeval.io.schemas import SCHEMAS, to_arrow
from rayeval.slicing import SliceSpec
from tests.synth import job_dict, make_frames, write_parquet


def test_missing_and_literal_null_slices_render_apart():
    spec = SliceSpec(("origin", "band"))
    names = {spec.render(v) for v in [(None, "a"), ("null", "a"), ('"null"', "a"),
                                      (float("nan"), "a")]}
    assert names == {"origin=null,band=a", 'origin="null",band=a', 'origin=""null"",band=a'}
    assert SliceSpec(("x",)).render((7,)) == "x=7"


@pytest.mark.parametrize("table", sorted(SCHEMAS))
def test_empty_table_has_the_schema(table):
    """No rows (even a frame without columns) still gives every column its type."""
    t = to_arrow(table, pd.DataFrame([]), dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))
    assert t.schema == SCHEMAS[table] and t.num_rows == 0
    assert not any(pa.types.is_null(f.type) for f in t.schema)


def test_a_column_outside_the_schema_is_refused():
    with pytest.raises(ValueError, match="extra columns \\['x'\\]"):
        to_arrow("invalid", pd.DataFrame({"x": [1]}), dt.datetime.now(dt.timezone.utc))


@pytest.fixture(scope="module")
def mixed_runs(ray_local, tmp_path_factory):
    """Three runs into one folder: (a) weekly windows, drift, invalid rows (scores above 1),
    a slice column holding both missing values and the string "null"; (b) no windows, no
    drift, no invalid row; (c) (a) again under another run id, later."""
    d = tmp_path_factory.mktemp("mixed")
    out = d / "out"
    preds, labels = make_frames(3000, seed=3)
    preds["segment"] = preds["segment"].astype(object)
    preds.loc[preds.index % 7 == 0, "segment"] = None
    preds.loc[preds.index % 7 == 1, "segment"] = "null"
    dirty = preds.copy()
    dirty.loc[dirty.index % 50 == 0, "score"] = 1.5
    write_parquet(dirty, d / "dirty", 2)
    write_parquet(preds, d / "clean", 2)
    write_parquet(labels, d / "labels", 1)
    a = job_dict(str(d / "dirty"), str(d / "labels"), str(out), run_id="run-b-dirty")
    a["drift"] = {"enabled": True, "reference": {"kind": "time_range", "start": "2024-01-01",
                                                 "end": "2024-01-08"},
                  "features": [{"name": "feature_x", "kind": "numeric"},
                               {"name": "band", "kind": "categorical"}]}
    a["windows"] = {"size": "week", "start": "2024-01-08"}
    a["gates"] = [{"name": "auc", "metric": "roc_auc", "task": "clf", "min": 0.5}]
    b = job_dict(str(d / "clean"), str(d / "labels"), str(out), run_id="run-a-clean")
    b["windows"] = {"size": "none"}
    results = {}
    for cfg in (a, b, {**a, "run_id": "run-0-latest"}):
        results[cfg["run_id"]] = run_job(load_config(data=cfg))
    return out, results


@pytest.mark.slow
def test_mixed_runs_read_with_pandas_pyarrow_and_duckdb(mixed_runs):
    out, results = mixed_runs
    assert not results["run-a-clean"].finalized.invalid.shape[0]  # the empty-invalid case
    assert results["run-b-dirty"].finalized.invalid.shape[0]
    runs = set(results)
    con = duckdb.connect()
    for table, schema in SCHEMAS.items():
        if not (out / table).exists():
            continue
        files = sorted((out / table).rglob("*.parquet"))
        for f in files:  # every file carries exactly the schema
            assert pq.read_schema(f).remove_metadata() == schema.remove_metadata(), f
        df = pd.read_parquet(out / table)
        expected = runs if table not in ("drift", "drift_histograms") else runs - {"run-a-clean"}
        if table in ("invalid", "gates"):
            expected = {r for r in expected if r != "run-a-clean"}
        assert set(df["run_id"]) == expected, table
        dset = ds.dataset(out / table, format="parquet", partitioning="hive")
        assert dset.to_table().num_rows == len(df)
        n = con.execute(f"select count(*), count(distinct run_id) from read_parquet("
                        f"'{out / table}/*/*.parquet', hive_partitioning=true)").fetchone()
        assert n == (len(df), len(expected)), table


def test_missing_values_are_null_and_latest_run_by_start_time(mixed_runs):
    out, results = mixed_runs
    m = pd.read_parquet(out / "metrics")
    assert not (m["undefined_reason"] == "").any() and m["undefined_reason"].isna().any()
    assert not (m["slice_columns"] == "").any()
    assert (m.loc[m["slice"] == "overall", "slice_columns"].isna()).all()
    d = pd.read_parquet(out / "drift")
    assert not (d["undefined_reason"] == "").any() and not (d["slice_columns"] == "").any()
    # the README's query: the latest run is the one started last, not the last run id
    latest = m[m.run_started_at == m.run_started_at.max()]
    assert set(latest.run_id) == {"run-0-latest"}
    started = m.groupby("run_id")["run_started_at"].first()
    assert started["run-0-latest"] > started["run-a-clean"] > started["run-b-dirty"]
    # a missing slice value and the string "null" are different slices
    seg = set(m.loc[m.slice_columns == "segment", "slice"])
    assert {"segment=null", 'segment="null"', "segment=north"} <= seg
    cov = pd.read_parquet(out / "coverage")
    cov = cov[cov.run_id == "run-a-clean"].groupby("slice")["n_rows"].sum()
    assert cov["segment=null"] == cov['segment="null"'] == len(range(0, 3000, 7))
