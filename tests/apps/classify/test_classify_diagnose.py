"""``rnnkit diagnose RUN_DIR`` on classify runs: the training cases of the run's file, the model called
with their lengths, an ensemble through its first member; a transformer run is refused in one line."""

import json

import torch
from test_classify_cli import TINY, fails, run, tiny_csv

from rnnkit.apps.classify.diagnose import WithLengths
from rnnkit.apps.classify.model import Classifier


def test_a_one_argument_module_gives_the_classifier_with_its_lengths():
    net = Classifier(n_dims=2, classes=["a", "b"], arch="lstm_fcn", hidden=8, filters=[8, 8, 8]).eval()
    x, lengths = torch.randn(3, 9, 2), torch.tensor([9, 4, 6])
    bound = WithLengths(net, lengths)
    assert torch.equal(bound(x), net(x, lengths))
    x2 = x.clone()
    x2[1, 4:] = 7.0  # padded steps of the second case
    assert torch.equal(bound(x2), bound(x))


def test_diagnose_a_classify_run_and_an_ensemble(tmp_path, capsys):
    data = tiny_csv(tmp_path / "d.csv", dims=2)
    one = tmp_path / "one"
    run(["classify", "train", "--out", str(one), "--data", str(data), *TINY], capsys)
    out = run(["diagnose", str(one), "--data", str(data), "--size", "5", "--out", str(tmp_path / "diag")], capsys)
    assert "(classify) on 5 sequences" in out and "layer 0 dir 0: |dL/dh_first|" in out and "W_hh[f]" in out
    record = json.loads((tmp_path / "diag" / "diagnostics.jsonl").read_text().splitlines()[0])
    assert record["gradient_flow"]["ratio"][0][0] > 0
    assert (tmp_path / "diag" / "gradient_flow_step0000000.png").is_file()
    out = run(["diagnose", str(one), "--data", str(data), "--size", "64", "--out", str(tmp_path / "all")], capsys)
    assert "(classify) on 12 sequences" in out  # the file has 12 training cases

    ens = tmp_path / "ens"
    run(["classify", "train", "--out", str(ens), "--data", str(data), *TINY, "--set", "folds=3", "--arch", "conv_rnn",
         "--cell", "gru"], capsys)
    out = run(["diagnose", str(ens), "--data", str(data), "--size", "4", "--out", str(tmp_path / "diag2")], capsys)
    assert "W_hh[r]" in out  # the GRU's reset gate: the member's recurrent stack was found


def test_diagnose_refuses_a_transformer_and_a_file_outside_the_run(tmp_path, capsys):
    data = tiny_csv(tmp_path / "d.csv")
    tf = tmp_path / "tf"
    run(["classify", "train", "--out", str(tf), "--data", str(data), *TINY, "--arch", "transformer"], capsys)
    fails(["diagnose", str(tf), "--data", str(data), "--out", str(tmp_path / "x")], capsys, "no recurrent layer")
    assert not (tmp_path / "x").exists()
    fails(["diagnose", str(tf), "--out", str(tmp_path / "x")], capsys, "--data")


def test_diagnose_refuses_other_dimensions_and_a_linked_diagnostics_folder(tmp_path, capsys):
    data = tiny_csv(tmp_path / "d.csv")
    one = tmp_path / "one"
    run(["classify", "train", "--out", str(one), "--data", str(data), *TINY], capsys)
    fails(["diagnose", str(one), "--data", str(tiny_csv(tmp_path / "d3.csv", dims=3)), "--out", str(tmp_path / "x")],
          capsys, "dimension")
    outside = tmp_path / "outside"
    outside.mkdir()
    (one / "diagnostics").symlink_to(outside)  # a crafted run directory: its diagnostics folder leads out
    fails(["diagnose", str(one), "--data", str(data)], capsys, "outside the run directory")
    assert list(outside.iterdir()) == []
