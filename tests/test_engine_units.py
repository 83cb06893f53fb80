"""Engine pieces without Ray: the label index (deduplication, id normalisation, exact hashed
lookup), the duplicate-prediction check, the columnar output tables of ``finalize``, and
``SliceSpec``'s cached name."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from rayeval.config import load_config
from rayeval.engine import labels as labels_mod
from rayeval.engine import results
from rayeval.engine.labels import LabelIndex
from rayeval.engine.plan import EvalPlan, _codes
from rayeval.engine.results import METRIC_ORDER, _Coded, _Table, finalize
from rayeval.slicing import SliceSpec
from tests.synth import job_dict, make_frames

UTC = pa.timestamp("us", tz="UTC")


def joined(index: LabelIndex, ids) -> list:
    """Label values ``y`` joined to ``ids`` (``None`` where unlabelled)."""
    pos = index.lookup(ids)
    y = index.column("y")
    return [None if p < 0 else y[p].item() for p in pos.tolist()]


def test_labels_keep_latest_ties_last_read_and_missing_timestamps_oldest():
    table = pa.table({
        "id": ["a", "a", "a", "b", "b", "c", "c"],
        "ts": pa.array([1, 3, 3, None, 0, 5, None], type=pa.int64()).cast(UTC),
        "y": [10, 11, 12, 20, 21, 30, 31]})
    index = LabelIndex.build(table, "id", "ts")
    assert (index.n_read, index.n_duplicates, index.n_labels) == (7, 4, 3)
    # a: ts 3 twice -> the later row (12); b: NaT is oldest -> 21; c: 5 beats NaT -> 30
    assert joined(index, pa.array(["a", "b", "c", "d"])) == [12, 21, 30, None]


def test_labels_without_timestamp_keep_last_row_read():
    table = pa.table({"id": pa.array([7, 8, 7], pa.int32()), "y": [1, 2, 3]})
    index = LabelIndex.build(table, "id", None)
    assert index.n_duplicates == 1
    assert joined(index, pa.array([7, 8, 9])) == [3, 2, None]
    assert index.table["id"].type == pa.int64()


def test_label_ids_normalised_and_missing_ids_dropped_and_counted():
    table = pa.table({"id": pa.array([1, None, 2, None, 2], pa.int64()), "y": [1, 2, 3, 4, 5],
                      "ts": pa.array([0, 1, 4, 3, 2]).cast(UTC)})
    index = LabelIndex.build(table, "id", "ts")
    assert (index.n_labels, index.n_missing_id, index.n_duplicates) == (2, 2, 1)
    assert index.table["id"].null_count == 0
    assert joined(index, pa.array([2, None, 1], pa.int16())) == [3, None, 1]
    assert joined(index, np.array([2.0, np.nan, 5.0])) == [3, None, None]  # integral floats, NaN
    with pytest.raises(TypeError, match="label ids .* are int ids: no id can match"):
        index.lookup(pa.array(["1", "2"]))  # a string never equals an int: an error
    strings = LabelIndex.build(pa.table({"id": ["1", "x"], "y": [5, 6]}), "id", None)
    with pytest.raises(TypeError, match="Prediction ids are int ids"):
        strings.lookup(pa.array([1, 2]))
    assert joined(strings, pa.array(["x", "1"]).dictionary_encode()) == [6, 5]
    assert joined(strings, pa.array([None], pa.null())) == [None]  # an all-null batch
    with pytest.raises(pa.ArrowInvalid):
        index.lookup(np.array([1.5]))


def test_label_lookup_survives_pickling_and_hash_collisions(monkeypatch):
    ids = [f"p{i}" for i in range(50)]
    table = pa.table({"id": ids + ids[:10], "y": list(range(60))})
    index = pickle.loads(pickle.dumps(LabelIndex.build(table, "id", None)))
    probe = pa.array(ids[::-1] + ["zz", None])
    expected = [i + 50 if i < 10 else i for i in range(50)][::-1] + [None, None]
    assert joined(index, probe) == expected
    # every string hashes alike: deduplication and lookup fall back to exact comparisons
    monkeypatch.setattr(labels_mod.pd.util, "hash_array",
                        lambda values, categorize=False: np.zeros(len(values), np.uint64))
    colliding = LabelIndex.build(table, "id", None)
    assert colliding.n_labels == 50
    assert joined(colliding, probe) == expected
    assert joined(pickle.loads(pickle.dumps(colliding)), probe) == expected


def test_string_hash_matches_are_confirmed(monkeypatch):
    index = LabelIndex.build(pa.table({"id": ["a", "b"], "y": [1, 2]}), "id", None)
    # a probe whose hash equals a label's but whose string differs is unlabelled
    real = labels_mod._keys
    monkeypatch.setattr(labels_mod, "_keys", lambda ids, kind: real(
        pa.array(["a"] * len(ids), pa.large_string()), kind))
    assert joined(index, pa.array(["q", "a"])) == [None, 1]


def test_dedupe_returns_the_kept_rows_ids():
    cfg = load_config(data=job_dict("p", "l", "o"))
    plan = EvalPlan(cfg)
    table = pa.table({"id": ["a", "b", "a", None, None], "model": ["m"] * 5,
                      "timestamp": pa.array([1, 2, 3, 4, 5]).cast(UTC)})
    counters: dict = {}
    kept, ts, (codes, values) = plan._dedupe(table, np.array([1, 2, 3, 4, 5]), counters)
    # rows without an id are kept (each its own row) and counted, never deduplicated
    assert counters["rows_duplicate_prediction"] == 1 and counters["rows_missing_id"] == 2
    assert kept["id"].to_pylist() == ["b", "a", None, None] and ts.tolist() == [2, 3, 4, 5]
    assert values.take(pa.array(codes)).to_pylist() == kept["id"].to_pylist()
    codes, values = _codes(pa.chunked_array([["x", None, "x"]]))
    assert codes.tolist() == [0, 1, 0] and values.to_pylist() == ["x", None]


def test_table_order_by_equals_sort_values():
    rng = np.random.default_rng(3)
    n = 500
    models = ["m2", "m1", None]
    cols = ["task", "model", "window_start", "metric", "class_label", "value"]
    ordered, plain = _Table(cols), _Table(cols)
    for start in range(0, n, 100):
        k = 100
        chunk = dict(
            task="t" + str(start % 3),
            model=_Coded(models, rng.integers(0, 3, k)),
            window_start=np.where(rng.random(k) < 0.1, np.iinfo(np.int64).min,
                                  rng.integers(0, 4, k) * 10**9),
            metric=[str(v) for v in rng.choice(["f1", "auc", "brier"], k)],
            class_label=[None if v == "-" else v for v in rng.choice(["-", "0", "1"], k)],
            value=rng.random(k))
        ordered.add(k, **chunk)
        plain.add(k, **chunk)
    got = ordered.frame(order_by=["task", "model", "window_start", "metric", "class_label"])
    want = plain.frame().sort_values(["task", "model", "window_start", "metric", "class_label"],
                                     na_position="first", kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert str(got["window_start"].dtype) == "datetime64[ns, UTC]"
    assert got["model"].dtype == "str" and got["class_label"].isna().any()


def test_table_dtypes_are_those_of_records():
    table = _Table(["model", "class_label", "window_start", "n"])
    table.add(2, model=_Coded([1, 2], np.array([1, 0])), class_label=[None, None],
              window_start=np.full(2, np.iinfo(np.int64).min), n=np.array([3, 4]))
    records = pd.DataFrame.from_records([(2, None, pd.NaT, 3), (1, None, pd.NaT, 4)],
                                        columns=["model", "class_label", "window_start", "n"])
    pd.testing.assert_frame_equal(table.frame(), records, check_exact=True)
    empty = _Table(["a", "b"]).frame()
    pd.testing.assert_frame_equal(empty, pd.DataFrame.from_records([], columns=["a", "b"]))


def test_finalize_columnar_tables():
    preds, labels = make_frames(3000, seed=4)
    cfg = load_config(data=job_dict("p", "l", "o", slices={
        "columns": ["segment"], "crosses": [["segment", "band"]], "min_slice_size": 60}))
    index = LabelIndex.build(pa.Table.from_pandas(labels, preserve_index=False), "id", "label_ts")
    plan = EvalPlan(cfg, index)
    partial = plan.accumulate(plan.zero(), pa.Table.from_pandas(preds, preserve_index=False))
    fin = finalize(plan, partial, "run-1")
    m = fin.metrics
    resorted = m.sort_values(METRIC_ORDER, na_position="first", kind="stable")
    pd.testing.assert_frame_equal(m, resorted.reset_index(drop=True))
    assert list(m.columns) == results.METRIC_COLUMNS
    assert str(m["window_start"].dtype) == "datetime64[ns, UTC]"
    assert m["n_rows"].dtype == np.int64 and m["value"].dtype == np.float64
    assert (m.groupby(["task", "model", "window_start", "slice"])["n_labeled"].nunique() == 1).all()
    assert "n_rows_scored" in set(m.metric[m.task == "clf"])
    cov = fin.coverage
    small = cov[cov.slice_columns.notna() & (cov.n_labeled < 60)]
    assert fin.suppressed_slices == len(small) > 0
    shown = set(zip(m.model, m.window_start, m.slice))
    assert not shown & set(zip(small.model, small.window_start, small.slice))
    assert set(fin.confusion["slice"]) <= set(m["slice"])
    np.testing.assert_array_equal(cov.label_coverage, cov.n_labeled / cov.n_rows)
    assert fin.labels_without_prediction == 0


def test_slice_spec_name_is_cached_and_transparent():
    spec = SliceSpec(("origin", "hour_band"))
    assert spec.name == "origin x hour_band" and spec.name is spec.name
    assert SliceSpec().name == "overall"
    copy = pickle.loads(pickle.dumps(spec))
    assert copy == spec and hash(copy) == hash(spec) and copy.name == spec.name
    assert spec.render(("ORD", None)) == "origin=ORD,hour_band=null"




def test_unique_int_ids_fast_path():
    """Distinct integer ids skip the hash table; repeats, nulls and strings do not."""
    from rayeval.engine.plan import _unique_int_ids

    got = _unique_int_ids(pa.chunked_array([[5, 3], [9]], pa.int32()))
    assert got.to_pylist() == [5, 3, 9] and got.type == pa.int32()
    assert _unique_int_ids(pa.chunked_array([[5, 3], [5]])) is None
    assert _unique_int_ids(pa.chunked_array([[5, None]])) is None
    assert _unique_int_ids(pa.chunked_array([["a", "b"]])) is None
    assert len(_unique_int_ids(pa.chunked_array([[]], pa.int64()))) == 0


def test_balance_and_nbytes():
    """The final merge's groups: every state once, counters first, sizes near-equal."""
    from rayeval.engine.ray_runner import balance, nbytes
    from rayeval.metrics.base import KeyedArrays

    sizes = {"_counters": 1, "a": 50, "b": 30, "c": 25, "d": 5}
    groups = balance(sizes, 2)
    assert groups[0][:3] == ["_counters", "_matched", "_ids"]
    assert sorted(n for g in groups for n in g) == sorted(list(sizes) + ["_matched", "_ids"])
    loads = [sum(sizes.get(n, 0) for n in g) for g in groups]
    assert max(loads) - min(loads) <= 5
    assert balance({"_counters": 1}, 4) == [["_counters", "_matched", "_ids"]]
    state = KeyedArrays((("x",),), {"counts": np.zeros((1, 4))})
    assert nbytes({"s": state, "t": (np.zeros(3), "x")}) == (32 + 64) + (24 + 64)


def test_run_id_ignores_execution_and_output_options():
    """A rerun with other Ray tuning or output options replaces the same run; another
    evaluation gets another id."""
    base = load_config(data=job_dict("p", "l", "o"))
    tuned = load_config(data=job_dict("p", "l", "elsewhere", ray={"actors": 3, "batch_size": 10}),
                        overrides=["outputs.report=true"])
    assert tuned.resolved_run_id() == base.resolved_run_id()
    assert tuned.config_hash() != base.config_hash()  # the manifest still records everything
    other = load_config(data=job_dict("p", "l", "o", slices={"columns": ["band"]}))
    assert other.resolved_run_id() != base.resolved_run_id()


def test_overrides_index_lists():
    """``--set tasks.1.label=y`` sets one list item (README: override any key); a bad index
    or an index into a mapping is a ConfigError naming the override."""
    from rayeval.config import ConfigError

    cfg = load_config(data=job_dict("p", None, "o"),
                      overrides=["tasks.1.label=y_true", "slices.crosses.0.1=band",
                                 "tasks.-1.prediction=yhat"])
    assert [t.label for t in cfg.tasks] == ["label", "y_true"]
    assert cfg.tasks[1].prediction == "yhat"
    assert cfg.slices.crosses == [["segment", "band"]]
    for bad, needle in (("tasks.2.label=x", "index in [0, 2)"),
                        ("tasks.name.label=x", "'name'"), ("windows.0=day", "windows.0"),
                        ("name.x=1", "name: Input should be a valid string")):
        with pytest.raises(ConfigError, match="Override|invalid") as e:
            load_config(data=job_dict("p", None, "o"), overrides=[bad])
        assert needle in str(e.value), str(e.value)


def test_console_worst_slices_per_window_over_every_slice_column():
    from rich.console import Console

    from rayeval.summary import _worst

    cfg = load_config(None, data=job_dict("/unused", None, "/unused-out", slices={
        "overall": True, "columns": ["region", "device"], "crosses": [["region", "device"]],
        "min_slice_size": 10}))
    task = next(t for t in cfg.tasks if t.type == "binary")
    w1, w2 = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-01-08", tz="UTC")
    rows = [  # (window, slice, slice_columns, value, n_labeled)
        (w1, "overall", "", 0.60, 500), (w1, "region=a", "region", 0.70, 50),
        (w1, "device=x", "device", 0.55, 40), (w1, "region=a,device=x", "region,device", 0.51, 20),
        (w2, "region=a", "region", 0.65, 50), (w2, "region=a,device=y", "region,device", 0.58, 32),
        (w2, "device=x", "device", float("nan"), 40)]
    m = pd.DataFrame([{"task": task.name, "model": "m1", "window_start": w, "slice": s,
                       "slice_columns": c, "metric": "roc_auc", "class_label": None,
                       "average": None, "value": v, "n_labeled": n} for w, s, c, v, n in rows])
    console = Console(record=True, width=250)
    _worst(console, cfg, m, task, n=2)
    lines = [ln for ln in console.export_text().splitlines() if "m1" in ln]
    assert len(lines) == 2  # one row per (window, model)
    # window 1: the device slice (not only the first slice column) ranks first; the cross
    # with 20 labelled rows is below the table's floor of 30 and the overall slice is not a slice
    assert lines[0].index("device=x: 0.5500") < lines[0].index("region=a: 0.7000")
    assert "0.5100" not in lines[0] and "0.6000" not in lines[0]
    # window 2: the cross first, the NaN value left out
    assert lines[1].index("region=a,device=y: 0.5800") < lines[1].index("region=a: 0.6500")
    assert "nan" not in lines[1]


def test_task_metrics_list_selects_rows_and_skips_families():
    from rayeval.config import ConfigError
    from rayeval.engine.gates import check_gates

    preds, labels = make_frames(2000, seed=5)
    data = job_dict("p", "l", "o")
    full = EvalPlan(load_config(data=data), LabelIndex.build(
        pa.Table.from_pandas(labels, preserve_index=False), "id", "label_ts"))
    data["tasks"][0]["metrics"] = ["roc_auc", "f1"]
    data["tasks"][1]["metrics"] = ["p90_absolute_error"]
    cfg = load_config(data=data)
    check_gates(cfg)
    plan = EvalPlan(cfg, full.labels)
    table = pa.Table.from_pandas(preds, preserve_index=False)
    m_full = finalize(full, full.accumulate(full.zero(), table), "r").metrics
    m = finalize(plan, plan.accumulate(plan.zero(), table), "r").metrics
    assert set(m.metric[m.task == "clf"]) == {"roc_auc", "f1"}
    assert set(m.metric[m.task == "reg"]) == {"p90_absolute_error"}
    # the kept rows equal those of the full run, row for row
    expected = m_full[(m_full.task == "clf") & m_full.metric.isin(["roc_auc", "f1"])
                      | (m_full.task == "reg") & (m_full.metric == "p90_absolute_error")]
    pd.testing.assert_frame_equal(m, expected.reset_index(drop=True))
    # only the families a list needs are computed
    data["tasks"][0]["metrics"] = ["accuracy"]
    assert set(EvalPlan(load_config(data=data), full.labels).specs) == {
        n for n in full.specs if "|labels|" in n or n.startswith("reg|")}
    # unknown names, and gates on a metric the list leaves out, are config errors
    data["tasks"][0]["metrics"] = ["roc_auc", "auroc"]
    with pytest.raises(ConfigError, match=r"tasks.0.metrics \(clf\): unknown metric\(s\) \['auroc'\]"):
        check_gates(load_config(data=data))
    data["tasks"][0]["metrics"] = ["roc_auc"]
    data["gates"] = [{"name": "f1-floor", "task": "clf", "metric": "f1", "min": 0.5}]
    with pytest.raises(ConfigError, match="left out by the task's `metrics` list"):
        check_gates(load_config(data=data))


def test_labels_without_prediction_counts_only_ids_no_prediction_row_has():
    """Predictions read but not evaluated (outside the windows, another model) still match
    their labels; only label ids that no prediction row carries are counted."""
    preds, labels = make_frames(2000, seed=6)
    extra = labels.iloc[:7].assign(id=[f"orphan{i}" for i in range(7)])
    labels = pd.concat([labels, extra], ignore_index=True)
    index = LabelIndex.build(pa.Table.from_pandas(labels, preserve_index=False), "id", "label_ts")
    table = pa.Table.from_pandas(preds, preserve_index=False)
    for windows, models in [({"size": "week"}, None),
                            ({"size": "week", "start": "2024-01-08", "end": "2024-01-15"}, None),
                            ({"size": "day", "start": "2024-01-03", "end": "2024-01-04"},
                             ["champion"])]:
        data = job_dict("p", "l", "o", windows=windows)
        if models:
            data["models"] = models
        plan = EvalPlan(load_config(data=data), index)
        fin = finalize(plan, plan.accumulate(plan.zero(), table), "r")
        assert fin.counters["rows_evaluated"] < len(preds) or models is None and len(
            windows) == 1
        assert fin.labels_without_prediction == 7, windows


def test_mlflow_steps_are_one_window_index_for_metrics_and_drift():
    from rayeval.engine.run import drift_history
    from rayeval.io.mlflow_writer import overall_metric_history, window_steps

    w = [pd.Timestamp(f"2024-01-{d:02d}", tz="UTC") for d in (1, 8, 15)]
    metrics = pd.DataFrame({
        "task": "clf", "model": "m", "slice": "overall", "metric": "roc_auc",
        "class_label": None, "average": None, "window_start": w,
        "window_end": [x + pd.Timedelta(days=7) for x in w],
        "value": [float("nan"), 0.8, 0.7]})  # window 1 has no finite value
    drift = pd.DataFrame({  # previous-window reference: no drift row for window 1
        "slice": "overall", "model": "m", "kind": "feature", "feature": "x", "method": "psi",
        "window_start": w[1:], "window_end": [x + pd.Timedelta(days=7) for x in w[1:]],
        "statistic": [0.02, float("inf")]})
    steps = window_steps(metrics, drift)
    assert steps == {w[0]: 0, w[1]: 1, w[2]: 2}
    m = overall_metric_history(metrics, steps)
    d = drift_history(drift, steps)
    assert [(v, s) for _, v, _, s in m] == [(0.8, 1), (0.7, 2)]
    assert [(v, s) for _, v, _, s in d] == [(0.02, 1)]  # same step for the same window; no inf


def test_commit_replaces_in_place_manifest_last_and_drops_stale_run_dates(tmp_path, monkeypatch):
    import datetime as dt
    import json
    import os

    from rayeval.io import writers
    from rayeval.io.schemas import columns
    from rayeval.io.writers import RunWriter

    def table(name: str) -> pd.DataFrame:
        return pd.DataFrame({c: [None, None] for c in columns(name) if c != "run_started_at"})

    metrics, gates = table("metrics"), table("gates")

    def run(day: int, value: int, crash_at: int | None = None):
        calls = []
        real = os.replace

        def replace(a, b):
            calls.append(b)
            if crash_at is not None and len(calls) == crash_at:
                raise OSError("disk gone")
            return real(a, b)

        monkeypatch.setattr(writers.os, "replace", replace)
        with RunWriter(str(tmp_path), "r1", run_date=dt.date(2024, 1, day)) as w:
            w.write_json("manifests/r1.json", {"v": value})  # staged first, committed last
            w.write_table("metrics", metrics.assign(value=value))
            w.write_table("gates", gates.assign(value=value))
            out = w.commit()
        monkeypatch.setattr(writers.os, "replace", real)
        return calls, out

    calls, out = run(1, 1)
    assert calls[-1].endswith("manifests/r1.json") and len(out) == 3
    with pytest.raises(OSError):  # crash after the first table: old manifest and tables stay
        run(1, 2, crash_at=2)
    assert json.loads((tmp_path / "manifests" / "r1.json").read_text()) == {"v": 1}
    assert len(list(tmp_path.rglob("*.parquet"))) == 2
    assert not (tmp_path / "_staging").exists()
    run(2, 3)  # a rerun on another day replaces: no file of run r1 left under 2024-01-01
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["gates/run_date=2024-01-02/r1.parquet", "manifests/r1.json",
                     "metrics/run_date=2024-01-02/r1.parquet"]
    assert pd.read_parquet(tmp_path / "metrics").value.tolist() == [3.0, 3.0]


def test_environment_overrides_and_redaction(monkeypatch):
    from rayeval.config import ConfigError

    monkeypatch.setenv("RAYEVAL__OUTPUTS__MLFLOW__TRACKING_URI", "http://u:pw@mlflow:5000")
    monkeypatch.setenv("RAYEVAL__INPUTS__STORAGE__SECRET_ACCESS_KEY", "12345")  # stays a string
    monkeypatch.setenv("RAYEVAL__INPUTS__STORAGE__ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("RAYEVAL__RAY__ACTORS", "3")
    monkeypatch.setenv("RAYEVAL__SLICES__COLUMNS", "[band]")
    base = job_dict("p", None, "o")
    cfg = load_config(data=base, overrides=["ray.actors=2"])  # --set wins over the environment
    assert cfg.outputs.mlflow.tracking_uri == "http://u:pw@mlflow:5000"
    assert cfg.inputs.storage.secret_access_key.get_secret_value() == "12345"
    assert "12345" not in repr(cfg) and "12345" not in str(cfg.model_dump())
    assert cfg.inputs.storage.endpoint_url == "http://minio:9000"
    assert cfg.ray.actors == 2 and cfg.slices.columns == ["band"]
    red = cfg.redacted()
    assert red["outputs"]["mlflow"]["tracking_uri"] == "http://***@mlflow:5000"
    assert red["inputs"]["storage"]["secret_access_key"] == "***"
    assert "pw" not in str(red) and "12345" not in str(red)
    # where the data is read from, or with which keys, does not change the run id
    monkeypatch.setenv("RAYEVAL__INPUTS__STORAGE__ENDPOINT_URL", "http://other:9000")
    assert load_config(data=base).resolved_run_id() == cfg.resolved_run_id()
    monkeypatch.setenv("RAYEVAL__SLICES__MAX_SLICES", "many")
    with pytest.raises(ConfigError, match="slices.max_slices.*set by RAYEVAL__SLICES__MAX_SLICES"):
        load_config(data=base)
    monkeypatch.setenv("RAYEVAL__SLICES__MAX_SLICES", "10")
    monkeypatch.setenv("RAYEVAL__RAY__ACTORS", "zero")  # a Union field: error loc is deeper
    with pytest.raises(ConfigError, match="set by RAYEVAL__RAY__ACTORS"):
        load_config(data=base)
    monkeypatch.setenv("RAYEVAL__RAY__ACTORS", "2")
    # a secret starting with "{" or "[" is a string, and a bad YAML value is never echoed
    monkeypatch.setenv("RAYEVAL__INPUTS__STORAGE__SECRET_ACCESS_KEY", "{PWleak4")
    assert load_config(data=base).inputs.storage.secret_access_key.get_secret_value() == "{PWleak4"
    monkeypatch.setenv("RAYEVAL__SLICES__COLUMNS", "[oops")
    with pytest.raises(ConfigError) as e:
        load_config(data=base)
    assert "oops" not in str(e.value) and "RAYEVAL__SLICES__COLUMNS" in str(e.value)
    monkeypatch.setenv("RAYEVAL__SLICES__COLUMNS", "[band]")
    monkeypatch.setenv("RAYEVAL__BOGUS", "1")
    with pytest.raises(ConfigError, match="bogus"):
        load_config(data=base)


def test_multiclass_task_with_score_columns_matches_sklearn():
    """A multiclass task with one score column per class, labels joined from a separate
    dataset: per-class and averaged ROC AUC / PR AUC of the overall slice per model and
    window equal scikit-learn on the joined rows."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    preds, labels = make_frames(3000, seed=8)
    rng = np.random.default_rng(8)
    sc = rng.dirichlet(np.ones(3), len(preds))
    preds = preds.assign(s_a=sc[:, 0], s_b=sc[:, 1], s_c=sc[:, 2],
                         pred3=np.array(["a", "b", "c"])[sc.argmax(1)])
    labels = labels.assign(y3=np.array(["a", "b", "c"])[
        (labels["target"].rank(pct=True).to_numpy() * 2.999).astype(int)])
    data = job_dict("p", "l", "o", windows={"size": "none"})
    data["tasks"] = [{"name": "mc", "type": "multiclass", "label": "y3", "prediction": "pred3",
                      "scores": ["s_a", "s_b", "s_c"], "classes": ["a", "b", "c"]}]
    plan = EvalPlan(load_config(data=data), LabelIndex.build(
        pa.Table.from_pandas(labels, preserve_index=False), "id", "label_ts"))
    m = finalize(plan, plan.accumulate(plan.zero(), pa.Table.from_pandas(
        preds, preserve_index=False)), "r").metrics
    latest = labels.sort_values("label_ts").drop_duplicates("id", keep="last")
    joined = preds.merge(latest[["id", "y3"]], on="id")
    for model, part in joined.groupby("model"):
        got = m[(m.model == model) & (m.slice == "overall")]
        y, s = part["y3"].to_numpy(), part[["s_a", "s_b", "s_c"]].to_numpy()
        for j, c in enumerate("abc"):
            row = got[(got.metric == "roc_auc") & (got.class_label == c)]
            assert abs(row.value.item() - roc_auc_score(y == c, s[:, j])) < 1e-12
            row = got[(got.metric == "pr_auc") & (got.class_label == c)]
            assert abs(row.value.item() - average_precision_score(y == c, s[:, j])) < 1e-12
        row = got[(got.metric == "roc_auc") & (got.average == "macro")]
        assert abs(row.value.item() - roc_auc_score(y, s, multi_class="ovr")) < 1e-12
        assert set(got.metric) >= {"accuracy", "f1", "ece", "log_loss", "top_2_accuracy"}


def test_duplicate_ids_across_batches_counted_once_in_any_split():
    """Duplicates inside a batch are dropped (keep_latest); an id met again in another batch
    is counted as rows_duplicate_across_batches, the same for any batch split and merge
    order, and an error under policy error."""
    from rayeval.engine.plan import merge_ids

    preds, labels = make_frames(2000, seed=9)
    dup = preds.iloc[[3, 3, 10, 1500]].assign(  # id p000003 of champion three times in all
        timestamp=lambda d: d.timestamp + pd.Timedelta(minutes=1))
    table = pa.Table.from_pandas(pd.concat([preds, dup], ignore_index=True),
                                 preserve_index=False)
    index = LabelIndex.build(pa.Table.from_pandas(labels, preserve_index=False), "id", "label_ts")
    plan = EvalPlan(load_config(data=job_dict("p", "l", "o")), index)
    rng = np.random.default_rng(0)
    for split in ([], [2000], [1000, 2002], sorted(rng.choice(2004, 9, replace=False))):
        parts = [plan.batch_partial(t) for t in _slices(table, split)]
        rng.shuffle(parts)
        merged = plan.zero()
        for p in parts:
            merged = plan.merge(merged, p)
        c = plan.compact(merged)["_counters"]
        # 4 extra rows: within a batch they are dropped, across batches counted
        assert c["rows_duplicate_prediction"] + c["rows_duplicate_across_batches"] == 4, split
        assert c["rows_evaluated"] - c["rows_duplicate_across_batches"] == len(preds)
    counters = {}
    runs = [np.array([1, 2, 3], np.uint64), np.array([2, 3], np.uint64),
            np.array([3, 9], np.uint64)]
    assert merge_ids(runs, counters, limit=1)[0].tolist() == [1, 2, 3, 9]
    assert counters["rows_duplicate_across_batches"] == 3


def _slices(table, cuts):
    edges = [0, *cuts, table.num_rows]
    return [table.slice(a, b - a) for a, b in zip(edges[:-1], edges[1:])]


def test_task_zero_division_and_calibration_bins_reach_the_specs():
    from rayeval.config import ConfigError
    from rayeval.engine.plan import make_specs

    data = job_dict("p", None, "o")
    data["tasks"][0] |= {"zero_division": 1, "calibration_bins": 20}
    specs = make_specs(load_config(data=data).tasks[0])
    assert specs["labels"].zero_division == 1.0 and specs["scores"].n_calibration_bins == 20
    assert np.isnan(make_specs(load_config(data=job_dict("p", None, "o")).tasks[0])[
        "labels"].zero_division)  # default nan: never a silent 0
    data["tasks"][0]["zero_division"] = 0.5
    with pytest.raises(ConfigError, match="zero_division"):
        load_config(data=data)


def test_multiclass_score_columns_are_monitored_for_prediction_drift():
    from rayeval.engine.drift_plan import monitored_columns

    data = job_dict("p", "l", "o")
    data["tasks"].append({"name": "mc", "type": "multiclass", "label": "y3",
                          "prediction": "pred3", "scores": ["s_a", "s_b", "s_c"],
                          "classes": ["a", "b", "c"]})
    cols = {(m.column, m.kind, m.dtype) for m in monitored_columns(load_config(data=data))}
    assert {("s_a", "prediction", "numeric"), ("s_c", "prediction", "numeric"),
            ("pred3", "prediction", "categorical"), ("score", "prediction", "numeric"),
            ("y3", "label", "categorical")} <= cols


def test_mlflow_rerun_replaces_its_run_and_interrupt_marks_it_killed(tmp_path):
    from mlflow.tracking import MlflowClient

    from rayeval.io.mlflow_writer import log_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tags = {"rayeval.run_id": "job-abc"}
    first = log_run(uri, "exp", "job-abc", {"a": "1"}, tags, [("m", 0.5, 0, 0)], [],
                    artifact_location=(tmp_path / "art").as_uri())
    other = log_run(uri, "exp", "job-xyz", {}, {"rayeval.run_id": "job-xyz"}, [], [])
    second = log_run(uri, "exp", "job-abc", {"a": "1"}, tags, [("m", 0.6, 0, 0)], [])
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("exp").experiment_id
    active = {r.info.run_id for r in client.search_runs([exp])}
    assert active == {second, other}  # the rerun replaced job-abc's run, not job-xyz's
    assert client.get_run(first).info.lifecycle_stage == "deleted"

    def interrupted():
        yield from ()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        log_run(uri, "exp", "job-abc", {}, tags, [], interrupted())
    runs = client.search_runs([exp], "tags.`rayeval.run_id` = 'job-abc'")
    assert sorted(r.info.status for r in runs) == ["FINISHED", "KILLED"]  # old one kept


def test_empty_windows_are_warned_per_model():
    from rayeval.engine.run import empty_window_warnings

    data = job_dict("p", None, "o", windows={"size": "week", "start": "2024-01-01",
                                             "end": "2024-02-05"})
    cfg = load_config(data=data)
    weeks = pd.to_datetime(["2024-01-01", "2024-01-08", "2024-01-29"], utc=True)
    cov = pd.DataFrame({"model": ["a"] * 3 + ["b"] * 5, "window_start": list(weeks) + list(
        pd.date_range("2024-01-01", periods=5, freq="7D", tz="UTC"))})
    w = empty_window_warnings(cfg, cov)
    assert len(w) == 1 and w[0].startswith("model a: no prediction rows in 2 of 5 week")
    assert "2024-01-15, 2024-01-22" in w[0]
    assert empty_window_warnings(load_config(data=job_dict("p", None, "o")), cov) == []


def test_tracking_uri_credentials_go_in_a_header_never_in_text():
    import http.server
    import threading

    from rayeval.config import redact_uri
    from rayeval.io.mlflow_writer import check_reachable, split_credentials

    seen = []

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        port = srv.server_address[1]
        check_reachable(f"http://alice:p%40ss:w@127.0.0.1:{port}/")  # was: "unreachable"
    finally:
        srv.shutdown()
    import base64
    assert seen == [("/health", "Basic " + base64.b64encode(b"alice:p@ss:w").decode())]
    assert split_credentials("https://u:pw@h:1/x") == ("https://h:1/x", "u", "pw")
    assert split_credentials("sqlite:///a@b.db") == ("sqlite:///a@b.db", None, None)
    msg = "API request to http://alice:Hunter2@127.0.0.1:5918/api/2.0 failed"
    assert redact_uri(msg) == "API request to http://***@127.0.0.1:5918/api/2.0 failed"


def test_unparseable_timestamps_counted_apart_from_missing():
    preds, labels = make_frames(400, seed=10)
    ts = preds.timestamp.dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype(object)
    ts.iloc[:3] = "not a date"
    ts.iloc[3:5] = None
    table = pa.Table.from_pandas(preds.assign(timestamp=ts), preserve_index=False)
    plan = EvalPlan(load_config(data=job_dict("p", "l", "o")), LabelIndex.build(
        pa.Table.from_pandas(labels, preserve_index=False), "id", "label_ts"))
    c = plan.batch_partial(table)["_counters"]
    assert c["rows_unparseable_timestamp"] == 3 and c["rows_missing_timestamp"] == 2
    assert c["rows_evaluated"] == len(preds) - 5
