"""Create-if-absent writes and the per-run-id commit lock of an output prefix (local or ``s3://``).

Two runs that write the same run id under the same output prefix at once (a scheduled run and a
backfill of the same window) must not interleave their files. Each run commits under a lock
object ``_locks/<run_id>.lock`` created only if absent: locally ``open(..., O_CREAT | O_EXCL)``
(atomic on POSIX filesystems), on S3 a conditional ``PutObject`` with ``If-None-Match: *``
(atomic in S3 since 2024-08; moto implements it). The lock holds its holder (user, host, pid,
run, time) and a lease: a lock whose holder process is gone (same host) or whose lease expired
is stale and is broken, so a killed run never blocks the next one forever.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import socket
import time
import uuid


class ConcurrentRunError(RuntimeError):
    """Another run holds or has just committed the same run id under the same output prefix."""


def _is_s3(fs) -> bool:
    protocol = getattr(fs, "protocol", "")
    return "s3" in (protocol if isinstance(protocol, (tuple, list)) else (protocol,))


def put_if_absent(fs, path: str, data: bytes) -> bool:
    """Write ``data`` to ``path`` only if no object exists there; ``False`` if one does.

    Never replaces an object and never exposes a half-written one: locally the bytes go to a
    hidden temporary file that is hard-linked into place (``link`` fails if the target exists);
    on S3 one ``PutObject`` with ``If-None-Match: *``.
    """
    if _is_s3(fs):
        bucket, key = path.split("/", 1)
        try:
            fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        except FileExistsError:
            return False
        fs.invalidate_cache(path.rsplit("/", 1)[0])
        return True
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
    return True


def holder_info(run_id: str, lease_s: float) -> dict:
    """Who is about to hold a lock: user, host, pid, run id, UTC time and lease expiry."""
    now = dt.datetime.now(dt.timezone.utc)
    return {"run_id": run_id, "user": current_user(), "host": socket.gethostname(),
            "pid": os.getpid(), "acquired": now.isoformat(),
            "expires": (now + dt.timedelta(seconds=lease_s)).isoformat(),
            "token": uuid.uuid4().hex}


def current_user() -> str:
    """The login name of this process (``getpass.getuser``), else ``$USER``, else ``uid=<n>``."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return os.environ.get("USER") or f"uid={os.getuid()}"


def _stale(info: dict) -> bool:
    """A lock is stale when its lease expired, or its holder ran on this host and is gone."""
    try:
        if dt.datetime.fromisoformat(info["expires"]) < dt.datetime.now(dt.timezone.utc):
            return True
    except (KeyError, ValueError, TypeError):
        return True  # unreadable lock: written by no rayeval, or torn
    if info.get("host") == socket.gethostname():
        try:
            os.kill(int(info["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError, TypeError, KeyError):
            return False
    return False


def describe(info: dict) -> str:
    """A lock holder's record as one readable phrase (run, user@host, pid, since when) for
    error messages.
    """
    return (f"run {info.get('run_id')!r} of {info.get('user')}@{info.get('host')} "
            f"(pid {info.get('pid')}, since {info.get('acquired')})")


class CommitLock:
    """Exclusive lock on one run id under an output prefix, held while a run commits.

    Args:
        fs: fsspec filesystem of the prefix; root: its path inside ``fs``.
        run_id: the run id being committed.
        wait_s: how long to wait for another holder before failing.
        lease_s: after this long a holder is presumed dead and its lock is broken.

    Raises:
        ConcurrentRunError: (from ``__enter__``) the lock stayed held for ``wait_s``, naming its
            holder.
    """

    def __init__(self, fs, root: str, run_id: str, wait_s: float = 120.0,
                 lease_s: float = 900.0, poll_s: float = 0.2):
        self.fs, self.run_id = fs, run_id
        self.path = f"{root}/_locks/{run_id}.lock"
        self.wait_s, self.lease_s, self.poll_s = wait_s, lease_s, poll_s
        self.info: dict | None = None
        self.waited_s = 0.0
        self.broke: dict | None = None

    def _read(self) -> dict | None:
        try:
            with self.fs.open(self.path, "rb") as f:
                return json.loads(f.read() or b"{}")
        except FileNotFoundError:
            return None
        except (ValueError, OSError):
            return {}

    def __enter__(self) -> "CommitLock":
        t0 = time.monotonic()
        while True:
            info = holder_info(self.run_id, self.lease_s)
            if put_if_absent(self.fs, self.path, json.dumps(info).encode()):
                self.info = info
                self.waited_s = round(time.monotonic() - t0, 3)
                return self
            other = self._read()
            if other is None:
                continue  # released between our attempt and the read
            if _stale(other):
                self.broke = other
                self._remove()
                continue
            if time.monotonic() - t0 > self.wait_s:
                raise ConcurrentRunError(
                    f"Output {self.path.rsplit('/_locks/', 1)[0]} is being committed by "
                    f"{describe(other)}: waited {self.wait_s:g} s for its lock {self.path}; "
                    f"nothing was committed by this run. If that run is gone, delete the lock "
                    f"file (it expires at {other.get('expires')}).")
            time.sleep(self.poll_s)

    def __exit__(self, *exc) -> None:
        current = self._read()
        if current and self.info and current.get("token") == self.info["token"]:
            self._remove()

    def _remove(self) -> None:
        try:
            self.fs.rm(self.path)
        except FileNotFoundError:
            pass
        if _is_s3(self.fs):
            self.fs.invalidate_cache(self.path.rsplit("/", 1)[0])
