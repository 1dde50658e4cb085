"""Device transforms: normalisation, rotation and downsampling."""

from __future__ import annotations

import pytest
import torch

from sclib.augment.transforms import downsample, normalize, random_rotate, rotate, to_unit_float


def unit_images(batch: int = 2, height: int = 16, width: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def test_normalize_uint8_values():
    images = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    normalised = normalize(images, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.5))
    assert normalised.dtype == torch.float32
    expected = torch.tensor([-1.0, (128 / 255 - 0.5) / 0.25, 1.0]).view(1, 3, 1, 1)
    assert torch.allclose(normalised, expected, atol=1e-6)


def test_normalize_float_input_matches_uint8():
    images = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    assert torch.allclose(normalize(images, mean, std), normalize(images / 255.0, mean, std))


def test_to_unit_float_rejects_integer_tensors():
    with pytest.raises(ValueError, match="int64"):
        to_unit_float(torch.zeros(1, 3, 2, 2, dtype=torch.int64))


def test_rotate_by_zero_is_identity():
    images = unit_images()
    rotated = rotate(images, torch.zeros(2))
    assert torch.allclose(rotated, images, atol=1e-6)


@pytest.mark.parametrize(("angle", "quarter_turns"), [(90.0, 1), (-90.0, -1), (180.0, 2)])
def test_rotate_matches_rot90_inside(angle, quarter_turns):
    images = unit_images()
    rotated = rotate(images, torch.full((2,), angle))
    expected = torch.rot90(images, quarter_turns, dims=(2, 3))
    assert torch.allclose(rotated[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], atol=1e-5)


def test_rotate_keeps_pixels_rigid_when_not_square():
    images = torch.zeros(1, 1, 10, 30)
    images[0, 0, 5, 17] = 1.0  # 2.5 px right of and 0.5 px below the centre (4.5, 14.5)
    rotated = rotate(images, torch.tensor([90.0]))
    # a quarter turn counter-clockwise moves it 2.5 px above and 0.5 px right of the centre
    assert (rotated[0, 0] > 0.5).nonzero().tolist() == [[2, 15]]


def test_rotation_fills_corners_with_black():
    images = torch.ones(1, 3, 32, 32)
    rotated = rotate(images, torch.tensor([45.0]))
    assert rotated[0, :, 0, 0].abs().max() == 0
    assert rotated[0, :, 16, 16].min() == pytest.approx(1.0)


def test_random_rotate_angles_in_range_and_reproducible():
    images = unit_images(batch=64, height=8, width=8)
    first, angles = random_rotate(images, torch.Generator().manual_seed(3), max_degrees=30.0)
    second, again = random_rotate(images, torch.Generator().manual_seed(3), max_degrees=30.0)
    assert angles.shape == (64,)
    assert angles.abs().max() <= 30.0
    assert angles.min() < 0 < angles.max()
    assert torch.equal(angles, again)
    assert torch.equal(first, second)


def test_random_rotate_applies_returned_angles():
    images = unit_images()
    rotated, angles = random_rotate(images, torch.Generator().manual_seed(5))
    assert torch.allclose(rotated, rotate(images, angles))


def test_downsample_averages_blocks():
    images = torch.arange(16.0).view(1, 1, 4, 4)
    small = downsample(images, 2)
    assert small.shape == (1, 1, 2, 2)
    assert small.flatten().tolist() == [2.5, 4.5, 10.5, 12.5]


def test_downsample_factor_one_returns_input():
    images = unit_images()
    assert downsample(images, 1) is images


def test_downsample_rejects_zero_factor():
    with pytest.raises(ValueError, match="factor"):
        downsample(unit_images(), 0)


@pytest.mark.gpu
def test_random_rotate_on_cuda_matches_cpu():
    images = unit_images()
    expected, angles = random_rotate(images, torch.Generator().manual_seed(1))
    actual, cuda_angles = random_rotate(images.cuda(), torch.Generator().manual_seed(1))
    assert cuda_angles.device.type == "cuda"
    assert torch.allclose(cuda_angles.cpu(), angles)
    assert torch.allclose(actual.cpu(), expected, atol=1e-5)
