"""Crash harness (issue #21): SIGKILL trainings of six apps (adding, text, forecast, translate, speech,
classify) at random points, including inside every kind of file write, resume each time, and check that

- after every kill, every file in the run directory loads (``check_run_dir``: JSON, safetensors,
  CSV, PNG, the checkpoint, TensorBoard events; stray ``.tmp`` files of an interrupted atomic write
  are allowed, never a damaged target);
- every interrupted run is resumed to completion (100%): with the app's own ``train --resume`` once
  config.json exists, ``--out`` again before that;
- the final run equals an uninterrupted run with the same seed (CPU runs with one thread are
  deterministic and a resume restores everything a run depends on, the text stream's carried state
  included: measured bitwise; checked to losses rel 1e-6, weights 1e-5).

Kills are planned from the app's uninterrupted reference run, timed and its atomic writes listed by the
session (``profile``). A kill is either the parent's SIGKILL after a delay drawn from the reference's
duration, or the session killing itself inside its k-th atomic write, k drawn over all of the
reference's writes (start-up, every epoch's, the final ones): after truncating the temporary file to
half (a write cut short), after the fsync before the rename, or just after the rename. Every app is
resumed from a checkpoint at least once per harness run (asserted): when an app's last kill comes and
none of its sessions has yet started from a ``last.ckpt``, that kill is a write kill after the
reference's first checkpoint. Sessions are children of a multiprocessing fork server
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

import json
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
#: relative tolerance of the final losses (weights: 10x); every app alike since resume is exact (the text
#: app needed 1e-3 until its stream's carried state joined the checkpoint)
REL = 1e-6
CHECKPOINT = "checkpoints/last.ckpt"
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
             log: Path, profile: Path | None = None) -> str:
    """One training session: 'completed', or 'killed' (by ``plan``)."""
    import _crash_sessions

    proc = ctx.Process(target=_crash_sessions.session,
                       args=(app, epochs, run_dir, resume, data, plan, log, profile))
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


def _plan(rng: random.Random, profile: dict, after_checkpoint: bool) -> tuple:
    """A kill drawn from the reference session's ``profile``: ("write", k, phase) or ("time", seconds).
    ``after_checkpoint``: a write kill after the reference's first checkpoint and before its last write,
    so that a session started without a checkpoint leaves one (a resume from it follows)."""
    n = len(profile["writes"])
    if after_checkpoint:
        first = 1 + [path for _, path in profile["writes"]].index(CHECKPOINT)
        return "write", rng.randint(first + 1, max(first + 1, n - 1)), rng.choice(PHASES)
    if rng.random() < 0.6:
        return "write", rng.randint(1, n), rng.choice(PHASES)
    return "time", rng.uniform(0.0, profile["seconds"])


def _sessions_cpu() -> float:
    """CPU seconds of the fork server and the sessions it has reaped (Linux; 0 elsewhere): the harness's
    cost whatever else loads the machine (wall times on a shared box vary several-fold)."""
    from multiprocessing import forkserver

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "model.safetensors"))


def _harness(ctx, tmp_path: Path, app: str, epochs: int, kills: int, rng: random.Random) -> dict:
    """Kill-and-resume runs of ``app`` until ``kills`` kills hit a running training (a run that finishes
    between kills is compared and a new one started); every run is finished and compared with the reference.
    Returns the counts: sessions started on a config.json (``resumes``) and on a checkpoint
    (``from_checkpoint``), the phases of the kills, the largest differences from the reference."""
    import _crash_sessions

    log = tmp_path / "sessions.log"
    data = _crash_sessions.write_data(app, tmp_path / "data")
    reference, profile_file = tmp_path / "reference", tmp_path / "reference.json"
    assert _session(ctx, app, epochs, reference, False, data, None, log, profile_file) == "completed"
    profile = json.loads(profile_file.read_text())
    assert CHECKPOINT in [path for _, path in profile["writes"]], profile
    want, want_w = final_losses(reference), _weights(reference)
    killed, phases, runs, resumed, from_checkpoint = 0, [], 0, 0, 0
    loss_diff = weight_diff = 0.0
    while killed < kills:
        run_dir = tmp_path / f"run{runs}"
        runs += 1
        done = False
        while not done:
            started = (run_dir / "config.json").exists()  # before config.json there is nothing to resume
            checkpointed = (run_dir / CHECKPOINT).exists()
            resumed += started
            from_checkpoint += checkpointed
            if killed >= kills:
                plan = None  # the resume that finishes the run, uninterrupted
            else:  # the app's last kill leaves a checkpoint if no session has started from one yet
                plan = _plan(rng, profile, after_checkpoint=killed == kills - 1 and not from_checkpoint)
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
        assert got["val_loss"] == pytest.approx(want["val_loss"], rel=REL), app
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=REL), app
        assert got_w.keys() == want_w.keys()
        assert all(torch.allclose(got_w[k], want_w[k], rtol=REL * 10, atol=REL * 10) for k in got_w), app
        loss_diff = max(loss_diff, *(abs(got[k] - want[k]) / abs(want[k]) for k in ("val_loss", "train_loss")))
        weight_diff = max(weight_diff, *(float((got_w[k] - want_w[k]).abs().max()) for k in got_w
                                          if got_w[k].numel()))
    return {"kills": killed, "runs": runs, "resumes": resumed, "from_checkpoint": from_checkpoint,
            "phases": phases, "max_rel_loss_diff": loss_diff, "max_weight_diff": weight_diff,
            "reference": f"{profile['seconds']:.1f} s, {len(profile['writes'])} writes"}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the harness forks its trainings")
def test_kill_and_resume(tmp_path, server):
    """The short form: 24 kills over six apps in one test (a fork server started once)."""
    sys.stderr.write(f"crash harness seed {SEED} (RNNKIT_CRASH_SEED={SEED} replays it)\n")
    t0, total = time.perf_counter(), 0
    for app, kills in SHORT.items():
        t_app, cpu = time.perf_counter(), _sessions_cpu()
        out = _harness(server, tmp_path / app, app, EPOCHS[app], kills, random.Random(f"{SEED}-{app}"))
        sys.stderr.write(f"{app}: {out} in {time.perf_counter() - t_app:.1f} s "
                         f"(sessions' CPU {_sessions_cpu() - cpu:.1f} s)\n")
        assert out["kills"] == kills, out
        assert out["from_checkpoint"] >= 1, f"{app} was never resumed from a checkpoint: {out}"
        total += out["kills"]
    sys.stderr.write(f"{total} kills over {len(SHORT)} apps, all resumed, in {time.perf_counter() - t0:.1f} s "
                     f"(sessions' CPU {_sessions_cpu():.1f} s)\n")


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="the harness forks its trainings")
@pytest.mark.parametrize("app", list(SHORT))
def test_kill_and_resume_long(tmp_path, server, app):
    sys.stderr.write(f"crash harness seed {SEED}\n")
    out = _harness(server, tmp_path, app, 6 * EPOCHS[app], 20, random.Random(f"{SEED}-{app}-long"))
    sys.stderr.write(f"{app}: {out}\n")
    assert out["kills"] == 20, out
    assert out["from_checkpoint"] >= 1, out
