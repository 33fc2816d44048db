"""The `rnnkit` command: help, version, info, mounting, config files, one-line user errors, demo."""

from __future__ import annotations

import json
import time

import pytest
import typer

from _training_helpers import run_cli
from rnnkit import cli
from rnnkit.cli import main, register_app
from rnnkit.executors.dispatch import backend_names


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("info", "demo", "diagnose", "adding"):
        assert command in out
    assert main([]) == 0  # no command: the help, not an error
    assert main(["adding", "train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--resume" in out and "--tbptt" in out and "--config" in out


def test_console_script_version_and_help():
    res = run_cli(["--version"])
    assert res.returncode == 0 and res.stdout.strip().startswith("rnnkit 0.")
    res = run_cli(["--bogus"])
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "--bogus" in res.stderr


def test_info_reports_every_executor(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "lightning" in out
    for (name, status) in cli.executor_report():
        assert name in out
        assert status.split()[0] in out
    assert [n for n, _ in cli.executor_report()] == backend_names()
    assert dict(cli.executor_report())["reference"] == "available"


@pytest.mark.parametrize("argv, needle", [
    (["adding", "train"], "exactly one of --out"),
    (["adding", "train", "--out", "x", "--config", "/no/such.yaml"], "not found"),
    (["adding", "train", "--out", "x", "--optimizer", "adagrad"], "optimizer = 'adagrad' is not allowed"),
    (["adding", "train", "--out", "x", "--lr", "fast"], "--lr"),
    (["adding", "train", "--out", "x", "--set", "nonsense=1"], "unknown option 'nonsense'"),
    (["adding", "evaluate", "/no/such/run"], "not found"),
    (["nosuchcommand"], "nosuchcommand"),
])
def test_user_errors_one_line_exit_2(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error:") and err.count("\n") == 1 and needle in err
    assert "Traceback" not in err


def test_mounting_api(capsys):
    sub = typer.Typer(help="a test application")

    @sub.command()
    def hello(name: str = "world") -> None:
        typer.echo(f"hello {name}")

    @sub.command()
    def other() -> None:
        pass

    register_app("tests-app", sub)
    register_app("tests-broken", "rnnkit.no_such_module:app")
    try:
        assert main(["--help"]) == 0
        out = capsys.readouterr().out
        assert "tests-app" in out and "tests-broken" in out
        assert main(["tests-app", "hello", "--name", "rnn"]) == 0
        assert capsys.readouterr().out == "hello rnn\n"
        assert main(["tests-broken"]) == 2
        assert "unavailable" in capsys.readouterr().err
    finally:
        cli._APPS.pop("tests-app")
        cli._APPS.pop("tests-broken")


def test_train_config_file_flags_override_and_resolved_config_saved(tmp_path, capsys):
    f = tmp_path / "run.yaml"
    f.write_text("epochs: 5\nmax_epochs: 1\nhidden: 6\nseq_len: 8\ntrain_size: 64\nval_size: 32\n"
                 "batch_size: 32\nlr: 0.5\ntensorboard: false\nplots: false\n")
    run = tmp_path / "run"
    # "epochs" (the flag's name) and max_epochs are one option: a file may name it once
    assert main(["adding", "train", "--out", str(run), "--config", str(f), "--quiet"]) == 2
    assert "epochs and max_epochs are one option" in capsys.readouterr().err
    f.write_text(f.read_text().replace("epochs: 5\n", ""))
    assert main(["adding", "train", "--out", str(run), "--config", str(f), "--lr", "0.01", "--quiet",
                 "--threads", "1"]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["train"]["lr"] == 0.01 and saved["train"]["max_epochs"] == 1  # flag over file
    assert saved["task"]["hidden"] == 6 and saved["model"]["config"]["hidden"] == 6
    assert main(["adding", "evaluate", str(run)]) == 0
    assert "test MSE" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_full_under_three_minutes(tmp_path):
    start = time.perf_counter()
    res = run_cli(["demo", "--out", str(tmp_path / "demo")], timeout=400)
    took = time.perf_counter() - start
    assert res.returncode == 0, res.stderr[-2000:]
    assert took < 180, f"rnnkit demo took {took:.0f} s"
    assert "summary" in res.stdout and "beat the 1/6 baseline" in res.stdout
    pngs = sorted(p.name for p in (tmp_path / "demo").rglob("*.png"))
    assert "adding_curves.png" in pngs and "loss.png" in pngs and len(pngs) >= 9


def test_demo_quick(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "summary" in out and "rnnkit.load" in out
    assert (tmp_path / "demo" / "cells" / "adding_curves.png").exists()
    assert (tmp_path / "demo" / "diagnostics" / "summary.json").exists()
    assert (tmp_path / "demo" / "training" / "model.safetensors").exists()


@pytest.mark.slow  # test_demo_quick runs the same diagnostics demo through `rnnkit demo`
def test_diagnose_demo(tmp_path, capsys):
    assert main(["diagnose", "demo", "--out", str(tmp_path / "d"), "--quick"]) == 0
    assert (tmp_path / "d" / "summary.json").exists()
