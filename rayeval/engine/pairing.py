"""Pairing two models' predictions by id for champion vs challenger comparisons (no Ray).

The baseline model's prediction rows (id, window, predicted class per label task) are read once
before the scan and broadcast like the labels (:class:`~rayeval.engine.labels.LabelIndex`,
latest row per id). In the scan, every candidate row looks its id up: it is *paired* when the
baseline predicted the same id in the same window. Per group of the candidate (model, window,
slice) a :class:`PairSpec` state counts candidate rows, paired rows and, per label task, the
labelled paired rows with their discordant counts (b: baseline right and candidate wrong; c:
the reverse), McNemar's inputs. Baseline rows without a candidate row are the baseline's rows
minus the paired ones (coverage counts), so both sides' unpaired ids are reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rayeval.engine.labels import LabelIndex
from rayeval.metrics.base import KeyedArrays, grouped_sum, merge_keyed

#: state name prefix of the pair counts (``pair|<pair index>|<slice>``)
PAIRS = "pair|"
WINDOW = "__window_start"


@dataclass
class PairIndex:
    """The baseline rows of one comparison pair, by prediction id.

    Attributes:
        baseline, candidate: model names.
        index: baseline rows (latest per id): the id, ``__window_start`` (int64 ns) and the
            prediction column of every label task.
    """

    baseline: str
    candidate: str
    index: LabelIndex


def build_pair_indexes(cfg, table: pa.Table, window_of) -> list[PairIndex]:
    """One :class:`PairIndex` per configured pair from the predictions' id, model, timestamp
    and prediction columns (``table``).

    Args:
        cfg: the job config.
        table: the predictions (at least id, model, timestamp, label-task predictions).
        window_of: ``int64 ns timestamps (n,) -> int64 window starts (n,)`` (the plan's).

    Raises:
        ValueError: a pair's model has no prediction row (the message lists the models found).
    """
    cols = cfg.columns
    models = table[cols.model]
    found = set(pc.unique(models).to_pylist())
    out = []
    for pair in cfg.comparisons.pairs:
        for role, name in (("baseline", pair.baseline), ("candidate", pair.candidate)):
            if name not in found:
                raise ValueError(f"comparisons: {role} model {name!r} has no rows in column "
                                 f"{cols.model!r} of the predictions (models found: "
                                 f"{sorted(map(str, found))})")
        rows = table.filter(pc.equal(models, pa.scalar(pair.baseline, models.type)))
        keep = [c for c in dict.fromkeys([cols.id, cols.timestamp] + prediction_columns(cfg))]
        rows = rows.select(keep)
        rows = rows.append_column(WINDOW, pa.array(window_of(rows), pa.int64()))
        out.append(PairIndex(pair.baseline, pair.candidate,
                             LabelIndex.build(rows, cols.id, cols.timestamp)))
    return out


def prediction_columns(cfg) -> list[str]:
    """The predicted-class columns of the label tasks (McNemar's inputs)."""
    return [t.prediction for t in cfg.tasks if t.type != "regression" and t.prediction]


def _equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise class equality (1 == 1.0; strings as strings; missing never equal)."""
    if a.dtype.kind in "biuf" and b.dtype.kind in "biuf":
        return a.astype(np.float64) == b.astype(np.float64)
    return np.asarray(a, dtype=object).astype(str) == np.asarray(b, dtype=object).astype(str)


@dataclass(frozen=True)
class PairSpec:
    """Pair counts per group of the candidate: ``KeyedArrays`` with ``rows`` int64 (G, 2)
    (candidate rows, paired rows) and, per label task t, ``mcnemar|t`` float64 (G, 3)
    (labelled paired rows, b, c)."""

    def zero(self) -> KeyedArrays:
        return KeyedArrays()

    def merge(self, a: KeyedArrays, b: KeyedArrays) -> KeyedArrays:
        return merge_keyed(a, b)


def pair_partials(pairs: list[PairIndex], tasks, ids: tuple, model_codes: np.ndarray,
                  models: np.ndarray, windows: np.ndarray, label_cols: dict,
                  labeled: np.ndarray, predictions: dict, groupings: dict) -> dict:
    """The pair-count states of one batch.

    Args:
        pairs: the pair indexes.
        tasks: the job's tasks.
        ids: ``(codes, distinct values)`` of the batch's prediction ids.
        model_codes, models: the factorised model column (codes (n,), values).
        windows: int64 (n,) window starts.
        label_cols, labeled: joined labels and the labelled mask (n,).
        predictions: prediction column name -> values (n,).
        groupings: slice spec -> :class:`GroupIndex` over the batch's rows.

    Returns:
        ``{"pair|<i>|<slice name>": KeyedArrays}``.
    """
    out: dict = {}
    id_codes, id_values = ids
    for i, pair in enumerate(pairs):
        hit = np.flatnonzero(models == pair.candidate)
        if not hit.size:
            continue
        cand = model_codes == hit[0]
        pos = pair.index.lookup(id_values)[id_codes]
        safe = np.where(pos >= 0, pos, 0)
        paired = cand & (pos >= 0) & (pair.index.column(WINDOW)[safe] == windows)
        arrays_of = {}
        both = paired & labeled
        for t in tasks:
            if t.type == "regression" or not t.prediction:
                continue
            label = label_cols[t.label]
            right_c = _equal(predictions[t.prediction], label)
            right_b = _equal(pair.index.column(t.prediction)[safe], label)
            arrays_of[t.name] = (both, both & right_b & ~right_c, both & ~right_b & right_c)
        for sl, g in groupings.items():
            rows = np.flatnonzero(cand)
            codes = g.codes[rows]
            used, inv = np.unique(codes, return_inverse=True)
            k = used.size
            arrays = {"rows": np.stack([np.bincount(inv, minlength=k),
                                        np.bincount(inv, weights=paired[rows], minlength=k)
                                        .astype(np.int64)], axis=1)}
            for name, masks in arrays_of.items():
                arrays["mcnemar|" + name] = np.stack(
                    [grouped_sum(inv, k, m[rows].astype(np.float64)) for m in masks], axis=1)
            keys = tuple(g.keys[j] for j in used.tolist())
            out[f"{PAIRS}{i}|{sl.name}"] = KeyedArrays(keys, arrays)
    return out
