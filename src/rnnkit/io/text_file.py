"""Reading a user's UTF-8 text file with one-line errors (every app's text inputs go through here)."""

from __future__ import annotations

from pathlib import Path

from rnnkit.errors import UserError


def decode_utf8(data: bytes, where: str) -> str:
    """``data`` as text, a leading BOM dropped; bytes that are not UTF-8 are one line naming ``where``,
    the byte, its offset and line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start:exc.start + 1].hex()
        line = data.count(b"\n", 0, exc.start) + 1
        raise UserError(f"{where} is not UTF-8 text: byte 0x{bad} at offset {exc.start} (line {line}) "
                        f"is invalid ({exc.reason}); convert the file to UTF-8 "
                        "(e.g. iconv -f latin1 -t utf-8)") from None
    return text.removeprefix("\ufeff")


def read_utf8_file(path: str | Path, what: str = "file") -> str:
    """The text of ``path`` (see :func:`decode_utf8`); a missing file, a folder or an unreadable file is
    one line that calls it ``what`` (e.g. "corpus file", "TSV file")."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{what} {path} not found") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, expected a {what}") from None
    except PermissionError:
        raise UserError(f"cannot read {path}: permission denied") from None
    return decode_utf8(data, str(path))
