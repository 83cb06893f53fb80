"""Loading a job config: YAML file or dict, ``RAYEVAL__...`` environment overrides, ``--set``
overrides, relative paths resolved, validation errors naming the file, field and variable."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import ValidationError

from rayeval.config.job import JobConfig


class ConfigError(ValueError):
    """A job config that cannot be loaded or validated; the message names file and field."""


def _set_path(d: dict, dotted: str, value: Any) -> None:
    """Set ``value`` at ``dotted`` (``a.b.c``; an integer part indexes a list, e.g.
    ``tasks.0.label``). Missing mapping levels are created.

    Raises:
        ValueError: an index out of range, or an index into something that is no list.
    """
    keys = dotted.split(".")
    cur: Any = d
    for i, k in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(cur, list):
            if not k.lstrip("-").isdigit() or not -len(cur) <= int(k) < len(cur):
                raise ValueError(f"{'.'.join(keys[:i]) or 'the config'} is a list of "
                                 f"{len(cur)}: expected an index in [0, {len(cur)}), got {k!r}")
            if last:
                cur[int(k)] = value
            else:
                cur = cur[int(k)]
            continue
        if not isinstance(cur, dict):
            raise ValueError(f"{'.'.join(keys[:i])} is a {type(cur).__name__}, not a mapping")
        if last:
            cur[k] = value
        else:
            if not isinstance(cur.get(k), (dict, list)):
                cur[k] = {}
            cur = cur[k]


#: prefix of environment variables that override config keys (``__`` separates the parts)
ENV_PREFIX = "RAYEVAL__"


def env_overrides(environ: Mapping[str, str] | None = None) -> list[tuple[str, str, Any]]:
    """``(variable, key.path, value)`` of every ``RAYEVAL__<PART>__<PART>...`` variable, sorted:
    ``RAYEVAL__INPUTS__STORAGE__SECRET_ACCESS_KEY`` sets ``inputs.storage.secret_access_key``,
    ``RAYEVAL__OUTPUTS__MLFLOW__TRACKING_URI`` the tracking URI. Values are strings (pydantic
    converts numbers and booleans), or YAML when they start with ``[`` or ``{``. They override
    the config file and are overridden by ``--set``."""
    env = os.environ if environ is None else environ
    out = []
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or len(var) == len(ENV_PREFIX):
            continue
        raw = env[var]
        key = ".".join(part.lower() for part in var[len(ENV_PREFIX):].split("__"))
        # storage, MLflow and Pushgateway values (keys, endpoints, URIs) are strings, never
        # parsed
        secret = key.startswith(("inputs.storage.", "outputs.mlflow.",
                                 "outputs.prometheus.pushgateway_url"))
        value = raw
        if not secret and raw.lstrip().startswith(("[", "{")):
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError:
                raise ConfigError(f"Environment variable {var}: a value starting with '[' or "
                                  "'{' must be a YAML list or mapping (value not shown)"
                                  ) from None
        out.append((var, key, value))
    return out


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None,
                data: dict | None = None, base_dir: str | None = None) -> JobConfig:
    """Load and validate a job config.

    Args:
        path: YAML file (relative: to the current directory, else to the base directory).
            Relative local dataset URIs, output paths and ``sqlite:///`` tracking URIs are
            relative to ``base_dir`` (else ``RAYEVAL_BASE_DIR``, else the current directory;
            inside a ``ray job submit`` working_dir copy a relative one is an error, see
            :mod:`rayeval.paths`).
        overrides: ``key.path=value`` strings; values are parsed as YAML (``windows.size=day``,
            ``ray.actors=2``, ``slices.columns=[origin]``); an integer part indexes a list
            (``tasks.0.label=target``). Applied after the ``RAYEVAL__...`` environment
            variables (:func:`env_overrides`), which are applied after the file.
        data: a dict instead of a file.
        base_dir: the base directory of relative local paths (see :mod:`rayeval.paths`).

    Returns:
        The frozen :class:`JobConfig`.

    Raises:
        ConfigError: unreadable file, bad YAML, bad override or validation error; the message
            names the file and each failing field path.
    """
    from rayeval import paths

    base = paths.base_dir(base_dir)
    src = str(path) if path is not None else "<dict>"
    if (path is not None and base and not os.path.isabs(path) and not os.path.exists(path)
            and os.path.exists(os.path.join(base, path))):
        path = os.path.join(base, path)
    if data is None:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise ConfigError(f"Cannot read config {src}: {e.strerror}") from None
        try:
            data = yaml.safe_load(text) or {}
        except (yaml.YAMLError, ValueError) as e:  # ValueError: impossible dates (2001-02-30)
            raise ConfigError(f"Config {src} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config {src}: expected a mapping at top level, got {type(data).__name__}")
    data = json.loads(json.dumps(data, default=str))  # deep copy
    from_env = env_overrides()
    for var, key, value in from_env:
        try:
            _set_path(data, key, value)
        except ValueError as e:
            raise ConfigError(f"Environment variable {var}: {e}") from None
    for ov in overrides or []:
        if "=" not in ov:
            raise ConfigError(f"Override {ov!r}: expected key.path=value")
        k, v = ov.split("=", 1)
        try:
            _set_path(data, k.strip(), yaml.safe_load(v))
        except (yaml.YAMLError, ValueError) as e:
            raise ConfigError(f"Override {ov!r}: value is not valid: {e}") from None
    try:
        paths.resolve_paths(data, base, src)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    try:
        return JobConfig.model_validate(data)
    except ValidationError as e:
        lines = [f"Config {src} is invalid ({e.error_count()} error(s)):"]
        env_of = {key: var for var, key, _ in from_env}
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "<root>"
            var = next((v for k, v in env_of.items() if loc == k or loc.startswith(k + ".")),
                       None)
            lines.append(f"  - {loc}: {err['msg']}" + (f" (set by {var})" if var else ""))
        raise ConfigError("\n".join(lines)) from None
