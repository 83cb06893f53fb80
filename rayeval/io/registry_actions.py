"""Acting on a verdict in the MLflow model registry: promote, roll back, undo (MLflow's client;
no Ray).

MLflow keeps no alias history and has no rollback (MLflow issues #2169, #6180), so rayeval
records every alias move it makes twice: as registered-model tags (``rayeval.move.<seq>``, a
JSON record ``{seq, alias, from, to, kind, run_id, reason, time}``, and ``rayeval.last_move``)
and as a row of the append-only ``actions`` table under the output path. Every evaluated version
gets the tags ``rayeval.validation`` (``passed`` / ``failed``), ``rayeval.run_id``,
``rayeval.blessing`` (where the verdict's evidence is) and ``rayeval.validated_at``.

A plan is a list of :class:`Step` (alias and tag writes). :func:`apply_plan` runs them in order,
reading each target's previous value first; when a step fails, the steps already made are undone
in reverse, and the :class:`ActionError` names the failed step and whether the registry is back
as it was (or which steps could not be undone).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from typing import Optional

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rayeval.config import redact_uri

VALIDATION_TAG = "rayeval.validation"
MOVE_PREFIX = "rayeval.move."
LAST_MOVE = "rayeval.last_move"

#: the fixed schema of the append-only ``actions`` table (one row per alias move)
ACTIONS_SCHEMA = pa.schema([
    ("time", pa.timestamp("us", tz="UTC")), ("run_id", pa.string()),
    ("registered_model", pa.string()), ("alias", pa.string()), ("kind", pa.string()),
    ("from_version", pa.string()), ("to_version", pa.string()), ("seq", pa.int64()),
    ("reason", pa.string())])


class ActionError(RuntimeError):
    """Acting on the verdict failed; the message names the step and the registry's state."""


@dataclass(frozen=True)
class Step:
    """One registry write: ``set_alias`` (``key`` alias -> ``value`` version; ``None``
    deletes it), ``version_tag`` (tag ``key`` of ``version`` = ``value``; ``None``
    deletes) or ``model_tag`` (tag ``key`` of the registered model)."""

    kind: str
    model: str
    key: str
    value: Optional[str]
    version: Optional[str] = None

    def __str__(self) -> str:
        if self.kind == "set_alias":
            return (f"delete alias {self.model}@{self.key}" if self.value is None
                    else f"set alias {self.model}@{self.key} -> version {self.value}")
        where = f"{self.model} v{self.version}" if self.kind == "version_tag" else self.model
        return f"tag {where}: {self.key}={self.value if self.value is not None else '<deleted>'}"

    def current(self, client) -> Optional[str]:
        """The value this step overwrites (to undo it)."""
        from mlflow.exceptions import MlflowException

        if self.kind == "set_alias":
            try:
                return str(client.get_model_version_by_alias(self.model, self.key).version)
            except MlflowException:
                return None
        if self.kind == "version_tag":
            return client.get_model_version(self.model, self.version).tags.get(self.key)
        return client.get_registered_model(self.model).tags.get(self.key)

    def apply(self, client) -> None:
        if self.kind == "set_alias":
            if self.value is None:
                client.delete_registered_model_alias(self.model, self.key)
            else:
                client.set_registered_model_alias(self.model, self.key, self.value)
        elif self.kind == "version_tag":
            if self.value is None:
                client.delete_model_version_tag(self.model, self.version, self.key)
            else:
                client.set_model_version_tag(self.model, self.version, self.key, self.value)
        elif self.value is None:
            client.delete_registered_model_tag(self.model, self.key)
        else:
            client.set_registered_model_tag(self.model, self.key, self.value)

    def with_value(self, value: Optional[str]) -> "Step":
        return Step(self.kind, self.model, self.key, value, self.version)


@dataclass
class Plan:
    """Registry writes (``steps``) and alias moves (``moves``: actions-table rows) of one
    decision, plus ``notes`` (decisions that need no write, e.g. no version to roll back to)."""

    model: str
    steps: list[Step] = field(default_factory=list)
    moves: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"move {m['registered_model']}@{m['alias']}: version {m['from_version'] or '-'} "
               f"-> {m['to_version'] or '-'} ({m['kind']}: {m['reason']})" for m in self.moves]
        out += [f"  step {i + 1}: {s}" for i, s in enumerate(self.steps)]
        return out + [f"note: {n}" for n in self.notes]


def now_utc() -> dt.datetime:
    """The current time as a timezone-aware UTC datetime."""
    return dt.datetime.now(dt.timezone.utc)


def move_history(client, model: str) -> list[dict]:
    """rayeval's alias moves of ``model`` (from its tags), oldest first."""
    tags = client.get_registered_model(model).tags
    moves = []
    for k, v in tags.items():
        if k.startswith(MOVE_PREFIX):
            try:
                moves.append(json.loads(v))
            except ValueError:
                continue
    return sorted(moves, key=lambda m: m.get("seq", 0))


def add_move(plan: Plan, client, alias: str, from_v: Optional[str], to_v: Optional[str],
             kind: str, run_id: str, reason: str, when: dt.datetime,
             history: list[dict] | None = None) -> dict:
    """Add an alias move to ``plan``: the alias write and its two model tags."""
    history = move_history(client, plan.model) if history is None else history
    seq = max([m.get("seq", 0) for m in history] + [m["seq"] for m in plan.moves] + [0]) + 1
    rec = {"seq": seq, "alias": alias, "from": from_v, "to": to_v, "kind": kind,
           "run_id": run_id, "reason": reason[:2000], "time": when.isoformat()}
    plan.steps.append(Step("set_alias", plan.model, alias, to_v))
    text = json.dumps(rec, sort_keys=True)
    plan.steps.append(Step("model_tag", plan.model, f"{MOVE_PREFIX}{seq:06d}", text))
    plan.steps.append(Step("model_tag", plan.model, LAST_MOVE, text))
    row = {"time": when, "run_id": run_id, "registered_model": plan.model, "alias": alias,
           "kind": kind, "from_version": from_v, "to_version": to_v, "seq": seq,
           "reason": reason}
    plan.moves.append(row)
    return row


def model_verdicts(gates: pd.DataFrame, names: list[str]) -> dict[str, tuple[bool, list[str]]]:
    """``name -> (passed, failing rule names)`` from the gates table: a model passes when no
    gate row of it (nor a row of no model, e.g. a metric missing from the results) failed."""
    out = {}
    for name in names:
        rows = gates[(gates["model"] == name) | gates["model"].isna()]
        failing = sorted(set(rows.loc[~rows["passed"].astype(bool), "rule"]))
        out[name] = (not failing, failing)
    return out


def decide(client, model: str, evaluated: dict[str, Optional[str]],
           verdicts: dict[str, tuple[bool, list[str]]], roles: dict[str, str], run_id: str,
           evidence: str, champion_alias: str, promote: bool, rollback: bool,
           when: dt.datetime | None = None) -> Plan:
    """The plan for one run's verdict.

    Args:
        client: ``MlflowClient`` of the registry.
        model: registered model name.
        evaluated: reported model name -> the registry version evaluated.
        verdicts: :func:`model_verdicts`.
        roles: ``{"champion": reported name, "challenger": reported name}`` (either may be
            absent).
        run_id: rayeval run id; ``evidence``: path of the blessing / gates record.

    Raises:
        ActionError: the champion alias no longer points at the version evaluated.
    """
    when = when or now_utc()
    plan = Plan(model)
    history = move_history(client, model)
    champ_v = evaluated.get(roles.get("champion", ""))
    chall_v = evaluated.get(roles.get("challenger", ""))
    current = Step("set_alias", model, champion_alias, None).current(client)
    if champ_v is not None and current != champ_v:
        raise ActionError(f"{model}@{champion_alias} points at version {current}, not at the "
                          f"version {champ_v} this run evaluated (moved during the run?): "
                          "nothing was changed")
    for name, version in evaluated.items():
        if version is None:
            continue
        passed, failing = verdicts[name]
        for key, value in ((VALIDATION_TAG, "passed" if passed else "failed"),
                           ("rayeval.run_id", run_id), ("rayeval.blessing", evidence),
                           ("rayeval.validated_at", when.isoformat()),
                           ("rayeval.failed_rules", ",".join(failing) or None)):
            plan.steps.append(Step("version_tag", model, key, value, version))
    chall_ok = chall_v is not None and verdicts[roles["challenger"]][0]
    champ_ok = champ_v is None or verdicts[roles["champion"]][0]
    if promote and chall_ok and chall_v != current:
        add_move(plan, client, champion_alias, current, chall_v, "promote", run_id,
                 f"challenger version {chall_v} passed every gate in run {run_id}", when,
                 history)
    elif rollback and not champ_ok:
        failing = verdicts[roles["champion"]][1]
        target = previous_passed(client, model, champ_v)
        if target is None:
            plan.notes.append(f"champion version {champ_v} failed {failing} but no earlier "
                              f"version of {model} is tagged {VALIDATION_TAG}=passed: the "
                              "alias stays")
        else:
            add_move(plan, client, champion_alias, champ_v, target, "rollback", run_id,
                     f"champion version {champ_v} failed gate(s) {', '.join(failing)} in run "
                     f"{run_id}; back to version {target}, the latest earlier version "
                     "rayeval validated", when, history)
    return plan


def previous_passed(client, model: str, version: str) -> Optional[str]:
    """The latest version of ``model`` before ``version`` tagged ``rayeval.validation=passed``
    (``None``: none)."""
    versions = client.search_model_versions(f"name='{model}'")
    ok = [int(v.version) for v in versions
          if v.tags.get(VALIDATION_TAG) == "passed" and int(v.version) < int(version)]
    return str(max(ok)) if ok else None


def undo_plan(client, model: str, run_id: str, when: dt.datetime | None = None) -> Plan:
    """The plan that undoes the last alias move of ``model`` not undone yet: the alias goes
    back to its ``from`` version (deleted when it had none); the undo is itself a move (kind
    ``undo``), and the undone move's record gets ``undone_by``.

    Raises:
        ActionError: no move to undo, or the alias was moved since by someone else.
    """
    when = when or now_utc()
    history = move_history(client, model)
    undone = {m.get("undoes") for m in history}
    todo = [m for m in history if m.get("kind") != "undo" and m["seq"] not in undone]
    if not todo:
        raise ActionError(f"{model}: no rayeval alias move to undo (no {MOVE_PREFIX}* tags)")
    last = todo[-1]
    alias = last["alias"]
    current = Step("set_alias", model, alias, None).current(client)
    if current != last["to"]:
        raise ActionError(f"{model}@{alias} points at version {current}, not at version "
                          f"{last['to']} where move {last['seq']} left it (moved since): "
                          "nothing was changed")
    plan = Plan(model)
    row = add_move(plan, client, alias, last["to"], last["from"], "undo", run_id,
                   f"undo of move {last['seq']} ({last['kind']} in run {last['run_id']})",
                   when, history)
    # the record of the undo names the move it undoes
    tag = plan.steps[1]
    rec = json.loads(tag.value) | {"undoes": last["seq"]}
    plan.steps[1] = tag.with_value(json.dumps(rec, sort_keys=True))
    plan.steps[2] = plan.steps[2].with_value(json.dumps(rec, sort_keys=True))
    row["reason"] = rec["reason"]
    return plan


def _revert(client, plan: Plan, done: list) -> list[str]:
    """Apply the undo steps of ``done`` in reverse; returns the steps that could not be."""
    stuck = []
    for j, undo in reversed(done):
        try:
            undo.apply(client)
        except Exception:  # keep undoing the others, report this one
            stuck.append(f"step {j + 1} ({plan.steps[j]})")
    return stuck


def apply_plan(client, plan: Plan) -> list:
    """Make ``plan``'s writes in order; on a failure undo the ones made, in reverse. Returns
    ``[(step index, undo step)]`` of the writes made.

    Raises:
        ActionError: naming the failed step (number, what, the registry's error) and either
            "the registry is as it was" or the steps that could not be undone.
    """
    done: list[Step] = []
    for i, step in enumerate(plan.steps):
        try:
            before = step.current(client)
            step.apply(client)
        except Exception as e:  # any client failure: undo, then report
            msg = (f"step {i + 1}/{len(plan.steps)} ({step}) failed: "
                   f"{redact_uri(str(e).splitlines()[0] if str(e) else type(e).__name__)}")
            stuck = _revert(client, plan, done)
            if stuck:
                raise ActionError(f"{msg}; undoing failed for {', '.join(stuck)}: those "
                                  "changes remain in the registry") from None
            raise ActionError(f"{msg}; the {len(done)} earlier step(s) were undone: the "
                              "registry is as it was") from None
        done.append((i, step.with_value(before)))
    return done


def actions_frame(rows: list[dict]) -> pa.Table:
    """The ``actions`` rows as an Arrow table of :data:`ACTIONS_SCHEMA` (also when empty)."""
    cols = {f.name: [r.get(f.name) for r in rows] for f in ACTIONS_SCHEMA}
    return pa.table(cols, schema=ACTIONS_SCHEMA)


def stage_actions(path: str, storage_options: dict | None, rows: list[dict],
                  run_id: str) -> tuple:
    """Write the ``actions`` rows to a hidden staging file under ``path``; returns
    ``(fs, staged, final)`` for :func:`commit_actions`. The table is append-only: one new
    file per decision, ``actions/run_date=YYYY-MM-DD/<run_id>-<time>-<nonce>.parquet``,
    never replaced."""
    from rayeval.io.writers import output_fs

    fs, root = output_fs(path, storage_options)
    when = now_utc()
    name = f"{run_id}-{when.strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}.parquet"
    final = f"{root}/actions/run_date={when.date().isoformat()}/{name}"
    staged = f"{root}/_staging/actions-{uuid.uuid4().hex[:8]}/{name}"
    fs.makedirs(staged.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(staged, "wb") as f:
        pq.write_table(actions_frame(rows), f, compression="zstd")
    return fs, staged, final


def commit_actions(staged: tuple) -> str:
    """Move a staged ``actions`` file (``(fs, staged path, final path)``) into place; returns
    the final path.
    """
    fs, src, final = staged
    fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
    fs.mv(src, final)
    discard_actions((fs, src, final))
    return final


def discard_actions(staged: tuple) -> None:
    from rayeval.io.writers import remove_staging

    fs, src, _ = staged
    remove_staging(fs, src.rsplit("/", 1)[0])


def act(client, plan: Plan, path: str, storage_options: dict | None, run_id: str) -> str | None:
    """Apply ``plan`` and append its moves to the ``actions`` table under ``path`` (staged
    before the registry writes, committed after them; a failed commit undoes the writes).
    Returns the table file written (``None``: no move)."""
    staged = stage_actions(path, storage_options, plan.moves, run_id) if plan.moves else None
    try:
        done = apply_plan(client, plan)
    except ActionError:
        if staged:
            discard_actions(staged)
        raise
    if staged is None:
        return None
    try:
        return commit_actions(staged)
    except OSError as e:
        stuck = _revert(client, plan, done)
        discard_actions(staged)
        state = ("the registry is as it was" if not stuck else
                 f"undoing failed for {', '.join(stuck)}: those changes remain")
        raise ActionError(f"the actions table could not be written under {path} ({e}); the "
                          f"registry writes were undone: {state}") from None
