"""Property test (issue #23): a real tiny run directory whose checkpoint state or config.json values are
mutated at random makes ``rnnkit`` exit 0, or exit 2 with one line on stderr, and never changes a file
outside the run directory. Mutations run in-process through ``rnnkit.cli.main``; the seed is printed
(set ``RNNKIT_PROPERTY_SEED`` to replay one)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from _training_helpers import one_epoch_adding_run  # noqa: E402
from rnnkit.cli import main  # noqa: E402

SEED = int(os.environ.get("RNNKIT_PROPERTY_SEED", random.randrange(2**32)))
CKPT = Path("checkpoints") / "last.ckpt"
EXAMPLES = 60


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return one_epoch_adding_run(tmp_path_factory.mktemp("trained"), train_size=32, val_size=16,
                                batch_size=16)


def _leaves(value: Any, path: tuple = (), depth: int = 0) -> list[tuple]:
    """Paths to every value in nested dicts/lists (containers included, so whole sections get replaced)."""
    out = [path] if path else []
    if depth < 8 and isinstance(value, dict):
        for k, v in value.items():
            out += _leaves(v, (*path, k), depth + 1)
    elif depth < 8 and isinstance(value, list):
        for i, v in enumerate(value):
            out += _leaves(v, (*path, i), depth + 1)
    return out


def _set(root: Any, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        root = root[key]
    if value is _DELETE and isinstance(root, dict):
        del root[path[-1]]
    elif value is not _DELETE:
        root[path[-1]] = value


_DELETE = object()
_text = st.sampled_from(["", "../../victim.txt", "{victim}", "{run}/../victim.txt", "lstm", "adam", "x" * 300,
                         "1e-3\nsecret", "adding", "forecast", "text"])
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=True, allow_infinity=True)
    | _text | st.sampled_from([0, -1, 1, 2, 10**6, 20000]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "lr", "pid", "name"]), inner,
                                                                max_size=3),
    max_leaves=6)
_tensor = st.builds(lambda shape, fill: torch.full(shape, fill),
                    st.lists(st.integers(0, 3), max_size=3).map(tuple),
                    st.sampled_from([0.0, 1.0, -1e30, float("nan"), float("inf")]))
_value = _json | _tensor | st.just(_DELETE)


def _fill(value: Any, run: Path, victim: Path) -> Any:
    if isinstance(value, str):
        return value.replace("{victim}", str(victim)).replace("{run}", str(run))
    if isinstance(value, list):
        return [_fill(v, run, victim) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, run, victim) for k, v in value.items()}
    return value


def _snapshot(root: Path, skip: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p == skip or skip in p.parents:
            continue
        out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@hypothesis.seed(SEED)
@given(data=st.data())
def test_mutated_run_directory(trained, tmp_path_factory, data):
    print(f"RNNKIT_PROPERTY_SEED={SEED}")
    sandbox = tmp_path_factory.mktemp("sandbox")
    run = sandbox / "run"
    shutil.copytree(trained, run)
    victim = sandbox / "victim.txt"
    victim.write_text("precious")
    target = data.draw(st.sampled_from(["checkpoint", "config"]), label="target")
    if target == "checkpoint":
        ckpt = torch.load(run / CKPT, weights_only=True)
        for _ in range(data.draw(st.integers(1, 3), label="mutations")):
            paths = _leaves(ckpt)
            path = data.draw(st.sampled_from(paths), label="path")
            _set(ckpt, path, _fill(data.draw(_value, label="value"), run, victim))
        torch.save(ckpt, run / CKPT)
        argv = ["adding", "train", "--resume", str(run), "--quiet"]
    else:
        config = json.loads((run / "config.json").read_text())
        for _ in range(data.draw(st.integers(1, 3), label="mutations")):
            path = data.draw(st.sampled_from(_leaves(config)), label="path")
            value = data.draw(_json | st.just(_DELETE), label="value")
            _set(config, path, _fill(value, run, victim))
        (run / "config.json").write_text(json.dumps(config))
        command = data.draw(st.sampled_from(["resume", "evaluate", "diagnose"]), label="command")
        argv = {"resume": ["adding", "train", "--resume", str(run), "--quiet"],
                "evaluate": ["adding", "evaluate", str(run), "--size", "8"],
                "diagnose": ["diagnose", str(run), "--size", "2", "--out", str(run / "diag")]}[command]
    before = _snapshot(sandbox, run)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    message = err.getvalue()
    assert code in (0, 2), message
    if code == 2:
        assert message.startswith("rnnkit: error: ") and message.count("\n") == 1, message
    assert _snapshot(sandbox, run) == before
    assert victim.read_text() == "precious"
    assert not (run / ".rnnkit.lock").exists()
