"""``rnnkit classify``: train, evaluate and predict sequence classifiers on long CSV or ``.ts`` files.

Heavy imports (pandas, Lightning, matplotlib) happen inside the commands.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from rnnkit.cli_options import ConfigFile, NewRunDir, Quiet, ResumeDir, SetOptions, training_flags
from rnnkit.errors import UserError
from rnnkit.training.cli_support import command_flags

app = typer.Typer(help="Sequence classification: recurrent, LSTM-FCN / MLSTM-FCN and Transformer classifiers "
                       "on long CSV or .ts files, beside a 1-NN DTW or MiniRocket baseline, with reports and plots.",
                  no_args_is_help=True)

DATA, MODEL, TRAIN = "Data", "Model", "Training"
EXAMPLE = "shapes"
#: training defaults for classification (TrainConfig's are for the generic backbone)
TRAIN_DEFAULTS = {"max_epochs": 150, "batch_size": 16, "lr": 1e-3, "clip_norm": 1.0, "tensorboard": False,
                  "threads": 1, "early_stopping_patience": 30}


def example_csv(out_dir: Path) -> Path:
    """The synthetic example set (``synthetic.py``) as a long CSV inside ``out_dir``."""
    from .synthetic import write_example

    return write_example(Path(out_dir) / f"{EXAMPLE}.csv")


def _flags(**kw) -> dict[str, object]:
    return command_flags(kw)


def _command() -> str:
    return "rnnkit " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else ""


def _setup_resume(run_dir: Path, data: Path | None, example: bool, config: Path | None, flags: dict):
    """(TrainConfig, ClassifyConfig, the data file to read) of ``--resume RUN_DIR``: the run's
    config.json below the config file and the flags. Reads only: nothing in the run directory changes
    before the checkpoint has loaded (runner.fit). The training file is config.json's when it lies
    inside the run directory, else the one named with --data (a run directory is untrusted input:
    rnnkit reads an outside file only when the user names it); the pipeline checks that it is the file
    the run was trained on."""
    from rnnkit.io.confine import config_path
    from rnnkit.io.saving import read_app_config
    from rnnkit.training.cli_support import resolve_run

    from .options import ClassifyConfig

    if example:
        raise UserError("--example starts a new run; --resume continues the run's own data")
    if not (run_dir / "config.json").exists():
        raise UserError(f"{run_dir} has no config.json: nothing to resume; start it with --out {run_dir}")
    read_app_config(run_dir, "classify")  # another app's run: one line, before its options are read
    tcfg, ccfg = resolve_run(ClassifyConfig, flags, config, run_dir)
    path = data if data is not None else config_path(run_dir, ccfg.data, "task.data", "--data FILE")
    return tcfg.validate(), ccfg.validate(), Path(path)


def _setup(out: Path, data: Path | None, example: bool, config: Path | None, flags: dict):
    from rnnkit.io.confine import recorded_path
    from rnnkit.training.cli_support import resolve_run
    from rnnkit.training.config import read_config_file
    from rnnkit.training.runner import refuse_existing_run

    from .options import ClassifyConfig  # the class with its options declared (rnnkit.validation)

    if data is not None and example:
        raise UserError("give --data FILE or --example, not both")
    refuse_existing_run(out)
    given = set(read_config_file(config)) if config else set()
    if data is not None:
        flags["data"] = str(data)
    for key, value in TRAIN_DEFAULTS.items():  # the app's defaults, below the config file and the flags
        if flags.get(key) is None and key not in given:
            flags[key] = value
    tcfg, ccfg = resolve_run(ClassifyConfig, flags, config)
    if example:  # recorded relative to the run directory: a copied run still finds it
        ccfg.data = recorded_path(example_csv(out / "data"), out)
    if not ccfg.data:
        raise UserError(f"no data: give --data FILE (a long CSV or a .ts file), or --example for the "
                        f"synthetic {EXAMPLE} set")
    path = Path(ccfg.data) if not example else out / ccfg.data
    return tcfg.validate(), ccfg.validate(), path


@app.command()
@training_flags(TRAIN_DEFAULTS)
def train(
    out: NewRunDir = None,
    resume: ResumeDir = None,
    data: Annotated[Path | None, typer.Option(help="long CSV (case_id,split,label,t,dim_0,...; its train split) or "
                                                   "a .ts file (every case)", rich_help_panel=DATA)] = None,
    example: Annotated[bool, typer.Option("--example", help="use the synthetic example set (3 classes, 2 dims, "
                                                            "variable length) instead of --data",
                                          rich_help_panel=DATA)] = False,
    config: ConfigFile = None,
    missing: Annotated[str | None, typer.Option(help="interpolate | error: missing values",
                                                rich_help_panel=DATA)] = None,
    val_fraction: Annotated[float | None, typer.Option(help="share of each class held out for validation (0: none, "
                                                                 "the training cases judge the best epoch)",
                                                       rich_help_panel=DATA)] = None,
    arch: Annotated[str | None, typer.Option(help="lstm_fcn | mlstm_fcn | conv_rnn | rnn | transformer",
                                             rich_help_panel=MODEL)] = None,
    cell: Annotated[str | None, typer.Option(help="lstm | gru | mingru | ... (rnnkit.cells.cell_names())",
                                             rich_help_panel=MODEL)] = None,
    hidden: Annotated[int | None, typer.Option(rich_help_panel=MODEL)] = None,
    num_layers: Annotated[int | None, typer.Option(rich_help_panel=MODEL)] = None,
    bidirectional: Annotated[bool | None, typer.Option("--bidirectional/--unidirectional",
                                                       rich_help_panel=MODEL)] = None,
    pooling: Annotated[str | None, typer.Option(help="last | mean | max | attention", rich_help_panel=MODEL)] = None,
    dropout: Annotated[float | None, typer.Option(rich_help_panel=MODEL)] = None,
    class_weights: Annotated[str | None, typer.Option(help="none | balanced", rich_help_panel=TRAIN)] = None,
    quiet: Quiet = False,
    set_: SetOptions = None,
    training: dict | None = None,
) -> None:
    """Train on the training cases (a stratified validation split held out, or none with --val-fraction 0),
    report validation scores beside the baseline (1-NN DTW, or MiniRocket + ridge with --set
    baseline=minirocket)."""
    if (out is None) == (resume is None):
        raise UserError("give exactly one of --out DIR (a new run) or --resume RUN_DIR")
    flags = _flags(**{k: v for k, v in locals().items()
                      if k not in ("out", "resume", "data", "example", "config")})
    if resume is not None:
        tcfg, ccfg, path = _setup_resume(resume, data, example, config, flags)
        run_train(tcfg, ccfg, resume, _command(), resume=True, data_path=path)
    else:
        tcfg, ccfg, path = _setup(out, data, example, config, flags)
        run_train(tcfg, ccfg, out, _command(), data_path=path)


def run_train(tcfg, ccfg, out: Path, command: str | None = None, resume: bool = False,
              data_path: Path | None = None) -> dict:
    from rnnkit.training.runner import is_main_process

    from .pipeline import print_report, train_classifier

    report = train_classifier(tcfg, ccfg, out, command, resume=resume, data_path=data_path)
    if not is_main_process():
        return report  # DDP: the main process reports
    if not tcfg.quiet:
        t = report["training"]
        typer.echo(f"{t['status']}: {t['epochs']} epochs (best validation epoch {t['best_epoch']}) in "
                   f"{t['seconds']:.1f} s, {t['parameters']:,} parameters, batch {t['batch_size']}")
        print_report(report)
        typer.echo(f"run directory: {out} (report validation.md, validation_confusion.png, "
                   "validation_predictions.csv); next: rnnkit classify evaluate " + shlex.quote(str(out)))
    return report


def _run_task(run_dir: Path, data: Path | None):
    """(task options, data file) of a classify run; the data file is ``data`` when given, else
    config.json's, which must lie inside the run directory (docs/security.md)."""
    from rnnkit.io.confine import config_path
    from rnnkit.io.saving import read_app_config
    from rnnkit.validation.run_config import read_run_config

    from .options import ClassifyConfig

    read_app_config(run_dir, "classify")  # whose run it is, before its options are checked
    saved = read_run_config(run_dir, "classify")  # every key typed and range-checked (the schema)
    ccfg = ClassifyConfig(**saved["task"]).validate()
    path = data if data is not None else config_path(run_dir, ccfg.data, "task.data", "--data FILE")
    return ccfg, Path(path)


def _checked_classifier(run_dir: Path, model):
    if type(model).__name__ not in ("Classifier", "ClassifierEnsemble"):
        raise UserError(f"{run_dir}/config.json: the model is not a classifier")
    return model.eval()


def _load_run(run_dir: Path, data: Path | None):
    """(model, config, data file) of a classify run (:func:`_run_task`, then the model)."""
    import rnnkit

    from . import model as _model  # noqa: F401  (registers classify.net)

    ccfg, path = _run_task(run_dir, data)
    return _checked_classifier(run_dir, rnnkit.load(run_dir)), ccfg, path


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="a run directory from `rnnkit classify train`")],
    data: Annotated[Path | None, typer.Option(help="file to score: the test split of a long CSV, or every case of a "
                                                   "file without a split column (a _TEST.ts); default: the "
                                                   "training file when it lies inside the run directory")] = None,
    baseline: Annotated[bool, typer.Option("--baseline/--no-baseline", help="score the baseline beside "
                                                                           "the model")] = True,
    quiet: Quiet = False,
) -> None:
    """Score a trained run on the test cases beside the baseline (fitted on every training case)."""
    from .pipeline import evaluate_run, print_report

    model, ccfg, path = _load_run(run_dir, data)
    report = evaluate_run(model, ccfg, Path(run_dir), path, baseline and ccfg.baseline != "none", _command())
    if not quiet:
        print_report(report)
        typer.echo(f"report: {run_dir / 'evaluation.md'}; confusion matrix: {run_dir / 'evaluation_confusion.png'}; "
                   f"predictions: {run_dir / 'evaluation_predictions.csv'}")


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="a run directory from `rnnkit classify train`")],
    output: Annotated[Path, typer.Option(help="CSV to write: case_id, predicted class, a probability per class")],
    data: Annotated[Path | None, typer.Option(help="cases to classify (every case of the file; labels optional)")]
    = None,
    quiet: Quiet = False,
) -> None:
    """Classify every case of a file; write the predicted class and the class probabilities as CSV."""
    from rnnkit.io.atomic import write_text_atomic

    from .pipeline import predict_cases

    model, ccfg, path = _load_run(run_dir, data)
    if output.exists() and output.is_dir():
        raise UserError(f"--output {output} is a directory")
    cases, text = predict_cases(model, ccfg, path)
    write_text_atomic(output, text)
    if not quiet:
        typer.echo(f"wrote {len(cases)} predictions ({len(model.classes)} classes) to {output}")


def demo(out_dir: Path, quick: bool) -> list[str]:
    """The synthetic shapes set: a small LSTM-FCN against 1-NN DTW, trained then evaluated."""
    import shutil

    from rnnkit.training.config import TrainConfig

    from .pipeline import ClassifyConfig, evaluate_run

    shutil.rmtree(out_dir, ignore_errors=True)
    path = example_csv(out_dir / "data")
    tcfg = TrainConfig(max_epochs=5 if quick else 25, batch_size=16, lr=1e-3, quiet=True, threads=1,
                       tensorboard=False, clip_norm=1.0, early_stopping_patience=15).validate()
    ccfg = ClassifyConfig(data=str(path), hidden=16, filters="32,64,32").validate()
    train_classifier_report = run_train(tcfg, ccfg, out_dir)
    model, _, _ = _load_run(out_dir, None)
    rep = evaluate_run(model, ccfg, out_dir, path, baseline=True)
    rows = ", ".join(f"{n} {v['accuracy']:.3f}" for n, v in rep["metrics"].items())
    t = train_classifier_report["training"]
    return [f"synthetic shapes (3 classes, 2 dims, 30-60 steps): test accuracy {rows} after {t['epochs']} epochs"
            + (" (quick mode: few epochs)" if quick else ""),
            f"report {out_dir / 'evaluation.md'}, confusion matrix {out_dir / 'evaluation_confusion.png'}"]


def diagnose_inputs(run_dir: Path, model, config: dict, data: Path | None, size: int):
    """For ``rnnkit diagnose RUN_DIR [--data FILE]`` (apps/classify/diagnose.py): the first ``size``
    training cases of ``FILE`` (default: the run's training file when it lies inside the run directory);
    returns (values, loss of the logits, the module to call on the values)."""
    from .diagnose import diagnose_cases

    ccfg, path = _run_task(run_dir, data)
    return diagnose_cases(run_dir, _checked_classifier(run_dir, model), ccfg, path, size)
