"""A second non-neural baseline: MiniRocket features and a ridge classifier.

MiniRocket (Dempster, Schmidt & Webb 2021, "MINIROCKET: A Very Fast (Almost) Deterministic Transform
for Time Series Classification") convolves each series with 84 fixed kernels of length 9 (weight -1,
and 2 at three of the nine taps: every choice of three) at exponentially spaced dilations, subtracts
biases drawn from quantiles of the convolution of a training case, and keeps the proportion of
positive values (PPV) of each (kernel, dilation, bias):

    PPV_{k,d,b}(x) = (1/|T|) sum_{t in T} [ (W_k *_d x)_t - b > 0 ]

About 10,000 features (``features``), then a ridge regression on +-1 one-vs-rest targets whose penalty
is chosen among 10^-3 .. 10^3 by exact leave-one-out error (the SVD of the feature matrix gives every
candidate's hat matrix at once), as the paper does with scikit-learn's ``RidgeClassifierCV``.
Written here from the paper's description, in torch, so that rnnkit needs neither aeon nor sktime.

Choices this implementation makes (the paper is silent or the archive has equal lengths only):
- Dilations: ``floor(2^e)`` for ``e`` evenly spaced in ``[0, log2((L - 1) / 8)]`` with ``L`` the
  median training length, the features of a kernel spread over the distinct dilations in proportion
  to how often each came up (the paper's rule).
- Padding: alternating over the (dilation, kernel) combinations, as in the paper; on a case shorter
  than an unpadded kernel's reach the padded output is used, so every case has a value.
- Variable lengths: the PPV averages over the case's own steps only (padding never counts).
- Several dimensions: each (dilation, kernel) sums its convolution over a random subset of
  1 to min(D, 9) dimensions (the paper's multivariate variant), drawn from ``seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

KERNEL_LENGTH = 9
N_KERNELS = 84  # every choice of three taps of nine
MAX_DILATIONS = 32
ALPHAS = tuple(float(a) for a in np.logspace(-3, 3, 10))
GOLDEN = (math.sqrt(5) + 1) / 2


def _kernels() -> torch.Tensor:
    """(84, 9) weights: -1 everywhere, 2 at the three chosen taps."""
    from itertools import combinations

    w = -torch.ones(N_KERNELS, KERNEL_LENGTH, dtype=torch.float64)
    for k, taps in enumerate(combinations(range(KERNEL_LENGTH), 3)):
        w[k, list(taps)] = 2.0
    return w


@dataclass
class MiniRocket:
    """The fitted transform: per dilation, the dimensions each kernel reads and its biases."""

    dilations: list[int]
    per_dilation: list[int]  # features per kernel at each dilation
    channels: list[torch.Tensor]  # per dilation: (84, D) 0/1 dimension masks
    biases: list[torch.Tensor]  # per dilation: (84, per_dilation[i]) biases

    @property
    def n_features(self) -> int:
        return N_KERNELS * sum(self.per_dilation)

    @classmethod
    def fit(cls, x: np.ndarray, lengths: np.ndarray, features: int = 10_000, seed: int = 0) -> MiniRocket:
        """Choose dilations from the median length and biases from random training cases' convolutions."""
        rng = np.random.default_rng(seed)
        n, _, dims = x.shape
        length = int(np.median(lengths))
        per_kernel = max(1, features // N_KERNELS)
        max_exponent = math.log2(max(length - 1, 1) / (KERNEL_LENGTH - 1)) if length > KERNEL_LENGTH else 0.0
        raw = np.floor(2 ** np.linspace(0, max_exponent, min(per_kernel, MAX_DILATIONS))).astype(int)
        dilations, counts = np.unique(raw, return_counts=True)
        per_dilation = (counts * (per_kernel // len(raw))).tolist()
        for i in range(per_kernel - sum(per_dilation)):  # the remainder to the smallest dilations
            per_dilation[i % len(per_dilation)] += 1
        weights = _kernels()
        xt = _series(x, lengths)
        channels, biases, feature = [], [], 0
        for i, (d, m) in enumerate(zip(dilations.tolist(), per_dilation, strict=True)):
            mask = torch.zeros(N_KERNELS, dims, dtype=torch.float64)
            for k in range(N_KERNELS):
                top = math.log2(min(dims, KERNEL_LENGTH) + 1)
                size = min(dims, max(1, int(2 ** rng.uniform(0, top))))
                mask[k, rng.choice(dims, size, replace=False)] = 1.0
            bias = torch.empty(N_KERNELS, m, dtype=torch.float64)
            case = rng.integers(0, n, N_KERNELS)
            for k in range(N_KERNELS):
                out = _convolve(xt[case[k]:case[k] + 1], weights[k:k + 1], mask[k:k + 1], d, _padded(i, k))
                valid = _valid(out.shape[-1], lengths[case[k]:case[k] + 1], d, _padded(i, k))[0]
                values = out[0, 0][valid] if valid.any() else out[0, 0, :1]
                quantiles = torch.tensor([((feature + k * m + j + 1) * GOLDEN) % 1 for j in range(m)],
                                         dtype=torch.float64)
                bias[k] = torch.quantile(values, quantiles)
            feature += N_KERNELS * m
            channels.append(mask)
            biases.append(bias)
        return cls(dilations.tolist(), per_dilation, channels, biases)

    def transform(self, x: np.ndarray, lengths: np.ndarray, chunk: int = 256) -> np.ndarray:
        """(N, n_features) proportions of positive values, float64."""
        weights = _kernels()
        out = np.empty((len(x), self.n_features))
        for start in range(0, len(x), chunk):
            ln = lengths[start:start + chunk]
            xt = _series(x[start:start + chunk], ln)
            column = 0
            for i, (d, m) in enumerate(zip(self.dilations, self.per_dilation, strict=True)):
                for padded in (True, False):
                    ks = [k for k in range(N_KERNELS) if _padded(i, k) == padded]
                    conv = _convolve(xt, weights[ks], self.channels[i][ks], d, padded)  # (B, K, T')
                    ppv = _ppv(conv, _valid(conv.shape[-1], ln, d, padded), self.biases[i][ks])  # (B, K, m)
                    short = torch.from_numpy(ln <= (KERNEL_LENGTH - 1) * d) if not padded else None
                    if short is not None and short.any():  # too short for this reach: the padded convolution
                        full = _convolve(xt[short], weights[ks], self.channels[i][ks], d, True)
                        ppv[short] = _ppv(full, _valid(full.shape[-1], ln[short.numpy()], d, True), self.biases[i][ks])
                    for j, k in enumerate(ks):
                        out[start:start + len(xt), column + k * m:column + (k + 1) * m] = ppv[:, j].numpy()
                column += N_KERNELS * m
        return out


def _series(x: np.ndarray, lengths: np.ndarray) -> torch.Tensor:
    """(N, D, T) float64 with every step after a case's end zero, as a padded convolution assumes."""
    xt = torch.from_numpy(x).double().transpose(1, 2)
    inside = torch.arange(xt.shape[-1])[None, :] < torch.from_numpy(np.asarray(lengths))[:, None]
    return xt * inside[:, None, :]


def _padded(dilation_index: int, kernel: int) -> bool:
    return (dilation_index * N_KERNELS + kernel) % 2 == 0


def _convolve(xt: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor, dilation: int, padded: bool) -> torch.Tensor:
    """(B, K, T') convolutions of (B, D, T) series with K kernels, each over its masked dimensions."""
    w = weights[:, None, :] * mask[:, :, None]  # (K, D, 9)
    pad = (KERNEL_LENGTH - 1) * dilation // 2 if padded else 0
    return F.conv1d(xt, w, padding=pad, dilation=dilation)


def _valid(out_len: int, lengths: np.ndarray, dilation: int, padded: bool) -> torch.Tensor:
    """(B, T') the output steps inside each case: all of its steps (padded), or those whose
    kernel reach stays inside it (unpadded)."""
    last = torch.from_numpy(np.asarray(lengths)).long()
    if not padded:
        last = last - (KERNEL_LENGTH - 1) * dilation
    return torch.arange(out_len)[None, :] < last[:, None]


def _ppv(conv: torch.Tensor, valid: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """(B, K, m) share of valid steps where convolution k exceeds each of its m biases."""
    positive = (conv[:, :, None, :] > bias[None, :, :, None]) & valid[:, None, None, :]
    return positive.sum(-1).double() / valid.sum(1).clamp_min(1)[:, None, None].double()


@dataclass
class RidgeClassifier:
    """Ridge regression on +-1 one-vs-rest targets of standardised features; the penalty with the
    smallest leave-one-out squared error among ``ALPHAS``."""

    mean: torch.Tensor
    scale: torch.Tensor
    coef: torch.Tensor  # (F, C) (C = 1 for two classes)
    intercept: torch.Tensor
    alpha: float

    @classmethod
    def fit(cls, features: np.ndarray, y: np.ndarray, n_classes: int) -> RidgeClassifier:
        x = torch.from_numpy(features).double()
        mean, scale = x.mean(0), x.std(0, unbiased=False)
        scale = torch.where(scale > 1e-12, scale, torch.ones_like(scale))  # constant features stay 0
        x = (x - mean) / scale
        targets = -torch.ones(len(y), n_classes, dtype=torch.float64)
        targets[torch.arange(len(y)), torch.from_numpy(y)] = 1.0
        if n_classes == 2:
            targets = targets[:, 1:]
        offset = targets.mean(0)
        t = targets - offset
        # x = U S V^T: the fit of penalty a is U diag(s^2/(s^2+a)) U^T t, its hat matrix's diagonal
        # sum_j U_ij^2 s_j^2/(s_j^2+a), so every candidate's leave-one-out residual comes from one SVD
        u, s, vh = torch.linalg.svd(x, full_matrices=False)
        ut = u.T @ t
        best = None
        for a in ALPHAS:
            shrink = s ** 2 / (s ** 2 + a)
            fitted = u @ (shrink[:, None] * ut)
            hat = (u ** 2) @ shrink
            loo = ((t - fitted) / (1 - hat).clamp_min(1e-12)[:, None]).pow(2).mean().item()
            if best is None or loo < best[0]:
                best = (loo, a)
        alpha = best[1]
        coef = vh.T @ ((s / (s ** 2 + alpha))[:, None] * ut)
        return cls(mean, scale, coef, offset, alpha)

    def decision(self, features: np.ndarray) -> torch.Tensor:
        x = (torch.from_numpy(features).double() - self.mean) / self.scale
        return x @ self.coef + self.intercept

    def predict(self, features: np.ndarray) -> np.ndarray:
        d = self.decision(features)
        if d.shape[1] == 1:
            return (d[:, 0] > 0).long().numpy()
        return d.argmax(1).numpy()


def minirocket_predictions(train_x: np.ndarray, train_len: np.ndarray, train_y: np.ndarray, n_classes: int,
                           x: np.ndarray, lengths: np.ndarray, seed: int = 0, features: int = 10_000) -> np.ndarray:
    """Class indices of the cases ``(x, lengths)`` by MiniRocket + ridge fitted on the training cases."""
    transform = MiniRocket.fit(train_x, train_len, features, seed)
    ridge = RidgeClassifier.fit(transform.transform(train_x, train_len), train_y, n_classes)
    return ridge.predict(transform.transform(x, lengths))
