"""Input saliency of the two-head model and its B-spline smoothing.

``input_saliency`` measures how strongly the training loss reacts to each pixel: the
root mean square, over colour channels, of the loss gradient with respect to the input.
``smooth_saliency`` turns that noisy map into a smooth one in [0, 1] by averaging it over
a coarse G x G grid and interpolating the grid back with a B-spline. SaliencyCut
thresholds the smoothed map to decide which region of an image to replace.

All functions are batched and run on the device of their input. Maps are (B, 1, H, W).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sclib.losses import two_head_loss


def _scalar_loss(loss) -> torch.Tensor:
    return loss.total if hasattr(loss, "total") else loss


def input_saliency(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    loss_fn: Callable = two_head_loss,
) -> torch.Tensor:
    """Compute the saliency of each pixel: ``sqrt(mean over channels of grad**2)``.

    The gradient is that of ``B * loss_fn(model(images), labels)`` with respect to the
    input images only. With a batch-mean loss such as ``two_head_loss``, each image's
    map is then the gradient of its own loss, whatever the batch size.
    ``torch.autograd.grad`` with the images as its only input computes no parameter
    gradient and leaves every ``.grad`` untouched. The model runs in eval mode, so batch
    norm uses and keeps its running statistics, and each image's saliency does not depend
    on the rest of the batch. The train/eval flag of every submodule is restored
    afterwards.

    Args:
        model: maps images (B, 3, H, W) to an output that ``loss_fn`` accepts.
        images: normalised float model inputs (B, 3, H, W).
        labels: labels (B,) long.
        loss_fn: returns a scalar tensor or an object with a ``total`` scalar, such as
            ``two_head_loss``.

    Returns:
        float (B, 1, H, W), >= 0, detached, on the device of ``images``.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.enable_grad():
            inputs = images.detach().requires_grad_(True)
            loss = _scalar_loss(loss_fn(model(inputs), labels)) * len(inputs)
            (gradient,) = torch.autograd.grad(loss, inputs)
    finally:
        for module, training in modes:
            module.training = training

    gradient = gradient.float()
    return gradient.square().mean(dim=1, keepdim=True).sqrt()  # (B, C, H, W) -> (B, 1, H, W)


def bspline_kernel(spacing: int, order: int = 2) -> torch.Tensor:
    """Build the 1-D discrete B-spline kernel of ``order`` for knot ``spacing``.

    The order-0 kernel is a box of ``spacing`` ones; order n convolves n + 1 boxes. The
    result is divided by ``spacing**order`` so that copies shifted by multiples of
    ``spacing`` sum to 1 (a partition of unity), and the kernel itself sums to
    ``spacing``. Its length is ``(order + 1) * (spacing - 1) + 1``.

    Returns:
        float64 (L,).
    """
    if spacing < 1:
        raise ValueError(f"spacing must be >= 1, got {spacing}.")
    if order < 0:
        raise ValueError(f"order must be >= 0, got {order}.")
    box = torch.ones(1, 1, spacing, dtype=torch.float64)
    kernel = box
    for _ in range(order):
        kernel = F.conv1d(kernel, box.flip(-1), padding=spacing - 1)
    return kernel.flatten() / spacing**order


def bspline_kernel_2d(spacing: int, order: int = 2) -> torch.Tensor:
    """Build the 2-D B-spline kernel, the outer product of two 1-D kernels: (L, L).

    It sums to ``spacing**2``, and copies shifted by multiples of ``spacing`` along both
    axes sum to 1.
    """
    kernel = bspline_kernel(spacing, order)
    return torch.outer(kernel, kernel)


def bspline_upsample(grid_values: torch.Tensor, spacing: int, order: int = 2) -> torch.Tensor:
    """Interpolate a grid (B, 1, G, G) to (B, 1, G * spacing, G * spacing) with a B-spline.

    Each grid cell becomes a spacing x spacing block, and the transposed convolution
    centres one B-spline on each block. The grid is edge-padded first and the result is
    cropped, so the borders are covered by as many splines as the interior: a constant
    grid gives the same constant everywhere.
    """
    # NOTE: a plain transposed convolution would fade the outer cells, because fewer
    # splines overlap there, and shift the map by half a spline; pad and crop avoid both.
    pad_cells = (order + 1) // 2
    padded = F.pad(grid_values, (pad_cells,) * 4, mode="replicate")
    kernel = bspline_kernel_2d(spacing, order).to(grid_values)
    upsampled = F.conv_transpose2d(padded, kernel[None, None], stride=spacing)

    # a spline starts order * (spacing - 1) / 2 pixels before the block it is centred on
    start = pad_cells * spacing + (order * (spacing - 1)) // 2
    size = grid_values.shape[-1] * spacing
    return upsampled[..., start : start + size, start : start + size]


# Relative range below which a map counts as constant in ``minmax_rescale``.
CONSTANT_TOLERANCE = 1e-5


def minmax_rescale(maps: torch.Tensor) -> torch.Tensor:
    """Rescale each map (B, 1, H, W) to [0, 1]; a constant map becomes all zeros.

    A map whose range is below 1e-5 of its largest magnitude counts as constant, so that
    float rounding in the smoothing of a constant map is not stretched to [0, 1].
    """
    flat = maps.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1, 1)
    high = flat.max(dim=1).values.view(-1, 1, 1, 1)
    span = high - low
    tiny = torch.finfo(maps.dtype).tiny
    magnitude = torch.maximum(high.abs(), low.abs()).clamp(min=tiny)
    varies = span > CONSTANT_TOLERANCE * magnitude
    return torch.where(varies, (maps - low) / span.clamp(min=tiny), 0.0)


def smooth_saliency(saliency: torch.Tensor, grid: int = 18, order: int = 2) -> torch.Tensor:
    """Smooth saliency maps and rescale each to [0, 1].

    Steps: average-pool to a ``grid`` x ``grid`` map, interpolate it with a B-spline of
    ``order`` (2 = quadratic) at spacing ``max(1, H // grid)`` as a transposed
    convolution, resize bilinearly to H x W, and min-max rescale each map.

    Args:
        saliency: float (B, 1, H, W), for example from ``input_saliency``.
        grid: side G of the coarse grid.
        order: B-spline order.

    Returns:
        float32 (B, 1, H, W) in [0, 1], without NaN; constant maps give zeros.
    """
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}.")
    height, width = saliency.shape[-2:]
    spacing = max(1, height // grid)

    # float32 even inside a bfloat16 autocast region, where the transposed convolution
    # would otherwise return bfloat16
    with torch.autocast(device_type=saliency.device.type, enabled=False):
        coarse = F.adaptive_avg_pool2d(saliency.float(), grid)  # (B, 1, H, W) -> (B, 1, G, G)
        smooth = bspline_upsample(coarse, spacing, order)  # -> (B, 1, G*spacing, G*spacing)
        smooth = F.interpolate(smooth, size=(height, width), mode="bilinear", align_corners=False)
        return minmax_rescale(smooth)
