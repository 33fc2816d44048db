"""What every app's Python API shares: a model that lives in a run directory.

An app's API class (``ForecastModel``, ``TextModel``) trains with ``fit`` into a run directory (a new
temporary folder unless one is given) on the same code path as its ``train`` command, and reads it
back for ``predict``/``generate``/``evaluate``; ``save`` copies the folder, ``load`` opens one written
by ``fit`` or by the command line.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import ClassVar, TypeVar

from rnnkit.errors import UserError

Self = TypeVar("Self", bound="RunDirModel")


class RunDirModel:
    """Base of the apps' Python APIs: ``run_dir`` once trained; ``options`` as the config file names them."""

    app: ClassVar[str]  # the app name config.json records
    #: ``module:Class`` of the app's task options: with the training options, the names ``options`` may take
    options_class: ClassVar[str]

    def __init__(self, config: str | Path | None = None, **options: object) -> None:
        self.config = Path(config) if config is not None else None
        self.options = options
        self.run_dir: Path | None = None
        self._check_option_names()

    def _check_option_names(self) -> None:
        """An unknown option name fails here, as on the command line (did you mean ...?), not at fit."""
        import importlib

        from rnnkit.training.cli_support import option_names
        from rnnkit.validation.checks import unknown_option

        module, _, name = self.options_class.partition(":")
        known = option_names(getattr(importlib.import_module(module), name))
        for key in self.options:
            if key not in known:
                raise unknown_option(key, known, f"{type(self).__name__}(...)")

    def new_run_dir(self, run_dir: str | Path | None) -> Path:
        """``run_dir`` (refused when it holds a run: fit writes its data there before training), or a
        new temporary folder."""
        if run_dir is not None:
            if (Path(run_dir) / "config.json").exists():
                raise UserError(f"{run_dir} already holds a run; fit into another folder "
                                f"(or {type(self).__name__}.load({str(run_dir)!r}))")
            return Path(run_dir)
        return Path(tempfile.mkdtemp(prefix=f"rnnkit-{self.app}-"))

    def save(self, path: str | Path) -> Path:
        """Copy the run directory (safetensors weights, config.json, reports) to ``path``, a new folder."""
        target = Path(path)
        if target.exists():
            raise UserError(f"{target} exists; save into a new folder")
        shutil.copytree(self.trained_run_dir(), target)
        return target

    @classmethod
    def load(cls: type[Self], run_dir: str | Path) -> Self:
        """A model trained by ``fit`` or by ``rnnkit <app> train`` (its run directory)."""
        model = cls()
        model.run_dir = Path(run_dir)
        if not (model.run_dir / "config.json").is_file():
            raise UserError(f"{run_dir} has no config.json: not a {cls.app} run directory")
        return model

    def trained_run_dir(self) -> Path:
        if self.run_dir is None:
            raise UserError(f"this model is not trained: call fit(...) first (or {type(self).__name__}.load(run_dir))")
        return self.run_dir
