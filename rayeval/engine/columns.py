"""Which columns a job reads from the predictions dataset, and the role each serves (no Ray).

Task columns come from the registered metric families (:mod:`rayeval.core.registry`): each
family says which config column feeds which batch key, and its spec the role of that key
(``spec.inputs()``), which fixes the type the schema contract checks.
"""

from __future__ import annotations

from rayeval.config import JobConfig
from rayeval.core import registry

#: the schema check of each input role (see :func:`rayeval.io.readers.check_columns`)
ROLE_CHECKS = {"class_label": "class", "class_prediction": "class", "numeric_target": "numeric",
               "numeric_prediction": "numeric", "score": "score", "scores": "score"}
#: roles served by the ground truth (from the labels dataset when it is separate)
LABEL_ROLES = ("class_label", "numeric_target")


def required_prediction_columns(cfg: JobConfig, labels_separate: bool) -> dict[str, str]:
    """Columns the predictions dataset must have, with the role each serves (for the schema
    contract check and the column projection)."""
    cols = cfg.columns
    req: dict[str, str] = {cols.timestamp: "timestamp"}
    if cols.model:
        req[cols.model] = "any"
    if labels_separate or cfg.policy.duplicate_predictions == "error":
        req[cols.id] = "id"
    if cols.weight:
        req[cols.weight] = "numeric"
    if cfg.intervals.enabled:  # the replicate weights are seeded by the unit column
        req.setdefault(cfg.intervals.unit or cols.id, "any" if cfg.intervals.unit else "id")
    families = registry.families()
    for t in cfg.tasks:
        for family, spec in registry.task_specs(t, selected=False).items():
            roles = spec.inputs()
            for key, column in families[family].columns(t).items():
                role = roles[key].rstrip("?")
                if labels_separate and role in LABEL_ROLES:
                    continue
                for c in column if isinstance(column, tuple) else (column,):
                    req[c] = ROLE_CHECKS[role]
    for c in cfg.filters:
        req.setdefault(c, "any")
    for spec in cfg.slice_specs():
        for c in spec:
            req.setdefault(c, "any")
    if cfg.drift.enabled:
        for f in cfg.drift.features:
            req.setdefault(f.name, "any")
    return req
