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

from . import calibration

ARCHS = ("rnn", "transformer")
HEADS = ("direct", "autoregressive")
LIKELIHOODS = ("gaussian", "student_t")
SCALINGS = ("window", "last", "holt", "none")


@register_model("forecast.net")
class Forecaster(nn.Module):
    def __init__(self, context: int, horizon: int, n_ctx_features: int = 0, n_fut_features: int = 0,
                 n_static: int = 0, n_past: int = 0, arch: str = "rnn", cell: str = "lstm", hidden: int = 32,
                 num_layers: int = 1, dropout: float = 0.0, head: str = "direct", likelihood: str = "gaussian",
                 scaling: str = "window", backend: str = "auto", heads: int = 4,
                 cov_mean: list[float] | None = None, cov_std: list[float] | None = None,
                 static_mean: list[float] | None = None, static_std: list[float] | None = None,
                 masked: bool = False, calibrated: bool = False) -> None:
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
        self.likelihood, self.scaling, self.masked = likelihood, scaling, masked
        extra = 1 if masked else 0  # the mask channel: 1 on real steps, 0 on left padding
        self.calibrated = calibrated
        if scaling == "holt":  # the damped-trend anchor's global smoothing weights, learned with the net
            self.holt_raw = nn.Parameter(torch.tensor(list(HOLT_INIT)))
        if calibrated:  # conformal factors (calibration.py), fitted after training; 1: unchanged
            self.register_buffer("calib", torch.ones(horizon, 2))
        self.n_ctx, self.n_fut, self.n_static, self.n_past = n_ctx_features, n_fut_features, n_static, n_past
        n_cov = n_ctx_features  # covariate normalisation: past+known columns of x_ctx (seasonal ones have std 1)
        self.register_buffer("cov_mean", torch.tensor(cov_mean or [0.0] * n_cov, dtype=torch.float32))
        self.register_buffer("cov_std", torch.tensor(cov_std or [1.0] * n_cov, dtype=torch.float32))
        self.register_buffer("st_mean", torch.tensor(static_mean or [0.0] * n_static, dtype=torch.float32))
        self.register_buffer("st_std", torch.tensor(static_std or [1.0] * n_static, dtype=torch.float32))
        n_params = 3 if likelihood == "student_t" else 2
        if head == "autoregressive":
            n_in = 1 + n_fut_features + n_static + extra
            self.rnn = Recurrent(cell, n_in, hidden, num_layers, dropout=dropout if num_layers > 1 else 0.0,
                                 backend=backend)
            self.out = nn.Linear(hidden, n_params)
            return
        n_in = 1 + n_ctx_features + n_static + extra
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
    def _scale(self, y_ctx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(loc_ctx (B, L), loc_fut (B, H), scale (B, 1)) of each window from its real (finite)
        context steps only: the network sees ``(y - loc) / scale`` and forecasts the future that way.

        ``window``: the mean and standard deviation; ``last``: the last value and the mean absolute step
        (level normalisation: the network forecasts changes from now, in units of the usual step);
        ``holt``: a damped-trend exponential smoothing of the context (global weights learned with the
        network, ES-RNN's idea): its one-step fits on the context and its forecast over the horizon are
        the anchor, so the network models what damped Holt misses; the scale is the mean absolute step."""
        L, H = y_ctx.shape[1], self.horizon
        if self.scaling == "none":
            zero = torch.zeros_like(y_ctx[:, :1])
            return zero.expand(-1, L), zero.expand(-1, H), torch.ones_like(y_ctx[:, :1])
        real = torch.isfinite(y_ctx)
        y = torch.where(real, y_ctx, 0.0)
        n = real.sum(1, keepdim=True).clamp_min(1)
        mean = y.sum(1, keepdim=True) / n
        if self.scaling in ("last", "holt"):
            both = real[:, 1:] & real[:, :-1]
            step = torch.where(both, (y[:, 1:] - y[:, :-1]).abs(), 0.0)
            scale = step.sum(1, keepdim=True) / both.sum(1, keepdim=True).clamp_min(1)
        else:
            scale = torch.sqrt((torch.where(real, y - mean, 0.0) ** 2).sum(1, keepdim=True) / n)
        scale = torch.where(scale > 1e-8, scale, mean.abs().clamp_min(1.0))
        if self.scaling == "holt":
            loc_ctx, loc_fut = damped_holt(y, real, *holt_weights(self.holt_raw), H)
            return loc_ctx, loc_fut, scale
        loc = y[:, -1:] if self.scaling == "last" else mean  # the last step is always real (left padding)
        return loc.expand(-1, L), loc.expand(-1, H), scale

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

    def _prepare(self, y_ctx: Tensor, x_ctx: Tensor, x_fut: Tensor, static: Tensor):
        """(z_ctx, x_ctx, mask, x_fut, static, loc_fut, scale): scaled values and normalised features with
        the padded steps zeroed, so that what the padding holds never reaches the network (its only
        trace is the mask channel)."""
        loc_ctx, loc_fut, scale = self._scale(y_ctx)
        real = torch.isfinite(y_ctx)
        z = torch.where(real, (torch.where(real, y_ctx, 0.0) - loc_ctx) / scale, 0.0)
        x_ctx, x_fut, static = self._norm_features(x_ctx, x_fut, static)
        return z, x_ctx * real[..., None], real.to(z.dtype), x_fut, static, loc_fut, scale

    def _static_steps(self, static: Tensor, steps: int) -> list[Tensor]:
        """The static covariates repeated over ``steps`` ([] without any: a zero-width expand does not
        survive ONNX export)."""
        return [static[:, None, :].expand(-1, steps, -1)] if self.n_static else []

    def _with_mask(self, parts: list[Tensor], mask: Tensor) -> Tensor:
        return torch.cat([*parts, mask[..., None]] if self.masked else parts, -1)

    def _direct(self, z_ctx: Tensor, x_ctx: Tensor, mask: Tensor, x_fut: Tensor, static: Tensor):
        B, L = z_ctx.shape
        inp = self._with_mask([z_ctx[..., None], x_ctx, *self._static_steps(static, L)], mask)
        if self.arch == "rnn":
            out, _ = self.rnn(inp.transpose(0, 1))
            h = out[-1]
        else:
            h = self.encoder(self.inp(inp) + self.position[-L:])[:, -1]
        H = self.horizon
        steps = self.step_emb.weight[None].expand(B, H, -1)
        z = torch.cat([h[:, None, :].expand(B, H, -1), x_fut, steps], -1)
        return self._dist(self.mlp(z))

    def _ar_inputs(self, z_prev: Tensor, x_fut: Tensor, static: Tensor, mask: Tensor) -> Tensor:
        steps = self._static_steps(static, z_prev.shape[1])
        return self._with_mask([z_prev[..., None], x_fut, *steps], mask).transpose(0, 1)

    # ---- training --------------------------------------------------------------------------------
    def loss(self, y_ctx: Tensor, x_ctx: Tensor, x_fut: Tensor, static: Tensor, y_fut: Tensor) -> Tensor:
        """Mean negative log-likelihood of the scaled targets (real steps only)."""
        z_ctx, x_ctx, mask, x_fut, static, loc, scale = self._prepare(y_ctx, x_ctx, x_fut, static)
        z_fut = (y_fut - loc) / scale
        if self.head_kind == "direct":
            return -self._direct(z_ctx, x_ctx, mask, x_fut, static).log_prob(z_fut).mean()
        z_all = torch.cat([z_ctx, z_fut], 1)
        m_all = torch.cat([mask, torch.ones_like(z_fut)], 1)
        n_known = self.n_ctx - self.n_past
        feats = torch.cat([x_ctx[..., self.n_past:self.n_past + n_known], x_fut], 1)
        out, _ = self.rnn(self._ar_inputs(z_all[:, :-1], feats[:, 1:], static, m_all[:, :-1]))
        nll = -self._dist(self.out(out.transpose(0, 1))).log_prob(z_all[:, 1:])
        target = m_all[:, 1:]  # no loss on padded targets
        return (nll * target).sum() / target.sum().clamp_min(1)

    # ---- forecasting -----------------------------------------------------------------------------
    @torch.no_grad()
    def forecast(self, y_ctx: Tensor, x_ctx: Tensor, x_fut: Tensor, static: Tensor, n_samples: int = 200,
                 generator: torch.Generator | None = None, noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(point (B, H): the median, samples (B, n, H)) on the (transformed) value scale.

        ``noise``: the standard normal draws ``(B, n, H)`` to use instead of drawing them from
        ``generator`` (``n_samples`` is then ``n``): an exported graph takes them as an input, and
        the same draws give the same forecasts. Gaussian likelihood only (Student-t needs more)."""
        if noise is not None:
            _check_noise(self, noise, y_ctx.shape[0])
            n_samples = noise.shape[1]
        z_ctx, x_ctx, mask, x_fut, static, loc, scale = self._prepare(y_ctx, x_ctx, x_fut, static)
        if self.head_kind == "direct":
            dist = self._direct(z_ctx, x_ctx, mask, x_fut, static)
            eps = _standard_samples(dist, n_samples, generator) if noise is None else noise
            samples = dist.loc[:, None] + dist.scale[:, None] * eps
            point = dist.loc
        else:
            samples = self._ar_sample(z_ctx, x_ctx, mask, x_fut, static, n_samples, generator, noise)
            point = lower_median(samples)
        point, samples = point * scale + loc, samples * scale[:, :, None] + loc[:, None, :]
        if self.calibrated:
            samples = calibration.apply(point, samples, self.calib)
        return point, samples

    def _ar_sample(self, z_ctx, x_ctx, mask, x_fut, static, n, generator, noise=None):
        B, _L = z_ctx.shape
        n_known = self.n_ctx - self.n_past
        known_ctx = x_ctx[..., self.n_past:self.n_past + n_known]
        _, state = self.rnn(self._ar_inputs(z_ctx[:, :-1], known_ctx[:, 1:], static, mask[:, :-1]))
        rep = _repeat_state(state, n)
        prev = repeat_rows(z_ctx[:, -1], n)
        fut = repeat_rows(x_fut, n)
        st = repeat_rows(static, n)
        one = torch.ones(B * n, 1, dtype=z_ctx.dtype)
        out = []
        for k in range(self.horizon):
            o, rep = self.rnn(self._ar_inputs(prev[:, None], fut[:, k:k + 1], st, one), rep)
            dist = self._dist(self.out(o[0]))
            # sample path i of window b is row b * n + i (repeat_rows)
            eps = _standard_samples(dist, 1, generator)[:, 0] if noise is None else noise[:, :, k].reshape(-1)
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


def lower_median(samples: Tensor) -> Tensor:
    """``samples.median(1).values`` (the lower of the two middle values for an even count) through a
    sort, which ONNX has and ``median`` does not."""
    return samples.sort(dim=1).values.select(1, (samples.shape[1] - 1) // 2)


def _check_noise(model: nn.Module, noise: Tensor, batch: int) -> None:
    if model.likelihood != "gaussian":
        raise UserError("forecast(noise=...) takes standard normal draws: gaussian likelihood only, "
                        f"not {model.likelihood!r}")
    if noise.dim() != 3 or noise.shape[0] != batch or noise.shape[2] != model.horizon:
        raise UserError(f"noise must be (batch {batch}, samples, horizon {model.horizon}), got {tuple(noise.shape)}")


def _repeat_state(state: Any, n: int) -> Any:
    if isinstance(state, tuple):
        return tuple(_repeat_state(s, n) for s in state)
    return repeat_rows(state.transpose(0, 1), n).transpose(0, 1)  # (layers, B, H) -> (layers, B*n, H)


def repeat_rows(x: Tensor, n: int) -> Tensor:
    """``x.repeat_interleave(n, 0)``: each row ``n`` times in a row, by expand and reshape (ONNX export
    of ``repeat_interleave`` with a symbolic count was wrong in torch 2.13)."""
    return x[:, None].expand(-1, n, *x.shape[1:]).reshape(x.shape[0] * n, *x.shape[1:])


#: initial smoothing weights of the holt anchor, before their squashing (holt_weights): alpha 0.5,
#: beta 0.1, phi 0.9 (statsmodels' damped trend keeps phi in 0.8-0.98)
HOLT_INIT = (0.0, -2.1972, 0.4055)


def holt_weights(raw: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(alpha, beta, phi) from unconstrained parameters: alpha, beta in (0, 1), phi in (0.8, 0.98)."""
    return torch.sigmoid(raw[0]), torch.sigmoid(raw[1]), 0.8 + 0.18 * torch.sigmoid(raw[2])


def damped_holt(y: Tensor, real: Tensor, alpha: Tensor, beta: Tensor, phi: Tensor, horizon: int):
    """Damped-trend exponential smoothing (Gardner & McKenzie 1985) of each row of ``y`` (B, L) over its
    real steps (left padding is skipped): the one-step-ahead fits (B, L) (the first real step fits
    itself) and the forecast (B, H), ``level + (phi + ... + phi^k) * trend`` for k = 1..H.

        fit_t   = l_{t-1} + phi b_{t-1}
        l_t     = alpha y_t + (1 - alpha) fit_t
        b_t     = beta (l_t - l_{t-1}) + (1 - beta) phi b_{t-1}
    """
    B, L = y.shape
    started = torch.zeros(B, dtype=torch.bool, device=y.device)
    level = torch.zeros(B, dtype=y.dtype, device=y.device)
    trend = torch.zeros_like(level)
    fits = []
    for t in range(L):
        is_real, first = real[:, t], real[:, t] & ~started
        fit = torch.where(first, y[:, t], level + phi * trend)
        new_level = alpha * y[:, t] + (1 - alpha) * fit
        new_trend = beta * (new_level - level) + (1 - beta) * phi * trend
        level = torch.where(first, y[:, t], torch.where(is_real, new_level, level))
        trend = torch.where(first | ~is_real, trend, new_trend)
        started = started | is_real
        fits.append(fit)
    damping = torch.cumsum(phi ** torch.arange(1, horizon + 1, dtype=y.dtype, device=y.device), 0)
    return torch.stack(fits, 1), level[:, None] + trend[:, None] * damping


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def member_losses(model: nn.Module, *batch: Tensor) -> Tensor:
    """One loss per ensemble member ((1,) for a single forecaster): for model selection per member."""
    if hasattr(model, "member_losses"):
        return model.member_losses(*batch)
    return model.loss(*batch)[None]


from . import ensemble  # noqa: E402, F401  (registers forecast.ensemble, which builds on Forecaster)

__all__ = ["Forecaster", "count_parameters", "member_losses"]
