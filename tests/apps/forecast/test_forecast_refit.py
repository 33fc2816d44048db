"""The refit on every window after model selection and calibration on held-out windows (pipeline.refit_model)."""

import json

import numpy as np
import torch
from test_forecast_short import QUICK, yearly_csv

from rnnkit.apps.forecast.data import Series
from rnnkit.apps.forecast.pipeline import ForecastConfig, resolve_refit
from rnnkit.cli import main


def _collection(lengths: list[int]) -> Series:
    vals = [np.linspace(1.0, 2.0, n) + 5 for n in lengths]
    ts = [np.arange(n) for n in lengths]
    return Series([f"s{i}" for i in range(len(lengths))], vals, ts, ts,
                  [np.zeros((n, 0)) for n in lengths], [np.zeros((n, 0)) for n in lengths])


def test_refit_follows_the_held_out_windows():
    assert resolve_refit(ForecastConfig(horizon=6), held_out=True) == (
        True, "refit auto: trained again on every window, the held-out ones included")
    assert not resolve_refit(ForecastConfig(horizon=6), held_out=False)[0]  # nothing held out: nothing to add
    assert not resolve_refit(ForecastConfig(horizon=6, refit="never"), held_out=True)[0]
    assert resolve_refit(ForecastConfig(horizon=6, refit="always"), held_out=True)[0]
    assert not resolve_refit(ForecastConfig(horizon=6, refit="always"), held_out=False)[0]


def test_refit_trains_on_the_validation_windows_and_is_calibrated(tmp_path):
    path = yearly_csv(tmp_path, {f"s{i}": 18 + i for i in range(12)})
    runs = {}
    for refit in ("always", "never"):
        out = tmp_path / refit
        code = main(["forecast", "train", "--out", str(out), "--data", str(path), "--horizon", "6", "--seed", "3",
                     "--set", f"refit={refit}", "--set", "ensemble=2", *QUICK])
        assert code == 0
        runs[refit] = out
    on = json.loads((runs["always"] / "config.json").read_text())["data_info"]
    assert on["val_held_out"] and on["refit_rule"] == "refit=always (given)"
    report = json.loads((runs["always"] / "evaluation.json").read_text())
    assert report["model"]["refit"] == "refit=always (given)"
    text = (runs["always"] / "evaluation.md").read_text()
    assert "refit=always (given)" in text and "matched in width to the held-out model's" in text
    assert "Intervals calibrated on held-out" in (runs["never"] / "evaluation.md").read_text()

    from rnnkit.io.saving import load_weights

    w_on, w_off = (load_weights(runs[r] / "model.safetensors") for r in ("always", "never"))
    assert w_on.keys() == w_off.keys()
    assert not (w_off["calib"] == 1).all() and not (w_on["calib"] == 1).all()  # both calibrated
    assert not torch.equal(w_on["calib"], w_off["calib"])  # the refit's own: matched widths
    assert any(not torch.equal(w_on[k], w_off[k]) for k in w_on if k != "calib")  # other weights: retrained
    assert list(runs["always"].iterdir())  # nothing of the refit's scratch run left in the run directory
    assert not any(p.name.startswith("rnnkit-refit") for p in runs["always"].rglob("*"))


def test_members_keep_their_own_selected_epoch():
    """keep_epochs: member i's weights are those at the end of epoch keep_epochs[i] of the same run."""
    import lightning  # noqa: F401  (the trainer the task runs in)

    from rnnkit.apps.forecast.pipeline import build_model, training_windows
    from rnnkit.apps.forecast.task import ForecastTask
    from rnnkit.training.config import TrainConfig
    from rnnkit.training.runner import fit, seed_everything

    data = _collection([24] * 6)
    cfg = ForecastConfig(horizon=4, ensemble=2, hidden=8, head="direct", scaling="window", validation="last")
    train, val, _ = training_windows(cfg, data, 8, 1, 0)

    def run(tmp, epochs, keep):
        seed_everything(0)
        model = build_model(cfg, data, train, 8)
        task = ForecastTask(model, TrainConfig(max_epochs=epochs, batch_size=16, quiet=True, threads=1), train, val,
                            keep_epochs=keep)
        fit(task, tmp, {})
        return [m.state_dict() for m in model.nets]

    import tempfile

    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        kept = run(a + "/r", 3, [0, 2])
        after_one = run(b + "/r", 1, None)
    for k, v in kept[0].items():
        torch.testing.assert_close(v, after_one[0][k])  # member 0 stopped after epoch 0
    assert any(not torch.equal(v, after_one[1][k]) for k, v in kept[1].items())  # member 1 went on


def test_matched_widths_make_intervals_as_wide_as_the_target():
    from rnnkit.apps.forecast import calibration

    g = torch.Generator().manual_seed(0)
    B, n, H = 40, 400, 3
    point = torch.randn(B, 1, H, generator=g)
    samples = point + torch.randn(B, n, H, generator=g)
    target = point + torch.randn(B, n, H, generator=g) * torch.tensor([1.0, 2.0, 3.0])
    factors = calibration.match_widths(samples, target)
    assert factors.shape == (H, 2)
    torch.testing.assert_close(factors[:, 0], torch.tensor([1.0, 2.0, 3.0]), rtol=0.1, atol=0)
    widened = calibration.apply(point[:, 0], samples, factors)
    for level in calibration.LEVELS:
        got = calibration._width(widened, level).median(0).values
        want = calibration._width(target, level).median(0).values
        torch.testing.assert_close(got, want, rtol=0.1, atol=0)
    # few windows: one pair of factors for every step
    few = calibration.match_widths(samples[:5], target[:5])
    assert (few == few[0]).all()


def test_the_refit_runs_under_torchrun(tmp_path):
    """The default command (selection, calibration, refit) under torchrun on a small collection. Two
    processes each validate half of the windows and must select the same epochs (ForecastTask sums the
    members' losses over the processes), or the refit's trainings differ in length and the gradient
    all-reduce waits forever (a review reproduced that: rank 0 chose epoch 7, rank 1 epoch 11; on this
    data the ranks happen to agree either way). The small-data batch size is a multiple of the
    processes (it was 33: an error under torchrun)."""
    import subprocess

    from _training_helpers import PY, env

    path = yearly_csv(tmp_path, {f"s{i}": 30 for i in range(24)})
    out = tmp_path / "ddp"
    cmd = [PY, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc-per-node", "2",
           "-m", "rnnkit.cli", "forecast", "train", "--out", str(out), "--data", str(path), "--horizon", "4",
           "--epochs", "12", "--hidden", "8", "--ensemble", "1", "--combine-with", "none", "--baselines", "naive",
           "--threads", "1", "-q", "--set", "n_samples=40"]
    res = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads((out / "evaluation.json").read_text())
    assert report["model"]["refit"].startswith("refit auto")
