"""Cross-fitted ensembles (``folds``, default auto: 5 members under 1000 training cases): member k never
learns from fold k of the training cases and alone scores them (out-of-fold validation), every training
case is learnt by K-1 members, the ensemble averages all K; folds are stratified and seeded; the CLI's
default on a small set trains one, and folds=1 / ensemble=N keep a held-out validation split."""

import json

import numpy as np
import pytest
import torch
from test_classify_cli import TINY, fails, run, tiny_csv

from rnnkit.apps.classify.ensemble import ClassifierEnsemble
from rnnkit.apps.classify.pipeline import ClassifyConfig, resolved_folds
from rnnkit.apps.classify.split import stratified_folds
from rnnkit.apps.classify.task import ClassifyTask, as_dataset
from rnnkit.errors import UserError
from rnnkit.training.config import TrainConfig

SMALL = dict(hidden=8, filters=[8, 8, 8], arch="lstm_fcn", dropout=0.0)


def test_folds_are_stratified_balanced_and_seeded():
    y = np.array([0] * 13 + [1] * 7 + [2] * 3)
    fold = stratified_folds(y, 5, seed=4)
    sizes = np.bincount(fold, minlength=5)
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == len(y)
    for c, n in ((0, 13), (1, 7)):  # each class spread over the folds as evenly as it can be
        per = np.bincount(fold[y == c], minlength=5)
        assert per.max() - per.min() <= 1 and per.sum() == n
    assert (stratified_folds(y, 5, seed=4) == fold).all()
    assert not (stratified_folds(y, 5, seed=5) == fold).all()
    with pytest.raises(UserError, match="folds"):
        stratified_folds(y[:3], 5, seed=0)


def test_auto_folds():
    assert resolved_folds(ClassifyConfig(folds=0), 67) == 5
    assert resolved_folds(ClassifyConfig(folds=0), 3) == 3
    assert resolved_folds(ClassifyConfig(folds=0), 1000) == 1
    assert resolved_folds(ClassifyConfig(folds=0, ensemble=3), 67) == 1
    assert resolved_folds(ClassifyConfig(folds=1), 67) == 1
    assert resolved_folds(ClassifyConfig(folds=4), 5000) == 4
    with pytest.raises(UserError, match="not both"):
        ClassifyConfig(folds=3, ensemble=3).validate()


def _task(members=3, n=12, T=10, **model):
    g = torch.Generator().manual_seed(0)
    x, lengths = torch.randn(n, T, 2, generator=g), torch.randint(3, T + 1, (n,), generator=g)
    y = torch.arange(n) % 2
    fold = torch.arange(n) % members
    ens = ClassifierEnsemble(members, seed=1, n_dims=2, classes=["a", "b"], **(model or SMALL))
    data = as_dataset(x.numpy(), lengths.numpy(), y.numpy(), fold.numpy())
    return ClassifyTask(ens, TrainConfig(batch_size=n), data, data), (x, lengths, y, fold)


def _grads(task, batch):
    task.model.zero_grad()
    task.model.train()
    loss, _ = task.compute_loss(batch, None)
    loss.backward()
    return [[p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in net.parameters()]
            for net in task.model.nets]


def test_member_k_never_learns_from_fold_k():
    # a recurrent model (no batch norm, whose batch statistics would mix the cases of a batch)
    task, (x, lengths, y, fold) = _task(arch="rnn", hidden=8, pooling="mean")
    x2, y2 = x.clone(), y.clone()
    x2[fold == 0] = 5 * torch.randn_like(x2[fold == 0])  # fold 0's cases: other values, other labels
    y2[fold == 0] = 1 - y2[fold == 0]
    g_a, g_b = _grads(task, (x, lengths, y, fold)), _grads(task, (x2, lengths, y2, fold))
    assert any(bool(g.abs().sum() > 0) for g in g_a[0])
    for a, b in zip(g_a[0], g_b[0], strict=True):  # member 0 learns from folds 1 and 2 only
        torch.testing.assert_close(a, b)
    for k in (1, 2):  # the others learn from fold 0 too
        assert any(not torch.allclose(a, b) for a, b in zip(g_a[k], g_b[k], strict=True))


def test_validation_scores_each_case_by_the_member_that_never_saw_it():
    task, (x, lengths, y, fold) = _task()
    task.model.eval()
    with torch.no_grad():
        loss, _ = task.compute_loss((x, lengths, y, fold), None)
        members = [net(x, lengths) for net in task.model.nets]
    oof = torch.stack([members[int(f)][i] for i, f in enumerate(fold)])
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(oof, y))
    assert not torch.allclose(loss, torch.nn.functional.cross_entropy(task.model(x, lengths), y))
    right, seen = task._correct.tolist()
    assert seen == len(y) and right == float((oof.argmax(-1) == y).sum())


def test_the_cli_auto_folds_cross_fit_a_small_set(tmp_path, capsys):
    data = tiny_csv(tmp_path / "d.csv")
    out = tmp_path / "cf"
    run(["classify", "train", "--out", str(out), "--data", str(data), *TINY, "--set", "folds=0"], capsys)
    config = json.loads((out / "config.json").read_text())
    info = config["data_info"]
    assert config["model"]["name"] == "classify.ensemble" and config["model"]["config"]["members"] == 5
    assert info["folds"] == 5 and info["val_cases"] == info["train_cases"] == 12
    assert sorted(np.bincount(info["case_folds"]).tolist()) == [2, 2, 2, 3, 3]
    val = json.loads((out / "validation.json").read_text())
    assert val["folds"] == 5 and val["cases"] == 12
    assert {"lstm_fcn-lstm x5 out-of-fold", "1nn-dtw (window 0.2) out-of-fold"} == set(val["metrics"])
    run(["classify", "evaluate", str(out), "--data", str(data), "-q"], capsys)
    assert "lstm_fcn-lstm x5" in json.loads((out / "evaluation.json").read_text())["metrics"]
    run(["classify", "train", "--resume", str(out), "--data", str(data), "--epochs", "4", "-q"], capsys)
    assert json.loads((out / "validation.json").read_text())["training"]["epochs"] == 4

    one = tmp_path / "one"
    run(["classify", "train", "--out", str(one), "--data", str(data), *TINY, "--set", "folds=1"], capsys)
    info = json.loads((one / "config.json").read_text())["data_info"]
    assert info["folds"] == 1 and info["val_cases"] == 2 and "case_folds" not in info
    assert "lstm_fcn-lstm" in json.loads((one / "validation.json").read_text())["metrics"]
    fails(["classify", "train", "--out", str(tmp_path / "both"), "--data", str(data), *TINY,
           "--set", "folds=3", "--set", "ensemble=3"], capsys, "not both")
    assert not (tmp_path / "both").exists()


def test_crop_windows_are_slices_of_each_case():
    from rnnkit.apps.classify.task import crop_windows

    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([10, 7, 1, 4])
    x = torch.zeros(4, 10, 2)
    for i, n in enumerate(lengths.tolist()):  # step t of case i holds (i, t); padding stays 0
        x[i, :n, 0], x[i, :n, 1] = i + 1, torch.arange(n, dtype=torch.float32) + 1
    starts = set()
    for seed in range(20):
        out, keep = crop_windows(x, lengths, 0.7, torch.Generator().manual_seed(seed))
        assert keep.tolist() == [7, 5, 1, 3]  # round(0.7 * length), at least one step
        for i, (n, k) in enumerate(zip(lengths.tolist(), keep.tolist(), strict=True)):
            t = out[i, :k, 1]
            assert (out[i, :k, 0] == i + 1).all() and (out[i, k:] == 0).all()
            assert (t[1:] - t[:-1] == 1).all() and t[0] >= 1 and t[-1] <= n  # consecutive, inside the case
            starts.add((i, int(t[0])))
    assert {s for i, s in starts if i == 0} == {1, 2, 3, 4}  # every start of the 10-step case was drawn
    a, _ = crop_windows(x, lengths, 0.7, g.manual_seed(3))
    b, _ = crop_windows(x, lengths, 0.7, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    whole, keep = crop_windows(x, lengths, 1.0, g)
    assert torch.equal(whole, x) and torch.equal(keep, lengths)


def test_crop_trains_on_windows_and_validates_on_whole_cases():
    task, (x, lengths, y, fold) = _task(arch="rnn", hidden=8, pooling="mean")
    task.crop = 0.5
    task._crop_rng.manual_seed(0)
    task.model.eval()
    with torch.no_grad():
        full = task.compute_loss((x, lengths, y, fold), None)[0]
    task.model.train()
    with torch.no_grad():
        cropped = task.compute_loss((x, lengths, y, fold), None)[0]
        task.crop = 1.0
        whole = task.compute_loss((x, lengths, y, fold), None)[0]
    assert not torch.allclose(cropped, whole)  # training saw windows
    task.model.eval()
    task.crop = 0.5
    with torch.no_grad():
        assert torch.equal(task.compute_loss((x, lengths, y, fold), None)[0], full)  # evaluation: whole cases
