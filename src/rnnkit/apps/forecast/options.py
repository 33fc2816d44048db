"""The forecast app's options for rnnkit.validation: the numeric ranges of :class:`ForecastConfig`.

Declared here, beside the class rather than in it, so the schema is one import away for every reader
of forecast options (``--set``, the config file, config.json read back). Choices (arch, head,
likelihood...) stay with ``ForecastConfig.validate``, next to the code that defines them.
"""

from __future__ import annotations

from rnnkit.apps.forecast.pipeline import (
    AUTO_ENSEMBLE_MEMBERS,
    AUTO_ENSEMBLE_WINDOWS,
    COMBINABLE,
    REFITS,
    ForecastConfig,
    combine_with_problem,
)
from rnnkit.validation import Opt, declare_options

declare_options(ForecastConfig, {
    "horizon": Opt(min=1, max=100_000, help="steps to forecast"),
    "context": Opt(min=0, max=1_000_000, help="input window (0: auto)"),
    "season": Opt(min=0, max=100_000, help="season length (0: from the frequency)"),
    "hidden": Opt(min=1),
    "num_layers": Opt(min=1, max=64),
    "dropout": Opt(min=0, lt=1),
    "holdout": Opt(min=0, special=(-1,), help="steps held out for the report (-1: one horizon)"),
    "windows": Opt(min=1, max=100_000),
    "stride": Opt(min=0, help="steps between backtest origins (0: one horizon)"),
    "max_windows": Opt(min=1),
    "n_samples": Opt(min=1, max=100_000),
    "plot_series": Opt(min=0, max=1000),
    "ensemble": Opt(min=0, max=1000, help=f"members from different seeds (0: auto = {AUTO_ENSEMBLE_MEMBERS} under "
                                        f"{AUTO_ENSEMBLE_WINDOWS} training windows, else 1)"),
    "combine_with": Opt(check=combine_with_problem,
                        allowed=f"auto, none, or comma-separated names from {', '.join(COMBINABLE)}",
                        help="statistical forecasts whose median with the network's is the point forecast"),
    "combine_how": Opt(choices=("median", "mean")),
    "refit": Opt(choices=REFITS, help="train again on every window after selection and calibration"),
    "min_context": Opt(min=2),
    "seeds": Opt(min=1, max=1000),
})

__all__ = ["ForecastConfig"]
