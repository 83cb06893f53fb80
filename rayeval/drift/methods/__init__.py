"""Drift methods: one small module per statistic, registered with what the engine needs to know.

Each module in this package calls :func:`register` once with a :class:`DriftMethod`: its name,
the feature kinds it applies to, whether it is a test (drift when ``p_value < threshold``) or a
distance (drift when ``statistic >= threshold``), its default threshold, whether it is a
statistic *of the binned distributions* (exact for the binning, ``error_bound`` 0) or an
estimate of the raw-sample statistic with a guaranteed bound, the kinds for which the engine
reports it next to the deciding method, and the function computing it. Every module here is
imported when the package is, so adding a method is one new file (plus its test); it is then
accepted in configs, computed, reported and run through the common drift tests.

A method's function takes a :class:`Pair` (reference and current histograms of one binning,
the reference broadcast to the current rows, and the comparison options) and returns a dict
of float64 (G,) arrays: ``statistic`` (required), ``p_value``, ``error_bound`` and
``smoothing`` (optional, default NaN / 0 / 0) and ``reason`` (object (G,), "" when defined).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

import numpy as np

from rayeval.drift import _math
from rayeval.drift.binning import CATEGORICAL, NUMERIC, NumericBinning

BOTH = frozenset({NUMERIC, CATEGORICAL})


@dataclass(frozen=True)
class Options:
    """Comparison options shared by the methods.

    Attributes:
        eps: PSI / KL smoothing of empty-bin proportions (1e-4).
        n_coarse: binned statistics of numeric features use at most this many groups of
            consecutive bins of about equal reference mass (None: every bin).
        base: Jensen-Shannon log base (2: range 0..1).
        yates: Yates' continuity correction of chi-squared (False).
        ks_p_method: ``auto`` / ``exact`` / ``asymp`` KS p-value.
        std_floor: floor of the reference std that normalises Wasserstein (1e-3).
    """

    eps: float = 1e-4
    n_coarse: int | None = 10
    base: float = 2.0
    yates: bool = False
    ks_p_method: str = "auto"
    std_floor: float = 1e-3


@dataclass(frozen=True)
class Pair:
    """Reference and current :class:`~rayeval.drift.histogram.Histograms` of one binning, with
    ``reference`` already broadcast to ``len(current)`` rows, and the options."""

    reference: object
    current: object
    binning: object
    options: Options = field(default_factory=Options)

    @property
    def n(self) -> int:
        return len(self.current)

    @cached_property
    def shares(self) -> tuple:
        """``(r, r_total, c, c_total)``: row-normalised counts (G, B) and row totals (G,)."""
        r, rt = _math.normalize(self.reference.counts)
        c, ct = _math.normalize(self.current.counts)
        return r, rt, c, ct

    @cached_property
    def binned_counts(self) -> tuple:
        """``(ref counts, cur counts)`` (G, B') as the binned statistics see them: numeric
        features coarsened to ``n_coarse`` groups of equal reference mass when the reference
        occupies more bins than that."""
        rc, cc = self.reference.counts, self.current.counts
        n_coarse = self.options.n_coarse
        if isinstance(self.binning, NumericBinning) and n_coarse is not None:
            kr, kc = _math.coarsen(rc, cc, n_coarse)
            many = ((rc > 0).sum(axis=1) > n_coarse)[:, None]
            rc, cc = np.where(many, kr, rc), np.where(many, kc, cc)
        return rc, cc

    @cached_property
    def binned_shares(self) -> tuple:
        """``(p_ref, p_cur)``: :attr:`binned_counts` row-normalised."""
        rc, cc = self.binned_counts
        return _math.normalize(rc)[0], _math.normalize(cc)[0]


@dataclass(frozen=True)
class DriftMethod:
    """One registered drift method.

    Attributes:
        name: as written in configs and the ``method`` column.
        kinds: feature kinds it applies to (``numeric``, ``categorical``).
        test: True: a test, drift when ``p_value < threshold``; False: a distance, drift when
            ``statistic >= threshold``.
        default_threshold: None when a threshold must be configured.
        binned: True when it is a statistic of the binned distributions (exact for the
            binning, ``error_bound`` 0); False when it estimates the raw-sample statistic and
            reports a guaranteed ``error_bound``.
        reported: kinds for which the engine reports it for every monitored column next to the
            deciding method (an unlisted kind gets it only when configured as the method).
        function: ``Pair -> dict`` of (G,) arrays (module docstring).
        source: what it matches (reference implementation or paper).
    """

    name: str
    kinds: frozenset
    test: bool
    default_threshold: float | None
    binned: bool
    function: Callable[[Pair], dict] = field(compare=False, repr=False)
    reported: frozenset = frozenset()
    source: str = ""


#: name -> method, every module of this package registered (import order: alphabetical)
METHODS: dict[str, DriftMethod] = {}


def register(method: DriftMethod) -> DriftMethod:
    """Add ``method`` to :data:`METHODS` (a module reload replaces it)."""
    bad = set(method.kinds) - BOTH
    if bad or not method.kinds:
        raise ValueError(f"Expected `kinds` a non-empty subset of {sorted(BOTH)}, got "
                         f"{sorted(method.kinds)} for drift method {method.name!r}.")
    if not set(method.reported) <= set(method.kinds):
        raise ValueError(f"Drift method {method.name!r} is reported for kinds it does not take.")
    METHODS[method.name] = method
    return method


def reported_methods(kind: str) -> tuple[str, ...]:
    """Methods reported for every monitored column of ``kind``, in registration order."""
    return tuple(n for n, m in METHODS.items() if kind in m.reported)


for _mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")
