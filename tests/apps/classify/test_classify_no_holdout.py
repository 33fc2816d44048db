"""``--val-fraction 0``: no held-out split. Every training case trains, and the best epoch and early
stopping watch those same cases scored in evaluation mode (as the UCR deep-learning papers, which keep
the epoch of lowest training loss, hold no case out); the validation report says so in its row name
and puts no baseline beside it (a 1-NN of the training cases on themselves would be exact); it is
refused with cross-fitting (folds other than 1)."""

import json

from test_classify_cli import TINY, fails, run, tiny_csv

from rnnkit.apps.classify.pipeline import ClassifyConfig


def test_every_training_case_trains_and_judges_the_best_epoch(tmp_path, capsys):
    data = tiny_csv(tmp_path / "d.csv")
    out = tmp_path / "all"
    run(["classify", "train", "--out", str(out), "--data", str(data), *TINY, "--val-fraction", "0"], capsys)
    info = json.loads((out / "config.json").read_text())["data_info"]
    assert info["folds"] == 1 and info["train_cases"] == info["val_cases"] == 12
    val = json.loads((out / "validation.json").read_text())
    assert set(val["metrics"]) == {"lstm_fcn-lstm on its training cases"} and val["cases"] == 12
    assert 0 <= val["training"]["best_epoch"] < 3
    run(["classify", "evaluate", str(out), "--data", str(data), "-q"], capsys)
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert set(evaluation["metrics"]) == {"lstm_fcn-lstm", "1nn-dtw (window 0.2)"}

    held = tmp_path / "held"  # the default holds out a fifth of each class
    run(["classify", "train", "--out", str(held), "--data", str(data), *TINY], capsys)
    info = json.loads((held / "config.json").read_text())["data_info"]
    assert info["train_cases"] == 10 and info["val_cases"] == 2


def test_a_negative_or_whole_fraction_is_refused(tmp_path, capsys):
    data = tiny_csv(tmp_path / "d.csv")
    for bad in ("-0.1", "1"):
        fails(["classify", "train", "--out", str(tmp_path / "bad"), "--data", str(data), *TINY, "--val-fraction", bad],
              capsys, "val_fraction")
        assert not (tmp_path / "bad").exists()
    assert ClassifyConfig(val_fraction=0).validate().val_fraction == 0
    fails(["classify", "train", "--out", str(tmp_path / "bad"), "--data", str(data), *TINY, "--val-fraction", "0",
           "--set", "folds=0"], capsys, "give one of them")
    assert not (tmp_path / "bad").exists()
