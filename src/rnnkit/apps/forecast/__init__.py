"""Time-series forecasting: ``rnnkit forecast train | evaluate | predict | backtest`` (docs/forecast.md).

``data.py`` (CSV -> validated series, windows), ``model.py`` (recurrent or Transformer encoder, direct
or autoregressive head, Gaussian / Student-t likelihood), ``task.py`` (the LightningModule),
``metrics.py`` (MASE, sMAPE, MAE, RMSE, MAPE, CRPS, coverage), ``baselines.py`` (naive, seasonal
naive, ETS, ARIMA), ``pipeline.py`` (train / evaluate / backtest / predict), ``plots.py``, ``cli.py``,
``api.py`` (:class:`ForecastModel`: the same from Python).
"""


def __getattr__(name: str):
    if name == "ForecastModel":  # imported on first use: the CLI's start does not pay for pandas
        from .api import ForecastModel

        return ForecastModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
