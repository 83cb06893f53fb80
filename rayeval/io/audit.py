"""The append-only ``audit`` table: one record per run (who evaluated what, when, and what came
of it), next to the results under ``<outputs.path>/audit/``.

Each record is its own Parquet file ``audit/run_date=YYYY-MM-DD/<time>-<run_id>-<nonce>.parquet``
created only if absent (:func:`rayeval.io.exclusive.put_if_absent`: a hard link locally, a
conditional ``PutObject`` with ``If-None-Match: *`` on S3), so a record is never rewritten and a
rerun of the same run id adds a record instead of replacing one. The folder reads as one table
with pandas, pyarrow.dataset and DuckDB; every file has :data:`AUDIT_SCHEMA`.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import shlex
import socket
import sys
import uuid
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from rayeval.config import redact_uri
from rayeval.io.exclusive import current_user, put_if_absent

#: one fixed schema, also for a failed run's record (null verdict, hash or fingerprint)
AUDIT_SCHEMA = pa.schema([
    ("audit_id", pa.string()),
    ("run_id", pa.string()),
    ("time", pa.timestamp("us", tz="UTC")),
    ("user", pa.string()),
    ("host", pa.string()),
    ("command", pa.string()),
    ("config_hash", pa.string()),
    ("input_fingerprint", pa.string()),
    ("output_location", pa.string()),
    ("status", pa.string()),          # committed | skipped | failed
    ("gate_verdict", pa.string()),    # passed | failed | none (no gates) | null (no verdict)
    ("actions", pa.list_(pa.string())),
    ("error", pa.string()),
    ("rayeval_version", pa.string()),
])

_SECRET_KEY = re.compile(r"(secret|password|passwd|token|access_key|credential|api_key)",
                         re.IGNORECASE)


def redact_command(argv: Iterable[str]) -> str:
    """The command line with secrets removed: the value of a ``--set key=value`` (or any
    ``key=value`` word) whose key names a secret becomes ``***``, and URIs lose their
    ``user:password@``."""
    out = []
    for word in argv:
        word = str(word)
        key, eq, _ = word.partition("=")
        if eq and _SECRET_KEY.search(key):
            word = f"{key}=***"
        out.append(redact_uri(word))
    return shlex.join(out)


def audit_record(run_id: str, *, command: str | None = None, config_hash: str | None = None,
                 input_fingerprint: str | None = None, output_location: str = "",
                 status: str, gate_verdict: str | None = None,
                 actions: Iterable[str] = (), error: str | None = None) -> dict:
    """One audit row (``time`` now, ``user`` and ``host`` of this process; ``command``
    defaults to this process's redacted command line)."""
    import rayeval

    return {"audit_id": uuid.uuid4().hex, "run_id": run_id,
            "time": dt.datetime.now(dt.timezone.utc), "user": current_user(),
            "host": socket.gethostname(),
            "command": command if command is not None else redact_command(sys.argv),
            "config_hash": config_hash, "input_fingerprint": input_fingerprint,
            "output_location": redact_uri(output_location), "status": status,
            "gate_verdict": gate_verdict, "actions": list(actions),
            "error": redact_uri(error), "rayeval_version": rayeval.__version__}


def append_audit(fs, root: str, record: dict) -> str:
    """Append ``record`` (see :func:`audit_record`) to the audit table under ``root`` of
    ``fs``; returns the new file's path. Never replaces an existing file.

    Raises:
        OSError: the record could not be written (the caller decides whether that fails the run).
    """
    table = pa.Table.from_pylist([record], schema=AUDIT_SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    t = record["time"]
    name = f"{t.strftime('%Y%m%dT%H%M%S%fZ')}-{record['run_id']}-{record['audit_id'][:8]}.parquet"
    path = f"{root}/audit/run_date={t.date().isoformat()}/{name}"
    if not put_if_absent(fs, path, buf.getvalue()):  # a uuid collision: never overwrite
        raise FileExistsError(f"audit record {path} exists")
    return path


def read_audit(path: str, storage_options: dict | None = None):
    """The audit table under an output prefix as a DataFrame sorted by time (empty with
    :data:`AUDIT_SCHEMA`'s columns when no run wrote one)."""
    import pyarrow.dataset as pads

    from rayeval.io.writers import output_fs

    fs, root = output_fs(path, storage_options)
    base = f"{root}/audit"
    if not fs.exists(base):
        return AUDIT_SCHEMA.empty_table().to_pandas()
    ds = pads.dataset(base, filesystem=fs, format="parquet", schema=AUDIT_SCHEMA,
                      partitioning=None)
    return ds.to_table().to_pandas().sort_values("time", kind="stable").reset_index(drop=True)
