"""Flaky object storage: a fault-injecting proxy in front of moto's S3 server answers some requests
with 503 SlowDown, 500 InternalError or a TCP reset. botocore's retry configuration (not a loop of
ours) rides them out and the run's results equal an undisturbed run's; a persistent fault fails
naming the object and the attempts; a file that changes or disappears between listing and
reading is detected by its size/ETag and named."""

from __future__ import annotations

import io
import itertools

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayeval.config import load_config
from rayeval.engine import ray_runner
from rayeval.engine.run import run_job
from rayeval.io.readers import InputError
from tests.faultproxy import FaultProxy
from tests.synth import job_dict, make_frames

BUCKET = "rayeval-flaky"
pytestmark = pytest.mark.faults  # minutes of retries with backoff: run by .ci/run after the suite


@pytest.fixture(scope="module")
def flaky(ray_local, s3_server):
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server})
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    preds, labels = make_frames(3000, seed=11)
    for i, part in enumerate(pd.Series(range(len(preds))).groupby(lambda i: i % 4)):
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(preds.iloc[part[1].to_numpy()],
                                            preserve_index=False), buf)
        fs.pipe(f"{BUCKET}/preds/part-{i}.parquet", buf.getvalue())
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(labels, preserve_index=False), buf)
    fs.pipe(f"{BUCKET}/labels/part-0.parquet", buf.getvalue())
    with FaultProxy(s3_server) as proxy:
        yield {"fs": fs, "proxy": proxy}


def cfg(flaky, out: str, **storage):
    d = job_dict(f"s3://{BUCKET}/preds", f"s3://{BUCKET}/labels", f"s3://{BUCKET}/{out}")
    d["inputs"]["storage"] = {"endpoint_url": flaky["proxy"].url, **storage}
    return load_config(data=d)


def metrics(flaky, out: str) -> pd.DataFrame:
    m = pd.read_parquet(f"s3://{BUCKET}/{out}/metrics",
                        storage_options={"client_kwargs": {
                            "endpoint_url": flaky["fs"].client_kwargs["endpoint_url"]}})
    key = ["task", "model", "window_start", "slice", "metric", "class_label", "average"]
    return m.drop(columns=["run_id", "run_date", "run_started_at"]).sort_values(key).reset_index(drop=True)


def every(n: int):
    """A predicate true for every ``n``-th request (counted across all requests)."""
    c = itertools.count(1)
    return lambda method, path: next(c) % n == 0


def test_transient_faults_are_retried_and_results_identical(flaky):
    proxy = flaky["proxy"]
    proxy.clear()
    base = run_job(cfg(flaky, "calm"))
    assert proxy.faults() == {"ok": len(proxy.log)}
    proxy.clear()
    proxy.add(every(4), "503", times=None)       # throttling
    proxy.add(every(7), "500", times=None)       # server errors
    proxy.add(every(9), "reset", times=None)     # connection resets
    stormy = run_job(cfg(flaky, "stormy"))
    seen = proxy.faults()
    proxy.clear()
    assert seen.get("503", 0) >= 5 and seen.get("500", 0) >= 3 and seen.get("reset", 0) >= 2, \
        seen
    pd.testing.assert_frame_equal(metrics(flaky, "calm"), metrics(flaky, "stormy"))
    assert stormy.manifest["row_counts"] == base.manifest["row_counts"]
    assert stormy.manifest["input_fingerprint"] == base.manifest["input_fingerprint"]
    assert all(f["fingerprint"].startswith("etag=")
               for f in stormy.manifest["inputs"]["predictions"])


def test_persistent_fault_names_object_and_attempts(flaky):
    proxy = flaky["proxy"]
    proxy.clear()
    victim = f"/{BUCKET}/preds/part-2.parquet"
    proxy.add(lambda m, p: m == "GET" and p.startswith(victim), "503", times=None)
    try:
        with pytest.raises(InputError) as e:
            run_job(cfg(flaky, "broken", max_attempts=3))
    finally:
        hits = sum(1 for m, p, f in proxy.log if f == "503")
        proxy.clear()
    msg = str(e.value)
    assert "preds/part-2.parquet" in msg, msg
    assert "SlowDown after 3 attempts per request" in msg, msg
    assert hits >= 3  # botocore's 3 attempts (times s3fs's rounds) were made
    assert not flaky["fs"].exists(f"{BUCKET}/broken/metrics")


@pytest.mark.parametrize("change", ["rewrite", "delete"])
def test_file_changed_between_listing_and_reading_is_named(flaky, monkeypatch, change):
    fs = flaky["fs"]
    victim = f"{BUCKET}/preds/part-1.parquet"
    original = fs.cat(victim)
    real = ray_runner.aggregate

    def tamper_then_aggregate(plan, ds_info, *a, **k):
        if k.get("pool") is not None and a[1] == "current":
            if change == "delete":
                fs.rm(victim)
            else:  # same size, other bytes: only the ETag tells
                t = pq.read_table(io.BytesIO(original)).to_pandas()
                t["score"] = t["score"][::-1].to_numpy()
                buf = io.BytesIO()
                pq.write_table(pa.Table.from_pandas(t, preserve_index=False), buf)
                fs.pipe(victim, buf.getvalue())
        return real(plan, ds_info, *a, **k)

    monkeypatch.setattr(ray_runner, "aggregate", tamper_then_aggregate)
    try:
        with pytest.raises(InputError) as e:
            run_job(cfg(flaky, f"tampered-{change}"))
    finally:
        fs.pipe(victim, original)
    msg = str(e.value)
    assert victim in msg and ("gone" if change == "delete" else "etag=") in msg, msg
    assert not fs.exists(f"{BUCKET}/tampered-{change}/metrics")
