"""Atomic writes: a crash never leaves a half-written file or clobbers the last good one.

Each writer writes a temporary file in the target's directory (``.<name>.<random>.tmp``), flushes it
to disk, then ``os.replace``-s it over the target (atomic on POSIX and Windows within one file
system). A crash between the two leaves at most a stray ``.tmp`` file beside an intact target;
:func:`is_temp_file` recognises those so readers and checks can ignore them.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()  # what open() would give a new file (mkstemp's own is 0600)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path``: temporary file in the same directory, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with contextlib.suppress(OSError):
            os.fchmod(fd, _MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def json_safe(obj: Any) -> Any:
    """``obj`` with non-finite floats (an underflowed ratio, a diverged loss) as null: strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """Strict JSON (non-finite floats become null), written atomically."""
    text = json.dumps(json_safe(obj), indent=indent, allow_nan=False, sort_keys=False)
    return write_text_atomic(path, text + "\n")


def append_jsonl_atomic(path: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Append one JSON line: the old content plus the new line, written to a temp file and renamed."""
    path = Path(path)
    old = path.read_bytes() if path.exists() else b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    line = json.dumps(json_safe(record), allow_nan=False, separators=(",", ":")).encode() + b"\n"
    return write_bytes_atomic(path, old + line)


def save_figure_atomic(fig, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return write_bytes_atomic(path, buf.getvalue())


def is_temp_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a leftover temporary file of an interrupted atomic write."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(".tmp")
