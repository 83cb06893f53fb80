"""Flights main job: rayeval (whole process) vs pandas + scikit-learn on the same Parquet.

One command (from the repository root)::

    .venv/bin/python benchmarks/bench_flights.py [--data /tmp/fl_full] [--work /tmp/rayeval-bench/flights]

``--data`` is a prepared flights dataset (``examples/flights/prepare.py --out DIR``; default: the
first of /tmp/fl_full and examples/flights/bucket that exists, else it is prepared under
``--work``). In one run, each measurement a separate process started from here, wall time and peak
memory of its whole process tree (Ray's GCS, raylet and workers included; see ``_measure.py``),
each under ``/tmp/rayeval-bench.lock`` (the wait for the lock is not timed):

(a) ``rayeval run configs/flights.yaml`` on the full data (3M flights, 6M prediction rows, labels
    joined, 21 weekly windows x 7 slicings x 2 models, drift, gates, Parquet, HTML report, MLflow
    in a fresh sqlite store); then the same job with drift, report and MLflow off (metrics only,
    closer to what the baseline computes);
(b) the best pandas baseline we could make for the same per-slice metrics
    (``_pandas_flights.py``): pyarrow read, label join keeping the latest label per id, weekly
    windows, the 7 slicings, per model ROC AUC, PR AUC, F1, accuracy, log loss, Brier, MAE, RMSE,
    R2, groups with < 30 labelled rows dropped; two variants:
    ``pandas+sklearn`` (one groupby per slicing for the additive metrics, sklearn
    ``roc_auc_score``/``average_precision_score`` per group) and ``pandas+numpy`` (AUCs vectorised
    too, no per-group Python);

then prints wall times, peak memory and ratios (baseline / rayeval), and checks EVERY shared value
of every group: rayeval's Parquet output vs the pandas values (to 1e-9 relative, AUCs within
rayeval's ``error_bound``), printing a handful side by side. The baseline computes 9 metrics per
group; rayeval computes 31 (per-class and averaged precision/recall/F1, MCC, kappa, ECE, error
quantiles, ...) plus drift, coverage, confusion tables, report and MLflow logging.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import REPO, RAYEVAL, VENV_PY, gib, require_ok, run_measured, uptime  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

METRICS = {("delayed", "roc_auc"): "roc_auc", ("delayed", "pr_auc"): "pr_auc",
           ("delayed", "accuracy"): "accuracy", ("delayed", "log_loss"): "log_loss",
           ("delayed", "brier_loss"): "brier_loss", ("delay_minutes", "mae"): "mae",
           ("delay_minutes", "rmse"): "rmse", ("delay_minutes", "r2"): "r2"}
SHOW = ["roc_auc", "pr_auc", "f1", "accuracy", "log_loss", "brier_loss", "mae", "rmse", "r2"]


def find_data(arg: str | None, work: Path) -> Path:
    if arg:
        return Path(arg)
    for cand in ("/tmp/fl_full", os.path.join(REPO, "examples/flights/bucket")):
        if os.path.exists(os.path.join(cand, "_PREPARED.json")):
            return Path(cand)
    out = work / "data"
    print(f"preparing the flights data in {out} (about a minute) ...", flush=True)
    subprocess.check_call([VENV_PY, os.path.join(REPO, "examples/flights/prepare.py"),
                           "--out", str(out)], cwd=REPO)
    return out


def git_state() -> str:
    def git(*a):
        return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = git("status", "--porcelain", "--untracked-files=no", "rayeval")
    return git("rev-parse", "--short", "HEAD") + (" (rayeval/ has uncommitted changes)" if dirty
                                                   else "")


def rayeval_values(out: Path) -> tuple[pd.DataFrame, dict]:
    m = pd.read_parquet(out / "metrics")
    keep = np.array([(t, x) in METRICS for t, x in zip(m["task"], m["metric"])])
    keep |= ((m["task"] == "delayed") & (m["metric"] == "f1") & (m["average"] == "binary")).to_numpy()
    sel = m[keep].copy()
    sel["col"] = [METRICS.get((t, x), "f1") for t, x in zip(sel["task"], sel["metric"])]
    idx = ["model", "window_start", "slice"]
    vals = sel.set_index(idx + ["col"])["value"].unstack("col")
    eb = sel[sel["col"].isin(["roc_auc", "pr_auc"])].set_index(idx + ["col"])[
        "error_bound"].unstack("col")
    eb.columns = [f"{c}_bound" for c in eb.columns]
    n_lab = sel[sel["task"] == "delayed"].drop_duplicates(idx).set_index(idx)["n_labeled"]
    manifest = json.load(open(glob.glob(str(out / "manifests" / "*.json"))[0]))
    return vals.join(eb).join(n_lab), manifest


def verify(ray_vals: pd.DataFrame, pd_vals: pd.DataFrame) -> list[str]:
    """Compare every shared (model, window, slice, metric); returns report lines."""
    b = pd_vals.set_index(["model", "window_start", "slice"])
    both = ray_vals.index.intersection(b.index)
    lines = [f"groups: rayeval {len(ray_vals):,}, pandas {len(b):,}, in both {len(both):,}"]
    j = ray_vals.loc[both]
    bb = b.loc[both]
    ok_all = len(both) == len(ray_vals) == len(b)
    for c in SHOW:
        r, p = j[c].to_numpy(float), bb[c].to_numpy(float)
        bound = j[f"{c}_bound"].to_numpy(float) if c in ("roc_auc", "pr_auc") else 0.0
        tol = 1e-9 * np.maximum(1.0, np.abs(p)) + bound
        both_def = ~np.isnan(r) & ~np.isnan(p)
        diff = np.abs(r - p)[both_def]
        bad = int((diff > tol[both_def] if np.ndim(tol) else diff > tol).sum())
        nan_r_only = int((np.isnan(r) & ~np.isnan(p)).sum())
        nan_p_only = int((~np.isnan(r) & np.isnan(p)).sum())
        note = ""
        if c == "f1" and nan_r_only:
            zero = int((np.isnan(r) & (p == 0)).sum())
            note = (f"  ({nan_r_only} groups: rayeval NaN 'zero_division' where sklearn "
                    f"returns 0.0 for 2TP+FP+FN=0: {zero} of them)")
            ok_nan = zero == nan_r_only
        else:
            ok_nan = nan_r_only == 0
        ok = bad == 0 and ok_nan and nan_p_only == 0
        ok_all &= ok
        extra = ""
        if c in ("roc_auc", "pr_auc"):
            extra = (f", max error_bound {np.nanmax(j[f'{c}_bound']):.2e}, "
                     f"share of exact groups (bound 0) "
                     f"{np.mean(j[f'{c}_bound'].to_numpy() == 0):.1%}")
        lines.append(f"  {c:<12s} {both_def.sum():6d} values, max |diff| "
                     f"{diff.max() if len(diff) else 0:.2e}{extra}: "
                     f"{'OK' if ok else 'MISMATCH'} ({bad} beyond tolerance){note}")
    # a handful side by side
    picks = []
    for pat in ("overall", "origin=ORD", "destination=ATL", "origin_state=CA",
                "distance_band=>=2000", "hour_band=night 0-5", "origin=DFW,hour_band=evening"):
        cand = [k for k in both if k[2] == pat or (pat.startswith("origin=DFW,") and
                                                  k[2].startswith(pat))]
        if cand:
            picks.append(sorted(cand)[len(cand) // 2])
    lines.append("  side by side (rayeval | pandas; AUCs with rayeval's error_bound):")
    for k in picks:
        r, p = j.loc[k], bb.loc[k]
        lines.append(f"    {k[0]} week {k[1].date()} {k[2]} (n_labeled {int(r['n_labeled']):,})")
        lines.append("      " + "  ".join(
            f"{c} {r[c]:.9g}|{p[c]:.9g}" + (f" (+-{r[c + '_bound']:.1e})"
                                           if c in ("roc_auc", "pr_auc") else "")
            for c in SHOW))
    lines.append(f"  verdict: {'all values agree' if ok_all else 'DISAGREEMENT (see above)'}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="prepared flights dataset (predictions/, labels/)")
    ap.add_argument("--work", default="/tmp/rayeval-bench/flights", help="scratch folder")
    ap.add_argument("--sklearn-sample-frac", type=float, default=1.0,
                    help="< 1: sklearn AUC calls on a random fraction of the groups, time "
                         "extrapolated (reported as such)")
    ap.add_argument("--no-lock", action="store_true", help="do not take the benchmark lock")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = find_data(args.data, work)
    lock = not args.no_lock
    pred, lab = str(data / "predictions"), str(data / "labels")
    print("== flights main job: rayeval vs pandas + scikit-learn ==")
    print(f"  machine: {os.cpu_count()} CPUs; git {git_state()}")
    print(f"  before: {uptime()}")
    print(f"  data: {data}")

    out = work / "rayeval-out"
    shutil.rmtree(out, ignore_errors=True)
    ray_cmd = [RAYEVAL, "run", "configs/flights.yaml", "-q",
               "--set", f"inputs.predictions.uri={pred}", "--set", f"inputs.labels.uri={lab}",
               "--set", f"outputs.path={out}"]
    print("\n-- measurements (whole process tree; wall, peak summed PSS / RSS) --")
    ray_m = run_measured("rayeval run configs/flights.yaml", ray_cmd, lock=lock)
    require_ok(ray_m, ok=(0, 1))  # 1 = a gate failed: results are written
    lean_out = work / "rayeval-out-metrics-only"
    shutil.rmtree(lean_out, ignore_errors=True)
    lean_cmd = ray_cmd[:-1] + [f"outputs.path={lean_out}", "--set", "drift.enabled=false",
                               "--set", "outputs.report=false",
                               "--set", "outputs.mlflow.enabled=false"]
    lean_m = run_measured("rayeval, metrics only (no drift/report/MLflow)", lean_cmd, lock=lock)
    require_ok(lean_m, ok=(0, 1))
    runs = {}
    for variant in ("numpy", "sklearn"):
        vout = work / f"pandas-{variant}.parquet"
        cmd = [VENV_PY, "benchmarks/_pandas_flights.py", "--predictions", pred, "--labels", lab,
               "--out", str(vout), "--auc", variant]
        if variant == "sklearn" and args.sklearn_sample_frac < 1:
            cmd += ["--sample-frac", str(args.sklearn_sample_frac)]
        m = run_measured(f"pandas+{variant}" + (" (AUCs vectorised)" if variant == "numpy" else
                                                " (sklearn AUCs per group)"), cmd, lock=lock)
        require_ok(m)
        info = json.loads(m.stdout.strip().splitlines()[-1])
        runs[variant] = (m, info, vout)
    print(f"  after: {uptime()}")

    ray_vals, manifest = rayeval_values(out)
    stages = ", ".join(f"{k} {v:.1f}" for k, v in manifest["durations"].items())
    rc = manifest["row_counts"]
    print(f"\n-- rayeval: {rc['rows_read']:,} rows read, {rc['rows_labeled']:,} labelled, "
          f"{len(ray_vals):,} (model, window, slice) groups per task; manifest stages (s): "
          f"{stages}; whole process {ray_m.wall_s:.1f} s (rest = Python/Ray start-up, "
          f"shutdown, summary)")
    print("\n-- results --")
    print(f"  {'':<44s} {'wall s':>8s} {'peak PSS GiB':>13s} {'RSS-sum GiB':>12s} "
          f"{'baseline/rayeval':>17s}")
    print(f"  {'rayeval (full job, 31 metrics + drift)':<44s} {ray_m.wall_s:8.1f} "
          f"{gib(ray_m.peak_pss):13.2f} {gib(ray_m.peak_rss):12.2f} {'1.00x':>17s}")
    lean_man = json.load(open(glob.glob(str(lean_out / "manifests" / "*.json"))[0]))
    print(f"  {'rayeval, metrics only (no drift/report/MLflow)':<44s} {lean_m.wall_s:8.1f} "
          f"{gib(lean_m.peak_pss):13.2f} {gib(lean_m.peak_rss):12.2f} "
          f"{lean_m.wall_s / ray_m.wall_s:16.2f}x")
    print("      stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in
                                           lean_man["durations"].items()))
    best = None
    for variant, (m, info, _) in runs.items():
        wall = info.get("extrapolated_wall", None)
        wall = m.wall_s if wall is None else m.wall_s - info["wall_in_process"] + wall
        name = m.name + (" [extrapolated]" if "extrapolated_wall" in info else "")
        print(f"  {name:<44s} {wall:8.1f} {gib(m.peak_pss):13.2f} {gib(m.peak_rss):12.2f} "
              f"{wall / ray_m.wall_s:16.2f}x")
        t = info["timings"]
        print(f"      in-process: load+join {t['load_join']:.1f} s, groupby sums "
              f"{sum(v for k, v in t.items() if k.startswith('groupby')):.1f} s, AUC part "
              f"{t.get('auc_part', t.get('auc_part_extrapolated')):.1f} s"
              + (f" (sklearn timed on {info['sklearn_groups_timed']:,} of {info['groups']:,} "
                 f"groups, {info['sklearn_seconds_timed']:.1f} s, extrapolated)"
                 if "extrapolated_wall" in info else f"; {info['groups']:,} groups"))
        if best is None or wall < best[0]:
            best = (wall, m.name)
    print(f"\n  best baseline: {best[1]}: {best[0]:.1f} s; rayeval {ray_m.wall_s:.1f} s -> "
          f"rayeval is {best[0] / ray_m.wall_s:.2f}x the speed of the best baseline "
          f"(>1 = rayeval faster); metrics-only rayeval {best[0] / lean_m.wall_s:.2f}x; "
          f"memory rayeval/baseline PSS {ray_m.peak_pss / runs['numpy'][0].peak_pss:.2f}x")

    print("\n-- values: rayeval Parquet vs pandas+numpy (every group) --")
    for line in verify(ray_vals, pd.read_parquet(runs["numpy"][2])):
        print("  " + line)
    sk = pd.read_parquet(runs["sklearn"][2]).set_index(["model", "window_start", "slice"])
    nb = pd.read_parquet(runs["numpy"][2]).set_index(["model", "window_start", "slice"])
    x = sk.dropna(subset=["roc_auc"]).join(nb[["roc_auc", "pr_auc"]].add_suffix("_np"),
                                           how="inner")
    print(f"  pandas+sklearn vs pandas+numpy AUCs on {len(x):,} groups: max |diff| ROC "
          f"{(x['roc_auc'] - x['roc_auc_np']).abs().max():.1e}, PR "
          f"{(x['pr_auc'] - x['pr_auc_np']).abs().max():.1e}")


if __name__ == "__main__":
    main()
