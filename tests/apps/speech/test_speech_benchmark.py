"""Smoke test of benchmarks/speech_streaming.py (real-time factor and emission delay) on a tiny
untrained streaming model: the numbers are finite, nothing is asserted about their size (issue #16)."""

import importlib.util
import shutil
import sys

import pytest
import torch

from _paths import ROOT

SCRIPT = ROOT / "benchmarks" / "speech_streaming.py"


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_benchmark_runs_on_a_tiny_model(tmp_path, capsys):
    import rnnkit
    from rnnkit.apps.speech.model import RecurrentCTC
    from rnnkit.apps.speech.synth import synth_dataset

    synth_dataset(tmp_path / "d", "digits", 8, 0, valid_voices=2, test_voices=2, valid_fraction=0.25,
                  test_fraction=0.25)
    torch.manual_seed(0)
    model = RecurrentCTC(hidden=8, layers=1, bidirectional=False, channels=2, n_mels=16, dropout=0.0)
    with torch.no_grad():
        model.out.bias[2:].fill_(5.0)  # emit letters, so that some hypothesis words exist
    rnnkit.save(model, tmp_path / "run")
    spec = importlib.util.spec_from_file_location("rnnkit_bench_speech", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        res = module.main([str(tmp_path / "run"), str(tmp_path / "d" / "transcripts.csv"), "--limit", "2",
                           "--json", str(tmp_path / "r.json")])
    finally:
        sys.modules.pop(spec.name, None)
    assert res["rows"] == 2 and res["threads"] == 1 and 0 < res["real_time_factor"] < 100
    assert (tmp_path / "r.json").exists() and "real_time_factor" in capsys.readouterr().out
    assert "streamed" in res


def test_hypothesis_words_carry_their_last_character_time():
    spec = importlib.util.spec_from_file_location("rnnkit_bench_speech2", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from rnnkit.apps.speech.vocab import ALPHABET, encode

    toks = encode("oh two")
    times = [0.1 * i for i in range(len(toks))]
    assert module._hyp_words(toks, times, ALPHABET) == [("oh", 0.1), ("two", pytest.approx(0.5))]


def test_onnx_benchmark_streams_both_runtimes_alike(tmp_path, capsys):
    """benchmarks/speech_onnx.py on a tiny untrained streaming model and tone utterances: both runtimes
    give every utterance the same greedy transcript; the times are finite (their size is not asserted)."""
    pytest.importorskip("onnxruntime")
    import rnnkit
    from _speech_helpers import tone_set
    from rnnkit.apps.speech.model import RecurrentCTC

    csv_file = tone_set(tmp_path / "d", n=6, n_train=2)  # rows 2-5: the valid split
    torch.manual_seed(0)
    model = RecurrentCTC(hidden=8, layers=1, bidirectional=False, channels=2, n_mels=16, dropout=0.0)
    with torch.no_grad():
        model.out.bias[2:].fill_(3.0)  # emit letters, so that transcripts are not empty
    rnnkit.save(model, tmp_path / "run")
    spec = importlib.util.spec_from_file_location("rnnkit_bench_speech_onnx", ROOT / "benchmarks" / "speech_onnx.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([str(tmp_path / "run"), str(csv_file), "--split", "valid", "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert "greedy transcripts equal: 3/3" in out and "| onnxruntime (chunk graph) |" in out
