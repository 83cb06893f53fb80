"""Engine benchmark: the full rayeval Ray job against the best read-only pass over the same data.

One command (generates the data into a temp dir unless ``--data`` points at an earlier one)::

    .venv/bin/python benchmarks/bench_engine.py [--rows 30000000] [--data /tmp/rayeval-bench-data]

In ONE local Ray session (``ray.init`` once; its 3-4 s start-up is in no figure below):

(a) Ray Data read-only passes over the job's columns with the reader settings from
    ``shared/NOTES.md`` (DataSource V1 + explicit file list + ``override_num_blocks``; V2 with
    2 footer actors and small blocks), each twice; the fastest single pass is the baseline;
(b) a raw pyarrow scan of the same files and columns (threaded dataset scan, streamed);
(c) ``run_job`` (binary + regression tasks, 3 slice columns + 1 cross, weekly windows, labels
    in the same table, report and MLflow off) with ``ray.actors`` 1 (1 CPU) and 2 (0.5 CPU
    each: the engine keeps 1 CPU free for Ray Data's sampling and read tasks);

then prints wall times and job/read ratios (target <= 1.25x), and the peak memory of the
whole Ray session (driver + GCS + raylet + workers, summed PSS from ``/proc``) while the job
runs on rows/10 vs rows (target: grows < 10%).

Data: ``rows`` predictions over 180 days (2024-01-01 ..), hive-partitioned by ``date=``, one
file per day; columns id (int64), timestamp (UTC), model (2 versions), region (20 values),
segment (4), device (3), label (int 0/1, 5% missing = late), predicted, score, target,
predicted_value.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import Clock, TreeMemorySampler, load_average, machine_notes  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.dataset as pads  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

DAYS = 180
START = np.datetime64("2024-01-01T00:00:00", "us")
REGIONS = [f"region_{i:02d}" for i in range(20)]
SEGMENTS = ["consumer", "smb", "enterprise", "public"]
DEVICES = ["web", "ios", "android"]


# ---- data ---------------------------------------------------------------------------------------
def generate(root: Path, rows: int, seed: int = 0) -> Path:
    """Write ``rows`` predictions as ``root/date=YYYY-MM-DD/part-0.parquet`` (one file a day).
    Skips the work when ``root/_SUCCESS`` says the same row count is already there."""
    marker = root / "_SUCCESS"
    if marker.exists() and marker.read_text().strip() == str(rows):
        return root
    if root.exists():
        shutil.rmtree(root)
    rng = np.random.default_rng(seed)
    per_day = np.full(DAYS, rows // DAYS)
    per_day[: rows % DAYS] += 1
    region_w = rng.dirichlet(np.full(len(REGIONS), 2.0))
    next_id = 0
    t0 = time.perf_counter()
    for day in range(DAYS):
        n = int(per_day[day])
        ts = START + np.timedelta64(day, "D") + np.sort(
            rng.integers(0, 86_400_000_000, n)).astype("timedelta64[us]")
        model = rng.integers(0, 2, n)
        region = rng.choice(len(REGIONS), n, p=region_w)
        segment = rng.choice(len(SEGMENTS), n, p=[0.5, 0.3, 0.15, 0.05])
        device = rng.integers(0, len(DEVICES), n)
        x = rng.normal(size=n) + 0.02 * (region - 10) + 0.002 * day
        truth = (rng.random(n) < 1 / (1 + np.exp(-1.5 * x))).astype(np.int64)
        noise = np.where(model == 0, 0.8, 1.1)
        score = 1 / (1 + np.exp(-(1.5 * x + noise * rng.normal(size=n))))
        target = 10 * x + rng.normal(scale=3, size=n)
        late = rng.random(n) < 0.05  # label not arrived yet
        table = pa.table({
            "id": pa.array(np.arange(next_id, next_id + n, dtype=np.int64)),
            "timestamp": pa.array(ts, type=pa.timestamp("us", tz="UTC")),
            "model": pa.DictionaryArray.from_arrays(model.astype(np.int32),
                                                    ["v1", "v2"]).cast(pa.string()),
            "region": pa.array(np.array(REGIONS)[region]),
            "segment": pa.array(np.array(SEGMENTS)[segment]),
            "device": pa.array(np.array(DEVICES)[device]),
            "label": pa.array(truth, mask=late),
            "predicted": pa.array((score >= 0.5).astype(np.int64)),
            "score": pa.array(score),
            "target": pa.array(target, mask=late),
            "predicted_value": pa.array(10 * x + noise * rng.normal(scale=4, size=n)),
        })
        next_id += n
        d = root / f"date={(START + np.timedelta64(day, 'D')).astype('datetime64[D]')}"
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, d / "part-0.parquet")
    marker.write_text(str(rows))
    print(f"  generated {rows:,} rows in {DAYS} files under {root} "
          f"({time.perf_counter() - t0:.1f} s, {_du(root) / 2**20:.0f} MiB)")
    return root


def _du(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.parquet"))


def job_config(pred_dir: Path, out: Path, actors: int, actor_num_cpus: float):
    from rayeval.config import load_config

    return load_config(data={
        "name": "bench",
        "inputs": {"predictions": {"uri": str(pred_dir)}},
        "columns": {"id": "id", "timestamp": "timestamp", "model": "model"},
        "tasks": [
            {"name": "clf", "type": "binary", "label": "label", "prediction": "predicted",
             "score": "score", "classes": [0, 1], "positive_class": 1},
            {"name": "reg", "type": "regression", "label": "target",
             "prediction": "predicted_value"},
        ],
        "slices": {"columns": ["region", "segment", "device"], "crosses": [["region", "segment"]]},
        "windows": {"size": "week"},
        "outputs": {"path": str(out), "report": False, "mlflow": {"enabled": False}},
        "ray": {"actors": actors, "actor_num_cpus": actor_num_cpus},
    })


def job_columns(pred_dir: Path) -> tuple[list[str], list[str]]:
    """The columns the job reads (as run_job computes them) and the file list."""
    from rayeval.engine.run import required_prediction_columns
    from rayeval.io.readers import inspect_dataset

    cfg = job_config(pred_dir, Path(tempfile.gettempdir()) / "unused", 1, 1.0)
    info = inspect_dataset(str(pred_dir), cfg.inputs.storage)
    req = required_prediction_columns(cfg, labels_separate=False)
    if cfg.columns.id in info.schema.names:
        req.setdefault(cfg.columns.id, "id")
    return list(req), info.paths


# ---- read baselines -----------------------------------------------------------------------------
def ray_read_pass(paths: list[str], columns: list[str], v2: bool, num_blocks: int | None,
                  block_mib: int, footer_actors: int = 2,
                  read_cpus: float | None = None) -> tuple[float, int, int]:
    """One Ray Data pass that reads every block into the object store and drops it.

    Returns (wall seconds, rows, blocks)."""
    import ray.data
    from ray.data import DataContext

    import logging

    for name in ("ray.data", "ray.data._internal"):
        logging.getLogger(name).setLevel(logging.WARNING)
    ctx = DataContext.get_current()
    ctx.use_datasource_v2 = v2
    ctx.target_max_block_size = block_mib * 2**20
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    os.environ["RAY_DATA_PARQUET_FOOTER_NUM_ACTORS"] = str(footer_actors)
    t = time.perf_counter()
    kwargs = {"override_num_blocks": num_blocks} if num_blocks else {}
    if read_cpus:
        kwargs["num_cpus"] = read_cpus
    with warnings.catch_warnings():  # `columns=` (as the engine passes it) is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        ds = ray.data.read_parquet(paths, columns=columns, partitioning=None, **kwargs)
    rows = blocks = 0
    for bundle in ds.iter_internal_ref_bundles():
        rows += bundle.num_rows()
        blocks += len(bundle.block_refs)
    return time.perf_counter() - t, rows, blocks


def pyarrow_scan(paths: list[str], columns: list[str], how: str) -> tuple[float, int]:
    t = time.perf_counter()
    rows = 0
    if how == "dataset.to_batches(threads)":
        for b in pads.dataset(paths, format="parquet").to_batches(columns=columns,
                                                                  use_threads=True):
            rows += b.num_rows
    elif how == "dataset.to_table(threads)":
        rows = pads.dataset(paths, format="parquet").to_table(columns=columns).num_rows
    else:  # one file after another, each read with threads
        for p in paths:
            rows += pq.read_table(p, columns=columns).num_rows
    return time.perf_counter() - t, rows


# ---- job ----------------------------------------------------------------------------------------
def run_job_measured(pred_dir: Path, actors: int, cpus: float, sample_memory: bool):
    from rayeval.engine.run import run_job

    out = Path(tempfile.mkdtemp(prefix="rayeval-bench-out-"))
    try:
        cfg = job_config(pred_dir, out, actors, cpus)
        sampler = TreeMemorySampler(interval=0.2) if sample_memory else None
        t = time.perf_counter()
        if sampler:
            with sampler:
                res = run_job(cfg)
        else:
            res = run_job(cfg)
        wall = time.perf_counter() - t
        n_metrics = len(res.finalized.metrics)
        rows = res.manifest["row_counts"].get("rows_evaluated", 0)
        return wall, res.durations, n_metrics, rows, sampler
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=30_000_000)
    ap.add_argument("--data", type=Path, default=None,
                    help="folder for the generated data (kept and reused); default: a temp dir "
                         "under /tmp, removed at the end")
    ap.add_argument("--repeat", type=int, default=2, help="passes per read configuration")
    ap.add_argument("--sections", default="read,job,memory",
                    help="comma-separated subset of read,job,memory (job needs read)")
    ap.add_argument("--profile-plan", type=int, default=0, metavar="ROWS",
                    help="only cProfile (CPU time) EvalPlan.batch_partial, no Ray, on the first "
                         "ROWS rows of the data (one batch) and print the top functions")
    ap.add_argument("--memory-child", nargs=3, metavar=("DIR", "ACTORS", "CPUS"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        return _memory_child(Path(args.memory_child[0]), int(args.memory_child[1]),
                             float(args.memory_child[2]))
    sections = set(args.sections.split(","))

    print("== rayeval engine benchmark ==")
    for line in machine_notes():
        print("  " + line)
    keep = args.data is not None
    base = args.data or Path(tempfile.mkdtemp(prefix="rayeval-bench-data-", dir="/tmp"))
    small_rows = max(args.rows // 10, DAYS)
    try:
        big = generate(base / f"preds_{args.rows}", args.rows)
        columns, paths = job_columns(big)
        print(f"  data: {args.rows:,} rows, {len(paths)} files, {_du(big) / 2**20:.0f} MiB; "
              f"columns read: {', '.join(columns)}", flush=True)
        if args.profile_plan:
            return _profile_plan(big, columns, paths, args.profile_plan)
        best_job = (None, 2, 0.5)
        if "read" in sections:
            best_job = _run(args, big, columns, paths, "job" in sections) or best_job
        if "memory" in sections:
            small = generate(base / f"preds_{small_rows}", small_rows)
            _memory(args, small, small_rows, big, best_job[1], best_job[2])
        print(f"\n  load average after: {load_average()}")
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


def _profile_plan(pred_dir: Path, columns: list[str], paths: list[str], rows: int) -> None:
    """Where an actor's CPU goes: cProfile of one ``EvalPlan.batch_partial`` call (the whole
    per-batch pipeline of the job's config) on ``rows`` rows, no Ray."""
    import cProfile
    import io
    import pstats

    from rayeval.engine.plan import EvalPlan

    tables, n = [], 0
    for p in paths:
        tables.append(pq.read_table(p, columns=columns))
        n += tables[-1].num_rows
        if n >= rows:
            break
    table = pa.concat_tables(tables).slice(0, rows)
    plan = EvalPlan(job_config(pred_dir, Path(tempfile.gettempdir()) / "unused", 1, 1.0))
    plan.batch_partial(table.slice(0, 10_000))  # warm-up (imports, first calls)
    pr = cProfile.Profile(time.process_time)
    with Clock() as c:
        pr.enable()
        plan.batch_partial(table)
        pr.disable()
    print(f"\n-- cProfile (CPU time) of EvalPlan.batch_partial on {table.num_rows:,} rows: "
          f"{c.cpu:.2f} s CPU ({table.num_rows / c.cpu / 1e6:.2f} M rows/s/core), "
          f"{c.wall:.2f} s wall --")
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(pr, stream=buf).sort_stats(key).print_stats(25)
        print(buf.getvalue())


def _memory_child(pred_dir: Path, actors: int, cpus: float) -> None:
    """In a fresh process: start Ray, sample the idle session, run the job while sampling the
    whole process tree; print one JSON line."""
    import json
    import logging

    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
             configure_logging=True)
    try:
        time.sleep(2.0)  # let the session's helper processes settle
        idle = TreeMemorySampler().sample()
        wall, _, _, rows, s = run_job_measured(pred_dir, actors, cpus, True)
        print("MEMORY_RESULT " + json.dumps({
            "rows": rows, "wall": wall, "idle_pss": idle[1], "idle_rss": idle[0],
            "peak_pss": s.peak_pss, "peak_rss": s.peak_rss, "peak_driver": s.peak_driver,
            "procs": s.peak_procs}), flush=True)
    finally:
        ray.shutdown()


def _memory(args, small: Path, small_rows: int, big: Path, actors: int, cpus: float) -> None:
    import json
    import subprocess

    print(f"\n-- peak memory of a whole fresh Ray session (driver + GCS + raylet + workers, "
          f"summed PSS from /proc, sampled every 0.2 s) while the job runs; actors={actors}, "
          f"actor_num_cpus={cpus}; one new process per size --", flush=True)
    res = {}
    for n, d in ((small_rows, small), (args.rows, big)):
        out = subprocess.run([sys.executable, "-u", __file__, "--memory-child", str(d),
                              str(actors), str(cpus)], capture_output=True, text=True)
        line = [x for x in out.stdout.splitlines() if x.startswith("MEMORY_RESULT ")]
        if out.returncode != 0 or not line:
            print(f"  {n:,} rows: FAILED (exit {out.returncode})\n{out.stderr[-2000:]}")
            return
        r = res[n] = json.loads(line[0].split(" ", 1)[1])
        print(f"  {n:>12,} rows: peak PSS {r['peak_pss'] / 1024:7.0f} MiB (idle session "
              f"{r['idle_pss'] / 1024:5.0f} MiB; RSS sum {r['peak_rss'] / 1024:7.0f} MiB; driver "
              f"PSS {r['peak_driver'] / 1024:6.0f} MiB; <= {r['procs']} processes), job "
              f"{r['wall']:.1f} s", flush=True)
    a, b = res[small_rows], res[args.rows]
    print(f"  growth {small_rows:,} -> {args.rows:,} rows: peak PSS "
          f"{(b['peak_pss'] / a['peak_pss'] - 1) * 100:+.1f}%, RSS "
          f"{(b['peak_rss'] / a['peak_rss'] - 1) * 100:+.1f}%; above the idle session: "
          f"{(a['peak_pss'] - a['idle_pss']) / 1024:.0f} -> "
          f"{(b['peak_pss'] - b['idle_pss']) / 1024:.0f} MiB (target: grows < 10%)")


def _run(args, big, columns, paths, with_jobs: bool):
    import logging

    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
             configure_logging=True)
    try:
        print(f"\n-- (a) Ray Data read-only pass, {len(columns)} columns (best of "
              f"{args.repeat}) --")
        configs = [
            ("V1, explicit files, override_num_blocks=#files, 16 MiB blocks",
             dict(v2=False, num_blocks=len(paths), block_mib=16)),
            ("V1, explicit files, override_num_blocks=#files, 16 MiB blocks, 0.25 CPU/read",
             dict(v2=False, num_blocks=len(paths), block_mib=16, read_cpus=0.25)),
            ("V1, explicit files, override_num_blocks=16, 16 MiB blocks",
             dict(v2=False, num_blocks=16, block_mib=16)),
            ("V1, explicit files, override_num_blocks=16, 16 MiB blocks, 0.25 CPU/read",
             dict(v2=False, num_blocks=16, block_mib=16, read_cpus=0.25)),
            ("V1, explicit files, override_num_blocks=8, 128 MiB blocks",
             dict(v2=False, num_blocks=8, block_mib=128)),
            ("V2, explicit files, 2 footer actors, 8 MiB blocks",
             dict(v2=True, num_blocks=None, block_mib=8, footer_actors=2)),
        ]
        reads = []
        ray_read_pass(paths, columns, v2=False, num_blocks=8, block_mib=128)  # warm-up, untimed
        for name, kw in configs:
            times = []
            for _ in range(args.repeat):
                t, rows, blocks = ray_read_pass(paths, columns, **kw)
                times.append(t)
            assert rows == args.rows, (rows, args.rows)
            reads.append((min(times), name))
            print(f"  {min(times):7.2f} s  ({', '.join(f'{x:.2f}' for x in times)})  {blocks:4d} "
                  f"blocks  {args.rows / min(times) / 1e6:6.1f} M rows/s  {name}", flush=True)
        best_read, best_name = min(reads)
        print(f"  baseline = {best_read:.2f} s ({best_name})")

        print(f"\n-- (b) raw pyarrow scan, same files and columns (best of {args.repeat}) --")
        scans = []
        for how in ("dataset.to_batches(threads)", "dataset.to_table(threads)",
                    "pq.read_table per file"):
            times = [pyarrow_scan(paths, columns, how) for _ in range(args.repeat)]
            assert all(r == args.rows for _, r in times)
            t = min(x for x, _ in times)
            scans.append((t, how))
            print(f"  {t:7.2f} s  {args.rows / t / 1e6:6.1f} M rows/s  {how}")
        best_scan = min(scans)[0]

        if not with_jobs:
            return None
        print("\n-- (c) full rayeval job (run_job: inspect + scan + finalize + write) --")
        jobs = []
        # the engine fits the pool below the CPUs (ray_runner.fit_actor_cpus keeps 1 CPU free
        # for Ray Data's sampling and read tasks): on 2 CPUs, 2 actors get 0.5 CPU each
        for actors, cpus in ((1, 1.0), (2, 0.5)):
            wall, dur, n_metrics, rows, _ = run_job_measured(big, actors, cpus, False)
            jobs.append((wall, actors, cpus, dur))
            stages = ", ".join(f"{k} {v:.2f}" for k, v in dur.items())
            print(f"  actors={actors} actor_num_cpus={cpus}: {wall:7.2f} s  "
                  f"({args.rows / wall / 1e6:.2f} M rows/s; {n_metrics:,} metric rows; "
                  f"{rows:,} rows evaluated)\n      stages: {stages}")
            print(f"      job / best Ray read = {wall / best_read:5.2f}x   "
                  f"scan stage / best Ray read = {dur['scan'] / best_read:5.2f}x   "
                  f"job / pyarrow scan = {wall / best_scan:5.2f}x   (target job/read <= 1.25x)",
                  flush=True)
        return min(jobs, key=lambda j: j[0])
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
