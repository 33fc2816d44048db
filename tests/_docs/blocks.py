"""The fenced code blocks of a markdown file, with their kind and the marker written before them.

Kinds: ``python`` (```python), ``shell`` (```bash/sh/shell/console, or an untagged block whose first
command is one the docs use: ``rnnkit``, ``python``, ``make``...), ``file`` (any block marked
``<!-- file: NAME -->``: its text is written to NAME in the working folder before the doc's examples run)
and ``text`` (output, trees, tables: not run).

Markers, an HTML comment on the last non-blank line before the opening fence (invisible on GitHub):

- ``<!-- not-run: REASON -->``: deliberately not runnable (multi-machine set-up...); reported as a skip.
- ``<!-- known-failing: BUG -->``: fails because of BUG in rnnkit; run, and expected to fail until fixed.
- ``<!-- slow: REASON -->``: too long for the default suite even shortened; runs under ``-m slow``.
- ``<!-- file: NAME -->``: see above.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHELL_LANGS = {"bash", "sh", "shell", "console"}
# an untagged block is a shell example when its first command is one of these
COMMAND_WORDS = {"rnnkit", ".venv/bin/rnnkit", "python", "python3", ".venv/bin/python", "make", "pip", "git",
                 "torchrun", "cd"}
MARKER = re.compile(r"^\s*<!--\s*(not-run|known-failing|slow|file)\s*:\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([^`\s]*)")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Block:
    path: str  # relative to the repository root
    line: int  # 1-based line of the first code line (the fence is the line before)
    lang: str  # the fence's info word, "" when untagged
    kind: str  # python | shell | file | text
    code: str
    marker: str | None = None  # not-run | known-failing | slow | file
    reason: str = ""  # the marker's text

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def doc_files() -> list[Path]:
    """README.md and docs/*.md, in a fixed order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def parse(path: Path) -> list[Block]:
    rel = path.relative_to(ROOT).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.groups()
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(fence[0] * len(fence)):
            end += 1
        body = [line[len(indent):] if line.startswith(indent) else line.lstrip() for line in lines[i + 1:end]]
        code = "\n".join(body) + "\n"
        marker, reason = _marker_before(lines, i)
        kind = "file" if marker == "file" else _kind(lang.lower(), code)
        blocks.append(Block(rel, i + 2, lang.lower(), kind, code, marker, reason))
        i = end + 1
    return blocks


def stray_markers(path: Path) -> list[int]:
    """Lines of markers that no fence follows (a typo would silently run or skip the wrong block)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    stray = []
    for n, line in enumerate(lines):
        if MARKER.match(line):
            nxt = next((x for x in lines[n + 1:] if x.strip()), "")
            if not FENCE.match(nxt):
                stray.append(n + 1)
    return stray


def _marker_before(lines: list[str], fence_index: int) -> tuple[str | None, str]:
    j = fence_index - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    m = MARKER.match(lines[j]) if j >= 0 else None
    return (m.group(1), m.group(2)) if m else (None, "")


def _kind(lang: str, code: str) -> str:
    if lang in ("python", "py", "pycon"):
        return "python"
    if lang in SHELL_LANGS:
        return "shell"
    if lang:
        return "text"
    return "shell" if _first_command_word(code) in COMMAND_WORDS else "text"


def _first_command_word(code: str) -> str | None:
    for line in code.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            return None
        if words and ASSIGNMENT.match(words[0]) and words[0].split("=", 1)[1].startswith("$("):
            continue  # FILES=$(ls ...): a variable for the commands below
        words = [w for w in words if not ASSIGNMENT.match(w)]
        if words:
            return words[0]
    return None
