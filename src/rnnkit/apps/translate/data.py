"""Sentence pairs from a TSV file: ``source<TAB>target`` per line, UTF-8, no quoting.

The first line is a header (``de<TAB>en``) unless ``header=False``. Every error is one line naming the
file and line: a missing or empty file, bytes that are not UTF-8 (with the byte offset), a line with
no tab or with more than one, an empty source or target. Quotes are ordinary characters (the
``csv.QUOTE_NONE`` reading of the data sets' READMEs).
"""

from __future__ import annotations

from pathlib import Path

from rnnkit.errors import UserError

Pair = tuple[str, str]


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UserError(f"{path}: line {line} is not UTF-8 (byte offset {exc.start}: "
                        f"{data[exc.start:exc.start + 1]!r}); convert the file to UTF-8") from None


def read_pairs(path: str | Path, header: bool = True) -> list[Pair]:
    """The (source, target) pairs of ``path`` (see the module docstring)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path} not found") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, expected a TSV file") from None
    except PermissionError:
        raise UserError(f"cannot read {path}: permission denied") from None
    text = _decode(path, data).removeprefix("\ufeff")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    first = 1 if header else 0
    pairs: list[Pair] = []
    for i in range(first, len(lines)):
        line = lines[i].removesuffix("\r")
        n = i + 1
        if not line.strip():
            continue  # blank lines carry nothing
        fields = line.split("\t")
        if len(fields) != 2:
            what = "no tab" if len(fields) == 1 else f"{len(fields) - 1} tabs"
            raise UserError(f"{path}: line {n} has {what}; expected source<TAB>target")
        src, tgt = fields[0].strip(), fields[1].strip()
        if not src or not tgt:
            raise UserError(f"{path}: line {n} has an empty {'source' if not src else 'target'}")
        pairs.append((src, tgt))
    if not pairs:
        raise UserError(f"{path} has no sentence pairs" + (" after its header line" if header and lines else ""))
    return pairs


def read_sentences(path: str | Path | None, stdin_text: str | None = None) -> list[str]:
    """Source sentences, one per line, from ``path`` (or ``stdin_text``); blank lines stay (an empty
    output line answers them)."""
    if path is None:
        text = stdin_text or ""
        where = "standard input"
    else:
        p = Path(path)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise UserError(f"{p} not found") from None
        except IsADirectoryError:
            raise UserError(f"{p} is a folder, expected a text file") from None
        text, where = _decode(p, data), str(p)
    lines = text.removeprefix("\ufeff").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise UserError(f"{where} is empty: nothing to translate")
    return [line.removesuffix("\r") for line in lines]
