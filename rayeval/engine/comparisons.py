"""The ``comparisons`` table: champion vs challenger per task, metric, slice and window (no Ray).

One row per (pair, task, metric, window, slice) where both models have an unsuppressed group:
baseline and candidate values, ``difference`` = candidate - baseline, its paired bootstrap
interval (``ci_lower``, ``ci_upper``), ``p_value`` (exact McNemar on the discordant pairs for
``accuracy``, chi-squared above 10,000 discordant pairs; else the paired bootstrap),
``p_adjusted`` (Benjamini-Hochberg across the slices of a window, per pair, task and metric),
``significant`` (``p_adjusted <= comparisons.fdr``), ``n_paired`` and ``n_unpaired`` (rows of
either model whose id the other did not predict in that window).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rayeval.engine.pairing import PAIRS
from rayeval.stats.metric_intervals import COUNTS
from rayeval.stats.paired import EXACT_MAX, benjamini_hochberg, mcnemar, paired_difference

COMPARISON_COLUMNS = ["run_id", "task", "baseline", "candidate", "window_start", "window_end",
                      "slice", "slice_columns", "metric", "average", "direction",
                      "baseline_value", "candidate_value", "difference", "ci_lower", "ci_upper",
                      "p_value", "p_adjusted", "significant", "test", "n_paired", "n_unpaired"]
COMPARISON_ORDER = ["task", "baseline", "candidate", "metric", "average", "window_start",
                    "slice_columns", "slice"]
MCNEMAR_METRICS = ("accuracy",)


def selected(metric: str, class_label, average, wanted) -> bool:
    """Whether a metric value is compared (default: overall values and the binary average)."""
    if metric in COUNTS or class_label is not None or average not in (None, "binary"):
        return False
    return wanted is None or metric in wanted


class ComparisonBuilder:
    """Collects comparison rows family by family (see the module docstring)."""

    def __init__(self, plan, merged: dict, run_id: str):
        self.cfg = plan.cfg
        self.merged = merged
        self.run_id = run_id
        self.rows: list[pd.DataFrame] = []

    def add(self, task: str, sl, sg, cols, reps: dict, rep_keys: tuple) -> None:
        """Rows of one (task, slice spec, family) from its finalized columns ``cols`` and its
        replicate values ``reps`` (``(metric, class, average) -> (G_rep, B + 1)``, groups in
        ``rep_keys`` order); ``sg`` gives the groups' window bounds, slice names, row counts
        and suppression."""
        if not len(cols) or not reps:
            return
        position = {k: i for i, k in enumerate(cols.keys)}
        rep_pos = {k: i for i, k in enumerate(rep_keys)}
        text = cols.text
        metric_v, metric_c = text["metric"]
        class_v, class_c = text["class_label"]
        avg_v, avg_c = text["average"]
        dir_v, dir_c = text["direction"]
        group, value = cols.group, cols.value
        for i, pair in enumerate(self.cfg.comparisons.pairs):
            state = self.merged.get(f"{PAIRS}{i}|{sl.name}")
            counts = {} if state is None else dict(zip(state.keys, range(len(state.keys))))
            base_g, cand_g, keys = [], [], []
            for key, gi in position.items():
                model, win, vals = key
                if model != pair.candidate:
                    continue
                bi = position.get((pair.baseline, win, vals))
                if bi is None or key not in rep_pos or (pair.baseline, win, vals) not in rep_pos:
                    continue
                nb, nc = sg.numbers([(pair.baseline, win, vals), key])
                if sg.suppressed[nb] or sg.suppressed[nc]:
                    continue
                base_g.append(bi)
                cand_g.append(gi)
                keys.append((key, nb, nc))
            if not keys:
                continue
            base_g, cand_g = np.array(base_g), np.array(cand_g)
            n = len(keys)
            paired = np.zeros(n)
            unpaired = np.zeros(n)
            disc = {}
            for j, (key, nb, nc) in enumerate(keys):
                c = counts.get(key)
                rows_c = paired_c = 0
                if c is not None:
                    rows_c, paired_c = state.arrays["rows"][c]
                    for name, arr in state.arrays.items():
                        if name.startswith("mcnemar|"):
                            disc.setdefault(name[8:], np.zeros((n, 3)))[j] = arr[c]
                paired[j] = paired_c
                unpaired[j] = (rows_c - paired_c) + (sg.n_rows[nb] - paired_c)
            wanted = self.cfg.comparisons.metrics
            combos = {}
            for r in range(len(metric_c)):
                combos.setdefault((metric_c[r], class_c[r], avg_c[r], dir_c[r]), []).append(r)
            for (mc, cc, ac, dc), rows in combos.items():
                combo = (metric_v[mc], class_v[cc], avg_v[ac])
                if combo not in reps or not selected(*combo, wanted):
                    continue
                rows = np.asarray(rows)
                by_group = np.full(len(cols.keys), np.nan)
                by_group[group[rows]] = value[rows]
                r = reps[combo]
                bk = [rep_pos[(pair.baseline,) + k[0][1:]] for k in keys]
                ck = [rep_pos[k[0]] for k in keys]
                diff, lo, hi, p = paired_difference(by_group[base_g], by_group[cand_g], r[bk],
                                                    r[ck], self.cfg.intervals.level)
                test = np.full(n, "paired_bootstrap", dtype=object)
                if combo[0] in MCNEMAR_METRICS and task in disc:
                    _, b, c = disc[task].T
                    p = np.where(np.isfinite(diff), mcnemar(b, c), np.nan)
                    test[:] = np.where(b + c <= EXACT_MAX, "mcnemar_exact", "mcnemar_chi2")
                nbs = np.array([k[1] for k in keys])
                self.rows.append(pd.DataFrame({
                    "run_id": self.run_id, "task": task, "baseline": pair.baseline,
                    "candidate": pair.candidate,
                    "window_start": np.asarray(sg.window_start)[nbs],
                    "window_end": np.asarray(sg.window_end)[nbs],
                    "slice": [sg.slice[k] for k in nbs], "slice_columns": ",".join(sl.columns),
                    "metric": combo[0], "average": combo[2], "direction": dir_v[dc],
                    "baseline_value": by_group[base_g], "candidate_value": by_group[cand_g],
                    "difference": diff, "ci_lower": lo, "ci_upper": hi, "p_value": p,
                    "test": test, "n_paired": paired.astype(np.int64),
                    "n_unpaired": unpaired.astype(np.int64)}))

    def frame(self) -> pd.DataFrame:
        """The table, Benjamini-Hochberg adjusted, in :data:`COMPARISON_ORDER`."""
        if not self.rows:
            return empty_comparisons()
        df = pd.concat(self.rows, ignore_index=True)
        df["window_start"] = _utc(df["window_start"])
        df["window_end"] = _utc(df["window_end"])
        family = ["task", "baseline", "candidate", "metric", "average", "window_start"]
        df["p_adjusted"] = np.nan
        for _, idx in df.groupby(family, dropna=False, sort=False).indices.items():
            df.loc[df.index[idx], "p_adjusted"] = benjamini_hochberg(
                df["p_value"].to_numpy()[idx])
        df["significant"] = (df["p_adjusted"] <= self.cfg.comparisons.fdr).to_numpy()
        df = df.sort_values(COMPARISON_ORDER, na_position="first", kind="stable")
        return df[COMPARISON_COLUMNS].reset_index(drop=True)


def _utc(ns) -> pd.Series:
    v = np.asarray(ns, dtype=np.int64)
    out = pd.to_datetime(np.where(v == np.iinfo(np.int64).min, np.iinfo(np.int64).min, v),
                         utc=True)
    return out


def empty_comparisons() -> pd.DataFrame:
    """The table with no rows, typed columns (a fixed schema also when empty)."""
    types = {"window_start": "datetime64[ns, UTC]", "window_end": "datetime64[ns, UTC]",
             "significant": bool, "n_paired": np.int64, "n_unpaired": np.int64}
    floats = ("baseline_value", "candidate_value", "difference", "ci_lower", "ci_upper",
              "p_value", "p_adjusted")
    return pd.DataFrame({c: pd.Series([], dtype=types.get(c, np.float64 if c in floats
                                                           else object))
                         for c in COMPARISON_COLUMNS})
