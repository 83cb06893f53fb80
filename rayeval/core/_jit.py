"""numba set-up for the compiled kernels: a cache that works wherever the package runs.

``numba.njit(cache=True)`` needs a writable cache location when a kernel is *defined* (at
import) and, by default, keys the cache by the source file's directory: the same package at a
new path (every fresh Ray ``working_dir`` extraction) compiles again (~6 s CPU), and a
read-only package directory without a writable ``NUMBA_CACHE_DIR`` or ``~/.cache`` fails to
import (``RuntimeError: cannot cache function ...: no locator available``).

Here the kernels of this package (files in ``rayeval/core``) are cached under
``NUMBA_CACHE_DIR`` when it is set and writable, else under a node-local per-user directory in
the system temp directory (:func:`node_cache_dir`), in a subdirectory named by the SHA-256 of
the kernel file's content: every process of a node, every job and every extraction of the same
code shares one compiled copy. When that is not writable numba's own locators are tried
(``__pycache__``, ``~/.cache``), and when none is, :func:`jit` compiles without a cache: the
kernels always import, at worst compiling in each process. Ray workers get
``NUMBA_CACHE_DIR`` from the engine's runtime environment.
"""

from __future__ import annotations

import hashlib
import os
import tempfile

import numba
import numpy as np
import numba.typed
from numba.core import caching
from numba.core import config as _config

CACHE_ENV = "NUMBA_CACHE_DIR"
_HERE = os.path.dirname(os.path.abspath(__file__))


def node_cache_dir() -> str:
    """A node-local numba cache directory for this user: ``<tmp>/rayeval-numba-<uid>``
    (``<tmp>``: the system temp directory)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return os.path.join(tempfile.gettempdir(), f"rayeval-numba-{uid}")


class ContentKeyedLocator(caching.UserProvidedCacheLocator):
    """numba cache locator for this package's kernel files: ``<root>/rayeval-<sha256 of the
    file>``, ``<root>`` = ``NUMBA_CACHE_DIR`` if set and writable, else :func:`node_cache_dir`.
    Declines (numba then tries its own locators) for other files or when not writable."""

    def __init__(self, py_func, py_file, root: str):
        super().__init__(py_func, py_file)
        with open(py_file, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:24]
        self._cache_path = os.path.join(root, f"rayeval-{digest}")

    @classmethod
    def from_function(cls, py_func, py_file):
        if os.path.dirname(os.path.abspath(py_file)) != _HERE:
            return None
        for root in (_config.CACHE_DIR, node_cache_dir()):
            if not root:
                continue
            self = cls(py_func, py_file, root)
            try:
                self.ensure_cache_path()
                return self
            except OSError:
                continue
        return None


if ContentKeyedLocator not in caching.CacheImpl._locator_classes:
    caching.CacheImpl._locator_classes.insert(0, ContentKeyedLocator)


def jit(fn=None, **options):
    """``numba.njit(cache=True, nogil=True, **options)`` that never fails for want of a cache
    location (see the module docstring): without one it compiles uncached."""
    if fn is None:
        return lambda f: jit(f, **options)
    try:
        return numba.njit(cache=True, nogil=True, **options)(fn)
    except RuntimeError as exc:  # "cannot cache function ...: no locator available"
        if "no locator available" not in str(exc):
            raise
    return numba.njit(cache=False, nogil=True, **options)(fn)


def typed_list(arrays) -> "numba.typed.List":
    """A numba typed list of the given arrays (all of one dtype and rank), to pass a variable
    number of arrays to a kernel under one compiled signature."""
    out = numba.typed.List()
    for a in arrays:
        out.append(np.ascontiguousarray(a))
    return out
