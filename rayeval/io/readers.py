"""Dataset discovery and schema contract checks (pyarrow + s3fs; no Ray).

The engine never lets Ray Data list a prefix itself: listing is done once here (local or s3fs),
hive ``date=YYYY-MM-DD`` partitions outside the configured time range are pruned, every file's
footer is read (in threads) and checked against the data contract, and Ray Data then reads the
explicit file list with the unified schema. A corrupt file, a missing column or a column whose
type cannot serve its role fails fast, naming the file, column and row count.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Iterable, Literal, Optional

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from rayeval.config import StorageConfig, storage_options

Role = Literal["any", "numeric", "timestamp", "id", "score", "class"]


class InputError(ValueError):
    """Bad input data (missing path, empty dataset, corrupt file, missing or mistyped column).
    The message names the dataset/file, the column and the row count when known."""


@dataclass(frozen=True)
class FileInfo:
    """One input file: path (without scheme for s3), size in bytes, rows, and an ETag or mtime."""

    path: str
    size: int
    num_rows: int
    fingerprint: str


@dataclass(frozen=True)
class DatasetInfo:
    """A resolved dataset: its URI, filesystem, files and their unified Arrow schema.

    ``absent``: column -> the files (paths) of the dataset whose footer lacks it (read as null
    there); columns present in every file are not listed."""

    uri: str
    filesystem: pafs.FileSystem
    files: tuple[FileInfo, ...]
    schema: pa.Schema
    absent: dict = field(default_factory=dict)
    #: timestamp column -> the files where it is naive while other files give it a time zone
    naive: dict = field(default_factory=dict)

    def absent_warnings(self, columns: Iterable[str]) -> list[str]:
        """One message per column of ``columns`` absent from some (not all) files: how many
        files and rows, and the first such file."""
        rows = {f.path: f.num_rows for f in self.files}
        out = []
        for c in columns:
            paths = self.absent.get(c)
            if not paths or c not in self.schema.names:
                continue
            n = sum(rows[p] for p in paths)
            out.append(f"column {c!r} is absent from {len(paths)} of {len(self.files)} files of "
                       f"{self.uri} ({n:,} rows, e.g. {paths[0]}): read as null there")
        return out

    def timezone_warnings(self) -> list[str]:
        """One message per timestamp column that is naive in some files and zoned in others
        (naive values are read as UTC: right when the writer meant UTC, shifted otherwise)."""
        return [f"column {c!r} has no time zone in {len(p)} of {len(self.files)} files of "
                f"{self.uri} (e.g. {p[0]}) but one in the others: its naive values are read "
                f"as UTC" for c, p in sorted(self.naive.items())]

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.files]

    @property
    def num_rows(self) -> int:
        return sum(f.num_rows for f in self.files)


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


def _read_footer(fs: pafs.FileSystem, info: pafs.FileInfo) -> tuple[pa.Schema, int]:
    try:
        with fs.open_input_file(info.path) as f:
            md = pq.ParquetFile(f).metadata
            return md.schema.to_arrow_schema(), md.num_rows
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError on corrupt files
        raise InputError(f"Cannot read Parquet footer of {info.path} ({info.size} bytes): "
                         f"{type(e).__name__}: {e}{retry_detail(e)}") from None


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


def inspect_dataset(uri: str, storage: StorageConfig, start: Optional[datetime] = None,
                    end: Optional[datetime] = None, threads: int = 16) -> DatasetInfo:
    """List a dataset, read every footer and unify the schemas.

    Schema differences across files are resolved as a Parquet reader would: integer widths
    and float widths promote (int16 + int64 -> int64), a column that is null-typed in some files
    takes the type of the others, a column absent from some files is read as null there (its
    rows are then counted as invalid by the evaluator, and the files are listed in
    ``DatasetInfo.absent`` for the run's warnings). Incompatible types (string vs int)
    raise, naming both files.

    Raises:
        InputError: missing path, no files, corrupt file, incompatible schemas.
    """
    fs, infos = list_files(uri, storage, start, end)
    with ThreadPoolExecutor(max_workers=min(threads, len(infos))) as ex:
        footers = list(ex.map(lambda i: _read_footer(fs, i), infos))
    schemas = [_normalise_timestamps(s) for s, _ in footers]
    for i, sch in zip(infos, schemas):
        dup = sorted({n for n in sch.names if sch.names.count(n) > 1})
        if dup:
            raise InputError(f"{i.path} has duplicate column name(s) {dup} "
                             f"({sch.names.count(dup[0])} columns named {dup[0]!r}): a column "
                             f"must be unambiguous")
    try:
        unified = pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise InputError(f"Incompatible schemas across the files of {uri}: {e}. "
                         + _first_conflict(infos, schemas)) from None
    files = tuple(FileInfo(i.path, i.size, n, _fingerprint(fs, i))
                  for i, (_, n) in zip(infos, footers))
    absent: dict[str, list[str]] = {}
    for i, sch in zip(infos, schemas):
        for c in set(unified.names).difference(sch.names):
            absent.setdefault(c, []).append(i.path)
    naive: dict[str, list[str]] = {}
    zoned: set[str] = set()
    for i, (sch, _) in zip(infos, footers):
        for fld in sch:
            if pa.types.is_timestamp(fld.type):
                if fld.type.tz is None:
                    naive.setdefault(fld.name, []).append(i.path)
                else:
                    zoned.add(fld.name)
    naive = {c: p for c, p in naive.items() if c in zoned}
    return DatasetInfo(uri, fs, files, unified, absent, naive)


def _normalise_timestamps(schema: pa.Schema) -> pa.Schema:
    """Timestamps of any unit and zone are read as ``timestamp[us, tz=UTC]``: naive values are
    taken as UTC (DESIGN section 4), so files that mix naive and zoned timestamps unify."""
    for i, fld in enumerate(schema):
        if pa.types.is_timestamp(fld.type):
            schema = schema.set(i, fld.with_type(pa.timestamp("us", tz="UTC")))
    return schema


def _first_conflict(infos, schemas) -> str:
    seen: dict[str, tuple[pa.DataType, str]] = {}
    for i, s in zip(infos, schemas):
        for fld in s:
            if pa.types.is_null(fld.type):
                continue
            prev = seen.get(fld.name)
            if prev is None:
                seen[fld.name] = (fld.type, i.path)
            elif _kind(prev[0]) != _kind(fld.type):
                return (f"Column {fld.name!r} is {prev[0]} in {prev[1]} but {fld.type} "
                        f"in {i.path}.")
    return ""


def _fingerprint(fs: pafs.FileSystem, info: pafs.FileInfo) -> str:
    """``etag=...`` on S3 (content-derived), else ``mtime=...`` (local files)."""
    etag = etag_of(fs, info.path)
    if etag:
        return f"etag={etag}"
    mtime = info.mtime.isoformat() if info.mtime else ""
    return f"mtime={mtime}"


def _kind(t: pa.DataType) -> str:
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        return "int"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        return "string"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "timestamp"
    if pa.types.is_null(t):
        return "null"
    return str(t)


_ALLOWED: dict[str, set[str]] = {
    "timestamp": {"timestamp", "string"},
    "numeric": {"int", "float"},
    "score": {"float", "int"},
    "id": {"int", "string"},
    "class": {"int", "string", "float"},
    "any": {"int", "float", "string", "timestamp"},
}


def check_columns(ds: DatasetInfo, required: dict[str, Role]) -> None:
    """Check that every required column exists with a type fit for its role.

    Args:
        ds: the inspected dataset.
        required: column name -> role (``timestamp``, ``numeric``, ``score``, ``id``,
            ``class``, ``any``).

    Raises:
        InputError: naming the dataset, the column, its type and the row count.
    """
    names = set(ds.schema.names)
    missing = [c for c in required if c not in names]
    if missing:
        raise InputError(f"Dataset {ds.uri} ({ds.num_rows} rows in {len(ds.files)} files) has no "
                         f"column(s) {missing}; available: {sorted(names)}")
    for col, role in required.items():
        t = ds.schema.field(col).type
        k = _kind(t)
        if k == "null":
            raise InputError(f"Column {col!r} of {ds.uri} is null in every file "
                             f"({ds.num_rows} rows)")
        if k not in _ALLOWED[role]:
            raise InputError(f"Column {col!r} of {ds.uri} has type {t}, expected a {role} "
                             f"column ({' or '.join(sorted(_ALLOWED[role]))}); "
                             f"{ds.num_rows} rows")


def columns_present(ds: DatasetInfo, cols: Iterable[str]) -> list[str]:
    """The subset of ``cols`` present in the dataset, in order."""
    names = set(ds.schema.names)
    return [c for c in cols if c in names]


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast one batch to the dataset's unified ``schema``: columns absent from its file become
    nulls (their rows are then counted invalid), narrower types are widened, timestamps become
    UTC, truncated to the microsecond. Raises InputError naming the column when a value cannot
    be cast."""
    cols = []
    for fld in schema:
        if fld.name not in table.column_names:
            cols.append(pa.nulls(table.num_rows, type=fld.type))
            continue
        col = table[fld.name]
        if col.type != fld.type:
            try:
                # timestamps are kept to the microsecond: finer digits (pandas writes ns) are
                # truncated, never an error
                col = col.cast(fld.type, safe=not pa.types.is_timestamp(fld.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise InputError(f"Column {fld.name!r}: cannot cast {col.type} to {fld.type} "
                                 f"({table.num_rows} rows in this block): {e}") from None
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=schema)


def read_table(ds: DatasetInfo, columns: list[str]) -> pa.Table:
    """Read ``columns`` of every file of ``ds`` on this process with pyarrow's threaded scanner,
    conformed to the unified schema (used for the labels, which are broadcast anyway).

    Raises:
        InputError: naming the file that fails to read.
    """
    import pyarrow.dataset as pads

    schema = pa.schema([ds.schema.field(c) for c in columns])
    tables = []
    for f in ds.files:  # per file: the schemas may differ across files (see inspect_dataset)
        try:
            part = pads.dataset(f.path, filesystem=ds.filesystem, format="parquet")
            cols = [c for c in columns if c in part.schema.names]
            tables.append(conform(part.to_table(columns=cols), schema))
        except (OSError, pa.ArrowInvalid) as e:
            raise InputError(f"Cannot read {f.path}: {e}") from None
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables)

