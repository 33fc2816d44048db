"""The classify app's options for rnnkit.validation: ranges and choices of :class:`ClassifyConfig`.

Declared beside the class so that every reader of classify options (flags, ``--set``, the config file,
config.json read back by ``evaluate``/``predict``) checks them the same way, with the same messages.
"""

from __future__ import annotations

from rnnkit.apps.classify.pipeline import BASELINES, CLASS_WEIGHTS, ClassifyConfig
from rnnkit.validation import Opt, declare_options


def _archs():
    from rnnkit.apps.classify.model import ARCHS

    return ARCHS


def _poolings():
    from rnnkit.apps.classify.pooling import POOLINGS

    return POOLINGS


declare_options(ClassifyConfig, {
    "missing": Opt(choices=("interpolate", "error"), help="NaN inside a series"),
    "arch": Opt(choices=_archs),
    "pooling": Opt(choices=_poolings),
    "hidden": Opt(min=1, max=65_536),
    "num_layers": Opt(min=1, max=64),
    "dropout": Opt(min=0, lt=1),
    "transformer_width": Opt(min=0, max=65_536, help="0: matched to the recurrent model"),
    "val_fraction": Opt(min=0, lt=1, help="0: no held-out split; the best epoch and early stopping watch the "
                                          "training cases"),
    "class_weights": Opt(choices=CLASS_WEIGHTS),
    "baseline": Opt(choices=BASELINES),
    "baseline_window": Opt(min=0, max=1),
    "ensemble": Opt(min=1, max=64, help="members trained from seeds seed..seed+N-1, probabilities averaged"),
    "crop": Opt(gt=0, max=1, help="window slicing: share of each training case's steps in its random window (1: off)"),
    "folds": Opt(min=0, max=64, help="0: auto (5 under 1000 training cases, else 1); K >= 2: K members, "
                                     "member k validated on fold k, trained on the rest; 1: one validation split"),
})

__all__ = ["ClassifyConfig"]
