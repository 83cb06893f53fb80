"""Shared mergeability harness (after torcheval's metric_class_tester).

Every state family registers one or more cases in its test module and calls
:func:`check_mergeable`; the harness proves, for that spec and data:

- zero is a two-sided identity of merge;
- merge leaves its inputs untouched;
- a pickle round trip preserves the state;
- finalize(merge of any split, in any order and tree shape) == finalize(accumulate(all rows)),
  so results do not depend on partitioning, batch size, row order or worker count.

Approximate families whose state depends on the split pass ``use_error_bound=True``: values
then must agree within the sum of the two reported error bounds instead of ``rtol``.
"""

from __future__ import annotations

import math
import pickle
from typing import Callable, Mapping

import numpy as np

from rayeval.metrics.base import GroupIndex, MetricResult


def take(batch: Mapping[str, np.ndarray], idx: np.ndarray) -> dict:
    return {k: np.asarray(v)[idx] for k, v in batch.items()}


def sub_groups(groups: GroupIndex, idx: np.ndarray) -> GroupIndex:
    """Local factorisation of a subset of rows, as a worker would build it."""
    sub = groups.codes[idx]
    uniq, inv = np.unique(sub, return_inverse=True)
    return GroupIndex(inv.astype(np.int64), tuple(groups.keys[u] for u in uniq))


def as_table(results: list[MetricResult]) -> dict:
    out = {}
    for r in results:
        k = (r.key, r.metric, r.class_label, r.average)
        assert k not in out, f"duplicate result {k}"
        out[k] = r
    return out


def assert_results_equal(a: list[MetricResult], b: list[MetricResult], rtol: float = 1e-9,
                         atol: float = 1e-12, use_error_bound: bool = False) -> None:
    ta, tb = as_table(a), as_table(b)
    assert set(ta) == set(tb), f"result sets differ: {set(ta) ^ set(tb)}"
    for k, ra in ta.items():
        rb = tb[k]
        assert ra.undefined_reason == rb.undefined_reason, (k, ra, rb)
        va, vb = ra.value, rb.value
        if math.isnan(va) or math.isnan(vb):
            assert math.isnan(va) and math.isnan(vb), (k, va, vb)
            continue
        if use_error_bound:
            tol = ra.error_bound + rb.error_bound + atol + rtol * abs(vb)
        else:
            tol = atol + rtol * abs(vb)
        assert abs(va - vb) <= tol, f"{k}: {va} != {vb} (tol {tol})"


def _split_points(rng: np.random.Generator, n: int, parts: int) -> list[np.ndarray]:
    perm = rng.permutation(n)
    cuts = np.sort(rng.integers(0, n + 1, size=parts - 1)) if n else np.zeros(parts - 1, int)
    return np.split(perm, cuts)


def check_mergeable(spec, batch: Mapping[str, np.ndarray], groups: GroupIndex, *,
                    seed: int = 0, n_splits: int = 3, rtol: float = 1e-9, atol: float = 1e-12,
                    use_error_bound: bool = False,
                    state_equal: Callable | None = None) -> list[MetricResult]:
    """Run the whole gauntlet on one spec and one batch; returns finalize(all rows)."""
    rng = np.random.default_rng(seed)
    n = groups.n_rows
    whole = spec.accumulate(spec.zero(), batch, groups)
    expected = spec.finalize(whole)

    # zero is a two-sided identity
    z = spec.zero()
    assert_results_equal(spec.finalize(spec.merge(z, whole)), expected, rtol, atol)
    assert_results_equal(spec.finalize(spec.merge(whole, z)), expected, rtol, atol)
    assert spec.finalize(z) == [] or all(
        r.undefined_reason for r in spec.finalize(z)
    ), "zero state must finalize to nothing (or undefined only)"

    # pickle round trip
    assert_results_equal(spec.finalize(pickle.loads(pickle.dumps(whole))), expected, rtol, atol)

    for split in range(n_splits):
        parts = _split_points(rng, n, int(rng.integers(2, 6)))
        states = []
        for idx in parts:
            idx = np.sort(idx) if split % 2 else idx  # shuffled and ordered row orders
            # accumulate a part in one or two batches into one state
            if len(idx) > 1 and rng.random() < 0.5:
                h = len(idx) // 2
                s = spec.accumulate(spec.zero(), take(batch, idx[:h]), sub_groups(groups, idx[:h]))
                s = spec.accumulate(s, take(batch, idx[h:]), sub_groups(groups, idx[h:]))
            else:
                s = spec.accumulate(spec.zero(), take(batch, idx), sub_groups(groups, idx))
            states.append(s)
        snapshots = [pickle.dumps(s) for s in states]
        order = rng.permutation(len(states))
        if split == 0:  # left fold
            merged = spec.zero()
            for i in order:
                merged = spec.merge(merged, states[i])
        else:  # tree merge
            level = [states[i] for i in order]
            while len(level) > 1:
                nxt = [spec.merge(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
                if len(level) % 2:
                    nxt.append(level[-1])
                level = nxt
            merged = level[0]
        # inputs untouched
        for s, snap in zip(states, snapshots):
            assert_results_equal(spec.finalize(s), spec.finalize(pickle.loads(snap)), 0, 0)
            if state_equal is not None:
                assert state_equal(s, pickle.loads(snap))
        assert_results_equal(spec.finalize(merged), expected, rtol, atol, use_error_bound)
    return expected
