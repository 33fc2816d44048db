"""Files: atomic writes, the model registry, and save/load without pickle (config.json + safetensors).

Sits between ``layers/`` and ``training/``: it imports layers (to register them) and nothing that
trains, so ``rnnkit.load`` works without importing Lightning.
"""

from rnnkit.io.atomic import (
    json_safe,
    save_figure_atomic,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from rnnkit.io.registry import UnknownModel, build_model, model_config, model_names, register_model
from rnnkit.io.saving import CorruptRunFile, load, read_config, save, save_weights

__all__ = [
    "CorruptRunFile",
    "UnknownModel",
    "build_model",
    "json_safe",
    "load",
    "model_config",
    "model_names",
    "read_config",
    "register_model",
    "save",
    "save_figure_atomic",
    "save_weights",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]
