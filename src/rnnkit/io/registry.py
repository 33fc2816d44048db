"""The model registry: a model class under a name, with a JSON config and a from-config constructor.

``rnnkit.save``/``rnnkit.load`` store a model as ``config.json`` (``{"name": ..., "config": {...}}``)
plus ``model.safetensors``; loading looks the name up here and calls the class's constructor, so no
pickle is ever involved. Register a model class once, next to its definition::

    @register_model("adding_regressor")
    class AddingRegressor(nn.Module):
        def __init__(self, cell: str, hidden: int): ...
        def get_config(self) -> dict:            # JSON-able keyword arguments of __init__
            return {"cell": self.cell, "hidden": self.hidden}

``from_config`` defaults to ``cls(**config)``; a class may define a ``from_config`` classmethod, or
pass ``get_config=``/``from_config=`` functions (how rnnkit's own layers are registered, at the
bottom of this file). Names are global: apps prefix theirs (``"forecast.seq2seq"``).

A config file is untrusted input: it names a model, never code. ``config.json``'s ``"module"`` entry
is written for people (where the class lives) and ignored when loading; the modules that register
rnnkit's own models are imported from :data:`BUILTIN_MODULES`, a table in this file keyed by name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from rnnkit.errors import UserError
from rnnkit.io.size_limits import check_model_config


class UnknownModel(UserError):
    """A config names a model that no imported module has registered."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    cls: type
    get_config: Callable[[nn.Module], dict[str, Any]]
    from_config: Callable[[dict[str, Any]], nn.Module]
    module: str  # where the class lives: written to config.json for people, never imported from there


#: rnnkit's models outside ``rnnkit.layers``: name -> the module that registers it (imported on demand,
#: so ``rnnkit.load`` works without importing the app first). The only modules ``build_model`` imports.
BUILTIN_MODULES: dict[str, str] = {
    "adding_regressor": "rnnkit.apps.adding.task",
    "text.recurrent_lm": "rnnkit.apps.text.model",
    "text.transformer_lm": "rnnkit.apps.text.model",
    "forecast.net": "rnnkit.apps.forecast.model",
    "forecast.ensemble": "rnnkit.apps.forecast.ensemble",
    "classify.net": "rnnkit.apps.classify.model",
    "classify.ensemble": "rnnkit.apps.classify.ensemble",
    "translate.seq2seq": "rnnkit.apps.translate.model",
    "translate.transformer": "rnnkit.apps.translate.model",
    "speech.rnn_ctc": "rnnkit.apps.speech.model",
    "speech.transformer_ctc": "rnnkit.apps.speech.transformer",
}

_BY_NAME: dict[str, ModelEntry] = {}
_BY_CLASS: dict[type, ModelEntry] = {}


def register_model(
    name: str,
    cls: type | None = None,
    *,
    get_config: Callable[[nn.Module], dict[str, Any]] | None = None,
    from_config: Callable[[dict[str, Any]], nn.Module] | None = None,
):
    """Register ``cls`` under ``name`` (usable as a class decorator when ``cls`` is omitted)."""

    def add(klass: type) -> type:
        getter = get_config or getattr(klass, "get_config", None)
        if getter is None:
            raise TypeError(f"{klass.__name__} needs a get_config() method or a get_config= function")
        maker = from_config or getattr(klass, "from_config", None) or (lambda cfg: klass(**cfg))
        old = _BY_NAME.get(name)
        if old is not None and old.cls is not klass and old.cls.__qualname__ != klass.__qualname__:
            raise ValueError(f"model name {name!r} is already registered by {old.cls.__qualname__}")
        entry = ModelEntry(name, klass, getter, maker, klass.__module__)
        _BY_NAME[name] = entry
        _BY_CLASS[klass] = entry
        return klass

    return add if cls is None else add(cls)


def model_names() -> list[str]:
    return sorted(_BY_NAME)


def entry_for(model: nn.Module) -> ModelEntry:
    entry = _BY_CLASS.get(type(model))
    if entry is None:
        raise TypeError(
            f"{type(model).__qualname__} is not a registered model: decorate it with "
            "@rnnkit.io.register_model(name) and give it get_config()"
        )
    return entry


def model_config(model: nn.Module) -> dict[str, Any]:
    """``{"name": ..., "module": ..., "config": {...}}`` for a registered model."""
    entry = entry_for(model)
    return {"name": entry.name, "module": entry.module, "config": entry.get_config(model)}


def build_model(spec: dict[str, Any], source: str = "config") -> nn.Module:
    """The model a :func:`model_config` dict describes (weights freshly initialised).

    Looks ``spec["name"]`` up in the registry; the only module it may import is the one
    :data:`BUILTIN_MODULES` names for it (``spec["module"]`` is ignored: a file never picks code).
    """
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise UserError(f"{source}: no model name (expected {{'name': ..., 'config': {{...}}}})")
    name = spec["name"]
    if name not in _BY_NAME and name in BUILTIN_MODULES:
        importlib.import_module(BUILTIN_MODULES[name])
    if name not in _BY_NAME:
        raise UnknownModel(
            f"{source}: unknown model {name[:80]!r}; import the module that registers it first "
            f"(known: {', '.join(model_names()) or 'none'})"
        )
    config = spec.get("config", {})
    if not isinstance(config, dict):
        raise UserError(f"{source}: model config must be a JSON object, got {type(config).__name__}")
    check_model_config(config, source)  # before any tensor: a shared config.json may ask for terabytes
    try:
        return _BY_NAME[name].from_config(dict(config))
    except UserError:
        raise
    except (TypeError, ValueError) as exc:
        raise UserError(f"{source}: cannot build model {name!r} from its config: {exc}") from exc


# ---- rnnkit's own layers ---------------------------------------------------------------------
def _common(m) -> dict[str, Any]:
    cfg = {
        "input_size": m.input_size, "hidden_size": m.hidden_size, "num_layers": m.num_layers,
        "bias": m.bias, "batch_first": m.batch_first, "dropout": m.dropout,
        "bidirectional": m.bidirectional, "init": m.init_options.scheme,
        "chrono_tmax": m.init_options.chrono_tmax, "variational_dropout": m.variational_dropout,
        "recurrent_dropout": m.recurrent_dropout, "weight_drop": m.weight_drop,
        "residual": m.residual, "backend": m.backend,
    }
    z = m.zoneout
    cfg["zoneout"] = z[0] if len(set(z)) == 1 else list(z)
    return cfg


def _cell_options(spec) -> dict[str, Any]:
    """The cell's options as its spec declares them, but proj_size (the modules' own argument)."""
    from rnnkit.cells.registry import options_of

    return {k: v for k, v in options_of(spec).items() if k != "proj_size"}


def _zoneout_in(cfg: dict[str, Any]) -> dict[str, Any]:
    if isinstance(cfg.get("zoneout"), list):
        cfg["zoneout"] = tuple(cfg["zoneout"])
    return cfg


def _register_layers() -> None:
    from rnnkit.layers.recurrent import Recurrent
    from rnnkit.layers.torch_cells import GRUCell, LSTMCell, RNNCell
    from rnnkit.layers.torch_rnn import GRU, LSTM, RNN

    def rec_get(m):
        return {"cell": m.cell_name, **_common(m), "proj_size": m.proj_size, **_cell_options(m.cell),
                "forget_bias": m.init_options.forget_bias}

    def rec_make(cfg):
        cfg = _zoneout_in(cfg)
        return Recurrent(cfg.pop("cell"), cfg.pop("input_size"), cfg.pop("hidden_size"),
                         cfg.pop("num_layers", 1), **cfg)

    register_model("rnnkit.Recurrent", Recurrent, get_config=rec_get, from_config=rec_make)
    register_model("rnnkit.LSTM", LSTM, from_config=lambda c: LSTM(**_zoneout_in(c)), get_config=lambda m: {
        **_common(m), "proj_size": m.proj_size, **_cell_options(m.cell), "forget_bias": m.init_options.forget_bias})
    register_model("rnnkit.GRU", GRU, from_config=lambda c: GRU(**c),
                   get_config=lambda m: {**_common(m), **_cell_options(m.cell)})
    register_model("rnnkit.RNN", RNN, from_config=lambda c: RNN(**c), get_config=lambda m: {
        **_common(m), "nonlinearity": m.cell_name.split("_")[1]})

    def cell_get(m):
        return {"input_size": m.input_size, "hidden_size": m.hidden_size, "bias": m.bias,
                "init": m.init_options.scheme, "chrono_tmax": m.init_options.chrono_tmax,
                **_cell_options(m.spec)}

    register_model("rnnkit.LSTMCell", LSTMCell, from_config=lambda c: LSTMCell(**c),
                   get_config=lambda m: {**cell_get(m), "forget_bias": m.init_options.forget_bias})
    register_model("rnnkit.GRUCell", GRUCell, from_config=lambda c: GRUCell(**c), get_config=cell_get)
    register_model("rnnkit.RNNCell", RNNCell, from_config=lambda c: RNNCell(**c),
                   get_config=lambda m: {**cell_get(m), "nonlinearity": m.nonlinearity})


_register_layers()
