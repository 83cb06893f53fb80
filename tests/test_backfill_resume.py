"""Interrupted backfills: a backfill killed (SIGKILL) after some windows were committed resumes on
rerun, skipping the committed windows whose inputs are unchanged; the final tables equal an
uninterrupted backfill's with no duplicate row; a window whose inputs changed is recomputed and
its manifest says why."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from rayeval.config import load_config
from rayeval.engine.backfill import backfill_windows, input_changes, run_backfill
from rayeval.io.audit import read_audit
from tests.conftest import ROOT
from tests.synth import job_dict, make_frames, write_parquet

START, END = datetime(2024, 1, 1), datetime(2024, 1, 22)  # three Monday weeks
TABLES = ("metrics", "confusion", "coverage", "invalid", "gates")


def test_backfill_windows_are_clipped_and_ordered():
    cfg = load_config(data=job_dict("p", None, "o", windows={"size": "week"}))
    w = backfill_windows(cfg, datetime(2024, 1, 3), datetime(2024, 1, 16))
    assert [(str(s.date()), str(e.date())) for s, e in w] == [
        ("2024-01-03", "2024-01-08"), ("2024-01-08", "2024-01-15"), ("2024-01-15", "2024-01-16")]
    none = load_config(data=job_dict("p", None, "o", windows={"size": "none"}))
    assert len(backfill_windows(none, START, END)) == 1


def test_input_changes_name_files():
    old = {"predictions": [{"path": "a", "size": 1, "fingerprint": "x"},
                           {"path": "b", "size": 1, "fingerprint": "x"}], "labels": []}
    new = {"predictions": [("a", 2, "y"), ("c", 1, "x")], "labels": [("l", 1, "z")]}
    text = "; ".join(input_changes(old, new))
    assert "predictions: 1 new file(s) (c)" in text and "1 removed file(s) (b)" in text
    assert "1 changed file(s) (a)" in text and "labels: 1 new file(s) (l)" in text


def write_days(df: pd.DataFrame, root) -> None:
    for day, part in df.groupby(df["timestamp"].dt.strftime("%Y-%m-%d")):
        d = root / f"date={day}"
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), d / "part.parquet")


def tables(out) -> dict[str, pd.DataFrame]:
    res = {}
    for t in TABLES:
        df = pd.read_parquet(out / t).drop(columns=["run_date", "run_started_at"], errors="ignore")
        res[t] = df.sort_values(list(df.columns), key=lambda c: c.astype(str)
                                ).reset_index(drop=True)
    return res


def assert_same_tables(a, b):
    for t in TABLES:
        pd.testing.assert_frame_equal(a[t], b[t], check_exact=False, rtol=1e-12,
                                      check_categorical=False, obj=t)


def outcomes(cfg):
    return {o.run_id: o for o in run_backfill(cfg, START, END)}


@pytest.mark.faults
def test_killed_backfill_resumes_to_the_uninterrupted_result(ray_local, tmp_path):
    preds, labels = make_frames(4000, seed=21)
    write_days(preds, tmp_path / "preds")
    write_parquet(labels, tmp_path / "labels", 1)
    job = job_dict(str(tmp_path / "preds"), str(tmp_path / "labels"), str(tmp_path / "out"),
                   windows={"size": "week"})
    conf = tmp_path / "job.yaml"
    conf.write_text(yaml.safe_dump(job))

    ref_cfg = load_config(conf, [f"outputs.path={tmp_path / 'ref'}"])
    ref = outcomes(ref_cfg)
    assert [o.status for o in ref.values()] == ["computed"] * 3
    expected = tables(tmp_path / "ref")

    # a real backfill process, SIGKILLed as soon as its first window is committed
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen([sys.executable, "jobs/backfill.py", "--config", str(conf),
                             "--start", "2024-01-01", "--end", "2024-01-22", "--quiet",
                             "--set", "ray.actors=1"], cwd=ROOT, env=env,
                            start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    manifests = tmp_path / "out" / "manifests"
    deadline = time.time() + 400
    try:
        while time.time() < deadline and proc.poll() is None:
            if manifests.exists() and any(manifests.glob("*.json")):
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the backfill and the local Ray it started
        log = proc.communicate()[0].decode(errors="replace")
    committed = sorted(p.stem for p in manifests.glob("*.json"))
    assert 1 <= len(committed) < 3, log[-3000:]
    before = {p: json.loads(p.read_text())["commit_id"] for p in manifests.glob("*.json")}

    cfg = load_config(conf)
    resumed = outcomes(cfg)
    assert {r for r, o in resumed.items() if o.status == "skipped"} == set(committed)
    assert all(o.status == "computed" for r, o in resumed.items() if r not in committed)
    assert all(json.loads(p.read_text())["commit_id"] == c for p, c in before.items())
    got = tables(tmp_path / "out")
    assert_same_tables(got, expected)
    key = ["run_id", "task", "model", "window_start", "slice", "metric", "class_label",
           "average"]
    assert not got["metrics"].duplicated(key).any()
    # manifests' row counts add up to the uninterrupted run's
    for rid in ref:
        a = json.loads((tmp_path / "ref" / "manifests" / f"{rid}.json").read_text())
        b = json.loads((manifests / f"{rid}.json").read_text())
        assert a["row_counts"] == b["row_counts"] and a["input_fingerprint"] == \
            b["input_fingerprint"]

    # nothing changed: every window skipped, no commit
    again = outcomes(cfg)
    assert {o.status for o in again.values()} == {"skipped"}

    # a rewritten prediction partition in week 2: only that window is recomputed
    day = tmp_path / "preds" / "date=2024-01-10" / "part.parquet"
    t = pq.read_table(day).to_pandas()
    t["score"] = np.clip(t["score"] * 0.9, 0, 1)
    pq.write_table(pa.Table.from_pandas(t, preserve_index=False), day)
    changed = outcomes(cfg)
    assert [o.status for o in changed.values()] == ["skipped", "recomputed", "skipped"]
    week2 = changed["synthetic-20240108T0000"]
    assert "date=2024-01-10/part.parquet" in week2.reason
    man = json.loads((manifests / "synthetic-20240108T0000.json").read_text())
    assert any("recomputed" in a and "date=2024-01-10" in a for a in man["actions"])

    # late labels (a corrections file): the labels dataset changed, every window recomputed
    late = labels.sample(50, random_state=1).assign(label=lambda d: 1 - d["label"],
                                                    label_ts=lambda d: d["label_ts"]
                                                    + pd.Timedelta(days=30))
    pq.write_table(pa.Table.from_pandas(late, preserve_index=False),
                   tmp_path / "labels" / "late-corrections.parquet")
    relabeled = outcomes(cfg)
    assert {o.status for o in relabeled.values()} == {"recomputed"}
    assert all("labels: 1 new file(s)" in o.reason and "late-corrections" in o.reason
               for o in relabeled.values())
    final = tables(tmp_path / "out")
    assert not final["metrics"].duplicated(key).any()
    assert set(final["metrics"]["run_id"]) == set(ref)
    audit = read_audit(str(tmp_path / "out"))
    # in this process: the resumed windows, the partition rewrite, the relabel (the killed
    # process may have died between a commit and its audit record)
    n = (audit.status == "committed").sum() - (3 - len(committed)) - 1 - 3
    assert 0 <= n <= len(committed)
