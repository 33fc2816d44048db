"""Test-wide settings. pytest-xdist runs two workers on our 2-core machines: one intra-op thread
each avoids oversubscription (tiny ops like layer_norm slow down 100x when threads fight)."""

import torch

torch.set_num_threads(1)
