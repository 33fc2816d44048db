"""Size limits before allocation (issue #23, io/size_limits.py): huge sizes in config.json or on the
command line are one line and exit 2 in every app and in rnnkit.load, unless RNNKIT_ALLOW_LARGE=1."""

from __future__ import annotations

import json
import shutil

import pytest

import rnnkit
from _training_helpers import one_epoch_adding_run
from rnnkit.cli import main
from rnnkit.io.size_limits import MAX_LAYERS, TooLarge, check_size, estimate_parameters


def test_estimate_matches_an_lstm():
    from rnnkit.layers.recurrent import Recurrent

    for hidden, layers, inp in ((8, 1, 2), (16, 3, 5)):
        real = sum(p.numel() for p in Recurrent("lstm", inp, hidden, layers).parameters())
        assert estimate_parameters(hidden, layers, inp) == real


@pytest.mark.parametrize("args, needle", [
    (["--hidden", "20000"], "--hidden 20000"),
    (["--num-layers", "1000000"], f"limit of {MAX_LAYERS} layers"),
    (["--set", "num_layers=1000000"], "--num-layers 1000000"),
])
def test_adding_command_line(tmp_path, capsys, args, needle):
    code = main(["adding", "train", "--out", str(tmp_path / "run"), "--quiet", *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and needle in err and "RNNKIT_ALLOW_LARGE=1" in err, err
    assert not (tmp_path / "run" / "config.json").exists()


@pytest.mark.parametrize("app", ["text", "forecast"])
def test_other_apps(tmp_path, capsys, app):
    code = main([app, "train", "--out", str(tmp_path / "run"), "--hidden", "20000", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--hidden 20000" in err and "limit" in err, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return one_epoch_adding_run(tmp_path_factory.mktemp("trained"))


@pytest.mark.parametrize("key, value", [("hidden", 20000), ("num_layers", 1000000)])
def test_config_json_sizes(trained, tmp_path, capsys, key, value):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    config = json.loads((run / "config.json").read_text())
    config["model"]["config"][key] = value
    config["task"][key] = value
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(TooLarge, match=f"{key} {value}"):
        rnnkit.load(run)
    for argv in (["adding", "evaluate", str(run)], ["adding", "train", "--resume", str(run), "--quiet"],
                 ["diagnose", str(run)]):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and str(value) in err, (argv, err)


def test_override(monkeypatch):
    with pytest.raises(TooLarge):
        check_size(20000, 1)
    monkeypatch.setenv("RNNKIT_ALLOW_LARGE", "1")
    check_size(20000, 1)  # the user asked for it
    check_size(8, 10**6)
