"""After a run's results are committed: decide and make the registry moves its verdict calls for
(``actions:`` in the config), or print them (``--dry-run``). No Ray."""

from __future__ import annotations

from typing import Callable

from rayeval.config import JobConfig, storage_options
from rayeval.io.registry_actions import (ActionError, Plan, act, decide, model_verdicts,
                                         undo_plan)


def evidence_path(result) -> str:
    """Where the verdict's evidence is: the run's blessing record when written, else its
    gates table."""
    outs = result.outputs
    for rel in sorted(outs):
        if rel.startswith("blessing/"):
            return outs[rel]
    return next((outs[r] for r in sorted(outs) if r.startswith("gates/")), "")


def _client(cfg: JobConfig):
    from mlflow.tracking import MlflowClient

    from rayeval.engine.mlflow_log import tracking_uri
    from rayeval.io.models import check_registry, registry_uri
    from rayeval.io.mlflow_writer import split_credentials

    uri = registry_uri(cfg, tracking_uri(cfg))
    try:
        check_registry(uri)
    except RuntimeError as e:
        raise ActionError(f"{e}: nothing was changed") from None
    clean = split_credentials(uri)[0]
    return uri, MlflowClient(tracking_uri=clean, registry_uri=clean)


def plan_for(cfg: JobConfig, result) -> tuple[Plan, str]:
    """The plan for ``result``'s verdict and the registry URI it runs against."""
    from rayeval.io.models import using_registry

    a = cfg.actions
    model = cfg.registered_model()
    roles, evaluated = {}, {}
    for m in result.manifest.get("models", []):
        if m["registered_name"] != model:
            continue
        evaluated[m["name"]] = m["version"]
        if m["alias"] == a.champion_alias:
            roles["champion"] = m["name"]
        elif m["alias"] == a.challenger_alias:
            roles["challenger"] = m["name"]
    verdicts = model_verdicts(result.gates, list(evaluated))
    uri, client = _client(cfg)
    with using_registry(uri):
        try:
            plan = decide(client, model, evaluated, verdicts, roles, result.run_id,
                          evidence_path(result), a.champion_alias, a.promote, a.rollback)
        except ActionError:
            raise
        except Exception as e:  # the registry failed while reading: nothing written yet
            raise ActionError(f"reading {model} from the registry failed: {e}; nothing was "
                              "changed") from None
    return plan, uri


def act_on_verdict(cfg: JobConfig, result, dry_run: bool,
                   say: Callable[[str], None] = print) -> str | None:
    """Decide, then make (or with ``dry_run`` only print) the registry moves of ``result``.
    Returns the ``actions`` table file written, if any.

    Raises:
        ActionError: the registry unreachable, an alias moved during the run, or a failed
            write (the message says whether the registry is as it was).
    """
    plan, uri = plan_for(cfg, result)
    say(("dry run, nothing changed: " if dry_run else "") + f"actions on {plan.model}:")
    for line in plan.lines() or ["nothing to do"]:
        say(f"  {line}")
    if dry_run:
        return None
    from rayeval.io.models import using_registry

    _, client = _client(cfg)
    so = storage_options(cfg.inputs.storage) if cfg.outputs.path.startswith("s3://") else None
    with using_registry(uri):
        return act(client, plan, cfg.outputs.path, so, result.run_id)


def rollback(cfg: JobConfig, model: str, dry_run: bool,
             say: Callable[[str], None] = print) -> str | None:
    """Undo the last rayeval alias move of ``model`` (see
    :func:`rayeval.io.registry_actions.undo_plan`), recorded in the ``actions`` table under
    ``outputs.path``. Returns the table file written."""
    from rayeval.io.models import using_registry

    uri, client = _client(cfg)
    run_id = f"rollback-{model}"
    with using_registry(uri):
        plan = undo_plan(client, model, run_id)
        say(("dry run, nothing changed: " if dry_run else "") + f"rollback of {model}:")
        for line in plan.lines():
            say(f"  {line}")
        if dry_run:
            return None
        so = storage_options(cfg.inputs.storage) if cfg.outputs.path.startswith("s3://") else None
        return act(client, plan, cfg.outputs.path, so, run_id)
