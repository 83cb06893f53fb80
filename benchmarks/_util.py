"""Helpers of bench_core.py and bench_engine.py: machine notes, CPU + wall timing, peak memory of
a process tree (a local Ray session descends from its driver) from /proc.

Nothing here is imported by the package or the tests.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/bench_x.py` from anywhere
    sys.path.insert(0, str(ROOT))


def load_average() -> str:
    """The 1/5/15-minute load averages (other processes on the machine distort timings)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def machine_notes() -> list[str]:
    """Lines describing the machine, the code and the numeric stack."""
    import numpy as np
    import pyarrow as pa

    try:
        git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        git = "?"
    mem = ""
    try:
        mem = f", {int(Path('/proc/meminfo').read_text().split()[1]) / 2**20:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    lines = [f"{os.cpu_count()} CPUs{mem}, python {platform.python_version()}, numpy "
             f"{np.__version__}, pyarrow {pa.__version__}, rayeval git {git}",
             f"load average (1/5/15 min) at start: {load_average()}"]
    blas = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")}
    lines.append(f"OPENBLAS env: {blas or 'none set'}")
    try:
        from threadpoolctl import threadpool_info

        for info in threadpool_info():
            lines.append(f"threadpool: {info.get('internal_api')} {info.get('version')} "
                         f"arch={info.get('architecture')} threads={info.get('num_threads')}")
    except ImportError:
        pass
    return lines


class Clock:
    """Wall and CPU time of a block: ``with Clock() as c: ...; c.wall, c.cpu`` (seconds).

    CPU time is this process's user + system time (all its threads): on a shared machine it is
    the better measure of work per core; wall time is what a user waits for.
    """

    def __enter__(self):
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._w
        self.cpu = time.process_time() - self._c
        return False


def _children_map() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        # the command name is in parentheses and may contain spaces: split after the last ')'
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        out.setdefault(ppid, []).append(int(d))
    return out


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (a local Ray session started by ``ray.init`` in this
    process: GCS, raylet, workers, actors and agents all descend from the driver)."""
    children = _children_map()
    todo, seen = [root], []
    while todo:
        pid = todo.pop()
        seen.append(pid)
        todo.extend(children.get(pid, []))
    return seen


def _mem_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB; PSS splits shared pages (object store) fairly."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, pss


class TreeMemorySampler:
    """Samples the summed RSS and PSS of a process tree in a background thread.

    ``peak_pss_mib`` is the headline figure: summed RSS counts the shared object-store pages
    once per process that maps them.
    """

    def __init__(self, root: int | None = None, interval: float = 0.2):
        self.root = root or os.getpid()
        self.interval = interval
        self.peak_rss = self.peak_pss = self.peak_driver = self.peak_procs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> tuple[int, int, int]:
        pids = process_tree(self.root)
        rss = pss = 0
        for pid in pids:
            r, p = _mem_kib(pid)
            rss += r
            pss += p
        return rss, pss, len(pids)

    def _run(self):
        tree, last_tree = [self.root], 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now - last_tree > 1.0:
                tree, last_tree = process_tree(self.root), now
            rss = pss = 0
            for pid in tree:
                r, p = _mem_kib(pid)
                rss += r
                pss += p
                if pid == self.root:
                    self.peak_driver = max(self.peak_driver, p)
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, len(tree))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False

    @property
    def peak_pss_mib(self) -> float:
        return self.peak_pss / 1024

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss / 1024

    @property
    def peak_driver_mib(self) -> float:
        return self.peak_driver / 1024
