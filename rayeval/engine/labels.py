"""Late-arriving labels: deduplication and a hash index for the broadcast join (no Ray).

Labels are usually far narrower than predictions (id, label, observed value, arrival time), so
rayeval joins them by broadcast: the deduplicated labels are put once in the Ray object store,
every actor builds a hash index over the ids (``pandas.Index``) and looks each prediction batch up
in it. No row of the predictions moves, and labels are read once. (A labels table that does not fit
in one worker's memory needs a hash-shuffle join; see the issue notes.)

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


@dataclass
class LabelIndex:
    """Deduplicated labels with a lookup by prediction id.

    Attributes:
        table: Arrow table of unique ids (column ``id_column``) and the label columns.
        id_column: name of the id column in ``table``.
        n_read: label rows read.
        n_duplicates: label rows dropped as older duplicates of an id.
    """

    table: pa.Table
    id_column: str
    n_read: int
    n_duplicates: int
    _index: pd.Index | None = field(default=None, repr=False, compare=False)
    _columns: dict | None = field(default=None, repr=False, compare=False)

    @classmethod
    def build(cls, table: pa.Table, id_column: str, timestamp_column: str | None) -> "LabelIndex":
        """Deduplicate ``table`` on ``id_column`` keeping the latest ``timestamp_column``."""
        n = table.num_rows
        df = table.to_pandas()
        df[id_column] = _normalise_ids(df[id_column])
        if timestamp_column and timestamp_column in df:
            df = df.sort_values(timestamp_column, kind="stable", na_position="first")
        df = df.drop_duplicates(subset=[id_column], keep="last")
        out = pa.Table.from_pandas(df, preserve_index=False)
        return cls(out, id_column, n, n - out.num_rows)

    @property
    def n_labels(self) -> int:
        return self.table.num_rows

    def __getstate__(self):
        return {"table": self.table, "id_column": self.id_column, "n_read": self.n_read,
                "n_duplicates": self.n_duplicates}

    def __setstate__(self, st):
        self.__init__(**st)

    def lookup(self, ids) -> np.ndarray:
        """Positions (int64, shape (n,)) of ``ids`` in the label table, -1 where unlabelled."""
        if self._index is None:
            self._index = pd.Index(_normalise_ids(self.table[self.id_column].to_pandas()))
        return self._index.get_indexer(_normalise_ids(pd.Series(ids))).astype(np.int64)

    def column(self, name: str) -> np.ndarray:
        """A label column as a numpy array (cached)."""
        if self._columns is None:
            self._columns = {}
        if name not in self._columns:
            if name not in self.table.column_names:
                raise KeyError(name)
            self._columns[name] = to_numpy(self.table[name])
        return self._columns[name]


def _normalise_ids(s: pd.Series) -> pd.Series:
    """Ids compare as strings when they are strings, as int64 when integral."""
    if pd.api.types.is_integer_dtype(s.dtype):
        return s.astype("int64")
    if pd.api.types.is_float_dtype(s.dtype):
        return s.astype("Int64")
    return s.astype(object).where(s.isna(), s.astype(str))


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

