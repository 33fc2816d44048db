"""Crash harness (issue #21): SIGKILL trainings of six apps (adding, text, forecast, translate, speech,
classify) at random points, including inside every kind of file write, resume each time, and check that

- after every kill, every file in the run directory loads (``check_run_dir``: JSON, safetensors,
  CSV, PNG, the checkpoint, TensorBoard events; stray ``.tmp`` files of an interrupted atomic write
  are allowed, never a damaged target);
- every interrupted run is resumed to completion (100%): with the app's own ``train --resume`` once
  config.json exists, ``--out`` again before that;
- the final run equals an uninterrupted run with the same seed (CPU runs with one thread are
  deterministic: losses to rel 1e-6, weights to 1e-5; text within rel 1e-3, see REL).

A kill is either the parent's SIGKILL after a random delay, or the session killing itself inside its
k-th atomic write: after truncating the temporary file to half (a write cut short), after the fsync
before the rename, or just after the rename. Sessions are children of a multiprocessing fork server
(tests/_crash_sessions.py): pytest is never forked. Why: a session forked from pytest once hung for
10 minutes. A kill had landed inside torch's ``cpp_extension.load`` (every process that first uses
the fused CPU kernel loads it, and torch holds a lock *file* for the load even when nothing is built);
the file outlived the killed child and every later load slept on it, in the harness and in any rnnkit
process on the machine (fixed in rnnkit._ext.build_lock: a flock that dies with its holder). The fork
server also loads the extensions once, is single-threaded (each session checks), and never trains.

The short form (default suite) kills 24 times over six apps; ``-m slow`` kills 20 times per app.
``RNNKIT_CRASH_SEED`` replays a seed.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

from _training_helpers import check_run_dir, final_losses

SEED = int(os.environ.get("RNNKIT_CRASH_SEED", random.randrange(2**32)))
PHASES = ("partial", "before_rename", "after_rename")
#: a session that runs longer than this is stuck (a tiny run takes 1-3 s): killed and reported
SESSION_TIMEOUT = 120.0
#: a resumed text run is within noise of the uninterrupted one, not bitwise (val loss off by ~2e-4
#: relative after kills: the resumed stream or dropout state differs slightly; issue #21 follow-up)
REL = {"text": 1e-3}
#: app -> kills in the default suite (24 in all), and the epochs of a run
SHORT = {"adding": 5, "text": 4, "forecast": 4, "translate": 4, "speech": 3, "classify": 4}
EPOCHS = {"adding": 4, "text": 4, "forecast": 4, "translate": 3, "speech": 3, "classify": 3}


@pytest.fixture(scope="module")
def server():
    """The fork server's context: it imports tests/_crash_sessions.py (torch, Lightning, the apps, the
    extensions) once; every session is a fork of that single-threaded process."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["_crash_sessions"])
    return ctx


def _session(ctx, app: str, epochs: int, run_dir: Path, resume: bool, data: list[str], plan: tuple | None,
             log: Path) -> str:
    """One training session: 'completed', or 'killed' (by ``plan``)."""
    import _crash_sessions

    proc = ctx.Process(target=_crash_sessions.session, args=(app, epochs, run_dir, resume, data, plan, log))
    proc.start()
    if plan is not None and plan[0] == "time":
        proc.join(plan[1])
        if proc.exitcode is None:
            os.kill(proc.pid, signal.SIGKILL)
    proc.join(SESSION_TIMEOUT)
    if proc.exitcode is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        raise AssertionError(f"{app}: a session hung for {SESSION_TIMEOUT:.0f} s (log: {log})")
    if proc.exitcode == -signal.SIGKILL:
        return "killed"
    assert proc.exitcode == 0, f"{app}: the training failed (exit {proc.exitcode}): {log.read_text()[-2000:]}"
    return "completed"


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "model.safetensors"))


def _harness(ctx, tmp_path: Path, app: str, epochs: int, kills: int, rng: random.Random, max_delay: float) -> dict:
    """Kill-and-resume runs of ``app`` until ``kills`` kills hit a running training (a run that finishes
    between kills is compared and a new one started); every run is finished and compared with the reference."""
    import _crash_sessions

    rel = REL.get(app, 1e-6)
    log = tmp_path / "sessions.log"
    data = _crash_sessions.write_data(app, tmp_path / "data")
    reference = tmp_path / "reference"
    assert _session(ctx, app, epochs, reference, False, data, None, log) == "completed"
    want, want_w = final_losses(reference), _weights(reference)
    killed, phases, runs, resumed = 0, [], 0, 0
    while killed < kills:
        run_dir = tmp_path / f"run{runs}"
        runs += 1
        done = False
        while not done:
            if killed >= kills:
                plan = None  # the resume that finishes the run, uninterrupted
            elif rng.random() < 0.6:
                plan = ("write", rng.randint(1, 4), rng.choice(PHASES))
            else:
                plan = ("time", rng.uniform(0.0, max_delay))
            started = (run_dir / "config.json").exists()  # before config.json there is nothing to resume
            resumed += started
            if _session(ctx, app, epochs, run_dir, started, data, plan, log) == "completed":
                done = True
                continue
            killed += 1
            phases.append(plan[2] if plan[0] == "write" else "time")
            if run_dir.exists():
                check_run_dir(run_dir)  # whatever the kill hit, every file loads
        check_run_dir(run_dir, allow_temp=False)
        got, got_w = final_losses(run_dir), _weights(run_dir)
        assert (got["global_step"], got["epoch"]) == (want["global_step"], want["epoch"]), app
        assert got["val_loss"] == pytest.approx(want["val_loss"], rel=rel), app
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=rel), app
        assert got_w.keys() == want_w.keys()
        assert all(torch.allclose(got_w[k], want_w[k], rtol=rel * 10, atol=rel * 10) for k in got_w), app
    return {"kills": killed, "runs": runs, "resumes": resumed, "phases": phases}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the harness forks its trainings")
def test_kill_and_resume(tmp_path, server):
    """The short form: 24 kills over six apps in one test (a fork server started once)."""
    sys.stderr.write(f"crash harness seed {SEED} (RNNKIT_CRASH_SEED={SEED} replays it)\n")
    t0, total = time.perf_counter(), 0
    for app, kills in SHORT.items():
        t_app = time.perf_counter()
        out = _harness(server, tmp_path / app, app, EPOCHS[app], kills, random.Random(f"{SEED}-{app}"),
                       max_delay=1.0)
        sys.stderr.write(f"{app}: {out} in {time.perf_counter() - t_app:.1f} s\n")
        assert out["kills"] == kills, out
        total += out["kills"]
    sys.stderr.write(f"{total} kills over {len(SHORT)} apps, all resumed, in {time.perf_counter() - t0:.1f} s\n")


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="the harness forks its trainings")
@pytest.mark.parametrize("app", list(SHORT))
def test_kill_and_resume_long(tmp_path, server, app):
    sys.stderr.write(f"crash harness seed {SEED}\n")
    out = _harness(server, tmp_path, app, 6 * EPOCHS[app], 20, random.Random(f"{SEED}-{app}-long"), max_delay=4.0)
    sys.stderr.write(f"{app}: {out}\n")
    assert out["kills"] == 20, out
