"""``rnnkit classify train --resume RUN_DIR``: continues the checkpoint (the same weights as a run never
interrupted), keeps the best validation epoch across the interruption, and a refused resume changes
nothing in the run directory."""

import json
import subprocess
import sys

import pytest
from safetensors.numpy import load_file
from test_classify_cli import TINY, fails, run, tiny_csv

OPTS = [o for o in TINY if o not in ("--epochs", "3")] + ["--early-stopping", "50", "--set", "dropout=0"]


def files(run_dir):
    return {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path, capsys):
    data = tiny_csv(tmp_path / "d.csv")
    straight, parts = tmp_path / "straight", tmp_path / "parts"
    run(["classify", "train", "--out", str(straight), "--data", str(data), "--epochs", "4", *OPTS], capsys)
    run(["classify", "train", "--out", str(parts), "--data", str(data), "--epochs", "2", *OPTS], capsys)
    first = json.loads((parts / "validation.json").read_text())["training"]
    run(["classify", "train", "--resume", str(parts), "--data", str(data), "--epochs", "4", "-q"], capsys)
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(parts / "model.safetensors"))
    assert set(a) == set(b)
    for name in a:  # the best epoch's weights, whichever side of the interruption it fell on
        assert (a[name] == b[name]).all(), name
    done = json.loads((parts / "validation.json").read_text())["training"]
    assert done["epochs"] == 4 and first["epochs"] == 2
    assert done["best_epoch"] == json.loads((straight / "validation.json").read_text())["training"]["best_epoch"]
    assert done["best_epoch"] >= 0
    config = json.loads((parts / "config.json").read_text())
    assert config["resumes"][-1]["changed"] == {"max_epochs": [2, 4]} and config["resumes"][-1]["from_epoch"] == 1


def test_the_best_epoch_before_the_interruption_survives_it(tmp_path, capsys):
    """lr 0 after the resume: no later epoch can beat the best one, which must come from the checkpoint."""
    data = tiny_csv(tmp_path / "d.csv")
    out = tmp_path / "r"
    run(["classify", "train", "--out", str(out), "--data", str(data), "--epochs", "3", *OPTS], capsys)
    before = json.loads((out / "validation.json").read_text())["training"]
    weights = (out / "model.safetensors").read_bytes()
    run(["classify", "train", "--resume", str(out), "--data", str(data), "--epochs", "5", "--lr", "1e-12", "-q"],
        capsys)
    after = json.loads((out / "validation.json").read_text())["training"]
    assert after["epochs"] == 5
    if after["best_epoch"] == before["best_epoch"]:  # unless a near-frozen epoch ties it at a lower loss
        assert (out / "model.safetensors").read_bytes() == weights
    assert after["best_epoch"] >= before["best_epoch"]


@pytest.mark.parametrize("args, message", [
    (["--hidden", "16"], "--resume cannot change"),
    (["--example"], "--example starts a new run"),
    (["--out", "X"], "exactly one of"),
])
def test_a_refused_resume_touches_nothing(tmp_path, capsys, args, message):
    data = tiny_csv(tmp_path / "d.csv")
    out = tmp_path / "r"
    run(["classify", "train", "--out", str(out), "--data", str(data), "--epochs", "1", *OPTS], capsys)
    before = files(out)
    fails(["classify", "train", "--resume", str(out), "--data", str(data), *args], capsys, message)
    assert files(out) == before


def test_resume_refuses_other_data_and_other_runs(tmp_path, capsys):
    data = tiny_csv(tmp_path / "d.csv")
    out = tmp_path / "r"
    run(["classify", "train", "--out", str(out), "--data", str(data), "--epochs", "1", *OPTS], capsys)
    before = files(out)
    # the training file lies outside the run directory: rnnkit reads it only when named
    fails(["classify", "train", "--resume", str(out), "--epochs", "2"], capsys, "--data")
    other = tiny_csv(tmp_path / "other.csv", length=(9, 13))
    fails(["classify", "train", "--resume", str(out), "--data", str(other), "--epochs", "2"], capsys,
          "not the file")
    assert files(out) == before
    forecast = tmp_path / "forecast"
    forecast.mkdir()
    (forecast / "config.json").write_text(json.dumps({"app": "forecast", "task": {}}))
    fails(["classify", "train", "--resume", str(forecast), "--data", str(data)], capsys, "not a classify run")
    fails(["classify", "train", "--resume", str(tmp_path / "none"), "--data", str(data)], capsys, "no config.json")


def test_resume_of_an_example_run_finds_its_data(tmp_path, capsys):
    out = tmp_path / "ex"
    run(["classify", "train", "--out", str(out), "--example", "--epochs", "1", *OPTS], capsys)
    assert json.loads((out / "config.json").read_text())["task"]["data"] == "data/shapes.csv"
    run(["classify", "train", "--resume", str(out), "--epochs", "2", "-q"], capsys)
    assert json.loads((out / "validation.json").read_text())["training"]["epochs"] == 2
    # rnnkit.load in a fresh process that never imported the app (classify.net is a built-in module)
    code = ("import sys, rnnkit; m = rnnkit.load(sys.argv[1]); "
            "print(type(m).__name__, m.classes, 'rnnkit.apps.classify.cli' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["Classifier", "['ramp',", "'sine',", "'square']", "False"]
