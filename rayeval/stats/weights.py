"""Poisson(1) bootstrap replicate weights from a fixed 64-bit hash (pure numpy).

The weight of a row in replicate ``b`` is a Poisson(1) draw that depends only on the row's
*unit* (a 64-bit hash of its unit value, e.g. the prediction id) and on ``b``: never on the
batch, worker, partitioning or run. Rows of one unit share their weights (a cluster bootstrap),
and two models' rows of the same prediction id get the same weights, which is what makes the
replicate differences of two models a *paired* bootstrap.

Mixing: ``z_j = fmix64(splitmix64(unit) + (j + 1) * golden)`` (the MurmurHash3 64-bit
finaliser over a Weyl sequence, as SplitMix64, Steele et al. OOPSLA 2014); each 64-bit ``z_j``
(read as two little-endian uint32 halves) serves replicates ``2j`` and ``2j + 1``. The weight is
the inverse CDF of Poisson(1) on the 32-bit uniform ``u / 2**32``: ``w = #{k : u >= T_k}`` with
``T_k = floor(P(X <= k) * 2**32)``, k = 0..11 (the tail beyond 12, probability 1e-10, is cut).
"""

from __future__ import annotations

import math

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S1 = np.uint64(0xBF58476D1CE4E5B9)
_S2 = np.uint64(0x94D049BB133111EB)


def _poisson_thresholds(max_k: int = 11) -> np.ndarray:
    cdf, term = [], math.exp(-1.0)
    total = 0.0
    for k in range(max_k + 1):
        total += term
        term /= (k + 1)
        cdf.append(total)
    return np.array([min(int(c * 2.0 ** 32), 2 ** 32 - 1) for c in cdf], dtype=np.uint32)


#: ``T_k``: a uniform 32-bit u gives weight ``#{k: u >= T_k}``
THRESHOLDS = _poisson_thresholds()


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 output function of uint64 array ``x`` (shape kept, new array)."""
    z = np.asarray(x, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _S1
    z = (z ^ (z >> np.uint64(27))) * _S2
    return z ^ (z >> np.uint64(31))


def _fmix64(z: np.ndarray) -> np.ndarray:
    z ^= z >> np.uint64(33)
    z *= _M1
    z ^= z >> np.uint64(33)
    z *= _M2
    z ^= z >> np.uint64(33)
    return z


def poisson_weights(unit_hash: np.ndarray, replicates: int, chunk: int = 1024) -> np.ndarray:
    """Poisson(1) weight of every row in every replicate.

    Args:
        unit_hash: uint64 (n,): a fixed 64-bit hash of each row's unit value (equal units,
            equal hashes; e.g. ``pandas.util.hash_array`` of the unit column, which uses a
            fixed key, never Python's salted ``hash()``).
        replicates: B >= 1.
        chunk: rows hashed at a time (keeps the temporaries in cache).

    Returns:
        uint8 (n, B): weight of row i in replicate b; identical for the same unit whatever
        the batch or process.

    Raises:
        ValueError: ``replicates < 1`` or ``unit_hash`` not 1-d.
    """
    if replicates < 1:
        raise ValueError(f"Expected `replicates` >= 1, got {replicates}.")
    h = np.asarray(unit_hash)
    if h.ndim != 1:
        raise ValueError(f"Expected `unit_hash` of shape (n,), got shape {h.shape}.")
    h = splitmix64(h.astype(np.uint64, copy=False))
    pairs = (replicates + 1) // 2
    steps = (np.arange(1, pairs + 1, dtype=np.uint64) * _GOLDEN)[None, :]
    out = np.empty((h.size, replicates), dtype=np.uint8)
    with np.errstate(over="ignore"):
        for lo in range(0, h.size, chunk):
            z = _fmix64(h[lo:lo + chunk, None] + steps).astype("<u8", copy=False)
            u = z.view("<u4")[:, :replicates]  # (rows, 2 * pairs) halves: low then high
            w = np.zeros(u.shape, dtype=np.uint8)
            for t in THRESHOLDS:
                w += u >= t
            out[lo:lo + chunk] = w
    return out


def replicate_matrix(unit_hash: np.ndarray, replicates: int,
                     weight: np.ndarray | None = None, dtype=np.float64) -> np.ndarray:
    """The (n, B + 1) weight matrix the replicate states are built with: columns ``0..B-1``
    are the Poisson(1) replicate weights times the row weight, column ``B`` is the row weight
    itself (the full sample on the replicates' own grid, the centre of the interval).

    Args:
        unit_hash: uint64 (n,), see :func:`poisson_weights`.
        replicates: B.
        weight: optional float (n,) sample weights (None: 1).
        dtype: float dtype of the result.
    """
    w = poisson_weights(unit_hash, replicates)
    out = np.empty((w.shape[0], replicates + 1), dtype=dtype)
    out[:, :replicates] = w
    out[:, replicates] = 1.0
    if weight is not None:
        out *= np.asarray(weight, dtype=dtype)[:, None]
    return out
