"""Test-wide settings. pytest-xdist runs two workers on our 2-core machines: one intra-op thread
each avoids oversubscription (tiny ops like layer_norm slow down 100x when threads fight)."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_intra_op_thread():
    """Every test starts on one thread, whatever an earlier test's command (``--threads N``) set."""
    torch.set_num_threads(1)
    yield
