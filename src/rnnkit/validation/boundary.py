"""The one boundary where exceptions that user input can still cause become one line and exit 2.

Options are checked before anything runs (:mod:`.checks`), files are read by loaders that raise
:class:`~rnnkit.errors.UserError`; what remains is the operating system's answer about paths the
user named (a file where a directory should be, permissions, a full disk) and Lightning refusing a
configuration. ``rnnkit.cli.main`` (every ``rnnkit`` command) and :func:`entry_point` (the
``python -m`` entry points) use :func:`user_message`; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
from collections.abc import Callable
from typing import Any

from rnnkit.errors import UserError

#: OSError numbers that describe the user's paths or machine, not a bug
_OS_ERRNOS = {errno.ENOENT, errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM,
              errno.ENOSPC, errno.EROFS, errno.ENAMETOOLONG, errno.EDQUOT, errno.ELOOP}


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def _os_message(exc: OSError) -> str:
    path = exc.filename if exc.filename is not None else ""
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        # mkdir/open through a path whose part is a file: `--out some_file.csv`
        return f"{path}: a file is in the way (expected a directory or nothing there); choose another path"
    return f"{path}: {exc.strerror}" if path else str(exc.strerror or exc)


def user_message(exc: BaseException) -> str | None:
    """The one-line message for an exception caused by user input, or None (a bug: traceback)."""
    if isinstance(exc, UserError):
        return one_line(str(exc))
    if isinstance(exc, OSError) and exc.errno in _OS_ERRNOS:
        return one_line(_os_message(exc))
    if type(exc).__name__ == "MisconfigurationException":  # Lightning; options are checked before it
        return one_line(f"Lightning refused the configuration: {exc}")
    return None


def entry_point(fn: Callable[..., Any]) -> Callable[..., int]:
    """Wrap a ``main(argv) -> exit code`` so user errors print one line and return 2 (``RNNKIT_DEBUG=1``:
    the traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        try:
            result = fn(*args, **kwargs)
        except KeyboardInterrupt:
            sys.stderr.write("rnnkit: interrupted\n")
            return 130
        except Exception as exc:
            message = user_message(exc)
            if message is None or os.environ.get("RNNKIT_DEBUG"):
                raise
            sys.stderr.write(f"rnnkit: error: {message}\n")
            return 2
        return result if isinstance(result, int) else 0

    return wrapper
