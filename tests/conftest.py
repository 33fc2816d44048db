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


@pytest.fixture
def fresh_dynamo():
    """The test compiles from an empty Dynamo cache: each compiled module instance adds a recompile
    of ``Recurrent.forward``, and after ``torch._dynamo.config.recompile_limit`` of them
    ``fullgraph=True`` fails however right the module is (which test hit it depended on the order
    of a full run). Files that compile many modules use it (``pytestmark``)."""
    import torch._dynamo

    torch._dynamo.reset()
    yield
