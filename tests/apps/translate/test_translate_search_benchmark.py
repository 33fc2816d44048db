"""Smoke test of benchmarks/translate_search.py on a tiny trained run: the torch.nn.LSTMCell anchor
decodes the same outputs as rnnkit (greedy and beam), the speeds are finite (their size is not
asserted: speed is measured by the script, not by tests)."""

import importlib.util
import sys

import pytest
import torch

from _paths import ROOT
from _translate_helpers import train_reversal_run

SCRIPT = ROOT / "benchmarks" / "translate_search.py"
FLAGS = ["--tokenizer", "char", "--hidden", "32", "--embedding-size", "16", "--batch-size", "16", "--lr", "1e-2",
         "--epochs", "4", "--dropout", "0", "--threads", "1", "-q", "--decoder-layers", "2",
         "--set", "tensorboard=false", "--set", "plots=false"]


def _module():
    spec = importlib.util.spec_from_file_location("rnnkit_bench_translate_search", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_anchor_decodes_like_rnnkit(tmp_path, capsys):
    torch.set_num_threads(1)
    run, root = train_reversal_run(tmp_path, FLAGS)
    module = _module()
    try:
        res = module.main([str(run), str(root / "valid.tsv"), "--limit", "30", "--repeats", "1",
                           "--batch-size", "8", "--json", str(tmp_path / "r.json")])
    finally:
        sys.modules.pop("rnnkit_bench_translate_search", None)
    assert res["sentences"] == 30 and set(res["beams"]) == {"1", "5"}
    for row in res["beams"].values():
        assert row["outputs_agree"] == 30
        assert row["rnnkit_sentences_per_second"] > 0 and row["anchor_sentences_per_second"] > 0
    out = capsys.readouterr().out
    assert "torch.nn.LSTMCell loop" in out and (tmp_path / "r.json").exists()


def test_transformer_cached_steps_decode_like_the_uncached_torch_nn_layers(tmp_path, capsys):
    torch.set_num_threads(1)
    flags = ["--arch", "transformer", *FLAGS[:FLAGS.index("--decoder-layers")], "--set", "tensorboard=false",
             "--set", "plots=false"]
    run, root = train_reversal_run(tmp_path, flags)
    module = _module()
    try:
        res = module.main([str(run), str(root / "valid.tsv"), "--limit", "30", "--repeats", "1",
                           "--batch-size", "8"])
    finally:
        sys.modules.pop("rnnkit_bench_translate_search", None)
    assert res["anchor"] == "torch.nn decoder layers over the prefix" and set(res["beams"]) == {"1", "5"}
    for row in res["beams"].values():
        assert row["outputs_agree"] == 30
    assert "torch.nn decoder layers over the prefix" in capsys.readouterr().out


def test_anchor_refuses_a_run_of_another_cell(tmp_path):
    from rnnkit.layers.seq2seq import Seq2Seq

    module = _module()
    try:
        with pytest.raises(SystemExit, match="--cell lstm"):
            module.TorchLSTMSeq2Seq(Seq2Seq(20, 8, 8, cell="gru"))
    finally:
        sys.modules.pop("rnnkit_bench_translate_search", None)
