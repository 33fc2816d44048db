"""Run directories are untrusted input (issue #23, docs/security.md): a crafted checkpoint or config.json
never makes rnnkit touch a file outside the run directory, nor import a module it names."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import rnnkit
from _training_helpers import one_epoch_adding_run, tiny
from rnnkit.apps.adding.cli import run_adding
from rnnkit.cli import main
from rnnkit.io.confine import OutsideRunDir, inside_run_dir, remove_in_run_dir
from rnnkit.io.registry import BUILTIN_MODULES, UnknownModel, build_model

CKPT = Path("checkpoints") / "last.ckpt"


# ---- inside_run_dir ----------------------------------------------------------------------------
def test_inside_run_dir_accepts_paths_inside(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    assert inside_run_dir(run, "config.json") == (run / "config.json").resolve()
    assert inside_run_dir(run, run / "checkpoints" / "last.ckpt") == (run / "checkpoints/last.ckpt").resolve()
    assert inside_run_dir(run, "checkpoints/../model.safetensors") == (run / "model.safetensors").resolve()
    assert inside_run_dir(run, "not/yet/there.txt") == (run / "not/yet/there.txt").resolve()
    assert inside_run_dir(run, run) == run.resolve()
    (run / "checkpoints" / "alias").symlink_to(run / "checkpoints")  # a link that stays inside is fine
    assert inside_run_dir(run, "checkpoints/alias/last.ckpt") == (run / "checkpoints/last.ckpt").resolve()


@pytest.mark.parametrize("path", ["../victim.txt", "checkpoints/../../victim.txt", "/etc/passwd",
                                  "{tmp}/victim.txt", "{tmp}/run2/x", "link_file", "link_dir/x.ckpt",
                                  "checkpoints/../link_dir/../../victim.txt"])
def test_inside_run_dir_refuses_paths_outside(tmp_path, path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (tmp_path / "run2").mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (run / "link_file").symlink_to(victim)
    (run / "link_dir").symlink_to(tmp_path / "run2")
    with pytest.raises(OutsideRunDir, match="outside the run directory") as err:
        inside_run_dir(run, path.format(tmp=tmp_path))
    assert "\n" not in str(err.value)
    with pytest.raises(OutsideRunDir):
        remove_in_run_dir(run, path.format(tmp=tmp_path))
    assert victim.read_text() == "precious"
    # a relative run directory resolves against the working directory, like the paths given to it
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        with pytest.raises(OutsideRunDir):
            inside_run_dir("run", "../victim.txt")
        assert inside_run_dir("run", "checkpoints/last.ckpt") == (run / "checkpoints/last.ckpt").resolve()
    finally:
        os.chdir(cwd)


def test_inside_run_dir_error_is_one_line_even_for_a_crafted_name(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(OutsideRunDir) as err:
        inside_run_dir(tmp_path / "run", "../evil\nname")
    assert "\n" not in str(err.value)


# ---- crafted checkpoints -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real one-epoch adding run (about a second), copied by each test."""
    return one_epoch_adding_run(tmp_path_factory.mktemp("trained"))


def _copy_run(trained: Path, where: Path) -> Path:
    run = where / "shared" / "run"
    shutil.copytree(trained, run)
    return run


def _snapshot(root: Path, skip: Path) -> dict[str, str]:
    """Every path under ``root`` outside ``skip`` with a digest of its content (links by target)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        if d == skip or skip in d.parents:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = d / name
            if p == skip:
                continue
            if p.is_symlink():
                out[str(p)] = "link:" + os.readlink(p)
            elif p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[str(p)] = "dir"
    return out


def _edit_checkpoint(run: Path, edit) -> None:
    ckpt = torch.load(run / CKPT, weights_only=True)
    edit(ckpt)
    torch.save(ckpt, run / CKPT)


def _resume(run: Path, capsys, *extra: str) -> tuple[int, str]:
    code = main(["adding", "train", "--resume", str(run), "--epochs", "2", "--quiet", *extra])
    return code, capsys.readouterr().err


def _model_checkpoint_state(ckpt: dict) -> dict:
    return next(v for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint"))


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink", "all_fields"])
def test_crafted_checkpoint_paths_never_touch_files_outside(trained, tmp_path, capsys, how):
    run = _copy_run(trained, tmp_path)
    victim = tmp_path / "shared" / "victim.txt"
    victim.write_text("precious")
    other = tmp_path / "elsewhere.ckpt"
    other.write_text("also precious")
    if how == "dotdot":
        target = str(run / "checkpoints" / ".." / ".." / "victim.txt")
    elif how == "absolute":
        target = str(other)
    elif how == "symlink":  # a link inside the run directory that points outside it
        (run / "checkpoints" / "old.ckpt").symlink_to(victim)
        target = str(run / "checkpoints" / "old.ckpt")
    else:
        target = str(run / "checkpoints" / ".." / ".." / "victim.txt")

    def craft(ckpt):
        state = _model_checkpoint_state(ckpt)
        state["best_model_path"] = target
        if how == "all_fields":  # every path-valued field, with the dirpath Lightning compares against
            state["kth_best_model_path"] = str(other)
            state["last_model_path"] = str(victim)
            state["best_k_models"] = {str(victim): torch.tensor(0.0), str(other): torch.tensor(1.0)}
            state["dirpath"] = str(run / "checkpoints")

    _edit_checkpoint(run, craft)
    before = _snapshot(tmp_path, run)
    code, err = _resume(run, capsys)
    assert code == 0, err
    assert _snapshot(tmp_path, run) == before
    assert victim.read_text() == "precious" and other.read_text() == "also precious"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs_completed"] == 2
    saved = torch.load(run / CKPT, weights_only=True)  # the new checkpoint names only its own file
    assert _model_checkpoint_state(saved)["best_model_path"] == str(run / "checkpoints" / "last.ckpt")


def test_symlinked_checkpoint_folder_is_refused(trained, tmp_path, capsys):
    run = _copy_run(trained, tmp_path)
    outside = tmp_path / "outside_ckpts"
    shutil.move(run / "checkpoints", outside)
    (run / "checkpoints").symlink_to(outside)
    before = _snapshot(tmp_path, run)
    code, err = _resume(run, capsys)
    assert code == 2 and err.count("\n") == 1 and "outside the run directory" in err
    assert _snapshot(tmp_path, run) == before


def _bad_shape(ckpt):
    ckpt["state_dict"]["model.head.weight"] = torch.zeros(3, 3)


def _bad_optimizer_shape(ckpt):
    ckpt["optimizer_states"][0]["state"][0]["exp_avg"] = torch.zeros(7)


def _bad_param_index(ckpt):
    ckpt["optimizer_states"][0]["state"][99] = ckpt["optimizer_states"][0]["state"][0]


def _unknown_key(ckpt):
    ckpt["hyper_parameters"] = {"x": 1}


def _negative_loop_counter(ckpt):
    ckpt["loops"]["fit_loop"]["epoch_progress"]["current"]["completed"] = -5


def _extra_loop_key(ckpt):
    ckpt["loops"]["fit_loop"]["epoch_progress"]["total"]["__class__"] = 1


def _string_lr(ckpt):
    ckpt["optimizer_states"][0]["param_groups"][0]["lr"] = "1e-3\nsecret file content"


def _scheduler_extra(ckpt):
    ckpt["lr_schedulers"][0]["optimizer"] = 1


def _unknown_callback(ckpt):
    ckpt["callbacks"]["Evil{}"] = {"path": "/etc/passwd"}


def _log_row_text(ckpt):
    ckpt["callbacks"]["RunDirectory"]["rows"].append({"epoch": "0; rm -rf /"})


def _not_a_dict(ckpt):
    ckpt.clear()
    ckpt["epoch"] = [1, 2]


@pytest.mark.parametrize("edit", [_bad_shape, _bad_optimizer_shape, _bad_param_index, _unknown_key,
                                  _negative_loop_counter, _extra_loop_key, _string_lr, _scheduler_extra,
                                  _unknown_callback, _log_row_text, _not_a_dict])
def test_malformed_checkpoint_is_one_line_exit_2(trained, tmp_path, capsys, edit):
    run = _copy_run(trained, tmp_path)
    _edit_checkpoint(run, edit)
    before = _snapshot(tmp_path, run)
    code, err = _resume(run, capsys)
    assert code == 2, err
    assert err.count("\n") == 1 and "last.ckpt" in err
    assert "secret" not in err and "rm -rf" not in err and "passwd" not in err  # never the file's content
    assert _snapshot(tmp_path, run) == before


def test_checkpoint_that_is_not_a_checkpoint(trained, tmp_path, capsys):
    run = _copy_run(trained, tmp_path)
    (run / CKPT).write_bytes(b"root:x:0:0:root:/root:/bin/bash\n")
    code, err = _resume(run, capsys)
    assert code == 2 and err.count("\n") == 1 and "root:" not in err


def test_pickled_code_in_checkpoint_is_not_run(trained, tmp_path, capsys):
    run = _copy_run(trained, tmp_path)
    marker = tmp_path / "ran.txt"

    class Evil:
        def __reduce__(self):
            return (Path.write_text, (marker, "ran"))

    ckpt = torch.load(run / CKPT, weights_only=True)
    ckpt["rnnkit"]["val_history"] = Evil()
    torch.save(ckpt, run / CKPT)
    code, err = _resume(run, capsys)
    assert code == 2 and err.count("\n") == 1 and not marker.exists()


def test_early_stopping_patience_comes_from_the_config(trained, tmp_path, capsys):
    cfg, data = tiny(max_epochs=1, train_size=64, val_size=32, early_stopping_patience=5)
    run = tmp_path / "run"
    run_adding(cfg, data, run)

    def craft(ckpt):
        key = next(k for k in ckpt["callbacks"] if k.startswith("EarlyStopping"))
        ckpt["callbacks"][key]["patience"] = 0

    _edit_checkpoint(run, craft)
    code, err = _resume(run, capsys)
    assert code == 0, err
    assert json.loads((run / "metrics.json").read_text())["epochs_completed"] == 2
    saved = torch.load(run / CKPT, weights_only=True)
    assert next(v for k, v in saved["callbacks"].items() if k.startswith("EarlyStopping"))["patience"] == 5


# ---- config.json cannot pick code ----------------------------------------------------------------
def test_module_in_config_json_is_never_imported(trained, tmp_path, capsys, monkeypatch):
    run = _copy_run(trained, tmp_path)
    config = json.loads((run / "config.json").read_text())
    config["model"]["module"] = "rnnkit._ext.__main__"
    (run / "config.json").write_text(json.dumps(config))
    monkeypatch.delitem(sys.modules, "rnnkit._ext.__main__", raising=False)
    model = rnnkit.load(run)  # the name picks the class; the module entry is ignored
    assert type(model).__name__ == "AddingRegressor"
    assert "rnnkit._ext.__main__" not in sys.modules
    config["model"]["name"] = "no.such.model"
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnknownModel, match="unknown model"):
        rnnkit.load(run)
    assert "rnnkit._ext.__main__" not in sys.modules
    assert main(["adding", "evaluate", str(run), "--size", "4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown model" in err and "rnnkit._ext.__main__" not in sys.modules


def test_builtin_module_table_matches_the_registrations():
    import importlib

    from rnnkit.io import registry

    # each name is registered by importing its module alone (a fresh interpreter: nothing else
    # imported may have registered it); a model class may live elsewhere (translate's Seq2Seq is a
    # layer), what counts is the module rnnkit imports for the name
    script = (
        "import importlib, sys\n"
        "from rnnkit.io import registry\n"
        "name, module = sys.argv[1], sys.argv[2]\n"
        "assert name not in registry._BY_NAME, 'registered before the import'\n"
        "importlib.import_module(module)\n"
        "assert name in registry._BY_NAME, 'not registered by ' + module\n"
    )
    for name, module in BUILTIN_MODULES.items():
        result = subprocess.run([sys.executable, "-c", script, name, module], capture_output=True,
                                text=True, check=False)
        assert result.returncode == 0, (name, result.stderr[-500:])
    for name, module in BUILTIN_MODULES.items():
        importlib.import_module(module)
        assert name in registry._BY_NAME, name
    assert build_model({"name": "adding_regressor", "module": "os", "config": {"cell": "gru", "hidden": 4}})


def test_checkpoint_io_removes_and_saves_only_inside_the_run_dir(tmp_path):
    from rnnkit.training.rundir import AtomicCheckpointIO

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    io = AtomicCheckpointIO(run)  # what ModelCheckpoint's removal of the "previous best" goes through
    for path in (victim, run / "checkpoints" / ".." / ".." / "victim.txt"):
        with pytest.raises(OutsideRunDir):
            io.remove_checkpoint(path)
        with pytest.raises(OutsideRunDir):
            io.save_checkpoint({"x": 1}, path)
    assert victim.read_text() == "precious"
    io.save_checkpoint({"x": 1}, run / "checkpoints" / "a.ckpt")
    io.remove_checkpoint(run / "checkpoints" / "a.ckpt")
    assert not (run / "checkpoints" / "a.ckpt").exists()
    with pytest.raises(RuntimeError, match="trust"):  # nothing is loaded without the field-by-field check
        io.load_checkpoint(run / "checkpoints" / "a.ckpt")


# ---- data paths named by config.json -------------------------------------------------------------
def test_config_path_stays_inside_the_run_dir(tmp_path, monkeypatch):
    from rnnkit.io.confine import config_path

    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "data" / "x.csv").write_text("a\n")
    secret = tmp_path / "secret.csv"
    secret.write_text("secret content\n")
    assert config_path(run, "data/x.csv", "task.data", "--data FILE") == (run / "data/x.csv").resolve()
    assert config_path(run, str(run / "data/x.csv"), "task.data", "--data FILE") == (run / "data/x.csv").resolve()
    monkeypatch.chdir(tmp_path)  # how a run written with a relative --out recorded its example file
    assert config_path(run, "run/data/x.csv", "task.data", "--data FILE") == (run / "data/x.csv").resolve()
    (run / "data" / "link.csv").symlink_to(secret)
    for bad in (str(secret), "../secret.csv", "data/../../secret.csv", "data/link.csv", "secret.csv"):
        with pytest.raises(OutsideRunDir, match="--data FILE") as err:
            config_path(run, bad, "task.data", "--data FILE")
        assert "\n" not in str(err.value) and "secret content" not in str(err.value)
    for bad in (None, 3, ["x"], ""):
        with pytest.raises(rnnkit.errors.UserError, match="must be a path"):
            config_path(run, bad, "task.data", "--data FILE")


def test_forecast_evaluate_never_reads_a_file_config_json_points_outside(tmp_path, capsys):
    secret = tmp_path / "secret.csv"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    run = tmp_path / "run"
    run.mkdir()
    for data in (str(secret), "../secret.csv"):
        (run / "config.json").write_text(json.dumps({"app": "forecast", "task": {"data": data}}))
        for command in (["evaluate", str(run)], ["predict", str(run), "--output", str(tmp_path / "p.csv")]):
            assert main(["forecast", *command]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "--data" in err and "root:" not in err
    (run / "config.json").write_text(json.dumps({"app": "forecast", "task": ["not", "a", "mapping"]}))
    assert main(["forecast", "evaluate", str(run)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("app", [["adding"], {"name": "adding"}, 7, None])
def test_diagnose_with_a_non_name_app_is_one_line(trained, tmp_path, capsys, app):
    run = _copy_run(trained, tmp_path)
    config = json.loads((run / "config.json").read_text())
    config["app"] = app
    (run / "config.json").write_text(json.dumps(config))
    code = main(["diagnose", str(run), "--out", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "names no known app" in err, err
