"""The drift table from merged histograms: per model, window, slice and monitored column one
verdict (the deciding method), every other method's statistic as information, the column's
data quality, one dataset row per model, window and slice, and the reference vs current bin
shares of the report's plots. :class:`DriftTable` is the finalize half of
:class:`~rayeval.engine.drift_plan.DriftPlan` (which accumulates the histograms)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rayeval.drift import compare_rows, data_quality, default_method, learned_threshold
from rayeval.drift.decision import SMALL_REFERENCE
from rayeval.drift.methods import METHODS, reported_methods
from rayeval.engine.plan import ALL_MODELS
from rayeval.io.schemas import DRIFT_INFO_FIELDS, DRIFT_QUALITY
from rayeval.slicing import NO_WINDOW, window_end


#: informational statistics of every registered method (never the verdict): ``info_<method>``
#: for a distance, ``info_<method>_statistic`` and ``info_<method>_p_value`` for a test, plus
#: ``info_<method>_error_bound`` for an estimate of the raw-sample statistic (not binned)
INFO_COLUMNS = [name for name, _, _ in DRIFT_INFO_FIELDS]
QUALITY_COLUMNS = [name for name, _ in DRIFT_QUALITY]
DRIFT_COLUMNS = ["run_id", "model", "window_start", "window_end", "slice", "slice_columns",
                 "feature", "kind", "method", "statistic", "p_value", "threshold", "drifted",
                 "reference_window", "error_bound", "smoothing", "undefined_reason",
                 "n_reference", "n_current"] + INFO_COLUMNS + QUALITY_COLUMNS
DRIFT_ORDER = ["model", "window_start", "slice_columns", "slice", "kind", "feature"]
#: a test deciding at this many reference rows or more gets a manifest warning: its p-value
#: flags differences too small to matter
LARGE_N_TEST = 100_000
HIST_COLUMNS = ["run_id", "model", "feature", "kind", "window_start", "bin", "bin_label", "reference",
                "current"]


@dataclass(frozen=True)
class Monitored:
    """One monitored column: its source (``table`` or ``label``), type and drift kind."""

    column: str
    kind: str  # feature / prediction / label
    dtype: str  # numeric / categorical
    source: str = "table"
    method: str | None = None
    threshold: float | None = None


class DriftTable:
    """The finalize half of :class:`~rayeval.engine.drift_plan.DriftPlan` (a base class: it
    reads the plan's ``cfg``, ``columns``, ``binnings``, ``hist_specs``, ``slices``,
    ``reference_name`` and ``reference_in_scan``)."""

    def finalize(self, ref_partial: dict | None, merged: dict, run_id: str) -> pd.DataFrame:
        """The ``drift`` table: one row per model, window, slice and monitored column with
        ONE verdict (``method``, ``statistic``, ``p_value``, ``threshold``, ``drifted``: the
        deciding method, see :meth:`_decision`), every other method's statistic as an
        informational ``info_*`` column (:data:`INFO_COLUMNS`, never a verdict), the column's
        data quality (:data:`QUALITY_COLUMNS`), plus one ``kind = dataset`` row per model,
        window and slice (share of drifted features).

        Args:
            ref_partial: the reference pass's merged partial (``None`` for ``previous_window``;
                with ``reference_in_scan`` the reference states come from ``merged``).
            merged: the current scan's merged partial.
            run_id: written to every row.
        """
        rows: list[dict] = []
        self.histograms = []
        #: learned thresholds that could not be learned (run manifest warnings)
        self.finalize_warnings: list[str] = []
        self._warned_tests: set = set()
        if self.reference_in_scan:  # states named like those of a separate reference pass
            ref_partial = {n.replace("drift|ref|", "drift|hist|", 1): st
                           for n, st in merged.items()
                           if n.startswith(("drift|ref|", "drift|chunks|"))}
        prev = self.cfg.drift.reference.kind == "previous_window"
        size = self.cfg.windows.size
        for name in sorted(n for n in merged if n.startswith("drift|hist|")):
            cur_state, spec = merged[name], self.hist_spec(name)
            _, _, source, column, model, sl_name = name.split("|", 5)
            m = next(c for c in self.columns if c.source == source and c.column == column)
            sl = next(s for s in self.slices if s.name == sl_name)
            cur = spec.table(cur_state)
            keys = list(cur.keys)  # (model, window, values)
            if prev:
                windows = sorted({k[1] for k in keys})
                before = {w: windows[i - 1] for i, w in enumerate(windows) if i > 0}
                pairs = [(i, (k[0], before[k[1]], k[2])) for i, k in enumerate(keys)
                         if k[1] in before]
                ref_tab = cur
            else:
                ref_state_name = name
                if name not in (ref_partial or {}):  # a reference without a model column
                    ref_state_name = _all_models(name)
                ref_state = (ref_partial or {}).get(ref_state_name)
                if ref_state is None:
                    continue
                ref_tab = spec.table(ref_state)
                pairs = [(i, (k[0], NO_WINDOW, k[2])) for i, k in enumerate(keys)]
            ref_pos = {k: i for i, k in enumerate(ref_tab.keys)}
            if not prev and ref_state_name != name and keys:  # its keys hold ALL_MODELS
                ref_pos = {(keys[0][0],) + k[1:]: i for i, k in enumerate(ref_tab.keys)}
            pairs = [(i, ref_pos[rk], rk) for i, rk in pairs if rk in ref_pos]
            if not pairs:
                continue
            ci = [p[0] for p in pairs]
            ri = [p[1] for p in pairs]
            c_h, r_h = cur.take(ci), ref_tab.take(ri)
            learned = None
            chunk_state = None if prev else (ref_partial or {}).get(
                ref_state_name.replace("drift|hist|", "drift|chunks|", 1))
            if chunk_state is not None and not sl.columns:
                learned = self._learned(m, spec, chunk_state, r_h)
            if self.learned and not sl.columns and learned is None:
                self.finalize_warnings.append(
                    f"drift: no learned threshold for {m.kind} {column!r} of model {model} "
                    f"(fewer than 2 reference chunks of a {self.cfg.drift.learned_chunk} with "
                    f"values): its default threshold decides")
            results = self._compare(m, spec.binning, r_h, c_h, learned)
            quality = data_quality(c_h, spec.binning)
            for (i, _, rk), per_method, q in zip(pairs, results, quality):
                key = keys[i]
                ws, we = self._bounds(key[1], size)
                ref_name = (str(pd.Timestamp(rk[1], tz="UTC").date()) if prev
                            else self.reference_name)
                verdict = next(r for r, is_decision in per_method if is_decision)
                row = {"run_id": run_id, "model": key[0], "window_start": ws,
                       "window_end": we, "slice": sl.render(key[2]),
                       "slice_columns": ",".join(sl.columns) or None, "feature": column,
                       "kind": m.kind, "method": verdict.method,
                       "statistic": verdict.statistic, "p_value": verdict.p_value,
                       "threshold": verdict.threshold, "drifted": bool(verdict.drifted),
                       "reference_window": ref_name, "error_bound": verdict.error_bound,
                       "smoothing": verdict.smoothing,
                       "undefined_reason": verdict.undefined_reason or None,
                       "n_reference": verdict.n_reference, "n_current": verdict.n_current}
                for r, _ in per_method:
                    meth = METHODS[r.method]
                    if meth.test:
                        row[f"info_{r.method}_statistic"] = r.statistic
                        row[f"info_{r.method}_p_value"] = r.p_value
                    else:
                        row[f"info_{r.method}"] = r.statistic
                    if not meth.binned:
                        row[f"info_{r.method}_error_bound"] = r.error_bound
                for c in QUALITY_COLUMNS:
                    row[c] = getattr(q, c)
                rows.append(row)
                if (METHODS[verdict.method].test and verdict.n_reference >= LARGE_N_TEST
                        and m.column not in self._warned_tests):
                    self._warned_tests.add(m.column)
                    self.finalize_warnings.append(
                        f"drift: {m.kind} {column!r} is decided by the test "
                        f"{verdict.method!r} at {verdict.n_reference:,.0f} reference rows: at "
                        f"that size its p-value flags differences too small to matter; a "
                        f"distance with a threshold (the default above "
                        f"{SMALL_REFERENCE:,} rows) gives a verdict that does not drown")
            if not sl.columns:
                self._histogram_rows(run_id, m, column, spec.binning, r_h, c_h,
                                     [keys[i] for i in ci])
        df = pd.DataFrame(rows, columns=DRIFT_COLUMNS)
        if len(df):
            df = pd.concat([df, self._dataset_rows(df)], ignore_index=True)
        # a fixed row order: the merged states list their groups in the order workers met them
        return df.sort_values(DRIFT_ORDER, kind="stable", na_position="first",
                              ignore_index=True)

    def _dataset_rows(self, df: pd.DataFrame) -> pd.DataFrame:
        """Dataset-level drift per model, window and slice: the share of drifted features among
        those with a defined verdict statistic (kind ``dataset``, feature ``*``)."""
        dec = df[df["kind"] == "feature"]
        thr = self.cfg.drift.dataset_drift_share
        out = []
        keys = ["model", "window_start", "window_end", "slice", "slice_columns"]
        for key, g in dec.groupby(keys, dropna=False, sort=False):
            defined = g[g["undefined_reason"].isna()]
            share = float(defined["drifted"].mean()) if len(defined) else math.nan
            out.append({**dict(zip(keys, key)), "run_id": g["run_id"].iloc[0], "feature": "*",
                        "kind": "dataset", "method": "share_drifted_features",
                        "statistic": share, "p_value": math.nan, "threshold": thr,
                        "drifted": bool(share >= thr) if not math.isnan(share) else False,
                        "reference_window": g["reference_window"].iloc[0],
                        "error_bound": 0.0, "smoothing": 0.0,
                        "undefined_reason": None if len(defined) else "empty",
                        "n_reference": math.nan, "n_current": float(len(defined))})
        return pd.DataFrame(out, columns=DRIFT_COLUMNS)

    def _decision(self, m: Monitored, binning, ref) -> tuple[str, float | None]:
        if m.method:
            return m.method, m.threshold
        n_ref = int(np.median(ref.scalars["rows"])) if len(ref) else 0
        ch = default_method(binning.kind, n_ref, binning.n_distinct)
        return ch.method, ch.threshold

    def _learned(self, m: Monitored, spec, chunk_state, ref):
        """NannyML-style threshold (mean + 3 std over reference chunks) for the decision method;
        None when fewer than two chunks have a defined statistic."""
        method, _ = self._decision(m, spec.binning, ref)
        chunks = spec.table(chunk_state)
        try:
            return learned_threshold(chunks, spec.binning, method, base=self.cfg.drift.js_base)
        except ValueError:
            return None

    def _compare(self, m: Monitored, binning, ref, cur, learned=None) -> list[list[tuple]]:
        """Per current row: every method of its type, and which one decides ``drifted``."""
        methods = reported_methods(binning.kind)
        decision = self._decision(m, binning, ref)
        if learned is not None:
            decision = (decision[0], learned)
        out: list[list[tuple]] = [[] for _ in range(len(cur))]
        for meth in dict.fromkeys((decision[0],) + methods):
            if binning.kind not in METHODS[meth].kinds:
                continue
            # a reported method without a default threshold (its unit is the feature's) never
            # flags drift unless it decides
            thr = (decision[1] if meth == decision[0]
                   else None if METHODS[meth].default_threshold is not None else math.inf)
            opts = {"base": self.cfg.drift.js_base}
            if len(cur) > 50:
                opts["ks_p_method"] = "asymp"
            res = compare_rows(ref, cur, binning, meth, thr, **opts)
            for i, r in enumerate(res):
                out[i].append((r, meth == decision[0]))
        return out

    def _bounds(self, win, size):
        if win == NO_WINDOW:
            return pd.NaT, pd.NaT
        return pd.Timestamp(win, tz="UTC"), pd.Timestamp(window_end(win, size), tz="UTC")

    def _histogram_rows(self, run_id, m, column, binning, ref, cur, keys) -> None:
        labels = bin_labels(binning)
        r = ref.counts / np.maximum(ref.counts.sum(1, keepdims=True), 1e-300)
        c = cur.counts / np.maximum(cur.counts.sum(1, keepdims=True), 1e-300)
        for i, key in enumerate(keys):
            ws, _ = self._bounds(key[1], self.cfg.windows.size)
            for b, lab in enumerate(labels):
                self.histograms.append({"run_id": run_id, "model": key[0], "feature": column, "kind": m.kind,
                                        "window_start": ws, "bin": b, "bin_label": lab,
                                        "reference": float(r[i, b]), "current": float(c[i, b])})

    def histogram_table(self) -> pd.DataFrame:
        """Overall-slice reference vs current bin shares (for the report's plots)."""
        df = pd.DataFrame(getattr(self, "histograms", []), columns=HIST_COLUMNS)
        return df.sort_values(["model", "feature", "kind", "window_start", "bin"], kind="stable",
                              na_position="first", ignore_index=True)


def _all_models(name: str) -> str:
    """State ``name`` (``drift|<phase>|source|column|model|slice``) with the model part
    replaced by :data:`~rayeval.engine.plan.ALL_MODELS`."""
    head, _, slice_name = name.rsplit("|", 2)
    return f"{head}|{ALL_MODELS}|{slice_name}"


def bin_labels(binning) -> list[str]:
    """Human labels of a binning's bins: ``[lo, hi)`` or a value (numeric), the category or
    ``other`` (categorical)."""
    if binning.kind == "numeric":
        lo, hi, point = binning.bounds
        return [f"{a:.4g}" if p else f"[{a:.4g}, {b:.4g})" for a, b, p in zip(lo, hi, point)]
    return [str(c) for c in binning.categories] + ["other"]
