"""The non-neural baseline: 1-nearest-neighbour with dynamic time warping (DTW).

Dependent DTW for several dimensions (DTW_D: the cost of matching two steps is the squared Euclidean
distance over all dimensions), a Sakoe-Chiba band of ``window`` x the longer series' length (at least
the length difference, so series of different lengths can always be aligned), values normalised per
dimension as the network sees them. The dynamic programme runs over all (query, reference) pairs at
once, one anti-diagonal at a time in torch: fast enough for the UCR/UEA sets rnnkit ships docs for
(seconds), memory bounded by processing the queries in chunks.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def dtw_distances(queries: np.ndarray, q_len: np.ndarray, refs: np.ndarray, r_len: np.ndarray,
                  window: float = 0.1, max_cells: int = 20_000_000) -> np.ndarray:
    """(M, N) DTW distances (squared-cost sums) between padded ``queries (M, T, D)`` and ``refs (N, S, D)``;
    the queries go in chunks of at most ``max_cells`` (pairs x steps) per buffer."""
    M, N = len(queries), len(refs)
    out = np.empty((M, N), dtype=np.float64)
    chunk = max(1, max_cells // max(N * (queries.shape[1] + 1), 1))
    r = torch.from_numpy(refs).double()
    rl = torch.from_numpy(r_len).long()
    for start in range(0, M, chunk):
        q = torch.from_numpy(queries[start:start + chunk]).double()
        ql = torch.from_numpy(q_len[start:start + chunk]).long()
        out[start:start + len(q)] = _dtw_block(q, ql, r, rl, window).numpy()
    return out


def _dtw_block(q: torch.Tensor, ql: torch.Tensor, r: torch.Tensor, rl: torch.Tensor, window: float) -> torch.Tensor:
    """Anti-diagonal sweep: cell (i, j) needs (i-1, j-1), (i-1, j), (i, j-1), which lie on the two previous
    diagonals ``i + j = k - 2, k - 1``; each diagonal is one vectorised step over every pair and cell."""
    M, T, _ = q.shape
    N, S, _ = r.shape
    band = torch.maximum((window * torch.maximum(ql[:, None], rl[None, :])).ceil().long(),
                         (ql[:, None] - rl[None, :]).abs())[..., None]  # (M, N, 1)
    inf = math.inf
    # diagonals as vectors over i = 0..T: D_k[i] = D(i, k - i); D(0, 0) = 0, the other borders inf
    before = torch.full((M, N, T + 1), inf, dtype=torch.float64)  # k - 2
    before[:, :, 0] = 0.0
    last = torch.full((M, N, T + 1), inf, dtype=torch.float64)  # k - 1
    result = torch.full((M, N), inf, dtype=torch.float64)
    end = (ql[:, None] + rl[None, :])  # the diagonal holding D(len_q, len_r)
    widest = int(band.max())
    q_sq, r_sq = (q ** 2).sum(-1), (r ** 2).sum(-1)  # (M, T), (N, S)
    spare = torch.empty_like(last)
    for k in range(2, T + S + 1):
        # only the cells inside the widest band: |i - j| <= widest with j = k - i; i = lo..hi, j descending
        lo, hi = max(1, k - S, (k - widest + 1) // 2), min(T, k - 1, (k + widest) // 2)
        cur = spare  # a recycled buffer: the next two diagonals read only cells lo - 1 .. hi + 1 of this one
        cur[:, :, max(lo - 1, 0):min(hi + 2, T + 1)] = inf
        if lo <= hi:
            qi = q[:, lo - 1:hi]  # steps i - 1 (0-based), (M, cells, D)
            rj = r[:, k - hi - 1:k - lo].flip(1)  # steps j - 1 in the same order as i
            # squared distances |q_i|^2 + |r_j|^2 - 2 q_i.r_j: one batched matrix product per diagonal
            dot = torch.bmm(qi.transpose(0, 1), rj.permute(1, 2, 0))  # (cells, M, N)
            cost = (q_sq[:, lo - 1:hi].T[:, :, None] + r_sq[:, k - hi - 1:k - lo].flip(1).T[:, None, :] - 2 * dot)
            cost = cost.clamp_min(0).permute(1, 2, 0)  # (M, N, cells)
            i = torch.arange(lo, hi + 1)
            j = k - i
            allowed = ((i - j).abs()[None, None, :] <= band) & (i[None, None, :] <= ql[:, None, None]) \
                & (j[None, None, :] <= rl[None, :, None])
            prev = torch.minimum(torch.minimum(before[:, :, lo - 1:hi], last[:, :, lo - 1:hi]), last[:, :, lo:hi + 1])
            cur[:, :, lo:hi + 1] = (cost + prev).masked_fill(~allowed, inf)
        hit = end == k
        if hit.any():
            m_idx, n_idx = hit.nonzero(as_tuple=True)
            result[m_idx, n_idx] = cur[m_idx, n_idx, ql[m_idx]]
        spare, before, last = before, last, cur
    return result


def nearest_neighbour(distances: np.ndarray, ref_labels: np.ndarray) -> np.ndarray:
    """The label of each query's nearest reference (ties: the first reference)."""
    return ref_labels[np.argmin(distances, axis=1)]
