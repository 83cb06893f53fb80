"""MLflow logging of one run, as ``rayeval run`` does it, against a fresh sqlite store in the
output folder (the default): wall seconds per phase, and the same logging split in two as the
engine does it now (``start_run`` while the scan runs, ``finish_run`` after the write).

    python benchmarks/bench_mlflow.py [--keys 300] [--windows 21] [--repeat 3]

Synthetic payload of a flights-sized run: ``--keys`` metric keys x ``--windows`` steps of
metric history, the flights config's ~150 params, 9 artifact files of 10-500 kB. Each repeat
uses a new folder (so the sqlite store is created, as on a first run), in a fresh process for
the import time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from _util import ROOT, machine_notes

CHILD = r"""
import json, os, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
from rayeval.io import mlflow_writer as mw
out, keys, windows, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
params = {{f"section{{i // 10}}.key{{i}}": "value" * 3 for i in range(150)}}
tags = {{"rayeval.run_id": "bench", "rayeval.gates": "passed"}}
hist = [(f"task/model{{k % 2}}/metric{{k}}", 0.5 + k * 1e-3, 1000 * w, w)
        for k in range(keys) for w in range(windows)]
arts = []
for i, size in enumerate([10, 20, 50, 100, 200, 500, 300, 30, 40]):
    d = os.path.join(out, f"table{{i}}")
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, "bench.parquet")
    with open(p, "wb") as f:
        f.write(os.urandom(size * 1024))
    arts.append((p, f"table{{i}}"))
uri = "sqlite:///" + os.path.join(out, "mlflow.db")
art = "file://" + os.path.join(out, "mlartifacts")
t1 = time.perf_counter()
if mode == "one_call":
    rid = mw.log_run(uri, "bench", "bench", params, tags, hist, arts, artifact_location=art)
    t2 = t3 = time.perf_counter()
else:
    run = mw.start_run(uri, "bench", "bench", params, artifact_location=art)
    t2 = time.perf_counter()
    time.sleep(0)  # the scan would run here
    rid = mw.finish_run(run, tags, hist, arts)
    t3 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "before_scan_s": t2 - t1, "after_write_s": t3 - t2,
                  "metrics": len(hist)}}))
"""


def one(mode: str, keys: int, windows: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-mlflow-") as d:
        code = CHILD.format(root=str(ROOT))
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", code, d, str(keys), str(windows), mode],
                           capture_output=True, text=True, env=dict(os.environ))
        wall = time.perf_counter() - t0
        if r.returncode:
            raise SystemExit(r.stderr[-3000:])
        res = json.loads(r.stdout.strip().splitlines()[-1])
        res["process_s"] = wall
        return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=300)
    ap.add_argument("--windows", type=int, default=21)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    for line in machine_notes():
        print(line)
    for mode in ("one_call", "split"):
        for i in range(args.repeat):
            r = one(mode, args.keys, args.windows)
            print(f"{mode:9s} #{i}: import {r['import_s']:.2f}s, before scan "
                  f"{r['before_scan_s']:.2f}s, after write {r['after_write_s']:.2f}s "
                  f"({r['metrics']:,} metric values), process {r['process_s']:.2f}s")


if __name__ == "__main__":
    main()
