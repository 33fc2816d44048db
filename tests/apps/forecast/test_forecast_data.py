"""Forecast input: formats, frequency, missing values, and one-line errors (exit 2) for bad inputs."""


import numpy as np
import pytest

from _paths import DATA
from rnnkit.apps.forecast.data import load_series, make_windows
from rnnkit.cli import main
from rnnkit.errors import UserError

AIR = DATA / "forecast_airpassengers.csv"
ELEC = DATA / "forecast_elecdemand_2weeks.csv"


def write(tmp_path, text, name="x.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_long_file_real_series():
    s = load_series(AIR)
    assert s.ids == ["airpassengers"] and len(s.values[0]) == 144 and s.freq == "MS"
    assert s.values[0][:3].tolist() == [112, 118, 132]
    assert np.all(np.diff(s.pos[0]) == 1)


def test_covariates_and_half_hourly_frequency():
    s = load_series(ELEC, known_covariates="temperature,workday")
    assert s.freq == "30min" and s.known[0].shape == (672, 2)
    assert s.known[0][0].tolist() == [18.2, 0.0]


def test_wide_format_and_interpolation(tmp_path):
    p = write(tmp_path, "timestamp,a,b\n2020-01-01,1,10\n2020-01-02,,20\n2020-01-03,3,30\n2020-01-04,4,40\n")
    s = load_series(p)
    assert s.ids == ["a", "b"] and s.freq == "D"
    assert s.values[0].tolist() == [1, 2, 3, 4]
    with pytest.raises(UserError, match="missing value"):
        load_series(p, missing="error")


def test_gap_in_grid_is_missing_value(tmp_path):
    p = write(tmp_path, "series_id,timestamp,value\na,2020-01,1\na,2020-02,2\na,2020-04,4\na,2020-05,5\n"
                        "a,2020-06,6\n")
    s = load_series(p, freq="MS")
    assert s.values[0].tolist() == [1, 2, 3, 4, 5, 6]


def test_irregular_timestamps(tmp_path):
    p = write(tmp_path, "series_id,timestamp,value\na,2020-01-01,1\na,2020-01-02,2\na,2020-01-05,3\n"
                        "a,2020-01-06 07:00,4\n")
    with pytest.raises(UserError, match="irregular"):
        load_series(p)
    s = load_series(p, freq="D", irregular="resample")
    assert len(s.values[0]) == 6  # daily grid, gaps interpolated


def test_integer_time_steps_and_windows(tmp_path):
    p = write(tmp_path, "series_id,timestamp,value\n" + "".join(f"s,{t},{t * 2}\n" for t in range(1, 21)))
    s = load_series(p)
    assert s.freq is None and len(s.values[0]) == 20
    w = make_windows(s, 5, 3, [np.array([5, 17])], season=1)
    assert w.y_ctx[0].tolist() == [2, 4, 6, 8, 10] and w.y_fut[0].tolist() == [12, 14, 16]
    assert w.y_fut[1].tolist() == [36, 38, 40]


BAD = {
    "empty": ("", [], "is empty"),
    "missing column": ("series_id,timestamp\na,2020-01\n", [], "missing column"),
    "misnamed column": ("series_id,date,value\na,2020-01,1\n", [], "missing column"),
    "non-numeric": ("series_id,timestamp,value\na,2020-01,1\na,2020-02,abc\na,2020-03,2\n", [], "non-numeric"),
    "duplicate timestamps": ("series_id,timestamp,value\na,2020-01,1\na,2020-01,2\na,2020-02,2\n", [], "duplicate"),
    "all NaN": ("series_id,timestamp,value\na,2020-01,\na,2020-02,\na,2020-03,\n", ["--freq", "MS"], "all missing"),
    "unknown covariate": (None, ["--known-covariates", "humidity"], "unknown covariate"),
    "horizon zero": (None, ["--horizon", "0"], "horizon"),
    "horizon negative": (None, ["--horizon=-3"], "horizon"),
    "short series, strict policy": (None, ["--context", "200", "--set", "short=error"], "shorter than the window"),
    "series of length 1": ("series_id,timestamp,value\na,2001,5\n" + "".join(f"b,{2000 + i},{i}\n" for i in range(30)),
                           ["--horizon", "3"], "needs at least 2"),
    "constant series": ("series_id,timestamp,value\n" + "".join(f"a,{2000 + i},7\n" for i in range(20))
                        + "".join(f"b,{2000 + i},{i}\n" for i in range(30)), ["--horizon", "3"], "is constant"),
    "bad fallback": (None, ["--set", "fallback=median"], "unknown fallback"),
    "bad lookbacks": (None, ["--set", "lookbacks=2,x"], "lookbacks must be numbers"),
    "log of non-positive": ("series_id,timestamp,value\n" + "".join(f"a,{2000 + i},{i - 3}\n" for i in range(40)),
                            ["--transform", "log"], "positive"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_inputs_one_line_exit_2(case, tmp_path, capsys):
    text, extra, message = BAD[case]
    path = AIR if text is None else write(tmp_path, text)
    code = main(["forecast", "train", "--out", str(tmp_path / "run"), "--data", str(path), "--horizon", "12",
                 "--epochs", "1", "-q", *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("rnnkit: error:") and err.count("\n") == 1, err
    assert message in err, err
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_quarterly_series_starting_in_different_quarters_share_a_frequency(tmp_path):
    rows = "".join(f"a,{d},{i}\n" for i, d in enumerate(["2001-01-01", "2001-04-01", "2001-07-01", "2001-10-01"]))
    rows += "".join(f"b,{d},{i}\n" for i, d in enumerate(["2001-10-01", "2002-01-01", "2002-04-01", "2002-07-01"]))
    s = load_series(write(tmp_path, "series_id,timestamp,value\n" + rows))
    assert s.freq == "QS-JAN" and s.pos[1][0] - s.pos[0][0] == 3


def test_short_series_policy_drop(tmp_path, capsys):
    from rnnkit.apps.forecast.pipeline import ForecastConfig, drop_short

    text = "series_id,timestamp,value\n" + "".join(f"a,{2000 + i},{i}\n" for i in range(8)) + \
        "".join(f"b,{2000 + i},{i}\n" for i in range(40))
    s = load_series(write(tmp_path, text))
    cfg = ForecastConfig(horizon=4, short="drop").validate()
    kept = drop_short(cfg, s, holdout=4)
    assert kept.ids == ["b"] and "dropped 1 of 2" in capsys.readouterr().err
    assert drop_short(ForecastConfig(horizon=4), s, 4) is s  # the default pads short series


def test_auto_head_rule():
    from rnnkit.apps.forecast.pipeline import ForecastConfig, resolve_head

    plain, covs = load_series(AIR), load_series(ELEC, known_covariates="temperature")
    assert resolve_head(ForecastConfig(horizon=12), plain) == "autoregressive"
    assert resolve_head(ForecastConfig(horizon=48), plain) == "direct"  # long horizon
    assert resolve_head(ForecastConfig(horizon=12), covs) == "direct"  # covariates
    assert resolve_head(ForecastConfig(horizon=12, arch="transformer"), plain) == "direct"
    assert resolve_head(ForecastConfig(horizon=12, head="direct"), plain) == "direct"


def test_a_column_named_like_an_internal_one_is_refused_in_one_line(tmp_path):
    """Found by tests/test_fuzz_inputs.py: a long CSV with an 'id' column beside the default
    --id-col series_id crashed in pandas ('column label id is not unique')."""
    p = tmp_path / "s.csv"
    p.write_text("id,timestamp,value\na,2000-01-01,1\na,2000-02-01,2\na,2000-03-01,3\n")
    with pytest.raises(UserError, match="column 'id' is not the --id-col"):
        load_series(p)
    assert load_series(p, id_col="id").ids == ["a"]
