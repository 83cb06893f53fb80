"""Slice specs and UTC time windows (pure numpy/pandas, no Ray, no I/O).

A *slice spec* is a tuple of column names: ``()`` is the ``overall`` slice, ``("origin",)``
slices by one column, ``("origin", "hour_band")`` is a cross. A *slice value* renders as
``origin=ORD`` or ``origin=ORD,hour_band=night`` (``overall`` for the empty spec).

Windows are UTC, left-closed, right-open: ``[window_start, window_end)``. Weeks start on Monday
(ISO 8601). A window is identified by its start as int64 nanoseconds since the epoch; the
``none`` window (whole range) uses :data:`NO_WINDOW`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from rayeval.metrics.base import GroupIndex

WINDOW_SIZES = ("none", "hour", "day", "week", "month")
NO_WINDOW = np.int64(-(2**63))  # sentinel window start for window size "none"
NULL_VALUE = "null"

_NS_PER = {"hour": 3_600 * 10**9, "day": 86_400 * 10**9, "week": 7 * 86_400 * 10**9}
# 1970-01-01 was a Thursday; Monday-based weeks are offset by 3 days.
_WEEK_OFFSET_NS = 3 * 86_400 * 10**9


@dataclass(frozen=True)
class SliceSpec:
    """A slice definition: the columns whose value combination defines a slice.

    Attributes:
        columns: tuple of column names; empty for the ``overall`` slice.
    """

    columns: tuple[str, ...] = ()

    @cached_property
    def name(self) -> str:
        """``overall`` or the columns joined by `` x `` (e.g. ``origin x hour_band``); computed
        once per instance (state names are built from it for every batch and group)."""
        return "overall" if not self.columns else " x ".join(self.columns)

    def render(self, values: tuple) -> str:
        """Human/tidy rendering of one slice value tuple: ``origin=ORD,hour_band=night``.

        A missing value (None, NaN) renders as ``origin=null``; a text value that would read
        as that, or that starts with a double quote, is quoted (``origin="null"``), so a
        missing value and the string ``"null"`` are different slices."""
        if not self.columns:
            return "overall"
        return ",".join(f"{c}={_fmt(v)}" for c, v in zip(self.columns, values))


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return NULL_VALUE
    s = str(v)
    if isinstance(v, str) and (s == NULL_VALUE or s.startswith('"')):
        return f'"{s}"'
    return s


def to_utc_ns(values) -> np.ndarray:
    """Convert timestamps to int64 nanoseconds since the epoch, UTC.

    Args:
        values: array-like of datetimes (numpy datetime64, pandas Series/DatetimeIndex, tz-aware
            or naive; naive is taken as UTC, per DESIGN section 4).

    Returns:
        int64 array (n,); missing timestamps become ``np.iinfo(np.int64).min`` (NaT).
    """
    idx = pd.DatetimeIndex(values)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    return idx.as_unit("ns").asi8


def window_starts(ts_ns: np.ndarray, size: str) -> np.ndarray:
    """Start of the UTC window containing each timestamp.

    Args:
        ts_ns: int64 array (n,) of ns since epoch (from :func:`to_utc_ns`).
        size: one of :data:`WINDOW_SIZES`.

    Returns:
        int64 array (n,) of window starts (ns since epoch); :data:`NO_WINDOW` for ``none``.

    Raises:
        ValueError: on an unknown ``size``.
    """
    ts_ns = np.asarray(ts_ns, dtype=np.int64)
    if size == "none":
        return np.full(ts_ns.shape, NO_WINDOW, dtype=np.int64)
    if size in ("hour", "day"):
        step = _NS_PER[size]
        return ts_ns - np.mod(ts_ns, step)
    if size == "week":
        step = _NS_PER["week"]
        shifted = ts_ns + _WEEK_OFFSET_NS
        return shifted - np.mod(shifted, step) - _WEEK_OFFSET_NS
    if size == "month":
        months = ts_ns.astype("datetime64[ns]").astype("datetime64[M]")
        return months.astype("datetime64[ns]").astype(np.int64)
    raise ValueError(f"Expected window `size` in {WINDOW_SIZES}, got {size!r}.")


def window_end(start_ns: int, size: str, range_end_ns: int | None = None) -> int:
    """End (exclusive) of the window starting at ``start_ns``; for ``none`` the range end."""
    if size == "none":
        return int(range_end_ns) if range_end_ns is not None else int(np.iinfo(np.int64).max)
    if size == "month":
        m = np.datetime64(int(start_ns), "ns").astype("datetime64[M]") + 1
        return int(m.astype("datetime64[ns]").astype(np.int64))
    return int(start_ns) + _NS_PER[size]


def factorize(values) -> tuple[np.ndarray, np.ndarray]:
    """Codes and uniques of one column; missing values get their own code (value ``None``).

    Args:
        values: numpy array, pandas Series, or pyarrow (Chunked)Array of length n.

    Returns:
        ``(codes, uniques)``: int64 array (n,) in ``[0, len(uniques))`` and an object array of
        Python scalars (``None`` for missing).
    """
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        if pa.types.is_dictionary(arr.type):
            arr = arr.cast(arr.type.value_type)
        enc = pc.dictionary_encode(arr, null_encoding="encode")
        codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        uniques = np.empty(len(enc.dictionary), dtype=object)
        uniques[:] = enc.dictionary.to_pylist()
        return codes, uniques
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    codes = np.asarray(codes, dtype=np.int64)
    uniques = np.asarray(uniques, dtype=object)
    if (codes < 0).any():
        codes = np.where(codes < 0, len(uniques), codes)
        uniques = np.append(uniques, None)
    return codes, uniques


def combine(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> GroupIndex:
    """Group index of the value combinations of several factorised columns.

    One mixed-radix code per row and one hash factorisation: vectorised, no Python loop over
    rows.

    Args:
        parts: ``(codes, uniques)`` pairs from :func:`factorize`, all of length n.

    Returns:
        GroupIndex whose keys are tuples (one element per column) of Python scalars.

    Raises:
        ValueError: if no column is given, lengths differ, or the combinations overflow int64.
    """
    if not parts:
        raise ValueError("Expected at least one key column.")
    if len(parts) == 1 and (len(parts[0][1]) == 0 or parts[0][1][-1] is not None):
        # one column from factorize(): its codes are dense and in first-appearance order
        # (only a missing value appended last may break that), i.e. what the hash
        # factorisation below would return: skip it
        codes, uniques = parts[0]
        return GroupIndex(np.asarray(codes, dtype=np.int64),
                          tuple((u,) for u in uniques.tolist()))
    n = len(parts[0][0])
    combined = np.zeros(n, dtype=np.int64)
    radix = 1
    for codes, uniques in parts:
        if len(codes) != n:
            raise ValueError(f"Key columns differ in length: {len(codes)} vs {n}.")
        size = max(len(uniques), 1)
        radix *= size
        if radix > 2**62:
            raise ValueError("Too many distinct key combinations in one batch.")
        combined = combined * size + codes
    # hash factorisation: O(n), no sort; group order is first appearance (keys are opaque)
    inv, uniq = pd.factorize(combined)
    decoded = []
    rest = np.asarray(uniq, dtype=np.int64).copy()
    for codes, uniques in reversed(parts):
        size = max(len(uniques), 1)
        decoded.append(uniques[rest % size] if len(uniques) else np.full(len(rest), None))
        rest //= size
    decoded.reverse()
    keys = tuple(zip(*(d.tolist() for d in decoded))) if len(uniq) else ()
    return GroupIndex(inv.astype(np.int64).reshape(-1), keys)


def group_index(columns: Sequence) -> GroupIndex:
    """:func:`combine` of :func:`factorize` of each column (see those)."""
    return combine([factorize(c) for c in columns])


def subset(groups: GroupIndex, mask: np.ndarray) -> GroupIndex:
    """The rows of ``groups`` where ``mask`` is true, re-indexed to the groups they occupy."""
    sub = groups.codes[mask]
    present = np.bincount(sub, minlength=groups.n_groups) > 0
    new_id = np.cumsum(present) - 1
    keys = groups.keys
    return GroupIndex(new_id[sub].astype(np.int64),
                      tuple(keys[u] for u in np.flatnonzero(present).tolist()))
