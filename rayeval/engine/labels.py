"""Late-arriving labels: deduplication and a hash index for the broadcast join (no Ray).

Labels are usually far narrower than predictions (id, label, observed value, arrival time), so
rayeval joins them by broadcast: the deduplicated labels are put once in the Ray object store,
every actor builds a hash index over the ids (a ``pandas.Index`` of int64 keys, built and checked
for uniqueness once per actor) and looks each prediction batch up in it. No row of the
predictions moves, and labels are read once. (A labels table that does not fit in one worker's
memory needs a hash-shuffle join; see the issue notes.)

Ids compare as int64 when integral (any integer width; integral floats) and as strings
otherwise (booleans as ``"True"``/``"False"``); an integer id never equals a string id. A label
row with a missing id is dropped (counted), and a prediction with a missing id is unlabelled.
String ids are keyed by a 64-bit
hash (``pandas.util.hash_array``); every hash match is confirmed by comparing the strings, and a
hash collision between two label ids falls back to ``pyarrow.compute.index_in``, so the join is
exact.

Policies, each counted: several labels for one id -> keep the one with the latest label
timestamp (ties: the last row read); labels with no prediction -> counted via a mergeable bitset
of matched label positions; predictions with no label -> excluded from label metrics, counted as
unlabelled per slice and window.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


@dataclass
class LabelIndex:
    """Deduplicated labels with a lookup by prediction id.

    Attributes:
        table: Arrow table of unique ids (column ``id_column``, normalised: int64 or
            large_string; never missing) and the label columns.
        id_column: name of the id column in ``table``.
        n_read: label rows read.
        n_duplicates: label rows dropped as older duplicates of an id.
        n_missing_id: label rows dropped because their id is missing (null / NaN): they can
            match no prediction.
        keys: int64 id (integer ids) or uint64 hash (string ids) of each non-missing id of
            ``table``, in table order (shape (n_labels,)).

    Made by :meth:`build` (shipped to the actors pickled: table, counts and keys).
    """

    table: pa.Table
    id_column: str
    n_read: int
    n_duplicates: int
    keys: np.ndarray = field(repr=False, compare=False)
    n_missing_id: int = 0
    _index: pd.Index | None = field(default=None, repr=False, compare=False)
    _columns: dict | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        ids = self.table[self.id_column].combine_chunks()
        self._kind = _kind(ids.type)
        self._n_valid = len(ids)
        self._ids = ids

    @classmethod
    def build(cls, table: pa.Table, id_column: str, timestamp_column: str | None) -> "LabelIndex":
        """Deduplicate ``table`` on ``id_column`` keeping the latest ``timestamp_column``.

        Rows are ordered newest first (by ``timestamp_column``, missing timestamps oldest; ties:
        the last row read first; no timestamp column: the last row read first) and the first
        row of each id is kept.

        Args:
            table: label rows (Arrow), with ``id_column`` of an integer or string type.
            id_column: the id column.
            timestamp_column: the label time column (any sortable type), or ``None``.

        Returns:
            The index; ``table`` holds the kept rows (newest first) with the id column
            normalised; rows with a missing id are dropped and counted (``n_missing_id``).
        """
        n = table.num_rows
        normalised = _normalise_ids(table[id_column])
        kind = _kind(normalised.type)
        if timestamp_column and timestamp_column in table.column_names:
            oldest_first = table[timestamp_column].to_pandas().sort_values(
                kind="stable", na_position="first").index.to_numpy()
            newest_first = oldest_first[::-1]
        else:
            newest_first = np.arange(n - 1, -1, -1)
        ids = normalised.take(pa.array(newest_first))
        missing = ~ids.is_valid().to_numpy(zero_copy_only=False)
        valid = np.flatnonzero(~missing)
        valid_ids = ids.take(pa.array(valid)) if len(valid) < n else ids
        keys = _keys(valid_ids, kind)
        first = _first_occurrences(valid_ids, keys, kind)
        rows = valid[first]
        out = table.set_column(table.schema.get_field_index(id_column), id_column, normalised)
        out = out.take(pa.array(newest_first[rows]))
        n_missing = int(missing.sum())  # a missing id matches no prediction: dropped, counted
        return cls(out, id_column, n, n - out.num_rows - n_missing, keys[first], n_missing)

    @property
    def n_labels(self) -> int:
        return self.table.num_rows

    def __getstate__(self):
        return {"table": self.table, "id_column": self.id_column, "n_read": self.n_read,
                "n_duplicates": self.n_duplicates, "keys": self.keys,
                "n_missing_id": self.n_missing_id}

    def __setstate__(self, st):
        self.__init__(**st)

    def check_prediction_id_type(self, id_type: pa.DataType) -> None:
        """Fail before the scan when prediction ids of Arrow type ``id_type`` can never match
        these label ids (integer vs string ids).

        Raises:
            TypeError: the kinds differ (the message names both).
        """
        self._check_kind(_kind(_normalise_ids(pa.array([], type=id_type)).type), id_type)

    def _check_kind(self, kind: str, id_type: pa.DataType) -> None:
        if "null" not in (kind, self._kind) and kind != self._kind:
            raise TypeError(f"Prediction ids are {kind} ids ({id_type}) but the label ids "
                            f"(column {self.id_column!r}) are {self._kind} ids: no id can "
                            f"match; store both with the same type")

    def lookup(self, ids) -> np.ndarray:
        """Positions of ``ids`` in the label table, -1 where unlabelled.

        Args:
            ids: prediction ids (n,): Arrow (Chunked)Array, or array-like (converted with
                ``pyarrow.array(..., from_pandas=True)``: NaN is missing).

        Returns:
            int64 array (n,); a missing prediction id is unlabelled.

        Raises:
            TypeError: prediction ids and label ids are of different kinds (integer vs
                string): no id could ever match.
        """
        if not isinstance(ids, (pa.Array, pa.ChunkedArray)):
            ids = pa.array(ids, from_pandas=True)
        ids = _normalise_ids(ids)
        out = np.full(len(ids), -1, dtype=np.int64)
        valid = ids.is_valid().to_numpy(zero_copy_only=False)
        kind = _kind(ids.type)
        self._check_kind(kind, ids.type)
        if kind != self._kind or not self._n_valid or not valid.any():
            return out
        values = ids if valid.all() else ids.filter(pa.array(valid))
        index = self._key_index()
        if index is None:  # two label ids share a hash: exact Arrow hash lookup
            pos = pc.index_in(values, value_set=self._ids).fill_null(-1).to_numpy()
        else:
            pos = index.get_indexer(_keys(values, self._kind)).astype(np.int64)
            if self._kind == "string":  # confirm each hash match by the string itself
                hit = np.flatnonzero(pos >= 0)
                same = pc.equal(values.take(pa.array(hit)),
                                self._ids.take(pa.array(pos[hit])))
                pos[hit[~same.to_numpy(zero_copy_only=False)]] = -1
        out[valid] = pos
        return out

    def column(self, name: str) -> np.ndarray:
        """A label column as a numpy array (cached)."""
        if self._columns is None:
            self._columns = {}
        if name not in self._columns:
            if name not in self.table.column_names:
                raise KeyError(name)
            self._columns[name] = to_numpy(self.table[name])
        return self._columns[name]

    def _key_index(self) -> pd.Index | None:
        """``pandas.Index`` over :attr:`keys` (built once; its hash table and uniqueness are
        computed on the first lookup and cached), or ``None`` when two keys are equal (a hash
        collision between two string ids)."""
        if self._index is None:
            self._index = pd.Index(self.keys)
        return self._index if self._index.is_unique else None


def _normalise_ids(ids) -> pa.Array:
    """Ids in their comparison type (missing ids, and NaN, stay missing).

    Args:
        ids: Arrow (Chunked)Array.

    Returns:
        int64 for integer ids (and integral floats), large_string for strings (booleans as
        ``"True"``/``"False"``, other types as Python ``str`` of each value), null for an
        all-null column; dictionary-encoded ids are decoded first.

    Raises:
        pyarrow.ArrowInvalid: a float id is not integral.
    """
    arr = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    t = arr.type
    if pa.types.is_dictionary(t):
        return _normalise_ids(arr.dictionary_decode())
    if pa.types.is_integer(t):
        return arr.cast(pa.int64())
    if pa.types.is_floating(t):
        arr = pc.if_else(pc.is_nan(arr), pa.scalar(None, t), arr)
        return arr.cast(pa.int64())
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return arr.cast(pa.large_string())
    if pa.types.is_boolean(t):
        return pc.if_else(arr, "True", "False").cast(pa.large_string())
    if pa.types.is_null(t):
        return arr
    return pa.array([None if v is None else str(v) for v in arr.to_pylist()],
                    type=pa.large_string())


def _kind(t: pa.DataType) -> str:
    """``int``, ``string`` or ``null``: the comparison kind of a normalised id type."""
    if pa.types.is_null(t):
        return "null"
    return "int" if pa.types.is_integer(t) else "string"


def _keys(ids: pa.Array, kind: str) -> np.ndarray:
    """Lookup keys of non-missing normalised ids: the int64 ids, or uint64 string hashes."""
    if kind == "int":
        return ids.to_numpy()
    if kind == "null" or not len(ids):
        return np.zeros(0, dtype=np.uint64)
    return pd.util.hash_array(ids.to_numpy(zero_copy_only=False), categorize=False)


def _first_occurrences(ids: pa.Array, keys: np.ndarray, kind: str) -> np.ndarray:
    """Ascending positions of the first row of each distinct id (normalised ids without
    missing values, their ``keys`` from :func:`_keys`). Equal hashes of different strings are
    detected, and then the strings themselves are encoded."""
    codes = pd.factorize(keys)[0]  # first-appearance order
    if len(codes) and kind == "string":
        firsts = _first_positions(codes)
        rep = firsts[codes]  # each row's first row with the same key
        if not pc.all(pc.equal(ids, ids.take(pa.array(rep)))).as_py():
            codes = pc.dictionary_encode(ids).indices.to_numpy().astype(np.int64)
    return _first_positions(codes)


def _first_positions(codes: np.ndarray) -> np.ndarray:
    """Positions where a code appears for the first time (codes in first-appearance order, so
    position ``i`` is new iff ``codes[i]`` exceeds every earlier code); int64, ascending, one
    per distinct code (the array index equals the code)."""
    if not len(codes):
        return np.zeros(0, dtype=np.int64)
    new = np.empty(len(codes), dtype=bool)
    new[0] = True
    new[1:] = codes[1:] > np.maximum.accumulate(codes)[:-1]
    return np.flatnonzero(new)


def to_numpy(col: pa.ChunkedArray) -> np.ndarray:
    """Arrow column to numpy: numeric with nulls -> float64 NaN; others -> object with None."""
    t = col.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        if col.null_count:
            return col.cast(pa.float64()).to_numpy()
        return col.to_numpy()
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
    return np.asarray(col.to_pylist(), dtype=object) if col.null_count else col.to_numpy(
        zero_copy_only=False)
