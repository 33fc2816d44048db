"""``rnnkit classify`` end to end on the synthetic example and small files: train, evaluate,
predict; predictions identical after reload; every bad input one line, exit 2, nothing clobbered."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import rnnkit
from rnnkit.cli import main

TINY = ["--epochs", "3", "--hidden", "8", "-q", "--set", "filters=8,8,8", "--set", "baseline_window=0.2"]


def run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def fails(args, capsys, message):
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and message in err, err
    return err


def tiny_csv(path: Path, dims=1, test_labels=("a", "b"), length=(8, 12)) -> Path:
    rng = np.random.default_rng(0)
    rows = ["case_id,split,label,t," + ",".join(f"dim_{k}" for k in range(dims))]
    case = 0
    for split, labels in (("train", ("a", "b") * 6), ("test", test_labels)):
        for label in labels:
            n = int(rng.integers(*length))
            for t in range(n):
                v = rng.normal(size=dims) + (2.0 if label == "b" else 0.0)
                rows.append(f"{case},{split},{label},{t}," + ",".join(f"{x:.4f}" for x in v))
            case += 1
    path.write_text("\n".join(rows) + "\n")
    return path


def test_train_evaluate_predict_example(tmp_path, capsys):
    out = tmp_path / "run"
    run(["classify", "train", "--out", str(out), "--example", "--cell", "gru", *TINY], capsys)
    for name in ("config.json", "model.safetensors", "metrics.json", "baseline.safetensors", "validation.json",
                 "validation.md", "validation_confusion.png", "validation_predictions.csv", "data/shapes.csv"):
        assert (out / name).exists(), name
    config = json.loads((out / "config.json").read_text())
    assert config["app"] == "classify" and config["data_info"]["classes"] == ["ramp", "sine", "square"]
    assert config["model"]["config"]["classes"] == ["ramp", "sine", "square"]  # the label encoding
    val = json.loads((out / "validation.json").read_text())
    assert set(val["metrics"]) == {"lstm_fcn-gru", "1nn-dtw (window 0.2)"}
    assert val["cases"] == 12 and val["training"]["epochs"] == 3
    # the example data lies inside the run directory: evaluate and predict find it themselves
    run(["classify", "evaluate", str(out), "-q"], capsys)
    report = json.loads((out / "evaluation.json").read_text())
    assert report["cases"] == 60  # the test split only
    m = report["metrics"]["lstm_fcn-gru"]
    assert {"accuracy", "balanced_accuracy", "macro_f1", "confusion", "per_class"} <= set(m)
    assert sum(map(sum, m["confusion"])) == 60
    assert report["metrics"]["1nn-dtw (window 0.2)"]["accuracy"] > 0.8
    assert (out / "evaluation_confusion.png").stat().st_size > 1000
    ev = pd.read_csv(out / "evaluation_predictions.csv")
    assert list(ev.columns) == ["case_id", "split", "label", "predicted", "correct", "baseline", "p_ramp", "p_sine",
                                "p_square"]
    np.testing.assert_allclose(ev[["p_ramp", "p_sine", "p_square"]].sum(axis=1), 1.0, atol=1e-5)
    assert ev["correct"].mean() == pytest.approx(m["accuracy"])

    pred = tmp_path / "pred.csv"
    run(["classify", "predict", str(out), "--output", str(pred), "-q"], capsys)
    p = pd.read_csv(pred)
    assert len(p) == 120 and (p["predicted"] == p[["p_ramp", "p_sine", "p_square"]].idxmax(1).str[2:]).all()
    # identical after reload: the same file again gives the same probabilities
    again = tmp_path / "again.csv"
    run(["classify", "predict", str(out), "--output", str(again), "-q"], capsys)
    assert pred.read_text() == again.read_text()
    test_rows = p[p["split"] == "test"].reset_index(drop=True)
    np.testing.assert_allclose(test_rows["p_sine"], ev["p_sine"], atol=1e-6)
    assert rnnkit.load(out).classes == ["ramp", "sine", "square"]


@pytest.mark.parametrize("arch", ["rnn", "transformer", "mlstm_fcn"])
def test_other_architectures_train(tmp_path, capsys, arch):
    data = tiny_csv(tmp_path / "d.csv", dims=2)
    out = tmp_path / arch
    run(["classify", "train", "--out", str(out), "--data", str(data), "--arch", arch, "--pooling", "attention",
         "--class-weights", "balanced", *TINY, "--set", "baseline=none"], capsys)
    run(["classify", "evaluate", str(out), "--data", str(data), "-q"], capsys)
    report = json.loads((out / "evaluation.json").read_text())
    assert len(report["metrics"]) == 1 and report["cases"] == 2


def test_a_run_stopped_before_its_first_validation_finishes(tmp_path, capsys):
    """Early stopping watches val_loss: a run cut by max_steps before any validation (was: a Lightning
    RuntimeError, 'metric val_loss which is not available') still writes its model and report."""
    data = tiny_csv(tmp_path / "d.csv")
    out = tmp_path / "r"
    run(["classify", "train", "--out", str(out), "--data", str(data), *TINY, "--early-stopping", "2",
         "--set", "max_steps=1", "--set", "baseline=none"], capsys)
    assert (out / "model.safetensors").is_file() and (out / "metrics.json").is_file()


def test_a_damaged_task_option_in_config_json_is_one_line(tmp_path, capsys):
    """evaluate reads config.json through the same schema as the flags: a range or a type edited
    out of bounds is refused in one line naming the file and the key."""
    data = tiny_csv(tmp_path / "d.csv")
    out = tmp_path / "r"
    run(["classify", "train", "--out", str(out), "--data", str(data), *TINY, "--set", "baseline=none"], capsys)
    saved = json.loads((out / "config.json").read_text())
    for key, value, message in (("hidden", -3, "hidden = -3"), ("dropout", "x", "dropout"),
                                ("pooling", "median", "pooling = 'median'")):
        bad = {**saved, "task": {**saved["task"], key: value}}
        (out / "config.json").write_text(json.dumps(bad))
        err = fails(["classify", "evaluate", str(out), "-q"], capsys, message)
        assert "config.json" in err


def test_ts_files_train_and_evaluate(tmp_path, capsys):
    head = "@problemName toy\n@univariate true\n@classLabel true a b\n@data\n"
    rng = np.random.default_rng(0)

    def ts(name, n):
        lines = [",".join(f"{v:.3f}" for v in rng.normal(size=int(rng.integers(5, 9))) + 2 * (i % 2)) +
                 (":b" if i % 2 else ":a") for i in range(n)]
        (tmp_path / name).write_text(head + "\n".join(lines) + "\n")
        return tmp_path / name

    train, test = ts("toy_TRAIN.ts", 12), ts("toy_TEST.ts", 6)
    out = tmp_path / "run"
    run(["classify", "train", "--out", str(out), "--data", str(train), "--arch", "rnn", *TINY], capsys)
    # the training file lies outside the run directory: named again, never read from config.json
    fails(["classify", "evaluate", str(out)], capsys, "--data")
    run(["classify", "evaluate", str(out), "--data", str(test), "-q"], capsys)
    assert json.loads((out / "evaluation.json").read_text())["cases"] == 6


def test_bad_inputs_one_line_exit_2_nothing_clobbered(tmp_path, capsys):
    good = tiny_csv(tmp_path / "good.csv")
    only_test = tiny_csv(tmp_path / "only_test.csv", test_labels=("a", "z"))
    out = tmp_path / "new"
    fails(["classify", "train", "--out", str(out), "--data", str(only_test), *TINY], capsys, "'z' not among")
    assert not out.exists()  # checked before anything is written
    nan = tmp_path / "nan.csv"
    text = good.read_text().splitlines()
    text[2] = ",".join(text[2].split(",")[:4]) + ","
    nan.write_text("\n".join(text) + "\n")
    fails(["classify", "train", "--out", str(out), "--data", str(nan), "--missing", "error", *TINY], capsys,
          "missing value at step 1")
    missing_col = tmp_path / "cols.csv"
    missing_col.write_text(good.read_text().replace("case_id,", "id,", 1))
    fails(["classify", "train", "--out", str(out), "--data", str(missing_col), *TINY], capsys, "no 'case_id' column")
    fails(["classify", "train", "--out", str(out), "--data", str(good), "--arch", "cnn", *TINY], capsys,
          "'cnn' is not allowed")
    fails(["classify", "train", "--out", str(out), "--data", str(tmp_path / "none.csv"), *TINY], capsys, "not found")
    assert not out.exists()

    run(["classify", "train", "--out", str(out), "--data", str(good), "--arch", "rnn", *TINY], capsys)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    fails(["classify", "train", "--out", str(out), "--data", str(good), *TINY], capsys, "already holds a run")
    assert before == {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    two_dims = tiny_csv(tmp_path / "two.csv", dims=2)
    fails(["classify", "evaluate", str(out), "--data", str(two_dims)], capsys, "2 dimension(s) per step")
    fails(["classify", "evaluate", str(out), "--data", str(only_test)], capsys, "not among")
    fails(["classify", "predict", str(out), "--data", str(two_dims), "--output", str(tmp_path / "p.csv")], capsys,
          "dimension")
    assert not (tmp_path / "p.csv").exists()

    other = tmp_path / "other"  # a run directory of another app
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"app": "forecast", "task": {}}))
    fails(["classify", "evaluate", str(other), "--data", str(good)], capsys, "not a classify run")
    fails(["classify", "evaluate", str(tmp_path), "--data", str(good)], capsys, "no config.json")


def test_demo_part(tmp_path):
    from rnnkit.apps.classify.cli import demo

    lines = demo(tmp_path / "classify", quick=True)
    assert "test accuracy" in lines[0] and "1nn-dtw" in lines[0]
    assert (tmp_path / "classify" / "evaluation_confusion.png").exists()
