"""Dataset discovery and schema contract checks (pyarrow + s3fs; no Ray).

The engine never lets Ray Data list a prefix itself: listing is done once here (local or s3fs),
hive ``date=YYYY-MM-DD`` partitions outside the configured time range are pruned, every file's
footer is read (in threads) and checked against the data contract, and Ray Data then reads the
explicit file list with the unified schema. A corrupt file, a missing column or a column whose
type cannot serve its role fails fast, naming the file, column and row count.

Listing is :mod:`rayeval.io.listing`, the dataset types :mod:`rayeval.io.datasets`; this module
reads the footers, unifies the schema and checks the contract.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Iterable, Literal, Optional

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from rayeval.config import StorageConfig
# the dataset types and the listing, re-exported from here as before
from rayeval.io.datasets import DatasetInfo, FileInfo, InputError  # noqa: F401
from rayeval.io.listing import (_fingerprint, changed_files, etag_fingerprints,  # noqa: F401
                                etag_of, list_files, resolve_filesystem, retry_detail)


Role = Literal["any", "numeric", "timestamp", "id", "score", "class"]


def _read_footer(fs: pafs.FileSystem, info: pafs.FileInfo) -> tuple[pa.Schema, int]:
    try:
        with fs.open_input_file(info.path) as f:
            md = pq.ParquetFile(f).metadata
            return md.schema.to_arrow_schema(), md.num_rows
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError on corrupt files
        raise InputError(f"Cannot read Parquet footer of {info.path} ({info.size} bytes): "
                         f"{type(e).__name__}: {e}{retry_detail(e)}") from None


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
