"""Class values of the label metrics (private): configured classes as Python ints or strs, a
batch's class column normalised (missing and non-integral values found), and the lookup of
values in a class list. Shared by the label and the score families.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from rayeval.core.state import Batch

_INT, _STR = "int", "str"
_KIND_NAME = {_INT: "integer", _STR: "string"}


def _py_class(value: Any, what: str) -> Any:
    """A configured class value as a Python int or str; a bool is the integer 0 or 1, as the
    values of a boolean column are (so ``classes: [false, true]`` matches a bool column)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise TypeError(f"Expected `{what}` to be an int or str class, got {value!r}.")


def _class_column(batch: Batch, name: str, n: int):
    """Normalise one class column.

    Returns:
        ``(values, missing, kind, non_integral)``: values int64 or unicode (n,) (placeholders
        at missing and non-integral rows), missing bool (n,) (None or NaN), kind
        ``"int"``/``"str"``/``None`` (no value), non_integral bool (n,): numbers that are no
        integer class (0.5, inf), counted by the caller as an unknown class.

    Raises:
        KeyError: column absent. ValueError: wrong shape.
        TypeError: neither integer nor string values, or both mixed.
    """
    if name not in batch:
        raise KeyError(f"Expected column `{name}` in the batch, got columns {sorted(batch)}.")
    arr = np.asarray(batch[name])
    if arr.shape != (n,):
        raise ValueError(f"Expected `{name}` of shape ({n},), got shape {arr.shape}.")
    none = np.zeros(n, dtype=bool)
    k = arr.dtype.kind
    if k in "biu":  # no copy when already int64 (callers never write into it)
        return np.asarray(arr, dtype=np.int64), none, (_INT if n else None), none
    if k in "US":
        return arr.astype(str), none, (_STR if n else None), none
    if k == "f":
        missing = np.isnan(arr)
        vals = np.where(missing, 0.0, arr)
        bad = ~np.isfinite(vals) | (vals != np.trunc(vals))
        if bad.any():
            vals = np.where(bad, 0.0, vals)
        return vals.astype(np.int64), missing, (_INT if (~missing).any() else None), bad
    if k != "O":
        raise TypeError(f"Expected integer or string classes in `{name}`, got dtype {arr.dtype}.")
    missing = np.asarray((arr == None) | (arr != arr), dtype=bool)  # noqa: E711 (elementwise)
    present = arr[~missing]
    if present.size == 0:
        return np.zeros(n, dtype=np.int64), missing, None, none
    try:
        uniq, inv = np.unique(present, return_inverse=True)
    except TypeError:
        raise TypeError(f"`{name}` (dtype object) mixes string and numeric values; "
                        "use one class type.") from None
    if all(isinstance(u, str) for u in uniq):
        kind, u_vals = _STR, uniq.astype(str)
    elif all(isinstance(u, numbers.Real) and not isinstance(u, str) for u in uniq):
        u_bad = np.array([not math.isfinite(float(u)) or not float(u).is_integer()
                          for u in uniq], dtype=bool)
        kind = _INT
        u_vals = np.array([0 if b else int(u) for u, b in zip(uniq, u_bad)], dtype=np.int64)
        nonint = np.zeros(n, dtype=bool)
        nonint[~missing] = u_bad[inv.reshape(-1)]
    else:
        raise TypeError(f"Expected integer or string classes in `{name}`, got values of types "
                        f"{sorted({type(u).__name__ for u in uniq})}.")
    vals = np.zeros(n, dtype=u_vals.dtype)
    vals[~missing] = u_vals[inv.reshape(-1)]
    return vals, missing, kind, (nonint if kind == _INT else none)


def _lookup(classes: tuple, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class index (int64 (n,)) and known mask (bool (n,)) of ``values`` in ``classes``."""
    if not classes:
        return np.zeros(values.size, dtype=np.int64), np.zeros(values.size, dtype=bool)
    arr = np.asarray(classes)
    if arr.dtype.kind == "i" and values.dtype.kind in "iu" and values.size:
        lo, hi = int(arr.min()), int(arr.max())
        if hi - lo < 65_536:  # dense lookup table: O(n), no search
            table = np.full(hi - lo + 1, -1, dtype=np.int64)
            table[arr - lo] = np.arange(arr.size)
            off = values.astype(np.int64, copy=False) - lo
            in_range = off.view(np.uint64) <= hi - lo  # negative offsets wrap to huge
            all_in = bool(in_range.all())
            idx = table[off if all_in else np.where(in_range, off, 0)]
            known = idx >= 0
            if not all_in:
                known &= in_range
            return (idx if all_in and known.all() else np.maximum(idx, 0)), known
    order = np.argsort(arr, kind="stable")
    srt = arr[order]
    pos = np.minimum(np.searchsorted(srt, values), len(classes) - 1)
    return order[pos].astype(np.int64), srt[pos] == values


def _kind_of(value: Any) -> str:
    return _STR if isinstance(value, str) else _INT
