"""Batched image transforms that run on the training device.

Images arrive from the cache as uint8 (B, 3, H, W). A training step converts them to
float in [0, 1], rotates them by a random angle (zero fill, so the corners turn black),
and normalises them with the backbone spec's mean and std. Rotation must come before
normalisation, because zero is black only in [0, 1] pixel space.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """Convert uint8 images (B, 3, H, W) to float32 in [0, 1]; float input passes through.

    Float input is assumed to be in [0, 1] already and is only cast to float32.
    """
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if not images.dtype.is_floating_point:
        raise ValueError(f"images must be uint8 or float, got dtype {images.dtype}.")
    return images.float()


def normalize(
    images: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """Scale images to [0, 1] and normalise each channel: ``(x - mean) / std``.

    Args:
        images: uint8 (B, 3, H, W) in [0, 255], or float (B, 3, H, W) in [0, 1].
        mean: per-channel mean on the [0, 1] scale, for example ``spec.mean``.
        std: per-channel standard deviation on the [0, 1] scale, for example ``spec.std``.

    Returns:
        float32 (B, 3, H, W) on the device of ``images``.
    """
    images = to_unit_float(images)
    mean = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - mean) / std


def rotate(images: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate each image about its centre by its angle, filling the corners with zeros.

    Args:
        images: float (B, C, H, W).
        angles: angles (B,) in degrees; positive turns the image counter-clockwise as
            displayed (row 0 at the top), like ``torch.rot90(images, 1, dims=(2, 3))``
            for 90 degrees.

    Returns:
        float (B, C, H, W), bilinear interpolation, same dtype and device as ``images``.
    """
    batch, _, height, width = images.shape
    radians = angles.to(device=images.device, dtype=torch.float32) * (math.pi / 180.0)
    cos, sin = radians.cos(), radians.sin()

    # affine_grid maps output coordinates to input coordinates, both normalised to
    # [-1, 1] per axis; the aspect terms keep the rotation rigid in pixels when H != W
    aspect = width / height
    theta = torch.zeros(batch, 2, 3, device=images.device, dtype=torch.float32)
    theta[:, 0, 0] = cos
    theta[:, 0, 1] = -sin / aspect
    theta[:, 1, 0] = sin * aspect
    theta[:, 1, 1] = cos

    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    rotated = F.grid_sample(
        images.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return rotated.to(images.dtype)


def random_rotate(
    images: torch.Tensor, generator: torch.Generator, max_degrees: float = 180.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate each image by an angle drawn uniformly from [-max_degrees, max_degrees].

    Args:
        images: float (B, C, H, W) in [0, 1], before normalisation, so the zero fill is
            black.
        generator: source of the angles. They are drawn on its device and then moved to
            the device of ``images``.
        max_degrees: largest absolute angle in degrees.

    Returns:
        ``(rotated, angles)``: rotated float (B, C, H, W) and the angles (B,) in degrees
        (positive = counter-clockwise as displayed).
    """
    batch = images.shape[0]
    unit = torch.rand(batch, generator=generator, device=generator.device)
    angles = ((2 * unit - 1) * max_degrees).to(images.device)
    return rotate(images, angles), angles


def downsample(images: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Shrink images (B, C, H, W) to (B, C, H // factor, W // factor) by average pooling.

    Average pooling is a box filter over each factor x factor cell, so it does not alias.
    Rows and columns beyond the last whole cell are dropped.
    """
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}.")
    if factor == 1:
        return images
    return F.avg_pool2d(images, kernel_size=factor)
