"""Drift: overhead of drift in a >= 30M-row job, and rayeval vs Evidently on the flights data.

One command (from the repository root)::

    .venv/bin/python benchmarks/bench_drift.py [--rows 30000000] [--data /tmp/fl_full] \
        [--work /tmp/rayeval-bench/drift]

Every measurement is a separate process started from here (whole process vs whole process: wall
time and peak memory of the process tree, Ray's GCS/raylet/workers included; see
``_measure.py``), each under ``/tmp/rayeval-bench.lock`` (waiting for the lock is not timed).

(a) Drift overhead. Synthetic predictions (``--rows``, default 30M, over 2024-01-01..2024-06-29,
    one hive partition ``date=`` per day, kept under ``--work`` and reused) with 20 features
    (12 numeric: float32 normal/lognormal/exponential/beta/uniform and int32 counts, several
    drifting over time; 8 string categoricals of 3..1000 values, Zipf-like, some mixes drifting),
    2 model versions, score / predicted class / label. The same rayeval job (binary task, slices
    overall + c00 + c01, weekly windows over the whole range, report + MLflow on) runs with
    ``drift.enabled=false`` and with drift on the 20 features (reference January 2024,
    ``time_range``; overall slice per window as configs/flights.yaml; predictions/labels drift
    off so exactly 20 monitored columns). Target: drift adds <= 30 % wall time.

(b) rayeval vs Evidently 0.7 on the flights data (``--data``, prepared by
    examples/flights/prepare.py). rayeval: the full ``rayeval run configs/flights.yaml`` (all
    slices, all 21 weekly windows, metrics, drift, gates, report, MLflow). Evidently, in
    /tmp/venv-evidently (``_evidently_flights.py``): ``DataDriftPreset`` + ``ClassificationPreset``
    per model on the overall data (reference January, current February-June; the drift features
    of configs/flights.yaml + score + label + predicted class), and the same reports per
    (model, origin, week) slice, timed on a random sample of ``--n-slices`` slices and
    extrapolated to all of them (said so in the output). rayeval runs before and after the
    Evidently runs (``--rayeval-repeat``, default 2; the best is compared: machine load drifts). Targets: rayeval full job >= 4x faster
    than Evidently's overall-only reports and >= 80x faster than Evidently per origin x week.
    Then statistics both compute, side by side: Wasserstein distance normed by the reference
    population std (both ddof=0) and Jensen-Shannon distance (rayeval base 2, Evidently base e:
    converted) for the window starting 2001-02-05 vs January (Evidently run on exactly that pair,
    untimed), and ROC AUC of the sampled origin x week slices.

If /tmp/venv-evidently is missing, (b) prints how to create it and is skipped.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import REPO, RAYEVAL, VENV_PY, gib, require_ok, run_measured, uptime  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

EV_VENV = "/tmp/venv-evidently"
EV_PY = os.path.join(EV_VENV, "bin", "python")
EV_SETUP = ("python3.11 -m venv /tmp/venv-evidently && /tmp/venv-evidently/bin/pip install "
            "'evidently==0.7.*' 'pandas<3' pyarrow scikit-learn")
DAYS = 182
START = np.datetime64("2024-01-01T00:00:00", "us")
CAT_CARD = [3, 5, 8, 12, 20, 50, 200, 1000]
GEN_VERSION = "drift-bench/1"


# ---- (a) synthetic data ---------------------------------------------------------------------
def generate(out: Path, rows: int, seed: int = 0) -> Path:
    """Write ``rows`` synthetic predictions under ``out`` (skipped when already there)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    marker = out / "_GENERATED.json"
    params = {"version": GEN_VERSION, "rows": rows, "seed": seed, "days": DAYS}
    if marker.exists() and json.loads(marker.read_text()) == params:
        return out
    shutil.rmtree(out, ignore_errors=True)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    rng = np.random.default_rng(seed)
    cat_names = [np.array([f"c{j:02d}_v{k:04d}" for k in range(c)], dtype=object)
                 for j, c in enumerate(CAT_CARD)]
    base_p = [1.0 / np.arange(1, c + 1) ** 1.1 for c in CAT_CARD]
    per_day = np.full(DAYS, rows // DAYS)
    per_day[: rows % DAYS] += 1
    print(f"  generating {rows:,} rows into {out} ...", flush=True)
    for d in range(DAYS):
        n = int(per_day[d])
        frac = d / DAYS  # 0 .. 1 over the half year: drift grows with time
        ts = START + np.timedelta64(d, "D") + np.sort(
            rng.integers(0, 86_400_000_000, n)).astype("timedelta64[us]")
        cols = {"timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
                "model": pa.array(np.where(rng.random(n) < 0.5, "model-a", "model-b"))}
        num = np.empty((12, n))
        num[0] = rng.normal(0.3 * frac, 1.0, n)
        num[1] = rng.normal(50, 10 * (1 + 0.5 * frac), n)
        num[2] = rng.lognormal(3 + 0.2 * frac, 0.8, n)
        num[3] = rng.exponential(2.0, n)
        num[4] = rng.beta(2, 5 + 2 * frac, n)
        num[5] = rng.uniform(0, 100, n)
        num[6] = rng.normal(0, 1, n)
        num[7] = rng.gamma(2.0, 3.0 + frac, n)
        num[8] = rng.poisson(3 + 2 * frac, n)
        num[9] = rng.integers(18, 90, n)
        num[10] = rng.poisson(20, n)
        num[11] = rng.integers(0, 24, n)
        for j in range(12):
            typ = pa.int32() if j >= 8 else pa.float32()
            cols[f"f{j:02d}"] = pa.array(num[j].astype(np.int32 if j >= 8 else np.float32), typ)
        codes = []
        for j, c in enumerate(CAT_CARD):
            p = base_p[j].copy()
            if j in (1, 4, 6):  # mix drifting: mass moves towards the tail
                p = p * (1 + 2 * frac * np.linspace(0, 1, c))
            p /= p.sum()
            k = rng.choice(c, size=n, p=p)
            codes.append(k)
            cols[f"c{j:02d}"] = pa.array(cat_names[j][k], pa.string())
        z = (0.8 * num[0] + 0.03 * (num[1] - 50) - 0.5 * num[4] + 0.2 * (codes[0] == 1)
             - 0.3 * (codes[1] >= 3) + rng.normal(0, 1, n) - 1.3)
        score = 1 / (1 + np.exp(-z))
        label = (rng.random(n) < 1 / (1 + np.exp(-(z + 0.4 * frac)))).astype(np.int8)
        cols["score"] = pa.array(score)
        cols["predicted"] = pa.array((score >= 0.5).astype(np.int8))
        cols["label"] = pa.array(label)
        day = str((START + np.timedelta64(d, "D")).astype("datetime64[D]"))
        path = tmp / f"date={day}"
        path.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(cols), path / "part-0.parquet", row_group_size=1 << 20)
    (tmp / "_GENERATED.json").write_text(json.dumps(params))
    tmp.rename(out)
    return out


def overhead_config(data: Path, out: Path, drift: bool) -> Path:
    import yaml

    feats = ([{"name": f"f{j:02d}", "kind": "numeric"} for j in range(12)]
             + [{"name": f"c{j:02d}", "kind": "categorical"} for j in range(8)])
    cfg = {
        "name": f"drift-overhead-{'on' if drift else 'off'}",
        "inputs": {"predictions": {"uri": str(data)}},
        "columns": {"timestamp": "timestamp", "model": "model"},
        "tasks": [{"name": "outcome", "type": "binary", "label": "label",
                   "prediction": "predicted", "score": "score", "classes": [0, 1],
                   "positive_class": 1}],
        "slices": {"overall": True, "columns": ["c00", "c01"], "min_slice_size": 30},
        "windows": {"size": "week", "start": "2024-01-01", "end": "2024-07-01"},
        "drift": {"enabled": drift, "features": feats, "predictions": False, "labels": False,
                  "slices": False,
                  "reference": {"kind": "time_range", "start": "2024-01-01",
                                "end": "2024-02-01"}},
        "outputs": {"path": str(out), "mlflow": {"experiment": "rayeval-drift-bench"}},
        "ray": {"actors": "auto"},
    }
    path = out.parent / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def manifest_of(out: Path) -> dict:
    return json.load(open(glob.glob(str(out / "manifests" / "*.json"))[0]))


def part_a(args, work: Path, lock: bool) -> dict:
    print(f"\n== (a) drift overhead: {args.rows:,} rows, 20 features ==")
    data = generate(work / f"synthetic-{args.rows}", args.rows)
    size = sum(f.stat().st_size for f in data.rglob("*.parquet"))
    print(f"  data: {data} ({size / 2**30:.2f} GiB Parquet, {DAYS} files)")
    res: dict = {"off": [], "on": []}
    order = ["off", "on"] * args.repeat
    for mode in order:
        out = work / f"out-{mode}"
        shutil.rmtree(out, ignore_errors=True)
        cfg = overhead_config(data, out, mode == "on")
        m = run_measured(f"rayeval job, drift {mode}", [RAYEVAL, "run", str(cfg), "-q"], lock=lock)
        require_ok(m, ok=(0, 1))
        man = manifest_of(out)
        res[mode].append((m, man))
        print("      stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in man["durations"].items())
              + f"; rows read {man['row_counts']['rows_read']:,}")
    off = min(r[0].wall_s for r in res["off"])
    on = min(r[0].wall_s for r in res["on"])
    m_on = min(res["on"], key=lambda r: r[0].wall_s)
    m_off = min(res["off"], key=lambda r: r[0].wall_s)
    d_on, d_off = m_on[1]["durations"], m_off[1]["durations"]
    extra = {k: d_on.get(k, 0) - d_off.get(k, 0) for k in d_on}
    print(f"\n  drift off {off:.1f} s, drift on {on:.1f} s (best of {args.repeat}): drift adds "
          f"{(on / off - 1) * 100:+.1f}% wall time (target <= +30%)")
    print("  where (on - off, s): " + ", ".join(f"{k} {v:+.1f}" for k, v in extra.items()))
    c_off, c_on = m_off[0].cpu_s, m_on[0].cpu_s
    print(f"  CPU time of the process tree: off {c_off:.1f} s, on {c_on:.1f} s: drift adds "
          f"{(c_on / c_off - 1) * 100:+.1f}% CPU (less sensitive to other load than wall time)")
    print(f"  peak PSS: off {gib(m_off[0].peak_pss):.2f} GiB, on {gib(m_on[0].peak_pss):.2f} GiB")
    return {"off": off, "on": on}


# ---- (b) Evidently ---------------------------------------------------------------------------
def evidently_json(m) -> dict:
    require_ok(m)
    return json.loads(m.stdout.strip().splitlines()[-1])


def find_flights(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    for cand in ("/tmp/fl_full", os.path.join(REPO, "examples/flights/bucket")):
        if os.path.exists(os.path.join(cand, "_PREPARED.json")):
            return Path(cand)
    raise SystemExit("no prepared flights data: run examples/flights/prepare.py --out DIR and "
                     "pass --data DIR")


def part_b(args, work: Path, lock: bool) -> None:
    print("\n== (b) rayeval vs Evidently on the flights data ==")
    if not os.path.exists(EV_PY):
        print(f"  SKIPPED: {EV_PY} not found. Create the Evidently venv with:\n    {EV_SETUP}")
        return
    ver = subprocess.run([EV_PY, "-c", "import evidently, pandas; print(evidently.__version__, "
                          "pandas.__version__)"], capture_output=True, text=True).stdout.split()
    data = find_flights(args.data)
    pred, lab = str(data / "predictions"), str(data / "labels")
    print(f"  data: {data}; evidently {ver[0]}, pandas {ver[1]} in {EV_VENV}")
    out = work / "flights-rayeval"

    def rayeval_job(i):
        shutil.rmtree(out, ignore_errors=True)
        m = run_measured(f"rayeval run configs/flights.yaml (full job) #{i}",
                         [RAYEVAL, "run", "configs/flights.yaml", "-q",
                          "--set", f"inputs.predictions.uri={pred}",
                          "--set", f"inputs.labels.uri={lab}", "--set", f"outputs.path={out}"],
                         lock=lock)
        require_ok(m, ok=(0, 1))
        return m, manifest_of(out)

    ray_runs = [rayeval_job(1)]
    script = os.path.join(REPO, "benchmarks", "_evidently_flights.py")
    evdir = str(work / "evidently")
    common = ["--predictions", pred, "--labels", lab, "--out", evdir]
    ev_all = run_measured("Evidently overall (2 models x drift+classif.)",
                          [EV_PY, script, "overall", *common], lock=lock)
    ev_all_info = evidently_json(ev_all)
    ev_sl = run_measured(f"Evidently per origin x week ({args.n_slices}+1 sampled)",
                         [EV_PY, script, "slices", *common, "--n-slices", str(args.n_slices),
                          "--seed", str(args.seed)], lock=lock)
    ev_sl_info = evidently_json(ev_sl)
    ev_cmp = run_measured("Evidently drift Jan vs week 2001-02-05 (values)",
                         [EV_PY, script, "compare", *common, "--week", "2001-02-05"], lock=lock)
    ev_cmp_info = evidently_json(ev_cmp)
    if args.rayeval_repeat > 1:  # again after Evidently: machine load drifts on a shared box
        ray_runs += [rayeval_job(i + 2) for i in range(args.rayeval_repeat - 1)]
    print(f"  after: {uptime()}")
    ray_m, man = min(ray_runs, key=lambda r: r[0].wall_s)
    if len(ray_runs) > 1:
        print(f"  rayeval: best of {len(ray_runs)} runs ("
              + ", ".join(f"{r[0].wall_s:.1f} s" for r in ray_runs) + ")")
    metrics = pd.read_parquet(out / "metrics")
    drift = pd.read_parquet(out / "drift")
    n_origin_week = int(metrics[(metrics["slice_columns"] == "origin")
                                & (metrics["task"] == "delayed")]
                        .drop_duplicates(["model", "window_start", "slice"]).shape[0])
    total = ev_sl_info["slices_total"]
    per = ev_sl_info["per_slice_mean_s"]
    ev_sl_wall = ev_sl.wall_s - ev_sl_info["sampled_s"] + per * total
    print(f"\n  rayeval stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in
                                                man["durations"].items()))
    for model, r in ev_all_info["reports"].items():
        print(f"  Evidently overall {model}: {r['n_reference']:,} reference / {r['n_current']:,} "
              f"current rows, report {r['run_s']:.1f} s (+ JSON {r['seconds'] - r['run_s']:.1f} s)")
    print(f"  Evidently process: import {ev_all_info['import_s']:.1f} s, load + label join "
          f"{ev_all_info['load_s']:.1f} s")
    errs = [s for s in ev_sl_info["slices"] if s["error"]]
    print(f"  Evidently per slice: {len(ev_sl_info['slices'])} sampled (model, origin, week) "
          f"slices, mean {per:.2f} s, median {ev_sl_info['per_slice_median_s']:.2f} s per slice "
          f"(warm-up slice excluded: {ev_sl_info['warmup']['seconds']:.1f} s; {len(errs)} "
          f"failed)"
          f"; {total:,} slices with >= 30 labelled rows (rayeval reports {n_origin_week:,} "
          f"origin x week groups per task); {ev_sl_info['slices_without_reference']} of them "
          f"have no January rows for the origin")
    print(f"  EXTRAPOLATED whole process: {ev_sl.wall_s:.1f} s measured - "
          f"{ev_sl_info['sampled_s']:.1f} s sampled reports + {total:,} x {per:.2f} s = "
          f"{ev_sl_wall:,.0f} s ({ev_sl_wall / 3600:.2f} h)")
    print(f"\n  {'':<48s} {'wall s':>9s} {'peak PSS GiB':>13s} {'vs rayeval':>11s} {'target':>8s}")
    print(f"  {'rayeval full flights job':<48s} {ray_m.wall_s:9.1f} {gib(ray_m.peak_pss):13.2f} "
          f"{'1.0x':>11s}")
    r1 = ev_all.wall_s / ray_m.wall_s
    r2 = ev_sl_wall / ray_m.wall_s
    print(f"  {'Evidently overall only (2 models)':<48s} {ev_all.wall_s:9.1f} "
          f"{gib(ev_all.peak_pss):13.2f} {r1:10.1f}x {'>= 4x':>8s} "
          f"{'met' if r1 >= 4 else 'NOT met'}")
    print(f"  {'Evidently per origin x week [extrapolated]':<48s} {ev_sl_wall:9.0f} "
          f"{gib(ev_sl.peak_pss):13.2f} {r2:10.1f}x {'>= 80x':>8s} "
          f"{'met' if r2 >= 80 else 'NOT met'}")
    compare_values(drift, metrics, ev_cmp_info, ev_sl_info)


def compare_values(drift: pd.DataFrame, metrics: pd.DataFrame, cmp: dict, sl: dict) -> None:
    c = 1 / math.sqrt(math.log(2))
    print("\n  -- same statistic, both tools: window 2001-02-05..02-12 vs January, slice overall --")
    print("  Evidently: Wasserstein / np.std(reference) (ddof=0), exact on the raw values; "
          "Jensen-Shannon distance base e (x 1/sqrt(ln 2) = base 2 below).")
    print("  rayeval: from fixed-edge histograms (Wasserstein with its guaranteed error_bound); "
          "JS base 2; categorical: top 20 reference categories + 'other'.")
    print(f"  {'model':<16s} {'column':<18s} {'statistic':<22s} {'rayeval':>12s} "
          f"{'+- bound':>9s} {'Evidently':>12s} {'|diff|':>9s}")
    w = drift[(drift["slice"] == "overall")
              & (drift["window_start"] == pd.Timestamp("2001-02-05", tz="UTC"))]
    for model, rep in cmp["reports"].items():
        for key, ev in rep["values"].items():
            _, col, meth = key.split("/", 2)
            if meth.startswith("Wasserstein"):
                rm, evb, name = "wasserstein_normed", ev, "Wasserstein normed"
            elif meth.startswith("Jensen"):
                rm, evb, name = "jensen_shannon", ev * c, "JS distance (base 2)"
            else:
                continue
            row = w[(w["model"] == model) & (w["feature"] == col)]
            if row.empty:
                continue
            # every method's statistic is an info_* column (the verdict is one of them)
            rv = float(row[f"info_{rm}"].iloc[0])
            rb = float(row[f"info_{rm}_error_bound"].iloc[0]) if rm == "wasserstein_normed" \
                else 0.0
            note = "  (rayeval: top-20 + other)" if col == "origin" else ""
            print(f"  {model:<16s} {col:<18s} {name:<22s} {rv:12.6f} {rb:9.2e} {evb:12.6f} "
                  f"{abs(rv - evb):9.2e}{note}")
    print("\n  -- ROC AUC of the sampled (model, origin, week) slices: rayeval origin slice vs "
          "Evidently --")
    m = metrics[(metrics["task"] == "delayed") & (metrics["metric"] == "roc_auc")
                & (metrics["slice_columns"] == "origin")]
    m = m.set_index(["model", "window_start", "slice"])
    rows = []
    for s in sl["slices"]:
        if s["roc_auc"] is None:
            continue
        k = (s["model"], pd.Timestamp(s["week_start"], tz="UTC"), f"origin={s['origin']}")
        if k in m.index:
            r = m.loc[k]
            rows.append((k, float(r["value"]), float(r["error_bound"]), float(s["roc_auc"])))
    within = sum(abs(a - e) <= b + 1e-12 for _, a, b, e in rows)
    for k, a, b, e in rows[:8]:
        print(f"  {k[0]:<16s} {k[1].date()} {k[2]:<12s} rayeval {a:.6f} +- {b:.1e}   "
              f"Evidently {e:.6f}   |diff| {abs(a - e):.1e}")
    print(f"  {within} of {len(rows)} sampled slices agree within rayeval's error_bound")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=30_000_000)
    ap.add_argument("--repeat", type=int, default=1, help="off/on pairs in (a) (best of)")
    ap.add_argument("--data", help="prepared flights dataset for (b)")
    ap.add_argument("--work", default="/tmp/rayeval-bench/drift")
    ap.add_argument("--n-slices", type=int, default=30)
    ap.add_argument("--rayeval-repeat", type=int, default=2,
                    help="rayeval flights runs in (b): before and after Evidently, best taken")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=["a", "b"], help="run one part only")
    ap.add_argument("--no-lock", action="store_true")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    lock = not args.no_lock
    print("== drift benchmark ==")
    print(f"  machine: {os.cpu_count()} CPUs")
    print(f"  before: {uptime()}")
    if args.only in (None, "a"):
        part_a(args, work, lock)
    if args.only in (None, "b"):
        part_b(args, work, lock)
    print(f"\n  after: {uptime()}")


if __name__ == "__main__":
    main()
