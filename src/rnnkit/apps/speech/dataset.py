"""The transcript CSV (``path,text,voice,split``; other columns are ignored) and its audio.

Paths are relative to the CSV's folder (or absolute). Every problem is one line naming the file and
line: missing columns, an empty path or text, a character outside the alphabet, a bad WAV.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnkit.errors import UserError

MAX_CSV_BYTES = 512 * 2**20


@dataclass
class Row:
    path: Path
    text: str
    voice: str
    split: str
    line: int


def read_transcripts(csv_path: str | Path, required: tuple[str, ...], alphabet: str) -> list[Row]:
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise UserError(f"{csv_path} not found" if not csv_path.exists() else f"{csv_path} is not a file")
    if csv_path.stat().st_size > MAX_CSV_BYTES:
        raise UserError(f"{csv_path} is over {MAX_CSV_BYTES >> 20} MiB: not a transcript CSV")
    try:
        text = csv_path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{csv_path} is not UTF-8 text (byte {exc.start}): not a transcript CSV") from exc
    try:
        rows = _rows(csv_path, text, required, alphabet)
    except csv.Error as exc:  # e.g. a bare carriage return inside a field
        raise UserError(f"{csv_path}: not a readable CSV ({' '.join(str(exc).split())})") from None
    if not rows:
        raise UserError(f"{csv_path} has a header but no rows")
    return rows


def _rows(csv_path: Path, text: str, required: tuple[str, ...], alphabet: str) -> list[Row]:
    from rnnkit.apps.speech.vocab import check_text

    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in reader.fieldnames or []]
    if not columns:
        raise UserError(f"{csv_path} is empty: expected a header line with columns {','.join(required)}")
    missing = [c for c in required if c not in columns]
    if missing:
        has = " ".join(", ".join(columns).split())[:200]  # a quoted header may hold line breaks
        raise UserError(f"{csv_path} lacks column(s) {', '.join(missing)} (has: {has}); "
                        f"expected a header line with {','.join(required)}")
    reader.fieldnames = columns
    rows = []
    for i, rec in enumerate(reader, start=2):
        where = f"{csv_path}:{i}"
        path = (rec.get("path") or "").strip()
        if not path:
            raise UserError(f"{where}: empty path")
        p = Path(path)
        rows.append(Row(p if p.is_absolute() else csv_path.parent / p, check_text(rec.get("text") or "", where,
                                                                                    alphabet),
                        (rec.get("voice") or "").strip(), (rec.get("split") or "").strip(), i))
    return rows


def load_audio(rows: list[Row], rate: int) -> list[np.ndarray]:
    """The samples of each row's file (:func:`.audio.read_wav`: one line for a bad file)."""
    from rnnkit.apps.speech.audio import read_wav

    return [read_wav(r.path, rate) for r in rows]
