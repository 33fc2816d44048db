"""``rnnkit speech train --resume RUN_DIR`` (issues #16, #21): a run stopped after epoch 2 and resumed to 4
equals the uninterrupted 4-epoch run (losses and weights); a resume with other data, a damaged config.json
or changed model options is one line, exit 2, and changes nothing in the run directory. The data are
noisy tones (no espeak-ng needed): enough to train on deterministically, not to learn anything."""

import json
import shutil

import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from _speech_helpers import tone_set
from _training_helpers import final_losses, main_captured
from rnnkit.cli import main

torch.set_num_threads(1)

OPTS = ["--threads", "1", "-q", "--seed", "3", "--hidden", "8", "--layers", "1", "--channels", "4", "--n-mels", "16",
        "--batch-size", "4", "--dropout", "0", "--set", "plots=false", "--set", "warmup_steps=0",
        "--set", "log_every_n_steps=1", "--set", "schedule=constant"]
# constant: the speech default (cosine) spans max_epochs, so a 2-epoch run extended to 4 would follow another
# schedule than a 4-epoch run; the crash harness resumes with the same epochs and the default schedule


_run = main_captured


def _files(run):
    return {p.relative_to(run): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def resumable(tmp_path_factory):
    """(root, CSV): a 2-epoch run ``short`` and a 4-epoch run ``full`` (about a second each)."""
    root = tmp_path_factory.mktemp("speech-resume")
    csv_file = tone_set(root / "d")
    for name, epochs in (("short", 2), ("full", 4)):
        assert main(["speech", "train", str(csv_file), "--out", str(root / name), "--epochs", str(epochs),
                     *OPTS]) == 0
    return root, csv_file


def test_resume_continues_to_the_uninterrupted_result(resumable, capsys):
    root, csv_file = resumable
    code, _, err = _run(capsys, "speech", "train", csv_file, "--resume", root / "short", "--epochs", "4", "-q")
    assert code == 0, err
    got, want = final_losses(root / "short"), final_losses(root / "full")
    assert (got["global_step"], got["epoch"]) == (want["global_step"], want["epoch"])
    assert got["val_loss"] == pytest.approx(want["val_loss"], rel=1e-6)
    assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-6)
    a, b = load_file(str(root / "short" / "model.safetensors")), load_file(str(root / "full" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    cfg = json.loads((root / "short" / "config.json").read_text())
    assert cfg["resumes"][-1]["changed"] == {"max_epochs": [2, 4]} and cfg["resumes"][-1]["from_epoch"] == 1
    assert set(cfg["stats"]["sha256"]) == {"csv", "audio"}


@pytest.mark.parametrize("case", ["other_csv", "other_audio", "changed_hidden", "damaged_config", "no_config",
                                  "other_app", "garbage_checkpoint", "out_and_resume", "init_from"])
def test_refused_resume_is_one_line_and_changes_nothing(resumable, tmp_path, capsys, case):
    root, csv_file = resumable
    run = tmp_path / "run"
    shutil.copytree(root / "full", run)
    extra: list = []
    if case == "other_csv":  # one transcript changed
        csv_file = tmp_path / "d" / "transcripts.csv"
        shutil.copytree(root / "d", tmp_path / "d")
        lines = csv_file.read_text().splitlines()
        path, _, voice, split = lines[1].split(",")
        lines[1] = ",".join([path, "abc", voice, split])
        csv_file.write_text("\n".join(lines) + "\n")
    elif case == "other_audio":  # the same CSV, other WAV files
        csv_file = tone_set(tmp_path / "d", seed=0)
        first = tmp_path / "d" / "u0.wav"
        x, rate = sf.read(first)
        sf.write(first, 0.5 * x, rate, subtype="PCM_16")
    elif case == "changed_hidden":
        extra = ["--hidden", "16"]
    elif case == "damaged_config":
        (run / "config.json").write_bytes((run / "config.json").read_bytes()[:100])
    elif case == "no_config":
        (run / "config.json").unlink()
    elif case == "other_app":
        (run / "config.json").write_text(json.dumps({"app": "translate", "task": {}}))
    elif case == "garbage_checkpoint":
        (run / "checkpoints" / "last.ckpt").write_bytes(b"\x80\x02garbage" * 50)
    elif case == "out_and_resume":
        extra = ["--out", tmp_path / "other"]
    else:
        extra = ["--init-from", root / "short"]
    before = _files(run)
    code, out, err = _run(capsys, "speech", "train", csv_file, "--resume", run, "--epochs", "6", *extra)
    assert code == 2, (out, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("rnnkit: error:") and "Traceback" not in err, err
    if case.startswith("other_") and case != "other_app":
        assert "differs from the one" in lines[0], lines[0]
    assert _files(run) == before, "a refused resume changed the run directory"
    assert not (tmp_path / "other").exists()
