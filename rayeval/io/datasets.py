"""What rayeval knows of an input dataset once listed and inspected (:class:`DatasetInfo`,
:class:`FileInfo`), and the error of bad input (:class:`InputError`). Re-exported by
:mod:`rayeval.io.readers`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import pyarrow as pa
import pyarrow.fs as pafs


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
