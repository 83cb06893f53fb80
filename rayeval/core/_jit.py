"""numba set-up for the compiled kernels: a cache that works wherever the package runs.

``numba.njit(cache=True)`` needs a writable cache location when a kernel is *defined* (at
import): numba tries ``NUMBA_CACHE_DIR``, then ``__pycache__`` next to the source, then the
user-wide cache (``~/.cache``), and raises ``RuntimeError: cannot cache function ...: no locator
available`` when none is writable (a read-only site-packages and no home directory, as in some
containers). :func:`jit` then points numba at a per-user directory under the system temp
directory, and compiles without a cache if even that is not writable: the kernels always
import, at worst recompiling in each process (~6 s CPU).

Ray workers get a node-local ``NUMBA_CACHE_DIR`` from the engine (:func:`node_cache_dir`), so
every worker process of a node shares one cache: compiled once per node and package path, not
once per process or job (numba keys the cache by the source file's path and modification time,
so an installed package is compiled once; a fresh Ray ``working_dir`` extraction is a new path
and compiles again).
"""

from __future__ import annotations

import os
import tempfile

import numba
from numba.core import config as _config

CACHE_ENV = "NUMBA_CACHE_DIR"


def node_cache_dir() -> str:
    """A node-local numba cache directory for this user: ``<tmp>/rayeval-numba-<uid>``
    (``<tmp>`` is the system temp directory; created on first use)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return os.path.join(tempfile.gettempdir(), f"rayeval-numba-{uid}")


def _writable_dir(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".probe-")
        probe.close()
        return True
    except OSError:
        return False


def _use_fallback_cache() -> bool:
    """Point numba at :func:`node_cache_dir`; False when it is not writable either."""
    path = node_cache_dir()
    if not _writable_dir(path):
        return False
    _config.CACHE_DIR = path
    return True


def jit(fn=None, **options):
    """``numba.njit(cache=True, nogil=True, **options)`` that never fails for want of a cache
    directory (see the module docstring): fallback to a temp-dir cache, then no cache."""
    if fn is None:
        return lambda f: jit(f, **options)
    if _config.CACHE_DIR and not _writable_dir(_config.CACHE_DIR):
        _use_fallback_cache() or setattr(_config, "CACHE_DIR", "")
    try:
        return numba.njit(cache=True, nogil=True, **options)(fn)
    except RuntimeError as exc:  # "cannot cache function ...: no locator available"
        if "cache" not in str(exc):
            raise
    if _use_fallback_cache():
        try:
            return numba.njit(cache=True, nogil=True, **options)(fn)
        except RuntimeError:
            pass
    return numba.njit(cache=False, nogil=True, **options)(fn)
