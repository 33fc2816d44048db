"""Corpus: UTF-8 files or folders -> documents -> a deterministic train/valid/test split.

- A path is a file or a folder; a folder contributes every file matching ``pattern`` (default
  ``*.txt``) below it, in sorted order. Every file is one document.
- Empty files and exact duplicates of an earlier file are left out.
- Several documents: whole documents are held out (a seeded shuffle of the sorted names picks the
  validation and test documents), so no text is shared between splits. A document of a held-out
  split that also appears inside a training document (e.g. a folder that also holds the
  concatenation of its files) is an error: it would leak.
- One document: contiguous blocks, train first, then validation, then test.
- The default corpus (no path): the standard library's documentation topics
  (``pydoc_data.topics``), present on every Python installation; one document per topic.

Errors are :class:`~rnnkit.errors.UserError`: missing path, a folder without matching files, an
empty corpus, bytes that are not UTF-8 (the file and the byte offset are named).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from rnnkit.errors import UserError
from rnnkit.io.text_file import read_utf8_file

DEFAULT_CORPUS = "pydoc_data.topics"
DOC_SEPARATOR = "\n\n"


@dataclass
class Document:
    name: str
    text: str


@dataclass
class Split:
    train: list[Document]
    valid: list[Document]
    test: list[Document]
    mode: str  # "documents" | "blocks"

    def text(self, which: str) -> str:
        return DOC_SEPARATOR.join(d.text for d in getattr(self, which))

    def names(self, which: str) -> list[str]:
        return [d.name for d in getattr(self, which)]


def read_text_file(path: Path) -> str:
    """The UTF-8 text of a corpus file (a leading BOM dropped); one-line errors."""
    return read_utf8_file(path, "corpus file")


def corpus_files(paths: list[Path], pattern: str = "*.txt") -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if not p.exists():
            raise UserError(f"corpus path {p} not found")
        if p.is_dir():
            found = sorted(f for f in p.rglob(pattern) if f.is_file() and not f.name.startswith("."))
            if not found:
                raise UserError(f"corpus folder {p} has no files matching {pattern!r} (see --pattern)")
            files.extend(found)
        else:
            files.append(p)
    seen: set[Path] = set()
    unique = []
    for f in files:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(f)
    return unique


def default_documents() -> list[Document]:
    import pydoc_data.topics as topics

    docs = [Document(f"pydoc:{k}", topics.topics[k]) for k in sorted(topics.topics)]
    # some topics repeat others (``if`` lies inside ``else``): keep only texts no other topic contains
    return [d for d in docs if not any(o is not d and d.text.strip() in o.text
                                       and (len(o.text) > len(d.text) or o.name < d.name) for o in docs)]


def read_documents(paths: list[Path] | None, pattern: str = "*.txt") -> list[Document]:
    """The documents of ``paths`` (files or folders), or the default corpus when ``paths`` is empty."""
    if not paths:
        docs = default_documents()
    else:
        docs = [Document(str(f), read_text_file(f).replace("\r\n", "\n")) for f in corpus_files(paths, pattern)]
    nonempty, seen = [], set()
    for d in docs:  # empty files and exact duplicates (same text) are left out
        if d.text.strip() and d.text not in seen:
            seen.add(d.text)
            nonempty.append(d)
    if not nonempty:
        where = ", ".join(str(p) for p in paths) if paths else DEFAULT_CORPUS
        raise UserError(f"the corpus is empty: {where} holds no text")
    return nonempty


def split_documents(docs: list[Document], valid_fraction: float = 0.05, test_fraction: float = 0.05,
                    seed: int = 0) -> Split:
    """Hold out whole documents when there are at least 3, else contiguous blocks (see the module doc)."""
    if not (0 < valid_fraction < 1 and 0 <= test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise UserError(f"valid_fraction ({valid_fraction}) and test_fraction ({test_fraction}) must be in "
                        "[0, 1) with valid_fraction > 0 and a sum below 1")
    if len(docs) >= 3:
        return _split_by_documents(docs, valid_fraction, test_fraction, seed)
    return _split_by_blocks(docs, valid_fraction, test_fraction)


def _split_by_documents(docs: list[Document], fv: float, ft: float, seed: int) -> Split:
    order = sorted(range(len(docs)), key=lambda i: docs[i].name)
    random.Random(seed).shuffle(order)
    total = sum(len(d.text) for d in docs)
    held: dict[str, list[int]] = {"valid": [], "test": []}
    pos = 0
    for which, frac in (("valid", fv), ("test", ft)):
        size = 0
        while frac > 0 and size < frac * total and pos < len(order) - 1:
            held[which].append(order[pos])
            size += len(docs[order[pos]].text)
            pos += 1
    train = sorted(order[pos:])
    if not held["valid"] or not train:
        return _split_by_blocks(docs, fv, ft)
    split = Split([docs[i] for i in train], [docs[i] for i in sorted(held["valid"])],
                  [docs[i] for i in sorted(held["test"])], "documents")
    check_no_leak(split)
    return split


def check_no_leak(split: Split, min_chars: int = 200) -> None:
    """Error when a held-out document's text lies inside a training document (a duplicate)."""
    for which in ("valid", "test"):
        for d in getattr(split, which):
            probe = d.text.strip()
            if len(probe) < min_chars:
                continue
            probe = probe[: 20 * min_chars]
            for t in split.train:
                if probe in t.text:
                    raise UserError(f"{which} document {d.name} also appears inside training document {t.name}: "
                                    "the split would leak; remove the duplicate (e.g. a file that concatenates "
                                    "the others) or narrow --pattern")


def _split_by_blocks(docs: list[Document], fv: float, ft: float) -> Split:
    text = DOC_SEPARATOR.join(d.text for d in docs)
    name = docs[0].name if len(docs) == 1 else f"{len(docs)} documents"
    n = len(text)
    n_test = int(n * ft)
    n_valid = max(1, int(n * fv))
    n_train = n - n_valid - n_test
    if n_train < 1:
        raise UserError(f"the corpus ({n} characters) is too small to split")
    return Split([Document(f"{name}[0:{n_train}]", text[:n_train])],
                 [Document(f"{name}[{n_train}:{n_train + n_valid}]", text[n_train:n_train + n_valid])],
                 [Document(f"{name}[{n_train + n_valid}:]", text[n_train + n_valid:])] if n_test else [],
                 "blocks")
