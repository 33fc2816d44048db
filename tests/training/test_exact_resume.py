"""A resumed run equals the uninterrupted run bitwise (issue #21): 2 epochs, then ``--resume`` to 4, gives the
losses and weights of 4 epochs in one go (CPU, one thread, same seed).

Two causes made it differ before, each covered here:

- the text app's stream carries its recurrent state from one epoch into the next (an epoch is
  ``epoch_steps`` windows); the state was not in the checkpoint, so a resumed run restarted the stream from
  zeros (val loss off by ~1e-4 relative). It is now ``rnnkit.carry`` in ``last.ckpt``, checked like every
  other field (``training/checkpoint_state.py``);
- the DataLoader's iterator draws its base seed from torch's global generator when an epoch's iteration
  begins: after the per-epoch reseed in every epoch but a session's first, where Lightning begins it
  before ``on_train_epoch_start``. A resumed run's first epoch drew other dropout masks (translate with
  dropout 0.2: 8e-4 relative; speech: 3e-6). ``SequenceTask`` now reseeds at the epoch's first batch too.
"""

from __future__ import annotations

import json
import random
import shutil

import pytest
import torch
from safetensors.torch import load_file

from _training_helpers import final_losses, main_captured
from rnnkit.cli import main

torch.set_num_threads(1)

COMMON = ["--threads", "1", "-q", "--seed", "3", "--set", "log_every_n_steps=1", "--set", "tensorboard=false",
          "--set", "plots=false"]
#: an epoch of 3 windows of a stream of 37: every epoch continues the stream (and its state) mid-way;
#: constant schedule: the text default (cosine) spans max_epochs, so a 2-epoch run extended to 4 would
#: follow another schedule than a 4-epoch run
TEXT = ["--batch-size", "4", "--lr", "1e-2", "--hidden", "8", "--embedding-size", "8", "--bptt", "8",
        "--epoch-steps", "3", "--set", "schedule=constant"]
TEXT_DROPOUT = ["--output-dropout", "0.3", "--set", "embedding_dropout=0.1", "--set", "input_dropout=0.1",
                "--set", "variational_dropout=0.2", "--set", "weight_drop=0.2", "--set", "zoneout=0.1"]
TRANSLATE = ["--tokenizer", "char", "--hidden", "8", "--embedding-size", "8", "--batch-size", "16", "--lr", "1e-2",
             "--dropout", "0.2", "--label-smoothing", "0", "--beam", "1"]
CASES = {
    "text": ["--output-dropout", "0"],  # no randomness: only the carried state
    "text_dropout": TEXT_DROPOUT,  # every dropout of the text model: the carried state and the masks
    "translate_dropout": [],  # dropout 0.2: the masks
    "translate_ema": ["--set", "ema_decay=0.9"],  # the weight averages go on from the checkpoint's
}


def _corpus(root):
    """About 1,900 characters of random words: no period that would make every epoch's windows alike."""
    rng = random.Random(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "far", "away", "and", "back", "again"]
    (root / "corpus.txt").write_text(" ".join(rng.choice(words) for _ in range(500)))
    return [str(root / "corpus.txt")]


def _command(case, root, target, epochs):
    if case.startswith("text"):
        return ["text", "train", *_corpus(root), *target, "--epochs", str(epochs), *COMMON, *TEXT, *CASES[case]]
    from _translate_helpers import reversal_files

    reversal_files(root, 96, 16, seed=1)
    return ["translate", "train", str(root / "train.tsv"), "--valid", str(root / "valid.tsv"), *target,
            "--epochs", str(epochs), *COMMON, *TRANSLATE, *CASES[case]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``runs(case) -> root``: ``full`` trained 4 epochs; ``short`` 2 epochs (kept as ``two_epochs``), then
    resumed to 4 (a second or two each; once per case and module)."""
    done = {}

    def get(case):
        if case not in done:
            root = tmp_path_factory.mktemp(f"exact-{case}")
            assert main(_command(case, root, ["--out", str(root / "full")], 4)) == 0
            assert main(_command(case, root, ["--out", str(root / "short")], 2)) == 0
            shutil.copytree(root / "short", root / "two_epochs")
            assert main(_command(case, root, ["--resume", str(root / "short")], 4)) == 0
            done[case] = root
        return done[case]

    return get


@pytest.mark.parametrize("case", list(CASES))
def test_resume_equals_the_uninterrupted_run_bitwise(runs, case):
    root = runs(case)
    got, want = final_losses(root / "short"), final_losses(root / "full")
    assert (got["global_step"], got["epoch"]) == (want["global_step"], want["epoch"])
    assert got["train_loss"] == want["train_loss"] and got["val_loss"] == want["val_loss"], (got, want)
    a, b = load_file(str(root / "short" / "model.safetensors")), load_file(str(root / "full" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), {k: float((a[k] - b[k]).abs().max()) for k in a}
    cfg = json.loads((root / "short" / "config.json").read_text())
    assert cfg["resumes"][-1]["changed"] == {"max_epochs": [2, 4]}


def _checkpoint(run):
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def test_the_checkpoint_holds_the_carried_state_of_the_text_stream(runs):
    assert "carry" not in _checkpoint(runs("translate_dropout") / "two_epochs")["rnnkit"]  # nothing carried
    carry = _checkpoint(runs("text") / "two_epochs")["rnnkit"].get("carry")
    # one state per process; the LSTM's (h, c), each (layers, rows, hidden), not zeros
    assert isinstance(carry, list) and len(carry) == 1
    h, c = carry[0]
    assert h.shape == c.shape == (1, 4, 8) and h.abs().sum() > 0


def _edit_and_resume(root, case, run, capsys, edit):
    ckpt = _checkpoint(run)
    edit(ckpt)
    torch.save(ckpt, run / "checkpoints" / "last.ckpt")
    return main_captured(capsys, *_command(case, root, ["--resume", str(run)], 3))


@pytest.mark.parametrize("how", ["shape", "not_a_list", "not_a_tensor", "on_a_task_without_carry"])
def test_a_malformed_carried_state_is_refused_in_one_line(runs, tmp_path, capsys, how):
    case = "translate_dropout" if how == "on_a_task_without_carry" else "text"
    root = runs(case)
    run = tmp_path / "run"
    shutil.copytree(root / "two_epochs", run)
    before = sorted((p.name, p.read_bytes()) for p in run.rglob("*") if p.is_file() and p.name != "last.ckpt")

    def edit(ckpt):
        if how == "shape":
            ckpt["rnnkit"]["carry"][0] = (torch.zeros(1, 5, 8), torch.zeros(1, 5, 8))
        elif how == "not_a_list":
            ckpt["rnnkit"]["carry"] = {"rank": "secret"}
        elif how == "not_a_tensor":
            ckpt["rnnkit"]["carry"][0] = ("secret", "secret")
        else:
            ckpt["rnnkit"]["carry"] = [torch.zeros(1, 16, 8)]

    code, _, err = _edit_and_resume(root, case, run, capsys, edit)
    assert code == 2, err
    assert err.count("\n") == 1 and "last.ckpt" in err and "rnnkit.carry" in err and "secret" not in err
    assert sorted((p.name, p.read_bytes()) for p in run.rglob("*") if p.is_file() and p.name != "last.ckpt") == before


def test_a_state_saved_by_another_number_of_processes_restarts_the_stream(runs, tmp_path, capsys):
    """Two processes' states do not map onto one process's rows: the resume goes on from zeros."""
    case = "text"
    root = runs(case)
    run = tmp_path / "run"
    shutil.copytree(root / "two_epochs", run)

    def two_processes(ckpt):
        h, c = ckpt["rnnkit"]["carry"][0]
        ckpt["rnnkit"]["carry"] = [(h[:, :2], c[:, :2]), (h[:, 2:], c[:, 2:])]

    code, _, err = _edit_and_resume(root, case, run, capsys, two_processes)
    assert code == 0, err
    assert final_losses(run)["epoch"] == 2
