"""The diagnostics demo: vanishing and exploding gradients on the adding problem, measured.

``run_demo(out_dir, quick=False)`` (or ``python -m rnnkit.diagnostics demo --out DIR [--quick]``):

1. **At initialisation** (T = 200, H = 64, loss = MSE of a linear head on the last output): the
   gradient ratio ``|dL/dh_0| / |dL/dh_T|``, the input-influence memory horizon, gate saturation and
   the largest recurrent spectral radius for Elman (tanh), LSTM (torch init), LSTM (chrono init) and
   GRU. Theory: the Elman network and the torch-initialised LSTM and GRU lose the gradient
   geometrically (ratio underflows towards 0), the chrono-initialised LSTM keeps forget gates near 1
   and the gradient alive.
2. **After a short training** on the adding problem (Adam, gradient clipping at 1): the same numbers
   and the training loss against the constant-prediction baseline 1/6.
3. **Exploding gradients**: an Elman network whose ``weight_hh`` is scaled to spectral radius 2.5;
   one SGD step without and with ``clip_grad_norm_``: the pre-clip gradient norm and the norm of the
   parameter update.

Returns a dict with every number; writes ``summary.json`` and the PNGs into ``out_dir``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.diagnostics.snapshot import Snapshot, snapshot
from rnnkit.io.atomic import json_safe, write_bytes_atomic
from rnnkit.layers.recurrent import Recurrent
from rnnkit.tasks.adding import ADDING_BASELINE_MSE, adding_batch

#: label -> (cell, init)
MODELS: dict[str, tuple[str, str]] = {
    "elman": ("rnn_tanh", "torch"),
    "lstm": ("lstm", "torch"),
    "lstm_chrono": ("lstm", "chrono"),
    "gru": ("gru", "torch"),
    "mingru": ("mingru", "torch"),
}
EXPLODING_RADIUS = 2.5


class AddingModel(nn.Module):
    """A recurrent core and a linear head on its last output: x (T, B, 2) -> prediction (B,)."""

    def __init__(self, cell: str, hidden_size: int, init: str = "torch", **kwargs: Any) -> None:
        super().__init__()
        self.rnn = Recurrent(cell, 2, hidden_size, init=init, **kwargs)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)
        return self.head(out[-1]).squeeze(-1)


def mse_to(y: Tensor) -> Callable[[Tensor], Tensor]:
    return lambda pred: torch.nn.functional.mse_loss(pred, y)


def diagnose_at(model: AddingModel, x: Tensor, y: Tensor) -> Snapshot:
    """Every diagnostic, loss = MSE of the prediction, ``y_T`` = the prediction."""
    return snapshot(model, x, mse_to(y), lambda pred: pred)


def scale_recurrent_radius(rnn: Recurrent, radius: float) -> None:
    """Scale every ``weight_hh`` (each gate block) so that its spectral radius is ``radius``."""
    with torch.no_grad():
        for layer, spec in enumerate(rnn.cells):
            for d in range(rnn.num_directions):
                w = rnn.layer_params(layer, d)["weight_hh"]
                for block in w.view(spec.num_gates, spec.hidden_size, -1):
                    rho = torch.linalg.eigvals(block.double()).abs().max()
                    block.mul_(radius / float(rho))


def train_adding(model: nn.Module, T: int, steps: int, batch: int, generator: torch.Generator,
                 lr: float = 3e-3, clip: float = 1.0) -> list[float]:
    """A short training on the adding problem; returns the loss per step."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        x, y = adding_batch(T, batch, generator=generator)
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def clipping_step(model: nn.Module, x: Tensor, y: Tensor, lr: float, max_norm: float | None) -> dict[str, float]:
    """One SGD step: the gradient norm before clipping and the norm of the resulting update."""
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    model.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    pre = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm is not None else float("inf"))
    with torch.no_grad():
        for p in params:
            p -= lr * p.grad
    update = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(params, before, strict=True)))
    for p, b in zip(params, before, strict=True):  # leave the model as it was
        p.data.copy_(b)
    return {"loss": float(loss.detach()), "grad_norm_before_clip": float(pre), "update_norm": float(update),
            "lr": lr, "max_norm": max_norm}


def _summary_row(snap: Snapshot) -> dict[str, Any]:
    horizon, reached = snap.influence.horizon() if snap.influence is not None else (None, False)
    sat = {r["gate"]: r["saturated"] for r in (snap.gates.table() if snap.gates else []) if r["layer"] == 0}
    return {
        "loss": snap.flow.loss,
        "grad_ratio": snap.flow.ratio(),
        "horizon": horizon,
        "horizon_reached": reached,
        "saturation": sat,
        "max_spectral_radius": max((b.spectral_radius for b in snap.spectrum), default=float("nan")),
    }


def _format_table(title: str, rows: dict[str, dict[str, Any]], T: int) -> str:
    lines = [title, f"{'model':<12} {'|dL/dh0|/|dL/dhT|':>18} {'horizon':>9} {'max rho':>8} {'loss@T':>8}  saturated"]
    for label, r in rows.items():
        hz = f"{r['horizon']}" if r["horizon_reached"] else f">={T}"
        sat = " ".join(f"{g}={100 * v:.0f}%" for g, v in r["saturation"].items())
        lines.append(f"{label:<12} {r['grad_ratio']:>18.3g} {hz:>9} {r['max_spectral_radius']:>8.2f} "
                     f"{r['loss']:>8.4f}  {sat}")
    return "\n".join(lines)


def run_demo(out_dir: str | os.PathLike, quick: bool = False, *, seed: int = 0,
             log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Run the demo (see the module docstring); ``quick`` shrinks the batch and the training.

    Runs single-threaded (restored afterwards): its tensors are small, where one thread is fastest
    and immune to oversubscription on a shared machine.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_demo(Path(out_dir), quick, seed, log)
    finally:
        torch.set_num_threads(threads)


def _run_demo(out: Path, quick: bool, seed: int, log: Callable[[str], None] | None) -> dict[str, Any]:
    from rnnkit.diagnostics.plots import plot_gate_saturation, plot_gradient_flow, plot_influence

    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    say = log or (lambda _s: None)
    T, H = 200, 64
    diag_batch = 4 if quick else 16
    train_T, train_steps, train_batch = (20, 15, 16) if quick else (50, 200, 32)
    gen = torch.Generator().manual_seed(seed)
    x, y = adding_batch(T, diag_batch, generator=gen)

    result: dict[str, Any] = {"T": T, "hidden_size": H, "quick": quick, "seed": seed,
                              "baseline_mse": ADDING_BASELINE_MSE}
    models: dict[str, AddingModel] = {}
    phases: dict[str, dict[str, Snapshot]] = {"init": {}, "trained": {}}
    for label, (cell, init) in MODELS.items():
        torch.manual_seed(seed)
        models[label] = AddingModel(cell, H, init)
        phases["init"][label] = diagnose_at(models[label], x, y)

    training: dict[str, Any] = {}
    for label, model in models.items():
        torch.manual_seed(seed)
        losses = train_adding(model, train_T, train_steps, train_batch, torch.Generator().manual_seed(seed + 1))
        k = max(1, len(losses) // 10)
        training[label] = {"first_loss": sum(losses[:k]) / k, "last_loss": sum(losses[-k:]) / k}
        phases["trained"][label] = diagnose_at(model, x, y)
    result["training"] = {"T": train_T, "steps": train_steps, "batch": train_batch, "per_model": training}

    for phase, snaps in phases.items():
        result[phase] = {label: _summary_row(s) for label, s in snaps.items()}
        say(_format_table(f"\n== {phase} (adding problem, T={T}, H={H}) ==", result[phase], T))
        plot_gradient_flow({k: s.flow for k, s in snaps.items()}, out / f"gradient_flow_{phase}.png")
        plot_influence({k: s.influence for k, s in snaps.items() if s.influence is not None},
                       out / f"influence_{phase}.png")
        plot_gate_saturation({k: s.gates for k, s in snaps.items() if s.gates is not None},
                             out / f"gates_{phase}.png")
    say(f"\ntraining ({train_steps} Adam steps at T={train_T}; baseline MSE {ADDING_BASELINE_MSE:.3f}): "
        + ", ".join(f"{k} {v['first_loss']:.3f} -> {v['last_loss']:.3f}" for k, v in training.items()))

    # exploding gradients: Elman with spectral radius 2.5, one SGD step without and with clipping
    explode_T = 50
    torch.manual_seed(seed)
    model = AddingModel("rnn_tanh", H)
    scale_recurrent_radius(model.rnn, EXPLODING_RADIUS)
    xe, ye = x[:explode_T], y
    snap = diagnose_at(model, xe, ye)
    lr, max_norm = 0.1, 1.0
    exploding = {
        "T": explode_T, "spectral_radius": EXPLODING_RADIUS,
        "grad_ratio": snap.flow.ratio(),
        "without_clipping": clipping_step(model, xe, ye, lr, None),
        "with_clipping": clipping_step(model, xe, ye, lr, max_norm),
    }
    result["exploding"] = exploding
    plot_gradient_flow({"elman rho=2.5": snap.flow}, out / "gradient_flow_exploding.png")
    w, c = exploding["without_clipping"], exploding["with_clipping"]
    say(f"\n== exploding: Elman, spectral radius {EXPLODING_RADIUS}, T={explode_T} ==\n"
        f"|dL/dh0|/|dL/dhT| = {snap.flow.ratio():.3g}\n"
        f"without clipping: grad norm {w['grad_norm_before_clip']:.3g}, update norm {w['update_norm']:.3g} (lr {lr})\n"
        f"with clip_grad_norm_({max_norm}): grad norm before clip {c['grad_norm_before_clip']:.3g}, "
        f"update norm {c['update_norm']:.3g} (<= lr * max_norm = {lr * max_norm:g})")

    result["seconds"] = time.perf_counter() - started
    result["plots"] = sorted(p.name for p in out.glob("*.png"))
    import json

    write_bytes_atomic(out / "summary.json", json.dumps(json_safe(result), indent=2).encode())
    say(f"\nwrote {len(result['plots'])} plots and summary.json to {out} in {result['seconds']:.1f} s")
    return result
