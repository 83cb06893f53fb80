"""Driver for tests/test_worker_loss.py, run in its own process (it owns a multi-node Ray from
``ray.cluster_utils.Cluster``): runs one job undisturbed, then the same job while a reducer
actor's process is SIGKILLed (``kill=process``) or the worker node it runs on is removed
(``kill=node``) in the middle of the scan, and prints both runs' results as JSON.

    python tests/worker_loss_driver.py <preds dir> <out dir> <process|node> <pass_retries>
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from rayeval.config import load_config  # noqa: E402
from rayeval.engine.run import run_job  # noqa: E402
from tests.synth import job_dict  # noqa: E402


def _procs() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process (from /proc; no psutil here)."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        out[int(d)] = (ppid, cmd)
    return out


def reducer_pids() -> list[tuple[int, int]]:
    """``(pid, parent pid)`` of this driver's descendants whose title says they run
    ``Reducer.reduce``."""
    procs = _procs()
    mine, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {p for p, (pp, _) in procs.items() if pp in frontier} - mine
        mine |= frontier
    return [(p, procs[p][0]) for p in sorted(mine) if procs[p][1].startswith("ray::Reducer.reduce")]


def main() -> None:
    preds, out, kill, retries = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=2) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="ERROR",
             runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
    data = job_dict(preds, None, out, windows={"size": "week"})
    data["ray"] = {"actors": 3, "actor_num_cpus": 0.5, "batch_size": 400,
                   "pass_retries": retries}

    calm = run_job(load_config(data=data | {"run_id": "calm"}))
    killed: dict = {}

    def killer():
        deadline = time.time() + 300
        while time.time() < deadline:
            procs = reducer_pids()
            if procs:
                time.sleep(0.5)  # well inside the scan: the actors hold partial states
                victim, raylet = procs[0]
                killed["pid"] = victim
                if kill == "process":
                    os.kill(victim, signal.SIGKILL)
                else:  # the worker node whose raylet is the victim's parent
                    for node in workers:
                        if node.all_processes["raylet"][0].process.pid == raylet:
                            cluster.remove_node(node, allow_graceful=False)
                            killed["node"] = node.unique_id
                            cluster.add_node(num_cpus=2)  # capacity for the restarted pass
                            break
                    else:
                        os.kill(victim, signal.SIGKILL)  # on the head: kill the process
                        killed["fallback"] = "head node: process killed"
                return
            time.sleep(0.02)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    result: dict = {"calm": {"rows": calm.manifest["row_counts"],
                             "metrics": calm.finalized.metrics.drop(columns=["run_id"])
                             .to_json(orient="split", double_precision=15)}}
    try:
        hit = run_job(load_config(data=data | {"run_id": "hit"}))
        result["hit"] = {"rows": hit.manifest["row_counts"],
                         "restarts": [p.get("restarts") for p in hit.manifest["passes"]],
                         "metrics": hit.finalized.metrics.drop(columns=["run_id"])
                         .to_json(orient="split", double_precision=15)}
    except Exception as e:  # noqa: BLE001 - reported to the test
        result["error"] = f"{type(e).__name__}: {e}"
    t.join(5)
    result["killed"] = killed
    print("RESULT " + json.dumps(result))
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main()
