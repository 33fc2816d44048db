"""``rnnkit adding``: train and evaluate on the adding problem (the backbone's own small task).

Mounted like any application (``rnnkit.cli.register_app``); imports Lightning only inside commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from rnnkit.cli_options import ConfigFile, InitFrom, NewRunDir, Quiet, ResumeDir, SetOptions, training_flags
from rnnkit.errors import UserError
from rnnkit.training.cli_support import parse_set
from rnnkit.validation import check_mapping, opt

app = typer.Typer(help="The adding problem: a small real task that exercises the training backbone.",
                  no_args_is_help=True)

TRAIN = "Training"
TASK = "Task"


@app.command()
@training_flags()
def train(
    out: NewRunDir = None,
    config: ConfigFile = None,
    resume: ResumeDir = None,
    init_from: InitFrom = None,
    seq_len: Annotated[int | None, typer.Option(help="sequence length T", rich_help_panel=TASK)] = None,
    cell: Annotated[str | None, typer.Option(help="lstm | gru | rnn_tanh | ...", rich_help_panel=TASK)] = None,
    hidden: Annotated[int | None, typer.Option(rich_help_panel=TASK)] = None,
    num_layers: Annotated[int | None, typer.Option(rich_help_panel=TASK)] = None,
    train_size: Annotated[int | None, typer.Option(rich_help_panel=TASK)] = None,
    val_size: Annotated[int | None, typer.Option(rich_help_panel=TASK)] = None,
    clip_value: Annotated[float | None, typer.Option(rich_help_panel=TRAIN)] = None,
    tbptt: Annotated[int | None, typer.Option(help="truncated BPTT: cut gradients every k steps",
                                              rich_help_panel=TRAIN)] = None,
    nan_policy: Annotated[str | None, typer.Option(help="stop | skip", rich_help_panel=TRAIN)] = None,
    quiet: Quiet = False,
    set_: SetOptions = None,
    training: dict | None = None,
) -> None:
    """Train a recurrent regressor on the adding problem into a run directory."""
    from rnnkit.apps.adding.task import AddingConfig
    from rnnkit.training.cli_support import print_result, resolve_run

    if (out is None) == (resume is None):
        raise UserError("give exactly one of --out DIR (a new run) or --resume RUN_DIR")
    flags = {
        "seq_len": seq_len, "cell": cell, "hidden": hidden, "num_layers": num_layers,
        "train_size": train_size, "val_size": val_size, "clip_value": clip_value, "tbptt_steps": tbptt,
        "nan_policy": nan_policy, **(training or {}), "quiet": True if quiet else None, **parse_set(set_),
    }
    cfg, data = resolve_run(AddingConfig, flags, config, resume)
    run_dir = resume if resume is not None else out
    metrics = run_adding(cfg, data.validate(), run_dir, resume=resume is not None, init_from=init_from)
    print_result(run_dir, metrics, cfg.quiet)


def run_adding(cfg, data, run_dir: Path, resume: bool = False, init_from: Path | None = None) -> dict:
    """Build and train the adding task (used by the CLI and the tests)."""
    from rnnkit.apps.adding.task import AddingRegressor, AddingTask
    from rnnkit.io.size_limits import check_size
    from rnnkit.training.config import as_dict
    from rnnkit.training.runner import fit, seed_everything

    check_size(data.hidden, data.num_layers, input_size=2, seq_len=data.seq_len, batch=cfg.batch_size)
    seed_everything(cfg.seed)
    model = AddingRegressor(data.cell, data.hidden, data.num_layers)
    task = AddingTask(model, cfg, data)
    return fit(task, run_dir, {"app": "adding", "task": as_dict(data)}, resume=resume, init_from=init_from)


@dataclass
class EvaluateOptions:
    """``rnnkit adding evaluate``'s options, checked like every other (rnnkit.validation)."""

    size: int = opt(1024, min=1, max=1_000_000, help="number of fresh test sequences")
    seed: int = opt(99, min=0)


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="a run directory")],
    size: Annotated[int, typer.Option(help="number of fresh test sequences")] = 1024,
    seed: Annotated[int, typer.Option(help="test data seed")] = 99,
) -> None:
    """MSE of a trained run on fresh adding sequences (loaded with rnnkit.load: no pickle)."""
    import torch

    import rnnkit
    from rnnkit.tasks.adding import ADDING_BASELINE_MSE, adding_batch
    from rnnkit.validation.run_config import read_run_config

    check_mapping(EvaluateOptions, {"size": size, "seed": seed}, "the command line")
    model = rnnkit.load(run_dir)  # the model's own files first: their errors name them
    T = read_run_config(run_dir, "adding")["task"].get("seq_len", 50)
    x, y = adding_batch(T, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        mse = float(torch.mean((model(x) - y) ** 2))
    typer.echo(f"test MSE {mse:.5f} on {size} fresh sequences of T={T} (baseline 1/6 = {ADDING_BASELINE_MSE:.4f})")


def diagnose_inputs(run_dir: Path, model, config: dict, data: Path | None, size: int):
    """For ``rnnkit diagnose RUN_DIR``: fresh adding sequences at the run's length (no data file)."""
    import torch

    from rnnkit.tasks.adding import adding_batch

    if data is not None:
        raise UserError("the adding task draws its own sequences: diagnose it without --data")
    T = config["task"].get("seq_len", 50)  # config.json was checked by diagnose (read_run_config)
    x, y = adding_batch(T, size, generator=torch.Generator().manual_seed(7))
    return x, lambda pred: torch.mean((pred - y) ** 2)
