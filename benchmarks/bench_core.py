"""Core benchmark: per-slice metrics from mergeable states vs pandas + scikit-learn.

One command::

    .venv/bin/python benchmarks/bench_core.py [--rows 30000000] [--batch 1000000]

Builds an in-memory table (``--rows`` rows, ``--slices`` slices as a string column, binary
labels, predicted labels, scores in [0, 1]) and feeds it in batches, single process, through:

- the group factorisation (:func:`rayeval.slicing.group_index` on the slice column);
- :class:`~rayeval.metrics.classification.ClassificationSpec` (label metrics);
- :class:`~rayeval.metrics.scores.BinaryScoreSpec` (bucketed score metrics, default budget)
  and, with ``--budget``, a second score spec with that smaller bucket budget;
- ``finalize`` of each state.

Score states merge lazily (histogram runs side by side); the final compaction is timed as part of
the merge. Rates are rows per CPU-second of this process (``rows/s/core``; numpy runs these kernels on one
thread) and wall-clock rows/s. In the same run the baseline computes the same per-slice metrics
with pandas groupby + scikit-learn (``accuracy_score``, ``precision_recall_fscore_support``,
``roc_auc_score``, ``average_precision_score``); scikit-learn runs on a random sample of slices
and is extrapolated by row count (printed as such). A second, stricter label-metric baseline
computes the confusion counts with one vectorised pandas groupby.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import Clock, load_average, machine_notes  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402

from rayeval.metrics.base import results_by_key  # noqa: E402
from rayeval.metrics.classification import ClassificationSpec  # noqa: E402
from rayeval.metrics.scores import BinaryScoreSpec  # noqa: E402
from rayeval.slicing import group_index  # noqa: E402

TARGET_LABEL = 40e6  # issue 15
TARGET_SCORE = 6e6  # issue 15
TARGET_RATIO = 50.0


def make_data(rows: int, n_slices: int, seed: int = 0) -> dict:
    """Slice names (pyarrow string column, as read from Parquet), labels, predictions, scores.
    Slice sizes are skewed (Dirichlet weights)."""
    rng = np.random.default_rng(seed)
    names = pa.array([f"slice_{i:05d}" for i in range(n_slices)])
    p = rng.dirichlet(np.full(n_slices, 5.0))
    sid = rng.choice(n_slices, rows, p=p).astype(np.int32)
    x = rng.normal(size=rows) + (sid % 7) * 0.05
    label = (rng.random(rows) < 1 / (1 + np.exp(-1.5 * x))).astype(np.int64)
    score = 1 / (1 + np.exp(-(1.5 * x + rng.normal(size=rows))))
    return {"slice_id": sid, "slice": names.take(pa.array(sid)), "label": label,
            "prediction": (score >= 0.5).astype(np.int64), "score": score}


class Core:
    """The measured pipeline; CPU and wall time accumulate per stage.

    ``merge="tree"`` (as the engine): every batch becomes its own partial state
    (``accumulate(zero(), ...)``) and partials are merged pairwise, like a binary counter, so
    each row's statistics are merged O(log batches) times. ``merge="fold"``: one running state,
    ``state = accumulate(state, batch)`` (each merge costs O(size of the running state)).
    """

    def __init__(self, budget: int | None, merge: str):
        self.merge = merge
        self.specs = {"label": ClassificationSpec(classes=(0, 1), positive_class=1),
                      "score": BinaryScoreSpec(positive_class=1)}
        if budget:
            self.specs["score_small"] = BinaryScoreSpec(positive_class=1, bucket_budget=budget)
        self.stacks = {k: [] for k in self.specs}  # (level, state) pairs
        self.t = {k: [0.0, 0.0] for k in ("factorize", *self.specs)}
        self.merge_cpu = dict.fromkeys(self.specs, 0.0)  # tree mode: CPU spent in merge()

    def _add(self, name, clock):
        self.t[name][0] += clock.cpu
        self.t[name][1] += clock.wall

    def feed(self, data: dict, lo: int, hi: int) -> None:
        with Clock() as c:
            groups = group_index([data["slice"].slice(lo, hi - lo)])
        self._add("factorize", c)
        label, pred, score = (data[k][lo:hi] for k in ("label", "prediction", "score"))
        for name, spec in self.specs.items():
            batch = ({"label": label, "prediction": pred} if name == "label"
                     else {"label": label, "score": score})
            stack = self.stacks[name]
            with Clock() as c:
                if self.merge == "fold":
                    state = stack.pop()[1] if stack else spec.zero()
                    stack.append((0, spec.accumulate(state, batch, groups)))
                else:
                    level, state = 0, spec.accumulate(spec.zero(), batch, groups)
                    m0 = time.process_time()
                    while stack and stack[-1][0] == level:
                        state = spec.merge(stack.pop()[1], state)
                        level += 1
                    self.merge_cpu[name] += time.process_time() - m0
                    stack.append((level, state))
            self._add(name, c)

    def finish(self) -> dict:
        """Merge what is left, then finalize; returns the results per family."""
        out, self.finalize_times, self.states = {}, {}, {}
        for name, spec in self.specs.items():
            with Clock() as c:
                state = spec.zero()
                for _, s in reversed(self.stacks[name]):
                    state = spec.merge(s, state)
                if hasattr(state, "runs"):  # score states merge lazily: count the compaction
                    state.hist  # noqa: B018 (computes and caches the compacted histogram)
            self._add(name, c)
            if self.merge == "tree":
                self.merge_cpu[name] += c.cpu
            self.states[name] = state
            with Clock() as c:
                out[name] = spec.finalize(state)
            self.finalize_times[name] = (c.cpu, c.wall)
        return out


def run_core(data: dict, rows: int, batch: int, budget: int | None,
             merge: str) -> tuple[Core, dict]:
    core = Core(budget, merge)
    for lo in range(0, rows, batch):
        core.feed(data, lo, min(lo + batch, rows))
    return core, core.finish()


# ---- baselines ----------------------------------------------------------------------------------
def sklearn_baseline(data: dict, rows: int, n_slices: int, sample: int, seed: int = 1):
    """pandas groupby (all rows) + scikit-learn per slice (a random sample of slices,
    extrapolated by rows). Returns timings and the sampled values for a cross-check."""
    from sklearn.metrics import (accuracy_score, average_precision_score,
                                 precision_recall_fscore_support, roc_auc_score)

    df = pd.DataFrame({"slice": pd.Categorical.from_codes(data["slice_id"][:rows],
                                                          [f"slice_{i:05d}" for i in
                                                           range(n_slices)]),
                       "label": data["label"][:rows], "prediction": data["prediction"][:rows],
                       "score": data["score"][:rows]})
    with Clock() as c_group:
        indices = df.groupby("slice", observed=True, sort=False).indices
    rng = np.random.default_rng(seed)
    names = sorted(indices)
    picked = [names[i] for i in rng.choice(len(names), min(sample, len(names)), replace=False)]
    y, p, s = (df[k].to_numpy() for k in ("label", "prediction", "score"))
    values, sample_rows = {}, 0
    t_label = [0.0, 0.0]
    t_score = [0.0, 0.0]
    for name in picked:
        idx = indices[name]
        sample_rows += idx.size
        yy, pp, ss = y[idx], p[idx], s[idx]
        with Clock() as c:
            acc = accuracy_score(yy, pp)
            prec, rec, f1, _ = precision_recall_fscore_support(yy, pp, average="binary",
                                                               zero_division=np.nan)
        t_label[0] += c.cpu
        t_label[1] += c.wall
        with Clock() as c:
            auc = roc_auc_score(yy, ss) if 0 < yy.sum() < yy.size else math.nan
            ap = average_precision_score(yy, ss)
        t_score[0] += c.cpu
        t_score[1] += c.wall
        values[name] = {"accuracy": acc, "precision": prec, "recall": rec, "f1": f1,
                        "roc_auc": auc, "pr_auc": ap}
    scale = rows / sample_rows
    return {"groupby": (c_group.cpu, c_group.wall),
            "label": (t_label[0] * scale, t_label[1] * scale),
            "score": (t_score[0] * scale, t_score[1] * scale),
            "sample_slices": len(picked), "sample_rows": sample_rows, "scale": scale,
            "values": values}


def pandas_vectorised_labels(data: dict, rows: int) -> tuple[float, float]:
    """Stricter label baseline: confusion counts per slice in one pandas groupby, then the
    metrics as column arithmetic (no scikit-learn, no Python loop over slices)."""
    df = pd.DataFrame({"slice": pd.Categorical.from_codes(data["slice_id"][:rows],
                                                          [str(i) for i in
                                                           range(int(data["slice_id"].max()) + 1)]),
                       "cell": data["label"][:rows] * 2 + data["prediction"][:rows]})
    with Clock() as c:
        m = df.groupby(["slice", "cell"], observed=True).size().unstack(fill_value=0)
        m = m.reindex(columns=[0, 1, 2, 3], fill_value=0)
        tn, fp, fn, tp = (m[k].to_numpy(float) for k in range(4))
        with np.errstate(invalid="ignore", divide="ignore"):
            _ = (tp + tn) / (tp + tn + fp + fn), tp / (tp + fp), tp / (tp + fn), \
                2 * tp / (2 * tp + fp + fn)
    return c.cpu, c.wall


def cross_check(results: dict, values: dict) -> tuple[float, float, int]:
    """Max |ours - sklearn| over the sampled slices: label metrics (must be ~0) and score
    metrics in units of their guaranteed error bound (must be <= 1)."""
    lab = results_by_key(results["label"])
    sco = results_by_key(results["score"])
    worst_label, worst_ratio, n = 0.0, 0.0, 0
    for name, v in values.items():
        key = (name,)
        for metric in ("precision", "recall", "f1"):
            r = lab[key][(metric, None, "binary")]
            if not (math.isnan(r.value) and math.isnan(v[metric])):
                worst_label = max(worst_label, abs(r.value - v[metric]))
        worst_label = max(worst_label, abs(lab[key][("accuracy", None, None)].value -
                                           v["accuracy"]))
        for metric in ("roc_auc", "pr_auc"):
            r = sco[key][(metric, None, None)]
            if math.isnan(v[metric]):
                continue
            err = abs(r.value - v[metric])
            worst_ratio = max(worst_ratio, err / r.error_bound if r.error_bound > 0 else
                              (0.0 if err < 1e-9 else math.inf))
        n += 1
    return worst_label, worst_ratio, n


def profile(data: dict, rows: int, batch: int, budget: int | None, merge: str, top: int) -> str:
    pr = cProfile.Profile(time.process_time)  # CPU time: robust to other load on the machine
    pr.enable()
    run_core(data, rows, batch, budget, merge)
    pr.disable()
    buf = io.StringIO()
    pstats.Stats(pr, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def _rate(rows, secs):
    return rows / secs[0] / 1e6 if secs[0] > 0 else math.inf


def report_core(core: Core, rows: int, budget: int) -> dict:
    """Print one run's rates; returns {family: (cpu, wall) incl. factorisation}."""
    fac = core.t["factorize"]

    def line(name, secs, note=""):
        print(f"  {name:46s} {_rate(rows, secs):7.2f} M rows/s/core  "
              f"[{rows / secs[1] / 1e6:6.2f} M rows/s wall, {secs[0]:6.2f} s CPU]{note}")

    line("group factorisation (group_index, string col)", fac)
    out = {}
    for name, label, target in (("label", "LABEL metrics (ClassificationSpec)", TARGET_LABEL),
                                ("score", "SCORE metrics (BinaryScoreSpec, default)",
                                 TARGET_SCORE),
                                ("score_small", f"score metrics (bucket_budget={budget})",
                                 TARGET_SCORE)):
        if name not in core.t:
            continue
        acc = core.t[name]
        line(f"  {name}: accumulate + merge", acc,
             f"  (of which merge() {core.merge_cpu[name]:.2f} s CPU)" if core.merge == "tree"
             else "")
        both = (acc[0] + fac[0], acc[1] + fac[1])
        out[name] = both
        line(f"{label} incl. factorisation", both,
             f"  target >= {target / 1e6:.0f}M: {'MET' if _rate(rows, both) * 1e6 >= target else 'NOT MET'}")
        fin = core.finalize_times[name]
        print(f"  {'':46s} + finalize {fin[0]:.2f} s CPU [{fin[1]:.2f} s wall] -> "
              f"{rows / (both[0] + fin[0]) / 1e6:.2f} M rows/s/core end to end")
    n_groups = core.states["label"].table.n_groups
    hist = core.states["score"].hist
    print(f"  merged state: {n_groups:,} groups; default score histogram {hist.cell.size:,} "
          f"buckets ({hist.nbytes / 2**20:.0f} MiB, max shift {int(hist.shift.max())})"
          + (f"; bucket_budget={budget}: {core.states['score_small'].hist.cell.size:,} buckets "
             f"({core.states['score_small'].hist.nbytes / 2**20:.0f} MiB)"
             if "score_small" in core.states else ""))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=30_000_000)
    ap.add_argument("--batch", type=int, default=1_000_000)
    ap.add_argument("--slices", type=int, default=5_000)
    ap.add_argument("--sample-slices", type=int, default=250,
                    help="slices scikit-learn computes (extrapolated to all rows)")
    ap.add_argument("--budget", type=int, default=1024,
                    help="bucket budget of a second, coarser score spec (0: skip)")
    ap.add_argument("--merge", choices=("tree", "fold", "both"), default="both",
                    help="how batch states are merged (tree: as the engine; fold: one running "
                         "state); the ratios use tree")
    ap.add_argument("--profile-rows", type=int, default=0,
                    help="also cProfile (CPU time) the core over this many rows, tree merge")
    args = ap.parse_args()
    rows = args.rows

    print("== rayeval core benchmark (single process) ==")
    for line in machine_notes():
        print("  " + line)
    t = time.perf_counter()
    data = make_data(rows, args.slices)
    print(f"  data: {rows:,} rows, {args.slices:,} slices (string column, skewed sizes), "
          f"batches of {args.batch:,} rows; built in {time.perf_counter() - t:.1f} s", flush=True)

    modes = ("tree", "fold") if args.merge == "both" else (args.merge,)
    ours, results = {}, None
    for mode in modes:
        print(f"\n-- rayeval core, merge={mode} (rows per CPU-second = rows/s/core; wall in "
              f"brackets) --")
        core, res = run_core(data, rows, args.batch, args.budget or None, mode)
        ours[mode] = report_core(core, rows, args.budget)
        if results is None:
            results, fin = res, core.finalize_times
        sys.stdout.flush()

    print("\n-- baseline: pandas groupby + scikit-learn, same data, same run --")
    base = sklearn_baseline(data, rows, args.slices, args.sample_slices)
    g = base["groupby"]
    print(f"  pandas groupby(slice).indices over all rows: {g[0]:.2f} s CPU [{g[1]:.2f} s wall]")
    print(f"  scikit-learn ran on a RANDOM SAMPLE of {base['sample_slices']} of {args.slices} "
          f"slices ({base['sample_rows']:,} rows); its time is EXTRAPOLATED x{base['scale']:.1f} "
          f"by rows:")
    b_label = (base["label"][0] + g[0], base["label"][1] + g[1])
    b_score = (base["score"][0] + g[0], base["score"][1] + g[1])
    print(f"  label metrics (accuracy_score + precision_recall_fscore_support): "
          f"{b_label[0]:.1f} s CPU [{b_label[1]:.1f} s wall] = {rows / b_label[0] / 1e6:.3f} M "
          f"rows/s/core")
    print(f"  score metrics (roc_auc_score + average_precision_score): {b_score[0]:.1f} s CPU "
          f"[{b_score[1]:.1f} s wall] = {rows / b_score[0] / 1e6:.3f} M rows/s/core")
    vec = pandas_vectorised_labels(data, rows)
    print(f"  stricter label baseline, one vectorised pandas groupby of confusion counts: "
          f"{vec[0]:.2f} s CPU [{vec[1]:.2f} s wall] = {rows / vec[0] / 1e6:.2f} M rows/s/core")

    mode = modes[0]
    o = ours[mode]
    print(f"\n-- ratios, merge={mode} (CPU time, baseline / rayeval: higher is better; target "
          f">= {TARGET_RATIO:.0f}x vs pandas + sklearn; wall in brackets) --")
    fin_l, fin_s = fin["label"], fin["score"]
    for name, ours_t, theirs in (
            ("label metrics vs pandas+sklearn", o["label"], b_label),
            ("score metrics vs pandas+sklearn", o["score"], b_score),
            ("label+score incl. finalize vs pandas+sklearn",
             (o["label"][0] + o["score"][0] + fin_l[0] + fin_s[0],
              o["label"][1] + o["score"][1] + fin_l[1] + fin_s[1]),
             (b_label[0] + b_score[0] - g[0], b_label[1] + b_score[1] - g[1])),
            ("label metrics vs vectorised pandas groupby", o["label"], vec)):
        print(f"  {name:46s} {theirs[0] / ours_t[0]:8.1f}x  [wall {theirs[1] / ours_t[1]:7.1f}x]")

    worst_label, worst_ratio, n = cross_check(results, base["values"])
    print(f"\n  cross-check on the {n} sampled slices: max |label metric - sklearn| = "
          f"{worst_label:.2e}; max |auc/ap - sklearn| / error_bound = {worst_ratio:.2f} "
          f"(<= 1 required)")
    if args.profile_rows:
        n = min(args.profile_rows, rows)
        print(f"\n-- cProfile (CPU time) of the core over {n:,} rows, merge=tree, top by own "
              f"time --")
        print(profile(data, n, args.batch, args.budget or None, "tree", 25))
    print(f"  load average after: {load_average()}")


if __name__ == "__main__":
    main()
