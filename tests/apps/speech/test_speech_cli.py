"""`rnnkit speech synth | train | evaluate | transcribe` end to end on a tiny synthetic set, and the
one-line errors for bad input (issue #16). The learning test is marked slow."""

import io
import json
import shutil
import struct
import sys
import types

import numpy as np
import pytest
import soundfile as sf
import torch

from rnnkit.cli import main

torch.set_num_threads(1)

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (make setup installs it)")
TINY = ["--hidden", "16", "--layers", "1", "--channels", "4", "--n-mels", "16", "--batch-size", "4", "--threads", "1",
        "-q", "--set", "plots=false", "--set", "max_steps=2"]


def _run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("rnnkit: error:"), err
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    root = tmp_path_factory.mktemp("speech")
    assert main(["speech", "synth", "--out", str(root / "d"), "--n", "16", "--valid-voices", "2", "--test-voices", "2",
                 "--valid-fraction", "0.25", "--test-fraction", "0.25"]) == 0
    return root


@pytest.fixture(scope="module")
def streaming_run(data):
    run = data / "stream-run"
    assert main(["speech", "train", str(data / "d" / "transcripts.csv"), "--out", str(run), "--mode", "streaming",
                 *TINY]) == 0
    return run


@needs_espeak
def test_synth_is_deterministic_and_splits_by_voice(tmp_path, capsys):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        code, _, _ = _run(capsys, "speech", "synth", "--out", tmp_path / name, "--n", "8", "--seed", seed,
                           "--valid-fraction", "0.25", "--test-fraction", "0.25")
        assert code == 0
    a, b, _ = (sorted((tmp_path / n).rglob("*.wav")) for n in "abc")
    assert len(a) == 8
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert (tmp_path / "a/transcripts.csv").read_text() == (tmp_path / "b/transcripts.csv").read_text()
    assert (tmp_path / "a/transcripts.csv").read_text() != (tmp_path / "c/transcripts.csv").read_text()
    import csv

    rows = list(csv.DictReader(io.StringIO((tmp_path / "a/transcripts.csv").read_text())))
    voices = {s: {r["voice"] for r in rows if r["split"] == s} for s in ("train", "valid", "test")}
    assert voices["train"] and voices["valid"] and voices["test"]
    assert not (voices["train"] & voices["valid"]) and not (voices["train"] & voices["test"])
    assert not (voices["valid"] & voices["test"])
    x, rate = sf.read(tmp_path / "a" / rows[0]["path"])
    assert rate == 16000 and x.ndim == 1 and 0.05 < np.abs(x).max() <= 1.0
    for r in rows:
        assert 1 <= len(r["text"].split()) <= 7


@needs_espeak
def test_synth_refuses_to_overwrite(data, capsys):
    before = (data / "d" / "transcripts.csv").read_bytes()
    code, _, err = _run(capsys, "speech", "synth", "--out", data / "d", "--n", "4")
    _one_line_error(code, err, "already holds a data set")
    assert (data / "d" / "transcripts.csv").read_bytes() == before


def test_missing_espeak_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    code, _, err = _run(capsys, "speech", "synth", "--out", tmp_path / "x", "--n", "4")
    _one_line_error(code, err, "espeak-ng is not installed", "apt-get install espeak-ng")
    assert not (tmp_path / "x" / "transcripts.csv").exists()


@needs_espeak
def test_train_evaluate_transcribe_load(data, streaming_run, capsys):
    import rnnkit

    run = streaming_run
    for name in ("config.json", "model.safetensors", "metrics.json"):
        assert (run / name).exists()
    m = json.loads((run / "metrics.json").read_text())
    assert m["speech"]["utterances"]["train"] == 8 and m["speech"]["valid"]["wer"] >= 0
    model = rnnkit.load(run)
    assert type(model).__name__ == "RecurrentCTC" and model.streaming
    csv_file = data / "d" / "transcripts.csv"
    code, out, _ = _run(capsys, "speech", "evaluate", run, csv_file, "--split", "test", "--beam", "3")
    assert code == 0
    res = json.loads(out)
    assert res["utterances"] == 4 and res["voices"] <= 2 and "wer" in res and "real_time_factor" in res
    words = (data / "d" / "words.txt").read_text().split()
    assert words == sorted(["oh", "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    code, out, _ = _run(capsys, "speech", "evaluate", run, csv_file, "--split", "test", "--beam", "3", "--lexicon",
                        data / "d" / "words.txt", "--hypotheses", data / "hyps.tsv")
    assert code == 0 and json.loads(out)["lexicon"].endswith("words.txt")
    for line in (data / "hyps.tsv").read_text().splitlines():  # every hypothesis word is a lexicon word
        assert set(line.split("\t")[1].split()) <= set(words)
    wavs = sorted((data / "d" / "wavs" / "test").glob("*.wav"))
    code, out, _ = _run(capsys, "speech", "transcribe", run, *wavs[:2])
    assert code == 0 and [ln.split("\t")[0] for ln in out.splitlines()] == [str(w) for w in wavs[:2]]


@needs_espeak
def test_stream_from_stdin_matches_file_transcription(data, streaming_run, capsys, monkeypatch):
    wav = sorted((data / "d" / "wavs" / "test").glob("*.wav"))[0]
    x, _ = sf.read(wav, dtype="int16")
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(x.astype("<i2").tobytes())))
    code, out, err = _run(capsys, "speech", "transcribe", streaming_run, "--stream", "--chunk-ms", "20")
    assert code == 0, err
    final = [ln for ln in out.splitlines() if ln.startswith("final: ")]
    assert len(final) == 1 and "real-time factor" in err and "latency" in err
    code, out2, _ = _run(capsys, "speech", "transcribe", streaming_run, wav)
    assert final[0][len("final: "):] == out2.split("\t", 1)[1].rstrip("\n")


@needs_espeak
def test_offline_and_transformer_train_and_stream_refusal(data, capsys, monkeypatch):
    csv_file = data / "d" / "transcripts.csv"
    for arch in ("rnn", "transformer"):
        run = data / f"offline-{arch}"
        code, _, err = _run(capsys, "speech", "train", csv_file, "--out", run, "--arch", arch, "--cell", "gru", *TINY)
        assert code == 0, err
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(b"\x00\x01" * 800)))
    code, _, err = _run(capsys, "speech", "transcribe", data / "offline-rnn", "--stream")
    _one_line_error(code, err, "offline")
    code, _, err = _run(capsys, "speech", "train", csv_file, "--out", data / "x", "--mode", "streaming",
                        "--arch", "transformer", *TINY)
    _one_line_error(code, err, "--arch rnn")
    code, _, err = _run(capsys, "speech", "train", csv_file, "--out", data / "offline-rnn", *TINY)
    _one_line_error(code, err, "already holds a run")


# ---- bad input -------------------------------------------------------------------------------------------
def _wav(path, x, rate=16000):
    sf.write(path, x, rate, subtype="PCM_16", format="WAV")
    return path


def _tone(seconds=0.5, rate=16000):
    t = np.arange(int(seconds * rate)) / rate
    return 0.3 * np.sin(2 * np.pi * 300 * t)


@needs_espeak
@pytest.mark.parametrize("case", ["missing", "empty", "truncated", "not_wav", "stereo", "silence", "directory",
                                  "no_samples"])
def test_bad_audio_is_one_line(case, data, streaming_run, tmp_path, capsys):
    p = tmp_path / f"{case}.wav"
    if case == "empty":
        p.write_bytes(b"")
    elif case == "truncated":
        _wav(p, _tone())
        p.write_bytes(p.read_bytes()[:5000])
    elif case == "not_wav":
        p.write_text("this is not audio\n" * 20)
    elif case == "stereo":
        sf.write(p, np.stack([_tone(), _tone()], 1), 16000, subtype="PCM_16")
    elif case == "silence":
        _wav(p, np.zeros(16000))
    elif case == "directory":
        p.mkdir()
    elif case == "no_samples":
        _wav(p, np.zeros(0))
    expect = {"missing": "not found", "empty": "is empty", "truncated": "truncated", "not_wav": "not a WAV file",
              "stereo": "2 channels", "silence": "silent", "directory": "directory", "no_samples": "no samples"}[case]
    out_file = tmp_path / "hyps.txt"
    out_file.write_text("keep me\n")
    code, out, err = _run(capsys, "speech", "transcribe", streaming_run, p)
    _one_line_error(code, err, expect)
    assert out == ""
    # evaluate with the same file in a CSV: the same line, and --hypotheses is not clobbered
    csv_file = tmp_path / "t.csv"
    csv_file.write_text(f"path,text\n{p.name},one two\n")
    code, _, err = _run(capsys, "speech", "evaluate", streaming_run, csv_file, "--hypotheses", out_file)
    _one_line_error(code, err, expect)
    assert out_file.read_text() == "keep me\n"


@needs_espeak
def test_other_sample_rate_is_resampled_with_a_note(data, streaming_run, tmp_path, capsys):
    wav = sorted((data / "d" / "wavs" / "test").glob("*.wav"))[0]
    x, _ = sf.read(wav)
    from rnnkit.apps.speech.audio import resample

    p = _wav(tmp_path / "r22.wav", resample(x.astype(np.float32), 16000, 22050), 22050)
    code, out, err = _run(capsys, "speech", "transcribe", streaming_run, p)
    assert code == 0 and "note:" in err and "22050 Hz; resampled to the model's 16000 Hz" in err
    assert out.startswith(str(p) + "\t")


@needs_espeak
def test_bad_csv_is_one_line(data, tmp_path, capsys):
    d = data / "d"
    cases = {
        "missing_columns": ("path,voice\nwavs/train/000008.wav,x\n", "lacks column(s) text"),
        "no_split": ("path,text\nwavs/train/000008.wav,one\n", "lacks column(s) split"),
        "empty": ("", "is empty"),
        "bad_char": ("path,text,split\nwavs/train/000008.wav,one 2,train\n", "character '2'"),
        "no_valid": (f"path,text,split\n{d}/wavs/train/000008.wav,one,train\n", "0 valid rows"),
        "empty_path": ("path,text,split\n,one,train\n", "empty path"),
    }
    for name, (text, expect) in cases.items():
        f = tmp_path / f"{name}.csv"
        f.write_text(text)
        code, _, err = _run(capsys, "speech", "train", f, "--out", tmp_path / f"run-{name}", *TINY)
        _one_line_error(code, err, expect)
        assert not (tmp_path / f"run-{name}").exists(), name
    code, _, err = _run(capsys, "speech", "train", tmp_path / "nope.csv", "--out", tmp_path / "r", *TINY)
    _one_line_error(code, err, "not found")
    raw = tmp_path / "latin1.csv"
    raw.write_bytes("path,text,split\nx.wav,caf\xe9,train\n".encode("latin-1"))
    code, _, err = _run(capsys, "speech", "train", raw, "--out", tmp_path / "r", *TINY)
    _one_line_error(code, err, "not UTF-8")


@needs_espeak
def test_stream_bad_input(streaming_run, capsys, monkeypatch):
    for payload, expect in ((b"", "no audio"), (b"\x00\x00" * 4000, "silent")):
        monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(payload)))
        code, _, err = _run(capsys, "speech", "transcribe", streaming_run, "--stream")
        _one_line_error(code, err, expect)
    code, _, err = _run(capsys, "speech", "transcribe", streaming_run)
    _one_line_error(code, err, "give WAV files")


def test_not_a_speech_run(tmp_path, capsys):
    code, _, err = _run(capsys, "speech", "transcribe", tmp_path / "nowhere", tmp_path / "x.wav")
    _one_line_error(code, err, "not found")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps({"app": "translate", "task": {}}))
    code, _, err = _run(capsys, "speech", "transcribe", tmp_path / "run", tmp_path / "x.wav")
    _one_line_error(code, err, "translate")


def test_riff_header_checks(tmp_path):
    from rnnkit.apps.speech.audio import AudioError, read_wav

    p = tmp_path / "a.wav"
    _wav(p, _tone(0.1))
    data = bytearray(p.read_bytes())
    assert read_wav(p, 16000).shape == (1600,)
    pos = data.find(b"data")
    data[pos + 4:pos + 8] = struct.pack("<I", 10**6)  # declares more audio than there is
    p.write_bytes(bytes(data))
    with pytest.raises(AudioError, match="truncated"):
        read_wav(p, 16000)


@pytest.mark.slow
@needs_espeak
def test_offline_model_learns_digits_on_held_out_voices(tmp_path, capsys):
    """A real (small) run: 700 utterances, 8 minutes of training on one thread; the held-out voices'
    WER must be far below the 100% of a model still emitting blanks."""
    d = tmp_path / "d"
    assert main(["speech", "synth", "--out", str(d), "--n", "700", "--valid-voices", "4", "--test-voices", "4",
                 "--valid-fraction", "0.07", "--test-fraction", "0.07"]) == 0
    run = tmp_path / "run"
    assert main(["speech", "train", str(d / "transcripts.csv"), "--out", str(run), "--hidden", "128", "--layers", "2",
                 "--minutes", "8", "--epochs", "1000", "--batch-size", "16", "--threads", "1", "-q",
                 "--set", "plots=false"]) == 0
    capsys.readouterr()
    assert main(["speech", "evaluate", str(run), str(d / "transcripts.csv"), "--split", "test"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["wer"] < 0.5, res
