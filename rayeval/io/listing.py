"""Listing input files (pyarrow + s3fs; no Ray): the filesystem of a URI, the explicit file
list with hive ``date=YYYY-MM-DD`` partitions outside the time range pruned, each file's
fingerprint (ETag on S3, else mtime), the check that listed files did not change while read,
and the retry history of a storage error. Re-exported by :mod:`rayeval.io.readers`."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Optional

import pyarrow.fs as pafs

from rayeval.config import StorageConfig, storage_options
from rayeval.io.datasets import DatasetInfo, InputError


def resolve_filesystem(uri: str, storage: StorageConfig) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and in-filesystem path of ``uri`` (``s3://`` through s3fs)."""
    if uri.startswith("s3://") or uri.startswith("s3a://"):
        import s3fs

        fs = s3fs.S3FileSystem(**_worker_storage_options(storage))
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), uri.split("://", 1)[1].rstrip("/")
    if "://" in uri and not uri.startswith("file://"):
        raise InputError(f"Unsupported URI scheme in {uri!r}: use a local path or s3://")
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    import os

    return pafs.LocalFileSystem(), os.path.abspath(path)


def _worker_storage_options(storage: StorageConfig) -> dict:
    """s3fs options for a filesystem that is pickled to Ray workers. The endpoint is already
    explicit (:func:`storage_options`); credentials the driver takes from ``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY`` (/ ``AWS_SESSION_TOKEN``) are made explicit too, because a worker
    does not share the driver's environment (started before the variables were set, or on
    another node) and s3fs then falls back to anonymous access: the driver lists files that
    every worker reports as missing."""
    import os

    opts = storage_options(storage)
    env = os.environ
    if (not storage.anon and "key" not in opts and "secret" not in opts
            and env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY")):
        opts.update(key=env["AWS_ACCESS_KEY_ID"], secret=env["AWS_SECRET_ACCESS_KEY"])
        if env.get("AWS_SESSION_TOKEN"):
            opts["token"] = env["AWS_SESSION_TOKEN"]
    return opts


_DATE_PART = re.compile(r"(?:^|/)(?:date|dt|day|ds)=(\d{4}-\d{2}-\d{2})(?:/|$)")


def _partition_date(path: str) -> Optional[date]:
    m = _DATE_PART.search(path)
    if not m:
        return None
    try:
        return date.fromisoformat(m.group(1))
    except ValueError:
        return None


def list_files(uri: str, storage: StorageConfig, start: Optional[datetime] = None,
               end: Optional[datetime] = None) -> tuple[pafs.FileSystem, list[pafs.FileInfo]]:
    """List the Parquet files of a dataset, pruning hive date partitions outside ``[start, end)``.

    A partition ``date=D`` holds rows whose day is D; it is kept when D is in
    ``[start.date(), end)`` (a whole day that overlaps the range). On S3 each file's ETag is
    kept too (:func:`etag_of`): it goes into the file's fingerprint.

    Raises:
        InputError: the path does not exist, or holds no Parquet file.
    """
    fs, path = resolve_filesystem(uri, storage)
    try:
        info = fs.get_file_info(path)
    except Exception as e:  # OSError, or botocore's EndpointConnectionError (no OSError)
        raise InputError(f"Cannot access {uri}: {type(e).__name__}: {e}{retry_detail(e)}"
                         ) from None
    if info.type == pafs.FileType.NotFound:
        where = "" if "://" in uri or uri.startswith("/") else f" (resolved to {path})"
        raise InputError(f"Input path does not exist: {uri}{where}")
    if info.type == pafs.FileType.File:
        infos = [info]
    else:
        sel = pafs.FileSelector(path, recursive=True)
        try:
            listed = fs.get_file_info(sel)
        except Exception as e:  # as above
            raise InputError(f"Cannot list {uri}: {type(e).__name__}: {e}{retry_detail(e)}"
                             ) from None
        infos = [i for i in listed if i.type == pafs.FileType.File
                 and not _hidden(i.path[len(path):]) and i.path.endswith(".parquet")]
    if start is not None or end is not None:
        kept = []
        for i in infos:
            d = _partition_date(i.path[len(path):])
            if d is not None and ((start is not None and d < start.date())
                                  or (end is not None and datetime(d.year, d.month, d.day,
                                                                   tzinfo=end.tzinfo) >= end)):
                continue
            kept.append(i)
        infos = kept
    if not infos:
        raise InputError(f"No Parquet files under {uri}"
                         + (" in the configured time range" if start or end else ""))
    infos.sort(key=lambda i: i.path)
    return fs, infos


def etag_of(fs: pafs.FileSystem, path: str) -> str | None:
    """The ETag s3fs cached for ``path`` when it listed it (no request), else ``None``."""
    handler = getattr(fs, "handler", None)
    inner = getattr(handler, "fs", None)
    cache = getattr(inner, "dircache", None)
    if not cache:
        return None
    for entry in cache.get(path.rsplit("/", 1)[0], ()) or ():
        if isinstance(entry, dict) and entry.get("name") == path:
            etag = entry.get("ETag") or entry.get("etag")
            return etag.strip('"') if etag else None
    return None


def etag_fingerprints(fs: pafs.FileSystem, infos: list[pafs.FileInfo]) -> list[str]:
    """Each listed file's fingerprint (``etag=`` on S3, ``mtime=`` locally), as the manifest
    records it."""
    return [_fingerprint(fs, i) for i in infos]


def changed_files(ds: "DatasetInfo", storage: StorageConfig) -> list[str]:
    """The files of ``ds`` that are gone or differ (size, ETag or mtime) from when ``ds`` was
    inspected, one line each naming the file and what changed; empty when all are unchanged.
    One fresh listing of the dataset (no footer reads)."""
    fs, path = resolve_filesystem(ds.uri, storage)
    inner = getattr(getattr(fs, "handler", None), "fs", None)
    if inner is not None and hasattr(inner, "invalidate_cache"):
        inner.invalidate_cache()
    try:
        _, infos = list_files(ds.uri, storage)
    except InputError:
        infos = []
    now = {i.path: (i.size, _fingerprint(fs, i)) for i in infos}
    out = []
    for f in ds.files:
        cur = now.get(f.path)
        if cur is None:
            out.append(f"{f.path}: gone (listed with {f.size} bytes, {f.fingerprint})")
        elif cur != (f.size, f.fingerprint):
            out.append(f"{f.path}: changed from {f.size} bytes, {f.fingerprint} to "
                       f"{cur[0]} bytes, {cur[1]}")
    return out


def _hidden(rel: str) -> bool:
    return any(p.startswith(("_", ".")) for p in rel.split("/") if p)


def retry_detail(e: BaseException) -> str:
    """`` (S3 GetObject: SlowDown after 8 attempts per request ...)``: the request and attempts
    botocore made, from the error's cause chain (s3fs's translated ``OSError`` drops them);
    empty for other errors."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = str(e)
        m = re.search(r"\((\w+)\) when calling the (\w+) operation(?: \(reached max retries: "
                      r"(\d+)\))?", text)
        if m:
            import s3fs

            tries = (f" after {int(m.group(3)) + 1} attempts per request (botocore: reached max "
                     f"retries: {m.group(3)}) in up to {s3fs.S3FileSystem.retries} s3fs rounds"
                     if m.group(3) else "")
            return f" (S3 {m.group(2)}: {m.group(1)}{tries})"
        e = e.__cause__ or e.__context__
    return ""


def _fingerprint(fs: pafs.FileSystem, info: pafs.FileInfo) -> str:
    """``etag=...`` on S3 (content-derived), else ``mtime=...`` (local files)."""
    etag = etag_of(fs, info.path)
    if etag:
        return f"etag={etag}"
    mtime = info.mtime.isoformat() if info.mtime else ""
    return f"mtime={mtime}"
