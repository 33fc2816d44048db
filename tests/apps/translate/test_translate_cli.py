"""`rnnkit translate train | evaluate | translate` end to end on a toy reversal task, and the one-line errors."""

import io
import json
import sys

import pytest
import torch

from _training_helpers import main_captured
from _translate_helpers import train_reversal_run
from rnnkit.cli import main

torch.set_num_threads(1)

TINY = ["--tokenizer", "char", "--hidden", "64", "--embedding-size", "32", "--batch-size", "16", "--lr", "1e-2",
        "--epochs", "15", "--dropout", "0", "--label-smoothing", "0", "--threads", "1", "-q",
        "--set", "tensorboard=false", "--set", "plots=false"]


_run = main_captured


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A character LSTM encoder-decoder trained to reverse strings (400 pairs, a few seconds)."""
    return train_reversal_run(tmp_path_factory.mktemp("translate"), TINY)


def test_train_writes_a_run_that_learned_the_task(trained):
    run, _ = trained
    for name in ("config.json", "model.safetensors", "metrics.json", "tokenizer.json"):
        assert (run / name).exists(), name
    m = json.loads((run / "metrics.json").read_text())
    v = m["translate"]["valid"]
    assert v["exact_match"] > 0.9 and v["chrf"] > 90
    assert v["bleu_signature"].startswith("nrefs:1|") and "version:" in v["chrf_signature"]
    assert m["translate"]["pairs"] == {"train": 400, "valid": 50}


def test_evaluate_after_load_matches_training_scores(trained, capsys):
    run, root = trained
    code, out, _ = _run(capsys, "translate", "evaluate", run, root / "valid.tsv")
    assert code == 0
    res = json.loads(out)
    trained_scores = json.loads((run / "metrics.json").read_text())["translate"]["valid"]
    assert res["exact_match"] == trained_scores["exact_match"] and res["chrf"] == trained_scores["chrf"]
    code, out, _ = _run(capsys, "translate", "evaluate", run, root / "valid.tsv", "--beam", "1")
    assert code == 0 and json.loads(out)["exact_match"] > 0.9


def test_translate_file_and_stdin_one_line_per_input(trained, capsys, monkeypatch):
    run, root = trained
    (root / "in.txt").write_text("abcd\n\nhgfe\nxyz\n")  # a blank line and unseen characters
    code, out, _ = _run(capsys, "translate", "translate", run, root / "in.txt", "--beam", "3")
    assert code == 0
    lines = out.split("\n")[:-1]
    assert len(lines) == 4 and lines[0] == "dcba" and lines[1] == ""  # a blank line answers a blank line
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"abc\nbbd\n")))
    code, out, _ = _run(capsys, "translate", "translate", run, "--beam", "3", "--n-best", "2")
    assert code == 0
    rows = [r.split("\t") for r in out.split("\n")[:-1]]
    assert len(rows) == 2 and all(len(r) == 2 for r in rows) and rows[0][0] == "cba"


@pytest.mark.parametrize("case", ["missing", "no_tab", "not_utf8", "existing_run", "other_app", "n_best",
                                  "not_a_run", "bad_cell"])
def test_bad_input_is_one_line_exit_2(trained, tmp_path, capsys, case):
    run, root = trained
    bad = tmp_path / "bad.tsv"
    if case == "missing":
        args = ["train", tmp_path / "none.tsv", "--out", tmp_path / "r"]
    elif case == "no_tab":
        bad.write_text("de\ten\nno tab\n")
        args = ["evaluate", run, bad]
    elif case == "not_utf8":
        bad.write_bytes(b"abc\n\xff\xfe\n")
        args = ["translate", run, bad]
    elif case == "existing_run":
        args = ["train", root / "train.tsv", "--out", run, *TINY]
    elif case == "other_app":
        other = tmp_path / "other"
        other.mkdir()
        (other / "config.json").write_text(json.dumps({"app": "text", "task": {}}))
        args = ["translate", other, root / "valid.tsv"]
    elif case == "n_best":
        args = ["translate", run, root / "valid.tsv", "--beam", "2", "--n-best", "3"]
    elif case == "not_a_run":
        args = ["evaluate", tmp_path / "nothing", root / "valid.tsv"]
    else:
        args = ["train", root / "train.tsv", "--out", tmp_path / "r", "--cell", "nope"]
    code, out, err = _run(capsys, "translate", *args)
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    if case == "not_utf8":
        assert "not UTF-8 text" in err and "(line 2)" in err
    if case == "other_app":
        assert "app, not translate" in err
    assert not (tmp_path / "r").exists() or not (tmp_path / "r" / "config.json").exists()


# ---- --resume (issue #21): the training backbone's resume policy, the same files named again ------------
RESUME_TINY = ["--tokenizer", "char", "--hidden", "16", "--embedding-size", "8", "--batch-size", "16",
               "--lr", "1e-2", "--dropout", "0", "--label-smoothing", "0", "--beam", "1", "--threads", "1", "-q",
               "--set", "tensorboard=false", "--set", "plots=false", "--set", "log_every_n_steps=1"]


def _files(run):
    return {p.relative_to(run): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def resumable(tmp_path_factory):
    """(root, a 2-epoch run, a 4-epoch run) on 160 reversal pairs (about a second each)."""
    from _translate_helpers import reversal_files

    root = reversal_files(tmp_path_factory.mktemp("translate-resume"), 160, 20, seed=1)
    data = [str(root / "train.tsv"), "--valid", str(root / "valid.tsv")]
    assert main(["translate", "train", *data, "--out", str(root / "short"), "--epochs", "2", *RESUME_TINY]) == 0
    assert main(["translate", "train", *data, "--out", str(root / "full"), "--epochs", "4", *RESUME_TINY]) == 0
    return root


def test_resume_continues_to_the_uninterrupted_result(resumable, capsys):
    from safetensors.torch import load_file

    root = resumable
    code, _, err = _run(capsys, "translate", "train", root / "train.tsv", "--valid", root / "valid.tsv",
                        "--resume", root / "short", "--epochs", "4")
    assert code == 0, err
    got, want = (json.loads((root / r / "metrics.json").read_text()) for r in ("short", "full"))
    assert (got["global_step"], got["epoch"]) == (want["global_step"], want["epoch"])
    assert got["val_loss"] == pytest.approx(want["val_loss"], rel=1e-6)
    a, b = load_file(str(root / "short" / "model.safetensors")), load_file(str(root / "full" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    cfg = json.loads((root / "short" / "config.json").read_text())
    assert cfg["resumes"][-1]["changed"] == {"max_epochs": [2, 4]}
    assert got["translate"]["valid"]["exact_match"] == want["translate"]["valid"]["exact_match"]


@pytest.mark.parametrize("case", ["other_train_file", "no_valid", "changed_hidden", "garbage_checkpoint",
                                  "empty_checkpoint", "out_and_resume", "no_config", "damaged_tokenizer"])
def test_refused_resume_is_one_line_and_changes_nothing(resumable, tmp_path, capsys, case):
    import shutil

    root = resumable
    run = tmp_path / "run"
    shutil.copytree(root / "full", run)
    train, valid = root / "train.tsv", ["--valid", root / "valid.tsv"]
    extra: list = []
    if case == "other_train_file":
        train = tmp_path / "other.tsv"
        train.write_text((root / "train.tsv").read_text() + "abc\tcba\n")
    elif case == "no_valid":
        valid = []
    elif case == "changed_hidden":
        extra = ["--hidden", "32"]
    elif case == "garbage_checkpoint":
        (run / "checkpoints" / "last.ckpt").write_bytes(b"\x80\x02garbage" * 50)
    elif case == "empty_checkpoint":
        (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    elif case == "out_and_resume":
        extra = ["--out", tmp_path / "other"]
    elif case == "no_config":
        (run / "config.json").unlink()
    else:
        (run / "tokenizer.json").write_bytes(b"\xff{not json")
    before = _files(run)
    code, out, err = _run(capsys, "translate", "train", train, *valid, "--resume", run, "--epochs", "6", *extra)
    assert code == 2, (out, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("rnnkit: error:") and "Traceback" not in err, err
    assert _files(run) == before, "a refused resume changed the run directory"
    assert not (tmp_path / "other").exists()


def test_separate_vocabularies_train_translate_and_reload(tmp_path, capsys):
    """--tokenizer bpe-separate end to end: a run whose source and target pieces live in two tables."""
    pytest.importorskip("tokenizers")
    flags = [f for f in TINY if f != "char"]
    flags[flags.index("--tokenizer") + 1:flags.index("--tokenizer") + 1] = ["bpe-separate"]
    flags[flags.index("15")] = "3"
    run, root = train_reversal_run(tmp_path, [*flags, "--bpe-vocab", "300"])
    tok = json.loads((run / "tokenizer.json").read_text())
    assert set(tok["rnnkit_translate_bpe_separate"]) == {"source", "target"}
    capsys.readouterr()
    code, out, _ = _run(capsys, "translate", "evaluate", run, root / "valid.tsv", "--beam", "2")
    assert code == 0 and json.loads(out)["sentences"] == 50
    (root / "in.txt").write_text("abc\nhgfe\n")
    code, out, _ = _run(capsys, "translate", "translate", run, root / "in.txt")
    assert code == 0 and len(out.split("\n")[:-1]) == 2
