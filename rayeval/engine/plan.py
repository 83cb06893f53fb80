"""The evaluation plan: from one Arrow batch of predictions to small partial states (no Ray).

:class:`EvalPlan` is built once from the job config and shipped to every actor. Its
``accumulate(partial, table)`` runs the whole per-batch pipeline, vectorised:

1. validate timestamps (missing/unparseable counted), keep rows in ``[start, end)`` and the
   configured models;
2. drop duplicate prediction ids within the batch (policy ``keep_latest`` by timestamp, or
   ``error``), counted;
3. join labels (same table, or the broadcast :class:`~rayeval.engine.labels.LabelIndex`);
4. assign UTC windows; factorise model, window and each slice column once;
5. for each slice spec: one group index, then every task's spec accumulates its grouped state
   (one ``np.bincount``-style fan-out each), plus coverage counts (rows, labelled rows).

A *partial* is a plain dict ``state name -> state`` plus ``"_counters"`` (global counts) and
``"_matched"`` (packed bitset of label positions that met a prediction). Partials merge with
:meth:`EvalPlan.merge`; they never contain rows.

Steps 2 and 3 (prediction ids: duplicates, the label join) are :class:`~rayeval.engine.ids.IdJoin`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from rayeval.config import JobConfig, TaskConfig, utc
from rayeval.core import registry
from rayeval.engine.columns import _batch_column, _float  # noqa: F401 (former home)
# the id and label-join helpers, re-exported from here as before
from rayeval.engine.ids import (MAX_ID_RUNS, IdJoin, _codes, _is_null,  # noqa: F401
                                _unique_int_ids, merge_ids, sorted_unique)
from rayeval.engine.labels import LabelIndex, to_numpy
from rayeval.engine.pairing import PAIRS, PairSpec, pair_partials, prediction_columns
from rayeval.metrics.base import GroupIndex, KeyedArrays, grouped_sum, merge_keyed
from rayeval.slicing import (NO_WINDOW, SliceSpec, combine, factorize, subset, to_utc_ns,
                             window_starts)


#: state name prefix of a family's bootstrap replicates (``rep|<task>|<family>|<slice>``)
REPLICATES = "rep|"
#: model key of a drift reference dataset without the model column: every model's reference
ALL_MODELS = "*"
COUNTERS = ("rows_read", "rows_missing_timestamp", "rows_unparseable_timestamp",
            "rows_out_of_range", "rows_reference_only",
            "rows_other_model", "rows_missing_id", "rows_duplicate_prediction",
            "rows_duplicate_across_batches", "rows_evaluated", "rows_labeled")

#: why rows read are not evaluated: counter -> how messages name it
EXCLUSIONS = {"rows_out_of_range": "outside windows.start/end",
              "rows_reference_only": "drift reference only",
              "rows_missing_timestamp": "without timestamp",
              "rows_unparseable_timestamp": "with an unparseable timestamp",
              "rows_other_model": "of models not in `models`",
              "rows_filtered": "dropped by `filters`"}


def exclusion_detail(counters: dict) -> str:
    """``"12 outside windows.start/end, 3 dropped by `filters`"``: the non-zero exclusion
    counters of a partial, for error messages."""
    return ", ".join(f"{counters[k]:,} {why}" for k, why in EXCLUSIONS.items()
                     if counters.get(k))


@dataclass(frozen=True)
class CoverageSpec:
    """Rows and labelled rows per group: ``KeyedArrays`` with ``counts`` of shape (G, 2)."""

    def zero(self) -> KeyedArrays:
        return KeyedArrays()

    def accumulate(self, state: KeyedArrays, labeled: np.ndarray, groups: GroupIndex):
        counts = np.stack([
            grouped_sum(groups.codes, groups.n_groups),
            grouped_sum(groups.codes, groups.n_groups, labeled.astype(np.float64)).astype(np.int64),
        ], axis=1)
        return merge_keyed(state, KeyedArrays(groups.keys, {"counts": counts}))

    def merge(self, a: KeyedArrays, b: KeyedArrays) -> KeyedArrays:
        return merge_keyed(a, b)


def make_specs(task: TaskConfig) -> dict[str, Any]:
    """The metric specs one task needs, by family name (``labels``, ``scores``, ``regression``:
    the registered families, :mod:`rayeval.core.registry`); a family none of whose metrics the
    task's ``metrics`` list keeps is left out."""
    return registry.task_specs(task)


class EvalPlan(IdJoin):
    """Everything an actor needs to turn batches into partial states.

    Args:
        cfg: the validated job config.
        labels: the broadcast label index when labels are a separate dataset, else ``None``.
        drift: an optional drift plan (``rayeval.engine.drift_plan.DriftPlan``) whose
            ``accumulate`` is called with the same factorised groups.
    """

    def __init__(self, cfg: JobConfig, labels: LabelIndex | None = None, drift=None,
                 pairs: list | None = None):
        self.cfg = cfg
        self.labels = labels
        self.drift = drift
        self.pairs = pairs or []  # rayeval.engine.pairing.PairIndex per comparison pair
        self.slices = [SliceSpec(c) for c in cfg.slice_specs()]
        self.tasks = list(cfg.tasks)
        self.specs: dict[str, Any] = {}
        for task in self.tasks:
            for family, spec in make_specs(task).items():
                for sl in self.slices:
                    self.specs[self.state_name(task.name, family, sl)] = spec
        from rayeval.engine.estimation import FAMILY, cbpe_specs

        for task_name, spec in cbpe_specs(cfg).items():  # CBPE: every row, labelled or not
            for sl in self.slices:
                self.specs[self.state_name(task_name, FAMILY, sl)] = spec
        self.coverage = CoverageSpec()
        # bootstrap replicates: one generic replicated state per family with a replicate view
        self.replicated: dict[str, Any] = {}
        if cfg.intervals.enabled:
            from rayeval.stats.replicate import ReplicatedSpec
            from rayeval.stats.views import view_for

            for name, spec in self.specs.items():
                view = view_for(spec)
                if view is not None:
                    self.replicated[REPLICATES + name] = ReplicatedSpec(
                        view, cfg.intervals.replicates)
        w = cfg.windows
        self.start_ns = utc_ns(w.start) if w.start else None
        self.end_ns = utc_ns(w.end) if w.end else None

    @staticmethod
    def state_name(task: str, family: str, sl: SliceSpec) -> str:
        return f"{task}|{family}|{sl.name}"

    # ---- contract -------------------------------------------------------------------------
    def zero(self) -> dict:
        return {"_counters": dict.fromkeys(COUNTERS, 0)}

    def merge(self, a: dict, b: dict) -> dict:
        """Merge two partials (commutative, associative; inputs untouched)."""
        out: dict = {"_counters": {k: a["_counters"].get(k, 0) + b["_counters"].get(k, 0)
                                   for k in set(a["_counters"]) | set(b["_counters"])}}
        ma, mb = a.get("_matched"), b.get("_matched")
        if ma is not None or mb is not None:
            out["_matched"] = mb if ma is None else (ma if mb is None else np.bitwise_or(ma, mb))
        if "_ids" in a or "_ids" in b:
            out["_ids"] = merge_ids(a.get("_ids", []) + b.get("_ids", []), out["_counters"])
        for name in (set(a) | set(b)) - {"_counters", "_matched", "_ids"}:
            if name not in a:
                out[name] = b[name]
            elif name not in b:
                out[name] = a[name]
            else:
                out[name] = self._spec_for(name).merge(a[name], b[name])
        return out

    def compact(self, partial: dict, prepare: bool = False) -> dict:
        """The same partial with lazily merged states compacted (score histograms kept as
        several runs become one), so it pickles at its final size; values are unchanged.
        ``prepare``: also precompute what only finalize needs (score states' ranking
        metrics, see ``prepare`` of the score specs): for a partial that will not be merged
        again."""
        out = dict(partial)
        if "_ids" in partial:  # one run: every cross-batch duplicate counted
            counters = dict(partial.get("_counters", {}))
            out["_ids"] = merge_ids(partial["_ids"], counters, limit=1)
            out["_counters"] = counters
        for name, state in partial.items():
            if name.startswith("_"):
                continue
            spec = self._spec_for(name)
            fn = getattr(spec, "prepare", None) if prepare else None
            fn = fn or getattr(spec, "compact", None)
            if fn is not None:
                out[name] = fn(state)
        return out

    def _spec_for(self, name: str):
        if name.startswith("coverage|"):
            return self.coverage
        if name.startswith("drift|"):
            return self.drift.spec_for(name)
        if name.startswith(REPLICATES):
            return self.replicated[name]
        if name.startswith(PAIRS):
            return PairSpec()
        return self.specs[name]

    # ---- per batch ------------------------------------------------------------------------
    def accumulate(self, partial: dict, table: pa.Table, source: str = "current") -> dict:
        """Merge the partial states of one Arrow batch into ``partial`` (returns a new dict)."""
        return self.merge(partial, self.batch_partial(table, source))

    def batch_partial(self, table: pa.Table, source: str = "current") -> dict:
        cfg, cols = self.cfg, self.cfg.columns
        counters = dict.fromkeys(COUNTERS, 0)
        counters["rows_read"] = n = table.num_rows
        out: dict = {"_counters": counters}
        if n == 0:
            return out
        # a separate drift reference dataset (e.g. the training set) may lack the timestamp,
        # model and weight columns: untimed, one reference for every model, weight 1
        present = set(table.column_names)
        ts = (_timestamps(table, cols.timestamp) if cols.timestamp in present
              else np.zeros(n, dtype=np.int64))
        keep = ts != np.iinfo(np.int64).min
        counters["rows_missing_timestamp"] = int(n - keep.sum())
        if not keep.all() and cols.timestamp in present and not (
                pa.types.is_timestamp(table[cols.timestamp].type)
                or pa.types.is_date(table[cols.timestamp].type)):
            # text that is no date (e.g. "not a date"): counted apart from missing values
            bad = ~keep & ~table[cols.timestamp].is_null().to_numpy(zero_copy_only=False)
            counters["rows_unparseable_timestamp"] = int(bad.sum())
            counters["rows_missing_timestamp"] -= int(bad.sum())
        if source == "current":
            in_range = np.ones(n, dtype=bool)
            if self.start_ns is not None:
                in_range &= ts >= self.start_ns
            if self.end_ns is not None:
                in_range &= ts < self.end_ns
            outside = keep & ~in_range
            if (self.drift is not None and self.drift.reference_in_scan and outside.any()):
                # rows of a time-range reference outside the evaluated range: drift only
                ref_only = outside & self.drift.reference_mask(ts)
                if ref_only.any():
                    self._reference_rows(out, table.filter(pa.array(ref_only)))
                    counters["rows_reference_only"] = int(ref_only.sum())
                    outside &= ~ref_only
            counters["rows_out_of_range"] = int(outside.sum())
            keep &= in_range
        elif self.drift is not None:
            keep &= self.drift.reference_mask(ts)
        has_model = bool(cols.model) and cols.model in present
        if has_model and cfg.models is not None:
            model_ok = np.isin(to_numpy(table[cols.model]).astype(object), list(cfg.models))
            counters["rows_other_model"] = int((keep & ~model_ok).sum())
            keep &= model_ok
        for col, allowed in cfg.filters.items():
            ok = np.isin(to_numpy(table[col]).astype(str), [str(a) for a in allowed])
            counters["rows_filtered"] = counters.get("rows_filtered", 0) + int((keep & ~ok).sum())
            keep &= ok
        if not keep.all():
            if source == "current":  # labels of predictions read but not evaluated matched
                self._mark_matched(out, table.filter(pa.array(~keep)))
            table = table.filter(pa.array(keep))
            ts = ts[keep]
        if table.num_rows == 0:
            return out
        table, ts, ids = self._dedupe(table, ts, counters)
        n = table.num_rows
        counters["rows_evaluated"] = n
        if ids is not None and source == "current":
            out["_ids"] = [self._id_keys(table, ids)]

        # label join
        label_cols, labeled = self._join_labels(table, ids, out)
        counters["rows_labeled"] = int(labeled.sum())

        # factorise the key columns once
        model_f = factorize(table[cols.model]) if has_model else (
            np.zeros(n, np.int64),
            np.array([ALL_MODELS if cols.model else "model"], dtype=object))
        if source == "current":
            win = window_starts(ts, cfg.windows.size)
        else:
            win = np.full(n, NO_WINDOW, dtype=np.int64)
        win_f = factorize(win)
        # reference passes feed drift only: skip the slice specs drift does not use
        slices = self.slices if source == "current" else [
            sl for sl in self.slices if self.drift is not None and self.drift.uses(sl)]
        slice_f = {c: factorize(table[c]) for sl in slices for c in sl.columns}
        weight = (to_numpy(table[cols.weight]).astype(np.float64)
                  if cols.weight and cols.weight in present else None)
        if weight is not None and self.cfg.policy.missing_weight == "weight_one":
            weight = np.where(np.isnan(weight), 1.0, weight)  # absent column or null: 1

        groupings = {}
        for sl in slices:
            g = combine([model_f, win_f] + [slice_f[c] for c in sl.columns])
            g = GroupIndex(g.codes, tuple((k[0], k[1], k[2:]) for k in g.keys))
            groupings[sl] = g
            if self.drift is not None:
                self.drift.accumulate(out, table, sl, g, source, label_cols, labeled, weight, ts)
            if source != "current":
                continue
            cov = "coverage|" + sl.name
            out[cov] = self.coverage.accumulate(self.coverage.zero(), labeled, g)
        if source == "current" and self.pairs and ids is not None:
            preds = {c: to_numpy(table[c]) for c in prediction_columns(cfg)}
            out.update(pair_partials(self.pairs, self.tasks, ids, model_f[0], model_f[1], win,
                                     label_cols, labeled, preds, groupings))
        if source == "current":
            reps = self._replicate_weights(table, weight)
            for task in self.tasks:
                self._accumulate_task(out, task, table, label_cols, labeled, weight, groupings,
                                      reps)
                if self.cfg.estimation.enabled:
                    from rayeval.engine import estimation

                    estimation.accumulate(self, out, task, table, weight, groupings)
        return out

    def _replicate_weights(self, table: pa.Table, weight: np.ndarray | None):
        """The batch's (n, B + 1) replicate weight matrix (``None`` without intervals): a
        fixed 64-bit hash of each row's unit value (``pandas.util.hash_array``, fixed key)
        seeds its Poisson(1) weights, so they do not depend on batch or worker."""
        if not self.replicated:
            return None
        from rayeval.stats.weights import replicate_matrix

        unit = self.cfg.intervals.unit or self.cfg.columns.id
        values = to_numpy(table[unit])
        if values.dtype.kind in "iub":
            values = values.astype(np.int64)
        elif values.dtype.kind != "f":
            values = values.astype(object)
        h = pd.util.hash_array(values, categorize=False).astype(np.uint64, copy=False)
        return replicate_matrix(h, self.cfg.intervals.replicates, weight, dtype=np.float32)

    def _reference_rows(self, out: dict, table: pa.Table) -> None:
        """Add the drift reference histograms of ``table`` (rows of a time-range reference
        outside the evaluated range, met by the scan) to ``out`` as ``drift|ref|`` states,
        as the reference rows inside the range get them."""
        part = self.batch_partial(table, "reference")
        for name, state in part.items():
            if name.startswith("drift|hist|"):
                out["drift|ref|" + name[len("drift|hist|"):]] = state
            elif name.startswith("drift|chunks|"):
                out[name] = state

    def _accumulate_task(self, out, task, table, label_cols, labeled, weight, groupings,
                         reps=None):
        """Every family of ``task`` over every slice spec: one ``accumulate_many`` call per
        family, so row-level work (validation, losses, score sort order) is done once per
        batch, not once per slice spec."""
        mask = labeled  # a matched label row with a missing value: counted as missing_label
        if not mask.any():
            return
        sub = {sl: subset(g, mask) for sl, g in groupings.items()}
        base: dict[str, np.ndarray] = {}
        if weight is not None:
            base["weight"] = weight[mask]
        for family, fam in registry.families().items():
            names = {sl: self.state_name(task.name, family, sl) for sl in groupings}
            specs = {sl: self.specs[n] for sl, n in names.items() if n in self.specs}
            if not specs:
                continue
            spec = next(iter(specs.values()))
            batch = dict(base)
            for key, column in fam.columns(task).items():
                batch[key] = _batch_column(table, label_cols, task.label, column,
                                           spec.inputs()[key])[mask]
            for spec, sls in _by_spec(specs).items():
                try:
                    states = spec.accumulate_many(batch, [sub[sl] for sl in sls])
                except (TypeError, ValueError) as e:  # name the task and its columns
                    raise type(e)(f"task '{task.name}' ({_columns_of(task, fam)}): {e}"
                                  ) from None
                for sl, state in zip(sls, states):
                    out[names[sl]] = state
            rep = self.replicated.get(REPLICATES + names[next(iter(specs))])
            if rep is not None and reps is not None:
                states = rep.accumulate_many(batch, reps[mask], [sub[sl] for sl in specs])
                for sl, state in zip(specs, states):
                    out[REPLICATES + names[sl]] = state


def _columns_of(task, fam) -> str:
    """The input columns behind a task family's batch keys, for error messages."""
    return "; ".join(f"`{k}` = column '{', '.join(v) if isinstance(v, tuple) else v}'"
                     for k, v in fam.columns(task).items())


def _by_spec(specs: dict) -> dict:
    """``{spec: [slice specs using it]}`` (equal specs share one entry; specs are frozen
    dataclasses, so equality is configuration equality)."""
    out: dict = {}
    for sl, spec in specs.items():
        out.setdefault(spec, []).append(sl)
    return out


def utc_ns(dt) -> int:
    """``dt`` (a datetime; naive = UTC) as int64 nanoseconds since the epoch, the unit of the
    engine's timestamps and windows."""
    return int(pd.Timestamp(utc(dt)).value)


def _timestamps(table: pa.Table, name: str) -> np.ndarray:
    col = table[name]
    if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        return to_utc_ns(col.to_pandas())
    parsed = pd.to_datetime(col.to_pandas(), errors="coerce", utc=True, format="ISO8601")
    return to_utc_ns(parsed)
