"""Truncated backpropagation through time.

Two ways a long sequence is cut, both handled by :class:`~rnnkit.training.task.SequenceTask`:

- **Within a batch** (``tbptt_steps=k``): each batch of long sequences is split along time into
  chunks of ``k`` steps (:func:`split_time`); the recurrent state flows from one chunk into the
  next, detached (:func:`detach_state`), and the optimiser steps after every chunk. The gradient of
  chunk ``j``'s loss therefore reaches back to the start of chunk ``j`` and no further.
- **Across batches** (stateful batching, :class:`StatefulStreams`): a corpus too long for one batch
  is laid out as ``B`` parallel streams; batch ``j`` holds steps ``[j*k, (j+1)*k]`` of every stream,
  each stream always in the same batch row, so the final state of batch ``j`` is the right initial
  state for batch ``j+1`` (the task keeps it, detached, between batches; reset every epoch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


def detach_state(state: Any) -> Any:
    """``state`` (a tensor, or tuples/lists/dicts of them) cut from the autograd graph."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, tuple):
        return tuple(detach_state(s) for s in state)
    if isinstance(state, list):
        return [detach_state(s) for s in state]
    if isinstance(state, dict):
        return {k: detach_state(v) for k, v in state.items()}
    return state


def map_state(state: Any, fn) -> Any:
    """``fn`` applied to every tensor of ``state`` (tuples/lists/dicts of tensors, None kept)."""
    if isinstance(state, Tensor):
        return fn(state)
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # a named tuple
        return type(state)(*(map_state(s, fn) for s in state))
    if isinstance(state, (tuple, list)):
        return type(state)(map_state(s, fn) for s in state)
    if isinstance(state, dict):
        return {k: map_state(v, fn) for k, v in state.items()}
    return state


def split_time(batch: Any, k: int, time_dim: int = 0) -> list[Any]:
    """Split every tensor of ``batch`` that has the time dimension into chunks of ``k`` steps.

    The time length is that of the first tensor with ``time_dim``; tensors whose size along
    ``time_dim`` differs (e.g. one target per sequence) are repeated in every chunk unchanged, as
    are non-tensors. The last chunk may be shorter.
    """
    tensors = [t for t in _leaves(batch) if isinstance(t, Tensor) and t.dim() > time_dim]
    if not tensors:
        return [batch]
    T = tensors[0].shape[time_dim]
    starts = list(range(0, T, k))
    return [_map(batch, lambda t, s=s: t.narrow(time_dim, s, min(k, T - s))
                 if isinstance(t, Tensor) and t.dim() > time_dim and t.shape[time_dim] == T else t)
            for s in starts]


def _leaves(obj: Any) -> list[Any]:
    if isinstance(obj, (tuple, list)):
        return [x for o in obj for x in _leaves(o)]
    if isinstance(obj, dict):
        return [x for o in obj.values() for x in _leaves(o)]
    return [obj]


def _map(obj: Any, fn) -> Any:
    if isinstance(obj, tuple):
        return tuple(_map(o, fn) for o in obj)
    if isinstance(obj, list):
        return [_map(o, fn) for o in obj]
    if isinstance(obj, dict):
        return {k: _map(v, fn) for k, v in obj.items()}
    return fn(obj)


class StatefulStreams(torch.utils.data.Dataset):
    """A long sequence as ``batch_size`` parallel streams, served ``bptt`` steps at a time.

    ``data`` is ``(N, ...)`` (time first). It is trimmed to ``batch_size * L`` steps and laid out
    as ``batch_size`` streams of ``L`` steps (stream ``b`` is ``data[b*L:(b+1)*L]``). Item ``j`` is
    the time-major window ``(bptt + overlap, rows, ...)`` of steps ``[j*bptt, (j+1)*bptt + overlap)``
    of this process's rows: ``overlap=1`` gives language-model pairs (input ``w[:-1]``, target
    ``w[1:]``). Under DDP with ``world`` processes, ``batch_size`` is global and process ``rank``
    owns rows ``[rank*B/world, (rank+1)*B/world)``, so every stream stays in one row of one process.

    Use with ``DataLoader(streams, batch_size=None, shuffle=False)``.
    """

    def __init__(self, data: Tensor, batch_size: int, bptt: int, overlap: int = 1,
                 rank: int = 0, world: int = 1) -> None:
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} is not divisible by {world} processes")
        L = data.shape[0] // batch_size
        if bptt + overlap > L:
            raise ValueError(f"{data.shape[0]} steps are too few for {batch_size} streams of {bptt + overlap}")
        streams = data[: batch_size * L].reshape(batch_size, L, *data.shape[1:])
        rows = batch_size // world
        self.streams = streams[rank * rows:(rank + 1) * rows].transpose(0, 1)  # (L, rows, ...)
        self.bptt, self.overlap = bptt, overlap
        self.n = (L - overlap) // bptt

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, j: int) -> Tensor:
        if not 0 <= j < self.n:
            raise IndexError(j)
        s = j * self.bptt
        return self.streams[s:s + self.bptt + self.overlap]


def chunk_lengths(T: int, k: int) -> Sequence[int]:
    """The chunk sizes :func:`split_time` produces for ``T`` steps."""
    return [min(k, T - s) for s in range(0, T, k)]
