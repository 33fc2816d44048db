"""`rnnkit translate train | evaluate | translate` end to end on a toy reversal task, and the one-line errors."""

import io
import json
import sys

import pytest
import torch

from _translate_helpers import train_reversal_run
from rnnkit.cli import main

torch.set_num_threads(1)

TINY = ["--tokenizer", "char", "--hidden", "64", "--embedding-size", "32", "--batch-size", "16", "--lr", "1e-2",
        "--epochs", "15", "--dropout", "0", "--label-smoothing", "0", "--threads", "1", "-q",
        "--set", "tensorboard=false", "--set", "plots=false"]


def _run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


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
