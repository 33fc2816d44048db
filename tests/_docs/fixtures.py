"""The working folder the examples run in, and the input files they name.

The examples run from a repository root (``.venv/bin/python benchmarks/...``), with the shared data
beside it (``../shared/data``, as in CI). So the folder is ``TMP/repo`` with ``benchmarks/`` linked in
and ``TMP/shared`` linked to the real ``../shared`` when there is one. The docs' stand-in names for the
user's own files (``book.txt``, ``corpus/``, ``airpassengers.csv``...) are filled from the shared data.
"""

from __future__ import annotations

import csv
import shutil
from datetime import datetime, timedelta
from pathlib import Path

from _docs.blocks import ROOT, Block

SHARED = ROOT.parent / "shared"
PLAYS = "data/text/shakespeare"
COPIED = {  # name the docs use -> file under ../shared
    "airpassengers.csv": "data/timeseries/airpassengers.csv",
    "elecdemand.csv": "data/timeseries/elecdemand.csv",
    "book.txt": f"{PLAYS}/romeo_and_juliet.txt",  # text.md prompts it with "ROMEO."
    "other.txt": f"{PLAYS}/macbeth.txt",
    # a folder of documents: three or more, so whole documents are held out; '*.md' for --pattern
    **{f"corpus/{p}.txt": f"{PLAYS}/{p}.txt" for p in ("comedy_of_errors", "tempest", "sonnets")},
    **{f"corpus/{p}.md": f"{PLAYS}/{p}.txt" for p in ("twelfth_night", "julius_caesar", "pericles")},
}
# documents cut to their first characters: a held-out play of 100k characters takes a 2-layer GRU of
# width 512 (text.md) 14 s to validate
CUT = {"other.txt": 20_000, **{n: 30_000 for n in COPIED if n.startswith("corpus/")}}
GENERATED = ("next_day_covariates.csv", "JapaneseVowels_TRAIN.ts", "JapaneseVowels_TEST.ts")


def needs_shared(blocks: list[Block]) -> bool:
    names = {n.split("/")[0] for n in COPIED} | set(GENERATED) | {"shared/data"}
    return any(n in b.code for b in blocks if b.kind in ("shell", "python") for n in names)


def shared_available() -> bool:
    return (SHARED / "data").is_dir()


def prepare(tmp: Path) -> Path:
    """Make ``tmp/repo`` (returned: the examples' working directory) and its neighbours."""
    repo = tmp / "repo"
    repo.mkdir()
    (repo / "benchmarks").symlink_to(ROOT / "benchmarks")
    if not shared_available():
        return repo
    (tmp / "shared").symlink_to(SHARED)
    for name, source in COPIED.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        if name in CUT:
            text = (SHARED / source).read_text(encoding="utf-8")[:CUT[name]]
            (repo / name).write_text(text, encoding="utf-8")
        else:
            shutil.copyfile(SHARED / source, repo / name)
    _next_day_covariates(repo / "elecdemand.csv", repo / "next_day_covariates.csv")
    _ts_files(SHARED / "data/classification/JapaneseVowels.csv", repo / "JapaneseVowels")
    return repo


def _next_day_covariates(data: Path, out: Path) -> None:
    """``predict --future FILE``: the known covariates for the 48 half-hours after the data's end (here the
    last day's temperatures again, a holiday: 1 January)."""
    with data.open(newline="") as f:
        rows = list(csv.DictReader(f))[-48:]
    last = datetime.strptime(rows[-1]["timestamp"], "%Y-%m-%d %H:%M")
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["series_id", "timestamp", "temperature", "workday"])
        for k, row in enumerate(rows):
            stamp = last + timedelta(minutes=30 * (k + 1))
            w.writerow([row["series_id"], stamp.strftime("%Y-%m-%d %H:%M"), row["temperature"], 0])


def _ts_files(long_csv: Path, stem: Path) -> None:
    """``NAME_TRAIN.ts`` / ``NAME_TEST.ts`` (the sktime/aeon archive format) from the shared long CSV
    ``case_id,split,label,t,dim_0,...``: one line per case, dimensions split by ':', the label last."""
    cases: dict[tuple[str, str], dict] = {}
    with long_csv.open(newline="") as f:
        for row in csv.DictReader(f):
            case = cases.setdefault((row["split"], row["case_id"]), {"label": row["label"], "dims": {}})
            for k, v in row.items():
                if k.startswith("dim_"):
                    case["dims"].setdefault(k, []).append(v)
    labels = sorted({c["label"] for c in cases.values()})
    n_dims = len(next(iter(cases.values()))["dims"])
    for split in ("train", "test"):
        lines = [f"@problemName {stem.name}", "@timeStamps false", "@missing false", "@univariate false",
                 f"@dimensions {n_dims}", "@equalLength false", f"@classLabel true {' '.join(labels)}", "@data"]
        for (s, _), case in cases.items():
            if s == split:
                lines.append(":".join(",".join(v) for v in case["dims"].values()) + f":{case['label']}")
        Path(f"{stem}_{split.upper()}.ts").write_text("\n".join(lines) + "\n", encoding="utf-8")
