"""Drift in the engine: which columns are monitored and how each batch feeds their profiles and
histograms (:class:`DriftPlan`); the reference passes are in :mod:`rayeval.engine.drift_reference`,
the drift table in :mod:`rayeval.engine.drift_table`.

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

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from rayeval.config import JobConfig
from rayeval.drift import (CategoricalBinning, CategoricalProfileSpec, Factorized, HistogramSpec,
                           NumericBinning, NumericProfileSpec)
# the table's columns and helpers, re-exported from here as before
from rayeval.engine.drift_table import (DRIFT_COLUMNS, DRIFT_ORDER, HIST_COLUMNS,  # noqa: F401
                                        INFO_COLUMNS, LARGE_N_TEST, QUALITY_COLUMNS, DriftTable,
                                        Monitored, _all_models, bin_labels)
from rayeval.engine.labels import to_numpy
from rayeval.metrics.base import GroupIndex
from rayeval.slicing import NO_WINDOW, SliceSpec, combine, factorize, subset, window_starts


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


class DriftPlan(DriftTable):
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
