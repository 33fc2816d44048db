"""The classification Python API (issue #25): ``ClassifyModel`` behaves as ``rnnkit classify`` with the
same defaults, so the same model trained through the CLI and through Python is the same model; arrays
and lists of variable-length arrays go in without a file."""

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

from rnnkit.apps.classify import ClassifyModel
from rnnkit.apps.classify.cli import example_csv
from rnnkit.cli import main
from rnnkit.errors import UserError

OPTIONS = {"max_epochs": 2, "hidden": 8, "filters": "8,8,8", "seed": 3, "baseline_window": 0.2}
FLAGS = ["--epochs", "2", "--hidden", "8", "--set", "filters=8,8,8", "--seed", "3", "--set", "baseline_window=0.2",
         "-q"]


def _shapes(n: int, seed: int) -> tuple[list[np.ndarray], list[str]]:
    """Two classes told apart by their level; lengths 10-19, two dims."""
    rng = np.random.default_rng(seed)
    cases, labels = [], []
    for k in range(n):
        label = "high" if k % 2 else "low"
        length = int(rng.integers(10, 20))
        cases.append(rng.normal(size=(length, 2)) + (3.0 if label == "high" else 0.0))
        labels.append(label)
    return cases, labels


def test_cli_and_python_train_the_same_model(tmp_path):
    data = example_csv(tmp_path / "data")
    assert main(["classify", "train", "--out", str(tmp_path / "cli"), "--data", str(data), *FLAGS]) == 0
    model = ClassifyModel(**OPTIONS).fit(data, run_dir=tmp_path / "py")
    cli_weights = load_file(tmp_path / "cli" / "model.safetensors")
    py_weights = load_file(tmp_path / "py" / "model.safetensors")
    assert cli_weights.keys() == py_weights.keys()
    for name in cli_weights:
        assert (cli_weights[name] == py_weights[name]).all(), name

    assert main(["classify", "predict", str(tmp_path / "cli"), "--data", str(data), "--output",
                 str(tmp_path / "cli.csv"), "-q"]) == 0
    from_cli = pd.read_csv(tmp_path / "cli.csv", dtype={"case_id": str})
    pd.testing.assert_frame_equal(model.predict(data), from_cli)


def test_arrays_in_predictions_and_scores_out(tmp_path):
    train_x, train_y = _shapes(40, seed=0)
    test_x, test_y = _shapes(12, seed=1)
    model = ClassifyModel(**{**OPTIONS, "max_epochs": 30}).fit(train_x, train_y, run_dir=tmp_path / "run")

    table = model.predict(test_x)
    assert len(table) == len(test_x)
    probabilities = table[["p_high", "p_low"]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    report = model.evaluate(test_x, test_y)
    accuracy = {name: scores["accuracy"] for name, scores in report["metrics"].items()}
    assert max(accuracy.values()) >= 0.9, accuracy  # the levels differ by 3 standard deviations
    # an array (N, T, D) of equal-length cases is the same data as its list of cases
    same_length = np.stack([case[:10] for case in test_x])
    np.testing.assert_array_equal(model.predict(same_length)["predicted"],
                                  model.predict(list(same_length))["predicted"])

    again = ClassifyModel.load(model.save(tmp_path / "copy"))
    pd.testing.assert_frame_equal(again.predict(test_x), table)


def test_bad_inputs_are_user_errors_and_a_run_is_never_overwritten(tmp_path):
    cases, labels = _shapes(6, seed=0)
    with pytest.raises(UserError, match="5 labels for 6 cases"):
        ClassifyModel(**OPTIONS).fit(cases, labels[:5], run_dir=tmp_path / "a")
    with pytest.raises(UserError, match="same dims"):
        ClassifyModel(**OPTIONS).fit([np.zeros((5, 2)), np.zeros((5, 3))], ["x", "y"], run_dir=tmp_path / "b")
    with pytest.raises(UserError, match="not trained"):
        ClassifyModel().predict(cases)

    run = tmp_path / "run"
    ClassifyModel(**OPTIONS).fit(cases * 4, labels * 4, run_dir=run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(UserError, match="already holds a run"):
        ClassifyModel(**OPTIONS).fit(cases, labels, run_dir=run)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
