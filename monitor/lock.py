"""One writer per database: an exclusive ``flock`` on ``<database>.lock`` held for the process's life.

SQLite would let two daemons write the same file (WAL serialises them), but
both would poll every feed, double the load on every site, and race on feed
state. ``flock`` is released by the kernel when the process dies, even by
``kill -9``, so a crash never leaves a stale lock behind; the PID written into
the file is only there to make the refusal message useful.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import IO

from monitor.errors import StoreError


def lock_path(database: Path) -> Path:
    return Path(f"{database}.lock")


class InstanceLock:
    """Context manager: ``with InstanceLock(db):`` or ``acquire()``/``release()``; refuses with StoreError."""

    def __init__(self, database: Path) -> None:
        self.database = Path(database)
        self.path = lock_path(self.database)
        self._file: IO[str] | None = None

    def acquire(self) -> InstanceLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open until release()
        except OSError as exc:
            raise StoreError(f"{self.database}: cannot create the lock file {self.path}: {exc}") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise StoreError(f"another newsmonitor is already running on {self.database}{who}; "
                             "stop it first (only one process may write the database)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        """Unlock and close; the file is left in place (deleting it would race with a new acquirer)."""
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> InstanceLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()


def running_pid(database: Path) -> int | None:
    """The PID of the newsmonitor holding the database's lock, or None if none is running.

    Probes with a shared, non-blocking lock that is dropped at once; the window
    in which a starting daemon could see it is a few microseconds.
    """
    path = lock_path(Path(database))
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed in finally
    except OSError:
        return None
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = handle.read().strip()
            return int(holder) if holder.isdigit() else -1
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return None
    finally:
        handle.close()
