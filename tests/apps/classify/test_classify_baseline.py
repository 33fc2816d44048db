"""The 1-NN DTW baseline (against a plain double loop) and the classification metrics."""

import numpy as np
import pytest

from rnnkit.apps.classify.dtw import dtw_distances, nearest_neighbour
from rnnkit.apps.classify.metrics import scores


def dtw_loop(a, b, window):
    n, m = len(a), len(b)
    band = max(int(np.ceil(window * max(n, m))), abs(n - m))
    D = np.full((n + 1, m + 1), np.inf)
    D[0, 0] = 0
    for i in range(1, n + 1):
        for j in range(max(1, i - band), min(m, i + band) + 1):
            D[i, j] = ((a[i - 1] - b[j - 1]) ** 2).sum() + min(D[i - 1, j - 1], D[i - 1, j], D[i, j - 1])
    return D[n, m]


def padded(series):
    T = max(len(s) for s in series)
    out = np.zeros((len(series), T, series[0].shape[1]))
    for i, s in enumerate(series):
        out[i, :len(s)] = s
    return out, np.array([len(s) for s in series])


@pytest.mark.parametrize("window", [0.0, 0.1, 0.5, 1.0])
def test_dtw_matches_the_textbook_recursion(window):
    rng = np.random.default_rng(0)
    queries = [rng.normal(size=(n, 2)) for n in (5, 9, 1, 12)]
    refs = [rng.normal(size=(n, 2)) for n in (8, 1, 12, 4)]
    q, ql = padded(queries)
    r, rl = padded(refs)
    got = dtw_distances(q, ql, r, rl, window, max_cells=40)  # several query chunks
    want = np.array([[dtw_loop(a, b, window) for b in refs] for a in queries])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_one_nearest_neighbour_on_shifted_bumps():
    # a bump early vs late: Euclidean-near to neither when shifted, DTW-near to its own class
    t = np.arange(30)
    bump = lambda c: np.exp(-0.5 * ((t - c) / 2.0) ** 2)[:, None]  # noqa: E731
    refs, rl = padded([bump(5), np.zeros((30, 1)) + 0.0 * bump(0) - bump(20)])
    queries, ql = padded([bump(9), -bump(16)])
    d = dtw_distances(queries, ql, refs, rl, window=0.3)
    np.testing.assert_array_equal(nearest_neighbour(d, np.array([0, 1])), [0, 1])


def test_scores():
    y = np.array([0, 0, 0, 1, 1, 2])
    p = np.array([0, 0, 1, 1, 1, 1])
    s = scores(y, p, ["a", "b", "c"])
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["balanced_accuracy"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    f1_b = 2 * 0.5 * 1 / 1.5
    assert s["macro_f1"] == pytest.approx((0.8 + f1_b + 0) / 3)
    assert s["confusion"] == [[2, 1, 0], [0, 2, 0], [0, 1, 0]]
    assert s["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
