"""rnnkit._ext.build_lock: a load killed inside torch's build-lock window no longer blocks later loads
(the crash harness's hang, issue #21)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from rnnkit._ext import FLOCK_FILE, build_lock


def test_a_lock_file_left_by_a_killed_loader_is_removed(tmp_path):
    (tmp_path / "lock").write_text("")  # torch's FileBaton file, as a SIGKILLed load leaves it
    with build_lock(tmp_path):
        assert not (tmp_path / "lock").exists()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX flock")
def test_the_flock_dies_with_its_holder(tmp_path):
    code = ("import sys, time; from pathlib import Path; from rnnkit._ext import build_lock\n"
            f"with build_lock(Path({str(tmp_path)!r})):\n"
            "    (Path(sys.argv[1])).write_text('held'); time.sleep(60)\n")
    flag = tmp_path / "held"
    proc = subprocess.Popen([sys.executable, "-c", code, str(flag)])
    try:
        deadline = time.monotonic() + 30
        while not flag.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert flag.exists(), "the holder never took the lock"
        assert (tmp_path / FLOCK_FILE).exists()
        (tmp_path / "lock").write_text("")  # the holder is inside torch's window
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        t0 = time.monotonic()
        with build_lock(tmp_path):
            assert not (tmp_path / "lock").exists()
        assert time.monotonic() - t0 < 5
    finally:
        proc.kill()
        proc.wait()
