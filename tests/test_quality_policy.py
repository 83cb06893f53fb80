"""The data-quality policy ``policy.max_invalid_share``: configuration, the share per task,
reason, model and window (hand-counted), and a run whose gates fail on it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from rayeval.config import ConfigError, load_config
from rayeval.engine.gates import GATE_COLUMNS
from rayeval.engine.labels import LabelIndex
from rayeval.engine.plan import EvalPlan
from rayeval.engine.quality import check_quality_policy, governing_key, quality_gates
from rayeval.engine.results import finalize
from tests.synth import job_dict, make_frames, write_parquet


@pytest.fixture(scope="module")
def frames():
    preds, labels = make_frames(4000, seed=5)
    rng = np.random.default_rng(0)
    bad = rng.random(len(preds)) < 0.05  # 5% of the scores above 1
    preds.loc[bad, "score"] = 1.5
    return preds, labels, bad


def cfg_with(policy, out="out", **extra):
    return load_config(data=job_dict("p", "l", out, policy=policy, **extra))


def finalized(cfg, preds, labels):
    index = LabelIndex.build(pa.Table.from_pandas(labels, preserve_index=False), "id", "label_ts")
    plan = EvalPlan(cfg, index)
    partial = plan.accumulate(plan.zero(), pa.Table.from_pandas(preds, preserve_index=False))
    return finalize(plan, partial, "r")


def test_config_keys_and_bounds():
    assert cfg_with({"max_invalid_share": 0.01}).policy.max_invalid_share == 0.01
    cfg = cfg_with({"max_invalid_share": {"all": 0.01, "clf/score_out_of_range": 0.1,
                                          "missing_label": 0.5, "reg/all": 0.2}})
    check_quality_policy(cfg)
    lim = dict(cfg.policy.max_invalid_share)
    assert governing_key(lim, "clf", "score_out_of_range") == "clf/score_out_of_range"
    assert governing_key(lim, "clf", "missing_label") == "missing_label"
    assert governing_key(lim, "reg", "missing_label") == "reg/all"
    assert governing_key(lim, "clf", "missing_score") == "all"
    with pytest.raises(ConfigError, match="max_invalid_share"):
        cfg_with({"max_invalid_share": 1.5})
    for key in ("score_above_one", "nosuchtask/all"):
        with pytest.raises(ConfigError, match=f"unknown key '{key}'"):
            check_quality_policy(cfg_with({"max_invalid_share": {key: 0.1}}))


def test_share_per_model_and_window_is_hand_counted(frames):
    preds, labels, bad = frames
    cfg = cfg_with({"max_invalid_share": {"all": 0.5, "clf/score_out_of_range": 0.04}})
    fin = finalized(cfg, preds, labels)
    g = quality_gates(cfg, fin.invalid, fin.coverage, "r", GATE_COLUMNS)
    assert list(g.columns) == GATE_COLUMNS
    scored = g[g["metric"] == "invalid_share:clf/score_out_of_range"]
    # the hand count: rows above 1 with a (non-missing) label, per model and week
    lab = labels.sort_values("label_ts").drop_duplicates("id", keep="last")
    week = preds["timestamp"].dt.tz_convert("UTC").dt.to_period("W-SUN").dt.start_time
    labelled = preds["id"].isin(lab["id"])
    assert len(scored) == preds.groupby(["model", week]).ngroups == 6
    for r in scored.itertuples():
        sel = (preds["model"] == r.model) & (week == r.window_start.tz_localize(None))
        expect = (sel & bad & labelled).sum() / sel.sum()
        assert r.value == pytest.approx(expect, rel=1e-12)
        assert r.passed == (expect <= 0.04)
        assert "score_out_of_range" in r.reason
    assert not scored["passed"].all()  # ~5% > 4% somewhere
    # the other reasons of clf and every reason of reg are under "all" (nothing excluded)
    rest = g[g["metric"] != "invalid_share:clf/score_out_of_range"]
    assert set(rest["metric"]) == {"invalid_share:clf/all", "invalid_share:reg/all"}
    assert rest["passed"].all() and (rest["value"] == 0).all()
    # no policy: no rows, fixed columns
    none = quality_gates(cfg_with({}), fin.invalid, fin.coverage, "r", GATE_COLUMNS)
    assert none.empty and list(none.columns) == GATE_COLUMNS


@pytest.mark.slow
def test_run_fails_its_gates_on_the_policy(ray_local, frames, tmp_path):
    from rayeval.engine.run import run_job

    preds, labels, _ = frames
    write_parquet(preds, tmp_path / "preds", 2)
    write_parquet(labels, tmp_path / "labels", 1)
    base = job_dict(str(tmp_path / "preds"), str(tmp_path / "labels"), str(tmp_path / "out"))
    strict = load_config(data={**base, "policy": {"max_invalid_share": 0.01},
                               "ray": {"batch_size": 500}})
    lines: list[str] = []
    res = run_job(strict, progress=lines.append)
    # progress: every stage, and the scan's rows done / total (from the footers) and rate
    assert {"inspect", "labels", "scan", "finalize", "write"} <= set(lines)
    n = len(preds)
    assert f"scan: done, {n:,} / {n:,} rows (100%)" in "\n".join(lines), lines
    assert all(" rows/s, " in ln for ln in lines if ln.startswith("scan: "))
    assert not res.gates_passed
    failed = res.gates[~res.gates["passed"]]
    assert set(failed["rule"]) == {"data-quality"}
    assert set(failed["metric"]) == {"invalid_share:clf/all"}
    written = pd.read_parquet(tmp_path / "out" / "gates")
    assert (written["rule"] == "data-quality").sum() == len(res.gates)
    lax = load_config(data={**base, "policy": {"max_invalid_share": 0.2}})
    assert run_job(lax).gates_passed
