"""``rnnkit classify`` models: every architecture and pooling trains (forward/backward shapes),
padding never changes a prediction, save/load keeps the class order and the predictions."""

import numpy as np
import pytest
import torch

import rnnkit
from rnnkit.apps.classify.model import Classifier, count_parameters, matched_transformer_width

CLASSES = ["b", "a", "c"]  # not sorted: the saved order is the model's order
SMALL = dict(hidden=8, filters=[8, 8, 8])


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 12, 3, generator=g)
    lengths = torch.tensor([12, 7, 1, 10])
    return x, lengths


CONFIGS = [dict(arch="rnn", cell=c, pooling=p) for c in ("lstm", "gru", "mingru") for p in
           ("last", "mean", "max", "attention")]
CONFIGS += [dict(arch="rnn", cell="gru", bidirectional=True, pooling=p, num_layers=2) for p in ("last", "attention")]
CONFIGS += [dict(arch=a, cell="lstm") for a in ("lstm_fcn", "mlstm_fcn")]
CONFIGS += [dict(arch="conv_rnn", cell=c, pooling=p) for c, p in (("lstm", "last"), ("mingru", "attention"))]
CONFIGS += [dict(arch="conv_rnn", cell="gru", bidirectional=True, num_layers=2, pooling="mean")]
CONFIGS += [dict(arch="transformer", pooling=p) for p in ("last", "mean")]


@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: "-".join(str(v) for v in kw.values()))
def test_forward_backward_and_padding_is_irrelevant(kw):
    torch.manual_seed(0)
    model = Classifier(3, CLASSES, **SMALL, **kw)
    x, lengths = batch()
    logits = model(x, lengths)
    assert logits.shape == (4, 3)
    logits.logsumexp(-1).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        ref = model(x, lengths)
        garbage = x.clone()
        for i, n in enumerate(lengths.tolist()):
            garbage[i, n:] = 1e3  # changing the padding changes no prediction
        torch.testing.assert_close(model(garbage, lengths), ref, rtol=1e-5, atol=1e-5)
        # nor does padding a case by itself, without the others
        alone = model(x[1:2, :7], lengths[1:2])
        torch.testing.assert_close(alone, ref[1:2], rtol=1e-5, atol=1e-5)


def test_save_load_keeps_class_order_and_predictions(tmp_path):
    torch.manual_seed(0)
    model = Classifier(3, CLASSES, arch="lstm_fcn", mean=[1.0, 2.0, 3.0], std=[2.0, 1.0, 0.5], **SMALL).eval()
    x, lengths = batch(1)
    rnnkit.save(model, tmp_path / "m")
    loaded = rnnkit.load(tmp_path / "m")
    assert loaded.classes == CLASSES
    with torch.no_grad():
        assert torch.equal(loaded(x, lengths), model(x, lengths))


def test_transformer_width_matches_the_recurrent_size():
    target = count_parameters(Classifier(1, ["x", "y"], arch="rnn", hidden=64))
    width = matched_transformer_width(target, 1, 2, 1)
    got = count_parameters(Classifier(1, ["x", "y"], arch="transformer", hidden=width, pooling="mean"))
    assert width % 4 == 0 and abs(got - target) / target < 0.15


@pytest.mark.parametrize(("kw", "message"), [
    (dict(arch="cnn"), "unknown arch"), (dict(cell="elman"), "unknown cell"), (dict(pooling="sum"), "unknown pooling"),
    (dict(filters=[8, 8], kernels=[3]), "filters and kernels"), (dict(arch="transformer", hidden=10), "divisible"),
])
def test_bad_model_options(kw, message):
    with pytest.raises(rnnkit.errors.UserError, match=message):
        Classifier(2, ["a", "b"], **kw)


def test_model_normalises_with_saved_statistics():
    model = Classifier(2, ["a", "b"], arch="rnn", hidden=4, mean=[10.0, -5.0], std=[2.0, 4.0]).eval()
    x = torch.tensor(np.random.default_rng(0).normal(size=(3, 5, 2)), dtype=torch.float32)
    moved = x * torch.tensor([2.0, 4.0]) + torch.tensor([10.0, -5.0])
    plain = Classifier(2, ["a", "b"], arch="rnn", hidden=4).eval()
    plain.load_state_dict({**model.state_dict(), "mean": torch.zeros(2), "std": torch.ones(2)})
    lengths = torch.tensor([5, 3, 2])
    with torch.no_grad():
        torch.testing.assert_close(model(moved, lengths), plain(x, lengths))
