"""Truncated BPTT: gradients cut exactly at chunk boundaries, state carried (hand-computed), and
stateful batching keeping each stream in its batch row."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rnnkit.training import SequenceTask, StatefulStreams, TrainConfig, detach_state, split_time


class ScalarRNN(nn.Module):
    """h_t = w * h_{t-1} + x_t with one scalar weight."""

    def __init__(self, w: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))

    def forward(self, x, h):
        for t in range(x.shape[0]):
            h = self.w * h + x[t]
        return h


class EndOfChunkLoss(SequenceTask):
    """Loss of each chunk = the state at its end; records what each chunk saw."""

    def __init__(self, w: float, cfg: TrainConfig, x: torch.Tensor, stateful: bool = False) -> None:
        super().__init__(ScalarRNN(w), cfg)
        self.stateful = stateful
        self.x = x
        self.seen: list[dict] = []

    def compute_loss(self, batch, state):
        (x,) = batch
        h0 = torch.zeros(()) if state is None else state
        self.seen.append({"h0": float(h0.detach()), "w": float(self.model.w.detach()),
                          "h0_requires_grad": h0.requires_grad})
        h = self.model(x, h0)
        self.model.w.register_hook(lambda g: self.seen[-1].__setitem__("grad", float(g)))
        return h, h

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.x), batch_size=None)


def _fit(task):
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, accelerator="cpu", devices=1)
    trainer.fit(task)
    return trainer


def test_gradients_cut_at_chunk_boundaries_hand_computed():
    # x = 1 at every one of T=4 steps, chunks of k=2, h_0 = 0, w = 0.5, SGD lr 0.1.
    # chunk 1: h1 = 1, h2 = w h1 + 1 = 1.5; dL/dw = h1 = 1              -> w = 0.5 - 0.1 * 1   = 0.4
    # chunk 2 starts from h2 = 1.5 (carried, detached): h3 = 0.4*1.5 + 1 = 1.6, h4 = 0.4*1.6 + 1 = 1.64;
    # dL/dw = h3 + w * dh3/dw = 1.6 + 0.4 * 1.5 = 2.2 (without the cut, + w*w*dh2/dw = 0.16 more)
    #                                                                    -> w = 0.4 - 0.22 = 0.18
    cfg = TrainConfig(optimizer="sgd", lr=0.1, tbptt_steps=2, batch_size=1, quiet=True)
    task = EndOfChunkLoss(0.5, cfg, torch.ones(1, 4))  # one batch: (T=4,) per item -> time dim 0
    task.time_dim = 0
    _fit(task)
    assert [s["h0"] for s in task.seen] == pytest.approx([0.0, 1.5])
    assert [s["w"] for s in task.seen] == pytest.approx([0.5, 0.4])
    assert [s["grad"] for s in task.seen] == pytest.approx([1.0, 2.2])
    assert not task.seen[1]["h0_requires_grad"]  # the carried state is detached
    assert float(task.model.w.detach()) == pytest.approx(0.18)


def test_without_tbptt_the_gradient_flows_through_all_steps():
    # one chunk of 4 steps: L = h4 = w^3 + w^2 + w + 1, dL/dw = 3w^2 + 2w + 1 = 2.75 at w = 0.5
    cfg = TrainConfig(optimizer="sgd", lr=0.1, batch_size=1, quiet=True)
    task = EndOfChunkLoss(0.5, cfg, torch.ones(1, 4))
    _fit(task)
    assert [s["grad"] for s in task.seen] == pytest.approx([2.75])


def test_stateful_batching_carries_state_across_batches():
    # two batches of 2 steps, stateful, no in-batch chunking: the second batch starts from the first's
    # final state (1.5) and its gradient stops there: same numbers as the in-batch TBPTT case
    cfg = TrainConfig(optimizer="sgd", lr=0.1, batch_size=1, quiet=True)
    task = EndOfChunkLoss(0.5, cfg, torch.ones(2, 2), stateful=True)
    _fit(task)
    assert [s["h0"] for s in task.seen] == pytest.approx([0.0, 1.5])
    assert [s["grad"] for s in task.seen] == pytest.approx([1.0, 2.2])


def test_stateful_streams_keep_each_stream_in_its_row():
    data = torch.arange(40)
    streams = StatefulStreams(data, batch_size=4, bptt=3, overlap=1)  # 4 streams of 10 steps
    assert len(streams) == 3
    w0, w1 = streams[0], streams[1]
    assert w0.shape == (4, 4)
    assert w0[0].tolist() == [0, 10, 20, 30]  # (time, row): row b is stream b
    assert (w1[0] == w0[-1]).all()  # the next window starts where this one's input ended
    assert (w1[:, 2] - w0[:, 2] == 3).all()
    # two processes: each owns half of the rows, the same rows every batch
    r0 = StatefulStreams(data, 4, 3, rank=0, world=2)
    r1 = StatefulStreams(data, 4, 3, rank=1, world=2)
    assert torch.equal(torch.cat([r0[1], r1[1]], dim=1), w1)


def test_split_time_and_detach():
    x = torch.arange(10.0).reshape(2, 5, 1)  # (B, T, 1)
    y = torch.ones(2)
    chunks = split_time((x, y), 2, time_dim=1)
    assert [c[0].shape[1] for c in chunks] == [2, 2, 1]
    assert all(c[1] is y for c in chunks)
    h = (torch.ones(2, requires_grad=True) * 2, [torch.ones(1, requires_grad=True) * 3])
    d = detach_state(h)
    assert not d[0].requires_grad and not d[1][0].requires_grad
