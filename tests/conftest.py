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


@pytest.fixture(autouse=True)
def _fresh_compile_caches():
    """Every test compiles from an empty Dynamo cache: each compiled module instance adds a
    recompile of ``Recurrent.forward``, and after ``torch._dynamo.config.recompile_limit`` of them
    ``fullgraph=True`` fails however right the module is (the order of a full run decided which)."""
    yield
    import sys

    if "torch._dynamo" in sys.modules:
        torch._dynamo.reset()
