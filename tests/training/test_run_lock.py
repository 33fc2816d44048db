"""One writer per run directory (issue #23, io/runlock.py): a second writer gets one line and exit 2;
the lock is released on normal exit, errors and Ctrl-C; a killed holder's lock is stale and taken over."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import pytest

from _training_helpers import env, one_epoch_adding_run
from rnnkit.cli import main
from rnnkit.io.runlock import LOCK_FILE, RunLocked, run_lock

HOLD = ("import sys, time; from rnnkit.io.runlock import run_lock\n"
        "with run_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)\n")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return one_epoch_adding_run(tmp_path_factory.mktemp("trained"))


def _holder(run) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], env=env(), stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_writer_gets_one_line(trained, capsys):
    proc = _holder(trained)
    try:
        code = main(["adding", "train", "--resume", str(trained), "--quiet", "--epochs", "2"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "is in use by pid" in err and LOCK_FILE in err
        assert json.loads((trained / "config.json").read_text())["train"]["max_epochs"] == 1  # untouched
    finally:
        proc.kill()
        proc.wait()


def test_sigkilled_holder_leaves_a_stale_lock_that_is_taken_over(tmp_path):
    proc = _holder(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    record = json.loads((tmp_path / LOCK_FILE).read_text())
    assert record["pid"] == proc.pid and record["host"] == socket.gethostname()
    with run_lock(tmp_path):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] != proc.pid
    assert not (tmp_path / LOCK_FILE).exists()


def test_stale_record_of_a_dead_pid_is_taken_over(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    with run_lock(tmp_path):
        pass
    assert not (tmp_path / LOCK_FILE).exists()


def test_live_or_foreign_holder_record_is_refused(tmp_path):
    for record in ({"pid": 1, "host": socket.gethostname()}, {"pid": 12345, "host": "another-machine"}):
        (tmp_path / LOCK_FILE).write_text(json.dumps(record))
        with pytest.raises(RunLocked) as err, run_lock(tmp_path):
            pass
        assert "\n" not in str(err.value) and "delete" in str(err.value)


def test_released_on_error_and_keyboard_interrupt(tmp_path):
    for exc in (ValueError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)), run_lock(tmp_path):
            assert (tmp_path / LOCK_FILE).exists()
            raise exc
        assert not (tmp_path / LOCK_FILE).exists()


def test_two_concurrent_trainings_one_wins(tmp_path):
    """Two real `--out` trainings into one directory: one trains, the other stops with one line."""
    cfg = ["--epochs", "2", "--seq-len", "10", "--hidden", "8", "--train-size", "256", "--val-size", "32",
           "--threads", "1", "--no-tensorboard", "--quiet", "--set", "plots=false"]
    run = tmp_path / "run"
    procs = [subprocess.Popen([sys.executable, "-m", "rnnkit.cli", "adding", "train", "--out", str(run), *cfg],
                              env=env(), stderr=subprocess.PIPE, text=True) for _ in range(2)]
    deadline = time.monotonic() + 300
    results = [(p.wait(timeout=max(1, deadline - time.monotonic())), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    err = next(e for code, e in results if code == 2)
    assert err.count("\n") == 1 and ("in use by" in err or "already holds a run" in err)
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"
