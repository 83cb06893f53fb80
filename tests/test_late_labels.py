"""Late labels end to end on the engine (local Ray): windows marked mature / immature
(``windows.mature_after``, ``min_label_coverage``), gates on mature windows only, and CBPE
estimates in their own ``estimated`` table with the measured value beside them; a concept
shift in one model's labels raises the warning, calibrated scores do not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rayeval.config import load_config
from rayeval.engine.maturity import NOT_GATED
from rayeval.engine.run import run_job
from tests.synth import write_parquet

WEEKS = [pd.Timestamp(d, tz="UTC") for d in ("2024-01-01", "2024-01-08", "2024-01-15")]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two models, three weeks, calibrated scores; model `shifted` has labels following
    1 - p for half its rows in the last week (concept shift); week 3 has labels for 30% of
    the rows only (late labels)."""
    rng = np.random.default_rng(0)
    n = 9000
    ts = WEEKS[0] + pd.to_timedelta(rng.integers(0, 21 * 86400, n), unit="s")
    p = rng.beta(2, 3, n)
    frames, labels = [], []
    for model in ("calibrated", "shifted"):
        y = (rng.random(n) < p).astype(np.int64)
        if model == "shifted":
            flip = (ts >= WEEKS[2]) & (rng.random(n) < 0.5)
            y = np.where(flip, (rng.random(n) < 1 - p).astype(np.int64), y)
        ids = np.array([f"{model}-{i}" for i in range(n)])
        frames.append(pd.DataFrame({"id": ids, "timestamp": ts, "model": model,
                                    "segment": rng.choice(["a", "b"], n), "score": p,
                                    "predicted": (p >= 0.5).astype(np.int64)}))
        keep = (ts < WEEKS[2]) | (rng.random(n) < 0.3)
        labels.append(pd.DataFrame({"id": ids[keep], "label": y[keep]}))
    d = tmp_path_factory.mktemp("late-labels")
    write_parquet(pd.concat(frames, ignore_index=True), d / "preds", 2)
    write_parquet(pd.concat(labels, ignore_index=True), d / "labels", 1)
    return d


def job(data, out, report=False, **windows):
    return load_config(data={
        "name": "late", "inputs": {"predictions": {"uri": str(data / "preds")},
                                   "labels": {"uri": str(data / "labels")}},
        "columns": {"id": "id", "timestamp": "timestamp", "model": "model"},
        "tasks": [{"name": "clf", "type": "binary", "label": "label", "prediction": "predicted",
                   "score": "score", "classes": [0, 1], "positive_class": 1}],
        "slices": {"columns": ["segment"]},
        "windows": {"size": "week", **windows},
        "estimation": {"enabled": True},
        "gates": [{"name": "acc", "task": "clf", "metric": "accuracy", "min": 0.999}],
        "outputs": {"path": str(out), "report": report, "mlflow": {"enabled": False}}})


def test_maturity_gates_and_estimates(ray_local, data, tmp_path):
    # as of 01-20 with 72 h: week 1 (labels due 01-11) and week 2 (01-18) are mature, week 3
    # (due 01-25) is not; coverage >= 0.5 also fails week 3 (30% labelled)
    cfg = job(data, tmp_path / "out", report=True, mature_after="72h",
              min_label_coverage=0.5, as_of="2024-01-20T00:00:00")
    res = run_job(cfg)
    w = pd.read_parquet(tmp_path / "out" / "windows")
    assert len(w) == 6 and set(w.model) == {"calibrated", "shifted"}
    for r in w.itertuples():
        assert r.mature == (r.window_start < WEEKS[2]), r
    last = w[w.window_start == WEEKS[2]].iloc[0]
    assert "labels due at 2024-01-25" in last.reason and "label coverage 0.3" in last.reason
    gates = pd.read_parquet(tmp_path / "out" / "gates")
    assert set(gates.window_start) == set(WEEKS[:2])  # immature week 3 is not gated
    assert not gates.passed.any()
    est = pd.read_parquet(tmp_path / "out" / "estimated")
    metrics = pd.read_parquet(tmp_path / "out" / "metrics")
    assert set(est.method) == {"cbpe"} and "method" not in metrics  # never mixed
    assert set(est.metric) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert len(est) == 2 * 3 * 3 * 5  # models x windows x (overall + 2 segments) x metrics
    # measured beside the estimate: the metrics table's own value
    acc = est[(est.metric == "accuracy") & (est.slice == "overall")]
    for r in acc.itertuples():
        m = metrics[(metrics.metric == "accuracy") & (metrics.slice == "overall")
                    & (metrics.model == r.model) & (metrics.window_start == r.window_start)]
        assert r.measured == pytest.approx(float(m.value.iloc[0]))
        assert r.gap == pytest.approx(r.measured - r.value)
        assert r.mature == (r.window_start < WEEKS[2])
    # calibrated scores: no warning; the shifted model's last week: warning
    cal = acc[acc.model == "calibrated"]
    assert not cal.concept_shift.any()
    assert (abs(cal.gap) <= 3 * cal.sampling_se).all()
    sh = acc[acc.model == "shifted"].set_index("window_start")
    assert sh.loc[WEEKS[2], "concept_shift"] and not sh.loc[WEEKS[0], "concept_shift"]
    warns = res.manifest["warnings"]
    assert any("model shifted" in x and "concept shift" in x for x in warns)
    assert not any("model calibrated" in x and "concept shift" in x for x in warns)
    html = (tmp_path / "out" / "reports" / f"{res.run_id}.html").read_text()
    assert "Estimated vs measured (CBPE)" in html and "concept shift?" in html


@pytest.mark.slow
def test_no_mature_window_is_not_gated(ray_local, data, tmp_path):
    cfg = job(data, tmp_path / "out", mature_after="30d", as_of="2024-01-20T00:00:00")
    res = run_job(cfg)
    assert not res.windows.mature.any()
    assert res.gates_passed and list(res.gates.reason) == [NOT_GATED]
    # the override gates every window
    cfg = job(data, tmp_path / "out2", mature_after="30d", as_of="2024-01-20T00:00:00",
              gate_immature=True)
    res = run_job(cfg)
    assert not res.gates_passed and len(res.gates) == 6


@pytest.mark.slow
def test_estimates_do_not_depend_on_partitioning(ray_local, data, tmp_path):
    a = run_job(job(data, tmp_path / "a")).estimated
    cfg = job(data, tmp_path / "b")
    cfg = cfg.model_copy(update={"ray": cfg.ray.model_copy(update={"batch_size": 1000,
                                                                   "actors": 1})})
    b = run_job(cfg).estimated
    pd.testing.assert_frame_equal(a.drop(columns="run_id"), b.drop(columns="run_id"),
                                  check_exact=False, rtol=1e-12)
    assert a.mature.all()  # no maturity rule: every window is mature
