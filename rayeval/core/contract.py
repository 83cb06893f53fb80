"""The spec contract every metric family and drift state follows (pure, no I/O).

A *spec* (e.g. :class:`~rayeval.metrics.classification.ClassificationSpec`) is an immutable
description of what to compute (class list, options). It owns four pure operations on a
*grouped state* (:mod:`rayeval.core.state`), after torcheval's ``update / merge_state /
compute`` and Ray Data's ``AggregateFnV2``:

- ``spec.zero()`` -> state with no groups: the two-sided identity of ``merge``;
- ``spec.accumulate(state, batch, groups)`` -> new state: ``state`` merged with the
  sufficient statistics of one batch, computed vectorised (one ``np.bincount`` fan-out over
  ``groups.codes``, never a Python loop over rows or groups);
- ``spec.merge(a, b)`` -> new state: commutative and associative; inputs are never mutated;
- ``spec.finalize(state)`` -> list of :class:`~rayeval.core.state.MetricResult`, one per group,
  metric (and class).

A spec also declares what it reads and what it produces:

- ``inputs()`` (default: the class's ``INPUTS``): batch key -> role (one of :data:`ROLES`);
  a role ending in ``?`` is optional;
- ``metrics()``: one :class:`MetricInfo` per metric name it can emit (name, direction, exact or
  approximate, what it needs). Every list of metric names in rayeval (gate validation, a task's
  ``metrics:`` list, console headlines, report, MLflow) is derived from these declarations
  through :mod:`rayeval.core.registry`; ``tests/test_common.py`` checks each spec's results
  against its declaration.

:class:`SpecBase` gives the one default implementation of what the engine needs beyond the
four operations (``accumulate_many``, ``compact``, ``prepare``, ``finalize_columns``,
``confusion_records``, ``invalid_counts``, ``nbytes``); a family overrides one only where it can do better.

Naming convention (scikit-learn's): ``*_score`` is higher-is-better, ``*_error`` and ``*_loss``
are lower-is-better; :func:`name_matches_direction` checks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from rayeval.core.state import (HIGHER, LOWER, NEUTRAL, Batch, GroupIndex, MetricResult,
                                ResultColumns)

DIRECTIONS = (HIGHER, LOWER, NEUTRAL)

#: input roles a spec may read from a batch (``?`` suffix in ``inputs()``: optional):
#: ground truth (``class_label``, ``numeric_target``), model output (``class_prediction``,
#: ``numeric_prediction``, ``score`` (n,) positive-class probability, ``scores`` (n, K)),
#: a monitored column (``numeric_value``, ``category_value``), ``weight`` (n,) float >= 0,
#: ``flag`` (n,) bool (e.g. a parse error)
ROLES = ("class_label", "numeric_target", "class_prediction", "numeric_prediction", "score",
         "scores", "numeric_value", "category_value", "weight", "flag")


@dataclass(frozen=True)
class MetricInfo:
    """What a spec declares about one metric it emits.

    Attributes:
        name: the metric name as written to the ``metric`` column (field's terms, e.g.
            ``roc_auc``, ``brier_loss``, ``p99.9_absolute_error``).
        direction: ``higher_is_better``, ``lower_is_better`` or ``neutral`` (counts, shares).
        family: the spec family that emits it (``labels``, ``scores``, ``regression``...).
        approximate: True when a value may carry a non-zero ``error_bound`` (bucketed or
            sketched); False when it is exact.
        needs_labels: the metric compares with ground truth (labelled rows only).
        needs_scores: the metric reads scores / probabilities (``score`` / ``scores``).
        per_class: also emitted once per class (``class_label`` set).
        averages: the ``average`` variants it is emitted with (``binary``, ``micro``,
            ``macro``, ``weighted``), ``()`` when it is a single value.
        headline: 0 when not a headline metric; else its rank among the headline metrics of a
            task (1 first: the console and report show headlines, and rank slices by the first).

    Raises:
        ValueError: on an unknown direction, or a name whose suffix contradicts its direction.
    """

    name: str
    direction: str
    family: str
    approximate: bool = False
    needs_labels: bool = True
    needs_scores: bool = False
    per_class: bool = False
    averages: tuple = ()
    headline: int = 0

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"Expected `direction` in {DIRECTIONS}, got {self.direction!r} "
                             f"for metric {self.name!r}.")
        if not name_matches_direction(self.name, self.direction):
            raise ValueError(f"Metric {self.name!r} is {self.direction} but its name says "
                             f"{suffix_direction(self.name)}: *_score is higher_is_better, "
                             f"*_error / *_loss lower_is_better.")


def suffix_direction(name: str) -> str | None:
    """The direction a metric name's suffix states (``*_score``: higher, ``*_error`` /
    ``*_loss``: lower), or ``None`` when the suffix states none (``roc_auc``, ``accuracy``)."""
    if name.endswith("_score"):
        return HIGHER
    if name.endswith(("_error", "_loss")):
        return LOWER
    return None


def name_matches_direction(name: str, direction: str) -> bool:
    """True unless the name's suffix states a direction other than ``direction``."""
    said = suffix_direction(name)
    return said is None or said == direction


@runtime_checkable
class Spec(Protocol):
    """The typed contract (see the module docstring). States are opaque to the engine."""

    family: ClassVar[str]

    def inputs(self) -> Mapping[str, str]: ...

    def zero(self) -> Any: ...

    def accumulate(self, state: Any, batch: Batch, groups: GroupIndex) -> Any: ...

    def merge(self, a: Any, b: Any) -> Any: ...

    def finalize(self, state: Any) -> list[MetricResult]: ...

    def metrics(self) -> tuple[MetricInfo, ...]: ...


class SpecBase:
    """Default implementations of everything the engine calls beyond the four operations.

    Subclasses (usually frozen dataclasses) set ``family`` and ``INPUTS`` (or override
    ``inputs``) and implement ``zero / accumulate / merge / finalize`` and ``metrics``.
    """

    family: ClassVar[str] = ""
    INPUTS: ClassVar[Mapping[str, str]] = {}

    def inputs(self) -> Mapping[str, str]:
        """Batch key -> role (:data:`ROLES`; ``?`` suffix: optional)."""
        return self.INPUTS

    def metrics(self) -> tuple[MetricInfo, ...]:
        """Every metric this spec (with its options) can emit."""
        return ()

    def metric_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics())

    def required_inputs(self) -> tuple[str, ...]:
        """Batch keys that must be present (``inputs()`` without the optional ones)."""
        return tuple(k for k, role in self.inputs().items() if not role.endswith("?"))

    def accumulate_many(self, batch: Batch, groupings: Sequence[GroupIndex]) -> list:
        """``[accumulate(zero(), batch, g) for g in groupings]``: one state per grouping of
        the same rows (a family overrides it to do its row-level work once)."""
        return [self.accumulate(self.zero(), batch, g) for g in groupings]

    def compact(self, state: Any) -> Any:
        """The same state in its smallest form (lazily merged parts joined); values unchanged."""
        return state

    def prepare(self, state: Any) -> Any:
        """A state that will not be merged again, with what only ``finalize`` needs computed
        ahead (default: :meth:`compact`)."""
        return self.compact(state)

    def finalize_columns(self, state: Any) -> ResultColumns:
        """The values of ``finalize`` as columns."""
        return ResultColumns.from_results(self.finalize(state))

    def confusion_records(self, state: Any) -> list:
        """``[(group key, true class, predicted class, weighted count)]`` of a family with a
        confusion matrix (default: none)."""
        return []

    def invalid_counts(self, state: Any) -> dict:
        """``{group key: {reason: rows excluded}}`` (default: nothing excluded)."""
        return {}

    def nbytes(self, state: Any) -> int:
        """Bytes held in numpy arrays inside ``state`` (an estimate to balance merges)."""
        return state_nbytes(state)


def state_nbytes(obj: Any, _depth: int = 0) -> int:
    """Bytes held in numpy arrays inside ``obj`` (dataclasses, dicts, lists, tuples, objects
    with ``__dict__``; 64 per other leaf)."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if _depth > 6:
        return 64
    if isinstance(obj, dict):
        return sum(state_nbytes(v, _depth + 1) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(state_nbytes(v, _depth + 1) for v in obj)
    fields = getattr(obj, "__dataclass_fields__", None)
    if fields is not None:
        return sum(state_nbytes(getattr(obj, f), _depth + 1) for f in fields)
    if hasattr(obj, "__dict__"):
        return state_nbytes(vars(obj), _depth + 1)
    return 64
