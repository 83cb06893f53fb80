"""Monitoring sections of a job config: drift and data quality against a reference, and
performance estimation without labels."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Literal, Optional

from pydantic import Field, model_validator

from rayeval.config._base import _Frozen, utc


class ReferenceConfig(_Frozen):
    """Where the drift reference comes from.

    kind:
        ``dataset``: a separate dataset (``uri``);
        ``time_range``: ``[start, end)`` of the predictions dataset;
        ``previous_window``: each window against the one before it.
    """

    kind: Literal["dataset", "time_range", "previous_window"] = "time_range"
    uri: Optional[str] = None
    start: Optional[datetime] = None
    end: Optional[datetime] = None

    @model_validator(mode="after")
    def _check(self):
        if self.kind == "dataset" and not self.uri:
            raise ValueError("reference.kind 'dataset' needs reference.uri")
        if self.kind == "time_range" and (self.start is None or self.end is None):
            raise ValueError("reference.kind 'time_range' needs reference.start and reference.end")
        if self.start and self.end and utc(self.start) >= utc(self.end):
            raise ValueError(f"reference.start {self.start} must be before reference.end "
                             f"{self.end}")
        return self


class EstimationConfig(_Frozen):
    """Performance estimation without labels (CBPE, :mod:`rayeval.metrics.cbpe`) for binary
    tasks with ``score`` and multiclass tasks with ``scores`` (both with ``prediction``): written
    to the ``estimated`` table per model, window and slice, next to the measured value where
    labels exist; a measured value missing its estimate by more than
    ``concept_shift_tolerance`` (and 3 sampling errors, for accuracy) is a concept-shift
    warning."""

    enabled: bool = False
    concept_shift_tolerance: float = Field(default=0.05, gt=0, le=1)


class DriftFeature(_Frozen):
    """One monitored input column: ``kind`` numeric or categorical; ``method`` and ``threshold``
    override the defaults of :func:`rayeval.drift.default_method`."""

    name: str
    kind: Literal["numeric", "categorical"]
    method: Optional[str] = None  # default: by kind and reference size
    threshold: Optional[float] = None
    edges: Optional[list[float]] = None  # numeric: fixed bin edges (widened to the reference range)

    @model_validator(mode="after")
    def _check_edges_and_method(self):
        from rayeval.drift.methods import METHODS

        if self.edges is not None:
            e = self.edges
            if self.kind != "numeric":
                raise ValueError(f"`edges` apply to numeric features, not {self.kind} "
                                 f"feature {self.name!r}")
            if len(e) < 2 or not all(math.isfinite(x) for x in e) or any(
                    b <= a for a, b in zip(e, e[1:])):
                raise ValueError(f"`edges` of feature {self.name!r} must be >= 2 finite, "
                                 f"strictly increasing numbers, got {e}")

        if self.method is None or self.method == "auto":
            return self
        m = METHODS.get(self.method)
        if m is None:
            raise ValueError(f"unknown drift method {self.method!r} for feature {self.name!r}; "
                             f"expected one of {sorted(METHODS)} or 'auto'")
        if self.kind not in m.kinds:
            raise ValueError(f"drift method {self.method!r} does not apply to {self.kind} "
                             f"feature {self.name!r} (it takes {', '.join(sorted(m.kinds))})")
        if m.default_threshold is None and self.threshold is None:
            raise ValueError(f"drift method {self.method!r} has no default threshold: set "
                             f"`threshold` for feature {self.name!r}")
        return self


class DriftConfig(_Frozen):
    """Drift and data-quality monitoring: features, predictions and labels against a reference;
    bins fixed from the reference alone (``n_bins`` quantile bins or exact values, or a
    feature's configured ``edges``; top ``top_k_categories`` + other); Jensen-Shannon in base
    ``js_base`` (the default thresholds are for base 2); optional learned thresholds (mean + 3
    std over reference chunks of ``learned_chunk``); dataset drift when the share of drifted
    features reaches ``dataset_drift_share``."""

    enabled: bool = True
    features: list[DriftFeature] = []
    predictions: bool = True  # score / predicted class drift
    labels: bool = True  # label (class mix / target) drift
    reference: ReferenceConfig = ReferenceConfig(kind="previous_window")
    n_bins: int = Field(default=100, ge=2, le=1000)
    top_k_categories: int = Field(default=20, ge=1)
    slices: bool = True  # also per slice (else overall only)
    dataset_drift_share: float = Field(default=0.5, gt=0, le=1)
    js_base: float = Field(default=2.0, gt=1)  # Jensen-Shannon log base (2: values in [0, 1])
    learned_thresholds: bool = False  # NannyML-style mean + 3 std over reference chunks
    learned_chunk: Literal["hour", "day", "week"] = "day"  # reference chunk size for them

    @model_validator(mode="after")
    def _check_learned(self):
        if self.enabled and self.learned_thresholds and self.reference.kind == "previous_window":
            raise ValueError("learned_thresholds need a fixed reference (time_range or dataset) "
                             "to cut into chunks, not previous_window")
        return self
