"""The flights example's model training and scoring (examples/flights/prepare.py), the current
challenger against the one before it (300 early-stopped trees of 63 leaves on 250k January
rows), in the same process: wall and CPU seconds per step.

    python benchmarks/bench_prepare.py [--sample-frac 1.0]

CPU seconds stand for the wall time of an idle machine here (one OpenMP thread, see
``FLIGHTS_PREPARE_THREADS``): on a shared machine the wall time grows with the load.
"""

from __future__ import annotations

import argparse
import sys
import time

from _util import ROOT, load_average, machine_notes

sys.path.insert(0, str(ROOT / "examples" / "flights"))
import prepare as prep  # noqa: E402


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample-frac", type=float, default=1.0)
    ap.add_argument("--only-now", action="store_true", help="skip the earlier challenger")
    args = ap.parse_args()
    for line in machine_notes():
        print(line)
    from threadpoolctl import threadpool_limits

    (df, _), w, c = timed(lambda: prep.load_flights(prep.DEFAULT_DATA_DIR, args.sample_frac))
    print(f"load {len(df):,} flights: {w:.1f}s wall, {c:.1f}s CPU")
    new_params, new_cap = prep._challenger_model, prep.MAX_TRAIN_ROWS
    old = dict(learning_rate=0.1, max_iter=300, max_leaf_nodes=63, min_samples_leaf=100,
               l2_regularization=1.0, categorical_features=prep.CHALLENGER_CATEGORICAL,
               early_stopping=True, validation_fraction=0.1, n_iter_no_change=15)

    def old_model(kind, seed):
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
        cls = HistGradientBoostingClassifier if kind == "clf" else HistGradientBoostingRegressor
        return cls(random_state=seed, **old)

    rows = {}
    for name, model, cap in (("before (300 trees, 250k rows)", old_model, 250_000),
                             (f"now ({prep.CHALLENGER_TREES} trees, {prep.MAX_TRAIN_ROWS // 1000}k rows)",
                              new_params, new_cap)):
        if args.only_now and model is old_model:
            continue
        prep._challenger_model, prep.MAX_TRAIN_ROWS = model, cap
        with threadpool_limits(limits=prep.OMP_THREADS, user_api="openmp"):
            (bundles, info), tw, tc = timed(lambda: prep.train_models(df, 0))
            _, sw, sc = timed(lambda: {k: prep.score(df, b) for k, b in bundles.items()})
        test = (df["date"] >= prep.TRAIN_END).to_numpy()
        y = df["delayed"].to_numpy()
        scores = {k: prep.score(df, b)[0] for k, b in bundles.items()}
        aucs = {k: prep._auc(y[test], s[test]) for k, s in scores.items()}
        rows[name] = (tw, tc, sw, sc, aucs, info)
        print(f"{name}: train {tw:.1f}s wall / {tc:.1f}s CPU, score {sw:.1f}s wall / "
              f"{sc:.1f}s CPU; Feb-Jun AUC " + ", ".join(f"{k} {v:.4f}" for k, v in aucs.items())
              + f"; load average {load_average()}")
    prep._challenger_model = new_params


if __name__ == "__main__":
    main()
