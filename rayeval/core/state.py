"""Grouped states and finalized values shared by every spec (pure numpy).

A grouped state holds the sufficient statistics of many groups at once. A group is keyed by a
hashable tuple chosen by the caller (the engine uses ``(model, window_start, slice, value)``);
the core treats keys as opaque. :class:`GroupIndex` carries, for one batch, the group code of
each row and the key of each code; :class:`KeyedArrays` is the dense additive state most
families use; :class:`MetricResult` / :class:`ResultColumns` are finalized values (one object
per value, or columns). The four operations a spec implements over these are written down in
:mod:`rayeval.core.contract`.

Undefined values are ``nan`` with a reason string (``empty``, ``single_class``,
``no_positive_labels``, ``constant_target``, ``zero_target``, ...), never a silent 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Hashable, Iterable, Mapping, Sequence

import numpy as np

Key = Hashable
Batch = Mapping[str, np.ndarray]

HIGHER = "higher_is_better"
LOWER = "lower_is_better"
NEUTRAL = "neutral"


class StateMismatchError(ValueError):
    """Raised when two states that disagree on what a merge must share (class list, bucket
    layout, options) are merged."""


@dataclass(frozen=True)
class GroupIndex:
    """Row-to-group assignment of one batch.

    Attributes:
        codes: int64 array of shape (n_rows,), values in ``[0, len(keys))``: the group of each row.
        keys: tuple of length ``n_groups``: the hashable key of each code; keys are unique.

    Raises:
        ValueError: if a code is out of range or keys repeat.
    """

    codes: np.ndarray
    keys: tuple

    def __post_init__(self) -> None:
        codes = np.asarray(self.codes, dtype=np.int64)
        object.__setattr__(self, "codes", codes)
        object.__setattr__(self, "keys", tuple(self.keys))
        if codes.ndim != 1:
            raise ValueError(f"Expected `codes` of shape (n_rows,), got shape {codes.shape}.")
        if codes.size and (codes.min() < 0 or codes.max() >= len(self.keys)):
            raise ValueError(
                f"Expected `codes` in [0, {len(self.keys)}), got range "
                f"[{codes.min()}, {codes.max()}]."
            )
        if len(set(self.keys)) != len(self.keys):
            raise ValueError("Expected unique `keys`, got repeated keys.")

    @property
    def n_groups(self) -> int:
        return len(self.keys)

    @property
    def n_rows(self) -> int:
        return int(self.codes.size)

    @classmethod
    def single(cls, n_rows: int, key: Key = ()) -> "GroupIndex":
        """All ``n_rows`` rows in one group keyed ``key`` (the ``overall`` slice)."""
        return cls(np.zeros(n_rows, dtype=np.int64), (key,))


@dataclass(frozen=True)
class MetricResult:
    """One finalized value.

    Attributes:
        key: the group key the value belongs to.
        metric: metric name in the field's standard terms (``roc_auc``, ``f1_score``...).
        value: float; ``nan`` when undefined (then ``undefined_reason`` says why).
        direction: ``higher_is_better``, ``lower_is_better`` or ``neutral``.
        undefined_reason: empty string when defined.
        error_bound: guaranteed absolute bound on ``|value - exact value|`` for approximate
            (bucketed, sketched) metrics; 0.0 for exact ones.
        class_label: the class a per-class value belongs to, else ``None``.
        average: ``binary``, ``micro``, ``macro``, ``weighted`` or ``None``.
    """

    key: Key
    metric: str
    value: float
    direction: str = NEUTRAL
    undefined_reason: str = ""
    error_bound: float = 0.0
    class_label: Any = None
    average: str | None = None


class ResultColumns:
    """Finalized values of ``G`` groups as columns: the columnar form of a list of
    :class:`MetricResult` (what ``spec.finalize_columns(state)`` returns; the engine builds
    its tables from it without one Python object per value).

    Built block by block with :meth:`add` (one metric, optionally one class or average, for
    every group); :meth:`results` gives the equivalent ``MetricResult`` list, ordered by group,
    then by block.

    Attributes (after the blocks are added):
        keys: tuple of the ``G`` group keys.
        group: int64 (m,) position in ``keys`` of each value.
        value, error_bound: float64 (m,).
        text: column name (``metric``, ``direction``, ``undefined_reason``, ``class_label``,
            ``average``) -> ``(values, codes)``: a list of distinct Python values and int64
            (m,) codes into it.
    """

    _TEXT = ("metric", "direction", "undefined_reason", "class_label", "average")

    def __init__(self, keys: Sequence[Key]):
        self.keys = tuple(keys)
        self._group: list[np.ndarray] = []
        self._value: list[np.ndarray] = []
        self._bound: list[np.ndarray] = []
        self._vocab: dict[str, dict] = {c: {} for c in self._TEXT}
        self._codes: dict[str, list[np.ndarray]] = {c: [] for c in self._TEXT}

    def add(self, metric: str, value, direction: str = NEUTRAL, reason: Any = "",
            error_bound: Any = 0.0, class_label: Any = None, average: str | None = None,
            mask: np.ndarray | None = None) -> None:
        """Append one value per group (or per group of ``mask``).

        Args:
            metric: metric name.
            value: float (G,) values (``nan`` where undefined), or a scalar for all groups.
            direction: ``HIGHER`` / ``LOWER`` / ``NEUTRAL``.
            reason: undefined reason: a string for all groups, or a str array (G,).
            error_bound: float (G,) or a scalar.
            class_label, average: shared by the block's values.
            mask: bool (G,): the groups that get a value (``None``: all).

        Raises:
            ValueError: if an array is not of shape (G,).
        """
        g = len(self.keys)
        rows = np.arange(g, dtype=np.int64) if mask is None else np.flatnonzero(mask)
        m = rows.size

        def column(x, dtype):
            a = np.asarray(x, dtype=dtype)
            if a.ndim == 0:
                return np.full(m, a)
            if a.shape != (g,):
                raise ValueError(f"Expected {metric!r} values of shape ({g},), got {a.shape}.")
            return a if mask is None else a[rows]

        self._group.append(rows)
        self._value.append(column(value, np.float64))
        self._bound.append(column(error_bound, np.float64))
        for name, v in (("metric", metric), ("direction", direction),
                        ("class_label", class_label), ("average", average)):
            self._codes[name].append(np.full(m, self._code(name, v), dtype=np.int64))
        if isinstance(reason, str):
            self._codes["undefined_reason"].append(
                np.full(m, self._code("undefined_reason", reason), dtype=np.int64))
        else:
            r = column(reason, object)
            codes = np.empty(m, dtype=np.int64)
            for u in set(r.tolist()):  # a few distinct reasons: one comparison each
                codes[r == u] = self._code("undefined_reason", u)
            self._codes["undefined_reason"].append(codes)

    @classmethod
    def from_results(cls, results: Sequence["MetricResult"]) -> "ResultColumns":
        """Columns of a ``MetricResult`` list (groups in order of first appearance)."""
        position: dict = {}
        group = [position.setdefault(r.key, len(position)) for r in results]
        out = cls(list(position))
        if results:
            out._group.append(np.asarray(group, dtype=np.int64))
            out._value.append(np.array([r.value for r in results], dtype=np.float64))
            out._bound.append(np.array([r.error_bound for r in results], dtype=np.float64))
            for name in cls._TEXT:
                out._codes[name].append(np.array(
                    [out._code(name, getattr(r, name)) for r in results], dtype=np.int64))
        return out

    def _code(self, name: str, value) -> int:
        vocab = self._vocab[name]
        key = (type(value), value)  # 1 and True and 1.0 stay distinct class labels
        code = vocab.get(key)
        if code is None:
            code = vocab[key] = len(vocab)
        return code

    def __len__(self) -> int:
        return int(sum(a.size for a in self._group))

    @property
    def group(self) -> np.ndarray:
        return np.concatenate(self._group) if self._group else np.zeros(0, np.int64)

    @property
    def value(self) -> np.ndarray:
        return np.concatenate(self._value) if self._value else np.zeros(0)

    @property
    def error_bound(self) -> np.ndarray:
        return np.concatenate(self._bound) if self._bound else np.zeros(0)

    @property
    def text(self) -> dict[str, tuple[list, np.ndarray]]:
        return {c: ([k[1] for k in self._vocab[c]],
                    np.concatenate(self._codes[c]) if self._codes[c] else np.zeros(0, np.int64))
                for c in self._TEXT}

    def results(self) -> list[MetricResult]:
        """The values as :class:`MetricResult` objects, by group then block order."""
        group = self.group
        order = np.argsort(group, kind="stable")
        text = {c: [vals[i] for i in codes[order].tolist()]
                for c, (vals, codes) in self.text.items()}
        return [MetricResult(self.keys[g], m, v, d, r, b, c, a) for g, m, v, d, r, b, c, a in
                zip(group[order].tolist(), text["metric"], self.value[order].tolist(),
                    text["direction"], text["undefined_reason"],
                    self.error_bound[order].tolist(), text["class_label"], text["average"])]


@dataclass(frozen=True)
class KeyedArrays:
    """Dense grouped state: additive arrays with a leading group axis.

    Attributes:
        keys: tuple of unique group keys, length ``G``.
        arrays: name -> array of shape ``(G, ...)``; merged by addition.

    Sufficient for every family whose statistics are sums (confusion counts, weighted moments,
    fixed-edge histograms). Treat as immutable.
    """

    keys: tuple = ()
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_groups(self) -> int:
        return len(self.keys)

    def index(self) -> dict:
        """Key -> row position."""
        return {k: i for i, k in enumerate(self.keys)}

    def get(self, key: Key) -> dict[str, np.ndarray] | None:
        """The arrays of one group, or ``None`` when the group is absent."""
        pos = self.index().get(key)
        if pos is None:
            return None
        return {name: arr[pos] for name, arr in self.arrays.items()}


def union_keys(a: Sequence, b: Sequence) -> tuple[tuple, np.ndarray, np.ndarray]:
    """Union of two unique key sequences, keeping ``a``'s order then ``b``'s new keys.

    Returns:
        ``(keys, pos_a, pos_b)``: the union and int64 arrays mapping each key of ``a`` / ``b``
        to its position in the union.
    """
    pos: dict = {k: i for i, k in enumerate(a)}
    keys = list(a)
    pos_b = np.empty(len(b), dtype=np.int64)
    for j, k in enumerate(b):
        i = pos.get(k)
        if i is None:
            i = len(keys)
            pos[k] = i
            keys.append(k)
        pos_b[j] = i
    return tuple(keys), np.arange(len(a), dtype=np.int64), pos_b


def merge_keyed(a: KeyedArrays, b: KeyedArrays) -> KeyedArrays:
    """Add two dense grouped states group by group (groups matched by key).

    Raises:
        StateMismatchError: if the array names or trailing shapes differ.
    """
    if not a.keys:
        return b
    if not b.keys:
        return a
    if set(a.arrays) != set(b.arrays):
        raise StateMismatchError(
            f"Cannot merge states with arrays {sorted(a.arrays)} and {sorted(b.arrays)}."
        )
    keys, pos_a, pos_b = union_keys(a.keys, b.keys)
    out = {}
    for name, arr_a in a.arrays.items():
        arr_b = b.arrays[name]
        if arr_a.shape[1:] != arr_b.shape[1:]:
            raise StateMismatchError(
                f"Cannot merge `{name}` of shapes {arr_a.shape[1:]} and {arr_b.shape[1:]}."
            )
        dtype = np.result_type(arr_a.dtype, arr_b.dtype)
        res = np.zeros((len(keys),) + arr_a.shape[1:], dtype=dtype)
        res[pos_a] += arr_a
        res[pos_b] += arr_b
        out[name] = res
    return KeyedArrays(keys, out)


def common_rows(groupings: Sequence[GroupIndex]) -> int:
    """The row count every grouping of one batch covers (``accumulate_many``'s input check).

    Raises:
        ValueError: if the groupings cover different row counts.
    """
    n = groupings[0].n_rows
    if any(g.n_rows != n for g in groupings):
        raise ValueError(f"Expected every grouping over {n} rows, got "
                         f"{[g.n_rows for g in groupings]}.")
    return n


def grouped_sum(codes: np.ndarray, n_groups: int, values: np.ndarray | None = None,
                minlength_inner: int | None = None, inner: np.ndarray | None = None) -> np.ndarray:
    """Vectorised per-group (and optionally per-inner-bucket) sum via one ``np.bincount``.

    Args:
        codes: int64 array (n,), group of each row.
        n_groups: number of groups G.
        values: float array (n,) of weights; ``None`` counts rows.
        inner: optional int64 array (n,) of an inner index in ``[0, minlength_inner)``.
        minlength_inner: size of the inner axis when ``inner`` is given.

    Returns:
        array (G,) or (G, minlength_inner); int64 when ``values`` is None, else float64.
    """
    if inner is None:
        out = np.bincount(codes, weights=values, minlength=n_groups)
        return out.astype(np.int64) if values is None else out
    flat = codes * minlength_inner + inner
    out = np.bincount(flat, weights=values, minlength=n_groups * minlength_inner)
    out = out.reshape(n_groups, minlength_inner)
    return out.astype(np.int64) if values is None else out


def safe_div(num: np.ndarray, den: np.ndarray, fill: float = math.nan) -> np.ndarray:
    """Elementwise ``num / den`` in float64 with ``fill`` where ``den == 0``."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, fill, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def results_by_key(results: Iterable[MetricResult]) -> dict:
    """Group finalized results as ``{key: {(metric, class_label, average): MetricResult}}``."""
    out: dict = {}
    for r in results:
        out.setdefault(r.key, {})[(r.metric, r.class_label, r.average)] = r
    return out
