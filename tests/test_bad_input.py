"""Bad input: a clear error naming the file/column/count, or a counted exclusion — and never a
partial output.

A test with the ``before_ray`` fixture (and without ``ray_local``) proves its error is found
before Ray is needed (:func:`rayeval.engine.preflight.inspect_inputs`: config rules, files, footers,
schema contract): such a job never starts its actors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayeval.config import ConfigError, load_config
from rayeval.engine.run import run_job
from rayeval.io.readers import InputError
from tests.synth import job_dict, make_frames, write_parquet


def outputs(path) -> list:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


@pytest.fixture
def before_ray(monkeypatch):
    """Fail the test if the job starts its Ray actors (its error must come before)."""
    from rayeval.engine import ray_runner

    def started(*args, **kwargs):
        raise AssertionError("the job started its Ray actors before finding the error")

    monkeypatch.setattr(ray_runner, "ReducerPool", started)


@pytest.fixture(scope="module")
def frames():
    return make_frames(2000, seed=3)


def cfg_for(tmp_path, preds_dir, labels_dir=None, **extra):
    return load_config(data=job_dict(str(preds_dir), str(labels_dir) if labels_dir else None,
                                     str(tmp_path / "out"), **extra))


def same_table_frame(frames) -> pd.DataFrame:
    preds, labels = frames
    lab = labels.sort_values("label_ts").drop_duplicates("id", keep="last")
    return preds.merge(lab[["id", "label", "target"]], on="id", how="left")


def expect_error(tmp_path, cfg, *needles):
    with pytest.raises(InputError) as e:
        run_job(cfg)
    for n in needles:
        assert n in str(e.value), str(e.value)
    assert outputs(tmp_path / "out") == []
    assert not (tmp_path / "out").exists()  # not even an empty output folder
    return str(e.value)


def test_missing_path(before_ray, tmp_path):
    expect_error(tmp_path, cfg_for(tmp_path, tmp_path / "nope"), "does not exist", "nope")


def test_empty_dataset(before_ray, tmp_path):
    (tmp_path / "empty").mkdir()
    expect_error(tmp_path, cfg_for(tmp_path, tmp_path / "empty"), "No Parquet files")


def test_zero_row_files_with_drift_name_the_predictions(before_ray, tmp_path, frames):
    """Only 0-row files: the error names the predictions (not the drift reference, whose pass
    would otherwise run first and find nothing)."""
    df = same_table_frame(frames).iloc[:0]
    write_parquet(df, tmp_path / "p", 1)
    data = job_dict(str(tmp_path / "p"), None, str(tmp_path / "out"))
    data["drift"] = {"enabled": True, "reference": {"kind": "previous_window"},
                     "features": [{"name": "band", "kind": "categorical"}]}
    msg = expect_error(tmp_path, load_config(data=data), "No rows in", "all empty")
    assert "reference" not in msg


def test_windows_without_data_is_an_input_error(ray_local, tmp_path, frames):
    """Rows exist but none is in the evaluated windows: exit-2 input error with the counts,
    not an empty run whose gates fail for want of metrics."""
    df = same_table_frame(frames)
    write_parquet(df, tmp_path / "p", 2)
    cfg = cfg_for(tmp_path, tmp_path / "p", windows={"size": "week", "start": "2030-01-01",
                                                     "end": "2030-02-01"})
    expect_error(tmp_path, cfg, "Nothing to evaluate", f"{len(df):,} rows read",
                 f"{len(df):,} outside windows.start/end")


def test_missing_column(before_ray, tmp_path, frames):
    df = same_table_frame(frames).drop(columns=["score"])
    write_parquet(df, tmp_path / "p", 2)
    expect_error(tmp_path, cfg_for(tmp_path, tmp_path / "p"), "'score'", f"{len(df)} rows")


def test_score_as_string(before_ray, tmp_path, frames):
    df = same_table_frame(frames)
    df["score"] = df["score"].astype(str)
    write_parquet(df, tmp_path / "p", 2)
    expect_error(tmp_path, cfg_for(tmp_path, tmp_path / "p"), "'score'", "string")


def test_corrupt_file(before_ray, tmp_path, frames):
    write_parquet(same_table_frame(frames), tmp_path / "p", 3)
    bad = tmp_path / "p" / "part-001.parquet"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])  # truncated
    expect_error(tmp_path, cfg_for(tmp_path, tmp_path / "p"), "part-001.parquet")


def test_corrupt_data_pages_behind_a_valid_footer(ray_local, tmp_path, frames):
    """The footer passes the inspect-time check; Ray Data's read fails: still an InputError
    naming the file (found by re-reading file by file), not a Ray traceback."""
    write_parquet(same_table_frame(frames), tmp_path / "p", 3)
    bad = tmp_path / "p" / "part-001.parquet"
    data = bytearray(bad.read_bytes())
    data[200:len(data) // 2] = b"\xab" * (len(data) // 2 - 200)
    bad.write_bytes(bytes(data))
    expect_error(tmp_path, cfg_for(tmp_path, tmp_path / "p"), "part-001.parquet",
                 "Cannot decode")


def test_incompatible_types_across_files(before_ray, tmp_path, frames):
    df = same_table_frame(frames)
    write_parquet(df.iloc[:1000], tmp_path / "p", 1)
    other = df.iloc[1000:].copy()
    other["segment"] = np.arange(len(other))  # int where the other file has strings
    pq.write_table(pa.Table.from_pandas(other, preserve_index=False),
                   tmp_path / "p" / "part-zzz.parquet")
    expect_error(tmp_path, cfg_for(tmp_path, tmp_path / "p"), "segment", "part-zzz.parquet")


def test_schema_drift_across_partitions_is_read(ray_local, tmp_path, frames):
    """int16 vs int64, a column null-typed in one file, absent in another, tz-aware vs naive
    timestamps: all read; the rows with missing values are counted, not lost silently."""
    df = same_table_frame(frames).dropna(subset=["label"])
    d = tmp_path / "p"
    d.mkdir()
    a, b, c = df.iloc[:600], df.iloc[600:1200].copy(), df.iloc[1200:].copy()
    ta = pa.Table.from_pandas(a, preserve_index=False)
    ta = ta.set_column(ta.schema.get_field_index("predicted"), "predicted",
                       ta["predicted"].cast(pa.int16()))
    pq.write_table(ta, d / "a.parquet")
    b["timestamp"] = b["timestamp"].dt.tz_convert(None)  # naive (taken as UTC)
    tb = pa.Table.from_pandas(b.drop(columns=["score"]), preserve_index=False)  # score absent
    pq.write_table(tb, d / "b.parquet")
    tc = pa.Table.from_pandas(c, preserve_index=False)
    tc = tc.set_column(tc.schema.get_field_index("predicted_value"), "predicted_value",
                       pa.nulls(len(c)))  # null-typed column
    pq.write_table(tc, d / "c.parquet")
    res = run_job(cfg_for(tmp_path, d))
    inv = res.manifest["row_counts"]["invalid"]
    assert inv["clf/scores/missing_score"] == len(b)
    assert inv["reg/regression/missing_prediction"] == len(c)
    m = res.finalized.metrics
    n = m[(m.slice == "overall") & (m.task == "clf") & (m.metric == "n_rows")]
    assert n.groupby("model").value.sum().sum() == len(df)  # every labelled row evaluated
    # the absent column is reported by name, file and rows (manifest and console summary)
    warns = res.manifest["warnings"]
    assert len(warns) == 2 and "'score'" in warns[0] and "1 of 3 files" in warns[0]
    assert f"{len(b):,} rows" in warns[0] and "b.parquet" in warns[0]
    # so is the naive timestamp among zoned ones (read as UTC)
    assert "'timestamp' has no time zone in 1 of 3 files" in warns[1] and "b.parquet" in warns[1]


def test_mixed_label_types_error(ray_local, tmp_path, frames):
    preds, labels = frames
    labels = labels.copy()
    labels["label"] = labels["label"].astype(str)  # "1" vs predictions 1
    write_parquet(preds, tmp_path / "p", 2)
    write_parquet(labels, tmp_path / "l", 1)
    data = job_dict(str(tmp_path / "p"), str(tmp_path / "l"), str(tmp_path / "out"))
    data["tasks"] = [{"name": "clf", "type": "multiclass", "label": "label",
                      "prediction": "predicted"}]
    with pytest.raises(InputError) as e:
        run_job(load_config(data=data))
    msg = str(e.value)
    assert "task 'clf'" in msg and "column 'label'" in msg and "column 'predicted'" in msg
    assert "string classes" in msg and "integer classes" in msg
    assert outputs(tmp_path / "out") == []


def test_string_labels_against_integer_positive_class_in_score_metrics(ray_local, tmp_path,
                                                                        frames):
    """A task with scores and no predicted label: "1" vs positive_class 1 is an error, not a
    silent all-negative (NaN ROC AUC)."""
    preds, labels = frames
    labels = labels.copy()
    labels["label"] = labels["label"].map(lambda v: None if pd.isna(v) else str(int(v)))
    write_parquet(preds, tmp_path / "p", 2)
    write_parquet(labels, tmp_path / "l", 1)
    data = job_dict(str(tmp_path / "p"), str(tmp_path / "l"), str(tmp_path / "out"))
    data["tasks"] = [{"name": "clf", "type": "binary", "label": "label", "score": "score",
                      "positive_class": 1}]
    with pytest.raises(InputError) as e:
        run_job(load_config(data=data))
    msg = str(e.value)
    assert "task 'clf'" in msg and "column 'score'" in msg and "`positive_class`=1" in msg
    assert outputs(tmp_path / "out") == []


def test_counted_exclusions(ray_local, tmp_path, frames):
    """Unknown class, NaN labels and predictions, out-of-range scores, duplicate ids."""
    df = same_table_frame(frames).dropna(subset=["label"]).reset_index(drop=True)
    df.loc[0:9, "predicted"] = 7  # not in classes [0, 1]
    df.loc[10:19, "score"] = 1.5
    df.loc[20:24, "score"] = np.nan
    df.loc[25:29, "predicted_value"] = np.inf
    dup = df.iloc[30:40].copy()
    dup["timestamp"] = dup["timestamp"] - pd.Timedelta(minutes=5)  # older duplicates
    df = pd.concat([df, dup], ignore_index=True)
    write_parquet(df, tmp_path / "p", 1)
    res = run_job(cfg_for(tmp_path, tmp_path / "p"))
    rc = res.manifest["row_counts"]
    assert rc["rows_duplicate_prediction"] == 10
    inv = rc["invalid"]
    assert inv["clf/labels/unknown_predicted_class"] == 10
    assert inv["clf/scores/score_out_of_range"] == 10
    assert inv["clf/scores/missing_score"] == 5
    assert inv["reg/regression/missing_prediction"] == 5
    t = pd.read_parquet(tmp_path / "out" / "invalid")
    assert set(t.reason) >= {"unknown_predicted_class", "score_out_of_range", "missing_score"}


def test_duplicate_ids_policy_error(ray_local, tmp_path, frames):
    df = same_table_frame(frames)
    df = pd.concat([df, df.iloc[:3]], ignore_index=True)
    write_parquet(df, tmp_path / "p", 1)
    cfg = cfg_for(tmp_path, tmp_path / "p", policy={"duplicate_predictions": "error"})
    expect_error(tmp_path, cfg, "3 duplicate prediction id", "'id'")


@pytest.mark.slow
def test_duplicate_ids_across_files(ray_local, tmp_path, frames):
    """Duplicates in different files (batches): an error under policy error; under
    keep_latest counted and reported in the manifest's warnings."""
    df = same_table_frame(frames)
    dup = df.iloc[:4].assign(timestamp=lambda d: d.timestamp + pd.Timedelta(minutes=5))
    (tmp_path / "p").mkdir()
    df.to_parquet(tmp_path / "p" / "a.parquet", index=False)
    dup.to_parquet(tmp_path / "p" / "b.parquet", index=False)
    ray_opts = {"batch_size": 4}  # the 4 rows of b.parquet never share a batch with a's first
    cfg = cfg_for(tmp_path, tmp_path / "p", policy={"duplicate_predictions": "error"},
                  ray=ray_opts)
    expect_error(tmp_path, cfg, "4 duplicate prediction id(s)", "4 across input batches",
                 "'id'")
    res = run_job(cfg_for(tmp_path, tmp_path / "p", ray=ray_opts))
    rc = res.manifest["row_counts"]
    assert rc["rows_duplicate_across_batches"] == 4 and rc["rows_evaluated"] == len(df) + 4
    assert any("rows_duplicate_across_batches" in w for w in res.manifest["warnings"])


def test_filter_matching_nothing_is_named(ray_local, tmp_path, frames):
    df = same_table_frame(frames)
    write_parquet(df, tmp_path / "p", 2)
    cfg = cfg_for(tmp_path, tmp_path / "p", filters={"segment": ["nowhere"]}, drift={
        "enabled": True, "reference": {"kind": "time_range", "start": "2024-01-01",
                                       "end": "2024-01-08"},
        "features": [{"name": "feature_x", "kind": "numeric"}]})
    expect_error(tmp_path, cfg, "dropped by `filters`", "matched no reference row")


def test_too_many_slices(ray_local, tmp_path, frames):
    write_parquet(same_table_frame(frames), tmp_path / "p", 1)
    data = job_dict(str(tmp_path / "p"), None, str(tmp_path / "out"))
    data["slices"] = {"columns": ["id"], "max_slices": 50}
    expect_error(tmp_path, load_config(data=data), "'id'", "max_slices=50")


@pytest.mark.parametrize("override,needle", [
    ("windows.size=fortnight", "windows.size"),
    ("slices.min_slice_size=0", "slices.min_slice_size"),
    ("tasks=[]", "tasks"),
    ("bogus_key=1", "bogus_key"),
    ("ray.actors=zero", "ray.actors"),
    ("tasks.0.classes=[0,2]", "not one of `classes`"),  # positive_class 1 left behind
    ("drift.features=[{name: x, kind: numeric, method: chi_square}]", "unknown drift method"),
    ("drift.features=[{name: x, kind: categorical, method: ks}]", "does not apply"),
    ("drift.features=[{name: x, kind: numeric, method: wasserstein}]", "set `threshold`"),
    ("drift.features=[{name: x, kind: numeric, edges: [1, 1, 2]}]", "strictly increasing"),
    ("drift.features=[{name: x, kind: categorical, edges: [1, 2]}]", "apply to numeric"),
    ("drift.js_base=1", "drift.js_base"),
    ("gates=[{name: g, metric: f1}]", "needs `min` and/or `max`"),
    ("gates=[{name: g, metric: f1, min: 0.9, max: 0.1}]", "never pass"),
    ("gates=[{name: g, metric: f1, min: .nan}]", "not NaN"),
    ("gates=[{name: g, metric: f1, min: 0.5}, {name: g, metric: f1, min: 0.6}]", "unique"),
    ("tasks.0.metrics=[roc_auc, roc_auc]", "twice"),
    ("name=../../evil", "name"), ("name=fraud/v2", "name"), ("run_id=.hidden", "run_id"),
    ("drift.learned_thresholds=true", "not previous_window"),  # job_dict's default reference
])
def test_invalid_config_values(tmp_path, override, needle):
    with pytest.raises(ConfigError) as e:
        load_config(data=job_dict("p", None, "o"), overrides=[override])
    assert needle in str(e.value)


def test_mlflow_server_down(ray_local, tmp_path, frames):
    """Results land in Parquet, the failure is reported, the CLI exits 3."""
    from rayeval.cli import EXIT_MLFLOW, execute
    from tests.conftest import free_port

    write_parquet(same_table_frame(frames), tmp_path / "p", 1)
    data = job_dict(str(tmp_path / "p"), None, str(tmp_path / "out"))
    data["outputs"]["mlflow"] = {"enabled": True,
                                 "tracking_uri": f"http://127.0.0.1:{free_port()}"}
    cfg = load_config(data=data)
    assert execute(cfg, quiet=True) == EXIT_MLFLOW
    assert len(pd.read_parquet(tmp_path / "out" / "metrics")) > 0


def test_empty_parquet_file(before_ray, tmp_path, frames):
    df = same_table_frame(frames).iloc[:0]
    write_parquet(df, tmp_path / "p", 1)
    expect_error(tmp_path, cfg_for(tmp_path, tmp_path / "p"), "No rows", "1 file")


def test_output_path_not_writable(before_ray, tmp_path, frames):
    write_parquet(same_table_frame(frames), tmp_path / "p", 1)
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    data = job_dict(str(tmp_path / "p"), None, str(blocker))
    with pytest.raises(InputError, match="not writable"):
        run_job(load_config(data=data))
    assert blocker.read_text() == "x"


def test_actor_pool_larger_than_cluster_does_not_hang(ray_local, tmp_path, frames):
    """2 actors x 1 CPU on a 2-CPU Ray would starve the read tasks (Ray #44687): the engine
    fits the pool to the cluster instead."""
    write_parquet(same_table_frame(frames), tmp_path / "p", 2)
    cfg = cfg_for(tmp_path, tmp_path / "p", ray={"actors": 2, "actor_num_cpus": 1.0})
    assert len(run_job(cfg).finalized.metrics) > 0


def test_impossible_date_and_unknown_gate_metric(tmp_path):
    from rayeval.engine.gates import check_gates

    with pytest.raises(ConfigError, match="windows.start"):
        load_config(data=job_dict("p", None, "o"), overrides=["windows.start=2001-02-30"])
    cfg = load_config(data=job_dict("p", None, "o"), overrides=[
        "gates=[{name: auc, task: clf, metric: roc_acu, min: 0.6}]"])
    with pytest.raises(ConfigError, match="roc_acu"):
        check_gates(cfg)


def test_label_file_problems(ray_local, tmp_path, frames):
    """Empty labels: error. Int vs string ids: error. Missing label ids: dropped and counted;
    missing label values: counted as missing_label per task."""
    preds, labels = frames
    write_parquet(preds, tmp_path / "p", 1)
    write_parquet(labels.iloc[:0], tmp_path / "empty", 1)
    expect_error(tmp_path, cfg_for(tmp_path, tmp_path / "p", tmp_path / "empty"), "no rows",
                 "empty")
    numeric = preds.assign(id=preds["id"].str[1:].astype(np.int64))
    write_parquet(numeric, tmp_path / "pi", 1)
    write_parquet(labels, tmp_path / "l", 1)
    expect_error(tmp_path, cfg_for(tmp_path, tmp_path / "pi", tmp_path / "l"),
                 "Prediction ids are int ids", "'id'")
    bad = labels.drop_duplicates("id").reset_index(drop=True)
    bad["id"] = bad["id"].astype(object)
    bad.loc[:4, "id"] = None
    bad["label"] = bad["label"].astype(float)
    bad.loc[10:16, "label"] = np.nan
    bad.loc[10:16, "target"] = np.nan
    write_parquet(bad, tmp_path / "lb", 1)
    res = run_job(cfg_for(tmp_path, tmp_path / "p", tmp_path / "lb"))
    rc = res.manifest["row_counts"]
    assert rc["labels_missing_id"] == 5 and rc["labels_duplicate"] == 0
    nan_ids = set(bad.loc[10:16, "id"])
    n_rows = int(preds["id"].isin(nan_ids).sum())  # both models' predictions of those ids
    assert rc["invalid"]["clf/labels/missing_label"] == n_rows
    assert rc["invalid"]["reg/regression/missing_target"] == n_rows


def test_label_timestamp_column_typo(before_ray, tmp_path, frames):
    preds, labels = frames
    write_parquet(preds, tmp_path / "p", 1)
    write_parquet(labels, tmp_path / "l", 1)
    cfg = cfg_for(tmp_path, tmp_path / "p", tmp_path / "l")
    data = job_dict(str(tmp_path / "p"), str(tmp_path / "l"), str(tmp_path / "out"))
    data["inputs"]["labels"]["timestamp_column"] = "label_tz"
    expect_error(tmp_path, load_config(data=data), "label_tz")
    assert cfg.inputs.labels.timestamp_column == "label_ts"


def test_drift_reference_reversed_or_empty(ray_local, tmp_path, frames):
    """A reversed reference range is a config error; a reference range without rows is an
    input error (drift would otherwise come out silently empty)."""
    write_parquet(same_table_frame(frames), tmp_path / "p", 1)

    def drift(start, end):
        return {"enabled": True, "features": [{"name": "segment", "kind": "categorical"}],
                "reference": {"kind": "time_range", "start": start, "end": end}}

    with pytest.raises(ConfigError, match="reference.start"):
        cfg_for(tmp_path, tmp_path / "p", drift=drift("2024-02-01", "2024-01-01"))
    expect_error(tmp_path, cfg_for(tmp_path, tmp_path / "p", drift=drift("2023-01-01",
                                                                        "2023-02-01")),
                 "reference", "no rows")


def test_missing_prediction_ids_are_kept_and_counted(ray_local, tmp_path, frames):
    """Rows without an id are no duplicates of each other: kept, counted as rows_missing_id
    (before: all rows of a model with a missing id collapsed into one)."""
    df = same_table_frame(frames)
    df.loc[df.index[:40], "id"] = None
    write_parquet(df, tmp_path / "p", 1)
    for policy in ("keep_latest", "error"):
        res = run_job(cfg_for(tmp_path, tmp_path / "p",
                              policy={"duplicate_predictions": policy}))
        c = res.finalized.counters
        assert c["rows_missing_id"] == 40 and c["rows_duplicate_prediction"] == 0
        assert c["rows_evaluated"] == len(df)


def test_console_summary_without_windows(ray_local, tmp_path, frames):
    """windows.size none: the overall table shows its rows (window "all data"), not headers
    only (the null window_start used to be dropped by the pivot)."""
    from rich.console import Console

    from rayeval.summary import print_summary

    write_parquet(same_table_frame(frames), tmp_path / "p", 1)
    cfg = cfg_for(tmp_path, tmp_path / "p", windows={"size": "none"})
    console = Console(record=True, width=200)
    print_summary(console, cfg, run_job(cfg))
    text = console.export_text()
    assert text.count("all data") >= 2, text  # one row per model of the clf table


def test_auto_actor_pool_is_one_per_cpu(ray_local):
    """``ray.actors: auto`` (the default) starts one reducer per CPU of the cluster, fitted to
    leave room for the read tasks; an explicit count (``--set ray.actors=3``) is taken as is."""
    import ray

    from rayeval.engine.ray_runner import ReducerPool

    cfg = load_config(data=job_dict("p", None, "o"))
    assert cfg.ray.actors == "auto"
    cpus = int(ray.cluster_resources()["CPU"])
    with ReducerPool(cfg.ray) as pool:
        assert len(pool.actors) == cpus
    three = load_config(data=job_dict("p", None, "o"), overrides=["ray.actors=3"])
    assert three.ray.actors == 3
    with ReducerPool(three.ray) as pool:
        assert len(pool.actors) == 3


def test_nanosecond_timestamps_are_truncated_not_rejected(ray_local, tmp_path, frames):
    """pandas writes ns timestamps; sub-microsecond digits in the predictions and in the label
    timestamps are truncated to the microsecond (the engine's unit), and the run equals the
    run on the same data rounded to microseconds."""
    preds, labels = frames
    jitter = pd.to_timedelta(np.arange(len(preds)) % 997 + 1, unit="ns")
    p_ns = preds.assign(timestamp=preds["timestamp"].astype("datetime64[ns, UTC]") + jitter)
    l_ns = labels.assign(label_ts=labels["label_ts"].astype("datetime64[ns, UTC]")
                         + pd.to_timedelta(7, unit="ns"))
    runs = []
    for name, (p, lab) in {"ns": (p_ns, l_ns), "us": (preds, labels)}.items():
        write_parquet(p, tmp_path / name / "p", 2)
        write_parquet(lab, tmp_path / name / "l", 1)
        data = job_dict(str(tmp_path / name / "p"), str(tmp_path / name / "l"),
                        str(tmp_path / name / "out"))
        res = run_job(load_config(data=data))
        runs.append(res.finalized.metrics.sort_values(
            ["task", "model", "window_start", "slice", "metric"]).reset_index(drop=True))
    assert len(runs[0]) > 0
    pd.testing.assert_frame_equal(runs[0].drop(columns="run_id"), runs[1].drop(columns="run_id"))


def test_negative_weights_with_drift_are_counted_not_fatal(ray_local, tmp_path, frames):
    """Negative or missing weights are invalid rows for every metric family and are left out
    of the drift histograms; the job does not stop."""
    df = same_table_frame(frames).copy()
    df["w"] = 1.0
    df.loc[df.index[:30], "w"] = -1.0
    df.loc[df.index[30:35], "w"] = np.nan
    write_parquet(df, tmp_path / "p", 2)
    data = job_dict(str(tmp_path / "p"), None, str(tmp_path / "out"))
    data["columns"]["weight"] = "w"
    data["drift"] = {"enabled": True, "features": [{"name": "band", "kind": "categorical"}],
                     "reference": {"kind": "time_range", "start": "2024-01-01",
                                   "end": "2024-01-08"}}
    res = run_job(load_config(data=data))
    inv = res.manifest["row_counts"]["invalid"]
    ok = df["target"].notna() & df["predicted_value"].notna()  # earlier reasons win
    assert inv["reg/regression/negative_weight"] == int((ok & (df["w"] < 0)).sum()) > 20
    assert inv["reg/regression/nonfinite_weight"] == int((ok & df["w"].isna()).sum()) > 0
    assert res.drift is not None and len(res.drift) > 0


def test_failure_that_is_no_gate_verdict_exits_4(ray_local, tmp_path, monkeypatch, capsys):
    """Exit 1 means a gate failed; any other failure (here: the engine raising a runtime error
    after Ray started) exits 4 with the error printed, and nothing is written."""
    import rayeval.engine.run as run_mod
    from rayeval.cli import EXIT_ERROR, execute

    def broken(cfg, progress=None, inputs=None):
        raise RuntimeError("worker died [node 1]")

    monkeypatch.setattr(run_mod, "run_job", broken)
    preds, labels = make_frames(200, seed=0)  # inputs that pass the checks before Ray
    write_parquet(preds.merge(labels.drop_duplicates("id"), on="id"), tmp_path / "p", 1)
    cfg = load_config(data=job_dict(str(tmp_path / "p"), None, str(tmp_path / "out")))
    assert execute(cfg, quiet=True) == EXIT_ERROR == 4
    err = capsys.readouterr().err
    assert "RuntimeError: worker died [node 1]" in err
    assert not (tmp_path / "out").exists()


def test_cli_bad_input_exits_2_before_ray_starts(before_ray, tmp_path, monkeypatch, capsys):
    """``rayeval run`` checks the config and inputs before it starts (or attaches to) Ray."""
    import rayeval.engine.session as session
    from rayeval.cli import EXIT_INPUT, execute

    def no_session(*args, **kwargs):
        raise AssertionError("Ray was started before the input check")

    monkeypatch.setattr(session, "ray_session", no_session)
    assert execute(cfg_for(tmp_path, tmp_path / "nope"), quiet=True) == EXIT_INPUT
    assert "does not exist" in capsys.readouterr().err
