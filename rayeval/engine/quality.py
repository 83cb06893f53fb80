"""Data-quality policy: the largest share of rows a task may exclude for a reason (no Ray).

``policy.max_invalid_share`` bounds the share of a model's rows in a window (overall slice) that
a task excluded from its metrics, per exclusion reason (``score_out_of_range``,
``missing_label``, ... as in ``invalid/``). Either one number for every task and reason, or a
mapping whose keys are ``all``, a reason, ``<task>/all`` or ``<task>/<reason>`` (the most
specific key wins: ``<task>/<reason>``, then ``<task>/all``, then ``<reason>``, then ``all``).

Every (task, model, window, key) becomes one row of the gates table (rule ``data-quality``,
metric ``invalid_share:<task>/<reason or all>``, value = the largest share among the reasons the key
governs, ``detail`` naming the worst reason and its row count), so an exceeded share fails the
run's gates (exit code 1) and shows wherever gates do (console, report, MLflow tag).

Share: excluded rows / the model's rows evaluated in the window (``coverage.n_rows`` of the
overall slice). A row excluded from two metric families of a task for one reason (e.g.
``missing_label`` from the label and the score metrics) counts once: the larger family count.
"""

from __future__ import annotations

import math

import pandas as pd

from rayeval.config import ConfigError, JobConfig
from rayeval.metrics.classification import INVALID_REASONS as LABEL_REASONS
from rayeval.metrics.regression import INVALID_REASONS as REGRESSION_REASONS
from rayeval.metrics.scores import BinaryScoreSpec

#: every reason a task can exclude rows for
REASONS = tuple(dict.fromkeys(LABEL_REASONS + BinaryScoreSpec.REASONS + REGRESSION_REASONS))
RULE = "data-quality"


def limits(cfg: JobConfig) -> dict[str, float]:
    """``policy.max_invalid_share`` as a ``{key: share}`` mapping (``{}``: no policy)."""
    v = cfg.policy.max_invalid_share
    if v is None:
        return {}
    return {"all": float(v)} if not isinstance(v, dict) else {k: float(x) for k, x in v.items()}


def check_quality_policy(cfg: JobConfig) -> None:
    """Reject keys naming an unknown task or reason (a typo would silently check nothing).

    Raises:
        ConfigError: naming the key and the known tasks and reasons.
    """
    tasks = {t.name for t in cfg.tasks}
    for key in limits(cfg):
        task, _, reason = key.rpartition("/")
        if (task and task not in tasks) or reason not in REASONS + ("all",):
            raise ConfigError(f"policy.max_invalid_share: unknown key {key!r}; keys are 'all', "
                              f"a reason, '<task>/all' or '<task>/<reason>' with tasks "
                              f"{sorted(tasks)} and reasons {list(REASONS)}")


def governing_key(lim: dict[str, float], task: str, reason: str) -> str | None:
    """The key of ``lim`` that bounds ``reason`` of ``task`` (most specific first)."""
    for key in (f"{task}/{reason}", f"{task}/all", reason, "all"):
        if key in lim:
            return key
    return None


def quality_gates(cfg: JobConfig, invalid: pd.DataFrame, coverage: pd.DataFrame,
                  run_id: str, columns: list[str]) -> pd.DataFrame:
    """Gate rows (``columns``: the gates table's) of the data-quality policy, one per task,
    model, window (of ``coverage``'s overall slice) and governing key; empty without a policy.
    """
    lim = limits(cfg)
    cov = coverage[coverage["slice"] == "overall"]
    if not lim or cov.empty:
        return pd.DataFrame(columns=columns)
    inv = invalid[invalid["slice"] == "overall"]
    # rows per (task, model, window, reason): the largest family count (one row, one count)
    counts: dict[tuple, float] = {}
    for t, m, w, reason, c in inv[["task", "model", "window_start", "reason",
                                   "count"]].itertuples(index=False):
        key = (t, m, _win(w), reason)
        counts[key] = max(counts.get(key, 0.0), float(c))
    rows = []
    for task in cfg.tasks:
        keys = {}
        for reason in REASONS:
            k = governing_key(lim, task.name, reason)
            if k is not None:
                keys.setdefault(k, []).append(reason)
        for r in cov.itertuples(index=False):
            n = float(r.n_rows)
            for key, reasons in keys.items():
                found = [(counts.get((task.name, r.model, _win(r.window_start), x), 0.0), x)
                         for x in reasons]
                worst, why = max(found)
                share = worst / n if n > 0 else math.nan
                ok = not math.isnan(share) and share <= lim[key]
                detail = (f"{why}: {int(worst):,} of {int(n):,} rows excluded"
                          + ("" if ok else f" ({share:.4g} > max {lim[key]})")) if worst else ""
                rows.append({"run_id": run_id, "rule": RULE, "task": task.name,
                             "model": r.model, "window_start": r.window_start,
                             "slice": "overall", "metric": "invalid_share:" + (
                                 key if "/" in key else f"{task.name}/{key}"),
                             "on": "value", "value": share, "baseline": math.nan,
                             "operator": "<=", "threshold": float(lim[key]),
                             "passed": ok, "reason": detail})
    return pd.DataFrame(rows, columns=columns)


def _win(ts) -> int | None:
    """A window start as a hashable key (``None`` for no window)."""
    return None if pd.isna(ts) else int(pd.Timestamp(ts).value)
