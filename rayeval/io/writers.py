"""Atomic writers for the output tables, the run manifest and the report (pyarrow + fsspec).

Layout under the output prefix (local path or ``s3://``), readable by pandas, DuckDB and Spark as
hive-partitioned datasets::

    metrics/run_date=YYYY-MM-DD/<run_id>.parquet
    confusion/run_date=.../<run_id>.parquet
    drift/run_date=.../<run_id>.parquet
    drift_histograms/run_date=.../<run_id>.parquet   (reference vs current bin shares, overall)
    gates/run_date=.../<run_id>.parquet
    coverage/run_date=.../<run_id>.parquet
    invalid/run_date=.../<run_id>.parquet
    manifests/<run_id>.json
    reports/<run_id>.html

Every file of a run is first written under ``_staging/<run_id>-<nonce>/`` (hidden from readers by
its leading underscore), then committed by one-step replaces, the manifest last (it marks a
complete commit); files of the same ``run_id`` under other run dates are removed after, so a
rerun replaces instead of duplicating. A failure before commit leaves no visible output (the
staging folder is removed).

Concurrent runs of one run id: the commit runs under :class:`~rayeval.io.exclusive.CommitLock`
(``_locks/<run_id>.lock``, created only if absent), and a run whose run id was committed by
another run after it started (the manifest's ``commit_id`` changed) fails with
:class:`~rayeval.io.exclusive.ConcurrentRunError` instead of replacing that run's files: the
first run to commit wins, the tables of one run id always come from one run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import uuid
from typing import Mapping

import fsspec
import pandas as pd
import pyarrow.parquet as pq

from rayeval.io.exclusive import CommitLock, ConcurrentRunError
from rayeval.io.schemas import SCHEMAS, to_arrow

TABLES = tuple(SCHEMAS)


def output_fs(path: str, storage_options: dict | None = None):
    """fsspec filesystem and normalised root for an output prefix."""
    if path.startswith("s3://"):
        fs = fsspec.filesystem("s3", **(storage_options or {}))
        return fs, path[len("s3://"):].rstrip("/")
    fs = fsspec.filesystem("file")
    return fs, os.path.abspath(path)


def check_output_writable(path: str) -> None:
    """Fail before any computation when a local output prefix cannot be written (a file, or a
    folder without write permission). ``s3://`` prefixes are checked at commit.

    Raises:
        InputError: naming the path and the reason.
    """
    from rayeval.io.readers import InputError

    if path.startswith("s3://"):
        return
    p = os.path.abspath(path)
    # probe the prefix itself when it exists, else its nearest existing ancestor: nothing is
    # created here, so a run that fails later (bad input) leaves no empty output folder behind
    anc = p
    while not os.path.exists(anc) and os.path.dirname(anc) != anc:
        anc = os.path.dirname(anc)
    try:
        if not os.path.isdir(anc):
            raise NotADirectoryError(20, f"{anc} is a file")
        os.rmdir(tempfile.mkdtemp(prefix=".rayeval-write-probe-", dir=anc))
    except OSError as e:
        raise InputError(f"Output path {path!r} is not writable: {e.strerror or e}") from None


def remove_staging(fs, folder: str) -> None:
    """Remove a staging ``folder`` (fsspec path) and its parent ``_staging`` when left empty;
    errors are ignored (cleanup only)."""
    try:
        if fs.exists(folder):
            fs.rm(folder, recursive=True)
        parent = folder.rstrip("/").rsplit("/", 1)[0]
        if fs.exists(parent) and not fs.ls(parent):
            fs.rm(parent, recursive=True)
    except OSError:
        pass


def commit_token(fs, root: str, run_id: str) -> str | None:
    """What marks the current commit of ``run_id`` under ``root`` of ``fs`` (see
    :func:`output_fs`): its manifest's ``commit_id`` (``None`` when the run id was never
    committed there). Read at a run's start and compared at its commit (see :class:`RunWriter`)."""
    if "s3" in str(getattr(fs, "protocol", "")):
        fs.invalidate_cache(f"{root}/manifests")
    try:
        with fs.open(f"{root}/manifests/{run_id}.json", "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    try:
        token = json.loads(data).get("commit_id")
    except ValueError:
        token = None
    if token is None:  # a manifest written before commit ids: its content stands for it
        import hashlib

        token = "sha256:" + hashlib.sha256(data).hexdigest()[:16]
    return token


class RunWriter:
    """Stages a run's outputs and commits them atomically.

    Args:
        path: output prefix (local path or ``s3://bucket/prefix``).
        run_id: the run identifier (file names); a rerun with the same id replaces.
        storage_options: s3fs options for ``s3://`` prefixes.
        run_date: partition value (UTC date; default the date of ``run_started_at``).
        run_started_at: the run's start (UTC; default now), the ``run_started_at`` column of
            every table.
        expect_commit: the run id's :func:`commit_token` when this run started; at commit a
            different token (another run committed meanwhile) raises ``ConcurrentRunError``.
            ``...`` (default): no check.
        lock_wait_s: seconds to wait for another run's commit lock on the same run id.

    Use as a context manager: on an exception the staging area is removed and nothing is
    committed.
    """

    def __init__(self, path: str, run_id: str, storage_options: dict | None = None,
                 run_date: dt.date | None = None, run_started_at: dt.datetime | None = None,
                 expect_commit=..., lock_wait_s: float = 120.0):
        self.fs, self.root = output_fs(path, storage_options)
        self.uri = path
        self.run_id = run_id
        self.run_started_at = run_started_at or dt.datetime.now(dt.timezone.utc)
        self.run_date = (run_date or self.run_started_at.astimezone(dt.timezone.utc).date()
                         ).isoformat()
        #: written into the manifest (``commit_id``): identifies this commit of the run id
        self.commit_id = uuid.uuid4().hex
        self.expect_commit = expect_commit
        self.lock_wait_s = lock_wait_s
        #: how the commit went: seconds waited for the lock, a stale lock broken
        self.lock_report: dict = {}
        self.stage = f"{self.root}/_staging/{run_id}-{self.commit_id[:8]}"
        self.staged: dict[str, str] = {}  # final relative path -> staged path
        self.committed = False

    def __enter__(self) -> "RunWriter":
        self.fs.makedirs(self.stage, exist_ok=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or not self.committed:
            self.abort()

    def final_path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def table_rel(self, table: str) -> str:
        return f"{table}/run_date={self.run_date}/{self.run_id}.parquet"

    def write_table(self, name: str, df: pd.DataFrame) -> str:
        """Stage one output table (a key of :data:`~rayeval.io.schemas.SCHEMAS`, written with
        exactly that schema, see :func:`~rayeval.io.schemas.to_arrow`); returns its final
        relative path."""
        rel = self.table_rel(name)
        tbl = to_arrow(name, df, self.run_started_at)
        staged = f"{self.stage}/{rel}"
        self.fs.makedirs(staged.rsplit("/", 1)[0], exist_ok=True)
        with self.fs.open(staged, "wb") as f:
            pq.write_table(tbl, f, compression="zstd")
        self.staged[rel] = staged
        return rel

    def write_bytes(self, rel: str, data: bytes) -> str:
        staged = f"{self.stage}/{rel}"
        self.fs.makedirs(staged.rsplit("/", 1)[0], exist_ok=True)
        with self.fs.open(staged, "wb") as f:
            f.write(data)
        self.staged[rel] = staged
        return rel

    def write_json(self, rel: str, obj: Mapping) -> str:
        return self.write_bytes(rel, json.dumps(obj, indent=2, default=str).encode())

    def adopt(self, staged_dir: str, table: str) -> int:
        """Stage every file under ``staged_dir`` (written by workers, e.g. the scored rows of
        ``outputs.predictions``) as ``<table>/<its path under staged_dir>``; at commit, the
        files of this run id under ``table/`` that the new run did not write are removed (a
        rerun replaces). The files' names must start with ``<run_id>~`` (``~`` is never part
        of a run id). Returns the count."""
        n = 0
        if self.fs.exists(staged_dir):
            for f in self.fs.find(staged_dir):
                self.staged[f"{table}/{f[len(staged_dir):].lstrip('/')}"] = f
                n += 1
        self.adopted = getattr(self, "adopted", []) + [table]
        return n

    def staged_local_path(self, rel: str) -> str | None:
        """Local path of a staged file (for MLflow artifacts), or None on object storage."""
        p = self.staged.get(rel)
        return p if p and not self.uri.startswith("s3://") else None

    def commit(self) -> dict[str, str]:
        """Move every staged file into place, the manifest last, then drop stale files of this
        run id under other run dates; returns relative path -> final path.

        Each file is replaced in one step (``os.replace`` locally: readers see the old or the
        new file, never none; an object copy on S3), and the manifest, moved last, marks a
        complete commit: a crash during the commit leaves at worst some tables of the new run
        next to others of the old one, without the new manifest, and a rerun repairs it.

        Raises:
            ConcurrentRunError: another run holds the run id's commit lock longer than
                ``lock_wait_s``, or committed the run id after this run started; nothing of
                this run is committed then.
        """
        with CommitLock(self.fs, self.root, self.run_id, wait_s=self.lock_wait_s) as lock:
            if self.expect_commit is not ...:
                now = commit_token(self.fs, self.root, self.run_id)
                if now != self.expect_commit:
                    raise ConcurrentRunError(
                        f"Run id {self.run_id!r} under {self.uri} was committed by another run "
                        f"(commit {now}) while this run was computing: the first run to commit "
                        f"wins, so nothing of this run was committed. Rerun to replace it.")
            out = self._commit_locked()
            self.lock_report = {"lock_waited_s": lock.waited_s,
                                "stale_lock_broken": lock.broke}
        return out

    def _commit_locked(self) -> dict[str, str]:
        local = not self.uri.startswith("s3://")
        out = {}
        for rel, staged in sorted(self.staged.items(),
                                  key=lambda kv: kv[0].startswith("manifests/")):
            final = self.final_path(rel)
            self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
            if local:
                os.replace(staged, final)
            else:
                self.fs.mv(staged, final)
            out[rel] = final
        for table in TABLES:
            base = f"{self.root}/{table}"
            if not self.fs.exists(base):
                continue
            for old in self.fs.glob(f"{base}/run_date=*/{self.run_id}.parquet"):
                if old.rstrip("/") != self.final_path(self.table_rel(table)):
                    self.fs.rm(old)
        for table in getattr(self, "adopted", []):
            new = {self.final_path(rel) for rel in self.staged if rel.startswith(table + "/")}
            for old in self.fs.glob(f"{self.root}/{table}/**/{self.run_id}~*.parquet"):
                if old.rstrip("/") not in new:
                    self.fs.rm(old)
        self.committed = True
        self._remove_stage()
        return out

    def abort(self) -> None:
        self._remove_stage()

    def _remove_stage(self) -> None:
        try:
            if self.fs.exists(self.stage):
                self.fs.rm(self.stage, recursive=True)
            parent = f"{self.root}/_staging"
            if self.fs.exists(parent) and not self.fs.ls(parent):
                self.fs.rm(parent, recursive=True)
        except (OSError, FileNotFoundError):
            pass
