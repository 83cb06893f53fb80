"""Load benchmark (issue 19): many Parquet files of mixed sizes, 20,000 slices, 100M rows.

One command (generates the data under ``--data`` unless a ``_SUCCESS`` marker with the same
parameters is there, then runs the job at rows/10 and at rows)::

    flock /work/heavy.lock .venv/bin/python benchmarks/bench_load.py [--rows 100000000] \
        [--files 2000] [--data /tmp/rayeval-load] [--cleanup]

Data (streamed: one file at a time, seeded per file, so any size is generated in bounded
memory and the same parameters give the same bytes): ``rows`` predictions in ``files`` Parquet
files of log-normal sizes (sigma 1.2: the largest file is ~100x the median), hive-partitioned
by ``date=`` over ``days`` days from 2024-01-01 (a Monday), every day several files; columns
``id`` (int64), ``timestamp`` (UTC), ``model`` (2 versions), ``store`` (``stores`` values,
Zipf-like: p ~ 1 / (rank + 5)), ``channel`` (4 values), ``label`` (0/1, 2% null = not arrived),
``score`` (float64 in (0, 1)), ``predicted`` (score >= 0.5). The marker records the generated
rows and missing labels.

Job: the real CLI entry (``python -m rayeval.cli run <config>``, a fresh process per size,
its own local Ray session): one binary task, slices overall + store + channel (``max_slices``
raised above ``stores``), weekly windows, labels in the same table, drift, report and MLflow
off. Measured per size: wall time of the whole process (Ray start-up included), rows/s, peak
memory of the process tree (the CLI process, Ray's GCS, raylet, workers and reducer actors:
summed PSS from /proc every 0.5 s, as ``_util.TreeMemorySampler``), where that peak was (per
process), the groups and rows of the metrics table, and the row accounting (metrics ``n_rows``
summed over the overall slice = generated rows; ``n_labeled`` = rows - missing labels; the
same over the store slices; the manifest's row counts).

"Peak memory bounded by slices x buckets, not rows": at rows vs rows/10 on the same files and
slices, memory must not grow ~10x; the script prints the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import ROOT, TreeMemorySampler, load_average, machine_notes, process_tree  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

START = np.datetime64("2024-01-01T00:00:00", "us")  # a Monday: weekly windows align
CHANNELS = ["web", "app", "shop", "phone"]
MODELS = ["m1", "m2"]
MISSING_LABEL = 0.02


# ---- data ---------------------------------------------------------------------------------------
def _params(rows: int, files: int, days: int, stores: int, seed: int) -> dict:
    return {"rows": rows, "files": files, "days": days, "stores": stores, "seed": seed,
            "version": 1}


def file_plan(rows: int, files: int, days: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows per file (log-normal sizes summing to ``rows``, each >= 1) and each file's day
    (every day gets ``files // days`` or one more files)."""
    rng = np.random.default_rng([seed, 0])
    w = rng.lognormal(0.0, 1.2, files)
    share = w / w.sum() * (rows - files)
    n = np.floor(share).astype(np.int64)
    n[np.argsort(share - n)[::-1][: rows - files - int(n.sum())]] += 1  # largest remainders
    n += 1
    assert int(n.sum()) == rows
    day = rng.permutation(np.arange(files) % days)
    return n, day


def generate(root: Path, rows: int, files: int, days: int, stores: int, seed: int = 0) -> dict:
    """Write the dataset under ``root`` (skipped when ``root/_SUCCESS`` holds the same
    parameters); returns the marker's content (parameters + generated counts)."""
    params = _params(rows, files, days, stores, seed)
    marker = root / "_SUCCESS"
    if marker.exists():
        done = json.loads(marker.read_text())
        if {k: done.get(k) for k in params} == params:
            return done
    if root.exists():
        shutil.rmtree(root)
    per_file, file_day = file_plan(rows, files, days, seed)
    ranks = np.arange(stores)
    store_p = 1.0 / (ranks + 5.0)
    store_p /= store_p.sum()
    store_names = pa.array([f"s{i:05d}" for i in range(stores)])
    chan_p = [0.55, 0.3, 0.1, 0.05]
    next_id = missing = 0
    t0 = time.perf_counter()
    counter = np.zeros(days, dtype=np.int64)
    for f in range(files):
        n, day = int(per_file[f]), int(file_day[f])
        rng = np.random.default_rng([seed, 1, f])
        ts = START + np.timedelta64(day, "D") + np.sort(
            rng.integers(0, 86_400_000_000, n)).astype("timedelta64[us]")
        model = rng.integers(0, 2, n).astype(np.int32)
        store = rng.choice(stores, n, p=store_p).astype(np.int32)
        chan = rng.choice(len(CHANNELS), n, p=chan_p).astype(np.int32)
        x = rng.normal(size=n) + 0.3 * (store % 7 - 3) / 3 + 0.1 * (chan == 1)
        truth = (rng.random(n) < 1 / (1 + np.exp(-1.5 * x))).astype(np.int64)
        noise = np.where(model == 0, 0.8, 1.1)
        score = 1 / (1 + np.exp(-(1.5 * x + noise * rng.normal(size=n))))
        late = rng.random(n) < MISSING_LABEL
        missing += int(late.sum())
        table = pa.table({
            "id": pa.array(np.arange(next_id, next_id + n, dtype=np.int64)),
            "timestamp": pa.array(ts, type=pa.timestamp("us", tz="UTC")),
            "model": pa.DictionaryArray.from_arrays(model, MODELS).cast(pa.string()),
            "store": pa.DictionaryArray.from_arrays(store, store_names).cast(pa.string()),
            "channel": pa.DictionaryArray.from_arrays(chan, CHANNELS).cast(pa.string()),
            "label": pa.array(truth, mask=late),
            "score": pa.array(score),
            "predicted": pa.array((score >= 0.5).astype(np.int64)),
        })
        next_id += n
        d = root / f"date={(START + np.timedelta64(day, 'D')).astype('datetime64[D]')}"
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, d / f"part-{counter[day]:03d}.parquet")
        counter[day] += 1
        del table
        if (f + 1) % 200 == 0:
            print(f"    {f + 1}/{files} files, {next_id:,} rows, "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    done = dict(params, missing_labels=missing, bytes=_du(root),
                largest_file_rows=int(per_file.max()), smallest_file_rows=int(per_file.min()),
                median_file_rows=int(np.median(per_file)),
                generate_seconds=round(time.perf_counter() - t0, 1))
    marker.write_text(json.dumps(done))
    print(f"  generated {rows:,} rows in {files} files under {root} ({done['generate_seconds']} s, "
          f"{done['bytes'] / 2**20:.0f} MiB)", flush=True)
    return done


def _du(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.parquet"))


def write_config(path: Path, data: Path, out: Path, stores: int) -> None:
    cfg = {
        "name": "load",
        "inputs": {"predictions": {"uri": str(data)}},
        "columns": {"id": "id", "timestamp": "timestamp", "model": "model"},
        "tasks": [{"name": "clf", "type": "binary", "label": "label", "prediction": "predicted",
                   "score": "score", "classes": [0, 1], "positive_class": 1}],
        "slices": {"overall": True, "columns": ["store", "channel"],
                   "max_slices": max(10_000, stores + 1000)},
        "windows": {"size": "week"},
        "drift": {"enabled": False},
        "outputs": {"path": str(out), "report": False, "mlflow": {"enabled": False}},
    }
    path.write_text(json.dumps(cfg, indent=1))  # JSON is YAML


# ---- measurement --------------------------------------------------------------------------------
class TreeSampler(TreeMemorySampler):
    """:class:`TreeMemorySampler` of another process's tree that also keeps each process's peak
    PSS (with its name) and a timeline of the summed PSS (where the memory went)."""

    def __init__(self, root: int, interval: float = 0.5):
        super().__init__(root, interval)
        self.per_pid: dict[int, tuple[int, str]] = {}
        self.timeline: list[tuple[float, int]] = []
        self.peak_at, self.at_peak = None, {}
        self.t0 = time.monotonic()

    def _run(self):
        from _util import _mem_kib

        tree, last_tree, last_tl = [self.root], 0.0, -10.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now - last_tree > 1.0:
                tree, last_tree = process_tree(self.root), now
            rss = pss = 0
            now_pss = {}
            for pid in tree:
                r, p = _mem_kib(pid)
                rss += r
                pss += p
                now_pss[pid] = p
                old = self.per_pid.get(pid)
                if old is None or p > old[0] + 16384:  # new, or grew by 16 MiB: (re)name it
                    self.per_pid[pid] = (p, _name(pid))
                elif p > old[0]:
                    self.per_pid[pid] = (p, old[1])
            self.peak_rss = max(self.peak_rss, rss)
            if pss > self.peak_pss:
                self.peak_pss, self.peak_at = pss, now - self.t0
                self.at_peak = now_pss
            self.peak_procs = max(self.peak_procs, len(tree))
            if now - last_tl >= 5.0:
                self.timeline.append((round(now - self.t0, 1), pss))
                last_tl = now
            self._stop.wait(self.interval)


def _name(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"
    if cmd.startswith("ray::"):
        return cmd.split()[0]
    for key in ("rayeval.cli", "default_worker.py", "gcs_server", "dashboard", "log_monitor",
                "runtime_env", "monitor.py", "raylet"):
        if key in cmd:
            return key
    return Path(cmd.split()[0]).name if cmd else "?"


def run_size(data: Path, marker: dict, work: Path, stores: int) -> dict:
    """Run the CLI job on ``data`` in a fresh process, sampling its tree; check the counts."""
    out = work / f"out-{marker['rows']}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = work / f"load-{marker['rows']}.yaml"
    write_config(cfg, data, out, stores)
    log = work / f"run-{marker['rows']}.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT), RAYEVAL_PROGRESS_SECONDS="30")
    load_before = load_average()
    t = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-u", "-m", "rayeval.cli", "run", str(cfg)],
                                stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
        with TreeSampler(proc.pid) as s:
            rc = proc.wait()
    wall = time.perf_counter() - t
    res = {"rows": marker["rows"], "rc": rc, "wall": wall, "peak_pss": s.peak_pss,
           "peak_rss": s.peak_rss, "procs": s.peak_procs, "load_before": load_before,
           "load_after": load_average(), "log": str(log),
           "peak_at": s.peak_at, "timeline": s.timeline}
    at_peak = s.at_peak
    res["at_peak"] = sorted(((p, s.per_pid.get(pid, (0, "?"))[1]) for pid, p in at_peak.items()),
                            reverse=True)[:8]
    res["per_process_peak"] = sorted(s.per_pid.values(), reverse=True)[:8]
    if rc in (0, 1, 3):
        res.update(check_outputs(out, marker))
    else:
        res["tail"] = log.read_text()[-3000:]
    shutil.rmtree(out, ignore_errors=True)
    return res


def check_outputs(out: Path, marker: dict) -> dict:
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    manifests = sorted((out / "manifests").glob("*.json"))
    man = json.loads(manifests[-1].read_text())
    ds = pads.dataset(out / "metrics", format="parquet", partitioning="hive")
    n_metric_rows = ds.count_rows()
    groups = ds.count_rows(filter=pc.field("metric") == "accuracy")
    cov = pads.dataset(out / "coverage", format="parquet", partitioning="hive").to_table(
        columns=["window_start", "slice", "n_rows", "n_labeled"])
    slices = cov.column("slice").to_numpy(zero_copy_only=False).astype(str)
    overall = slices == "overall"
    store = np.char.startswith(slices, "store=")
    n_rows = cov.column("n_rows").to_numpy(zero_copy_only=False)
    n_lab = cov.column("n_labeled").to_numpy(zero_copy_only=False)
    rows, missing = marker["rows"], marker["missing_labels"]
    counts = man.get("row_counts", {})
    res = {
        "metric_rows": n_metric_rows, "groups": groups, "coverage_groups": cov.num_rows,
        "store_groups": int(store.sum()), "distinct_store_slices": len(set(slices[store])),
        "windows": len(set(cov.column("window_start").to_pylist())),
        "overall_n_rows": int(n_rows[overall].sum()),
        "overall_n_labeled": int(n_lab[overall].sum()),
        "store_n_rows": int(n_rows[store].sum()), "store_n_labeled": int(n_lab[store].sum()),
        "row_counts": counts, "durations": man.get("durations", {}),
    }
    res["rows_ok"] = bool(
        res["overall_n_rows"] == rows and res["store_n_rows"] == rows
        and res["overall_n_labeled"] == rows - missing and res["store_n_labeled"] == rows - missing
        and counts.get("rows_read") == rows and counts.get("rows_evaluated") == rows
        and counts.get("rows_unlabeled") == missing)
    return res


def _fmt(r: dict) -> str:
    mib = r["peak_pss"] / 1024
    line = (f"  {r['rows']:>12,} rows: exit {r['rc']}, {r['wall']:7.1f} s wall, "
            f"{r['rows'] / r['wall'] / 1e6:5.2f} M rows/s, {r['wall'] / r['rows'] * 1e9:6.0f} "
            f"ns/row; peak PSS {mib:7.0f} MiB (RSS sum {r['peak_rss'] / 1024:.0f}, <= "
            f"{r['procs']} processes, peak at {r['peak_at'] or 0:.0f} s); load "
            f"{r['load_before']} -> {r['load_after']}")
    if "groups" in r:
        line += (f"\n      metrics table: {r['metric_rows']:,} rows, {r['groups']:,} groups "
                 f"(model x window x slice with >= 1 labelled row); coverage table: "
                 f"{r['coverage_groups']:,} groups ({r['store_groups']:,} of the store slices, "
                 f"{r['distinct_store_slices']:,} distinct stores, {r['windows']} windows), "
                 f"n_rows / n_labeled summed: overall {r['overall_n_rows']:,} / "
                 f"{r['overall_n_labeled']:,}, store slices {r['store_n_rows']:,} / "
                 f"{r['store_n_labeled']:,}; every row accounted (coverage sums and the "
                 f"manifest's rows_read / rows_evaluated = rows, rows_unlabeled = missing labels):"
                 f" {'YES' if r['rows_ok'] else 'NO'}"
                 f"\n      stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in
                                                    r["durations"].items())
                 + "\n      manifest row_counts: " + json.dumps(r["row_counts"]))
    line += ("\n      at the peak (PSS MiB): " + ", ".join(
        f"{n} {p / 1024:.0f}" for p, n in r["at_peak"]))
    line += ("\n      per-process peaks (PSS MiB): " + ", ".join(
        f"{n} {p / 1024:.0f}" for p, n in r["per_process_peak"]))
    line += ("\n      timeline (s: MiB): " + " ".join(
        f"{t:.0f}:{p / 1024:.0f}" for t, p in r["timeline"]))
    if "tail" in r:
        line += "\n      FAILED; log tail:\n" + r["tail"]
    return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000_000)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--stores", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=Path("/tmp/rayeval-load"),
                    help="folder of the generated data (kept and reused unless --cleanup)")
    ap.add_argument("--sizes", default="small,big",
                    help="which runs: small (rows/10), big (rows), comma-separated")
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--cleanup", action="store_true", help="delete --data at the end")
    args = ap.parse_args()

    print("== rayeval load benchmark (issue 19) ==")
    for line in machine_notes():
        print("  " + line)
    print(f"  uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    sizes = [s for s in args.sizes.split(",") if s]
    todo = {"small": max(args.rows // 10, args.files), "big": args.rows}
    args.data.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        markers = {}
        for name in sizes:
            n = todo[name]
            markers[name] = generate(args.data / f"rows_{n}_files_{args.files}", n, args.files,
                                     args.days, args.stores, args.seed)
            m = markers[name]
            print(f"  data {name}: {n:,} rows, {args.files} files ({m['smallest_file_rows']:,} .. "
                  f"{m['largest_file_rows']:,} rows, median {m['median_file_rows']:,}), "
                  f"{m['bytes'] / 2**20:.0f} MiB, {args.days} days, {args.stores:,} stores, "
                  f"{m['missing_labels']:,} missing labels", flush=True)
        if args.generate_only:
            return
        print("\n-- the CLI job (python -m rayeval.cli run), one fresh process per size; peak = "
              "summed PSS of its process tree (Ray included), sampled every 0.5 s --", flush=True)
        for name in sizes:
            d = args.data / f"rows_{todo[name]}_files_{args.files}"
            r = results[name] = run_size(d, markers[name], args.data, args.stores)
            print(_fmt(r), flush=True)
            (args.data / f"result-{todo[name]}.json").write_text(json.dumps(r, default=str))
        if "small" in results and "big" in results and "groups" in results["big"]:
            a, b = results["small"], results["big"]
            print(f"\n  rows x{b['rows'] / a['rows']:.0f}: peak PSS x{b['peak_pss'] / a['peak_pss']:.2f}"
                  f" ({a['peak_pss'] / 1024:.0f} -> {b['peak_pss'] / 1024:.0f} MiB), wall "
                  f"x{b['wall'] / a['wall']:.2f}, time per row {a['wall'] / a['rows'] * 1e9:.0f} -> "
                  f"{b['wall'] / b['rows'] * 1e9:.0f} ns; groups {a.get('groups', 0):,} -> "
                  f"{b['groups']:,}")
        print(f"\n  load average after: {load_average()}")
    finally:
        if args.cleanup:
            shutil.rmtree(args.data, ignore_errors=True)


if __name__ == "__main__":
    main()
