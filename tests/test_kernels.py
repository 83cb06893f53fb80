"""The compiled kernels (:mod:`rayeval.core.kernels`) against their plain numpy references
(``tests/kernel_reference.py``) on random inputs; the tied-score PR AUC fix against
scikit-learn; the kernels import without a writable cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from rayeval.core import kernels
from rayeval.metrics import _score_hist as sh
from rayeval.metrics.scores import BinaryScoreSpec
from tests import kernel_reference as ref

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _scores(rng, n, kind):
    if kind == "uniform":
        return rng.random(n)
    if kind == "ties":
        return rng.integers(0, 5, n) / 4.0
    if kind == "near":  # distinct scores sharing all but the lowest bits
        return 0.3 + rng.integers(0, 50, n) * 2.0 ** -50
    return np.where(rng.random(n) < 0.3, 1.0, rng.random(n) ** 8)  # a block at 1.0, mass near 0


def _rows(seed, n, n_cells, kind, integer_weights):
    rng = np.random.default_rng(seed)
    s = _scores(rng, n, kind)
    cell = rng.integers(0, n_cells, n).astype(np.int64)
    y = rng.random(n) < 0.4
    w = np.ones(n) if integer_weights else rng.exponential(size=n) + 0.01
    return cell, sh.exact_keys(s), np.where(y, w, 0.0), np.where(y, 0.0, w)


def _check_equal(got, want, integer_weights):
    shift, cell, bucket, pos, neg, rep = want
    assert np.array_equal(got.shift, shift) and np.array_equal(got.cell, cell)
    assert np.array_equal(got.bucket, bucket) and np.array_equal(got.rep, rep)
    if integer_weights:  # sums of integers are exact in any order: bit for bit
        assert np.array_equal(got.pos, pos) and np.array_equal(got.neg, neg)
    else:  # numpy's reduceat sums runs > 8 terms pairwise, the kernels left to right
        np.testing.assert_allclose(got.pos, pos, rtol=1e-13, atol=0)
        np.testing.assert_allclose(got.neg, neg, rtol=1e-13, atol=0)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 600), n_cells=st.integers(1, 7),
       kind=st.sampled_from(["uniform", "ties", "near", "block"]),
       budget=st.sampled_from([None, 2, 3, 17, 64]), integer_weights=st.booleans())
def test_build_equals_reference(seed, n, n_cells, kind, budget, integer_weights):
    cell, keys, pw, nw = _rows(seed, n, n_cells, kind, integer_weights)
    got = sh.from_rows(cell, keys, pw, nw, n_cells, budget)
    want = ref.build(cell, keys, pw, nw, n_cells, budget)
    _check_equal(got, want, integer_weights)
    assert np.array_equal(got.rep, ref.rep_of(cell, keys, got.shift, got.cell, got.bucket))


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n_parts=st.integers(1, 9), n_cells=st.integers(1, 6),
       kind=st.sampled_from(["uniform", "ties", "near", "block"]),
       budget=st.sampled_from([None, 2, 5, 40]), integer_weights=st.booleans())
def test_merge_equals_reference_and_one_build(seed, n_parts, n_cells, kind, budget,
                                              integer_weights):
    rng = np.random.default_rng(seed)
    cell, keys, pw, nw = _rows(seed, int(rng.integers(0, 800)), n_cells, kind, integer_weights)
    split = np.sort(rng.integers(0, cell.size + 1, n_parts - 1))
    hists, maps = [], []
    for part in np.split(np.arange(cell.size), split):
        present = np.unique(cell[part])  # each part's own cells, mapped into the union
        local = np.searchsorted(present, cell[part])
        hists.append(sh.from_rows(local, keys[part], pw[part], nw[part], present.size, budget))
        maps.append(present)
    got = sh.combine(hists, maps, n_cells, budget)
    _check_equal(got, ref.merge(hists, maps, n_cells, budget), integer_weights)
    whole = sh.from_rows(cell, keys, pw, nw, n_cells, budget)  # order independence
    _check_equal(got, (whole.shift, whole.cell, whole.bucket, whole.pos, whole.neg, whole.rep),
                 integer_weights)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n_cells=st.integers(1, 30))
def test_ranking_equals_reference(seed, n_cells):
    rng = np.random.default_rng(seed)
    lens = rng.choice([0, 1, 2, 3, 9, 70], n_cells)
    indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    nnz = int(indptr[-1])
    pos = rng.exponential(size=nnz) * (rng.random(nnz) < 0.6)
    neg = rng.integers(0, 4, nnz).astype(float) * (rng.random(nnz) < 0.7)
    exact = rng.random(n_cells) < 0.3
    single = rng.random(nnz) < 0.5
    got = kernels.ranking(pos, neg, single, indptr, exact)
    # per-cell sums run left to right in the kernel, pairwise in numpy: last bits only
    np.testing.assert_allclose(got, ref.ranking(pos, neg, indptr, exact, single),
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("tie_at", [1.0, 0.0])
def test_pr_auc_with_a_block_of_tied_scores_in_a_large_slice(tie_at):
    # More distinct scores than the budget, 1% of rows tied at one score: the tied block's
    # bucket holds one distinct value, so it is exact (ties as scikit-learn) and adds no bound.
    rng = np.random.default_rng(3)
    n = 400_000
    s = rng.beta(2, 5, n)
    y = (rng.random(n) < s).astype(int)
    tied = rng.random(n) < 0.01
    s[tied] = tie_at
    spec = BinaryScoreSpec()
    state = spec.accumulate(spec.zero(), {"label": y, "score": s},
                            _one_group(n))
    assert state.hist.shift[0] > 0  # coarsened
    res = {r.metric: r for r in spec.finalize(state)}
    roc, ap = res["roc_auc"], res["pr_auc"]
    assert 0 < roc.error_bound <= 1e-4 and 0 < ap.error_bound <= 1e-4
    assert abs(roc.value - roc_auc_score(y, s)) <= roc.error_bound
    assert abs(ap.value - average_precision_score(y, s)) <= ap.error_bound


def _one_group(n):
    from rayeval.metrics.base import GroupIndex
    return GroupIndex(codes=np.zeros(n, dtype=np.int64), keys=((),))


def _run_as_other_user(code: str, env: dict) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter; as root, as user nobody (root writes through
    read-only modes)."""
    cmd = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("tmp_writable", [True, False])
def test_kernels_import_from_a_read_only_package(tmp_writable):
    # The package in a directory its user cannot write, no home directory, no
    # NUMBA_CACHE_DIR: the kernels cache under the temp directory, or (temp read-only too)
    # compile without a cache; they import and compute either way.
    root = Path(tempfile.mkdtemp(prefix="rayeval-ro-"))
    try:
        shutil.copytree(Path(__file__).resolve().parents[1] / "rayeval", root / "pkg" / "rayeval",
                        ignore=shutil.ignore_patterns("__pycache__"))
        tmp = root / "tmp"
        tmp.mkdir()
        os.chmod(tmp, 0o777 if tmp_writable else 0o555)
        for d in [root, *root.rglob("*")]:
            if d.is_dir() and d != tmp:
                os.chmod(d, 0o755)
        env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "HOME")}
        env.update(PYTHONPATH=str(root / "pkg"), TMPDIR=str(tmp), HOME="/nonexistent")
        code = ("import numpy as np; from rayeval.core import kernels as k; "
                "print(k.ranking(np.ones(2), np.ones(2), np.zeros(2, bool), np.array([0, 2]), "
                "np.zeros(1, bool))[0, 0])")
        out = _run_as_other_user(code, env)
        assert out.returncode == 0, out.stderr[-3000:]
        assert float(out.stdout.strip()) == 0.5
        assert not list((root / "pkg").rglob("*.nbi"))  # nothing written into the package
        assert bool(list(tmp.rglob("*.nbi"))) == tmp_writable
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_same_code_at_a_new_path_reuses_the_compiled_kernels(tmp_path):
    # A fresh Ray working_dir extraction is the same code at a new path: the cache is keyed by
    # the kernel file's content, so the second copy loads what the first compiled.
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items()} | {"NUMBA_CACHE_DIR": str(cache)}
    code = "from rayeval.core import kernels as k; k.warm_up()"
    listings = []
    for name in ("a", "b"):
        shutil.copytree(Path(__file__).resolve().parents[1] / "rayeval",
                        tmp_path / name / "rayeval", ignore=shutil.ignore_patterns("__pycache__"))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env | {"PYTHONPATH": str(tmp_path / name)}, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        listings.append(sorted((p.name, p.stat().st_mtime_ns) for p in cache.rglob("*")))
    assert listings[0] and listings[0] == listings[1]


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 500), n_groups=st.integers(1, 9),
       n_bins=st.integers(1, 25), kind=st.sampled_from(["uniform", "ties", "block"]))
def test_binary_row_terms_and_group_sums_equal_numpy(seed, n, n_groups, n_bins, kind):
    rng = np.random.default_rng(seed)
    p = _scores(rng, n, kind)
    p[rng.random(n) < 0.05] = np.linspace(0, 1, n_bins + 1)[rng.integers(0, n_bins + 1)]  # edges
    y = rng.random(n) < 0.4
    w = rng.exponential(size=n) * (rng.random(n) > 0.1)
    from rayeval.metrics import _score_math as sm
    got = kernels.binary_row_terms(p, y, w, sm.padded_bin_edges(n_bins), n_bins)
    want = ref.binary_row_terms(p, y, w, n_bins)
    for g_, w_ in zip(got, want):  # libm's log in both here: bit for bit
        assert np.array_equal(g_, w_)
    codes = rng.integers(0, n_groups, n).astype(np.int64)
    got = kernels.binary_group_sums(codes, y, w, *want[1:3], want[0], *want[3:], n_groups, n_bins)
    want = ref.binary_group_sums(codes, y, w, *want[1:3], want[0], *want[3:], n_groups, n_bins)
    for g_, w_ in zip(got, want):  # row order, as bincount: bit for bit
        assert np.array_equal(g_, w_)
        assert g_.dtype == w_.dtype or n == 0  # bincount of no weights is int64, ours float
