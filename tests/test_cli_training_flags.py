"""The training flags of every ``rnnkit <app> train`` come from one declaration (issue #25):
``rnnkit.cli_options.training_flags``, generated from TrainConfig's declared options. Same names, types
and allowed values in every app; only the shown default is the app's."""

from __future__ import annotations

import re

import pytest
import typer

from rnnkit.cli import build_app
from rnnkit.cli_options import TRAINING_FLAGS, training_flags

APPS = ("adding", "text", "forecast", "classify", "translate", "speech")


def _train_command(app: str):
    group = typer.main.get_command(build_app())
    return group.commands[app].commands["train"]  # type: ignore[attr-defined]


def _flags(command) -> dict:
    # typer may vendor its own click: compare by kind, not by class
    return {p.name: p for p in command.params if p.param_type_name == "option"}


@pytest.mark.parametrize("app", APPS)
def test_every_train_command_takes_every_shared_flag(app):
    flags = _flags(_train_command(app))
    missing = [f for f in TRAINING_FLAGS if f not in flags]
    assert missing == []


def test_the_shared_flags_are_the_same_everywhere_but_their_default():
    def without_default(option) -> tuple:
        return (tuple(option.opts), tuple(option.secondary_opts), repr(getattr(option, "type", None)),
                re.sub(r"default: .*$", "", option.help or ""))

    first = {f: without_default(o) for f, o in _flags(_train_command(APPS[0])).items() if f in TRAINING_FLAGS}
    for app in APPS[1:]:
        other = {f: without_default(o) for f, o in _flags(_train_command(app)).items() if f in TRAINING_FLAGS}
        assert other == first, app


def test_help_shows_the_apps_default_and_what_is_allowed():
    text_epochs = _flags(_train_command("text"))["epochs"].help
    adding_epochs = _flags(_train_command("adding"))["epochs"].help
    assert text_epochs.endswith("default: 20") and adding_epochs.endswith("default: 10")
    assert "an integer >= 1" in text_epochs
    assert "one of: adam, adamw, sgd, ntasgd" in _flags(_train_command("text"))["optimizer"].help


def test_given_flags_arrive_as_trainconfig_fields_and_absent_ones_do_not():
    seen = {}

    @training_flags({"max_epochs": 3})
    def train(out: str = "x", quiet: bool = False, training: dict | None = None) -> None:
        seen.update(training or {})

    train(out="y", epochs=5, lr=0.1, seed=None, early_stopping=2)
    assert seen == {"max_epochs": 5, "lr": 0.1, "early_stopping_patience": 2}
    names = list(__import__("inspect").signature(train).parameters)
    assert names[0] == "out" and names[-1] == "quiet" and "training" not in names


def test_a_command_may_not_declare_a_shared_flag_itself():
    with pytest.raises(TypeError, match="epochs"):
        @training_flags()
        def train(epochs: int = 1, training: dict | None = None) -> None:
            pass


def test_a_bad_value_is_refused_in_one_line(tmp_path, capsys):
    from rnnkit.cli import main

    for app in ("adding", "translate"):
        rc = main([app, "train", *(["x.tsv"] if app == "translate" else []), "--out", str(tmp_path / app),
                   "--lr", "-1"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "lr" in err[0], (app, err)
        assert not (tmp_path / app).exists()


def test_a_flags_name_is_a_key_of_config_files_set_and_the_apis(tmp_path, capsys):
    """epochs (the flag) and max_epochs (the field) are one option everywhere (issue #25)."""
    import json

    from rnnkit.apps.forecast import ForecastModel
    from rnnkit.cli import main

    tiny = ["--train-size", "64", "--val-size", "16", "--hidden", "4", "--seq-len", "5", "-q"]
    (tmp_path / "a.yaml").write_text("epochs: 1\nearly_stopping: 3\n")
    assert main(["adding", "train", "--out", str(tmp_path / "a"), "--config", str(tmp_path / "a.yaml"), *tiny]) == 0
    train = json.loads((tmp_path / "a" / "config.json").read_text())["train"]
    assert train["max_epochs"] == 1 and train["early_stopping_patience"] == 3
    assert main(["adding", "train", "--out", str(tmp_path / "b"), "--set", "epochs=2", *tiny]) == 0
    assert json.loads((tmp_path / "b" / "config.json").read_text())["train"]["max_epochs"] == 2
    (tmp_path / "c.yaml").write_text("epochs: 1\nmax_epochs: 2\n")
    capsys.readouterr()
    assert main(["adding", "train", "--out", str(tmp_path / "c"), "--config", str(tmp_path / "c.yaml"), *tiny]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "epochs and max_epochs are one option" in err
    assert not (tmp_path / "c").exists()
    assert ForecastModel(epochs=1).options == {"epochs": 1}  # accepted by the API's name check
