"""Where a config's relative local paths point (pure: no Ray, no I/O but ``os.getcwd``).

A relative local path in a config (``inputs.*.uri``, ``drift.reference.uri``, ``outputs.path``,
a ``sqlite:///`` tracking URI) means: relative to the *base directory*. That is

- ``--base-dir DIR`` of ``rayeval run`` / ``validate`` and the ``jobs/`` entry points, else the
  ``RAYEVAL_BASE_DIR`` environment variable;
- else the current directory, except inside a job started with ``ray job submit
  --working-dir``: its current directory is Ray's temporary copy of the uploaded folder
  (``.../runtime_resources/working_dir_files/_ray_pkg_<hash>``), which holds no data (the
  ``.rayignore`` keeps data out of the upload) and is deleted with the job, so a relative path
  there is refused with an error that says what to pass instead.

The README's commands pass ``--base-dir "$PWD"``: the submitting shell expands it, so a local
head (or a cluster sharing that filesystem) reads and writes where the user is. On a cluster
without that folder use absolute paths on shared storage or ``s3://``.
"""

from __future__ import annotations

import os
from typing import Optional

#: config fields (dotted) holding a local path or URI that a base directory resolves
PATH_FIELDS = ("inputs.predictions.uri", "inputs.features.uri", "inputs.labels.uri",
               "drift.reference.uri", "outputs.path", "outputs.mlflow.tracking_uri",
               "scoring.registry_uri")
ENV_BASE_DIR = "RAYEVAL_BASE_DIR"
_SQLITE = "sqlite:///"


def ray_working_dir(cwd: Optional[str] = None) -> Optional[str]:
    """The current directory when it is a Ray job's ``working_dir`` copy (a folder under
    ``runtime_resources/working_dir_files/``), else ``None``."""
    cwd = os.path.abspath(cwd or os.getcwd())
    return cwd if f"{os.sep}working_dir_files{os.sep}" in cwd + os.sep else None


def base_dir(given: Optional[str] = None) -> Optional[str]:
    """The absolute base directory: ``given``, else ``RAYEVAL_BASE_DIR``, else ``None``."""
    d = given or os.environ.get(ENV_BASE_DIR) or None
    return None if d is None else os.path.abspath(os.path.expanduser(d))


def is_relative_local(value: str) -> bool:
    """``value`` is a relative local path (no scheme, not absolute) or a relative
    ``sqlite:///`` URI."""
    if value.startswith(_SQLITE):
        value = value[len(_SQLITE):]
    elif "://" in value:
        return False
    return bool(value) and not os.path.isabs(os.path.expanduser(value))


def _resolve(value: str, base: str) -> str:
    if value.startswith(_SQLITE):
        return _SQLITE + os.path.join(base, value[len(_SQLITE):])
    return os.path.join(base, os.path.expanduser(value))


def resolve_paths(data: dict, base: Optional[str], source: str = "<config>") -> dict:
    """Resolve the relative local paths of ``PATH_FIELDS`` in the raw config ``data`` (a dict,
    changed in place and returned) against ``base``.

    Without ``base``, relative paths stay relative to the current directory, unless that is a
    Ray job's working_dir copy (:func:`ray_working_dir`).

    Raises:
        ValueError: a relative path inside a Ray job's working_dir copy without a base
            directory (the message names the field, the path and what to pass instead).
    """
    copy = None if base else ray_working_dir()
    for dotted in PATH_FIELDS:
        parent, key = _lookup(data, dotted)
        value = parent.get(key) if parent is not None else None
        if not isinstance(value, str) or not is_relative_local(value):
            continue
        if base:
            parent[key] = _resolve(value, base)
        elif copy:
            raise ValueError(
                f"{source}: {dotted} is the relative path {value!r}, and this job runs in "
                f"Ray's temporary copy of its working_dir ({copy}): inputs there are absent "
                f"(.rayignore keeps data out of the upload) and outputs would be deleted with "
                f"the job. Pass --base-dir \"$PWD\" to the job (the submitting directory, "
                f"for a local head or a shared filesystem), set {ENV_BASE_DIR}, or use an "
                f"absolute path or s3:// URI")
    return data


def _lookup(data: dict, dotted: str):
    """``(mapping holding the last key, last key)`` of ``dotted`` in ``data``, or
    ``(None, key)`` when a level is missing."""
    *parents, key = dotted.split(".")
    node = data
    for p in parents:
        node = node.get(p) if isinstance(node, dict) else None
        if node is None:
            return None, key
    return (node, key) if isinstance(node, dict) else (None, key)
