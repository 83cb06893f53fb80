"""Label-based classification metrics (binary and multiclass) from a weighted confusion matrix.

The state of every group is its weighted confusion matrix ``M[true, predicted]``; every metric
is a pure function of the merged matrix, so results never depend on partitioning. Formulas
follow scikit-learn 1.9 (``sklearn/metrics/_classification.py``) unless noted:

- ``precision = TP / (TP + FP)``, ``recall = TP / (TP + FN)``, ``f1 = 2 TP / (2 TP + FP + FN)``
  (from counts, as ``precision_recall_fscore_support``), ``specificity = TN / (TN + FP)``,
  ``jaccard = TP / (TP + FP + FN)`` (``jaccard_score``, the intersection over union);
  per class (``average=None``, ``class_label`` set), ``micro`` (pooled counts), ``macro``
  (mean over classes), ``weighted`` (mean weighted by support), ``binary`` (positive class).
- ``accuracy`` (``accuracy_score``), ``balanced_accuracy`` (``balanced_accuracy_score``, mean
  recall over classes with support), ``mcc`` (``matthews_corrcoef``, multiclass R_K of
  Gorodkin 2004), ``cohen_kappa`` (``cohen_kappa_score``, unweighted).
- ``support`` (weighted count of labels per class), ``prevalence`` (share of labels),
  ``predicted_positive_rate`` (share of predictions), ``n_rows`` (valid rows, unweighted).

Ranges: ``mcc`` and ``cohen_kappa`` in [-1, 1]; the other scores and the shares in [0, 1];
scores are ``higher_is_better``, counts and shares ``neutral``.

Conventions (where we differ from scikit-learn, on purpose):

- Classes: ``classes=None`` discovers them; the state keeps the sorted union, and per-class
  results of a group cover the classes *present* in that group (as label or prediction), like
  scikit-learn's default ``labels``. With fixed ``classes`` every class gets per-class results.
  Macro and weighted averages always skip classes absent from both labels and predictions of
  the group (scikit-learn with ``labels=classes`` would include them).
- ``zero_division`` (0.0, 1.0 or nan; default nan, scikit-learn's default ``"warn"`` acts as
  0.0): a ratio with a zero denominator takes that value and the reason ``zero_division`` (also
  when the value is 0.0 or 1.0). Averages ignore NaN classes (scikit-learn's ``_nanaverage``);
  an average carries ``zero_division`` only if every class in it was undefined. A weighted
  average whose remaining classes all have zero support is NaN (scikit-learn falls back to the
  unweighted mean).
- ``mcc`` is NaN with ``single_class`` when the labels or the predictions of the group (by
  positive weight) take a single class (scikit-learn returns 0.0 there). ``cohen_kappa`` is NaN
  with ``single_class`` only when its chance disagreement is 0 (labels and predictions all one
  and the same class; scikit-learn: ``replace_undefined_by``); constant predictions against
  two label classes give 0.0, as in scikit-learn.
- ``empty``: a group with no valid rows or zero total weight; every value except ``n_rows`` and
  ``support`` is NaN.
- ``binary`` average only when ``positive_class`` is given; we never guess a positive class.
- Class types: integer or string. Float labels are accepted (1.0 -> class 1); a non-integral
  or infinite number (1.5) is no class: the row is excluded as ``unknown_class`` (label) or
  ``unknown_predicted_class``; bools are the integers 0 and 1;
  labels and predictions of different types ("1" vs 1) raise ``TypeError``.
- Invalid rows are excluded and counted per group under the first matching reason of
  ``INVALID_REASONS`` (missing = None or NaN; ``negative_weight`` includes -inf,
  ``nonfinite_weight`` is NaN or +inf; zero weights are valid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rayeval.core.contract import MetricInfo, SpecBase
from rayeval.core.registry import register_family
from rayeval.core.state import (HIGHER, NEUTRAL, Batch, GroupIndex, Key, KeyedArrays,
                                MetricResult, ResultColumns, StateMismatchError, common_rows,
                                grouped_sum, merge_keyed)
from rayeval.metrics._classes import (_INT, _KIND_NAME, _STR, _class_column,  # noqa: F401
                                      _kind_of, _lookup, _py_class)
from rayeval.metrics._confusion_math import _Stats
from rayeval.metrics._math import (compact_groups, first_reason, weight_column,
                                   weight_problems)

INVALID_REASONS = ("missing_label", "missing_prediction", "negative_weight", "nonfinite_weight",
                   "unknown_class", "unknown_predicted_class")
AVERAGES = ("micro", "macro", "weighted")
#: the per-class ratios, also averaged (``average`` micro/macro/weighted, binary)
RATIOS = ("precision", "recall", "f1", "specificity", "jaccard")


@dataclass(frozen=True)
class ClassificationState:
    """Grouped sufficient statistics of :class:`ClassificationSpec`.

    Attributes:
        classes: tuple of C class values (int or str): sorted when discovered, as configured
            when fixed. Index ``i`` of every class axis is ``classes[i]``.
        kind: ``"int"``, ``"str"`` or ``None`` (no class seen yet).
        table: :class:`KeyedArrays` over G groups with ``confusion`` float64 (G, C, C)
            (weighted counts, rows = true class, columns = predicted class), ``label_rows`` and
            ``pred_rows`` int64 (G, C) (unweighted rows per true / predicted class) and
            ``invalid`` int64 (G, len(INVALID_REASONS)) (excluded rows per reason).
    """

    classes: tuple = ()
    kind: str | None = None
    table: KeyedArrays = field(default_factory=KeyedArrays)


def _remap(state: ClassificationState, classes: tuple) -> KeyedArrays:
    """The state's table re-indexed onto ``classes`` (a superset of ``state.classes``)."""
    tab = state.table
    if state.classes == classes or not tab.keys:
        return tab
    where = {c: i for i, c in enumerate(classes)}
    pos = np.array([where[c] for c in state.classes], dtype=np.int64)
    g, c = tab.n_groups, len(classes)
    conf = np.zeros((g, c, c), dtype=np.float64)
    conf[:, pos[:, None], pos[None, :]] = tab.arrays["confusion"]
    out = {"confusion": conf, "invalid": tab.arrays["invalid"]}
    for name in ("label_rows", "pred_rows"):
        arr = np.zeros((g, c), dtype=np.int64)
        arr[:, pos] = tab.arrays[name]
        out[name] = arr
    return KeyedArrays(tab.keys, out)


@dataclass(frozen=True)
class ClassificationSpec(SpecBase):
    """Confusion-matrix metrics per group from predicted and true class labels.

    Args:
        classes: fixed class list (ints or strs, unique) or ``None`` to discover classes. With a
            fixed list, rows whose label is not in it are excluded and counted as
            ``unknown_class``, rows with a known label but a predicted class outside the list
            as ``unknown_predicted_class`` (as scikit-learn's ``confusion_matrix(labels=...)``
            leaves both out; check that count: such a prediction is wrong, not missing).
        positive_class: the positive class of a binary problem; enables ``average="binary"``
            results. With fixed ``classes`` it must be one of exactly 2 classes; with discovered
            classes, seeing more than 2 classes (positive included) raises ``ValueError``.
        zero_division: value of a ratio whose denominator is 0: ``0.0``, ``1.0`` or ``nan``.
        averages: subset of ``("micro", "macro", "weighted")``.

    Batch columns: ``label`` (n,) and ``prediction`` (n,) of int, str, integral float or object
    dtype (None/NaN = missing); optional ``weight`` (n,) float >= 0.

    Raises:
        ValueError / TypeError: on invalid options (message names the argument).
    """

    classes: tuple | None = None
    positive_class: Any = None
    zero_division: float = math.nan
    averages: tuple = AVERAGES

    def __post_init__(self) -> None:
        if self.classes is not None:
            classes = tuple(_py_class(c, "classes") for c in self.classes)
            if not classes or len(set(classes)) != len(classes):
                raise ValueError(f"Expected `classes` non-empty and unique, got {classes}.")
            if len({type(c) for c in classes}) != 1:
                raise TypeError(f"Expected `classes` of one type (int or str), got {classes}.")
            object.__setattr__(self, "classes", classes)
        if self.positive_class is not None:
            pos = _py_class(self.positive_class, "positive_class")
            object.__setattr__(self, "positive_class", pos)
            if self.classes is not None and (len(self.classes) != 2 or pos not in self.classes):
                raise ValueError(f"Expected `positive_class` to be one of exactly 2 `classes`, "
                                 f"got {pos!r} with classes {self.classes}.")
        zd = float(self.zero_division)
        if not (math.isnan(zd) or zd in (0.0, 1.0)):
            raise ValueError(f"Expected `zero_division` in {{0.0, 1.0, nan}}, got {zd}.")
        object.__setattr__(self, "zero_division", zd)
        averages = tuple(self.averages)
        if not set(averages) <= set(AVERAGES) or len(set(averages)) != len(averages):
            raise ValueError(f"Expected `averages` a subset of {AVERAGES}, got {averages}.")
        object.__setattr__(self, "averages", averages)

    family = "labels"
    INPUTS = {"label": "class_label", "prediction": "class_prediction", "weight": "weight?"}

    def metrics(self) -> tuple[MetricInfo, ...]:
        """Declared metrics (see the module docstring)."""
        avgs = self.averages + (("binary",) if self.positive_class is not None else ())
        head = {"accuracy": 3, "f1": 4}

        def info(name, direction, **kw):
            return MetricInfo(name, direction, self.family, headline=head.get(name, 0), **kw)

        return (info("n_rows", NEUTRAL, needs_labels=False),
                *(info(m, HIGHER) for m in ("accuracy", "balanced_accuracy", "mcc",
                                            "cohen_kappa")),
                *(info(m, HIGHER, per_class=True, averages=avgs) for m in RATIOS),
                *(info(m, NEUTRAL, per_class=True)
                  for m in ("support", "prevalence", "predicted_positive_rate")))

    # ---- contract -----------------------------------------------------------------------
    def zero(self) -> ClassificationState:
        """The empty state (no groups); the two-sided identity of :meth:`merge`."""
        if self.classes is None:
            return ClassificationState()
        return ClassificationState(self.classes, _kind_of(self.classes[0]))

    def accumulate(self, state: ClassificationState, batch: Batch,
                   groups: GroupIndex) -> ClassificationState:
        """``state`` merged with the statistics of one batch (vectorised; inputs untouched).

        Raises:
            TypeError: labels and predictions (or earlier batches / fixed classes) have
                different class types; the message names both dtypes.
            ValueError: bad column shape, or more than 2 classes for a binary spec with
                discovered classes (a non-integral number is excluded as an unknown class).
        """
        return self.merge(state, self._from_batch(state, batch, [groups])[0])

    def accumulate_many(self, batch: Batch,
                        groupings: list[GroupIndex]) -> list[ClassificationState]:
        """``[accumulate(zero(), batch, g) for g in groupings]`` with the row-level work
        (validation, class lookup) done once; raises as :meth:`accumulate`."""
        return self._from_batch(self.zero(), batch, groupings) if groupings else []

    def _from_batch(self, state: ClassificationState, batch: Batch,
                    groupings: list[GroupIndex]) -> list[ClassificationState]:
        n = common_rows(groupings)
        lab, lab_miss, lab_kind, lab_bad = _class_column(batch, "label", n)
        pred, pred_miss, pred_kind, pred_bad = _class_column(batch, "prediction", n)
        kind = self._check_kinds(state.kind, lab_kind, pred_kind, batch)
        w = weight_column(batch, n)
        reason = first_reason([lab_miss, pred_miss, *weight_problems(w, n)])
        if lab_bad.any() or pred_bad.any():  # 0.5 is no class: excluded, never fatal
            free = reason < 0
            reason[free & lab_bad] = INVALID_REASONS.index("unknown_class")
            reason[free & ~lab_bad & pred_bad] = INVALID_REASONS.index("unknown_predicted_class")
        ok = reason < 0
        all_ok = bool(ok.all())
        if not all_ok:
            lab, pred = lab[ok], pred[ok]
        classes = state.classes
        if self.classes is None:
            classes = self._union(classes, np.unique(lab).tolist() + np.unique(pred).tolist())
        ti, t_known = _lookup(classes, lab)
        pi, p_known = _lookup(classes, pred)
        known = t_known & p_known
        if not known.all():  # only with fixed classes
            rows = np.flatnonzero(ok)[~known]
            reason[rows] = np.where(t_known[~known],
                                    INVALID_REASONS.index("unknown_predicted_class"),
                                    INVALID_REASONS.index("unknown_class"))
            ok[rows] = False
            all_ok = False
            ti, pi = ti[known], pi[known]

        c, r = len(classes), len(INVALID_REASONS)
        cell = ti * c + pi
        wv = None if w is None else (w if all_ok else w[ok])
        out = []
        for groups in groupings:
            codes, keys = compact_groups(groups)
            g = len(keys)
            cv = codes if all_ok else codes[ok]
            # one unweighted count per (group, true, predicted) gives both row-count marginals
            rows_tp = grouped_sum(cv, g, None, minlength_inner=c * c, inner=cell).reshape(g, c, c)
            if wv is None:
                conf = rows_tp.astype(np.float64)
            else:
                conf = grouped_sum(cv, g, wv, minlength_inner=c * c, inner=cell)
                conf = conf.astype(np.float64).reshape(g, c, c)
            if all_ok:
                invalid = np.zeros((g, r), dtype=np.int64)
            else:
                bad = ~ok
                invalid = grouped_sum(codes[bad], g, None, minlength_inner=r, inner=reason[bad])
            arrays = {
                "confusion": conf,
                "label_rows": rows_tp.sum(axis=2),
                "pred_rows": rows_tp.sum(axis=1),
                "invalid": invalid,
            }
            out.append(ClassificationState(classes, kind, KeyedArrays(keys, arrays)))
        return out

    def merge(self, a: ClassificationState, b: ClassificationState) -> ClassificationState:
        """Group-wise sum of two states; discovered class lists are united (counts remapped).

        Raises:
            StateMismatchError: fixed class lists differ. TypeError: class types differ.
        """
        if a.kind is not None and b.kind is not None and a.kind != b.kind:
            raise TypeError(f"Cannot merge states with {_KIND_NAME[a.kind]} and "
                            f"{_KIND_NAME[b.kind]} classes.")
        classes = a.classes
        if a.classes != b.classes:
            if self.classes is not None:
                raise StateMismatchError(f"Cannot merge states with classes {a.classes} and "
                                         f"{b.classes}.")
            classes = self._union(a.classes, b.classes)
        table = merge_keyed(_remap(a, classes), _remap(b, classes))
        return ClassificationState(classes, a.kind or b.kind, table)

    def finalize(self, state: ClassificationState) -> list[MetricResult]:
        """Metric values per group (see the module docstring for names and conventions)."""
        return self.finalize_columns(state).results()

    def finalize_columns(self, state: ClassificationState) -> ResultColumns:
        """The values of :meth:`finalize` as columns (:class:`ResultColumns`)."""
        tab = state.table
        out = ResultColumns(tab.keys)
        if not tab.keys:
            return out
        s = _Stats(tab, self.zero_division)
        scalars = [("accuracy", s.accuracy), ("balanced_accuracy", s.balanced_accuracy),
                   ("mcc", s.mcc), ("cohen_kappa", s.kappa)]
        per_class = [(name, HIGHER, s.ratio(name)) for name in RATIOS]
        per_class += [("support", NEUTRAL, (s.t, "")),
                      ("prevalence", NEUTRAL, s.share(s.t)),
                      ("predicted_positive_rate", NEUTRAL, s.share(s.p))]
        pos = None
        if self.positive_class is not None and self.positive_class in state.classes:
            pos = state.classes.index(self.positive_class)
        emit = np.ones_like(s.present) if self.classes is not None else s.present
        out.add("n_rows", s.n_rows.astype(np.float64), NEUTRAL)
        for m, (v, r) in scalars:
            out.add(m, v, HIGHER, r)
        for m, d, (v, r) in per_class:
            for i, cls in enumerate(state.classes):
                out.add(m, v[:, i], d, r if isinstance(r, str) else r[:, i], class_label=cls,
                        mask=emit[:, i])
        for name in RATIOS:
            for avg in self.averages:
                v, r = s.average(name, avg)
                out.add(name, v, HIGHER, r, average=avg)
        if pos is not None:
            for m, _, (v, r) in per_class[:len(RATIOS)]:
                out.add(m, v[:, pos], HIGHER, r[:, pos], average="binary")
        return out

    # ---- extra outputs ------------------------------------------------------------------
    def confusion_records(self, state: ClassificationState) -> list[tuple[Key, Any, Any, float]]:
        """Non-zero cells of each group's weighted confusion matrix as
        ``(key, true_class, predicted_class, weighted_count)`` (zero cells are omitted)."""
        tab = state.table
        if not tab.keys:
            return []
        conf = tab.arrays["confusion"]
        g, i, j = np.nonzero(conf)
        vals = conf[g, i, j].tolist()
        cls = state.classes
        return [(tab.keys[a], cls[b], cls[c], v)
                for a, b, c, v in zip(g.tolist(), i.tolist(), j.tolist(), vals)]

    def row_counts(self, state: ClassificationState) -> dict[Key, float]:
        """Valid (counted) rows per group, unweighted."""
        tab = state.table
        if not tab.keys:
            return {}
        return dict(zip(tab.keys, tab.arrays["label_rows"].sum(axis=1).astype(float).tolist()))

    def weight_sums(self, state: ClassificationState) -> dict[Key, float]:
        """Total weight of valid rows per group (equals :meth:`row_counts` without weights)."""
        tab = state.table
        if not tab.keys:
            return {}
        return dict(zip(tab.keys, tab.arrays["confusion"].sum(axis=(1, 2)).tolist()))

    def invalid_counts(self, state: ClassificationState) -> dict[Key, dict[str, int]]:
        """Excluded rows per group and reason (every reason listed, zeros included); a row
        failing several checks counts once, under the first of ``INVALID_REASONS``."""
        tab = state.table
        if not tab.keys:
            return {}
        return {k: dict(zip(INVALID_REASONS, row))
                for k, row in zip(tab.keys, tab.arrays["invalid"].tolist())}

    # ---- helpers ------------------------------------------------------------------------
    def _union(self, old: tuple, new) -> tuple:
        extra = {self.positive_class} if self.positive_class is not None else set()
        classes = tuple(sorted(set(old) | set(new) | extra))
        if self.positive_class is not None and len(classes) > 2:
            raise ValueError(f"Expected at most 2 classes with `positive_class`="
                             f"{self.positive_class!r} (binary), got {list(classes)}.")
        return classes

    def _check_kinds(self, state_kind, lab_kind, pred_kind, batch) -> str | None:
        def dt(name):
            return np.asarray(batch[name]).dtype

        if lab_kind and pred_kind and lab_kind != pred_kind:
            raise TypeError(f"`label` holds {_KIND_NAME[lab_kind]} classes (dtype {dt('label')}) "
                            f"but `prediction` holds {_KIND_NAME[pred_kind]} classes (dtype "
                            f"{dt('prediction')}); convert one so both use the same class type.")
        kind = lab_kind or pred_kind
        expected, source = state_kind, "earlier batches"
        if self.classes is not None:
            source = "`classes`"
        elif expected is None and self.positive_class is not None:
            expected, source = _kind_of(self.positive_class), "`positive_class`"
        if kind and expected and kind != expected:
            raise TypeError(f"The batch holds {_KIND_NAME[kind]} classes (`label` dtype "
                            f"{dt('label')}, `prediction` dtype {dt('prediction')}) but {source} "
                            f"hold {_KIND_NAME[expected]} classes.")
        return state_kind or kind


def _build(task) -> ClassificationSpec | None:
    if not task.prediction:
        return None
    return ClassificationSpec(classes=tuple(task.classes) if task.classes is not None else None,
                              positive_class=task.positive_class,
                              zero_division=float(task.zero_division))


register_family("labels", ("binary", "multiclass"), _build,
                lambda task: {"label": task.label, "prediction": task.prediction})
