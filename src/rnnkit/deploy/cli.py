"""``rnnkit export RUN_DIR --format onnx [--step] [--out FILE]`` (mounted by :mod:`rnnkit.cli`).

Only typer and pathlib at import time: every command module is imported to build ``rnnkit --help``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rnnkit.errors import UserError

FORMATS = ("onnx", "pt2")
#: the check run on every CLI export: a random input of this (time, batch) through onnxruntime
CHECK_SHAPE = (5, 3)


def export_command(
    run_dir: Annotated[Path, typer.Argument(help="a run directory or an rnnkit.save directory")],
    format: Annotated[str, typer.Option("--format", help="onnx, or pt2 (a torch.export archive)")] = "onnx",
    step: Annotated[bool, typer.Option("--step", help="a single-step graph (streaming) instead of the sequence")
                    ] = False,
    out: Annotated[Path | None, typer.Option(help="output file (default RUN_DIR/model[_step].onnx or model.pt2)")
                   ] = None,
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default 17)")] = None,
    lengths: Annotated[bool, typer.Option("--lengths", help="add an int64 input `lengths` (B,) to the sequence graph")
                       ] = False,
    length: Annotated[int | None, typer.Option("--length", help="classify runs: the longest case the graph takes "
                                                "(default: the longest training case)")] = None,
) -> None:
    """Export a saved model with explicit state inputs/outputs (docs/deploy.md).

    onnx: the file is checked in onnxruntime against the model on a random input before the command
    ends. pt2: torch.export's archive, checked against the model on another length and batch size."""
    if format not in FORMATS:
        raise UserError(f"--format {format!r} is not available; choose one of: {', '.join(FORMATS)}")
    import torch

    import rnnkit

    if format == "pt2":
        _export_pt2(run_dir, out, step, lengths, opset)
        return
    from rnnkit.deploy.onnx_export import check_exportable, export_onnx

    model = rnnkit.load(run_dir)
    if _is_classifier(model):
        _export_classify(model, run_dir, out, step, lengths, opset, length)
        return
    if length is not None:
        raise UserError("--length applies to a classify run only")
    if _is_text_lm(model):
        _export_text(model, run_dir, out, step, lengths, opset)
        return
    if _is_forecaster(model):
        _export_forecast(run_dir, out, step, lengths, opset)
        return
    if _is_speech(model):
        _export_speech(model, run_dir, out, step, lengths, opset)
        return
    if _is_seq2seq(model):
        _export_translate(model, run_dir, out, step, lengths, opset)
        return
    check_exportable(model, step=step)  # before anything is written
    if step and lengths:
        raise UserError("--lengths belongs to the sequence graph, not to --step")
    target = _onnx_target(run_dir, out, step)
    T, B = CHECK_SHAPE
    g = torch.Generator().manual_seed(0)
    I = model.input_size  # type: ignore[attr-defined]
    if step:
        example = torch.randn(B, I, generator=g)
    else:
        example = torch.randn(*((B, T) if model.batch_first else (T, B)), I, generator=g)  # type: ignore[attr-defined]
    export_onnx(model, target, example_input=example, opset=opset, step=step, lengths=lengths)
    graph = "step" if step else "sequence"
    typer.echo(f"wrote {target} ({graph} graph of {type(model).__name__} {model.cell_name!r}; "  # type: ignore[attr-defined]
               f"checked in onnxruntime against the model)")


def _export_pt2(run_dir: Path, out: Path | None, step: bool, lengths: bool, opset: int | None) -> None:
    import rnnkit
    from rnnkit.deploy.pt2_export import export_pt2

    _refuse_flags({"--step": step, "--lengths": lengths, "--opset": opset is not None},
                  "applies to --format onnx, not pt2")
    model = rnnkit.load(run_dir)
    target = out if out is not None else run_dir / "model.pt2"
    if target.is_dir():
        raise UserError(f"--out {target} is a directory; give a file name")
    export_pt2(model, target)
    typer.echo(f"wrote {target} (torch.export program of {type(model).__name__} {model.cell_name!r}; "  # type: ignore[attr-defined]
               "checked against the model; `import rnnkit` before torch.export.load)")


def _is_text_lm(model: object) -> bool:
    from rnnkit.apps.text.model import RecurrentLM

    return isinstance(model, RecurrentLM)


def _is_forecaster(model: object) -> bool:
    from rnnkit.apps.forecast.ensemble import ForecastEnsemble
    from rnnkit.apps.forecast.model import Forecaster

    return isinstance(model, (Forecaster, ForecastEnsemble))


def _export_text(model, run_dir: Path, out: Path | None, step: bool, lengths: bool, opset: int | None) -> None:
    """A text run's language model: token ids in, logits and state out (deploy/text_export.py)."""
    import torch

    from rnnkit.deploy.text_export import _check_lm, export_text_lm

    _check_lm(model)
    if lengths:
        raise UserError("--lengths is not available for a text model (its sequences have no padding)")
    target = _onnx_target(run_dir, out, step)
    T, B = CHECK_SHAPE
    g = torch.Generator().manual_seed(0)
    vocab = model.embedding.num_embeddings
    ids = torch.randint(0, vocab, (B,) if step else (T, B), generator=g)
    export_text_lm(model, target, example_ids=ids, opset=opset, step=step)
    graph = "step" if step else "sequence"
    typer.echo(f"wrote {target} ({graph} graph of the text language model, cell {model.rnn.cell_name!r}; "
               "token ids in, logits out; checked in onnxruntime against the model)")


def _is_classifier(model: object) -> bool:
    from rnnkit.apps.classify.ensemble import ClassifierEnsemble
    from rnnkit.apps.classify.model import Classifier

    return isinstance(model, (Classifier, ClassifierEnsemble))


def _export_classify(model, run_dir: Path, out: Path | None, step: bool, lengths: bool, opset: int | None,
                     length: int | None) -> None:
    """A classification run: cases (padded, with their lengths) in, class log-probabilities out
    (deploy/classify_export.py)."""
    from rnnkit.deploy.classify_export import MAX_LENGTH, export_classifier

    _refuse_flags({"--step": step, "--lengths": lengths}, "does not apply to a classify run (its graph takes "
                  "`lengths` always)")
    if length is None:
        from rnnkit.io.saving import read_app_config

        info = read_app_config(run_dir, "classify").get("data_info")
        length = info.get("max_length") if isinstance(info, dict) else None
        if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= MAX_LENGTH:
            raise UserError(f"{run_dir}: the run records no valid training length (data_info.max_length); "
                            "give --length")
    target = _onnx_target(run_dir, out, False)
    typer.echo(f"tracing the classifier over {length} steps (the recurrence is unrolled; longer cases need "
               "a file made with a larger --length) ...")
    export_classifier(model.eval(), target, length, opset=opset)
    typer.echo(f"wrote {target} (inputs x (batch, {length}, dims) and lengths; output logprobs over "
               f"{len(model.classes)} classes; checked in onnxruntime against the model)")


def _is_seq2seq(model: object) -> bool:
    from rnnkit.layers.seq2seq import Seq2Seq
    from rnnkit.layers.seq2seq_transformer import TransformerSeq2Seq

    if isinstance(model, TransformerSeq2Seq):
        raise UserError("the translation Transformer baseline is not exported (only the recurrent Seq2Seq)")
    return isinstance(model, Seq2Seq)


def _export_translate(model, run_dir: Path, out: Path | None, step: bool, lengths: bool, opset: int | None) -> None:
    """A translation run: an encoder graph and a decoder step graph (deploy/translate_export.py)."""
    from rnnkit.deploy.translate_export import check_seq2seq, export_paths, export_seq2seq

    _refuse_flags({"--step": step, "--lengths": lengths}, "does not apply to a translation run (it exports an "
                  "encoder graph with lengths and a decoder step graph)")
    check_seq2seq(model)
    _require_onnxruntime()
    if out is not None and out.is_dir():
        raise UserError(f"--out {out} is a directory; give a file name (X.onnx writes X_encoder.onnx and "
                        "X_decoder_step.onnx)")
    encoder, step_file = export_paths(out if out is not None else run_dir / "model.onnx")
    typer.echo("tracing the decoder step ...")
    export_seq2seq(model.eval(), encoder, step_file, opset=opset)
    typer.echo(f"wrote {encoder} (source ids and lengths in; keys, mask and the decoder's initial state out) and "
               f"{step_file} (one target token and the state in; logits and the state out); checked in "
               "onnxruntime against the model")


def _is_speech(model: object) -> bool:
    from rnnkit.apps.speech.model import RecurrentCTC
    from rnnkit.apps.speech.transformer import TransformerCTC

    if isinstance(model, TransformerCTC):
        raise UserError("the speech Transformer baseline is not exported (only the recurrent CTC models)")
    return isinstance(model, RecurrentCTC)


def _export_speech(model, run_dir: Path, out: Path | None, step: bool, lengths: bool, opset: int | None) -> None:
    """A speech run: audio samples in, CTC log-probabilities out (deploy/speech_export.py)."""
    import torch

    from rnnkit.deploy.speech_export import _check_model, export_speech

    _check_model(model, step)
    if lengths:
        raise UserError("--lengths is not available for a speech model (the graph takes one length per batch)")
    target = _onnx_target(run_dir, out, step)
    g = torch.Generator().manual_seed(0)
    example = 0.1 * torch.randn(2, model.sample_rate, generator=g)  # one second of noise per row
    export_speech(model, target, example_samples=example, opset=opset, step=step)
    what = ("chunk graph: 4 x hop samples and the stream's state in, one frame out" if step
            else "sequence graph: samples in, log-probabilities out")
    typer.echo(f"wrote {target} ({what}; the speech model, cell {model.rnn.cell_name!r}; checked in "
               "onnxruntime against the model)")


def _export_forecast(run_dir: Path, out: Path | None, step: bool, lengths: bool, opset: int | None) -> None:
    """A forecasting run: a window of history in, the forecast and sample paths out
    (deploy/forecast_export.py)."""
    from rnnkit.deploy.forecast_export import export_graph, forecast_graph

    _refuse_flags({"--step": step, "--lengths": lengths}, "does not apply to a forecasting run (its graph maps a "
                  "window to the horizon)")
    graph = forecast_graph(run_dir)  # refusals before anything is written
    target = _onnx_target(run_dir, out, False)
    typer.echo("tracing the forecaster (an ensemble of autoregressive members takes about half a minute) ...")
    export_graph(graph, target, opset=opset)
    typer.echo(f"wrote {target} (forecast graph: inputs {', '.join(graph.inputs)}; outputs forecast, samples; "
               "checked in onnxruntime against the model)")


def _refuse_flags(given: dict[str, bool], why: str) -> None:
    """One line naming the first flag given that this export cannot honour."""
    for flag, on in given.items():
        if on:
            raise UserError(f"{flag} {why}")


def _require_onnxruntime() -> None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise UserError("rnnkit export checks the file in onnxruntime: pip install 'rnnkit[deploy]'") from e


def _onnx_target(run_dir: Path, out: Path | None, step: bool) -> Path:
    """The ONNX file to write (default: beside the run's weights), once onnxruntime is known to be there."""
    _require_onnxruntime()
    target = out if out is not None else run_dir / ("model_step.onnx" if step else "model.onnx")
    if target.is_dir():
        raise UserError(f"--out {target} is a directory; give a file name")
    return target
