"""The Ray engine end to end on a real local Ray: results equal the single-process core for any
number of workers and block size, label policies are counted, outputs are atomic and rerunnable."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.metrics import f1_score, mean_absolute_error, roc_auc_score

from rayeval.config import load_config
from rayeval.engine.labels import LabelIndex
from rayeval.engine.plan import EvalPlan
from rayeval.engine.results import finalize
from rayeval.engine.run import run_job
from tests.synth import job_dict, make_frames, write_parquet


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    d = tmp_path_factory.mktemp("synthetic")
    preds, labels = make_frames(6000, seed=1)
    write_parquet(preds, d / "preds", 5)
    write_parquet(labels, d / "labels", 2)
    return {"dir": d, "preds": preds, "labels": labels}


def single_process(cfg, preds: pd.DataFrame, labels: pd.DataFrame, full: bool = False):
    """The core without Ray: one plan, one accumulate over all rows, finalize (the metrics
    table; ``full``: the whole ``Finalized``)."""
    from rayeval.engine.pairing import build_pair_indexes
    from rayeval.engine.plan import _timestamps
    from rayeval.slicing import window_starts

    index = LabelIndex.build(pa.Table.from_pandas(labels, preserve_index=False), "id", "label_ts")
    table = pa.Table.from_pandas(preds, preserve_index=False)
    pairs = build_pair_indexes(cfg, table, lambda t: window_starts(
        _timestamps(t, cfg.columns.timestamp), cfg.windows.size))
    plan = EvalPlan(cfg, index, None, pairs)
    partial = plan.accumulate(plan.zero(), table)
    fin = finalize(plan, partial, cfg.resolved_run_id())
    return fin if full else fin.metrics


def assert_same_metrics(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal to 1e-9, every metric (the quantile histograms are deterministic too)."""
    key = ["task", "model", "window_start", "slice", "metric", "class_label", "average"]
    a = a.sort_values(key, na_position="first").reset_index(drop=True)
    b = b.sort_values(key, na_position="first").reset_index(drop=True)
    assert len(a) == len(b) > 0
    pd.testing.assert_frame_equal(a[key], b[key], check_dtype=False)
    np.testing.assert_allclose(a["value"].to_numpy(float), b["value"].to_numpy(float),
                               rtol=1e-9, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(a["error_bound"].to_numpy(float),
                               b["error_bound"].to_numpy(float), rtol=1e-9, atol=1e-12)
    assert (a["n_labeled"].to_numpy() == b["n_labeled"].to_numpy()).all()
    assert a["undefined_reason"].fillna("").tolist() == b["undefined_reason"].fillna("").tolist()


@pytest.mark.parametrize("actors,batch_size,block_mib,fan_in,merge", [
    (1, None, 16, 8, "driver"), (2, 700, 1, 8, "tasks"), (2, 3000, 4, 8, "driver"),
    (5, 500, 1, 2, "tasks")])
def test_ray_equals_single_process(ray_local, synthetic, tmp_path, monkeypatch, actors,
                                   batch_size, block_mib, fan_in, merge):
    """1 to 5 reducer actors, several batch and block sizes, and both merges (on the driver,
    as small partials are; in Ray tasks, as large ones are, with a merge tree of fan-in 2 for
    5 reducers) give the single-process result."""
    from rayeval.engine import reducers

    if merge == "tasks":
        monkeypatch.setattr(reducers, "LOCAL_MERGE_BYTES", -1)
    d = synthetic["dir"]
    cfg = load_config(data=job_dict(str(d / "preds"), str(d / "labels"), str(tmp_path / "out"),
                                    ray={"actors": actors, "batch_size": batch_size,
                                         "target_block_mib": block_mib, "actor_num_cpus": 0.5,
                                         "merge_fan_in": fan_in}))
    result = run_job(cfg)
    expected = single_process(cfg, synthetic["preds"], synthetic["labels"])
    assert_same_metrics(result.finalized.metrics, expected)
    written = pd.read_parquet(tmp_path / "out" / "metrics")
    assert len(written) == len(expected)


def test_tables_do_not_depend_on_merge_order(synthetic):
    """Partials merged in either order (as Ray's reducers may meet the groups) give the same
    tables, rows in the same order (no Ray needed)."""
    d = synthetic["dir"]
    cfg = load_config(data=job_dict(str(d / "preds"), str(d / "labels"), "/tmp/unused"))
    labels = pa.Table.from_pandas(synthetic["labels"], preserve_index=False)
    plan = EvalPlan(cfg, LabelIndex.build(labels, "id", "label_ts"))
    preds = synthetic["preds"].sort_values("timestamp")
    half = len(preds) // 2
    a, b = (plan.batch_partial(pa.Table.from_pandas(p, preserve_index=False))
            for p in (preds.iloc[:half], preds.iloc[half:]))
    ab = finalize(plan, plan.merge(a, b), "r")
    ba = finalize(plan, plan.merge(b, a), "r")
    for name in ("metrics", "confusion", "coverage", "invalid"):
        x, y = getattr(ab, name), getattr(ba, name)
        assert len(x) > 0 or name == "invalid"
        pd.testing.assert_frame_equal(x, y, rtol=1e-12)


def test_metrics_match_sklearn_on_joined_rows(ray_local, synthetic, tmp_path):
    """Oracle: recompute a few slices with pandas + scikit-learn from the raw files."""
    d = synthetic["dir"]
    cfg = load_config(data=job_dict(str(d / "preds"), str(d / "labels"), str(tmp_path / "o")))
    m = run_job(cfg).finalized.metrics
    labels = synthetic["labels"].sort_values("label_ts").drop_duplicates("id", keep="last")
    joined = synthetic["preds"].merge(labels, on="id", how="inner")
    joined["week"] = joined["timestamp"].dt.tz_convert("UTC").dt.floor("D") - pd.to_timedelta(
        joined["timestamp"].dt.dayofweek, unit="D")
    for (model, week, seg), g in joined.groupby(["model", "week", "segment"]):
        sel = m[(m.model == model) & (m.window_start == week) & (m.slice == f"segment={seg}")]
        auc = sel[(sel.metric == "roc_auc") & sel.class_label.isna()]
        assert abs(auc.value.iloc[0] - roc_auc_score(g.label, g.score)) <= auc.error_bound.iloc[0] + 1e-12
        f1 = sel[(sel.metric == "f1") & (sel.average == "binary")]
        assert f1.value.iloc[0] == pytest.approx(f1_score(g.label, g.predicted), abs=1e-12)
        mae = sel[(sel.task == "reg") & (sel.metric == "mae")]
        assert mae.value.iloc[0] == pytest.approx(mean_absolute_error(g.target, g.predicted_value),
                                                  rel=1e-9)
        assert sel.n_labeled.iloc[0] == len(g)
        p90 = sel[(sel.task == "reg") & (sel.metric == "p90_absolute_error")].iloc[0]
        err = np.abs(g.predicted_value - g.target).to_numpy()
        exact = np.quantile(err, 0.9, method="inverted_cdf")  # the documented definition
        assert abs(p90.value - exact) <= p90.error_bound + 1e-12, (p90.value, exact)
        assert 0 <= p90.error_bound <= 2 ** -8 * exact  # a value bound: 0.39% relative


def test_label_policies_counted(ray_local, synthetic, tmp_path):
    d = synthetic["dir"]
    cfg = load_config(data=job_dict(str(d / "preds"), str(d / "labels"), str(tmp_path / "o")))
    res = run_job(cfg)
    rc = res.manifest["row_counts"]
    labels = synthetic["labels"]
    n_ids = synthetic["preds"]["id"].nunique()
    assert rc["labels_read"] == len(labels)
    assert rc["labels_duplicate"] == len(labels) - labels["id"].nunique()
    assert rc["labels_without_prediction"] == 0
    assert rc["rows_labeled"] == 2 * labels["id"].nunique()
    assert rc["rows_unlabeled"] == 2 * (n_ids - labels["id"].nunique())
    cov = res.finalized.coverage
    overall = cov[cov.slice == "overall"]
    assert overall.n_rows.sum() == len(synthetic["preds"])
    assert ((overall.label_coverage > 0.9) & (overall.label_coverage < 1)).all()


@pytest.mark.slow
def test_rerun_replaces_and_manifest(ray_local, synthetic, tmp_path):
    """A rerun replaces the run's files and writes the same tables, rows in the same order
    (values to summation-order rounding: Ray hands blocks to the two reducers dynamically);
    the manifest records the config hash, inputs, stage durations and per-pass timings."""
    d = synthetic["dir"]
    data = job_dict(str(d / "preds"), str(d / "labels"), str(tmp_path / "o"),
                    ray={"actors": 2, "batch_size": 500, "target_block_mib": 1})
    data["drift"] = {"enabled": True, "reference": {"kind": "previous_window"},
                     "features": [{"name": "band", "kind": "categorical"}]}
    cfg = load_config(data=data)
    first = run_job(cfg)
    second = run_job(cfg)
    for a, b in [(first.finalized.metrics, second.finalized.metrics),
                 (first.finalized.confusion, second.finalized.confusion),
                 (first.finalized.coverage, second.finalized.coverage),
                 (first.drift, second.drift)]:
        assert len(a) > 10
        pd.testing.assert_frame_equal(a, b, rtol=1e-12)
    files = sorted(p.relative_to(tmp_path / "o").as_posix() for p in (tmp_path / "o").rglob("*")
                   if p.is_file())
    assert not any(f.startswith("_staging") for f in files)
    assert sum(f.startswith("metrics/") for f in files) == 1
    man = json.loads((tmp_path / "o" / "manifests" / f"{cfg.resolved_run_id()}.json").read_text())
    assert man["config_hash"] == cfg.config_hash()
    assert len(man["inputs"]["predictions"]) == 5 and man["versions"]["ray"]
    assert set(man["durations"]) >= {"inspect", "labels", "scan", "finalize"}
    passes = {p["pass"]: p for p in man["passes"]}
    assert set(passes) == {"reference profile", "scan"}  # previous_window: no 2nd reference pass
    scan = passes["scan"]
    assert scan["rows"] == sum(a["rows"] for a in scan["actors"]) and len(scan["actors"]) == 2
    assert all(a["wait_s"] >= 0 and a["reduce_s"] > 0 for a in scan["actors"])


def test_failed_write_leaves_nothing(ray_local, synthetic, tmp_path, monkeypatch):
    d = synthetic["dir"]
    cfg = load_config(data=job_dict(str(d / "preds"), str(d / "labels"), str(tmp_path / "o")))
    from rayeval.io import writers

    def boom(self, name, df):
        raise OSError("disk full")

    monkeypatch.setattr(writers.RunWriter, "write_table", boom)
    with pytest.raises(OSError):
        run_job(cfg)
    left = [p for p in (tmp_path / "o").rglob("*") if p.is_file()] if (tmp_path / "o").exists() else []
    assert left == []


def test_deep_dive_filter_and_windows(ray_local, synthetic, tmp_path):
    d = synthetic["dir"]
    data = job_dict(str(d / "preds"), str(d / "labels"), str(tmp_path / "o"))
    data["filters"] = {"segment": ["north"]}
    data["windows"] = {"size": "day", "start": "2024-01-03", "end": "2024-01-10"}
    res = run_job(load_config(data=data))
    m = res.finalized.metrics
    assert set(m[m.slice_columns == "segment"].slice) == {"segment=north"}
    days = m.window_start.dropna().unique()
    assert len(days) == 7 and min(days) == pd.Timestamp("2024-01-03", tz="UTC")
    rc = res.manifest["row_counts"]
    assert rc["rows_out_of_range"] > 0 and rc["rows_filtered"] > 0
    # the time range is pushed into the read: rows outside it never reach a reducer, and are
    # still counted as read and outside the windows (the files' footers count them)
    preds = synthetic["preds"]
    inside = ((preds.timestamp >= pd.Timestamp("2024-01-03", tz="UTC"))
              & (preds.timestamp < pd.Timestamp("2024-01-10", tz="UTC")))
    scan = next(p for p in res.manifest["passes"] if p["pass"] == "scan")
    assert sum(a["rows"] for a in scan["actors"]) == inside.sum() < len(preds)
    assert rc["rows_read"] == len(preds) and rc["rows_out_of_range"] == (~inside).sum()
    assert rc["rows_filtered"] == (inside & (preds.segment != "north")).sum()


@pytest.mark.parametrize("actors,batch_size", [(1, None), (2, 700)])
def test_intervals_do_not_depend_on_actors_or_batches(ray_local, synthetic, tmp_path, actors,
                                                      batch_size):
    """Wilson, DeLong and bootstrap intervals, and the champion vs challenger comparisons, of
    a Ray run with 1 or 2 reducer actors and 3 batch sizes equal the single-process ones (the
    replicate weights hash the prediction id); the blessing record is written."""
    d = synthetic["dir"]
    cfg = load_config(data=job_dict(
        str(d / "preds"), str(d / "labels"), str(tmp_path / "out"),
        intervals={"enabled": True, "replicates": 50},
        comparisons={"pairs": [{"baseline": "champion", "candidate": "challenger"}]},
        gates=[{"name": "ni", "task": "clf", "metric": "roc_auc", "baseline": "champion",
                "test": "non_inferiority", "margin": 0.5, "slices": "all"}],
        ray={"actors": actors, "batch_size": batch_size, "actor_num_cpus": 0.5}))
    result = run_job(cfg)
    got = result.finalized.metrics
    full = single_process(cfg, synthetic["preds"], synthetic["labels"], full=True)
    expected = full.metrics
    a, b = result.finalized.comparisons, full.comparisons
    assert len(a) == len(b) > 0
    pd.testing.assert_frame_equal(a.drop(columns=["run_id"]), b.drop(columns=["run_id"]),
                                  rtol=1e-6, atol=1e-9)
    written = pd.read_parquet(tmp_path / "out" / "comparisons")
    assert len(written) == len(a)
    blessing = json.loads((tmp_path / "out" / "blessing" / f"{result.run_id}.json").read_text())
    assert blessing["status"] == "BLESSED" and blessing["n_checks"] == len(result.gates) > 1
    assert_same_metrics(got, expected)
    key = ["task", "model", "window_start", "slice", "metric", "class_label", "average"]
    got = got.sort_values(key, na_position="first").reset_index(drop=True)
    expected = expected.sort_values(key, na_position="first").reset_index(drop=True)
    for col in ("ci_lower", "ci_upper"):
        np.testing.assert_allclose(got[col].to_numpy(float), expected[col].to_numpy(float),
                                   rtol=1e-6, atol=1e-9, equal_nan=True)
    assert got["ci_method"].fillna("").tolist() == expected["ci_method"].fillna("").tolist()
    assert got["ci_flag"].fillna("").tolist() == expected["ci_flag"].fillna("").tolist()
    methods = set(got["ci_method"].dropna())
    assert {"wilson", "delong", "bootstrap"} <= methods
    small = got[got.ci_method.notna() & (got.n_rows < 30)]
    assert (small.ci_flag == "few_rows").all()
    defined = got[got.ci_method.notna()]
    assert ((defined.ci_lower <= defined.value + 1e-12)
            & (defined.value <= defined.ci_upper + 1e-12)).all()


def test_intervals_and_comparisons_do_not_depend_on_batch_size(synthetic):
    """Three batch sizes (the rows split in batches, partials merged in order) give the
    intervals and comparisons of one batch (no Ray: the merge harness of the engine plan)."""
    from rayeval.engine.pairing import build_pair_indexes
    from rayeval.engine.plan import _timestamps
    from rayeval.slicing import window_starts

    cfg = load_config(data=job_dict("p", "l", "o", intervals={"enabled": True, "replicates": 40},
                                    comparisons={"pairs": [{"baseline": "champion",
                                                            "candidate": "challenger"}]}))
    preds, labels = synthetic["preds"], synthetic["labels"]
    index = LabelIndex.build(pa.Table.from_pandas(labels, preserve_index=False), "id", "label_ts")
    table = pa.Table.from_pandas(preds.sample(frac=1.0, random_state=4), preserve_index=False)
    pairs = build_pair_indexes(cfg, table, lambda t: window_starts(
        _timestamps(t, "timestamp"), "week"))
    plan = EvalPlan(cfg, index, None, pairs)
    results = []
    for size in (table.num_rows, 997, 250):
        partial = plan.zero()
        for lo in range(0, table.num_rows, size):
            partial = plan.merge(partial, plan.batch_partial(table.slice(lo, size)))
        results.append(finalize(plan, partial, "r"))
    key = ["task", "model", "window_start", "slice", "metric", "class_label", "average"]
    first = results[0].metrics.sort_values(key, na_position="first").reset_index(drop=True)
    for other in results[1:]:
        m = other.metrics.sort_values(key, na_position="first").reset_index(drop=True)
        for col in ("value", "ci_lower", "ci_upper"):
            np.testing.assert_allclose(m[col].to_numpy(float), first[col].to_numpy(float),
                                       rtol=1e-6, atol=1e-9, equal_nan=True)
        pd.testing.assert_series_equal(m["ci_method"], first["ci_method"])  # nulls included
        pd.testing.assert_frame_equal(other.comparisons, results[0].comparisons, rtol=1e-6,
                                      atol=1e-9)
