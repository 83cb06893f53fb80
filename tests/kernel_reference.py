"""Plain numpy references of the compiled kernels (:mod:`rayeval.core.kernels`): written for
obviousness, not speed (definitional budget fit: try every shift; a stable lexsort for order)."""

from __future__ import annotations

import numpy as np

from rayeval.metrics import _score_hist as sh
from rayeval.metrics import _score_math as sm


def _reduce(cell, bucket, pos, neg, rep):
    """Add equal (cell, bucket) runs of sorted arrays; a run's rep survives only if shared."""
    if cell.size == 0:
        return cell, bucket, pos, neg, rep
    start = np.ones(cell.size, dtype=bool)
    start[1:] = (cell[1:] != cell[:-1]) | (bucket[1:] != bucket[:-1])
    idx = np.flatnonzero(start)
    same_rep = np.minimum.reduceat(rep, idx) == np.maximum.reduceat(rep, idx)
    return (cell[idx], bucket[idx], np.add.reduceat(pos, idx), np.add.reduceat(neg, idx),
            np.where(same_rep, rep[idx], -1))


def _fit(shift, cell, bucket, pos, neg, rep, budget):
    """Every cell over budget at the smallest shift (>= its own) whose bucket count fits."""
    if budget is None:
        return shift, cell, bucket, pos, neg, rep
    shift = shift.copy()
    bucket = bucket.copy()
    for c in np.unique(cell):
        at = cell == c
        k0 = int(shift[c])
        k = k0
        while np.unique(sh.coarsen(bucket[at], k0, k)).size > budget:
            k += 1
        shift[c] = k
        bucket[at] = sh.coarsen(bucket[at], k0, k)
    return (shift, *_reduce(cell, bucket, pos, neg, rep))


def build(cell, keys, pos_w, neg_w, n_cells, budget):
    """``(shift, cell, bucket, pos, neg, rep)`` of rows, as ``kernels.build_histogram``."""
    order = np.lexsort((keys, cell))
    parts = _reduce(cell[order].astype(np.int64), keys[order], pos_w[order], neg_w[order],
                    keys[order])
    return _fit(np.zeros(n_cells, dtype=np.int64), *parts, budget)


def merge(hists, maps, n_cells, budget):
    """``(shift, cell, bucket, pos, neg, rep)`` of merged :class:`ScoreHistogram` s, as
    ``kernels.merge_histograms``: coarsen to the largest shift, concatenate, stable sort."""
    shift = np.zeros(n_cells, dtype=np.int64)
    for h, m in zip(hists, maps):
        np.maximum.at(shift, m, h.shift)
    cell = np.concatenate([m[h.cell] for h, m in zip(hists, maps)]).astype(np.int64)
    bucket = np.concatenate([sh.coarsen(h.bucket, h.shift[h.cell], shift[m[h.cell]])
                             for h, m in zip(hists, maps)])
    pos, neg, rep = (np.concatenate([getattr(h, f) for h in hists]) for f in ("pos", "neg", "rep"))
    order = np.lexsort((bucket, cell))
    parts = _reduce(cell[order], bucket[order], pos[order], neg[order], rep[order])
    return _fit(shift, *parts, budget)


def rep_of(cell, keys, shift, out_cell, out_bucket):
    """The rep of every output bucket from the rows themselves: the exact key when all rows of
    the bucket share it, else -1."""
    b = sh.coarsen(keys, 0, shift[cell])
    out = []
    for c, bk in zip(out_cell.tolist(), out_bucket.tolist()):
        distinct = np.unique(keys[(cell == c) & (b == bk)])
        out.append(int(distinct[0]) if distinct.size == 1 else -1)
    return np.array(out, dtype=np.int64)


def ranking(pos, neg, indptr, exact, single):
    """float64 (6, n_cells) as ``kernels.ranking``, one cell at a time with numpy."""
    n_cells = indptr.size - 1
    out = np.zeros((6, n_cells))
    for c in range(n_cells):
        p, q = pos[indptr[c]:indptr[c + 1]], neg[indptr[c]:indptr[c + 1]]
        ex = exact[c] | single[indptr[c]:indptr[c + 1]]
        p_tot, n_tot = p.sum(), q.sum()
        out[4, c], out[5, c] = p_tot, n_tot
        if p_tot * n_tot > 0:
            below = np.cumsum(q) - q
            out[0, c] = np.sum(p * (below + 0.5 * q)) / (p_tot * n_tot)
            if not ex.all():
                out[1, c] = 0.5 * np.sum((p * q)[~ex]) / (p_tot * n_tot) + sm.ROUNDING_PAD
        if p_tot > 0:
            pr, qr, exr = p[::-1], q[::-1], ex[::-1]
            tp, fp = np.cumsum(pr), np.cumsum(qr)
            has = pr > 0
            step = np.where(has, pr * tp / np.where(has, tp + fp, 1.0), 0.0)
            upper = np.where(has, pr * tp / np.where(has, tp + fp - qr, 1.0), 0.0)
            a = tp - pr + fp
            lower = np.where(fp > 0, pr - fp * np.log1p(np.divide(pr, a, out=np.zeros_like(a),
                                                                  where=a > 0)), pr)
            lo = np.where(exr, step, np.where(has, lower, 0.0)).sum()
            hi = np.where(exr, step, upper).sum()
            if (has & ~exr).any():
                out[2, c] = 0.5 * (lo + hi) / p_tot
                out[3, c] = 0.5 * (hi - lo) / p_tot + sm.ROUNDING_PAD
            else:
                out[2, c] = step.sum() / p_tot
    return out



def binary_row_terms(p, y, w, n_bins):
    """``(bins, log_loss, brier, wp, wy)`` as ``kernels.binary_row_terms``, with numpy."""
    return (sm.calibration_bin_ids(p, n_bins), w * sm.binary_log_loss_terms(y, p),
            w * (p - y) ** 2, w * p, np.where(y, w, 0.0))


def binary_group_sums(codes, y, w, log_loss, brier, bins, wp, wy, g, n_bins):
    """As ``kernels.binary_group_sums``, one ``np.bincount`` per sum."""
    from rayeval.core.state import grouped_sum
    return (grouped_sum(codes, g), grouped_sum(codes[y], g), grouped_sum(codes, g, w),
            grouped_sum(codes, g, log_loss), grouped_sum(codes, g, brier),
            np.stack([grouped_sum(codes, g, v, n_bins, bins) for v in (w, wp, wy)], axis=1))
