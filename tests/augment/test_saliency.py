"""Input saliency and its B-spline smoothing."""

from __future__ import annotations

import pytest
import torch

from sclib.augment.saliency import (
    bspline_kernel,
    bspline_kernel_2d,
    bspline_upsample,
    input_saliency,
    minmax_rescale,
    smooth_saliency,
)
from sclib.losses import two_head_loss
from sclib.models.two_head import build_model


def images(batch: int = 3, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def model():
    return build_model("simple_cnn", weights=None)


def batch_norm_state(model) -> dict[str, torch.Tensor]:
    return {
        name: value.clone()
        for name, value in model.state_dict().items()
        if "running" in name or "num_batches" in name
    }


def test_saliency_shape_and_range(model):
    saliency = input_saliency(model, images(), torch.tensor([0, 1, 2]))
    assert saliency.shape == (3, 1, 64, 64)
    assert saliency.dtype == torch.float32
    assert (saliency >= 0).all()
    assert torch.isfinite(saliency).all()
    assert saliency.amax(dim=(1, 2, 3)).min() > 0


def test_saliency_is_rms_of_input_gradient(model):
    batch = images()
    labels = torch.zeros(3, dtype=torch.long)
    model.eval()
    inputs = batch.clone().requires_grad_(True)
    (3 * two_head_loss(model(inputs), labels).total).backward()
    expected = inputs.grad.square().mean(dim=1, keepdim=True).sqrt()

    model.train()
    assert torch.allclose(input_saliency(model, batch, labels), expected, atol=1e-6)


def test_saliency_independent_of_batch(model):
    batch = images()
    labels = torch.zeros(3, dtype=torch.long)
    together = input_saliency(model, batch, labels)
    alone = input_saliency(model, batch[1:2], labels[1:2])
    assert torch.allclose(together[1:2], alone, atol=1e-6)


def test_saliency_leaves_model_state_alone(model):
    model.train()
    model.backbone.eval()  # mixed modes must come back as they were
    before = batch_norm_state(model)
    input_saliency(model, images(), torch.tensor([0, 0, 2]))

    assert model.training
    assert not model.backbone.training
    assert model.anomaly_head.training
    for name, value in batch_norm_state(model).items():
        assert torch.equal(value, before[name]), name
    assert all(p.grad is None for p in model.parameters())


def test_saliency_keeps_existing_gradients(model):
    two_head_loss(model(images()), torch.tensor([0, 1, 2])).total.backward()
    before = [p.grad.clone() for p in model.parameters()]
    input_saliency(model, images(seed=1), torch.tensor([0, 0, 0]))
    for grad, old in zip((p.grad for p in model.parameters()), before):
        assert torch.equal(grad, old)


def test_saliency_works_under_no_grad(model):
    with torch.no_grad():
        saliency = input_saliency(model, images(), torch.tensor([0, 0, 0]))
    assert saliency.amax() > 0


@pytest.mark.parametrize("spacing", [1, 2, 3, 7])
@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_bspline_kernel_normalisation(spacing, order):
    kernel = bspline_kernel(spacing, order)
    assert kernel.shape == ((order + 1) * (spacing - 1) + 1,)
    assert kernel.sum().item() == pytest.approx(spacing)
    assert torch.allclose(kernel, kernel.flip(0))
    assert bspline_kernel_2d(spacing, order).sum().item() == pytest.approx(spacing**2)


@pytest.mark.parametrize("spacing", [2, 3, 5])
def test_bspline_shifted_copies_sum_to_one(spacing):
    kernel = bspline_kernel(spacing, order=2)
    total = torch.zeros(len(kernel) + 6 * spacing, dtype=torch.float64)
    for shift in range(0, len(total) - len(kernel) + 1, spacing):
        total[shift : shift + len(kernel)] += kernel
    interior = total[len(kernel) : -len(kernel)]
    assert torch.allclose(interior, torch.ones_like(interior))


def test_quadratic_kernel_values():
    # three boxes of width 2 convolved: 1, 3, 3, 1 (sum 8 = 2**3), divided by 2**2
    assert bspline_kernel(2, order=2).tolist() == [0.25, 0.75, 0.75, 0.25]
    # three boxes of width 3: 1, 3, 6, 7, 6, 3, 1 (sum 27), divided by 3**2
    assert torch.allclose(bspline_kernel(3, order=2) * 9, torch.tensor(
        [1.0, 3.0, 6.0, 7.0, 6.0, 3.0, 1.0], dtype=torch.float64))


def test_bspline_upsample_keeps_constants():
    grid = torch.full((2, 1, 5, 5), 0.7)
    upsampled = bspline_upsample(grid, spacing=4, order=2)
    assert upsampled.shape == (2, 1, 20, 20)
    assert torch.allclose(upsampled, torch.full_like(upsampled, 0.7))


@pytest.mark.parametrize("spacing", [3, 4])
def test_bspline_upsample_centres_peak_on_its_cell(spacing):
    grid = torch.zeros(1, 1, 6, 6)
    grid[0, 0, 2, 4] = 1.0
    upsampled = bspline_upsample(grid, spacing=spacing, order=2)[0, 0]
    peak_rows = (upsampled.amax(dim=1) == upsampled.max()).nonzero().flatten()
    peak_cols = (upsampled.amax(dim=0) == upsampled.max()).nonzero().flatten()
    assert peak_rows.float().mean().item() == pytest.approx(2 * spacing + (spacing - 1) / 2)
    assert peak_cols.float().mean().item() == pytest.approx(4 * spacing + (spacing - 1) / 2)


def test_smooth_saliency_shape_and_range():
    saliency = torch.rand(4, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    smooth = smooth_saliency(saliency)
    assert smooth.shape == (4, 1, 64, 64)
    assert torch.isfinite(smooth).all()
    assert smooth.amin(dim=(1, 2, 3)).tolist() == [0.0] * 4
    assert smooth.amax(dim=(1, 2, 3)).tolist() == [1.0] * 4


def test_smooth_saliency_float32_under_bf16_autocast():
    saliency = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        smooth = smooth_saliency(saliency)
    assert smooth.dtype == torch.float32
    assert torch.allclose(smooth, smooth_saliency(saliency))


def test_smooth_saliency_constant_map_gives_zeros():
    smooth = smooth_saliency(torch.stack([torch.zeros(1, 36, 36), torch.full((1, 36, 36), 3.0)]))
    assert torch.equal(smooth, torch.zeros_like(smooth))


def test_smooth_saliency_keeps_hot_region():
    saliency = torch.zeros(1, 1, 72, 72)
    saliency[..., 40:52, 8:20] = 1.0
    smooth = smooth_saliency(saliency, grid=18, order=2)
    peak = (smooth[0, 0] == 1.0).nonzero().float().mean(dim=0)
    assert 40 <= peak[0] < 52
    assert 8 <= peak[1] < 20
    assert smooth[0, 0, :20, 40:].max() < 0.05


def test_smooth_saliency_image_smaller_than_grid():
    smooth = smooth_saliency(torch.rand(2, 1, 16, 16), grid=18)
    assert smooth.shape == (2, 1, 16, 16)
    assert torch.isfinite(smooth).all()


def test_smooth_saliency_rejects_zero_grid():
    with pytest.raises(ValueError, match="grid"):
        smooth_saliency(torch.rand(1, 1, 8, 8), grid=0)


def test_minmax_rescale_per_map():
    maps = torch.stack([torch.tensor([[[1.0, 3.0]]]), torch.tensor([[[-2.0, -1.0]]])])
    assert minmax_rescale(maps).flatten().tolist() == [0.0, 1.0, 0.0, 1.0]


def test_smooth_saliency_constant_map_is_zero():
    smooth = smooth_saliency(torch.full((1, 1, 64, 64), 1.0))

    assert torch.count_nonzero(smooth) == 0
