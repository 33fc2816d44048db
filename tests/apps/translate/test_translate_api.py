"""The translation Python API (issue #25): ``TranslateModel`` behaves as ``rnnkit translate`` with the
same defaults, so the model trained through the CLI and through Python on the same file is the same
model; pairs go in as lists without a file; bad input is a UserError."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from _training_helpers import main_captured
from _translate_helpers import reversal_files
from rnnkit.apps.translate import TranslateModel
from rnnkit.errors import UserError

OPTIONS = {"tokenizer": "char", "hidden": 32, "embedding_size": 16, "batch_size": 16, "lr": 1e-2,
           "max_epochs": 2, "dropout": 0.0, "label_smoothing": 0.0, "threads": 1, "seed": 5,
           "tensorboard": False, "plots": False}
FLAGS = ["--tokenizer", "char", "--hidden", "32", "--embedding-size", "16", "--batch-size", "16", "--lr", "1e-2",
         "--epochs", "2", "--dropout", "0", "--label-smoothing", "0", "--threads", "1", "--seed", "5", "-q",
         "--set", "tensorboard=false", "--set", "plots=false"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return reversal_files(tmp_path_factory.mktemp("translate_api"), 120, 20, seed=0)


def _pairs(path) -> list[tuple[str, str]]:
    return [tuple(line.split("\t")) for line in path.read_text().splitlines()[1:]]


def test_cli_and_python_train_the_same_model(files, tmp_path, capsys):
    torch.set_num_threads(1)
    code, _, _ = main_captured(capsys, "translate", "train", files / "train.tsv", "--valid", files / "valid.tsv",
                               "--out", tmp_path / "cli", *FLAGS)
    assert code == 0
    model = TranslateModel(**OPTIONS).fit(files / "train.tsv", valid=files / "valid.tsv", run_dir=tmp_path / "py")
    cli, py = load_file(tmp_path / "cli" / "model.safetensors"), load_file(tmp_path / "py" / "model.safetensors")
    assert cli.keys() == py.keys()
    for name in cli:
        assert torch.equal(cli[name], py[name]), name

    sources = [s for s, _ in _pairs(files / "valid.tsv")][:8]
    (tmp_path / "src.txt").write_text("".join(s + "\n" for s in sources))
    code, out, _ = main_captured(capsys, "translate", "translate", tmp_path / "cli", tmp_path / "src.txt",
                                 "--beam", "3")
    assert code == 0
    assert model.translate(sources, beam=3) == out.splitlines()

    code, out, _ = main_captured(capsys, "translate", "evaluate", tmp_path / "cli", files / "valid.tsv")
    assert code == 0
    from_cli = json.loads(out)
    from_py = model.evaluate(files / "valid.tsv")
    for key in ("bleu", "chrf", "exact_match"):
        assert from_py[key] == from_cli[key], key


def test_pairs_in_memory_translations_out_and_a_round_trip(files, tmp_path):
    pairs, valid = _pairs(files / "train.tsv"), _pairs(files / "valid.tsv")
    model = TranslateModel(**OPTIONS).fit(pairs, valid=valid)
    one = model.translate(valid[0][0])
    assert isinstance(one, str)
    several = model.translate([s for s, _ in valid[:4]], beam=4, n_best=3)
    assert len(several) == 4 and all(len(options) == 3 for options in several)
    assert [options[0] for options in several] == model.translate([s for s, _ in valid[:4]], beam=4)
    scores = model.evaluate(valid)
    assert 0 <= scores["chrf"] <= 100 and "bleu_signature" in scores
    saved = TranslateModel.load(model.save(tmp_path / "saved"))
    assert saved.translate([s for s, _ in valid]) == model.translate([s for s, _ in valid])


@pytest.mark.parametrize("pairs,match", [
    ([], "no sentence pairs"),
    ([("a\tb", "c")], "source holds a tab"),
    ([("a", "c\nd")], "target holds a tab or a line break"),
    ([("a",)], "expected \\(source, target\\) strings"),
])
def test_bad_pairs_are_user_errors(pairs, match, tmp_path):
    with pytest.raises(UserError, match=match):
        TranslateModel(**OPTIONS).fit(pairs, run_dir=tmp_path / "run")


def test_untrained_and_bad_search_options(files, tmp_path):
    with pytest.raises(UserError, match="not trained"):
        TranslateModel().translate("abc")
    with pytest.raises(UserError, match="not a translate run directory"):
        TranslateModel.load(tmp_path)
    model = TranslateModel(**OPTIONS).fit(_pairs(files / "valid.tsv"), run_dir=tmp_path / "run")
    with pytest.raises(UserError, match="--beam must be from 1 to 100"):
        model.translate("abc", beam=0)
    with pytest.raises(UserError, match="expected strings"):
        model.translate([1, 2])
