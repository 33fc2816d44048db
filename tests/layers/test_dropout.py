"""rnnkit.layers.Dropout: torch.nn.Dropout's distribution from the counter-based masks."""

import pytest
import torch

from rnnkit.layers.dropout import Dropout


def test_training_keeps_one_minus_p_scaled_and_eval_is_identity():
    torch.manual_seed(0)
    drop = Dropout(0.3)
    x = torch.randn(64, 1000)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.01
    torch.testing.assert_close(y[kept], x[kept] / 0.7)
    assert not torch.equal(drop(x) != 0, kept), "a new mask every call"
    drop.eval()
    assert drop(x) is x


def test_gradient_is_the_mask_and_seeded_masks_repeat():
    drop = Dropout(0.5)
    x = torch.randn(8, 300, requires_grad=True)
    torch.manual_seed(3)
    y = drop(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y != 0).float() * 2.0)
    torch.manual_seed(3)
    assert torch.equal(drop(x.detach()), y.detach())


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_probability_outside_zero_one_is_refused(p):
    with pytest.raises(ValueError, match="dropout"):
        Dropout(p)
