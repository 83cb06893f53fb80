"""Numeric and input helpers shared by the label and regression metric families.

- :func:`grouped_moments` and :func:`combine_moments`: weighted mean and centred sum of squares
  (``M2``) per group, computed two-pass within a batch and combined across batches/partitions with
  the pairwise update of Chan, Golub & LeVeque, "Updating formulae and a pairwise algorithm for
  computing sample variances", COMPSTAT 1982 (Stanford report STAN-CS-79-773, 1979), in the
  weighted form of West, "Updating mean and variance estimates: an improved method",
  Comm. ACM 22(9), 1979. Unlike raw power sums (``sum w*y**2 - (sum w*y)**2 / sum w``), this
  does not cancel catastrophically when the mean is large relative to the spread.
- :func:`weight_column`, :func:`first_reason`, :func:`compact_groups`: batch validation helpers
  (candidates for ``base.py`` once other families need them).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from rayeval.metrics.base import GroupIndex


def grouped_moments(codes: np.ndarray, n_groups: int, x: np.ndarray,
                    w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted count, mean and centred sum of squares of ``x`` per group (two-pass).

    Args:
        codes: int64 (n,), group of each row in ``[0, n_groups)``.
        n_groups: G.
        x: float64 (n,), finite values.
        w: float64 (n,), finite weights >= 0.

    Returns:
        ``(W, mean, M2)``, each float64 (G,): ``W = sum w``, ``mean = sum w*x / W`` (0 where
        ``W == 0``), ``M2 = sum w*(x - mean)**2`` (>= 0).
    """
    # (np.bincount returns int64 for empty input even with weights: cast)
    total = np.bincount(codes, weights=w, minlength=n_groups).astype(np.float64)
    mean = np.bincount(codes, weights=w * x, minlength=n_groups).astype(np.float64)
    np.divide(mean, total, out=mean, where=total > 0)
    mean[total <= 0] = 0.0
    dev = x - mean[codes]
    m2 = np.bincount(codes, weights=w * dev * dev, minlength=n_groups).astype(np.float64)
    return total, mean, m2


def combine_moments(w_a: np.ndarray, mean_a: np.ndarray, m2_a: np.ndarray,
                    w_b: np.ndarray, mean_b: np.ndarray,
                    m2_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairwise (Chan et al. / West) combination of two weighted (W, mean, M2) summaries.

    All arguments are float64 arrays of one shape (G,). Where one side has zero weight the other
    side is returned unchanged (bit for bit), so an empty summary is an exact identity.

    ``delta = mean_b - mean_a``; ``W = w_a + w_b``; ``mean = mean_a + delta * w_b / W``;
    ``M2 = M2_a + M2_b + delta**2 * w_a * w_b / W``.

    Returns:
        ``(W, mean, M2)`` float64 arrays of the input shape.
    """
    total = w_a + w_b
    both = (w_a > 0) & (w_b > 0)
    safe = np.where(both, total, 1.0)
    delta = mean_b - mean_a
    mean = np.where(both, mean_a + delta * (w_b / safe), np.where(w_a > 0, mean_a, mean_b))
    m2 = np.where(both, m2_a + m2_b + delta * delta * (w_a * w_b / safe),
                  np.where(w_a > 0, m2_a, m2_b))
    return total, mean, m2


def weight_column(batch: Mapping[str, np.ndarray], n: int,
                  name: str = "weight") -> np.ndarray | None:
    """The optional sample-weight column as float64 (n,), or ``None`` when absent.

    Values are not checked here (negative and non-finite weights are counted as invalid rows by
    the caller); ``None`` entries of an object column become NaN.

    Raises:
        TypeError: if the column is not numeric.
        ValueError: if its shape is not (n,).
    """
    if name not in batch or batch[name] is None:
        return None
    arr = np.asarray(batch[name])
    if arr.dtype.kind not in "biufO":
        raise TypeError(f"Expected numeric `{name}`, got dtype {arr.dtype}.")
    try:
        w = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"Expected numeric `{name}`, got non-numeric values ({exc}).") from None
    if w.shape != (n,):
        raise ValueError(f"Expected `{name}` of shape ({n},), got shape {w.shape}.")
    return w


def weight_problems(w: np.ndarray | None, n: int) -> list[np.ndarray]:
    """``[negative, nonfinite]`` boolean (n,) masks of a weight column (all False when None).

    ``-inf`` counts as negative, ``nan`` and ``+inf`` as non-finite.
    """
    if w is None:
        z = np.zeros(n, dtype=bool)
        return [z, z]
    with np.errstate(invalid="ignore"):
        neg = w < 0
    return [neg, ~neg & ~np.isfinite(w)]


def first_reason(conditions: Sequence[np.ndarray]) -> np.ndarray:
    """int64 (n,): index of the first true condition of each row, -1 when none holds.

    A row failing several checks is counted once, under the first reason in order.
    """
    if not conditions:
        raise ValueError("Expected at least one condition.")
    return np.select(list(conditions), np.arange(len(conditions), dtype=np.int64), -1)


def compact_groups(groups: GroupIndex) -> tuple[np.ndarray, tuple]:
    """Drop groups without rows in this batch.

    Returns:
        ``(codes, keys)``: int64 (n,) codes into ``keys``, the keys of groups with >= 1 row in
        their original order. States therefore only hold groups that saw a row, which makes the
        set of groups independent of how rows are partitioned.
    """
    counts = np.bincount(groups.codes, minlength=groups.n_groups)
    used = np.flatnonzero(counts)
    if used.size == groups.n_groups:
        return groups.codes, groups.keys
    remap = np.full(groups.n_groups, -1, dtype=np.int64)
    remap[used] = np.arange(used.size, dtype=np.int64)
    return remap[groups.codes], tuple(groups.keys[i] for i in used.tolist())
