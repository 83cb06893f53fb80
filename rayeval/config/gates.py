"""Verdict sections of a job config: gate rules, confidence intervals and paired model
comparisons."""

from __future__ import annotations

import math
from typing import Literal, Optional, Union

from pydantic import Field, model_validator

from rayeval.config._base import _Frozen


#: ``GateRule.baseline`` value naming the last BLESSED run of the same job in the output path
LAST_PASSING_RUN = "last_passing_run"


class GateRule(_Frozen):
    """A gate, checked for every model, window and selected slice (see ``rayeval.engine.gates``).

    Kinds (exactly one):

    - threshold: ``on`` (``value``, ``ci_lower`` or ``ci_upper``) of ``metric`` must be >=
      ``min`` and/or <= ``max``;
    - change: against ``baseline`` (a model of this run, or ``last_passing_run``: the last
      BLESSED run of this job in ``outputs.path``), the metric may get worse (in its direction)
      by at most ``max_drop`` (absolute) or ``max_relative_drop`` (fraction of the baseline);
    - test against a ``baseline`` model (needs a ``comparisons`` pair): ``non_inferiority``
      (the paired interval of candidate - baseline excludes a loss larger than ``margin``) or
      ``superiority`` (significantly better at the Benjamini-Hochberg adjusted level
      ``comparisons.fdr``).

    ``slices``: ``overall`` (default, or the older ``slice``: one slice name), ``all``, or a list
    of slice names; slices with fewer labelled rows than ``min_slice_size`` are skipped
    (``overall`` never is). ``model``: only this model (default: every model but the baseline).
    ``dataset_drift_share`` gates drift (threshold only).
    """

    name: str
    metric: str
    task: Optional[str] = None
    slice: str = "overall"
    slices: Union[Literal["overall", "all"], list[str], None] = None
    min_slice_size: int = Field(default=0, ge=0)
    on: Literal["value", "ci_lower", "ci_upper"] = "value"
    min: Optional[float] = None
    max: Optional[float] = None
    model: Optional[str] = None
    baseline: Optional[str] = None
    max_drop: Optional[float] = Field(default=None, ge=0)
    max_relative_drop: Optional[float] = Field(default=None, ge=0)
    test: Optional[Literal["non_inferiority", "superiority"]] = None
    margin: float = Field(default=0.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data):
        # YAML 1.1 reads the bare key `on` as the boolean true: take it back as `on`
        if isinstance(data, dict) and "on" not in data:
            for key in (True, "true", "True"):
                if key in data:
                    data = dict(data)
                    data["on"] = data.pop(key)
                    break
        return data

    @model_validator(mode="after")
    def _check_bounds(self):
        for b in (self.min, self.max, self.max_drop, self.max_relative_drop):
            if b is not None and math.isnan(b):
                raise ValueError(f"gate {self.name!r}: a bound must be a number, not NaN")
        threshold = self.min is not None or self.max is not None
        change = self.max_drop is not None or self.max_relative_drop is not None
        kinds = [k for k, on in (("min/max", threshold), ("max_drop/max_relative_drop", change),
                                 ("test", self.test is not None)) if on]
        if not kinds:
            raise ValueError(f"gate {self.name!r}: needs `min` and/or `max`, or a `baseline` "
                             "with `max_drop`, `max_relative_drop` or `test` (a gate without a "
                             "bound would always pass)")
        if len(kinds) > 1 or (self.max_drop is not None and self.max_relative_drop is not None):
            raise ValueError(f"gate {self.name!r}: one kind of rule per gate, got "
                             f"{' and '.join(kinds)}")
        if (change or self.test) and not self.baseline:
            raise ValueError(f"gate {self.name!r}: a change or test rule needs `baseline` (a "
                             f"model, or {LAST_PASSING_RUN!r})")
        if threshold and self.baseline:
            raise ValueError(f"gate {self.name!r}: `min`/`max` are absolute bounds; against a "
                             "`baseline` use `max_drop`, `max_relative_drop` or `test`")
        if self.test and self.baseline == LAST_PASSING_RUN:
            raise ValueError(f"gate {self.name!r}: `test` compares two models of this run on "
                             f"the same rows; {LAST_PASSING_RUN!r} is another run")
        if self.test and self.on != "value":
            raise ValueError(f"gate {self.name!r}: a `test` rule reads the paired interval or "
                             "p-value itself; leave `on` at `value`")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"gate {self.name!r}: `min` {self.min} > `max` {self.max} can "
                             "never pass")
        return self

    @property
    def slice_selection(self):
        """``"overall"``, ``"all"`` or a list of slice names (``slices``, else ``slice``)."""
        if self.slices is None:
            return "overall" if self.slice == "overall" else [self.slice]
        return self.slices


class IntervalsConfig(_Frozen):
    """Confidence intervals of every metric (see ``rayeval.stats``): closed forms (Wilson,
    DeLong) where they exist, else a one-pass Poisson bootstrap with ``replicates`` replicates
    whose weights are a fixed hash of (``unit`` value, replicate): rows of one unit (default:
    the prediction id; a user or session column when its rows are correlated) share weights."""

    enabled: bool = False
    level: float = Field(default=0.95, gt=0.5, lt=1.0)
    replicates: int = Field(default=200, ge=10, le=2000)
    unit: Optional[str] = None  # default: columns.id


class ComparisonPair(_Frozen):
    """One champion vs challenger comparison: ``candidate - baseline`` on the same rows."""

    baseline: str
    candidate: str

    @model_validator(mode="after")
    def _check(self):
        if self.baseline == self.candidate:
            raise ValueError(f"comparisons: baseline and candidate are both "
                             f"{self.baseline!r}")
        return self


class ComparisonsConfig(_Frozen):
    """Paired model comparisons per task, metric, slice and window (see ``rayeval.stats``):
    rows paired by prediction id within a window, differences with paired intervals and
    p-values, Benjamini-Hochberg adjusted across the slices of a window at ``fdr``.
    ``metrics``: the metrics compared (default: every metric with replicates, overall values
    and the binary average; no per-class values)."""

    pairs: list[ComparisonPair] = []
    fdr: float = Field(default=0.05, gt=0.0, lt=1.0)
    metrics: Optional[list[str]] = None
