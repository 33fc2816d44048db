"""build_optimizer: Adam is torch's fused kernel where the parameters allow, with the default's update."""

import torch

from rnnkit.training.config import TrainConfig
from rnnkit.training.optim import build_optimizer


def test_adam_is_fused_on_cpu_and_takes_the_default_steps_values():
    torch.manual_seed(0)
    a = torch.nn.Linear(5, 3)
    b = torch.nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    fused = build_optimizer(a.parameters(), TrainConfig(optimizer="adam", lr=1e-2))
    assert fused.defaults["fused"] is True
    plain = torch.optim.Adam(b.parameters(), lr=1e-2)
    for _ in range(5):
        x = torch.randn(4, 5)
        for model, opt in ((a, fused), (b, plain)):
            opt.zero_grad()
            model(x).square().sum().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q)
