"""Docs are tests (issue #25): every Python block and shell example of README.md and docs/*.md runs.

One test per markdown file runs its blocks in order, in one working folder (``tests/_docs/fixtures.py``)
and one Python namespace, so a later block may use an earlier block's names and files. Shell examples
run with the short-run override of ``tests/_docs/commands.py`` (seconds instead of minutes; set
``RNNKIT_DOCS_AS_WRITTEN=1`` to run them as written). A failure names the doc's file and line.

Not run, and reported here as skips with the reason: blocks marked ``<!-- not-run: REASON -->`` and
set-up lines (``make``, ``pip``, ``git``, ``cd``). Blocks marked ``<!-- slow: REASON -->`` run only
under ``-m slow`` (``make test-slow``); examples that another test of the default suite runs already
(``commands.ELSEWHERE``) are not run twice. A block marked ``<!-- known-failing: BUG -->`` runs
and must still fail (an xfail item names the bug); once BUG is fixed the file's test says to drop the
marker. Markers and block kinds: ``tests/_docs/blocks.py``.
"""

from __future__ import annotations

import contextlib
import io
import os
import traceback
from pathlib import Path

import pytest

from _docs import commands, fixtures
from _docs.blocks import ROOT, Block, doc_files, parse, stray_markers

DOCS = {p.relative_to(ROOT).as_posix(): parse(p) for p in doc_files()}
RUNNABLE = ("python", "shell", "file")


def _shell_commands(block: Block) -> list[commands.Command]:
    try:
        return commands.parse(block)
    except ValueError:
        return []  # test_every_shell_line_is_known reports it


def _not_run() -> list[tuple[str, str]]:
    out = []
    for blocks in DOCS.values():
        for b in blocks:
            if b.marker == "not-run":
                out.append((b.where, f"not-run: {b.reason}"))
            elif b.marker == "slow":
                out.append((b.where, f"runs under -m slow (test_slow_examples_run): {b.reason}"))
            elif b.kind == "shell" and b.marker is None:
                for c in _shell_commands(b):
                    if c.kind == "setup":
                        out.append((c.where, f"{c.reason}: {c.text.strip()}"))
                    elif commands.run_elsewhere(c):
                        out.append((c.where, f"run by {commands.run_elsewhere(c)}: {c.text.strip()}"))
    return out


def inventory() -> dict[str, int]:
    """Counts for reports: blocks found, run, skipped; commands run and set-up lines skipped."""
    blocks = [b for bs in DOCS.values() for b in bs]
    shell = [c for b in blocks if b.kind == "shell" and b.marker != "not-run" for c in _shell_commands(b)]
    return {
        "blocks": len(blocks),
        "python": sum(b.kind == "python" for b in blocks),
        "shell": sum(b.kind == "shell" for b in blocks),
        "file": sum(b.kind == "file" for b in blocks),
        "text (output, trees: not code)": sum(b.kind == "text" for b in blocks),
        "not-run blocks": sum(b.marker == "not-run" for b in blocks),
        "known-failing blocks": sum(b.marker == "known-failing" for b in blocks),
        "slow blocks (-m slow only)": sum(b.marker == "slow" for b in blocks),
        "commands run": sum(c.kind not in ("setup", "shell") for c in shell),
        "set-up lines not run": sum(c.kind == "setup" for c in shell),
    }


@pytest.mark.parametrize("doc", [d for d, bs in DOCS.items() if any(b.kind in RUNNABLE for b in bs)])
def test_examples_run(doc, tmp_path, monkeypatch):
    _run_doc(doc, tmp_path, monkeypatch, slow=False)


@pytest.mark.slow
@pytest.mark.parametrize("doc", [d for d, bs in DOCS.items() if any(b.marker == "slow" for b in bs)] or ["-"])
def test_slow_examples_run(doc, tmp_path, monkeypatch):
    """The doc again, with its blocks marked <!-- slow: ... --> (earlier blocks may make their inputs)."""
    if doc != "-":
        _run_doc(doc, tmp_path, monkeypatch, slow=True)


def _run_doc(doc: str, tmp_path: Path, monkeypatch, slow: bool) -> None:
    blocks = DOCS[doc]
    if fixtures.needs_shared(blocks) and not fixtures.shared_available():
        pytest.skip(f"{doc} names files from ../shared/data, which is not beside the repository")
    repo = fixtures.prepare(tmp_path)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    for b in blocks:  # files first: a doc may show add.yaml after the commands that read it
        if b.kind == "file":
            (repo / b.reason).write_text(b.code, encoding="utf-8")
    namespace: dict = {"__name__": "__docs__"}
    failures: list[str] = []
    for b in blocks:
        if b.kind not in ("python", "shell") or b.marker == "not-run" or (b.marker == "slow" and not slow):
            continue
        problem = _run_python(b, namespace) if b.kind == "python" else _run_shell(b, repo)
        if b.marker == "known-failing":
            if problem is None:
                failures.append(f"{b.where}: marked known-failing ({b.reason}) but passes: remove the marker")
            continue
        if problem is not None:
            failures.append(problem)
    assert not failures, f"{len(failures)} example(s) of {doc} failed:\n\n" + "\n\n".join(failures)


def _run_python(block: Block, namespace: dict) -> str | None:
    # padded so that tracebacks give the line numbers of the markdown file
    code = compile("\n" * (block.line - 1) + block.code, str(ROOT / block.path), "exec")
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(code, namespace)
    except Exception as exc:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(ROOT / block.path)]
        line = frames[-1].lineno if frames else block.line
        return (f"{block.path}:{line}: {type(exc).__name__}: {exc}\n"
                + "".join(traceback.format_exception(exc)[-6:]))
    return None


def _run_shell(block: Block, repo: Path) -> str | None:
    try:
        cmds = commands.parse(block)
    except ValueError as exc:
        return str(exc)
    env = {**os.environ, "PATH": f"{commands.VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    commands.expand(cmds, repo, env)
    for cmd in cmds:
        if cmd.kind in ("setup", "shell") or commands.run_elsewhere(cmd):
            continue
        result = commands.run(cmd, repo)
        print(f"{result.seconds:6.1f} s  rc {result.rc}  {cmd.where}  {cmd.text.strip()[:100]}")
        if result.rc != 0:
            argv, _ = commands.short_run(cmd, repo)
            return (f"{cmd.where}: `{cmd.text.strip()}` exited with {result.rc}\n  ran as ({cmd.kind}): "
                    f"{' '.join(argv)}\n" + result.output[-3000:])
    return None


@pytest.mark.parametrize("where,reason", _not_run() or [("-", "")])
def test_not_run(where, reason):
    if where == "-":
        return
    pytest.skip(f"{where}: {reason}")


@pytest.mark.parametrize("where,bug", [(b.where, b.reason) for bs in DOCS.values() for b in bs
                                        if b.marker == "known-failing"] or [("-", "")])
def test_known_failing(where, bug):
    if where == "-":
        return
    pytest.xfail(f"{where} fails because of: {bug} (test_examples_run checks it still fails)")


def test_tests_running_examples_exist():
    for test in commands.ELSEWHERE.values():
        path, name = test.split("::")
        assert f"def {name}(" in (ROOT / path).read_text(encoding="utf-8"), f"{test} is gone: run the example here"


def test_markers_are_attached_and_give_a_reason():
    problems = [f"{p.relative_to(ROOT)}:{n}: marker not followed by a code block" for p in doc_files()
                for n in stray_markers(p)]
    problems += [f"{b.where}: <!-- {b.marker}: ... --> needs a reason (or a file name)"
                 for bs in DOCS.values() for b in bs if b.marker and not b.reason]
    assert not problems, "\n".join(problems)


def test_every_shell_line_is_known():
    problems = []
    for bs in DOCS.values():
        for b in bs:
            if b.kind == "shell" and b.marker != "not-run":
                try:
                    commands.parse(b)
                except ValueError as exc:
                    problems.append(str(exc))
    assert not problems, "\n".join(problems)


def test_short_run_override():
    """The override's rules, on the command shapes the docs use."""
    extra = commands.rnnkit_extra
    assert extra(["adding", "train", "--out", "r", "--epochs", "5"]) == ["--set", "max_steps=2"]
    assert extra(["adding", "train", "--resume", "r"]) == ["--set", "max_steps=4"]  # two more steps
    assert extra(["forecast", "backtest", "--out", "r"])[-2:] == commands.FORECAST_BASELINES
    assert extra(["demo"]) == ["--quick"] and extra(["diagnose", "demo", "--out", "d"]) == ["--quick"]
    assert extra(["diagnose", "runs/a"]) == [] and extra(["info"]) == []
    assert extra(["bench", "memory", "--report", "a.jsonl"]) == []
    block = Block("x.md", 3, "bash", "shell", "rnnkit diagnose runs/a [--size 64] [--out DIR]  # note\n"
                  "make test\nFILES=$(ls)\n")
    kinds = [(c.kind, c.text) for c in commands.parse(block)]
    assert kinds[0] == ("rnnkit", "rnnkit diagnose runs/a  # note")
    assert [k for k, _ in kinds] == ["rnnkit", "setup", "shell"]
