"""Gate rules on intervals, changes and paired tests; the blessing record; comparisons against
hand-computed oracles (McNemar's discordant pairs from a pandas join, BH across slices); bad
input caught before the scan with nothing written."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats

from rayeval.config import ConfigError, load_config
from rayeval.engine.blessing import blessing_record, last_blessed_run
from rayeval.engine.gates import GATE_COLUMNS, check_gates, evaluate_gates
from rayeval.engine.labels import LabelIndex
from rayeval.engine.pairing import build_pair_indexes
from rayeval.engine.plan import EvalPlan, _timestamps
from rayeval.engine.results import finalize
from rayeval.slicing import window_starts
from rayeval.stats.paired import benjamini_hochberg
from tests.synth import job_dict, make_frames

PAIR = {"pairs": [{"baseline": "champion", "candidate": "challenger"}]}
T0 = pd.Timestamp("2024-01-01", tz="UTC")


def _cfg(tmp_path, gates, **extra):
    data = job_dict("p", "l", str(tmp_path / "out"), gates=gates,
                    intervals={"enabled": True, "replicates": 50}, comparisons=PAIR, **extra)
    return load_config(data=data)


def _metrics(rows):
    base = {"task": "clf", "window_start": T0, "class_label": None, "average": None,
            "direction": "higher_is_better", "undefined_reason": "", "n_labeled": 1000,
            "ci_lower": np.nan, "ci_upper": np.nan}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_threshold_on_interval_bound(tmp_path):
    cfg = _cfg(tmp_path, [{"name": "auc", "task": "clf", "metric": "roc_auc", "on": "ci_lower",
                           "min": 0.6}])
    m = _metrics([{"model": "champion", "slice": "overall", "metric": "roc_auc", "value": 0.7,
                   "ci_lower": 0.65}, {"model": "challenger", "slice": "overall",
                                       "metric": "roc_auc", "value": 0.66, "ci_lower": 0.58}])
    g = evaluate_gates(cfg, m, None, "r")
    assert list(g.columns) == GATE_COLUMNS
    assert g["threshold"].dtype == float and (g["threshold"] == 0.6).all()
    assert (g["on"] == "ci_lower").all() and (g["operator"] == ">=").all()
    assert g.set_index("model")["passed"].to_dict() == {"champion": True, "challenger": False}
    assert g.set_index("model").loc["challenger", "value"] == 0.58
    assert "ci_lower 0.58 < 0.6" in g.set_index("model").loc["challenger", "reason"]


def test_change_rule_against_baseline_model_every_big_slice(tmp_path):
    cfg = _cfg(tmp_path, [{"name": "no-loss", "task": "clf", "metric": "roc_auc",
                           "model": "challenger", "baseline": "champion", "max_drop": 0.02,
                           "slices": "all", "min_slice_size": 500}])
    rows = []
    for sl, n, base, cand in (("overall", 5000, 0.70, 0.69), ("segment=a", 800, 0.72, 0.69),
                              ("segment=b", 900, 0.70, 0.71), ("segment=c", 100, 0.8, 0.5)):
        rows += [{"model": "champion", "slice": sl, "metric": "roc_auc", "value": base,
                  "n_labeled": n},
                 {"model": "challenger", "slice": sl, "metric": "roc_auc", "value": cand,
                  "n_labeled": n}]
    g = evaluate_gates(cfg, _metrics(rows), None, "r").set_index("slice")
    assert sorted(g.index) == ["overall", "segment=a", "segment=b"]  # c is too small
    assert g.loc["segment=a", "threshold"] == pytest.approx(0.70)
    assert g["passed"].to_dict() == {"overall": True, "segment=a": False, "segment=b": True}
    assert g.loc["segment=a", "baseline"] == 0.72
    # lower is better: the threshold sits above the baseline
    cfg = _cfg(tmp_path, [{"name": "ll", "task": "clf", "metric": "log_loss",
                           "baseline": "champion", "max_relative_drop": 0.1}])
    m = _metrics([{"model": "champion", "slice": "overall", "metric": "log_loss", "value": 0.5,
                   "direction": "lower_is_better"},
                  {"model": "challenger", "slice": "overall", "metric": "log_loss",
                   "value": 0.56, "direction": "lower_is_better"}])
    g = evaluate_gates(cfg, m, None, "r")
    assert len(g) == 1 and g["threshold"].iloc[0] == pytest.approx(0.55)
    assert g["operator"].iloc[0] == "<=" and not g["passed"].iloc[0]


def _comparisons(rows):
    base = {"task": "clf", "baseline": "champion", "candidate": "challenger",
            "window_start": T0, "average": None, "direction": "higher_is_better",
            "n_paired": 1000, "n_unpaired": 0, "baseline_value": 0.7}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_non_inferiority_and_superiority(tmp_path):
    cfg = _cfg(tmp_path, [
        {"name": "ni", "task": "clf", "metric": "roc_auc", "baseline": "champion",
         "test": "non_inferiority", "margin": 0.01, "slices": "all"},
        {"name": "sup", "task": "clf", "metric": "roc_auc", "baseline": "champion",
         "test": "superiority", "slices": ["overall"]}])
    c = _comparisons([
        {"slice": "overall", "metric": "roc_auc", "difference": 0.004, "ci_lower": -0.006,
         "ci_upper": 0.014, "p_adjusted": 0.3},
        {"slice": "segment=a", "metric": "roc_auc", "difference": -0.01, "ci_lower": -0.03,
         "ci_upper": 0.01, "p_adjusted": 0.2}])
    g = evaluate_gates(cfg, pd.DataFrame(columns=["metric"]), None, "r", c)
    ni = g[g.rule == "ni"].set_index("slice")
    assert ni["passed"].to_dict() == {"overall": True, "segment=a": False}
    assert (ni["threshold"] == -0.01).all() and (ni["on"] == "difference_ci_lower").all()
    sup = g[g.rule == "sup"]
    assert len(sup) == 1 and not sup["passed"].iloc[0] and sup["on"].iloc[0] == "p_adjusted"
    assert "not significant" in sup["reason"].iloc[0]
    c.loc[0, "p_adjusted"] = 0.01
    g = evaluate_gates(cfg, pd.DataFrame(columns=["metric"]), None, "r", c)
    assert g[g.rule == "sup"]["passed"].iloc[0]


def test_blessing_record_names_worst_failing_slices(tmp_path):
    cfg = _cfg(tmp_path, [{"name": "auc", "task": "clf", "metric": "roc_auc", "min": 0.6,
                           "slices": "all"}])
    m = _metrics([{"model": "champion", "slice": s, "metric": "roc_auc", "value": v}
                  for s, v in (("overall", 0.7), ("segment=a", 0.55), ("segment=b", 0.4),
                               ("segment=c", np.nan))])
    g = evaluate_gates(cfg, m, None, "r")
    rec = blessing_record(cfg, "r", g, {"input_fingerprint": "abc"})
    assert rec["status"] == "NOT_BLESSED" and rec["n_failed"] == 3
    worst = [w["slice"] for w in rec["failing_rules"][0]["worst"]]
    assert worst == ["segment=c", "segment=b", "segment=a"]  # undefined first, then furthest
    assert rec["input_fingerprint"] == "abc"
    ok = blessing_record(cfg, "r", g[g.passed], {})
    assert ok["status"] == "BLESSED" and ok["failing_rules"] == []


def test_last_passing_run_baseline(tmp_path):
    rule = {"name": "drift-guard", "task": "clf", "metric": "roc_auc", "baseline":
            "last_passing_run", "max_drop": 0.01}
    cfg = _cfg(tmp_path, [rule])
    with pytest.raises(ConfigError, match="no BLESSED run"):
        check_gates(cfg)
    out = tmp_path / "out"
    (out / "blessing").mkdir(parents=True)
    for run, status, created in (("old", "BLESSED", "2024-01-01"), ("bad", "NOT_BLESSED",
                                                                     "2024-03-01"),
                                 ("mid", "BLESSED", "2024-02-01")):
        (out / "blessing" / f"{run}.json").write_text(json.dumps(
            {"run_id": run, "job": cfg.name, "status": status, "created": created}))
    check_gates(cfg)
    assert last_blessed_run(cfg) == "mid" and last_blessed_run(cfg, exclude="mid") == "old"
    prev = _metrics([{"model": "champion", "slice": "overall", "metric": "roc_auc",
                      "value": 0.75, "window_start": T0 - pd.Timedelta(days=7)}])
    now = _metrics([{"model": "champion", "slice": "overall", "metric": "roc_auc",
                     "value": 0.735}])
    g = evaluate_gates(cfg, now, None, "r", None, prev)
    assert g["baseline"].iloc[0] == 0.75 and not g["passed"].iloc[0]
    assert g["threshold"].iloc[0] == pytest.approx(0.74)


@pytest.mark.parametrize("gate,match", [
    ({"metric": "max_error", "task": "reg", "on": "ci_upper", "max": 3}, "no confidence"),
    ({"metric": "roc_auc", "task": "clf", "test": "superiority", "baseline": "other"},
     "needs a comparisons pair"),
])
def test_gate_config_errors(tmp_path, gate, match):
    with pytest.raises(ConfigError, match=match):
        check_gates(_cfg(tmp_path, [{"name": "g", **gate}]))


def test_config_errors_at_load():
    with pytest.raises(ConfigError, match="intervals.enabled"):
        load_config(data=job_dict("p", "l", "o", comparisons=PAIR))
    with pytest.raises(ConfigError, match="one kind of rule"):
        load_config(data=job_dict("p", "l", "o", gates=[
            {"name": "g", "metric": "f1", "min": 0.5, "baseline": "a", "max_drop": 0.1}]))
    data = job_dict("p", "l", "o", gates=[{"name": "g", "metric": "f1", "on": "ci_lower",
                                           "min": 0.5}])
    with pytest.raises(ConfigError, match="intervals.enabled"):
        check_gates(load_config(data=data))


def _single_process(cfg, preds, labels):
    index = LabelIndex.build(pa.Table.from_pandas(labels, preserve_index=False), "id",
                             "label_ts")
    table = pa.Table.from_pandas(preds, preserve_index=False)
    pairs = build_pair_indexes(cfg, table, lambda t: window_starts(
        _timestamps(t, "timestamp"), "week"))
    plan = EvalPlan(cfg, index, None, pairs)
    return finalize(plan, plan.accumulate(plan.zero(), table), "r")


def test_comparisons_against_a_join(tmp_path):
    """McNemar's discordant counts, paired/unpaired counts and BH, against pandas on the
    joined rows; some ids only one model scored."""
    preds, labels = make_frames(4000, seed=3)
    rng = np.random.default_rng(0)
    drop = (preds["model"] == "challenger") & (rng.random(len(preds)) < 0.05)
    preds = preds[~drop].reset_index(drop=True)
    cfg = _cfg(tmp_path, [])
    fin = _single_process(cfg, preds, labels)
    c = fin.comparisons
    assert set(c["test"]) == {"mcnemar_exact", "paired_bootstrap"}
    lab = labels.sort_values("label_ts").drop_duplicates("id", keep="last")
    j = preds.merge(lab[["id", "label"]], on="id")
    wide = j.pivot_table(index=["id", "timestamp", "segment", "label"], columns="model",
                         values="predicted").dropna().reset_index()
    wide["week"] = wide["timestamp"].dt.tz_convert(None).dt.to_period("W-SUN").dt.start_time
    for (week, seg), part in wide.groupby(["week", "segment"]):
        b = int(((part.champion == part.label) & (part.challenger != part.label)).sum())
        cc = int(((part.champion != part.label) & (part.challenger == part.label)).sum())
        row = c[(c.metric == "accuracy") & (c.slice == f"segment={seg}")
                & (c.window_start == pd.Timestamp(week, tz="UTC"))]
        assert len(row) == 1
        assert row["p_value"].iloc[0] == pytest.approx(
            stats.binomtest(min(b, cc), b + cc, 0.5).pvalue if b + cc else 1.0)
    ov = c[(c.slice == "overall") & (c.metric == "accuracy")]
    n_cand = preds[preds.model == "challenger"].groupby(
        preds["timestamp"].dt.tz_convert(None).dt.to_period("W-SUN").dt.start_time).size()
    n_base = preds[preds.model == "champion"].groupby(
        preds["timestamp"].dt.tz_convert(None).dt.to_period("W-SUN").dt.start_time).size()
    for r in ov.itertuples():
        wk = r.window_start.tz_convert(None)
        assert r.n_paired == n_cand[wk]  # every challenger id has a champion row
        assert r.n_unpaired == n_base[wk] - n_cand[wk]
    for _, part in c.groupby(["metric", "window_start"]):
        assert np.allclose(part["p_adjusted"], benjamini_hochberg(part["p_value"].to_numpy()),
                           equal_nan=True)
    assert (c["ci_lower"] <= c["difference"] + 1e-12).all()


def test_comparison_of_absent_model_fails_before_the_scan(ray_local, tmp_path):
    from rayeval.engine.run import run_job
    from rayeval.io.readers import InputError
    from tests.synth import write_parquet

    preds, labels = make_frames(600, seed=2)
    write_parquet(preds, tmp_path / "p", 2)
    write_parquet(labels, tmp_path / "l", 1)
    data = job_dict(str(tmp_path / "p"), str(tmp_path / "l"), str(tmp_path / "out"),
                    intervals={"enabled": True},
                    comparisons={"pairs": [{"baseline": "champion", "candidate": "ghost"}]})
    with pytest.raises(InputError, match="candidate model 'ghost' has no rows"):
        run_job(load_config(data=data))
    assert not (tmp_path / "out" / "metrics").exists()


def test_dataset_drift_share_gate_still_works(tmp_path):
    cfg = _cfg(tmp_path, [{"name": "d", "metric": "dataset_drift_share", "max": 0.4}],
               drift={"enabled": True, "reference": {"kind": "previous_window"},
                      "features": [{"name": "feature_x", "kind": "numeric"}]})
    drift = pd.DataFrame({"slice": "overall", "kind": "dataset", "model": ["a", "b"],
                          "window_start": T0, "statistic": [0.5, 0.25]})
    g = evaluate_gates(cfg, pd.DataFrame(columns=["metric"]), drift, "r").set_index("model")
    assert g["passed"].to_dict() == {"a": False, "b": True}
    assert (g["threshold"] == 0.4).all() and (g["operator"] == "<=").all()


def test_yaml_on_key(tmp_path):
    """YAML reads a bare `on:` key as boolean true; the gate rule takes it back."""
    path = tmp_path / "job.yaml"
    import yaml

    data = job_dict("p", "l", "o", intervals={"enabled": True})
    text = yaml.safe_dump(data) + "gates:\n  - {name: g, task: clf, metric: roc_auc, on: ci_lower, min: 0.5}\n"
    path.write_text(text)
    cfg = load_config(path)
    assert cfg.gates[0].on == "ci_lower"
