"""Fuzz test of the option layer and the file loaders (issue #21): random option values for every app
and random damage to every kind of input file. The only allowed outcomes are success or a
:class:`~rnnkit.errors.UserError` of one line (the CLI turns it into exit 2); the input file is never
changed. The seed is printed; set ``RNNKIT_FUZZ_SEED`` to replay one. About 600 cases in all.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import math
import os
import random
import wave
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import seed as hypothesis_seed  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from rnnkit.errors import UserError  # noqa: E402
from rnnkit.training.cli_support import resolve_run  # noqa: E402

SEED = int(os.environ.get("RNNKIT_FUZZ_SEED", random.randrange(2**32)))
print(f"\nfuzz seed: RNNKIT_FUZZ_SEED={SEED}")
SCALE = float(os.environ.get("RNNKIT_FUZZ_SCALE", "1"))  # more examples for a longer local hunt
FAST = settings(max_examples=int(100 * SCALE), deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

APP_CONFIGS = {  # app -> its task options with their schema declared
    "adding": "rnnkit.apps.adding.task:AddingConfig",
    "text": "rnnkit.apps.text.task:TextConfig",
    "forecast": "rnnkit.apps.forecast.options:ForecastConfig",
    "classify": "rnnkit.apps.classify.options:ClassifyConfig",
    "translate": "rnnkit.apps.translate.options:TranslateConfig",
    "speech": "rnnkit.apps.speech.options:SpeechConfig",
}


def _config_class(app: str) -> type:
    module, _, name = APP_CONFIGS[app].partition(":")
    return getattr(importlib.import_module(module), name)


def _one_line(exc: UserError) -> None:
    text = str(exc)
    assert text and "\n" not in text, repr(text)


VALUES = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", "lstm", "gru", "indrnn", "auto", "1e9", "-1", "nan", "inf", "0", "yes", "..", "/etc"]),
    st.lists(st.integers(-5, 5), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _option_names() -> dict[str, list[str]]:
    from rnnkit.training.config import TrainConfig

    train = [f.name for f in dataclasses.fields(TrainConfig)]
    near_misses = ["hiden", "epochs", "cel"]  # "did you mean"
    return {app: [f.name for f in dataclasses.fields(_config_class(app))] + train + near_misses
            for app in APP_CONFIGS}


OPTION_NAMES = _option_names()  # imports the apps here, not inside a strategy


@st.composite
def option_sets(draw):
    """An app, and one to three of its options (or of the training options, or unknown names) set to
    arbitrary values, as flags, --set or a config file would give them."""
    app = draw(st.sampled_from(sorted(APP_CONFIGS)))
    names = OPTION_NAMES[app]
    flags = {draw(st.sampled_from(names)): draw(VALUES) for _ in range(draw(st.integers(1, 3)))}
    return app, flags


@hypothesis_seed(SEED)
@FAST
@given(case=option_sets())
def test_random_options_are_accepted_or_refused_in_one_line(case):
    app, flags = case
    try:
        train, task = resolve_run(_config_class(app), flags)
        train.validate()
        task.validate()
    except UserError as exc:
        _one_line(exc)
        return
    for value in flags.values():  # accepted: no non-finite number got through
        if isinstance(value, float):
            assert math.isfinite(value), flags


# ---- files ----------------------------------------------------------------------------------------
def _write_examples(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    files = {}
    files["tsv"] = root / "pairs.tsv"
    files["tsv"].write_text("de\ten\nein Haus\ta house\nzwei Hunde\ttwo dogs\ndrei\tthree\n", encoding="utf-8")
    rows = ["case_id,split,label,t,dim_0,dim_1"]
    for case in range(6):
        for t in range(5):
            rows.append(f"c{case},{'train' if case < 4 else 'test'},{'ab'[case % 2]},{t},{case + t * 0.5},{t - case}")
    files["classify_csv"] = root / "cases.csv"
    files["classify_csv"].write_text("\n".join(rows) + "\n")
    rows = ["series_id,timestamp,value"]
    for sid in ("a", "b"):
        for month in range(1, 25):
            rows.append(f"{sid},{2000 + (month - 1) // 12}-{(month - 1) % 12 + 1:02d}-01,{month * 1.5 + (sid == 'b')}")
    files["forecast_csv"] = root / "series.csv"
    files["forecast_csv"].write_text("\n".join(rows) + "\n")
    files["yaml"] = root / "config.yaml"
    files["yaml"].write_text("hidden: 16\nmax_epochs: 2\nlr: 0.01\ncell: gru\n")
    files["text"] = root / "corpus.txt"
    files["text"].write_text("Recurrent networks carry a state through time.\nÜber alles: ünïcödé.\n")
    files["wav"] = root / "utt.wav"
    with wave.open(str(files["wav"]), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.sin(np.arange(1600) / 5) * 8000).astype("<i2").tobytes())
    files["transcripts"] = root / "transcripts.csv"
    files["transcripts"].write_text("path,text,voice,split\nutt.wav,one two,en,train\n")
    return files


def _load(kind: str, path: Path) -> None:
    """The app loader that reads a file of ``kind``."""
    if kind == "tsv":
        from rnnkit.apps.translate.data import read_pairs

        read_pairs(path)
    elif kind == "classify_csv":
        from rnnkit.apps.classify.data import read_cases

        read_cases(path)
    elif kind == "forecast_csv":
        from rnnkit.apps.forecast.data import load_series

        load_series(path)
    elif kind == "yaml":
        from rnnkit.training.config import read_config_file

        read_config_file(path)
    elif kind == "text":
        from rnnkit.apps.text.data import read_text_file

        read_text_file(path)
    elif kind == "wav":
        from rnnkit.apps.speech.audio import read_wav

        read_wav(path, 16000)
    elif kind == "transcripts":
        from rnnkit.apps.speech.dataset import read_transcripts

        read_transcripts(path, ("path", "text"), "abcdefghijklmnopqrstuvwxyz '")


@st.composite
def damages(draw, size: int):
    """A list of edits to a file of ``size`` bytes: truncation, random bytes, a deleted or doubled
    span, a field replaced by an odd token."""
    kind = draw(st.sampled_from(["truncate", "insert", "delete", "double", "token", "empty", "bytes"]))
    at = draw(st.integers(0, max(size - 1, 0)))
    if kind == "bytes":
        return kind, at, draw(st.binary(min_size=1, max_size=8))
    if kind == "token":
        return kind, at, draw(st.sampled_from([b"nan", b"inf", b"-1e308", b"1e400", b"\t", b",", b'"', b"\x00",
                                               b"\xff\xfe", b"\n\n", b"NaN,NaN", b"9" * 30, b"\r"]))
    return kind, at, draw(st.integers(1, 40))


def _damaged(data: bytes, damage) -> bytes:
    kind, at, arg = damage
    if kind == "truncate":
        return data[:at]
    if kind == "empty":
        return b""
    if kind in ("insert", "bytes", "token"):
        payload = arg if isinstance(arg, bytes) else os.urandom(arg)
        return data[:at] + payload + data[at:]
    if kind == "delete":
        return data[:at] + data[at + arg:]
    return data[:at] + data[at:at + arg] * 2 + data[at + arg:]  # double


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    return _write_examples(tmp_path_factory.mktemp("fuzz_originals"))


@pytest.mark.parametrize("kind", ["tsv", "classify_csv", "forecast_csv", "yaml", "text", "wav", "transcripts"])
def test_damaged_files_load_or_fail_in_one_line(kind, originals, tmp_path):
    original = originals[kind].read_bytes()
    _load(kind, originals[kind])  # the undamaged file loads
    cases: list = []

    @hypothesis_seed(SEED)
    @settings(max_examples=int(75 * SCALE), deadline=None, derandomize=False,
              suppress_health_check=[HealthCheck.too_slow])
    @given(damage=damages(len(original)))
    def run(damage):
        cases.append(damage)
        path = tmp_path / originals[kind].name
        if kind == "wav" or kind == "transcripts":  # the transcript names utt.wav beside it
            (tmp_path / "utt.wav").write_bytes(originals["wav"].read_bytes())
        path.write_bytes(_damaged(original, damage))
        before = hashlib.sha256(path.read_bytes()).hexdigest()
        try:
            _load(kind, path)
        except UserError as exc:
            _one_line(exc)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == before  # reading changes nothing

    run()
    assert len(cases) >= int(75 * SCALE)  # the cases the module docstring counts were all run
