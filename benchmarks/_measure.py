"""Shared helpers for the benchmarks: whole-process measurement (wall time, peak memory of the
process tree from /proc), the benchmark lock, machine notes.

Memory: every ``interval`` seconds the tree rooted at the started process (children, Ray's GCS,
raylet and workers included) is walked through ``/proc/*/stat`` and each process's
``/proc/PID/smaps_rollup`` is read. Two peaks are reported: the sum of RSS (over-counts pages
shared between processes, e.g. Ray's object store in /dev/shm mapped by several workers) and the
sum of PSS (each shared page split between the processes mapping it: the tree's real footprint).
CPU time: the sum over the tree's processes of their last sampled user + system time
(``/proc/PID/stat``; a process's last < ``interval`` seconds can be missed), less sensitive than
wall time to other load on a shared machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

LOCK_PATH = "/tmp/rayeval-bench.lock"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_PY = os.path.join(REPO, ".venv", "bin", "python")
RAYEVAL = os.path.join(REPO, ".venv", "bin", "rayeval")


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        # comm may contain spaces/parens: the ppid is the 2nd field after the last ')'
        ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def process_tree(root: int) -> list[int]:
    kids = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def _rss_pss(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return rss, pss


@dataclass
class TreeSampler:
    """Samples the RSS/PSS sums of a process tree in a background thread."""

    root: int
    interval: float = 0.5
    peak_rss: int = 0
    peak_pss: int = 0
    max_procs: int = 0
    samples: int = 0
    cpu: dict = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> None:
        pids = process_tree(self.root)
        rss = pss = 0
        for pid in pids:
            r, p = _rss_pss(pid)
            rss += r
            pss += p
            self.cpu[pid] = max(self.cpu.get(pid, 0.0), _cpu_seconds(pid))
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, pss)
        self.max_procs = max(self.max_procs, len(pids))
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._thread.join()


@dataclass
class Measured:
    name: str
    cmd: list[str]
    wall_s: float
    returncode: int
    peak_rss: int
    peak_pss: int
    max_procs: int
    cpu_s: float
    stdout: str
    stderr: str
    load_before: str
    load_after: str

    def row(self) -> str:
        return (f"{self.name:<44s} {self.wall_s:9.1f} s   CPU {self.cpu_s:7.1f} s   peak PSS {gib(self.peak_pss):6.2f} GiB"
                f"   peak RSS-sum {gib(self.peak_rss):6.2f} GiB   procs {self.max_procs}")


def gib(n: int) -> float:
    return n / 2**30


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return f"load average: {loadavg()}"


def _ancestors() -> set[int]:
    out, pid = set(), os.getpid()
    while pid > 1:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            break
        pid = int(stat[stat.rfind(")") + 2:].split()[1])
        out.add(pid)
    return out


def _held_by_ancestor(path: str) -> bool:
    """True when an ancestor process (e.g. ``flock LOCK cmd`` running this script) holds the
    flock on ``path``: taking it again would wait forever."""
    try:
        ino = os.stat(path).st_ino
        with open("/proc/locks") as f:
            holders = [int(line.split()[4]) for line in f
                       if "->" not in line and " FLOCK " in line
                       and line.split()[5].endswith(f":{ino}")]
    except (OSError, ValueError, IndexError):
        return False
    return bool(set(holders) & _ancestors())


@contextlib.contextmanager
def bench_lock(enabled: bool = True):
    """Hold ``/tmp/rayeval-bench.lock`` (same lock as ``flock /tmp/rayeval-bench.lock cmd``);
    a no-op when the script already runs under ``flock`` on that lock."""
    if not enabled:
        yield
        return
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if _held_by_ancestor(LOCK_PATH):
                yield  # already serialised by an enclosing `flock` (finally closes fd)
                return
            print(f"  (waiting for {LOCK_PATH} ...)", flush=True)
            t = time.time()
            fcntl.flock(fd, fcntl.LOCK_EX)
            print(f"  (got the lock after {time.time() - t:.0f} s)", flush=True)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def clean_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)  # always a fresh local Ray, never someone else's cluster
    env.setdefault("RAY_DEDUP_LOGS", "1")
    env.update(extra or {})
    return env


def run_measured(name: str, cmd: list[str], *, lock: bool = True, env: dict | None = None,
                 cwd: str = REPO, interval: float = 0.5, echo: bool = True) -> Measured:
    """Run ``cmd`` under the benchmark lock; wall time (lock wait excluded) and memory peaks."""
    with bench_lock(lock):
        before = loadavg()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env or clean_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        with TreeSampler(proc.pid, interval) as s:
            out, err = proc.communicate()
        wall = time.perf_counter() - t0
        after = loadavg()
    m = Measured(name, cmd, wall, proc.returncode, s.peak_rss, s.peak_pss, s.max_procs,
                 sum(s.cpu.values()), out, err, before, after)
    if echo:
        print(m.row() + f"   load {before} -> {after}   rc={proc.returncode}", flush=True)
    return m


def require_ok(m: Measured, ok=(0,)) -> None:
    if m.returncode not in ok:
        sys.stderr.write(m.stdout[-4000:] + "\n" + m.stderr[-8000:] + "\n")
        raise SystemExit(f"{m.name}: exit code {m.returncode}")
