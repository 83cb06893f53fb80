"""Compiled kernels (numba) of the score histograms' hot loops: build per batch, k-way merge with
coarsening on the fly, ranking metrics at finalize.

The histogram format, its bucket keys and the order-independence argument are documented in
:mod:`rayeval.metrics._score_hist`; this module only holds the loops. Every kernel has a plain
numpy reference in ``tests/kernel_reference.py`` that its tests compare against on random
inputs. Values equal the references bit for bit except where a sum of non-integer weights runs
over more than 8 terms: numpy sums those pairwise (``np.add.reduce`` / ``reduceat`` / ``sum``),
the kernels left to right, so such sums may differ in the last bits (counts and integer weights
are exact either way).

Arrays: histogram entries are ``bucket`` int64 keys, ``pos`` / ``neg`` float64 weights and
``rep`` int64, the exact key of the bucket's single distinct score, or -1 when the bucket holds
several distinct scores; a cell's entries are contiguous and ascending in ``bucket``.
"""

from __future__ import annotations

import math

import numpy as np

from rayeval.core._jit import jit, typed_list

MAX_SHIFT = 62
UPPER = 1 << 62
LOW_MASK = (1 << 62) - 1
HALF_BITS = int(np.float64(0.5).view(np.int64))  # bit pattern of 0.5
ROUNDING_PAD = 1e-12


@jit(inline="always")
def _coarse(b, k0, k1):
    """Key ``b`` at shift ``k0`` as a key at shift ``k1 >= k0`` (as ``_score_hist.coarsen``)."""
    if k1 == k0:
        return b
    d = k1 - k0
    if b >= UPPER:
        r = b & LOW_MASK
        return UPPER + ((HALF_BITS >> k1) - (((HALF_BITS >> k0) - r) >> d))
    return b >> d


@jit(inline="always")
def _bit_length(x):
    """``int.bit_length`` of a non-negative int64 (6 halving steps)."""
    n = 0
    for s in (32, 16, 8, 4, 2, 1):
        if x >> s:
            x >>= s
            n += s
    return n + x


@jit
def _fit_cell(b, p, q, r, lo, hi, k, budget, counts):
    """Coarsen the cell ``[lo, hi)`` (at shift ``k``) in place to the smallest shift whose
    occupied-bucket count fits ``budget``, adding equal buckets. Returns ``(new_hi, shift)``.

    The number of buckets left after ``d`` more bits are dropped is ``1 + #{adjacent pairs whose
    keys differ in a bit above d}`` (see ``_score_hist._fit_budget``): one pass counts the
    pairs by the bit length of their difference, the smallest fitting ``d`` follows."""
    n = hi - lo
    if budget <= 0 or n <= budget:
        return hi, k
    counts[:] = 0
    top = HALF_BITS >> k
    for i in range(lo + 1, hi):
        x, y = b[i - 1], b[i]
        if (x >= UPPER) != (y >= UPPER):
            counts[64] += 1
        elif x >= UPPER:
            counts[_bit_length((top - (x & LOW_MASK)) ^ (top - (y & LOW_MASK)))] += 1
        else:
            counts[_bit_length(x ^ y)] += 1
    total, cum, d = n - 1, 0, 0
    while d < 65:
        cum += counts[d]
        if total - cum <= budget - 1:
            break
        d += 1
    k1 = min(k + d, MAX_SHIFT)
    out = lo
    for i in range(lo, hi):
        key = _coarse(b[i], k, k1)
        if out > lo and key == b[out - 1]:
            p[out - 1] += p[i]
            q[out - 1] += q[i]
            if r[out - 1] != r[i]:
                r[out - 1] = -1
        else:
            b[out], p[out], q[out], r[out] = key, p[i], q[i], r[i]
            out += 1
    return out, k1


@jit
def build_histogram(cell, keys, pos_w, neg_w, n_cells, budget):
    """Histogram of one batch's rows, given in ascending key order (stable).

    Args:
        cell: int64 (n,) cell of each row in ``[0, n_cells)``; keys: int64 (n,) exact keys,
        ascending; pos_w, neg_w: float64 (n,); budget: max buckets per cell, <= 0 for none.

    Returns:
        ``(shift, offsets, bucket, pos, neg, rep)``: shift int64 (n_cells,), offsets int64
        (n_cells + 1,) (cell c owns entries ``offsets[c]:offsets[c + 1]``), the rest (nnz,),
        by cell then bucket, equal keys added in key order (a counting sort by cell of the
        rows: stable, linear, reading the rows in order).
    """
    n = cell.size
    start = np.zeros(n_cells + 1, dtype=np.int64)
    for i in range(n):
        start[cell[i] + 1] += 1
    for c in range(n_cells):
        start[c + 1] += start[c]
    fill = start[:-1].copy()
    b = np.empty(n, dtype=np.int64)
    p = np.empty(n, dtype=np.float64)
    q = np.empty(n, dtype=np.float64)
    for i in range(n):
        t = fill[cell[i]]
        fill[cell[i]] = t + 1
        b[t], p[t], q[t] = keys[i], pos_w[i], neg_w[i]
    r = np.empty(n, dtype=np.int64)
    offsets = np.zeros(n_cells + 1, dtype=np.int64)
    shift = np.zeros(n_cells, dtype=np.int64)
    counts = np.zeros(65, dtype=np.int64)
    out = 0
    for c in range(n_cells):
        lo = out
        for t in range(start[c], start[c + 1]):
            if out > lo and b[t] == b[out - 1]:
                p[out - 1] += p[t]
                q[out - 1] += q[t]
            else:
                b[out], p[out], q[out], r[out] = b[t], p[t], q[t], b[t]
                out += 1
        out, shift[c] = _fit_cell(b, p, q, r, lo, out, 0, budget, counts)
        offsets[c + 1] = out
    return shift, offsets, _trim(b, out), _trim(p, out), _trim(q, out), _trim(r, out)


@jit
def merge_histograms(offsets, bucket, pos, neg, rep, maps, shifts, n_cells, budget):
    """Merge histograms (typed lists, one item per input histogram ``h``: ``offsets[h]``
    (n_cells_h + 1,), ``bucket[h]``, ``pos[h]``, ``neg[h]``, ``rep[h]`` (nnz_h,), and
    ``maps[h]`` / ``shifts[h]`` (n_cells_h,): each old cell's new cell and shift).

    Each new cell takes the largest shift of its inputs; its sorted runs (one per input
    histogram, in histogram order) are copied, coarsened, into a small scratch buffer and
    merged k-way there, equal buckets added in histogram order (the order of a stable sort of
    the concatenation); the cell is re-fitted to ``budget`` (<= 0: none) right after.

    Returns:
        ``(shift, offsets, bucket, pos, neg, rep)`` as :func:`build_histogram`.
    """
    n_hists = len(offsets)
    new_shift = np.zeros(n_cells, dtype=np.int64)
    first = np.zeros(n_cells + 1, dtype=np.int64)  # runs (non-empty old cells) per new cell
    nnz = 0
    for h in range(n_hists):
        off, m_h, s_h = offsets[h], maps[h], shifts[h]
        nnz += bucket[h].size
        for c in range(m_h.size):
            new_shift[m_h[c]] = max(new_shift[m_h[c]], s_h[c])
            if off[c + 1] > off[c]:
                first[m_h[c] + 1] += 1
    for c in range(n_cells):
        first[c + 1] += first[c]
    n_runs = first[n_cells]
    run_h = np.empty(n_runs, dtype=np.int64)
    run_lo = np.empty(n_runs, dtype=np.int64)
    run_hi = np.empty(n_runs, dtype=np.int64)
    run_k0 = np.empty(n_runs, dtype=np.int64)
    fill = first[:-1].copy()
    for h in range(n_hists):  # histogram order kept within each new cell
        off, m_h, s_h = offsets[h], maps[h], shifts[h]
        for c in range(m_h.size):
            if off[c + 1] > off[c]:
                j = fill[m_h[c]]
                fill[m_h[c]] = j + 1
                run_h[j], run_lo[j], run_hi[j], run_k0[j] = h, off[c], off[c + 1], s_h[c]
    max_k, max_len = 1, 1
    for c in range(n_cells):
        max_k = max(max_k, first[c + 1] - first[c])
        total = 0
        for j in range(first[c], first[c + 1]):
            total += run_hi[j] - run_lo[j]
        max_len = max(max_len, total)
    sb = np.empty(max_len, dtype=np.int64)  # one cell's runs, coarsened, back to back
    sp = np.empty(max_len, dtype=np.float64)
    sq = np.empty(max_len, dtype=np.float64)
    sr = np.empty(max_len, dtype=np.int64)
    b = np.empty(nnz, dtype=np.int64)
    p = np.empty(nnz, dtype=np.float64)
    q = np.empty(nnz, dtype=np.float64)
    r = np.empty(nnz, dtype=np.int64)
    out_off = np.zeros(n_cells + 1, dtype=np.int64)
    head = np.empty(max_k, dtype=np.int64)
    end = np.empty(max_k, dtype=np.int64)
    counts = np.zeros(65, dtype=np.int64)
    out = 0
    for c in range(n_cells):
        k1 = new_shift[c]
        m = first[c + 1] - first[c]
        t = 0
        for a in range(m):
            j = first[c] + a
            hb, hp, hq, hr = bucket[run_h[j]], pos[run_h[j]], neg[run_h[j]], rep[run_h[j]]
            head[a] = t
            for i in range(run_lo[j], run_hi[j]):
                sb[t], sp[t], sq[t], sr[t] = _coarse(hb[i], run_k0[j], k1), hp[i], hq[i], hr[i]
                t += 1
            end[a] = t
        lo = out
        if m == 1:  # one run: equal neighbours only where coarsening joined buckets
            for i in range(t):
                if out > lo and sb[i] == b[out - 1]:
                    p[out - 1] += sp[i]
                    q[out - 1] += sq[i]
                    if r[out - 1] != sr[i]:
                        r[out - 1] = -1
                else:
                    b[out], p[out], q[out], r[out] = sb[i], sp[i], sq[i], sr[i]
                    out += 1
        while m > 1:
            key = -1
            for a in range(m):
                if head[a] < end[a] and (key < 0 or sb[head[a]] < key):
                    key = sb[head[a]]
            if key < 0:
                break
            new = True
            for a in range(m):
                i = head[a]
                while i < end[a] and sb[i] == key:
                    if new:
                        b[out], p[out], q[out], r[out] = key, sp[i], sq[i], sr[i]
                        out += 1
                        new = False
                    else:
                        p[out - 1] += sp[i]
                        q[out - 1] += sq[i]
                        if r[out - 1] != sr[i]:
                            r[out - 1] = -1
                    i += 1
                head[a] = i
        out, new_shift[c] = _fit_cell(b, p, q, r, lo, out, k1, budget, counts)
        out_off[c + 1] = out
    return new_shift, out_off, _trim(b, out), _trim(p, out), _trim(q, out), _trim(r, out)


@jit(inline="always")
def _trim(a, n):
    """``a[:n]``: a view when it keeps most of ``a`` (no copy, no new pages), else a copy
    (the spare tail is then freed)."""
    if 4 * n >= 3 * a.size:
        return a[:n]
    return a[:n].copy()


@jit
def ranking(pos, neg, single, indptr, exact):
    """ROC AUC and average precision of every cell (formulas, bounds: ``_score_math``).

    Args:
        pos, neg: float64 (nnz,) bucket weights, cells contiguous, buckets ascending.
        single: bool (nnz,), buckets holding one distinct score (exact: no bound term);
        indptr: int64 (n_cells + 1,); exact: bool (n_cells,), cells counted exact as a whole.

    Returns:
        float64 (6, n_cells): roc_auc, roc_bound, pr_auc, pr_bound, positive and negative
        weight (ROC NaN-free only where both weights are > 0, PR where the positive is).
    """
    n_cells = indptr.size - 1
    out = np.zeros((6, n_cells), dtype=np.float64)
    for c in range(n_cells):
        lo, hi = indptr[c], indptr[c + 1]
        p_tot, n_tot = 0.0, 0.0
        for i in range(lo, hi):
            p_tot += pos[i]
            n_tot += neg[i]
        out[4, c], out[5, c] = p_tot, n_tot
        cum, auc, ties, multi = 0.0, 0.0, 0.0, False
        cell_exact = exact[c]
        for i in range(lo, hi):
            cum += neg[i]  # below = cum - neg[i], as numpy's cumsum(neg) - neg
            auc += pos[i] * ((cum - neg[i]) + 0.5 * neg[i])
            if not (cell_exact or single[i]):
                ties += pos[i] * neg[i]
                multi = True
        denom = p_tot * n_tot
        if denom > 0:
            out[0, c] = auc / denom
            out[1, c] = 0.5 * ties / denom + ROUNDING_PAD if multi else 0.0
        tp, fp, lo_sum, hi_sum, bucketed = 0.0, 0.0, 0.0, 0.0, False
        for i in range(hi - 1, lo - 1, -1):  # from the highest score down
            p, q = pos[i], neg[i]
            tp += p
            fp += q
            if p <= 0:
                continue
            if cell_exact or single[i]:
                step = p * tp / (tp + fp)
                lo_sum += step
                hi_sum += step
                continue
            bucketed = True
            hi_sum += p * tp / (tp + (fp - q))
            a = tp - p + fp
            if fp > 0:
                lo_sum += p - fp * math.log1p(p / a if a > 0 else 0.0)
            else:
                lo_sum += p
        if p_tot > 0:
            if bucketed:
                out[2, c] = 0.5 * (lo_sum + hi_sum) / p_tot
                out[3, c] = 0.5 * (hi_sum - lo_sum) / p_tot + ROUNDING_PAD
            else:
                out[2, c] = lo_sum / p_tot
    return out


EPS = float(np.finfo(np.float64).eps)


@jit
def binary_row_terms(p, y, w, padded_edges, n_bins):
    """Per-row terms of the binary score metrics (as ``_score_math`` with numpy).

    Args:
        p: float64 (n,) scores in [0, 1]; y: bool (n,) positive; w: float64 (n,) weights;
        padded_edges: float64 (n_bins + 1,), the interior bin edges between -inf and inf.

    Returns:
        ``(bins, log_loss, brier, wp, wy)``: calibration bin (int64, as
        ``calibration_bin_ids``), ``w * -log(clip(q, eps, 1 - eps))`` with ``q`` the score of
        the true class, ``w * (p - y)**2``, ``w * p`` and ``w * y``.
    """
    n = p.size
    bins = np.empty(n, dtype=np.int64)
    log_loss = np.empty(n, dtype=np.float64)
    brier = np.empty(n, dtype=np.float64)
    wp = np.empty(n, dtype=np.float64)
    wy = np.empty(n, dtype=np.float64)
    for i in range(n):
        s, wi, pos = p[i], w[i], y[i]
        b = min(int(s * n_bins), n_bins - 1)
        bins[i] = b - (1 if padded_edges[b] >= s else 0) + (1 if padded_edges[b + 1] < s else 0)
        q = min(max(s if pos else 1.0 - s, EPS), 1.0 - EPS)
        log_loss[i] = wi * -math.log(q)
        d = s - (1.0 if pos else 0.0)
        brier[i] = wi * (d * d)
        wp[i] = wi * s
        wy[i] = wi if pos else 0.0
    return bins, log_loss, brier, wp, wy


@jit
def binary_group_sums(codes, y, w, log_loss, brier, bins, wp, wy, n_groups, n_bins):
    """Per-group sums of the binary score terms in one pass over the rows (row order, as
    ``np.bincount``: bit for bit).

    Returns:
        ``(n_rows, n_pos, w, log_loss, brier, cal)``: int64 (G,) counts, float64 (G,) sums
        and cal float64 (G, 3, n_bins): weight, weighted score, weighted label per bin.
    """
    n_rows = np.zeros(n_groups, dtype=np.int64)
    n_pos = np.zeros(n_groups, dtype=np.int64)
    sw = np.zeros(n_groups, dtype=np.float64)
    sll = np.zeros(n_groups, dtype=np.float64)
    sbr = np.zeros(n_groups, dtype=np.float64)
    cal = np.zeros((n_groups, 3, n_bins), dtype=np.float64)
    for i in range(codes.size):
        c, b = codes[i], bins[i]
        n_rows[c] += 1
        if y[i]:
            n_pos[c] += 1
        sw[c] += w[i]
        sll[c] += log_loss[i]
        sbr[c] += brier[i]
        cal[c, 0, b] += w[i]
        cal[c, 1, b] += wp[i]
        cal[c, 2, b] += wy[i]
    return n_rows, n_pos, sw, sll, sbr, cal


def warm_up() -> None:
    """Load (or compile, on a cold cache) every kernel by calling it on a tiny input, so a
    worker pays that cost at start-up rather than inside its first batch."""
    z = np.zeros(1, dtype=np.int64)
    one = np.ones(1)
    shift, off, b, p, q, r = build_histogram(z, z, one, one, 1, 2)
    merge_histograms(*(typed_list([x]) for x in (off, b, p, q, r, z, shift)), 1, 2)
    ranking(p, q, r >= 0, off, np.zeros(1, dtype=bool))
    flag = np.ones(1, dtype=bool)
    bins, ll, br, wp, wy = binary_row_terms(one, flag, one, np.array([-np.inf, np.inf]), 1)
    binary_group_sums(z, flag, one, ll, br, bins, wp, wy, 1, 1)
