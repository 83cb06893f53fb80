"""Starting from the registry: rayeval scoring + evaluating champion and challenger on the 3M
flights rows vs ``mlflow.pyfunc`` scoring + pandas/numpy evaluation in one process, same data,
same run, and how rayeval scales with scoring actors.

One command (from the repository root; heavy: run it under ``flock /work/heavy.lock``)::

    python benchmarks/bench_registry.py [--data examples/flights/bucket] [--work /tmp/rayeval-bench/registry]
        [--actors 1,2] [--repeat 1]

``--data`` is a prepared flights dataset (``examples/flights/prepare.py --out DIR``). Setup (not
timed): the feature dataset (``examples/flights/registry.py``: the flights without any model
output), two scikit-learn models trained on January, logged to a fresh sqlite registry and
registered as ``flights-delay`` v1 ``@champion`` (logistic regression) and v2 ``@challenger``
(gradient-boosted trees). Then, each a separate process measured whole (wall time and peak
memory of its process tree, Ray included; ``_measure.py``):

(a) ``rayeval run configs/flights-registry.yaml`` with the flights slicings (as
    ``bench_flights.py``), MLflow logging and the report off, for each ``--actors`` count of
    scoring actors (1 reducer actor);
(b) ``_pyfunc_flights.py``: ``mlflow.pyfunc`` ``predict`` of both models in one process, labels
    joined, the same per-slice metrics with pandas + numpy (exact vectorised AUC).

Prints wall times, peak memory, ratios (baseline / rayeval) and the largest difference of the
overall weekly ROC AUC, accuracy, log loss and Brier score between the two (both exact).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "flights"))
from _measure import REPO, clean_env, gib, require_ok, run_measured, uptime  # noqa: E402

import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

PY = sys.executable
RAYEVAL = os.path.join(os.path.dirname(PY), "rayeval")


def setup(data: Path, work: Path) -> str:
    """Features, registry and the two registered models under ``work``; the registry URI."""
    import mlflow
    from mlflow.tracking import MlflowClient

    import registry as ex

    uri = f"sqlite:///{work}/registry.db"
    if (work / "READY").exists():
        return uri
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ex.features_dataset(data, work / "features")
    features = pq.read_table(work / "features").to_pandas()
    champion, challenger, x = ex.train_models(features, ex.latest_labels(data))
    del features
    with ex.tracking(uri):
        mlflow.create_experiment(ex.EXPERIMENT, (work / "mlartifacts").as_uri())
    runs = [ex.log_model(uri, m, x) for m in (champion, challenger)]
    v = ex.register(uri, "flights-delay", runs, {})
    with ex.tracking(uri):
        c = MlflowClient()
        c.set_registered_model_alias("flights-delay", "champion", v[0])
        c.set_registered_model_alias("flights-delay", "challenger", v[1])
    (work / "READY").write_text("ok")
    return uri


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(REPO, "examples/flights/bucket"))
    ap.add_argument("--work", default="/tmp/rayeval-bench/registry")
    ap.add_argument("--actors", default="1,2")
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    data, work = Path(a.data), Path(a.work)
    print(f"# bench_registry  {uptime()}", flush=True)
    uri = setup(data, work)
    env = clean_env({"PYTHONPATH": REPO, "MLFLOW_REGISTRY_URI": uri})
    rows = []
    for rep in range(a.repeat):
        base_out = work / "baseline.parquet"
        m = run_measured("pyfunc+pandas", [PY, "benchmarks/_pyfunc_flights.py", "--features",
                                           str(work / "features"), "--labels",
                                           str(data / "labels"), "--registry", uri, "--out",
                                           str(base_out)], env=env, lock=False)
        require_ok(m)
        rows.append(("pyfunc+pandas (1 process)", m, json.loads(m.stdout.strip().splitlines()[-1])))
        for k in [int(x) for x in a.actors.split(",")]:
            out = work / f"out-{k}"
            shutil.rmtree(out, ignore_errors=True)
            sets = [f"inputs.features.uri={work / 'features'}",
                    f"inputs.labels.uri={data / 'labels'}", f"scoring.registry_uri={uri}",
                    f"outputs.path={out}", "outputs.mlflow.enabled=false",
                    "outputs.report=false", f"scoring.actors={k}", "ray.actors=1",
                    "slices.columns=[origin,destination,origin_state,distance_band,hour_band]",
                    "slices.crosses=[[origin,hour_band]]"]
            cmd = [RAYEVAL, "run", "configs/flights-registry.yaml", "--quiet"]
            for s in sets:
                cmd += ["--set", s]
            m = run_measured(f"rayeval scoring actors={k}", cmd, env=env, lock=False)
            require_ok(m, ok=(0, 1))
            man = json.loads(next((out / "manifests").glob("*.json")).read_text())
            rows.append((f"rayeval, {k} scoring actor(s)", m, man["durations"]))
            if rep == 0:
                compare(out, base_out)
    print("\n| run | wall s | peak PSS GiB | CPU s | ratio (baseline / run) | stages |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    base = min(m.wall_s for name, m, _ in rows if name.startswith("pyfunc"))
    for name, m, st in rows:
        print(f"| {name} | {m.wall_s:.1f} | {gib(m.peak_pss):.2f} | {m.cpu_s:.1f} | "
              f"{base / m.wall_s:.2f}x | {json.dumps(st.get('timings', st))} |")


def compare(out: Path, base_out: Path) -> None:
    r = pd.read_parquet(out / "metrics")
    r = r[(r["slice"] == "overall") & r["class_label"].isna()
          & (r["average"].isna() | (r["average"] == "binary"))]
    b = pd.read_parquet(base_out)
    b = b[b["slice"] == "overall"]
    worst = {}
    for metric, base_col in (("roc_auc", "roc_auc"), ("accuracy", "accuracy"),
                             ("log_loss", "log_loss"), ("brier_loss", "brier_score")):
        rr = r[r["metric"] == metric].set_index(["model", "window_start"])["value"]
        bb = b.set_index(["model", "window_start"])[base_col]
        bb.index = bb.index.set_levels(bb.index.levels[1].as_unit("us"), level=1) \
            if hasattr(bb.index.levels[1], "as_unit") else bb.index
        rr.index = rr.index.set_levels(pd.to_datetime(rr.index.levels[1], utc=True).as_unit("us"),
                                       level=1)
        j = pd.concat([rr.rename("rayeval"), bb.rename("baseline")], axis=1, join="inner")
        worst[metric] = (len(j), float((j["rayeval"] - j["baseline"]).abs().max()))
    print("overall weekly values compared (groups, max abs difference):", worst, flush=True)


if __name__ == "__main__":
    main()
