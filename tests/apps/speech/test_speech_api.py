"""The speech Python API (issue #25): ``SpeechModel`` behaves as ``rnnkit speech`` with the same defaults,
so the model trained through the CLI and through Python on the same transcripts is the same model, with
the same transcripts and scores; waveforms go in as arrays; bad input is a UserError. Data: noisy tones
(no espeak-ng needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from _speech_helpers import tone_set
from _training_helpers import main_captured
from rnnkit.apps.speech import SpeechModel
from rnnkit.errors import UserError

OPTIONS = {"threads": 1, "seed": 3, "hidden": 8, "layers": 1, "channels": 4, "n_mels": 16, "batch_size": 4,
           "dropout": 0.0, "max_epochs": 2, "plots": False}
FLAGS = ["--threads", "1", "-q", "--seed", "3", "--hidden", "8", "--layers", "1", "--channels", "4", "--n-mels",
         "16", "--batch-size", "4", "--dropout", "0", "--epochs", "2", "--set", "plots=false"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(CSV, the CLI's run, the API's model) trained on the same tones with the same options."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("speech-api")
    csv_file = tone_set(root / "d")
    from rnnkit.cli import main

    assert main(["speech", "train", str(csv_file), "--out", str(root / "cli"), *FLAGS]) == 0
    return csv_file, root / "cli", SpeechModel(**OPTIONS).fit(csv_file, run_dir=root / "py")


def test_cli_and_python_train_the_same_model(trained, capsys):
    csv_file, cli_run, model = trained
    cli, py = load_file(cli_run / "model.safetensors"), load_file(model.run_dir / "model.safetensors")
    assert cli.keys() == py.keys()
    for name in cli:
        assert torch.equal(cli[name], py[name]), name
    wavs = sorted(csv_file.parent.glob("u*.wav"))[:4]
    code, out, _ = main_captured(capsys, "speech", "transcribe", cli_run, *wavs)
    assert code == 0
    assert model.transcribe(wavs) == [line.split("\t", 1)[1] for line in out.splitlines()]
    code, out, _ = main_captured(capsys, "speech", "evaluate", cli_run, csv_file, "--split", "valid")
    assert code == 0
    from_cli, from_py = json.loads(out), model.evaluate(csv_file, split="valid")
    assert (from_py["wer"], from_py["cer"], from_py["utterances"]) == (
        from_cli["wer"], from_cli["cer"], from_cli["utterances"])


def test_arrays_and_paths_give_the_same_text_and_a_round_trip(trained, tmp_path):
    csv_file, _, model = trained
    wav = sorted(csv_file.parent.glob("u*.wav"))[0]
    wave, rate = sf.read(wav, dtype="float32")
    assert rate == 16000
    assert isinstance(model.transcribe(wav), str)
    assert model.transcribe(wave) == model.transcribe(wav)
    assert model.transcribe([wave, wav], beam=3) == [model.transcribe(wav, beam=3)] * 2
    again = SpeechModel.load(model.save(tmp_path / "saved"))
    assert again.transcribe(wav) == model.transcribe(wav)


def test_bad_input_is_a_user_error(trained, tmp_path):
    _, _, model = trained
    with pytest.raises(UserError, match="not trained"):
        SpeechModel().transcribe(np.zeros(100, np.float32))
    with pytest.raises(UserError, match="1-D array of finite samples"):
        model.transcribe([np.full(100, np.nan, np.float32)])
    with pytest.raises(UserError, match="1-D array"):
        model.transcribe([np.zeros((2, 100), np.float32)])
    with pytest.raises(UserError, match="--beam must be from 1 to 100"):
        model.transcribe(np.zeros(1600, np.float32), beam=0)
    with pytest.raises(UserError, match="nothing to transcribe"):
        model.transcribe([])
    with pytest.raises(UserError, match="transcripts CSV"):
        SpeechModel(**OPTIONS).fit([("a.wav", "a")], run_dir=tmp_path / "r")
