"""Sentence pairs from a TSV file: ``source<TAB>target`` per line, UTF-8, no quoting.

The first line is a header (``de<TAB>en``) unless ``header=False``. Every error is one line naming the
file and line: a missing or empty file, bytes that are not UTF-8 (with the byte offset), a line with
no tab or with more than one, an empty source or target. Quotes are ordinary characters (the
``csv.QUOTE_NONE`` reading of the data sets' READMEs).
"""

from __future__ import annotations

from pathlib import Path

from rnnkit.errors import UserError
from rnnkit.io.text_file import read_utf8_file

Pair = tuple[str, str]


def _lines(text: str) -> list[str]:
    """The lines of ``text``, without their line ends (``\n`` or ``\r\n``) and without the empty piece
    after a final line end."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def read_pairs(path: str | Path, header: bool = True) -> list[Pair]:
    """The (source, target) pairs of ``path`` (see the module docstring)."""
    path = Path(path)
    lines = _lines(read_utf8_file(path, "TSV file"))
    first = 1 if header else 0
    pairs: list[Pair] = []
    for i in range(first, len(lines)):
        line = lines[i]
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
        text, where = read_utf8_file(path, "text file"), str(path)
    lines = _lines(text)
    if not lines:
        raise UserError(f"{where} is empty: nothing to translate")
    return lines


def pair_files(source: str | Path, target: str | Path) -> list[Pair]:
    """Pairs from two parallel text files, line i of one with line i of the other (UTF-8, a sentence per
    line). One line for: different line counts, a tab inside a sentence, a line empty on one side only;
    lines empty on both sides are left out."""
    src_lines, tgt_lines = (_lines(read_utf8_file(Path(path), "text file")) for path in (source, target))
    names = (str(source), str(target))
    if len(src_lines) != len(tgt_lines):
        raise UserError(f"{names[0]} has {len(src_lines)} lines and {names[1]} {len(tgt_lines)}: parallel files "
                        "need one line per sentence on both sides")
    pairs: list[Pair] = []
    for n, (s, t) in enumerate(zip(src_lines, tgt_lines, strict=True), 1):
        for text, name in ((s, names[0]), (t, names[1])):
            if "\t" in text:
                raise UserError(f"{name}: line {n} holds a tab, which a TSV of pairs cannot carry")
        s, t = s.strip(), t.strip()
        if not s and not t:
            continue
        if not s or not t:
            raise UserError(f"{names[0] if not s else names[1]}: line {n} is empty but its pair is not")
        pairs.append((s, t))
    if not pairs:
        raise UserError(f"{names[0]} and {names[1]} hold no sentence pairs")
    return pairs
