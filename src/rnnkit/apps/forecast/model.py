"""The forecaster: an encoder over the context window and a head over the horizon.

Inputs per window: ``y_ctx (B, L)`` (after the optional log transform), context features ``x_ctx (B, L,
Fc)`` (past covariates, known covariates, seasonal sin/cos), future features ``x_fut (B, H, Ff)``
(known covariates, seasonal sin/cos) and static covariates ``static (B, S)``.

- Scaling per series: every window is standardised by the mean and standard deviation of its own
  context (``scaling="window"``, the default: works for many series of different levels and for
  trends) or not at all (``"none"``); outputs are mapped back. Covariates are standardised with the
  training set's column means/stds (saved in the model config).
- ``arch="rnn"``: :class:`rnnkit.Recurrent` with any cell (``cell``) and executor (``backend``);
  ``arch="transformer"``: a Transformer encoder (learned positions) of about the same size, as a baseline.
- ``head="direct"``: the last encoder state, each horizon step's future features and a horizon
  embedding go through an MLP to that step's distribution (all steps at once, as MQ-RNN/BlockRNN).
  ``head="autoregressive"`` (RNN only; DeepAR): the RNN reads ``[y_{t-1}, known_t, seasonal_t,
  static]`` and predicts ``y_t``; trained with teacher forcing on every step, forecasts by sampling
  paths.
- ``likelihood``: ``gaussian`` or ``student_t`` (negative log-likelihood loss, on the scaled values).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Normal, StudentT

from rnnkit.errors import UserError
from rnnkit.io.registry import register_model
from rnnkit.layers.recurrent import Recurrent

ARCHS = ("rnn", "transformer")
HEADS = ("direct", "autoregressive")
LIKELIHOODS = ("gaussian", "student_t")
SCALINGS = ("window", "none")


@register_model("forecast.net")
class Forecaster(nn.Module):
    def __init__(self, context: int, horizon: int, n_ctx_features: int = 0, n_fut_features: int = 0,
                 n_static: int = 0, n_past: int = 0, arch: str = "rnn", cell: str = "lstm", hidden: int = 32,
                 num_layers: int = 1, dropout: float = 0.0, head: str = "direct", likelihood: str = "gaussian",
                 scaling: str = "window", backend: str = "auto", heads: int = 4,
                 cov_mean: list[float] | None = None, cov_std: list[float] | None = None,
                 static_mean: list[float] | None = None, static_std: list[float] | None = None) -> None:
        cfg = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__()
        for name, value, choices in (("arch", arch, ARCHS), ("head", head, HEADS),
                                     ("likelihood", likelihood, LIKELIHOODS), ("scaling", scaling, SCALINGS)):
            if value not in choices:
                raise UserError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")
        if head == "autoregressive" and arch != "rnn":
            raise UserError("--head autoregressive needs --arch rnn (the Transformer baseline is direct)")
        if head == "autoregressive" and n_past:
            raise UserError("past covariates are unknown in the future: use --head direct, or give them as "
                            "known covariates")
        self.cfg = cfg
        self.context, self.horizon, self.head_kind, self.arch = context, horizon, head, arch
        self.likelihood, self.scaling = likelihood, scaling
        self.n_ctx, self.n_fut, self.n_static, self.n_past = n_ctx_features, n_fut_features, n_static, n_past
        n_cov = n_ctx_features  # covariate normalisation: past+known columns of x_ctx (seasonal ones have std 1)
        self.register_buffer("cov_mean", torch.tensor(cov_mean or [0.0] * n_cov, dtype=torch.float32))
        self.register_buffer("cov_std", torch.tensor(cov_std or [1.0] * n_cov, dtype=torch.float32))
        self.register_buffer("st_mean", torch.tensor(static_mean or [0.0] * n_static, dtype=torch.float32))
        self.register_buffer("st_std", torch.tensor(static_std or [1.0] * n_static, dtype=torch.float32))
        n_params = 3 if likelihood == "student_t" else 2
        if head == "autoregressive":
            n_in = 1 + n_fut_features + n_static
            self.rnn = Recurrent(cell, n_in, hidden, num_layers, dropout=dropout if num_layers > 1 else 0.0,
                                 backend=backend)
            self.out = nn.Linear(hidden, n_params)
            return
        n_in = 1 + n_ctx_features + n_static
        if arch == "rnn":
            self.rnn = Recurrent(cell, n_in, hidden, num_layers, dropout=dropout if num_layers > 1 else 0.0,
                                 backend=backend)
        else:
            if hidden % heads:
                raise UserError(f"--hidden {hidden} must be divisible by the {heads} attention heads")
            self.inp = nn.Linear(n_in, hidden)
            self.position = nn.Parameter(torch.zeros(context, hidden))
            layer = nn.TransformerEncoderLayer(hidden, heads, 2 * hidden, dropout, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.step_emb = nn.Embedding(horizon, 8)
        self.mlp = nn.Sequential(nn.Linear(hidden + n_fut_features + 8, hidden), nn.ReLU(),
                                 nn.Linear(hidden, n_params))

    def get_config(self) -> dict[str, Any]:
        return dict(self.cfg)

    # ---- pieces ----------------------------------------------------------------------------------
    def _scale(self, y_ctx: Tensor) -> tuple[Tensor, Tensor]:
        if self.scaling == "none":
            return torch.zeros_like(y_ctx[:, :1]), torch.ones_like(y_ctx[:, :1])
        loc = y_ctx.mean(1, keepdim=True)
        scale = y_ctx.std(1, keepdim=True, unbiased=False)
        scale = torch.where(scale > 1e-8, scale, loc.abs().clamp_min(1.0))
        return loc, scale

    def _norm_features(self, x_ctx: Tensor, x_fut: Tensor, static: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x_ctx = (x_ctx - self.cov_mean) / self.cov_std
        known = self.n_ctx - self.n_past  # x_fut has the known + seasonal columns of x_ctx
        x_fut = (x_fut - self.cov_mean[self.n_past:self.n_past + known]) / self.cov_std[self.n_past:self.n_past + known]
        static = (static - self.st_mean) / self.st_std
        return x_ctx, x_fut, static

    def _dist(self, raw: Tensor):
        mu = raw[..., 0]
        sigma = nn.functional.softplus(raw[..., 1]) + 1e-3
        if self.likelihood == "student_t":
            return StudentT(2.0 + nn.functional.softplus(raw[..., 2]), mu, sigma)
        return Normal(mu, sigma)

    def _direct(self, z_ctx: Tensor, x_ctx: Tensor, x_fut: Tensor, static: Tensor):
        B, L = z_ctx.shape
        inp = torch.cat([z_ctx[..., None], x_ctx, static[:, None, :].expand(B, L, -1)], -1)
        if self.arch == "rnn":
            out, _ = self.rnn(inp.transpose(0, 1))
            h = out[-1]
        else:
            h = self.encoder(self.inp(inp) + self.position[-L:])[:, -1]
        H = self.horizon
        steps = self.step_emb.weight[None].expand(B, H, -1)
        z = torch.cat([h[:, None, :].expand(B, H, -1), x_fut, steps], -1)
        return self._dist(self.mlp(z))

    def _ar_inputs(self, z_prev: Tensor, x_fut: Tensor, static: Tensor) -> Tensor:
        B, T = z_prev.shape
        return torch.cat([z_prev[..., None], x_fut, static[:, None, :].expand(B, T, -1)], -1).transpose(0, 1)

    # ---- training --------------------------------------------------------------------------------
    def loss(self, y_ctx: Tensor, x_ctx: Tensor, x_fut: Tensor, static: Tensor, y_fut: Tensor) -> Tensor:
        """Mean negative log-likelihood of the scaled targets."""
        loc, scale = self._scale(y_ctx)
        z_ctx, z_fut = (y_ctx - loc) / scale, (y_fut - loc) / scale
        x_ctx, x_fut, static = self._norm_features(x_ctx, x_fut, static)
        if self.head_kind == "direct":
            return -self._dist_direct(z_ctx, x_ctx, x_fut, static).log_prob(z_fut).mean()
        z_all = torch.cat([z_ctx, z_fut], 1)
        n_known = self.n_ctx - self.n_past
        feats = torch.cat([x_ctx[..., self.n_past:self.n_past + n_known], x_fut], 1)
        out, _ = self.rnn(self._ar_inputs(z_all[:, :-1], feats[:, 1:], static))
        dist = self._dist(self.out(out.transpose(0, 1)))
        return -dist.log_prob(z_all[:, 1:]).mean()

    def _dist_direct(self, z_ctx, x_ctx, x_fut, static):
        return self._direct(z_ctx, x_ctx, x_fut, static)

    # ---- forecasting -----------------------------------------------------------------------------
    @torch.no_grad()
    def forecast(self, y_ctx: Tensor, x_ctx: Tensor, x_fut: Tensor, static: Tensor, n_samples: int = 200,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(point (B, H): the median, samples (B, n, H)) on the (transformed) value scale."""
        loc, scale = self._scale(y_ctx)
        z_ctx = (y_ctx - loc) / scale
        x_ctx, x_fut, static = self._norm_features(x_ctx, x_fut, static)
        if self.head_kind == "direct":
            dist = self._direct(z_ctx, x_ctx, x_fut, static)
            eps = _standard_samples(dist, n_samples, generator)
            samples = dist.loc[:, None] + dist.scale[:, None] * eps
            point = dist.loc
        else:
            samples = self._ar_sample(z_ctx, x_ctx, x_fut, static, n_samples, generator)
            point = samples.median(1).values
        return point * scale + loc, samples * scale[:, :, None] + loc[:, :, None]

    def _ar_sample(self, z_ctx, x_ctx, x_fut, static, n, generator):
        B, _L = z_ctx.shape
        n_known = self.n_ctx - self.n_past
        known_ctx = x_ctx[..., self.n_past:self.n_past + n_known]
        _, state = self.rnn(self._ar_inputs(z_ctx[:, :-1], known_ctx[:, 1:], static))
        rep = _repeat_state(state, n)
        prev = z_ctx[:, -1].repeat_interleave(n)
        fut = x_fut.repeat_interleave(n, 0)
        st = static.repeat_interleave(n, 0)
        out = []
        for k in range(self.horizon):
            o, rep = self.rnn(self._ar_inputs(prev[:, None], fut[:, k:k + 1], st), rep)
            dist = self._dist(self.out(o[0]))
            eps = _standard_samples(dist, 1, generator)[:, 0]
            prev = dist.loc + dist.scale * eps
            out.append(prev)
        return torch.stack(out, 1).reshape(B, n, self.horizon)


def _standard_samples(dist, n: int, generator) -> Tensor:
    """Standardised draws of shape (B, n, ...) (normal, or Student-t with the dist's df)."""
    shape = (dist.loc.shape[0], n, *dist.loc.shape[1:])
    z = torch.randn(shape, generator=generator)
    if isinstance(dist, StudentT):
        df = dist.df[:, None].expand(shape)
        chi2 = torch._standard_gamma(df / 2) * 2  # no generator: seeded by torch.manual_seed
        z = z / torch.sqrt(chi2 / df)
    return z


def _repeat_state(state: Any, n: int) -> Any:
    if isinstance(state, tuple):
        return tuple(_repeat_state(s, n) for s in state)
    return state.repeat_interleave(n, dim=1)  # (layers, B, H) -> (layers, B*n, H)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@register_model("forecast.ensemble")
class ForecastEnsemble(nn.Module):
    """``members`` forecasters of one configuration from different initialisations, trained together
    on the same batches (the loss is the mean of theirs). The point forecast is the mean of the
    members' medians; the samples are pooled (an equal-weight mixture)."""

    def __init__(self, members: int = 5, **config: Any) -> None:
        super().__init__()
        if members < 2:
            raise UserError(f"an ensemble needs at least 2 members, got {members}")
        self.members = members
        self.nets = nn.ModuleList(Forecaster(**config) for _ in range(members))
        self.horizon = self.nets[0].horizon

    def get_config(self) -> dict[str, Any]:
        return {"members": self.members, **self.nets[0].get_config()}

    def loss(self, *batch: Tensor) -> Tensor:
        return torch.stack([net.loss(*batch) for net in self.nets]).mean()

    @torch.no_grad()
    def forecast(self, y_ctx, x_ctx, x_fut, static, n_samples: int = 200, generator=None):
        per = max(1, -(-n_samples // self.members))
        outs = [net.forecast(y_ctx, x_ctx, x_fut, static, per, generator) for net in self.nets]
        point = torch.stack([p for p, _ in outs]).mean(0)
        return point, torch.cat([s for _, s in outs], 1)
