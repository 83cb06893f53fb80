"""Prediction ids in the engine (no Ray): duplicates dropped within a batch and counted across
batches (sorted runs of 64-bit id keys), and labels joined to the batch by id, the matched
label positions kept as a bitset. :class:`IdJoin` is the part of
:class:`~rayeval.engine.plan.EvalPlan` that does this per batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from rayeval.engine.labels import to_numpy


#: ``_ids`` runs kept side by side before they are compacted into one (see :func:`merge_ids`)
MAX_ID_RUNS = 16


def sorted_unique(keys: np.ndarray) -> np.ndarray:
    """The distinct values of a 1-d array, sorted: one sort and an adjacent compare (several
    times faster than ``np.unique`` on uint64 keys)."""
    keys = np.sort(keys)
    return keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if keys.size else keys


def merge_ids(runs: list, counters: dict, limit: int = MAX_ID_RUNS) -> list:
    """Prediction-id keys (sorted unique uint64 arrays, one per batch or compacted run) with
    more than ``limit`` runs compacted into one: the keys met twice are prediction ids (of one
    model) evaluated in two batches, added to ``counters["rows_duplicate_across_batches"]``.
    Each such row is counted once, whatever the merge order."""
    if len(runs) <= limit:
        return runs
    keys = np.concatenate(runs)
    uniq = sorted_unique(keys)
    counters["rows_duplicate_across_batches"] = (
        counters.get("rows_duplicate_across_batches", 0) + int(keys.size - uniq.size))
    return [uniq]


class IdJoin:
    """Deduplication and the label join of one batch (a base class of
    :class:`~rayeval.engine.plan.EvalPlan`: it reads the plan's ``cfg``, ``labels`` and
    ``tasks``)."""

    def _dedupe(self, table: pa.Table, ts: np.ndarray, counters: dict):
        """Drop duplicate prediction ids of one model (policy ``keep_latest``: keep the latest
        by timestamp; ``error``: the run raises InputError after the scan, with the complete
        count), counted in ``rows_duplicate_prediction``.
        Rows with a missing id are kept and counted in ``rows_missing_id`` (no label can
        match them when labels are a separate dataset).

        Args:
            table: the batch (n rows); ts: int64 ns timestamps (n,).

        Returns:
            ``(table, ts, ids)`` of the kept rows; ``ids`` is ``(codes, values)``: int64 codes
            (one per kept row) into ``values``, the batch's distinct ids (Arrow, a null among
            them if an id is missing), or ``None`` when the batch has no id column.
        """
        cols = self.cfg.columns
        if cols.id not in table.column_names:
            return table, ts, None
        unique = _unique_int_ids(table[cols.id])
        if unique is not None:  # fast path: distinct integer ids (a sort, no hash table)
            return table, ts, (np.arange(len(unique)), unique)
        # int64 key per row from dictionary codes (no Python objects): id x model
        id_codes, id_values = _codes(table[cols.id])
        key, size = id_codes, len(id_values)
        if cols.model:
            m_codes, models = _codes(table[cols.model])
            key, size = key * len(models) + m_codes, size * len(models)
        missing = table[cols.id].is_null().to_numpy(zero_copy_only=False)
        n_missing = int(missing.sum())
        if n_missing:  # a missing id is no id: such rows are kept (unlabelled), never deduplicated
            counters["rows_missing_id"] = n_missing
            key = key.copy()
            key[missing] = size + np.arange(n_missing)
            size += n_missing
        if np.bincount(key, minlength=size).max(initial=0) <= 1:  # fast path: no duplicates
            return table, ts, (id_codes, id_values)
        order = np.lexsort((ts, key))  # by key, then time: the last of each run is the latest
        sorted_key = key[order]
        is_last = np.ones(len(order), dtype=bool)
        is_last[:-1] = sorted_key[1:] != sorted_key[:-1]
        n_dup = int((~is_last).sum())
        # policy error: counted here and raised after the scan with the complete count
        counters["rows_duplicate_prediction"] = n_dup
        keep = np.zeros(len(ts), dtype=bool)
        keep[order[is_last]] = True
        return table.filter(pa.array(keep)), ts[keep], (id_codes[keep], id_values)

    def _id_keys(self, table: pa.Table, ids: tuple) -> np.ndarray:
        """Sorted unique uint64 keys of the batch's (id, model) pairs, missing ids left out
        (64-bit hashes: a false duplicate needs a hash collision, ~1e-5 at 30M distinct ids)."""
        codes, values = ids  # distinct values: no need for hash_array's own factorisation
        h = pd.util.hash_array(values.to_numpy(zero_copy_only=False), categorize=False)
        keys = h.astype(np.uint64, copy=False)[codes]
        if self.cfg.columns.model and self.cfg.columns.model in table.column_names:
            m_codes, models = _codes(table[self.cfg.columns.model])
            hm = pd.util.hash_array(models.to_numpy(zero_copy_only=False), categorize=False)
            keys = keys * np.uint64(0x9E3779B97F4A7C15) + hm.astype(np.uint64)[m_codes]
        id_col = table[self.cfg.columns.id]
        if id_col.null_count:
            keys = keys[~id_col.is_null().to_numpy(zero_copy_only=False)]
        return sorted_unique(keys)

    def _join_labels(self, table: pa.Table, ids: tuple | None,
                     out: dict) -> tuple[dict, np.ndarray]:
        """Label columns aligned to the batch rows, and the labelled mask (shape (n,)).

        ``ids`` are the batch's id codes and distinct ids from :meth:`_dedupe`: the label index
        looks each distinct id up once. A batch without the label columns (or, for separate
        labels, without the id column: a drift reference dataset) has no labelled row."""
        n = table.num_rows
        label_names = {t.label for t in self.tasks}
        cols: dict[str, np.ndarray] = {}
        if self.labels is None or (ids is None
                                   and self.cfg.columns.id not in table.column_names):
            for name in label_names:
                cols[name] = (to_numpy(table[name]) if self.labels is None
                              and name in table.column_names else np.full(n, np.nan))
            labeled = np.zeros(n, dtype=bool)
            for name in label_names:
                labeled |= ~_is_null(cols[name])
            return cols, labeled
        id_codes, id_values = ids if ids is not None else _codes(table[self.cfg.columns.id])
        pos = self.labels.lookup(id_values)[id_codes]
        labeled = pos >= 0
        safe = np.where(labeled, pos, 0)
        for name in label_names:
            src = self.labels.column(name)
            vals = src[safe] if len(src) else np.full(n, np.nan)
            if vals.dtype == object:
                vals = vals.copy()
                vals[~labeled] = None
            else:
                vals = vals.astype(np.float64) if vals.dtype.kind in "iub" else vals.copy()
                vals[~labeled] = np.nan
            cols[name] = vals
        self._set_matched(out, pos[labeled])
        return cols, labeled

    def _mark_matched(self, out: dict, table: pa.Table) -> None:
        """Mark the labels of ``table``'s prediction ids as matched: rows read but not evaluated
        (outside the windows, another model, filtered, no timestamp, drift reference only) are
        still predictions, so their labels are not "labels without prediction"."""
        if (self.labels is None or table.num_rows == 0
                or self.cfg.columns.id not in table.column_names):
            return
        pos = self.labels.lookup(_codes(table[self.cfg.columns.id])[1])  # distinct ids
        self._set_matched(out, pos[pos >= 0])

    def _set_matched(self, out: dict, positions: np.ndarray) -> None:
        bits = np.zeros(self.labels.n_labels, dtype=bool)
        bits[positions] = True
        packed = np.packbits(bits)
        prev = out.get("_matched")
        out["_matched"] = packed if prev is None else np.bitwise_or(prev, packed)


def _codes(col: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Dictionary codes of a column (int64, shape (n,); a missing value gets its own code)
    and the distinct values they index (Arrow, the column's value type, a null among them if a
    value is missing)."""
    arr = col.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    enc = pc.dictionary_encode(arr, null_encoding="encode")
    return enc.indices.to_numpy(zero_copy_only=False).astype(np.int64), enc.dictionary


def _unique_int_ids(col: pa.ChunkedArray) -> pa.Array | None:
    """``col`` as one Arrow array when it is an integer column with no null and no repeated
    value (then every row is its own distinct id), else ``None``. One sort of the values: ~2x
    cheaper than the hash table of ``dictionary_encode`` for 1M distinct int64 ids."""
    if not pa.types.is_integer(col.type) or col.null_count:
        return None
    arr = col.combine_chunks()
    values = np.sort(arr.to_numpy())
    if len(values) > 1 and (values[1:] == values[:-1]).any():
        return None
    return arr


def _is_null(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == object:
        return pd.isna(arr)
    if arr.dtype.kind == "f":
        return np.isnan(arr)
    return np.zeros(arr.shape, dtype=bool)
