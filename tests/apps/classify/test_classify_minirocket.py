"""The MiniRocket + ridge baseline: the transform against a direct loop, padding that changes nothing,
the ridge's leave-one-out choice against refitting without each case, and the CLI with it."""

import json
from itertools import combinations

import numpy as np
import pytest

from rnnkit.apps.classify.minirocket import (
    ALPHAS,
    KERNEL_LENGTH,
    N_KERNELS,
    MiniRocket,
    RidgeClassifier,
    _kernels,
    _padded,
    minirocket_predictions,
)


def series(lengths, dims, seed=0):
    rng = np.random.default_rng(seed)
    T = max(lengths)
    x = np.zeros((len(lengths), T, dims), dtype=np.float32)
    for i, n in enumerate(lengths):
        x[i, :n] = rng.normal(size=(n, dims))
    return x, np.array(lengths)


def test_kernels_are_every_choice_of_three_taps_and_sum_to_zero():
    w = _kernels()
    assert w.shape == (N_KERNELS, KERNEL_LENGTH)
    taps = {tuple(np.flatnonzero(row.numpy() == 2)) for row in w}
    assert taps == set(combinations(range(KERNEL_LENGTH), 3))
    assert (w.sum(1) == 0).all()  # an offset added to a series changes no convolution


def ppv_loop(x, n, weights, channels, dilation, padded, bias):
    """The proportion of positive values of one kernel on one case, step by step."""
    reach = (KERNEL_LENGTH - 1) * dilation
    pad = reach // 2 if padded else 0
    if not padded and n <= reach:  # too short: the padded convolution (the module's rule)
        pad, padded = reach // 2, True
    xs = np.zeros((n + 2 * pad, x.shape[1]))
    xs[pad:pad + n] = x[:n]
    steps = n if padded else n - reach
    outs = [sum(weights[j] * xs[t + j * dilation, channels].sum() for j in range(KERNEL_LENGTH)) for t in range(steps)]
    return np.array([np.mean([o > b for o in outs]) for b in bias])


def test_transform_matches_a_direct_loop():
    x, lengths = series([40, 23, 7, 40], dims=3)
    rocket = MiniRocket.fit(x, lengths, features=84 * 6, seed=1)
    assert rocket.dilations[0] == 1 and len(rocket.dilations) > 1  # median 31.5 steps: dilations 1..3
    feats = rocket.transform(x, lengths, chunk=3)
    assert feats.shape == (4, rocket.n_features) and rocket.n_features == 84 * 6
    assert ((feats >= 0) & (feats <= 1)).all()
    w = _kernels().numpy()
    column = 0
    for i, (d, m) in enumerate(zip(rocket.dilations, rocket.per_dilation, strict=True)):
        for k in (0, 1, 41, 83):
            channels = np.flatnonzero(rocket.channels[i][k].numpy())
            bias = rocket.biases[i][k].numpy()
            for case in range(4):
                want = ppv_loop(x[case].astype(np.float64), lengths[case], w[k], channels, d, _padded(i, k), bias)
                np.testing.assert_allclose(feats[case, column + k * m:column + (k + 1) * m], want, atol=1e-12)
        column += N_KERNELS * m


def test_padding_after_a_case_changes_no_feature():
    x, lengths = series([30, 12, 25], dims=2)
    rocket = MiniRocket.fit(x, lengths, features=500, seed=0)
    noisy = x.copy()
    for i, n in enumerate(lengths):
        noisy[i, n:] = 1e3 * (i + 1)
    np.testing.assert_array_equal(rocket.transform(x, lengths), rocket.transform(noisy, lengths))


def test_the_seed_fixes_the_transform():
    x, lengths = series([50] * 6, dims=1)
    a = MiniRocket.fit(x, lengths, features=300, seed=3).transform(x, lengths)
    np.testing.assert_array_equal(a, MiniRocket.fit(x, lengths, features=300, seed=3).transform(x, lengths))
    assert not np.array_equal(a, MiniRocket.fit(x, lengths, features=300, seed=4).transform(x, lengths))


def test_ridge_is_the_closed_form_with_the_leave_one_out_penalty():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(30, 12))
    y = (features[:, 0] + 0.5 * rng.normal(size=30) > 0).astype(int)
    y[:10] = 2  # three classes
    ridge = RidgeClassifier.fit(features, y, 3)
    mean, scale = features.mean(0), features.std(0)
    z = (features - mean) / scale
    t = -np.ones((30, 3))
    t[np.arange(30), y] = 1
    offset = t.mean(0)

    def solve(zz, tt, a):
        return np.linalg.solve(zz.T @ zz + a * np.eye(zz.shape[1]), zz.T @ (tt - tt.mean(0)))

    np.testing.assert_allclose(ridge.coef.numpy(), solve(z, t, ridge.alpha), atol=1e-9)
    np.testing.assert_allclose(ridge.intercept.numpy(), offset, atol=1e-12)

    def loo_error(a):  # refit without each case (its centring kept, as the hat-matrix identity assumes)
        errors = []
        tc = t - offset
        for i in range(30):
            keep = np.arange(30) != i
            coef = np.linalg.solve(z[keep].T @ z[keep] + a * np.eye(12), z[keep].T @ tc[keep])
            errors.append(((tc[i] - z[i] @ coef) ** 2).mean())
        return np.mean(errors)

    errors = [loo_error(a) for a in ALPHAS]
    assert ridge.alpha == ALPHAS[int(np.argmin(errors))]


def test_two_classes_use_one_decision_column():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(20, 5))
    y = (features[:, 2] > 0).astype(int)
    ridge = RidgeClassifier.fit(features, y, 2)
    assert ridge.coef.shape == (5, 1)
    assert (ridge.predict(features) == y).mean() >= 0.9


def test_minirocket_separates_shapes_of_different_lengths():
    # ramps against sines, lengths 20-60, shifted and scaled: a task a working transform gets right
    rng = np.random.default_rng(0)

    def make(n):
        cases, labels = [], []
        for i in range(n):
            length = int(rng.integers(20, 61))
            t = np.linspace(0, 1, length)
            label = i % 2
            v = np.sin(2 * np.pi * 3 * t + rng.uniform(0, 6)) if label else t * rng.uniform(0.5, 2)
            cases.append(v + 0.3 * rng.normal(size=length) + rng.normal())
            labels.append(label)
        T = max(map(len, cases))
        x = np.zeros((n, T, 1), dtype=np.float32)
        for i, c in enumerate(cases):
            x[i, :len(c), 0] = c
        return x, np.array([len(c) for c in cases]), np.array(labels)

    xtr, ltr, ytr = make(40)
    xte, lte, yte = make(60)
    pred = minirocket_predictions(xtr, ltr, ytr, 2, xte, lte, features=2000)
    assert (pred == yte).mean() >= 0.95


@pytest.mark.parametrize("folds", ["1", "3"])
def test_cli_reports_the_minirocket_baseline(tmp_path, capsys, folds):
    from rnnkit.cli import main

    out = tmp_path / "run"
    args = ["classify", "train", "--out", str(out), "--example", "--epochs", "2", "--hidden", "8", "-q",
            "--set", "filters=8,8,8", "--set", "baseline=minirocket", "--set", f"folds={folds}"]
    assert main(args) == 0, capsys.readouterr().err
    val = json.loads((out / "validation.json").read_text())
    suffix = " out-of-fold" if folds == "3" else ""
    assert f"minirocket+ridge{suffix}" in val["metrics"]
    assert main(["classify", "evaluate", str(out), "-q"]) == 0, capsys.readouterr().err
    report = json.loads((out / "evaluation.json").read_text())
    assert report["metrics"]["minirocket+ridge"]["accuracy"] >= 0.9  # the synthetic shapes are easy
