"""Registries derived from the specs' declarations (pure; no Ray, no I/O).

- task type -> metric families: each family module registers itself once
  (:func:`register_family`) with the task types it serves, how to build its spec from a task
  config, and which config columns feed which batch keys;
- metric name -> :class:`~rayeval.core.contract.MetricInfo`: :func:`task_metrics` collects the
  declarations of the specs a task gets. Gate validation, a task's ``metrics:`` list, console
  headlines, the report and MLflow all read these; there is no other list of metric names.

Adding a metric to a family touches the family's module only (its spec's ``metrics()`` and
``finalize``); adding a family is one new module that calls :func:`register_family`, plus its
name in :data:`FAMILY_MODULES`.

``task`` arguments are duck-typed task configs (:class:`rayeval.config.TaskConfig`): ``name``,
``type``, ``label``, ``prediction``, ``score``, ``scores``, ``metrics`` and the family options.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from rayeval.core.contract import MetricInfo

#: modules that register metric families on import (in output order)
FAMILY_MODULES = ("rayeval.metrics.classification", "rayeval.metrics.scores",
                  "rayeval.metrics.regression")

#: metric names fixed in a release: old name -> new name (README changelog)
RENAMED = {"brier_score": "brier_loss", "mean_error": "mean_signed_deviation"}


@dataclass(frozen=True)
class Family:
    """One registered metric family.

    Attributes:
        name: family name, the middle part of a state's key (``labels``, ``scores``...).
        task_types: task ``type`` values it serves.
        build: ``task -> spec`` or ``None`` when the task's columns do not give this family
            (e.g. no ``score`` column for the score metrics).
        columns: ``task -> {batch key: config column name or tuple of names}``: where each
            batch key of the spec's ``INPUTS`` comes from.
        renames: metric name as the spec emits it -> name in the outputs (a name two families
            of one task share, e.g. ``n_rows`` of the score family is ``n_rows_scored``).
    """

    name: str
    task_types: tuple
    build: Callable[[Any], Any]
    columns: Callable[[Any], dict]
    renames: Mapping[str, str] = field(default_factory=dict)


_FAMILIES: dict[str, Family] = {}


def register_family(name: str, task_types: tuple, build: Callable, columns: Callable,
                    renames: Mapping[str, str] | None = None) -> Family:
    """Register (or re-register, e.g. on module reload) a metric family; returns it."""
    fam = Family(name, tuple(task_types), build, columns, dict(renames or {}))
    _FAMILIES[name] = fam
    return fam


def families() -> dict[str, Family]:
    """Every registered family by name, in :data:`FAMILY_MODULES` order."""
    for mod in FAMILY_MODULES:
        importlib.import_module(mod)
    return dict(_FAMILIES)


def _selected(infos: dict, task) -> dict:
    keep = getattr(task, "metrics", None)
    return infos if keep is None else {n: i for n, i in infos.items() if n in set(keep)}


def family_metrics(family: Family, spec) -> dict[str, MetricInfo]:
    """Output name -> info of the metrics ``spec`` (of ``family``) emits."""
    out = {}
    for info in spec.metrics():
        name = family.renames.get(info.name, info.name)
        out[name] = info if name == info.name else dataclasses.replace(info, name=name)
    return out


def task_specs(task, selected: bool = True) -> dict[str, Any]:
    """The specs one task needs, by family name. ``selected``: a family none of whose metrics
    the task's ``metrics`` list keeps is left out."""
    out = {}
    for name, fam in families().items():
        if task.type not in fam.task_types:
            continue
        spec = fam.build(task)
        if spec is None:
            continue
        if selected and not _selected(family_metrics(fam, spec), task):
            continue
        out[name] = spec
    return out


def task_metrics(task, selected: bool = False) -> dict[str, MetricInfo]:
    """Output metric name -> info of every metric ``task`` can produce (its columns decide:
    label metrics need ``prediction``, score metrics ``score`` / ``scores``); ``selected``:
    only those its ``metrics`` list keeps (all when it has none)."""
    fams = families()
    out: dict[str, MetricInfo] = {}
    for name, spec in task_specs(task, selected=False).items():
        for m, info in family_metrics(fams[name], spec).items():
            out.setdefault(m, info)
    return _selected(out, task) if selected else out


def output_names(family: str) -> Mapping[str, str]:
    """Spec metric name -> output name of one family (identity where absent)."""
    return families()[family].renames


def headline_metrics(task) -> list[str]:
    """The task's headline metric names, first-ranked first (see ``MetricInfo.headline``)."""
    infos = [i for i in task_metrics(task, selected=True).values() if i.headline]
    return [i.name for i in sorted(infos, key=lambda i: (i.headline, i.name))]


def rank_metric(task) -> str | None:
    """The metric slices are ranked by (the first headline metric), or ``None``."""
    heads = headline_metrics(task)
    return heads[0] if heads else None


def renamed_hint(name: str) -> str:
    """`` (renamed to 'x')`` when ``name`` is a former metric name, else ``""``."""
    new = RENAMED.get(name)
    return f" (renamed to {new!r}, see the README changelog)" if new else ""
