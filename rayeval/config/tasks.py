"""What a job evaluates: the tasks (a discriminated union on ``type``), the slices and the
UTC windows with label maturity."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from rayeval.config._base import Scalar, _Frozen, utc


class TaskConfig(_Frozen):
    """One evaluation task over the joined rows.

    ``label`` and ``prediction`` name columns (the label may live in the labels dataset).
    ``score`` (binary) or ``scores`` (multiclass, one column per class, in ``classes`` order).
    A job's tasks are parsed as a discriminated union on ``type`` (:class:`BinaryTask`,
    :class:`MulticlassTask`, :class:`RegressionTask`, each with its type's rules); a
    ``TaskConfig`` built directly is checked by the rules of its ``type`` too.
    """

    name: str
    type: Literal["binary", "multiclass", "regression"]
    label: str
    prediction: Optional[str] = None
    score: Optional[str] = None
    scores: Optional[list[str]] = None
    classes: Optional[list[Scalar]] = None
    positive_class: Optional[Scalar] = None
    metrics: Optional[list[str]] = None  # None: the default set of the task type
    exact_scores: bool = False  # exact ROC/PR AUC (distinct scores) instead of bucketed
    # probability: scores in [0, 1] (every score metric); raw: margins / logits, any finite
    # value (ranking metrics only: ROC / PR AUC, top-k accuracy; no log loss, Brier, ECE)
    scores_are: Literal["probability", "raw"] = "probability"
    zero_division: Union[Literal["nan"], float] = "nan"  # 0, 1 or nan (scikit-learn's option)
    calibration_bins: int = Field(default=10, ge=1, le=1000)  # equal-width bins of ECE
    top_k: list[int] = [2]
    quantiles: list[float] = [0.5, 0.9, 0.99]

    @model_validator(mode="after")
    def _check(self):
        TASK_TYPES[self.type].check_type(self)
        if (self.positive_class is not None and self.classes is not None
                and self.positive_class not in self.classes):
            raise ValueError(f"task {self.name!r}: `positive_class` {self.positive_class!r} is "
                             f"not one of `classes` {self.classes}")
        if self.metrics is not None and len(set(self.metrics)) != len(self.metrics):
            raise ValueError(f"task {self.name!r}: `metrics` lists a name twice: "
                             f"{self.metrics}")
        zd = float(self.zero_division)
        if not (math.isnan(zd) or zd in (0.0, 1.0)):
            raise ValueError(f"task {self.name!r}: `zero_division` must be 0, 1 or nan, got "
                             f"{self.zero_division!r}")
        return self

    def check_type(self) -> None:
        """The rules of the task's ``type`` (raises ValueError)."""


class _ClassificationTask(TaskConfig):
    def check_type(self) -> None:
        if not (self.prediction or self.score or self.scores):
            raise ValueError(f"task {self.name!r}: needs `prediction`, `score` or `scores`")
        if self.scores is not None and (self.classes is None
                                        or len(self.classes) != len(self.scores)):
            raise ValueError(f"task {self.name!r}: `scores` needs `classes` of the same length")


class BinaryTask(_ClassificationTask):
    """A binary classification task (``type: binary``)."""

    type: Literal["binary"] = "binary"

    def check_type(self) -> None:
        _ClassificationTask.check_type(self)
        if self.classes is not None and len(self.classes) != 2:
            raise ValueError(f"task {self.name!r}: binary `classes` must have 2 values, "
                             f"got {self.classes}")
        if self.score and self.positive_class is None:
            raise ValueError(f"task {self.name!r}: binary `score` needs `positive_class`")


class MulticlassTask(_ClassificationTask):
    """A multiclass classification task (``type: multiclass``)."""

    type: Literal["multiclass"] = "multiclass"


class RegressionTask(TaskConfig):
    """A regression task (``type: regression``)."""

    type: Literal["regression"] = "regression"

    def check_type(self) -> None:
        if not self.prediction:
            raise ValueError(f"task {self.name!r}: regression needs `prediction`")


TASK_TYPES = {"binary": BinaryTask, "multiclass": MulticlassTask, "regression": RegressionTask}
#: a task of a job config: its ``type`` picks the model (pydantic discriminated union)
AnyTask = Annotated[Union[BinaryTask, MulticlassTask, RegressionTask],
                    Field(discriminator="type")]


class SlicesConfig(_Frozen):
    """Slices: ``overall``, one slice per value of each column in ``columns``, and ``crosses``
    (lists of >= 2 columns). Slices with fewer labelled rows than ``min_slice_size`` are left out
    of the metric tables (counted in the manifest); a slice spec with more distinct values than
    ``max_slices`` fails the run with a clear error."""

    overall: bool = True
    columns: list[str] = []
    crosses: list[list[str]] = []
    min_slice_size: int = Field(default=1, ge=1)
    max_slices: int = Field(default=10_000, ge=1)

    @field_validator("crosses")
    @classmethod
    def _crosses(cls, v):
        for c in v:
            if len(c) < 2:
                raise ValueError(f"a cross needs at least 2 columns, got {c}")
        return v


class WindowsConfig(_Frozen):
    """UTC windows, left-closed, right-open: ``size`` in none/hour/day/week (Monday)/month and
    the evaluated range ``[start, end)`` (naive datetimes taken as UTC)."""

    size: Literal["none", "hour", "day", "week", "month"] = "none"
    start: Optional[datetime] = None  # inclusive, UTC (naive taken as UTC)
    end: Optional[datetime] = None  # exclusive
    # label maturity (see rayeval.engine.maturity): a window is mature when its end plus
    # `mature_after` (a duration: 72h, 3d, 90m) is at or before `as_of` (default: the run's
    # start) and its label coverage (overall slice, per model) reaches `min_label_coverage`
    mature_after: Optional[str] = None
    min_label_coverage: Optional[float] = Field(default=None, ge=0, le=1)
    as_of: Optional[datetime] = None
    gate_immature: bool = False  # gates also on immature windows (default: mature only)

    @model_validator(mode="after")
    def _check(self):
        if self.start and self.end and utc(self.start) >= utc(self.end):
            raise ValueError(f"windows.start {self.start} must be before windows.end {self.end}")
        if self.mature_after is not None:
            parse_duration(self.mature_after)
        return self


def parse_duration(text: str):
    """``"72h"``, ``"3d"``, ``"90m"``, ``"1w"``, ``"3600s"`` (one number and a unit) as a
    ``timedelta``.

    Raises:
        ValueError: naming the text and the accepted form.
    """
    from datetime import timedelta

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(text))
    if not m:
        raise ValueError(f"windows.mature_after must be a duration such as 72h, 3d, 90m, 1w or "
                         f"3600s, got {text!r}")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
    return timedelta(**{unit: float(m.group(1))})
