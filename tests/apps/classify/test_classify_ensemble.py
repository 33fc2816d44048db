"""Seed ensembles (``--set ensemble=N``) and the conv front end + RNN stack (``--arch conv_rnn``): the
ensemble's probabilities are the mean of its members', member k starts from seed seed+k, padding is
irrelevant, save/load keeps classes and predictions, and both train, evaluate, predict and resume
through the CLI."""

import json

import numpy as np
import pandas as pd
import torch
from test_classify_cli import TINY, run, tiny_csv

import rnnkit
from rnnkit.apps.classify.ensemble import ClassifierEnsemble
from rnnkit.apps.classify.model import Classifier

CLASSES = ["b", "a", "c"]
SMALL = dict(hidden=8, filters=[8, 8, 8], arch="lstm_fcn", mean=[0.5, -1.0], std=[2.0, 0.5])


def test_ensemble_averages_its_members_probabilities():
    ens = ClassifierEnsemble(3, seed=7, n_dims=2, classes=CLASSES, **SMALL).eval()
    g = torch.Generator().manual_seed(0)
    x, lengths = torch.randn(5, 11, 2, generator=g), torch.tensor([11, 3, 8, 1, 11])
    with torch.no_grad():
        members = [torch.softmax(net(x, lengths), -1) for net in ens.nets]
        torch.testing.assert_close(torch.softmax(ens(x, lengths), -1), torch.stack(members).mean(0))
        assert not torch.allclose(members[0], members[1])  # different initialisations
        garbage = x.clone()
        for i, n in enumerate(lengths.tolist()):
            garbage[i, n:] = 1e3
        torch.testing.assert_close(ens(garbage, lengths), ens(x, lengths), rtol=1e-5, atol=1e-5)
    torch.manual_seed(8)  # member 1 is the single model of seed 8
    single = Classifier(n_dims=2, classes=CLASSES, **SMALL)
    for name, value in single.state_dict().items():
        assert torch.equal(ens.nets[1].state_dict()[name], value), name


def test_ensemble_save_load(tmp_path):
    ens = ClassifierEnsemble(2, seed=0, n_dims=2, classes=CLASSES, **SMALL).eval()
    rnnkit.save(ens, tmp_path / "m")
    loaded = rnnkit.load(tmp_path / "m")
    assert type(loaded) is ClassifierEnsemble and loaded.classes == CLASSES and loaded.members == 2
    x, lengths = torch.randn(3, 9, 2), torch.tensor([9, 4, 6])
    with torch.no_grad():
        assert torch.equal(loaded(x, lengths), ens(x, lengths))


def test_ensemble_and_conv_rnn_through_the_cli(tmp_path, capsys):
    data = tiny_csv(tmp_path / "d.csv", dims=2)
    ens = tmp_path / "ens"
    run(["classify", "train", "--out", str(ens), "--data", str(data), *TINY, "--set", "ensemble=3"], capsys)
    config = json.loads((ens / "config.json").read_text())
    assert config["model"]["name"] == "classify.ensemble" and config["model"]["config"]["members"] == 3
    assert config["model"]["config"]["seed"] == config["train"]["seed"]
    val = json.loads((ens / "validation.json").read_text())
    assert "lstm_fcn-lstm x3" in val["metrics"]
    run(["classify", "evaluate", str(ens), "--data", str(data), "-q"], capsys)
    pred = tmp_path / "p.csv"
    run(["classify", "predict", str(ens), "--data", str(data), "--output", str(pred), "-q"], capsys)
    p = pd.read_csv(pred)
    loaded = rnnkit.load(ens)
    assert isinstance(loaded, ClassifierEnsemble) and len(loaded.nets) == 3
    np.testing.assert_allclose(p[["p_a", "p_b"]].sum(axis=1), 1.0, atol=1e-5)
    run(["classify", "train", "--resume", str(ens), "--data", str(data), "--epochs", "4", "-q"], capsys)
    assert json.loads((ens / "validation.json").read_text())["training"]["epochs"] == 4

    conv = tmp_path / "conv"
    run(["classify", "train", "--out", str(conv), "--data", str(data), "--arch", "conv_rnn", "--cell", "mingru",
         "--pooling", "mean", *TINY, "--set", "baseline=none"], capsys)
    assert "conv_rnn-mingru" in json.loads((conv / "validation.json").read_text())["metrics"]
    run(["classify", "evaluate", str(conv), "--data", str(data), "-q"], capsys)
