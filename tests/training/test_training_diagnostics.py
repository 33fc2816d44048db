"""Diagnostics during training (``diagnostics_every``) and ``rnnkit diagnose RUN_DIR``."""

from __future__ import annotations

import json
import math

from _training_helpers import cli_flags, tiny
from rnnkit.cli import main


def _train(tmp_path, **overrides):
    cfg, data = tiny(**overrides)
    run = tmp_path / "run"
    assert main(["adding", "train", "--out", str(run), *cli_flags(cfg, data),
                 "--set", f"diagnostics_every={cfg.diagnostics_every}"]) == 0
    return run, cfg


def test_callback_records_every_n_steps_into_the_run_directory(tmp_path):
    run, _ = _train(tmp_path, max_epochs=2, diagnostics_every=3, plots=True)
    lines = (run / "diagnostics" / "diagnostics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    steps = [r["step"] for r in records]
    # 128 sequences / batch 32 = 4 optimiser steps per epoch, 2 epochs: steps 3 and 6 (not 0: no step yet)
    assert steps == [3, 6]
    for r in records:
        ratio = r["gradient_flow"]["ratio"][0][0]
        assert math.isfinite(ratio) and ratio > 0
        assert len(r["gradient_flow"]["norms"]["h"][0][0]) == 10 + 1  # T + 1 state boundaries
        assert (run / "diagnostics" / r["plots"][0]).stat().st_size > 1000
    assert json.loads((run / "config.json").read_text())["train"]["diagnostics_every"] == 3


def test_diagnose_run_dir_writes_summary_and_plots(tmp_path, capsys):
    run, _ = _train(tmp_path, max_epochs=1, diagnostics_every=0)
    assert not (run / "diagnostics").exists()
    out = tmp_path / "diag"
    assert main(["diagnose", str(run), "--out", str(out), "--size", "16"]) == 0
    text = capsys.readouterr().out
    assert "layer 0 dir 0: |dL/dh_first| / |dL/dh_last|" in text and "memory horizon" in text
    assert "spectral radius" in text
    record = json.loads((out / "diagnostics.jsonl").read_text().splitlines()[0])
    assert len(record["spectrum"]) == 4  # the LSTM's i, f, g, o blocks
    assert sorted(p.name for p in out.glob("*.png")) == sorted(record["plots"])


def test_diagnose_user_errors_exit_2(tmp_path, capsys):
    run, _ = _train(tmp_path, max_epochs=1)
    assert main(["diagnose", str(run), "--data", str(tmp_path / "x.csv")]) == 2
    assert main(["diagnose", str(tmp_path / "missing")]) == 2
    assert main(["diagnose", "demo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("rnnkit: error:") for line in err) and len(err) == 3
