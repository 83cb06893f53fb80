"""Batch columns and per-group helpers shared by the drift profile and histogram specs
(private): only the groups a batch has, sums over occupied cells, rows of each group, the
``value`` and ``weight`` columns validated.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from rayeval.core.state import GroupIndex


def present_groups(groups: GroupIndex) -> tuple[GroupIndex, np.ndarray]:
    """``groups`` without the keys that have no row in this batch, and the kept row mask over
    the original codes' domain (so results never depend on which keys a worker listed)."""
    used = np.bincount(groups.codes, minlength=groups.n_groups) > 0
    if used.all():
        return groups, used
    remap = np.cumsum(used) - 1
    keys = tuple(k for k, u in zip(groups.keys, used) if u)
    return GroupIndex(remap[groups.codes], keys), used


def cell_sums(cells: np.ndarray, values: Mapping[str, np.ndarray | None], n_cells: int
              ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-row values summed over the distinct cells the rows fall in.

    Args:
        cells: int64 (n,) cell id of each row, in ``[0, n_cells)``.
        values: name -> float64 (n,) per-row values, or ``None`` for the row count.
        n_cells: size of the cell space (e.g. groups x bins).

    Returns:
        ``(cell, sums)``: int64 (k,) sorted distinct cell ids, and name -> (k,) sums in row order
        (float64; int64 row counts for ``None``).

    A dense ``np.bincount`` over the cell space when it has at most ``max(4 n, 65536)`` cells,
    otherwise one ``np.unique`` (a sort) over the occupied cells, so memory stays bounded by the
    row count; both add in row order and give identical sums.
    """
    if n_cells <= max(4 * cells.size, 1 << 16):
        occupied = np.bincount(cells, minlength=n_cells)
        cell = np.flatnonzero(occupied).astype(np.int64)
        return cell, {k: occupied[cell] if v is None else np.bincount(cells, v, n_cells)[cell]
                      for k, v in values.items()}
    cell, inv = np.unique(cells, return_inverse=True)
    inv = inv.reshape(-1)
    return cell.astype(np.int64), {k: np.bincount(inv, v, cell.size) for k, v in values.items()}


def _groups_of(codes: np.ndarray, n_groups: int) -> list[np.ndarray]:
    """Row indices of each group (one argsort; the loop that uses them runs over groups)."""
    order = np.argsort(codes, kind="stable")
    return np.split(order, np.cumsum(np.bincount(codes, minlength=n_groups))[:-1])


def _numeric_column(batch: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    if "value" not in batch:
        raise ValueError(f"Expected batch column `value`, got columns {sorted(batch)}.")
    try:
        x = np.asarray(batch["value"], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Expected numeric `value` (NaN for missing), got: {exc}") from None
    if x.shape != (n,):
        raise ValueError(f"Expected `value` of shape ({n},), got {x.shape}.")
    return x


def _weights(batch: Mapping[str, np.ndarray], n: int) -> np.ndarray | None:
    """Validated optional ``weight`` column: float64 (n,), finite and >= 0, or ``None``."""
    if batch.get("weight") is None:
        return None
    w = np.asarray(batch["weight"], dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"Expected `weight` of shape ({n},), got {w.shape}.")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("Expected `weight` finite and >= 0, got negative or non-finite weights.")
    return w
