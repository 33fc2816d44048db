"""One writer per run directory: ``RUN_DIR/.rnnkit.lock``.

Two trainings writing into one run directory (two ``--resume`` of the same run, a ``--out`` that a
running job already uses) would interleave checkpoints and logs. Training holds this lock from
before it reads the directory until it returns, also on errors and Ctrl-C.

Mutual exclusion is an advisory ``flock`` on the lock file, which the kernel drops when its process
dies (even by SIGKILL); the file also records the holder's pid and host. A lock file left by a
process that is gone (same host, pid not alive) is stale and taken over; one held by a live process,
or naming another host (whose processes cannot be checked from here), is a one-line
:class:`RunLocked` that says how to clear it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from rnnkit.errors import UserError
from rnnkit.io.confine import inside_run_dir

LOCK_FILE = ".rnnkit.lock"
_MAX_READ = 4096  # the lock file is run-directory content too: read little of it

try:
    import fcntl
except ImportError:  # Windows: the pid/host record alone
    fcntl = None  # type: ignore[assignment]


class RunLocked(UserError):
    """Another process is writing into this run directory."""


def _holder(fd: int) -> dict:
    """The pid/host record in the lock file (``{}`` when missing or malformed)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        record = json.loads(os.read(fd, _MAX_READ).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except (OverflowError, OSError):
        return False
    return True


def _describe(record: dict) -> str:
    pid, host = record.get("pid"), record.get("host")
    return f"pid {pid!r} on host {str(host)[:64]!r}" if pid is not None else "another process"


def _busy(run_dir: Path, path: Path, who: str) -> RunLocked:
    return RunLocked(f"{run_dir} is in use by {who} (lock file {path}); wait for it to finish, or, if that "
                     f"process is gone, delete {path}")


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold ``run_dir``'s lock for the ``with`` block (creating ``run_dir`` if needed); released on
    exit, on errors and on KeyboardInterrupt. Raises :class:`RunLocked` if another live process holds it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = inside_run_dir(run_dir, LOCK_FILE)  # a symlinked lock file would make us write elsewhere
    host, pid = socket.gethostname(), os.getpid()
    for _ in range(20):  # retried only when a finishing holder removed the file under us
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    raise _busy(run_dir, path, _describe(_holder(fd))) from None
            try:
                same_file = os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
            except FileNotFoundError:
                same_file = False
            if not same_file:  # the previous holder unlinked it between our open and flock
                os.close(fd)
                continue
            record = _holder(fd)
            other, where = record.get("pid"), record.get("host")
            if isinstance(where, str) and isinstance(other, int) and not isinstance(other, bool):
                if where != host:  # its processes cannot be checked from here
                    raise _busy(run_dir, path, _describe(record))
                if other != pid and _alive(other):  # flock unsupported on this file system, the holder lives
                    raise _busy(run_dir, path, _describe(record))
            # free, or stale (its process is gone): ours now
            data = json.dumps({"pid": pid, "host": host, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        try:
            yield path
        finally:
            with contextlib.suppress(OSError):
                path.unlink()  # before close: a waiter that opens the old file sees the inode change
            with contextlib.suppress(OSError):
                os.close(fd)
        return
    raise _busy(run_dir, path, "another process")
