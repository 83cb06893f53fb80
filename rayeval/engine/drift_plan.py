"""Drift in the engine: which columns are monitored, the two reference passes, and the drift table.

Monitored columns (each with a kind for the ``drift`` table):
``feature`` (``drift.features``), ``prediction`` (binary: the score as numeric and the predicted
class as categorical; multiclass: the predicted class; regression: the prediction as numeric) and
``label`` (classes as categorical, regression targets as numeric; labelled rows only).

Reference (``drift.reference.kind``): ``time_range`` of the predictions, a separate ``dataset``,
or ``previous_window`` (each window against the one before; bin edges then come from the first
window alone). Passes: (1) profiles over the reference (quantile histogram / category counts
per model) fix the binning of each column and model from the reference alone; (2) sparse histograms with those
binnings over the reference; (3) the same histograms over the current data inside the metric scan
(no extra pass). A ``time_range`` reference is part of the predictions dataset: the scan reads
its rows too (those outside the evaluated range ``windows.start/end`` feed the reference
histograms only, no metric), so pass (2) only runs for a separate reference ``dataset``.
Statistics are computed on the driver from merged histograms.

Per batch, each monitored column is converted once (a categorical one factorised once, by Arrow
for string and integer columns) and each model's rows are found once, then shared by every column
(:meth:`DriftPlan.accumulate`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from rayeval.config import JobConfig
from rayeval.drift import (CategoricalBinning, CategoricalProfileSpec, Factorized, HistogramSpec,
                           NumericBinning, NumericProfileSpec, compare_rows, data_quality,
                           default_method, learned_threshold)
from rayeval.drift.methods import METHODS, reported_methods
from rayeval.engine.preflight import required_prediction_columns
from rayeval.drift.decision import SMALL_REFERENCE
from rayeval.io.schemas import DRIFT_INFO_FIELDS, DRIFT_QUALITY
from rayeval.engine.labels import to_numpy
from rayeval.engine.plan import ALL_MODELS, exclusion_detail, utc_ns
from rayeval.metrics.base import GroupIndex
from rayeval.slicing import (NO_WINDOW, SliceSpec, combine, factorize, subset, window_end,
                             window_starts)

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


def _widened(edges: list[float], reference_edges: np.ndarray) -> list[float]:
    """Configured ``edges`` with the reference's min / max (the outer edges of its profile
    layout) added where they lie outside: the open under/overflow bins then hold no reference
    mass, as in a quantile layout, so out-of-range means outside the reference and the
    Wasserstein estimate keeps its exact out-of-range terms (a reference value in an open bin
    has no bound to anchor it)."""
    e = [float(x) for x in edges]
    if reference_edges.size:
        lo, hi = float(reference_edges[0]), float(reference_edges[-1])
        if lo < e[0]:
            e.insert(0, lo)
        if hi > e[-1]:
            e.append(hi)
    return e


def monitored_columns(cfg: JobConfig) -> list[Monitored]:
    """The columns whose drift the job reports (module docstring), each once."""
    d = cfg.drift
    out = [Monitored(f.name, "feature", f.kind, method=f.method, threshold=f.threshold)
           for f in d.features]
    seen = {(m.column, m.source) for m in out}

    def add(m: Monitored):
        if (m.column, m.source) not in seen:
            seen.add((m.column, m.source))
            out.append(m)

    for t in cfg.tasks:
        if d.predictions:
            if t.type == "regression":
                add(Monitored(t.prediction, "prediction", "numeric"))
            else:
                for col in ([t.score] if t.score else []) + list(t.scores or []):
                    add(Monitored(col, "prediction", "numeric"))  # per-class scores too
                if t.prediction:
                    add(Monitored(t.prediction, "prediction", "categorical"))
        if d.labels:
            add(Monitored(t.label, "label", "numeric" if t.type == "regression" else "categorical",
                          source="label"))
    return out


class DriftPlan:
    """Drift part of an :class:`~rayeval.engine.plan.EvalPlan` (picklable, no Ray).

    A plan is immutable once built: one plan per pass, each built from the previous pass's
    output. ``phase="profile"`` (a new plan): accumulate reference profiles (overall slice,
    keyed by model); ``phase="histogram"`` (the plan :meth:`with_binnings` builds from the
    profiles): accumulate histograms with the fixed binnings, for every drift slice
    (states ``drift|hist|...``). When ``reference_in_scan`` (a ``time_range`` reference), the
    current scan also accumulates the reference rows' histograms (states ``drift|ref|...``,
    windows collapsed; rows outside the evaluated range feed these states only) and the
    separate reference histogram pass is skipped.
    """

    def __init__(self, cfg: JobConfig, columns: list[Monitored], ref_range: tuple | None):
        self.cfg = cfg
        self.columns = columns
        self.ref_range = ref_range  # (start_ns, end_ns) on the predictions, or None
        ref = cfg.drift.reference
        self.reference_name = (ref.uri if ref.kind == "dataset" else
                               f"{ref.start.date()}/{ref.end.date()}" if ref.kind == "time_range"
                               else "previous_window")
        self.phase = "profile"
        self.learned = cfg.drift.learned_thresholds
        self.num_profile = NumericProfileSpec(n_bins=cfg.drift.n_bins)
        self.cat_profile = CategoricalProfileSpec(top_k=cfg.drift.top_k_categories,
                                                  capacity=max(1000, cfg.drift.top_k_categories))
        self.binnings: dict[tuple[str, str, object], object] = {}  # (source, column, model)
        self.hist_specs: dict[str, HistogramSpec] = {}
        self.slices = ([SliceSpec(c) for c in cfg.slice_specs()] if cfg.drift.slices
                       else [SliceSpec(())])
        self.reference_in_scan = ref.kind == "time_range" and ref_range is not None
        #: what the reference cannot serve (manifest warnings)
        self.warnings: list[str] = []
        #: configured bin edges of numeric features, by (source, column)
        self._edges = {("table", f.name): f.edges for f in cfg.drift.features
                       if f.edges is not None}

    # ---- state names ----------------------------------------------------------------------
    @staticmethod
    def name(phase: str, m: Monitored, model, sl: SliceSpec) -> str:
        return f"drift|{phase}|{m.source}|{m.column}|{model}|{sl.name}"

    def spec_for(self, name: str):
        _, phase, rest = name.split("|", 2)
        if phase == "profile":
            source, column, _ = rest.split("|", 2)
            m = next(c for c in self.columns if c.source == source and c.column == column)
            return self.num_profile if m.dtype == "numeric" else self.cat_profile
        return self.hist_spec("drift|hist|" + rest)  # hist, ref and chunks states share it

    def hist_spec(self, name: str) -> HistogramSpec | None:
        """The histogram spec of state ``name`` (``drift|hist|source|column|model|slice``):
        the model's own, else that of a reference without a model column (model
        :data:`~rayeval.engine.plan.ALL_MODELS`, shared by every model); ``None`` when the
        reference has neither."""
        spec = self.hist_specs.get(name)
        if spec is None:
            spec = self.hist_specs.get(_all_models(name))
        return spec

    def reference_mask(self, ts: np.ndarray) -> np.ndarray:
        if self.ref_range is None:
            return np.ones(ts.shape, dtype=bool)
        lo, hi = self.ref_range
        return (ts >= lo) & (ts < hi)

    # ---- per batch ------------------------------------------------------------------------
    def uses(self, sl: SliceSpec) -> bool:
        """Whether the current phase accumulates anything for slice spec ``sl``."""
        return sl in self.slices and not (self.phase == "profile" and sl.columns)

    def accumulate(self, out: dict, table: pa.Table, sl: SliceSpec, g: GroupIndex, source: str,
                   label_cols: dict, labeled: np.ndarray, weight: np.ndarray | None,
                   ts: np.ndarray) -> None:
        """Add one batch's drift states (profiles or histograms, by phase) to ``out``.

        Each column is converted, and a categorical one factorised, once per batch; the rows of
        each model (and their group index) are found once and shared by every column.
        """
        if not self.uses(sl):
            return
        profile = self.phase == "profile"
        learned = self.learned and not sl.columns and not profile
        # (state phase, group index, batch rows in it (None: all), learned-threshold chunks)
        targets: list[tuple[str, GroupIndex, np.ndarray | None, np.ndarray | None]] = []
        if profile:
            targets.append(("profile", g, None, None))
        elif source == "reference":
            targets.append(("hist", g, None, self._chunks(ts) if learned else None))
        else:
            targets.append(("hist", g, None, None))
            in_ref = self.reference_mask(ts) if self.reference_in_scan else None
            if in_ref is not None and in_ref.any():
                targets.append(("ref", _without_windows(g), in_ref,
                                self._chunks(ts) if learned else None))
        by_model = _model_rows(g)
        # rows whose weight is negative or not finite are excluded from drift (the metric
        # families count them as invalid per task), not an error
        w_ok = None
        if weight is not None and not profile:
            w_ok = np.isfinite(weight) & (weight >= 0)
            w_ok = None if w_ok.all() else w_ok
        groups: dict = {}  # (phase, model, source) -> (group index, chunk group index or None)
        for m in self.columns:
            values, missing, type_error = self._values(m, table, label_cols)
            for model, model_rows in by_model:
                if m.source == "label":
                    model_rows = model_rows[labeled[model_rows]]
                for phase, gt, mask, chunks in targets:
                    rows = model_rows if mask is None else model_rows[mask[model_rows]]
                    if profile:  # profiles see values only
                        rows = rows[~missing[rows]]
                    elif w_ok is not None:
                        rows = rows[w_ok[rows]]
                    if not rows.size:
                        continue
                    name = self.name(phase, m, model, sl)
                    batch = {"value": values[rows]}
                    gc = None
                    if profile:
                        spec = self.num_profile if m.dtype == "numeric" else self.cat_profile
                        # profiles are per model only: collapse windows and slice values
                        gm = GroupIndex(np.zeros(rows.size, np.int64), ((model,),))
                    else:
                        spec = self.hist_spec(self.name("hist", m, model, sl))
                        if spec is None:
                            continue  # no reference for this model
                        if weight is not None:
                            batch["weight"] = weight[rows]
                        if type_error is not None:
                            batch["type_error"] = type_error[rows]
                        if (phase, model, m.source) not in groups:
                            groups[phase, model, m.source] = self._groups(gt, rows, model, chunks)
                        gm, gc = groups[phase, model, m.source]
                    st = spec.accumulate(spec.zero(), batch, gm)
                    out[name] = spec.merge(out[name], st) if name in out else st
                    if gc is not None:  # reference chunks for learned thresholds
                        cname = self.name("chunks", m, model, sl)
                        stc = spec.accumulate(spec.zero(), batch, gc)
                        out[cname] = spec.merge(out[cname], stc) if cname in out else stc

    def _chunks(self, ts: np.ndarray) -> np.ndarray:
        """int64 (n,) start of each row's learned-threshold reference chunk."""
        return window_starts(ts, self.cfg.drift.learned_chunk)

    @staticmethod
    def _groups(g: GroupIndex, rows: np.ndarray, model, chunks: np.ndarray | None
                ) -> tuple[GroupIndex, GroupIndex | None]:
        """Group index of ``rows`` (int64 indices of one model's rows) and, when ``chunks``
        (int64 (n,) chunk starts) is given, the (model, chunk) index of the same rows."""
        mask = np.zeros(g.n_rows, dtype=bool)
        mask[rows] = True
        gm = subset(g, mask)
        if chunks is None:
            return gm, None
        gc = combine([factorize(np.full(rows.size, model, dtype=object)),
                      factorize(chunks[rows])])
        return gm, GroupIndex(gc.codes, tuple((k[0], k[1], ()) for k in gc.keys))

    def _values(self, m: Monitored, table: pa.Table, label_cols: dict
                ) -> tuple[np.ndarray | Factorized, np.ndarray, np.ndarray | None]:
        """Column ``m`` over the whole batch: ``(values, missing, type_error)``.

        ``values``: float64 (n,) for a numeric column (NaN = missing), a :class:`Factorized`
        column for a categorical one; ``missing``: bool (n,); ``type_error``: bool (n,) strings
        of a numeric column that do not parse as numbers, or ``None``.
        """
        if m.source == "label":
            raw = label_cols[m.column]
        else:
            if m.dtype == "categorical":
                fast = _factorize_arrow(table[m.column])
                if fast is not None:
                    return fast, fast.codes < 0, None
            raw = to_numpy(table[m.column])
        if m.dtype == "numeric":
            type_error = None
            if raw.dtype.kind in "iufb":
                vals = raw.astype(np.float64)
            else:  # strings in a numeric feature: parse, count failures as type errors
                s = pd.Series(raw, dtype=object)
                num = pd.to_numeric(s, errors="coerce")
                type_error = (s.notna() & num.isna()).to_numpy()
                vals = num.to_numpy(dtype=np.float64)
            return vals, np.isnan(vals), type_error
        if raw.dtype.kind == "f":  # float-typed classes (labels joined with NaN for missing)
            vals = np.where(np.isnan(raw), None, raw).astype(object)
            ok = ~np.isnan(raw)
            integral = ok & (raw == np.round(raw))
            vals[integral] = raw[integral].astype(np.int64)
        else:
            vals = raw.astype(object)
        f = Factorized.of(vals)
        return f, f.codes < 0, None

    # ---- between passes ---------------------------------------------------------------------
    def with_binnings(self, profile_partial: dict, warnings: list[str] = ()) -> "DriftPlan":
        """The histogram-phase plan: a new plan with binnings per (source, column, model)
        fixed from the reference profiles of this plan's pass (``self`` is left unchanged) and
        ``warnings`` added."""
        new = copy.copy(self)
        new.binnings, new.hist_specs = {}, {}
        new.warnings = self.warnings + list(warnings)
        new._fix_binnings(profile_partial)
        new.phase = "histogram"
        return new

    def _fix_binnings(self, profile_partial: dict) -> None:
        for name, state in profile_partial.items():
            if not name.startswith("drift|profile|"):
                continue
            _, _, source, column, model, _ = name.split("|", 5)
            spec = self.spec_for(name)
            model_v = state.keys[0][0]
            binning = spec.binning(state, (model_v,))
            edges = self._edges.get((source, column))
            if edges is not None:  # configured edges, widened to the reference's exact range
                binning = NumericBinning.from_edges(
                    _widened(edges, binning.edges), center=binning.center)
            if binning.kind == "categorical":
                self._check_categorical(column, model_v, binning, state)
            self.binnings[(source, column, model_v)] = binning
            m = next(c for c in self.columns if c.source == source and c.column == column)
            for sl in self.slices:
                self.hist_specs[self.name("hist", m, model_v, sl)] = HistogramSpec(binning)
        # a column with no value in the reference (all null) still gets histograms, so its
        # missing rate is reported and its drift is undefined (empty reference), not silent
        models = {k[2] for k in self.binnings}
        for m in self.columns:
            for model_v in models:
                if (m.source, m.column, model_v) in self.binnings:
                    continue
                binning = (NumericBinning.from_values([0.0]) if m.dtype == "numeric"
                           else CategoricalBinning(()))
                self.binnings[(m.source, m.column, model_v)] = binning
                for sl in self.slices:
                    self.hist_specs[self.name("hist", m, model_v, sl)] = HistogramSpec(binning)

    def _check_categorical(self, column: str, model, binning, state) -> None:
        """Warn when a categorical column's top-k bins hold under half of the reference (or
        the reference has more categories than the profile tracks): its drift statistics then
        mostly compare the "other" bin, blind to shifts (e.g. a continuous column declared
        categorical)."""
        freqs = state.freqs[0]
        rows = float(state.scalars.arrays["count"][0])
        if rows <= 0:
            return
        top = sum(freqs.get(c, 0.0) for c in binning.categories)
        total = float(sum(freqs.values()))  # every category's weight when known_complete
        share = top / total if binning.known_complete and total > 0 else top / rows
        if share < 0.5 or not binning.known_complete:
            what = (f"its top {len(binning.categories)} categories hold {share:.0%} of the "
                    f"reference" if binning.categories else
                    f"no category of it is frequent enough to get a bin")
            more = "" if binning.known_complete else (
                f"more than {state.capacity:,} distinct values; ")
            self.warnings.append(
                f"drift: categorical column {column!r} (model {model}) has {more}{what}: its "
                f"drift is measured mostly on 'other' and misses shifts inside it; declare it "
                f"numeric or raise drift.top_k_categories")

    # ---- finalize ---------------------------------------------------------------------------
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


def _model_rows(g: GroupIndex) -> list[tuple[object, np.ndarray]]:
    """``(model, rows)`` per model present in ``g`` (keys ``(model, window, slice values)``), in
    key order: int64 ascending indices of the model's rows (int model codes, one stable sort)."""
    pos: dict = {}
    of_key = np.fromiter((pos.setdefault(k[0], len(pos)) for k in g.keys), np.int64, g.n_groups)
    if len(pos) == 1:
        return [(next(iter(pos)), np.arange(g.n_rows))]
    codes = of_key[g.codes]
    order = np.argsort(codes, kind="stable")
    parts = np.split(order, np.cumsum(np.bincount(codes, minlength=len(pos)))[:-1])
    return [(model, rows) for model, rows in zip(pos, parts) if rows.size]


def _without_windows(g: GroupIndex) -> GroupIndex:
    """``g`` (keys ``(model, window, slice values)``) with every window replaced by
    ``NO_WINDOW`` (groups merged accordingly), as the reference histograms are keyed."""
    pos: dict = {}
    remap = np.fromiter((pos.setdefault((k[0], NO_WINDOW, k[2]), len(pos)) for k in g.keys),
                        np.int64, g.n_groups)
    return GroupIndex(remap[g.codes], tuple(pos))


def _factorize_arrow(col: pa.ChunkedArray) -> Factorized | None:
    """A string or integer (or dictionary of those) column factorised by Arrow's hash kernel
    (no Python object per row: ``uniques`` are the few distinct values, as ``to_pylist`` gives
    them, nulls are missing); ``None`` for other types, which go through numpy."""
    t = col.type
    if pa.types.is_dictionary(t):
        t = t.value_type
        col = col.cast(t)
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)):
        return None
    enc = col.combine_chunks().dictionary_encode()
    codes = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False)
    return Factorized(codes.astype(np.int64), enc.dictionary.to_pylist())


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


def build_drift_plan(cfg: JobConfig, pred_info, label_index, ray_runner, pool=None):
    """Run the reference passes (on the job's reducer ``pool`` when given); returns
    ``(drift_plan, reference_partial)`` (the partial is ``None`` for ``previous_window`` and
    empty when the reference histograms are built in the current scan, see
    :attr:`DriftPlan.reference_in_scan`)."""
    from rayeval.engine.plan import EvalPlan
    from rayeval.io.readers import InputError, check_columns, inspect_dataset

    ref = cfg.drift.reference
    columns = monitored_columns(cfg)
    warnings: list[str] = []
    if ref.kind == "dataset":
        ref_info = inspect_dataset(ref.uri, cfg.inputs.storage)
        ref_range = None
        columns, warnings = _reference_dataset_columns(cfg, columns, ref_info)
    elif ref.kind == "time_range":
        ref_info = inspect_dataset(cfg.inputs.predictions.uri, cfg.inputs.storage, ref.start,
                                   ref.end)
        ref_range = (utc_ns(ref.start), utc_ns(ref.end))
    else:  # previous_window: edges from the first window of the current range
        w = cfg.windows
        if w.size == "none":
            raise InputError("drift.reference.kind=previous_window needs windows.size")
        start = w.start or _first_timestamp(pred_info, cfg.columns.timestamp)
        start_ns = utc_ns(start)
        from rayeval.slicing import window_starts

        first = int(window_starts(np.array([start_ns]), w.size)[0])
        ref_range = (max(first, start_ns), window_end(first, w.size))
        ref_info = inspect_dataset(cfg.inputs.predictions.uri, cfg.inputs.storage,
                                   pd.Timestamp(ref_range[0], tz="UTC").to_pydatetime(),
                                   pd.Timestamp(ref_range[1], tz="UTC").to_pydatetime())
    table_cols = [m.column for m in columns if m.source == "table"]
    # the reference passes read the monitored columns and what selects and keys their rows
    # (timestamp, model, id, weight, in-table labels, filters); the histogram pass also the
    # slice columns when drift is sliced (the profile pass is per model only)
    req = required_prediction_columns(cfg, cfg.inputs.labels is not None)
    keep = set(table_cols) | set(cfg.filters) | {t.label for t in cfg.tasks} | {
        cfg.columns.timestamp, cfg.columns.model, cfg.columns.id, cfg.columns.weight}
    sliced = {c for spec in cfg.slice_specs() for c in spec} if cfg.drift.slices else set()
    req = {c: r for c, r in req.items() if c in keep | sliced}
    if ref.kind == "dataset":  # optional columns (id, in-table labels) only where present
        req = {c: r for c, r in req.items() if c in ref_info.schema.names or c in table_cols
               or c in sliced or c in cfg.filters}
    check_columns(ref_info, {c: "any" for c in req})
    read_cols = list(req)
    drift = DriftPlan(cfg, columns, ref_range)
    plan = EvalPlan(cfg, label_index, drift)
    opts = dict(ray_cfg=cfg.ray, pool=pool, time_range=None if ref_range is None else (
        cfg.columns.timestamp, *ref_range))
    profile_cols = [c for c in read_cols if c in keep]
    profiles = ray_runner.aggregate(plan, ref_info, profile_cols, "reference", **opts)
    pc = profiles["_counters"]
    if pc.get("rows_evaluated", 0) == 0:
        why = exclusion_detail(pc)
        raise InputError(f"The drift reference ({drift.reference_name}) has no rows "
                         f"({len(ref_info.files)} file(s), {pc.get('rows_read', 0):,} rows read"
                         + (f": {why}" if why else "") + "): drift needs a non-empty reference"
                         + (f" (`filters` {dict(cfg.filters)} matched no reference row)"
                            if pc.get("rows_filtered", 0) else ""))
    unlabelled = {m.column for m in columns if m.source == "label"} - {
        n.split("|")[3] for n in profiles if n.startswith("drift|profile|label|")}
    warnings += [f"drift: no labelled row in the reference ({drift.reference_name}) for label "
                 f"{c!r}: its label drift is not reported" for c in sorted(unlabelled)]
    drift = drift.with_binnings(profiles, warnings)
    if ref.kind == "previous_window":
        return drift, None
    if drift.reference_in_scan:
        return drift, {}
    plan = EvalPlan(cfg, label_index, drift)
    ref_partial = ray_runner.aggregate(plan, ref_info, read_cols, "reference", **opts)
    return drift, ref_partial


def _reference_dataset_columns(cfg: JobConfig, columns: list[Monitored], ref_info
                               ) -> tuple[list[Monitored], list[str]]:
    """The monitored columns a reference dataset can serve, and a warning per column it
    cannot: a prediction column (``drift.predictions``) it lacks, or a label (``drift.labels``)
    it neither holds nor can join (no id column for separate labels). A configured feature it
    lacks stays: the column check then names it (an error)."""
    names = set(ref_info.schema.names)
    keep, warnings = [], []
    for m in columns:
        if m.kind == "prediction" and m.column not in names:
            why = f"has no {m.column!r} column"
        elif m.source == "label" and cfg.inputs.labels is not None and cfg.columns.id not in names:
            why = f"has no {cfg.columns.id!r} id column to join the labels"
        elif m.source == "label" and cfg.inputs.labels is None and m.column not in names:
            why = f"has no {m.column!r} label column"
        else:
            keep.append(m)
            continue
        warnings.append(f"drift: the reference dataset {ref_info.uri} {why}: {m.kind} drift of "
                        f"{m.column!r} is not reported")
    return keep, warnings


def _first_timestamp(info, column: str) -> datetime:
    """Earliest ``column`` value from the Parquet row-group statistics of every file (no scan).

    Raises:
        InputError: when the files carry no statistics for the column.
    """
    import pyarrow.parquet as pq

    from rayeval.io.readers import InputError

    lows = []
    for f in info.files:
        with info.filesystem.open_input_file(f.path) as fh:
            md = pq.ParquetFile(fh).metadata
        idx = md.schema.to_arrow_schema().get_field_index(column)
        for rg in range(md.num_row_groups):
            st = md.row_group(rg).column(idx).statistics if idx >= 0 else None
            if st is not None and st.has_min_max:
                lows.append(pd.Timestamp(st.min))
    if not lows:
        raise InputError(f"Set windows.start: no Parquet statistics for {column!r} in "
                         f"{info.uri} to find the first window")
    first = min(lows)
    return (first.tz_localize("UTC") if first.tzinfo is None else first).to_pydatetime()
