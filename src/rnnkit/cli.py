"""The ``rnnkit`` command: ``info``, ``demo``, ``diagnose`` and every application's sub-command.

Mounting an application
-----------------------
An application provides a module with ``app = typer.Typer(help=...)`` (its ``train``/``evaluate``/
``predict``/... commands) and, optionally, ``demo(out_dir: Path, quick: bool) -> list[str]`` (its
part of ``rnnkit demo``: it writes into ``out_dir`` and returns summary lines). It is mounted as
``rnnkit <name>`` by any of:

- living at ``rnnkit/apps/<name>/cli.py`` (discovered automatically),
- :func:`register_app("<name>", "package.module:app")` before :func:`main` runs,
- an entry point in the ``rnnkit.apps`` group (``<name> = "package.module:app"``) for packages
  outside rnnkit.

CLI modules must import heavy things (Lightning, data libraries) inside their commands: every app
module is imported to build ``rnnkit --help``. An app that fails to import is listed with the reason
instead of breaking the command.

Errors: :class:`rnnkit.errors.UserError` (and bad options, missing files) print one line on stderr
and exit 2; ``RNNKIT_DEBUG=1`` shows the traceback. Anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from rnnkit.deploy.cli import export_command
from rnnkit.errors import UserError
from rnnkit.validation.boundary import one_line, user_message
from rnnkit.validation.schema import opt

#: name -> ("module:attribute" or a Typer app, help text); the built-in ones first
_APPS: dict[str, tuple[Any, str | None]] = {
    "adding": ("rnnkit.apps.adding.cli:app", None),
}
_DEMOS: dict[str, Callable[[Path, bool], list[str]]] = {}


def register_app(name: str, app: typer.Typer | str, help: str | None = None) -> None:
    """Mount ``app`` (a Typer app or ``"module:attribute"``) as ``rnnkit <name>``."""
    _APPS[name] = (app, help)


def register_demo(name: str, fn: Callable[[Path, bool], list[str]]) -> None:
    """Add ``fn(out_dir, quick) -> summary lines`` to ``rnnkit demo``."""
    _DEMOS[name] = fn


def _discover() -> None:
    try:
        import rnnkit.apps as apps_pkg  # type: ignore[import-not-found]
    except ImportError:
        apps_pkg = None
    if apps_pkg is not None:
        for info in pkgutil.iter_modules(apps_pkg.__path__):
            if (info.ispkg and info.name not in _APPS
                    and importlib.util.find_spec(f"rnnkit.apps.{info.name}.cli") is not None):
                _APPS[info.name] = (f"rnnkit.apps.{info.name}.cli:app", None)
    try:
        from importlib.metadata import entry_points

        for ep in entry_points(group="rnnkit.apps"):
            _APPS.setdefault(ep.name, (ep.value, None))
    except Exception:  # a broken distribution's metadata must not break the command
        pass


def _resolve(target: Any) -> tuple[typer.Typer | None, Any, str | None]:
    """(Typer app, its module or None, why it is unavailable)."""
    if not isinstance(target, str):
        return target, None, None
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr or "app"), module, None
    except Exception as exc:  # an optional dependency missing: show it, keep the command working
        return None, None, f"{type(exc).__name__}: {exc}"


def _unavailable(name: str, why: str) -> typer.Typer:
    sub = typer.Typer(help=f"(unavailable: {why})")

    @sub.callback(invoke_without_command=True)
    def _fail() -> None:
        raise UserError(f"rnnkit {name} is unavailable: {why}")

    return sub


def _version(value: bool) -> None:
    if value:
        import rnnkit

        typer.echo(f"rnnkit {rnnkit.__version__}")
        raise typer.Exit(0)


def build_app() -> typer.Typer:
    """The root Typer app with every sub-command mounted."""
    root = typer.Typer(
        name="rnnkit",
        help="rnnkit: recurrent neural networks for PyTorch. Train, evaluate and inspect sequence models.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @root.callback()
    def _root(
        version: Annotated[bool, typer.Option("--version", help="print the version and exit", is_eager=True,
                                              callback=_version, expose_value=True)] = False,
    ) -> None:
        """rnnkit: recurrent neural networks for PyTorch. Train, evaluate and inspect sequence models."""

    root.command("info")(info)
    root.command("demo")(demo)
    root.command("diagnose")(diagnose)
    root.command("export")(export_command)
    bench = typer.Typer(help="Benchmarks that ship with rnnkit.", no_args_is_help=True)
    bench.command("memory", context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                              "help_option_names": []}, add_help_option=False)(bench_memory)
    root.add_typer(bench, name="bench")
    _discover()
    for name, (target, help_text) in _APPS.items():
        sub, module, why = _resolve(target)
        if sub is None:
            root.add_typer(_unavailable(name, why or "unknown"), name=name)
            continue
        if help_text is None:
            root.add_typer(sub, name=name)
        else:
            root.add_typer(sub, name=name, help=help_text)
        if module is not None and callable(getattr(module, "demo", None)):
            _DEMOS.setdefault(name, module.demo)
    return root


# ---- info ------------------------------------------------------------------------------------
def executor_report() -> list[tuple[str, str]]:
    """(executor, "available" or why not) for a CPU float32 plain LSTM, in auto's order."""
    import torch

    from rnnkit.cells.registry import make_cell
    from rnnkit.executors.base import RunRequest
    from rnnkit.executors.dispatch import backend_names, get_executor

    cell = make_cell("lstm", 16, 16, True)
    request = RunRequest(torch.device("cpu"), torch.float32)
    rows = []
    for name in backend_names():
        reason = get_executor(name).supports(cell, request)
        rows.append((name, "available" if reason is None else reason))
    return rows


def extension_report() -> list[tuple[str, str]]:
    from rnnkit._ext import extension_names, load_extension

    return [(name, "loaded" if mod is not None else str(why))
            for name in extension_names() for mod, why in [load_extension(name)]]


def info() -> None:
    """Versions, and which executors run on this machine (and why the others do not)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import torch
    from rich.console import Console
    from rich.table import Table

    import rnnkit

    console = Console()
    versions = Table(title="rnnkit " + rnnkit.__version__, show_header=False, box=None)
    versions.add_row("python", platform.python_version())
    for pkg in ("torch", "lightning", "numpy", "safetensors", "typer", "rich", "pyyaml", "tensorboard", "matplotlib"):
        try:
            versions.add_row(pkg, version(pkg))
        except PackageNotFoundError:
            versions.add_row(pkg, "not installed")
    versions.add_row("cpu threads", str(torch.get_num_threads()))
    versions.add_row("cuda", torch.version.cuda + (" (GPU available)" if torch.cuda.is_available() else " (no GPU)")
                     if torch.version.cuda else "not built with CUDA")
    console.print(versions)
    execs = Table(title="executors for a CPU float32 LSTM (auto's order of preference)")
    execs.add_column("executor")
    execs.add_column("status")
    for name, status in executor_report():
        execs.add_row(name, f"[green]{status}[/]" if status == "available" else status)
    console.print(execs)
    exts = extension_report()
    if exts:
        table = Table(title="C++ extensions")
        table.add_column("extension")
        table.add_column("status")
        for name, status in exts:
            table.add_row(name, f"[green]{status}[/]" if status == "loaded" else status)
        console.print(table)
    console.print("apps: " + ", ".join(sorted(_APPS)))


# ---- bench ---------------------------------------------------------------------------------
def bench_memory(ctx: typer.Context) -> None:
    """Long-range memory tasks (adding, copy memory, selective copy) per cell; --help for the options."""
    from rnnkit.apps.memory.tasks import main as run

    try:
        run(list(ctx.args), prog="rnnkit bench memory")
    except SystemExit:  # argparse's --help, printed already (its errors are UserErrors with prog set)
        return


# ---- diagnose --------------------------------------------------------------------------------
@dataclass
class DiagnoseOptions:
    size: int = opt(64, min=1, max=100_000, help="sequences to diagnose")


def diagnose(
    target: Annotated[str, typer.Argument(help="a run directory, or `demo` for the built-in tour")],
    out: Annotated[Path | None, typer.Option(help="where summary, jsonl and plots go "
                                                   "(default: RUN_DIR/diagnostics)")] = None,
    data: Annotated[Path | None, typer.Option(help="data file for the run's app (see the app's docs)")] = None,
    size: Annotated[int, typer.Option(help="sequences to diagnose")] = 64,
    quick: Annotated[bool, typer.Option("--quick", help="demo: seconds instead of a minute")] = False,
) -> None:
    """Gradient-flow diagnostics (docs/diagnostics.md).

    `rnnkit diagnose demo --out DIR`: Elman vs LSTM vs GRU on the adding problem.
    `rnnkit diagnose RUN_DIR [--data FILE]`: gradient flow, memory horizon, gate saturation and
    spectra of a trained model, on data its app prepares."""
    if target == "demo":
        from rnnkit.diagnostics import run_demo

        if out is None:
            raise UserError("rnnkit diagnose demo needs --out DIR")
        run_demo(out, quick)
        return
    for line in diagnose_run(Path(target), out, data, size):
        typer.echo(line)


def diagnose_run(run_dir: Path, out: Path | None, data: Path | None, size: int) -> list[str]:
    """Diagnose a trained run: its app's ``diagnose_inputs(run_dir, model, config, data, size)``
    gives the input and the loss (and optionally the module to call on the input); the recorder
    writes jsonl and plots; returns summary lines."""
    import rnnkit
    from rnnkit.diagnostics.recorder import GradientFlowRecorder
    from rnnkit.validation import check_mapping
    from rnnkit.validation.run_config import read_run_config

    check_mapping(DiagnoseOptions, {"size": size}, "the command line")
    config = read_run_config(run_dir)
    app_name = config["app"]
    if app_name not in _APPS:
        raise UserError(f"{run_dir}: config.json names no known app ({str(app_name)[:60]!r})")
    model = rnnkit.load(run_dir)
    _, module, why = _resolve(_APPS[app_name][0])
    provide = getattr(module, "diagnose_inputs", None)
    if provide is None:
        raise UserError(f"the {app_name} app cannot be diagnosed yet" + (f" ({why})" if why else ""))
    provided = provide(run_dir, model, config, data, size)
    x, loss_of_output = provided[:2]
    if len(provided) > 2:  # the module to call on x (e.g. the model with its other inputs bound)
        model = provided[2]
        size = int(getattr(model, "sequences", size))  # it may diagnose fewer than asked (a small file)
    if out is None:  # never through a link the (untrusted) run directory holds
        from rnnkit.io.confine import inside_run_dir

        out = inside_run_dir(run_dir, "diagnostics")
    recorder = GradientFlowRecorder(1, out, loss_fn=lambda output, _batch: loss_of_output(output))
    record = recorder.on_train_step(model, (x,), 0)
    assert record is not None
    lines = [f"diagnostics of {run_dir} ({app_name}) on {size} sequences -> {out}"]
    for layer, per_direction in enumerate(record["gradient_flow"]["ratio"]):
        for direction, ratio in enumerate(per_direction):
            lines.append(f"  layer {layer} dir {direction}: |dL/dh_first| / |dL/dh_last| = {ratio:.3g}")
    if record.get("influence") is not None:
        inf = record["influence"]
        reached = "" if inf["horizon_reached"] else " (at least: the whole sequence)"
        lines.append(f"  memory horizon: {inf['horizon']} steps{reached}")
    for b in record["spectrum"]:
        lines.append(f"  layer {b['layer']} dir {b['direction']} W_hh[{b['gate']}]: spectral radius "
                     f"{b['spectral_radius']:.3g}, top singular value {b['singular_values'][0]:.3g}")
    lines.append(f"  plots: {', '.join(record.get('plots', []))}")
    return lines


# ---- demo ------------------------------------------------------------------------------------
def demo(
    out: Annotated[Path, typer.Option(help="run directory for the demo's plots and files")] = Path("runs/demo"),
    quick: Annotated[bool, typer.Option("--quick", help="a few seconds per part (for tests)")] = False,
) -> None:
    """A few-minute tour: why gated cells exist, gradient flow made visible, and each app's part."""
    from rich.console import Console

    console = Console()
    out.mkdir(parents=True, exist_ok=True)
    summary: list[tuple[str, list[str]]] = []
    started = time.perf_counter()
    parts: list[tuple[str, Callable[[Path, bool], list[str]]]] = [
        ("cells", _demo_cells), ("diagnostics", _demo_diagnostics), ("training", _demo_training),
        *sorted(_DEMOS.items()),
    ]
    for name, fn in parts:
        console.rule(f"[bold]rnnkit demo: {name}")
        t0 = time.perf_counter()
        lines = fn(out / name, quick)
        summary.append((f"{name} ({time.perf_counter() - t0:.0f} s, files in {out / name})", lines))
    console.rule("[bold]rnnkit demo: summary")
    for title, lines in summary:
        console.print(f"[bold]{title}[/]")
        for line in lines:
            console.print(f"  - {line}")
    console.print(f"done in {time.perf_counter() - started:.0f} s; everything is in {out}")


def _demo_cells(out: Path, quick: bool) -> list[str]:
    """rnnkit.demo: Elman vs LSTM vs GRU on the adding problem (and a plot of the curves)."""
    from rnnkit import demo as core
    from rnnkit.io.atomic import save_figure_atomic, write_json_atomic

    argv = ["--quick"] if quick else []  # the full demo: rnnkit.demo's fixed step budget, seed 0
    cfg = core.parse_args(argv)
    results: list[Any] = []
    run = core.run

    def run_and_keep(c):  # rnnkit.demo.main prints its report; keep its results for the plot
        results.extend(run(c))
        return results

    core.run = run_and_keep
    try:
        core.main(argv)
    finally:
        core.run = run
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "results.json", {r.spec.label: {"executor": r.executor, "steps": r.steps,
                                                            "curve": r.curve, "beats_baseline": r.beats_baseline}
                                             for r in results})
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        ax.plot(*zip(*r.curve, strict=True), label=r.spec.label)
    ax.axhline(1 / 6, ls="--", c="gray", label="baseline 1/6")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out MSE")
    ax.set_title(f"adding problem, T={cfg.seq_len}")
    ax.legend()
    save_figure_atomic(fig, out / "adding_curves.png")
    plt.close(fig)
    won = [r.spec.label for r in results if r.beats_baseline]
    lost = [r.spec.label for r in results if not r.beats_baseline]
    return [f"adding problem, T={cfg.seq_len}: beat the 1/6 baseline: {', '.join(won) or 'none'}; "
            f"stayed at it: {', '.join(lost) or 'none'}" + (" (quick mode: too short to mean much)" if quick else ""),
            f"learning curves: {out / 'adding_curves.png'}"]


def _demo_diagnostics(out: Path, quick: bool) -> list[str]:
    from rnnkit.diagnostics import run_demo

    res = run_demo(out, quick=True)
    init = res.get("init", {})
    ratios = ", ".join(f"{k} {v.get('grad_ratio', float('nan')):.2g}" for k, v in init.items()
                       if isinstance(v, dict) and isinstance(v.get("grad_ratio"), float))
    lines = [f"gradient surviving {res['T']} steps at initialisation, |dL/dh_0|/|dL/dh_T|: {ratios}"
             if ratios else f"gradient-flow tables for T={res['T']}",
             f"{len(res.get('plots', []))} plots (gradient flow, input influence, gate saturation) in {out}"]
    return lines


def _demo_training(out: Path, quick: bool) -> list[str]:
    """The backbone: a short run into a run directory, then rnnkit.load."""
    import shutil

    import rnnkit
    from rnnkit.apps.adding.cli import run_adding
    from rnnkit.apps.adding.task import AddingConfig
    from rnnkit.training.config import TrainConfig

    shutil.rmtree(out, ignore_errors=True)
    # one thread: these tensors are small, and two threads spin at barriers when the cores are busy
    cfg = TrainConfig(max_epochs=2 if quick else 12, batch_size=64, lr=1e-2, clip_norm=1.0, quiet=True, threads=1)
    data = AddingConfig(seq_len=20, hidden=32, train_size=256 if quick else 2048, val_size=256)
    print(f"training an LSTM on the adding problem (T={data.seq_len}) for {cfg.max_epochs} epochs into {out} ...")
    metrics = run_adding(cfg, data, out)
    model = rnnkit.load(out)
    n = sum(p.numel() for p in model.parameters())
    files = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    return [f"trained {metrics['epochs_completed']} epochs ({metrics['global_step']} steps): validation MSE "
            f"{metrics['val_loss']:.4f} (baseline 0.1667) in {metrics['train_seconds']:.0f} s",
            f"run directory {out}: {', '.join(files)}",
            f"rnnkit.load({str(out)!r}) rebuilt {type(model).__name__} ({n:,} parameters) from config.json + "
            "model.safetensors, no pickle; resume with `rnnkit adding train --resume DIR`"]


# ---- entry point -----------------------------------------------------------------------------
def _error(message: str) -> int:
    sys.stderr.write(f"rnnkit: error: {one_line(message)}\n")
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 user error, 1 a bug's traceback)."""
    try:
        from typer._click.exceptions import ClickException, UsageError
    except ImportError:  # typer on top of click (before it vendored click)
        from click.exceptions import ClickException, UsageError  # type: ignore[no-redef]

    debug = bool(os.environ.get("RNNKIT_DEBUG"))
    args = list(sys.argv[1:] if argv is None else argv)
    command = typer.main.get_command(build_app())
    try:
        result = command.main(args=args, prog_name="rnnkit", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `rnnkit` alone, `rnnkit adding`: the help
            typer.echo(exc.format_message())
            return 0
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "rnnkit"
        return _error(f"{exc.format_message()} (see `{where} --help`)")
    except ClickException as exc:
        return _error(exc.format_message())
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("rnnkit: interrupted\n")
        return 130
    except Exception as exc:  # the one boundary for every command (rnnkit.validation.boundary)
        message = user_message(exc)
        if message is None or debug:
            raise
        return _error(message)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
