"""Sequence classification from Python: ``ClassifyModel(**options).fit(X, y)``, ``.predict(X)``, ``.evaluate(X, y)``.

The same code path as ``rnnkit classify train | evaluate | predict``, with the same defaults: ``fit``
writes the cases as a long CSV into the run directory and resolves the options exactly as the command
resolves its flags (app defaults < ``config`` file < options), so a model fitted here and one trained
by the CLI on the same file with the same seed are the same model. Options take the names of the
config file and ``--set`` (``arch``, ``cell``, ``hidden``, ``max_epochs``, ``lr``, ``seed``...).

    from rnnkit.apps.classify import ClassifyModel

    model = ClassifyModel(arch="lstm_fcn", max_epochs=50, seed=0).fit(X_train, y_train)  # X: (N, T, D)
    table = model.predict(X_test)            # DataFrame: case_id, predicted, p_<class>...
    report = model.evaluate(X_test, y_test)  # accuracy, F1, ... beside the 1-NN DTW baseline
    model.save("runs/shapes"); ClassifyModel.load("runs/shapes").predict(X_test)
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rnnkit.apps.run_model import RunDirModel
from rnnkit.errors import UserError
from rnnkit.io.atomic import write_text_atomic

#: the files the API writes its cases to, inside the run directory
FIT_FILE, GIVEN_FILE = "data/fit.csv", "data/given.csv"

Cases = pd.DataFrame | np.ndarray | Sequence[np.ndarray] | str | Path


def cases_frame(data: pd.DataFrame | np.ndarray | Sequence[np.ndarray], labels: Sequence | None = None
                ) -> pd.DataFrame:
    """The long layout (``case_id,label,t,dim_0,...``) of ``data``: a DataFrame is taken as that layout
    already; an array (N, T) or (N, T, D) is N cases of T steps; a list of arrays (T_i,) or (T_i, D) is
    cases of their own lengths. ``labels``: one per case (any values; their text is the class name)."""
    if isinstance(data, pd.DataFrame):
        if labels is not None:
            raise UserError("labels: a DataFrame carries its labels in its 'label' column")
        return data
    cases = [np.asarray(c, dtype=float) for c in data] if not isinstance(data, np.ndarray) else list(
        np.asarray(data, dtype=float))
    if not cases:
        raise UserError("data: no cases")
    cases = [c[:, None] if c.ndim == 1 else c for c in cases]
    dims = {c.shape[1] if c.ndim == 2 else -1 for c in cases}
    if len(dims) != 1 or -1 in dims:
        raise UserError("data: every case must be (steps,) or (steps, dims) with the same dims, "
                        f"got shapes {sorted({c.shape for c in cases})[:4]}")
    if labels is not None and len(labels) != len(cases):
        raise UserError(f"labels: {len(labels)} labels for {len(cases)} cases")
    n_dims = dims.pop()
    frames = []
    for k, case in enumerate(cases):
        part = pd.DataFrame(case, columns=[f"dim_{d}" for d in range(n_dims)])
        part.insert(0, "t", np.arange(len(case)))
        if labels is not None:
            part.insert(0, "label", str(labels[k]))
        part.insert(0, "case_id", f"case_{k}")
        frames.append(part)
    return pd.concat(frames, ignore_index=True)


class ClassifyModel(RunDirModel):
    """A recurrent (LSTM-FCN, conv+RNN, RNN) or Transformer sequence classifier with the CLI's behaviour
    and defaults.

    ``options``: any option of ``rnnkit classify train``'s config file (docs/classify.md), e.g.
    ``arch``, ``cell``, ``hidden``, ``pooling``, ``max_epochs``, ``lr``, ``seed``, ``threads``;
    ``config``: a YAML file of options (the options given here override it).
    """

    app = "classify"
    options_class = "rnnkit.apps.classify.options:ClassifyConfig"

    def fit(self, data: Cases, labels: Sequence | None = None, run_dir: str | Path | None = None) -> ClassifyModel:
        """Train on ``data`` (a long CSV or .ts path, or anything :func:`cases_frame` takes, with
        ``labels``) into ``run_dir`` (default: a new temporary folder; :meth:`save` copies it); a
        stratified validation split is held out as by the command. Returns ``self``."""
        from .cli import _setup, run_train

        out = self.new_run_dir(run_dir)
        path = self._file(data, labels, out / FIT_FILE)
        flags: dict[str, Any] = {"quiet": True, **self.options}
        tcfg, ccfg, path = _setup(out, path, False, self.config, flags)
        run_train(tcfg, ccfg, out, data_path=path)
        self.run_dir = out
        return self

    def predict(self, data: Cases) -> pd.DataFrame:
        """Every case's predicted class and class probabilities (``rnnkit classify predict``'s CSV as a
        DataFrame); labels, when ``data`` has them, beside."""
        from .cli import _load_run
        from .pipeline import predict_cases

        model, ccfg, path = _load_run(self.trained_run_dir(), self._file(data, None))
        _, text = predict_cases(model, ccfg, path)
        return pd.read_csv(io.StringIO(text), dtype={"case_id": str})

    def evaluate(self, data: Cases, labels: Sequence | None = None, baseline: bool = True) -> dict:
        """Scores on ``data`` (its test split when it has one) beside the 1-NN DTW baseline, as
        ``rnnkit classify evaluate`` reports them (also written to the run's evaluation.md)."""
        from .cli import _load_run
        from .pipeline import evaluate_run

        run_dir = self.trained_run_dir()
        model, ccfg, path = _load_run(run_dir, self._file(data, labels))
        return evaluate_run(model, ccfg, run_dir, path, baseline and ccfg.baseline != "none")

    def _file(self, data: Cases, labels: Sequence | None, target: Path | None = None) -> Path:
        """A path as given; other data written as a long CSV to ``target`` (default: the run's
        data/given.csv)."""
        if isinstance(data, (str, Path)):
            if labels is not None:
                raise UserError("labels: a file carries its labels (a 'label' column, or the .ts class labels)")
            return Path(data)
        path = target if target is not None else self.trained_run_dir() / GIVEN_FILE
        write_text_atomic(path, cases_frame(data, labels).to_csv(index=False))
        return path
