"""Shell examples as commands: parse a block, expand it with bash, shorten it, run it in this process.

Each logical line (``\\`` continuations joined; in ```console blocks only the ``$ `` lines) is one of:

- ``rnnkit ...`` (also ``.venv/bin/rnnkit``, ``python -m rnnkit[.cli]``): run with ``rnnkit.cli.main``;
- ``python benchmarks/X.py ...`` / ``python -m MODULE ...``: run with ``runpy`` (as ``__main__``);
- ``torchrun ...``: a real subprocess (it starts processes anyway);
- a shell variable (``FILES=$(ls ...)``): evaluated by bash for the lines below;
- set-up (``make``, ``pip``, ``git``, ``cd``): not run, reported as skipped.

Anything else fails the test, so a new kind of example is decided on, not silently ignored. Optional
flags in square brackets (``[--seed S]``, usage notation) are dropped. Arguments are expanded by bash
before anything runs (variables, globs, quotes), so an expansion sees the files as they were before the
block ran.

Running in this process (not one interpreter per command) is what keeps ~100 examples inside the
suite's budget: importing torch and Lightning costs seconds per process on our 2-core machines.

The short-run override (:func:`short_run`) appends flags the commands already accept, so CI runs
every example in seconds; ``RNNKIT_DOCS_AS_WRITTEN=1`` turns it off (then some examples take hours).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import runpy
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from _docs.blocks import ASSIGNMENT, Block

SETUP = {"make": "a set-up command (make)", "pip": "a set-up command (pip)", "git": "a set-up command (git)",
         "cd": "changes into the repository (the examples already run from its root)"}
PYTHONS = {"python", "python3", ".venv/bin/python"}
OPTIONAL = re.compile(r"\s*\[--[^\[\]]*\]")  # [--seed S], [--head direct]: usage notation, dropped
VENV_BIN = Path(sys.executable).parent
AS_WRITTEN = os.environ.get("RNNKIT_DOCS_AS_WRITTEN", "") not in ("", "0")

# ---- short-run override -------------------------------------------------------------------------
# Every training command stops after two optimiser steps (TrainConfig.max_steps, which every app's
# `train` takes through --set and a resume may change); a resume gets two more than the run it continues.
TRAIN_STEPS = 2
# ARIMA's and ETS's maximum-likelihood fits take 9 of a short forecast run's 11 s
FORECAST_BASELINES = ["--baselines", "naive,snaive"]
BENCH_MEMORY = ["--max-steps", "2", "--budget", "10", "--eval-every", "1", "--eval-batch", "16", "--batch", "8"]
SCRIPTS = {  # benchmarks/*.py: a tiny problem, one repetition
    "executors.py": (["--grid", "6x2x4x5", "--reps", "1", "--warmup", "0", "--budget", "5"], ()),
    "gemm.py": (["--reps", "1", "--shapes", "64x32x16"], ()),
    # --memory starts one interpreter per variant and length (seconds each): measured elsewhere
    "scan.py": (["--ts", "32", "--reps", "1", "--warmup", "0", "--batch", "2", "--hidden", "8",
                 "--ref-max-t", "32"], ("--memory",)),
    "streaming.py": (["--steps", "5", "--reps", "1", "--input", "8", "--hidden", "8"], ()),
    "memory_tasks.py": (BENCH_MEMORY, ()),
    # and without the hybrid's ARIMA and ETS fits at every series (its default on these collections)
    "forecast_dev.py": (["--baselines", "naive,snaive", "--set", f"max_steps={TRAIN_STEPS}", "--set",
                         "combine_with=none"], ()),
}
MODULES = {"rnnkit.demo": ["--quick"]}  # python -m MODULE: its own short mode


# Run in the default suite by another test, the same way (not twice: each takes 30 s to 2 minutes on
# our loaded 2-core machines). test_docs_examples checks that the tests still exist.
ELSEWHERE = {
    "rnnkit demo": "tests/test_cli.py::test_demo_quick",  # the override's `rnnkit demo --quick`
    "torchrun --standalone": "tests/training/test_training_ddp.py::test_torchrun_two_processes_match_one",
}
# an extension folder of the measuring machine would rebuild the C++ kernels (a minute): use the set-up's
DROPPED_ENV = {"RNNKIT_EXT_DIR"}


@dataclass
class Command:
    where: str  # doc path:line
    text: str  # the logical line as written
    kind: str  # rnnkit | script | module | torchrun | shell | setup
    reason: str = ""  # setup: why it is not run
    argv: list[str] = field(default_factory=list)  # after bash expansion, without the program
    env: dict[str, str] = field(default_factory=dict)  # VAR=value prefixes
    program: str = ""  # script path or module name


def parse(block: Block) -> list[Command]:
    out = []
    for line_no, text in _logical_lines(block):
        text = OPTIONAL.sub("", text)
        try:
            words = shlex.split(text, comments=True)
        except ValueError as exc:
            raise ValueError(f"{block.path}:{line_no}: cannot split {text!r}: {exc}") from exc
        if not words:
            continue
        where = f"{block.path}:{line_no}"
        if ASSIGNMENT.match(words[0]) and (len(words) == 1 or words[0].split("=", 1)[1].startswith("$(")):
            out.append(Command(where, text, "shell"))
            continue
        body = [w for w in words if not ASSIGNMENT.match(w)] if ASSIGNMENT.match(words[0]) else words
        out.append(_classify(where, text, body))
    return out


def _classify(where: str, text: str, words: list[str]) -> Command:
    head = words[0]
    if head in ("rnnkit", ".venv/bin/rnnkit"):
        return Command(where, text, "rnnkit")
    if head in PYTHONS and len(words) > 2 and words[1] == "-m":
        if words[2] in ("rnnkit", "rnnkit.cli"):
            return Command(where, text, "rnnkit")
        if words[2] == "pip":
            return Command(where, text, "setup", SETUP["pip"])
        return Command(where, text, "module", program=words[2])
    if head in PYTHONS and len(words) > 1 and words[1].endswith(".py"):
        return Command(where, text, "script", program=words[1])
    if head == "torchrun":
        return Command(where, text, "torchrun")
    if head in SETUP or head.endswith("/pip"):
        return Command(where, text, "setup", SETUP.get(head, SETUP["pip"]))
    raise ValueError(f"{where}: {head!r} is neither an rnnkit command nor a known set-up command: teach "
                     "tests/_docs/commands.py to run it, or mark the block <!-- not-run: reason -->")


def _logical_lines(block: Block) -> list[tuple[int, str]]:
    lines, out, pending, start = block.code.splitlines(), [], "", 0
    for n, raw in enumerate(lines):
        line = raw
        if block.lang == "console" and not pending:
            if not line.startswith("$ "):
                continue  # output
            line = line[2:]
        if not pending:
            start = block.line + n
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


def expand(cmds: list[Command], cwd: Path, env: dict[str, str]) -> None:
    """Fill ``argv``/``env`` of the runnable commands: bash expands every line as written, in order."""
    script = ["set -e", "__rk() { printf '%s\\0' \"$#\" \"$@\"; }"]
    for i, c in enumerate(cmds):
        if c.kind == "shell":
            script.append(c.text)
        elif c.kind != "setup":
            script.append(f"__rk {i} {c.text}")
    proc = subprocess.run(["bash", "-c", "\n".join(script)], cwd=cwd, env=env, capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"bash could not expand {cmds[0].where}...: {proc.stderr.decode(errors='replace')}")
    fields = proc.stdout.decode().split("\0")
    k = 0
    while k < len(fields) - 1:
        n = int(fields[k])
        args = fields[k + 1:k + 1 + n]
        k += 1 + n
        cmd = cmds[int(args[0])]
        words = args[1:]
        while words and ASSIGNMENT.match(words[0]):
            name, value = words.pop(0).split("=", 1)
            cmd.env[name] = value
        if cmd.kind == "rnnkit":
            words = words[1:] if words[0].endswith("rnnkit") else words[3:]  # rnnkit / python -m rnnkit
        elif cmd.kind in ("script", "module"):
            words = words[2:] if cmd.kind == "script" else words[3:]
        else:  # torchrun
            words = words[1:]
        cmd.argv = words


def short_run(cmd: Command, workdir: Path) -> tuple[list[str], dict[str, str]]:
    """The arguments and environment CI runs ``cmd`` with (see the table above)."""
    argv = [_tmp_into(a, workdir) for a in cmd.argv]
    env = {k: v for k, v in cmd.env.items() if k not in DROPPED_ENV}
    if AS_WRITTEN:
        return argv, env
    if cmd.kind == "rnnkit":
        return argv + rnnkit_extra(argv), env
    if cmd.kind == "torchrun" and "rnnkit.cli" in argv:
        cut = argv.index("rnnkit.cli") + 1
        return argv + rnnkit_extra(argv[cut:]), env
    if cmd.kind == "script" and Path(cmd.program).name in SCRIPTS:
        extra, dropped = SCRIPTS[Path(cmd.program).name]
        return [a for a in argv if a not in dropped] + extra, env
    if cmd.kind == "module" and cmd.program in MODULES:
        return argv + MODULES[cmd.program], env
    return argv, env


def run_elsewhere(cmd: Command) -> str | None:
    """The test that runs ``cmd`` already, if one does."""
    if AS_WRITTEN or cmd.kind not in ("rnnkit", "torchrun"):
        return None
    words = [w for w in shlex.split(cmd.text, comments=True) if not ASSIGNMENT.match(w)]
    if cmd.kind == "rnnkit":  # .venv/bin/rnnkit, python -m rnnkit: as rnnkit
        words = ["rnnkit", *(words[1:] if words[0].endswith("rnnkit") else words[3:])]
    for key, test in ELSEWHERE.items():
        if words[:len(key.split())] == key.split():
            return test
    return None


def rnnkit_extra(argv: list[str]) -> list[str]:
    words = [a for a in argv if not a.startswith("-")][:2]
    if "--help" in argv or "-h" in argv:
        return []
    if words[:1] == ["demo"] or words == ["diagnose", "demo"]:
        return ["--quick"]
    if words[:2] == ["bench", "memory"]:
        return [] if "--report" in argv else BENCH_MEMORY
    if words == ["classify", "train"]:
        # one epoch, not max_steps: a run stopped before its first validation crashes classify's
        # early stopping (Lightning: "conditioned on metric `val_loss` which is not available")
        return ["--epochs", "1"]
    if len(words) == 2 and words[1] in ("train", "backtest"):
        steps = TRAIN_STEPS * (2 if "--resume" in argv else 1)
        return ["--set", f"max_steps={steps}"] + (FORECAST_BASELINES if words[0] == "forecast" else [])
    return []


def _tmp_into(arg: str, workdir: Path) -> str:
    """Outputs the docs send to /tmp/... land in the working folder instead (its parent made)."""
    if not arg.startswith("/tmp/"):
        return arg
    target = workdir / "tmp" / arg[len("/tmp/"):]
    target.parent.mkdir(parents=True, exist_ok=True)
    return str(target)


@dataclass
class Result:
    rc: int
    seconds: float
    output: str


def run(cmd: Command, workdir: Path) -> Result:
    """Run one expanded command (cwd: ``workdir``, set by the caller); 0 is success."""
    argv, env = short_run(cmd, workdir)
    out = io.StringIO()
    threads = torch.get_num_threads()
    saved_env = {k: os.environ.get(k) for k in env}
    start = time.perf_counter()
    try:
        os.environ.update(env)
        if cmd.kind == "torchrun":
            path = f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"
            proc = subprocess.run([str(VENV_BIN / "torchrun"), *argv], cwd=workdir, capture_output=True, text=True,
                                  timeout=600, env={**os.environ, "PATH": path})
            return Result(proc.returncode, time.perf_counter() - start, proc.stdout + proc.stderr)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            rc = _in_process(cmd, argv)
        return Result(rc, time.perf_counter() - start, out.getvalue())
    finally:
        torch.set_num_threads(threads)  # --threads N must not leak into the next example or test
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _in_process(cmd: Command, argv: list[str]) -> int:
    if cmd.kind == "rnnkit":
        from rnnkit.cli import main

        return main(argv)
    saved = sys.argv
    sys.argv = [cmd.program, *argv]
    try:
        if cmd.kind == "script":
            runpy.run_path(cmd.program, run_name="__main__")
        else:
            runpy.run_module(cmd.program, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
    return 0
