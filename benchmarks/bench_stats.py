"""Cost of intervals and the champion vs challenger comparison on the flights main job.

One command (from the repository root)::

    flock /work/heavy.lock .venv/bin/python benchmarks/bench_stats.py --data DIR [--repeat 2]

``--data`` is a prepared flights dataset (``examples/flights/prepare.py --out DIR``). In one
run, alternating, each a separate whole process (``rayeval run``, Ray start-up and shutdown,
writes, report, MLflow in a fresh sqlite store), wall time, CPU seconds and peak PSS of the
process tree (``_measure.py``):

(a) ``configs/flights.yaml`` with ``intervals.enabled=false``, no comparison and only the
    threshold gates on values (the job without the statistics);
(b) ``configs/flights.yaml`` as shipped: intervals (B = 200), the champion vs challenger
    comparison and the gates on them.

Prints both, the ratio (b) / (a) (target <= 1.5) and the size of (b)'s outputs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import REPO, clean_env, require_ok, run_measured, uptime  # noqa: E402

PLAIN_GATES = [{"name": "auc-floor", "task": "delayed", "metric": "roc_auc", "min": 0.6},
               {"name": "calibration", "task": "delayed", "metric": "ece", "max": 0.1}]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--work", default=tempfile.mkdtemp(prefix="rayeval-bench-stats-"))
    args = ap.parse_args()
    with open(os.path.join(REPO, "configs", "flights.yaml")) as f:
        cfg = yaml.safe_load(f)
    cfg["inputs"]["predictions"]["uri"] = os.path.join(args.data, "predictions")
    cfg["inputs"]["labels"]["uri"] = os.path.join(args.data, "labels")
    plain = dict(cfg, intervals={"enabled": False}, gates=PLAIN_GATES)
    plain.pop("comparisons", None)
    configs = {"(a) without intervals/comparison": plain,
               "(b) intervals B=200 + comparison": cfg}
    print(uptime())
    results: dict[str, list] = {k: [] for k in configs}
    for i in range(args.repeat):
        for name, c in configs.items():
            out = os.path.join(args.work, f"out{i}-{name[1]}")
            shutil.rmtree(out, ignore_errors=True)
            c = dict(c, outputs=dict(c["outputs"], path=out))
            path = os.path.join(args.work, f"{name[1]}.yaml")
            with open(path, "w") as f:
                yaml.safe_dump(c, f)
            # this checkout's code with the running interpreter (a worktree has no .venv)
            m = run_measured(name, [sys.executable, "-m", "rayeval.cli", "run", path],
                             lock=False, env=clean_env({"PYTHONPATH": REPO}))
            require_ok(m, ok=(0, 1))
            results[name].append(m)
    a, b = (min(v, key=lambda m: m.wall_s) for v in results.values())
    print(f"best of {args.repeat}: (a) {a.wall_s:.1f} s wall, {a.cpu_s:.1f} s CPU, "
          f"{a.peak_pss / 2**30:.2f} GiB PSS; (b) {b.wall_s:.1f} s wall, {b.cpu_s:.1f} s CPU, "
          f"{b.peak_pss / 2**30:.2f} GiB PSS")
    print(f"ratio (b)/(a): wall {b.wall_s / a.wall_s:.2f}x, CPU {b.cpu_s / a.cpu_s:.2f}x, "
          f"peak PSS {b.peak_pss / a.peak_pss:.2f}x (target <= 1.5x wall)")
    print(uptime())


if __name__ == "__main__":
    main()
