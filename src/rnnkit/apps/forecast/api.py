"""The forecasting app from Python: ``ForecastModel(**options).fit(data)``, ``.predict()``, ``.evaluate()``.

The same code path as ``rnnkit forecast train | predict | evaluate``, with the same defaults: ``fit``
writes the data as a CSV into the run directory and resolves the options exactly as the command
resolves its flags (app defaults < ``config`` file < options), so a model fitted here and one
trained by the CLI on the same CSV with the same seed give the same forecasts. Options take the
names of the config file and ``--set`` (``max_epochs``, ``horizon``, ``cell``, ``hidden``, ...).

    from rnnkit.apps.forecast import ForecastModel

    model = ForecastModel(horizon=12, max_epochs=40, seed=0).fit(frame)   # long or wide DataFrame
    forecasts = model.predict()            # DataFrame: series_id, timestamp, step, forecast, mean, q...
    report = model.evaluate()              # metrics of the model and the baselines on the hold-out
    model.save("runs/air"); ForecastModel.load("runs/air").predict()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rnnkit.apps.run_model import RunDirModel
from rnnkit.errors import UserError
from rnnkit.io.atomic import write_text_atomic

#: the file ``fit`` writes its data to, inside the run directory
DATA_FILE = "data/fit.csv"


def as_long_frame(data: pd.DataFrame | pd.Series | np.ndarray | list) -> pd.DataFrame:
    """A DataFrame in a layout the forecasting reader takes: a DataFrame as given (long:
    series_id,timestamp,value[,covariates]; or wide: timestamp + one column per series; a named index
    becomes a column), a Series as one series over its index, an array or list as one series (1-D)
    or one series per column (2-D) over steps 0, 1, ..."""
    if isinstance(data, pd.DataFrame):
        return data.reset_index() if data.index.name is not None else data
    if isinstance(data, pd.Series):
        return pd.DataFrame({"series_id": str(data.name or "series"), "timestamp": data.index,
                             "value": data.to_numpy()})
    values = np.asarray(data, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise UserError(f"data: expected a 1-D or 2-D array (steps x series), got shape {values.shape}")
    frame = pd.DataFrame(values, columns=[f"series_{k}" for k in range(values.shape[1])])
    frame.insert(0, "timestamp", np.arange(len(frame)))
    return frame


class ForecastModel(RunDirModel):
    """A recurrent (or Transformer) global forecaster with the CLI's behaviour and defaults.

    ``options``: any option of ``rnnkit forecast train``'s config file (docs/forecast.md), e.g.
    ``horizon``, ``context``, ``cell``, ``hidden``, ``max_epochs``, ``lr``, ``seed``, ``threads``;
    ``config``: a YAML file of options (the options given here override it).
    """

    app = "forecast"
    options_class = "rnnkit.apps.forecast.options:ForecastConfig"

    def __init__(self, config: str | Path | None = None, **options: Any) -> None:
        super().__init__(config, **options)
        self.data_file: Path | None = None  # the CSV fit() trained on, when the user named one

    def fit(self, data: pd.DataFrame | pd.Series | np.ndarray | str | Path,
            run_dir: str | Path | None = None) -> ForecastModel:
        """Train on ``data`` (a CSV path or anything :func:`as_long_frame` takes) into ``run_dir``
        (default: a new temporary folder; :meth:`save` copies it). Returns ``self``."""
        from .cli import _setup, run_train

        out = self.new_run_dir(run_dir)
        if isinstance(data, (str, Path)):
            path = self.data_file = Path(data)
        else:
            path = out / DATA_FILE
            write_text_atomic(path, as_long_frame(data).to_csv(index=False))
        flags: dict[str, Any] = {"quiet": True, **self.options}
        tcfg, fcfg = _setup(out, path, None, self.config, flags)
        run_train(tcfg, fcfg, out)
        self.run_dir = out
        return self

    def predict(self, data: pd.DataFrame | pd.Series | np.ndarray | str | Path | None = None,
                future: str | Path | None = None) -> pd.DataFrame:
        """The horizon after the end of every series (of ``data``, default the training data):
        point forecast, sample mean and quantiles per series and step. ``future``: a CSV of the
        known covariates of the next horizon steps, for models that use them."""
        from .cli import forecast_next

        return forecast_next(self.trained_run_dir(), self._data_file(data), None if future is None else Path(future))[0]

    def evaluate(self, data: pd.DataFrame | pd.Series | np.ndarray | str | Path | None = None) -> dict:
        """The model and the baselines scored on the last horizon(s) of every series of ``data``
        (default: the training data), as ``rnnkit forecast evaluate`` reports them."""
        from .cli import evaluate_run

        return evaluate_run(self.trained_run_dir(), self._data_file(data))

    def _data_file(self, data) -> Path | None:
        """The CSV to read: ``data``'s, else the file fit() was given (a run reads a file outside its
        folder only when named), else None: the run's own copy."""
        if data is None or isinstance(data, (str, Path)):
            return self.data_file if data is None else Path(data)
        path = self.trained_run_dir() / "data" / "given.csv"
        write_text_atomic(path, as_long_frame(data).to_csv(index=False))
        return path
