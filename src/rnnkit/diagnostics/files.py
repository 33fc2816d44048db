"""Atomic writes, now shared with the training backbone: see :mod:`rnnkit.io.atomic`.

Kept so that older imports (``rnnkit.diagnostics.files``) keep working.
"""

from rnnkit.io.atomic import append_jsonl_atomic, json_safe, save_figure_atomic, write_bytes_atomic

__all__ = ["append_jsonl_atomic", "json_safe", "save_figure_atomic", "write_bytes_atomic"]
