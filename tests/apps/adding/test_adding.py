"""The adding-problem generator: shapes, markers (exactly one per half) and the target."""

import pytest
import torch

from rnnkit.tasks import ADDING_BASELINE_MSE, adding_batch


@pytest.mark.parametrize("T", [2, 3, 10, 101])
def test_shapes_dtype_and_ranges(T):
    x, y = adding_batch(T, 7, generator=torch.Generator().manual_seed(0))
    assert x.shape == (T, 7, 2)
    assert y.shape == (7,)
    assert x.dtype == y.dtype == torch.get_default_dtype()
    values, markers = x[..., 0], x[..., 1]
    assert values.min() >= 0 and values.max() <= 1
    assert set(markers.unique().tolist()) <= {0.0, 1.0}
    assert y.min() >= 0 and y.max() <= 2


@pytest.mark.parametrize("T", [2, 3, 10, 101])
def test_exactly_one_marker_in_each_half(T):
    x, _ = adding_batch(T, 500, generator=torch.Generator().manual_seed(1))
    markers = x[..., 1]
    half = T // 2
    assert torch.equal(markers.sum(0), torch.full((500,), 2.0))
    assert torch.equal(markers[:half].sum(0), torch.ones(500))
    assert torch.equal(markers[half:].sum(0), torch.ones(500))


def test_marker_positions_cover_each_half():
    # Positions are drawn over the whole of each half, not a fixed step.
    T = 10
    x, _ = adding_batch(T, 2000, generator=torch.Generator().manual_seed(2))
    first = x[: T // 2, :, 1].argmax(0)
    second = x[T // 2 :, :, 1].argmax(0) + T // 2
    assert set(first.tolist()) == set(range(T // 2))
    assert set(second.tolist()) == set(range(T // 2, T))


def test_target_is_sum_of_marked_values():
    x, y = adding_batch(50, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    expected = (x[..., 0] * x[..., 1]).sum(0)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)
    # Computed per sequence, by hand, for one of them.
    marked = x[:, 5, 1].nonzero().flatten().tolist()
    assert len(marked) == 2
    assert y[5].item() == pytest.approx(x[marked[0], 5, 0].item() + x[marked[1], 5, 0].item())


def test_baseline_mse_of_predicting_one():
    _, y = adding_batch(20, 200_000, generator=torch.Generator().manual_seed(4))
    assert abs(ADDING_BASELINE_MSE - 1 / 6) < 1e-12
    assert torch.mean((y - 1.0) ** 2).item() == pytest.approx(ADDING_BASELINE_MSE, abs=0.003)


def test_generator_makes_it_reproducible():
    a = adding_batch(30, 8, generator=torch.Generator().manual_seed(5))
    b = adding_batch(30, 8, generator=torch.Generator().manual_seed(5))
    c = adding_batch(30, 8, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_dtype_and_device_arguments():
    x, y = adding_batch(6, 3, dtype=torch.float64, device="cpu")
    assert x.dtype == y.dtype == torch.float64
    assert x.device.type == y.device.type == "cpu"


@pytest.mark.parametrize(("T", "batch"), [(1, 4), (0, 4), (10, 0), (2.5, 4), (True, 4)])
def test_bad_sizes_raise(T, batch):
    with pytest.raises(ValueError):
        adding_batch(T, batch)
