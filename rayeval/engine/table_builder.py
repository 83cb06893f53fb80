"""Column-by-column builders of the output tables (no Ray): what repeats on every row of a
group (model, window bounds, slice string, row counts) is computed once per group
(:class:`_SliceGroups`), values shared by many rows are kept by code (:class:`_Coded`), and
each column is concatenated and turned into a DataFrame column once (:class:`_Table`), with
the dtypes pandas would infer from records. Used by :mod:`rayeval.engine.results`."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain, compress, groupby
from typing import Sequence

import numpy as np
import pandas as pd

from rayeval.engine.plan import EvalPlan
from rayeval.slicing import NO_WINDOW, SliceSpec, window_end


_TIME_COLUMNS = frozenset({"window_start", "window_end"})
_NAT = np.iinfo(np.int64).min  # int64 nanoseconds of NaT


class _WindowBounds:
    """``[start, end)`` of each window as int64 ns (NaT: ``_NAT``), computed once per window."""

    def __init__(self, plan: EvalPlan):
        self.plan = plan
        self._cache: dict[int, tuple[int, int]] = {}

    def __call__(self, win: int) -> tuple[int, int]:
        bounds = self._cache.get(win)
        if bounds is None:
            plan = self.plan
            if win == NO_WINDOW:
                bounds = (_NAT if plan.start_ns is None else int(plan.start_ns),
                          _NAT if plan.end_ns is None else int(plan.end_ns))
            else:
                bounds = (int(win), window_end(win, plan.cfg.windows.size))
            self._cache[win] = bounds
        return bounds


class _Coded:
    """Column values by code: row ``i`` holds ``values[codes[i]]``.

    ``values`` is a Python list that many chunks share (a slice spec's per-group models or
    slice strings, or a one-value list for a constant); it may still grow after the chunk is
    made (codes stay valid), and is read when the table is built.
    """

    __slots__ = ("values", "codes")

    def __init__(self, values: list, codes: np.ndarray):
        self.values = values
        self.codes = codes


@dataclass
class _SliceGroups:
    """The groups ``(model, window, values)`` of one slice spec and what every output row of a
    group repeats, one list entry per group (group number = position).

    Attributes:
        sl: the slice spec.
        windows: shared window bounds.
        min_size: ``slices.min_slice_size``: groups of a non-overall slice with fewer labelled
            rows are suppressed (no metric or confusion rows).
        position: group key -> group number.
        model, slice: model value and rendered slice per group.
        window_start, window_end: int64 ns per group (``_NAT`` when unbounded).
        n_rows, n_labeled: coverage counts per group (0 for a key absent from the coverage).
        suppressed: bool per group.
    """

    sl: SliceSpec
    windows: _WindowBounds
    min_size: int
    position: dict = field(default_factory=dict)
    model: list = field(default_factory=list)
    window_start: list = field(default_factory=list)
    window_end: list = field(default_factory=list)
    slice: list = field(default_factory=list)
    n_rows: list = field(default_factory=list)
    n_labeled: list = field(default_factory=list)
    suppressed: list = field(default_factory=list)
    _arrays: dict | None = field(default=None, repr=False)

    def add(self, key: tuple, n_rows: int, n_labeled: int, suppressible: bool) -> int:
        """Register group ``key`` (must be new) with its coverage counts; returns its number."""
        model, win, values = key
        start, end = self.windows(win)
        g = self.position[key] = len(self.model)
        self.model.append(model)
        self.window_start.append(start)
        self.window_end.append(end)
        self.slice.append(self.sl.render(values))
        self.n_rows.append(n_rows)
        self.n_labeled.append(n_labeled)
        self.suppressed.append(suppressible and bool(self.sl.columns)
                               and n_labeled < self.min_size)
        self._arrays = None
        return g

    def numbers(self, keys) -> np.ndarray:
        """Group number of each key (int64, shape (len(keys),)); a key without coverage counts
        is registered with zero counts and never suppressed."""
        numbers, lengths = [], []
        for key, run in groupby(keys):  # a group's results are usually consecutive
            g = self.position.get(key)
            numbers.append(self.add(key, 0, 0, False) if g is None else g)
            lengths.append(len(list(run)))
        return np.repeat(np.array(numbers, dtype=np.int64), lengths)

    def _array(self, name: str) -> np.ndarray:
        """Per-group list ``name`` as a numpy array, cached until the next :meth:`add`."""
        if self._arrays is None:
            self._arrays = {}
        arr = self._arrays.get(name)
        if arr is None:
            arr = self._arrays[name] = np.asarray(getattr(self, name))
        return arr

    def unsuppressed(self, groups: np.ndarray) -> np.ndarray | None:
        """Bool mask (shape of ``groups``) of the rows to keep; ``None`` when all are kept."""
        supp = self._array("suppressed")
        if not supp.any():
            return None
        keep = ~supp[groups]
        return None if keep.all() else keep

    def context(self, groups: np.ndarray, names) -> dict:
        """Columns ``names`` (of model, window_start, window_end, slice, slice_columns, n_rows,
        n_labeled) for rows of the given group numbers (int64 array), for :meth:`_Table.add`."""
        out: dict = {}
        for name in names:
            if name == "slice_columns":  # null for overall (missing is null in every table)
                out[name] = _Coded([",".join(self.sl.columns) or None],
                                   np.zeros(len(groups), dtype=np.int64))
            elif name in ("model", "slice"):
                out[name] = _Coded(getattr(self, name), groups)
            else:
                out[name] = self._array(name)[groups]
        return out


class _Table:
    """Columns of one output table, appended chunk by chunk and turned into a DataFrame once.

    A chunk gives every column as one kind, the same in all chunks of the column: a numpy array
    (float64 / int64 values; int64 ns for the window columns), a :class:`_Coded`, a string that
    every row of the chunk repeats (stored coded), or a list of Python values.
    """

    def __init__(self, columns: list[str]):
        self.columns = columns
        self.chunks: dict[str, list] = {c: [] for c in columns}
        self.n = 0
        self._constants: dict[str, list] = {}

    def add(self, n: int, /, **cols) -> None:
        """Append ``n`` rows; ``cols`` holds a length-``n`` value per column (see the class)."""
        if n == 0:
            return
        for c in self.columns:
            v = cols[c]
            if isinstance(v, str):
                v = _Coded(self._constants.setdefault(v, [v]), np.zeros(n, dtype=np.int64))
            self.chunks[c].append(v)
        self.n += n

    def frame(self, order_by: Sequence[str] = ()) -> pd.DataFrame:
        """The DataFrame.

        Python values get the dtype pandas infers from them (as if the table were built from
        records: ``str`` for strings with or without ``None``, ``object`` for ``None`` only,
        ``int64`` for ints...); window columns are datetime64[ns, UTC]. No rows: every column
        ``object``.

        Args:
            order_by: columns to order the rows by, as ``DataFrame.sort_values(order_by,
                na_position="first", kind="stable")`` would: lexicographic over each column's
                pandas sort codes (``Categorical(column, ordered=True).codes``: missing first;
                a window column by its int64 ns, NaT first). The permutation is applied to the
                codes of coded columns before they are decoded.
        """
        if self.n == 0:
            return pd.DataFrame([], columns=self.columns)
        cols: dict = {}
        for c in self.columns:
            parts = self.chunks[c]
            if isinstance(parts[0], _Coded):
                cols[c] = _merge_coded(parts)
            elif isinstance(parts[0], np.ndarray):
                cols[c] = np.concatenate(parts)
            else:  # Python values: the pandas array inferred from them
                cols[c] = pd.Series(list(chain.from_iterable(parts))).array
        if order_by:
            keys = []
            for c in order_by:
                v = cols[c]
                keys.append(_sort_codes(v[0])[v[1]] if isinstance(v, tuple) else
                            v if isinstance(v, np.ndarray) else _sort_codes(v))
            order = np.lexsort(keys[::-1])
            for c, v in cols.items():
                cols[c] = (v[0], v[1][order]) if isinstance(v, tuple) else v.take(order)
        data = {}
        for c, v in cols.items():
            if isinstance(v, tuple):
                data[c] = v[0].take(v[1])
            elif c in _TIME_COLUMNS:
                data[c] = _utc_column(v)
            else:
                data[c] = v
        return pd.DataFrame(data, columns=self.columns)


def _merge_coded(parts: list[_Coded]) -> tuple:
    """One column from coded chunks, as ``(values, codes)``: the pandas array inferred from the
    distinct values that occur (the dtype pandas infers from all the row values) and int64 row
    codes into it (rows decode with ``values.take(codes)``, no per-row Python object)."""
    offsets: dict[int, int] = {}
    values: list = []
    codes = []
    for p in parts:
        off = offsets.get(id(p.values))
        if off is None:
            off = offsets[id(p.values)] = len(values)
            values.extend(p.values)
        codes.append(p.codes + off)
    code = np.concatenate(codes)
    used = np.bincount(code, minlength=len(values)) > 0
    new_code = np.cumsum(used) - 1
    return pd.Series(list(compress(values, used.tolist()))).array, new_code[code]


def _sort_codes(values) -> np.ndarray:
    """What pandas sorts a column by: each value's position among the sorted distinct values,
    -1 when missing (int64, shape of ``values``)."""
    return np.asarray(pd.Categorical(values, ordered=True).codes, dtype=np.int64)


def _utc_column(ns: np.ndarray):
    """int64 ns since the epoch (``_NAT`` = missing) -> datetime64[ns, UTC] column values.

    When every value is missing, the NaTs are returned as a list so that pandas infers the same
    dtype as from NaT-only records (datetime64[s], no time zone)."""
    if (ns == _NAT).all():
        return [pd.NaT] * len(ns)
    return pd.DatetimeIndex(ns.view("datetime64[ns]")).tz_localize("UTC").array
