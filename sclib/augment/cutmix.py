"""CutMix pseudo anomalies, a comparison augmentation for SaliencyCut.

Each pseudo-anomaly base (label 2) receives a random rectangle cut from a random normal
image of the batch (label 0) at the same position. It returns the same ``AugmentResult``
as ``saliencycut`` and takes the same leading arguments, so the training loop can swap
augmentations by name. The rectangle helpers here are shared with CutPaste.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import torch
from torch import nn

from sclib.augment.saliencycut import PSEUDO, AugmentResult, draw_donors, paste

logger = logging.getLogger(__name__)

# Default patch area as a fraction of the image, and default patch height / width:
# small patches, so a pseudo anomaly stays mostly normal, as a defect does.
AREA_RANGE = (0.02, 0.15)
ASPECT_RANGE = (0.3, 1 / 0.3)


class Boxes(NamedTuple):
    """Rectangles, one per row, in pixels: each field is (N,) long."""

    top: torch.Tensor
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor


def draw_boxes(
    count: int,
    image_height: int,
    image_width: int,
    generator: torch.Generator,
    area_range: tuple[float, float] = AREA_RANGE,
    aspect_range: tuple[float, float] = ASPECT_RANGE,
) -> Boxes:
    """Draw ``count`` rectangles that lie inside an image_height x image_width image.

    The area fraction is uniform in ``area_range`` and the aspect ratio (height / width)
    is log-uniform in ``aspect_range``. Sides are rounded and clipped to [1, image side],
    and the position is uniform over the places where the rectangle fits. Draws happen
    on the generator's device; the boxes are returned there.
    """
    device = generator.device
    uniform = torch.rand(count, 4, generator=generator, device=device)
    area = (area_range[0] + (area_range[1] - area_range[0]) * uniform[:, 0]) * (
        image_height * image_width
    )
    log_low, log_high = math.log(aspect_range[0]), math.log(aspect_range[1])
    aspect = torch.exp(log_low + (log_high - log_low) * uniform[:, 1])

    height = (area * aspect).sqrt().round().long().clamp(1, image_height)
    width = (area / aspect).sqrt().round().long().clamp(1, image_width)
    top = (uniform[:, 2] * (image_height - height + 1)).floor().long()
    left = (uniform[:, 3] * (image_width - width + 1)).floor().long()
    return Boxes(top, left, height, width)


def box_masks(boxes: Boxes, image_height: int, image_width: int, device) -> torch.Tensor:
    """Rasterise rectangles into bool masks (N, 1, image_height, image_width)."""
    rows = torch.arange(image_height, device=device).view(1, -1, 1)
    cols = torch.arange(image_width, device=device).view(1, 1, -1)
    top, left, height, width = (field.to(device).view(-1, 1, 1) for field in boxes)
    inside = (rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width)
    return inside[:, None]  # (N, H, W) -> (N, 1, H, W)


def cutmix(
    images: torch.Tensor,
    labels: torch.Tensor,
    model: nn.Module | None,
    generator: torch.Generator,
    area_range: tuple[float, float] = AREA_RANGE,
    aspect_range: tuple[float, float] = ASPECT_RANGE,
) -> AugmentResult:
    """Paste a rectangle of a random normal image into each pseudo-anomaly base.

    Args:
        images: float (B, C, H, W).
        labels: labels (B,) long.
        model: unused, accepted so that all augmentations share one call shape.
        generator: source of the donor and rectangle draws.
        area_range: rectangle area as a fraction of the image.
        aspect_range: rectangle height / width.

    Returns:
        An ``AugmentResult`` with ``saliency=None``. ``pseudo_mask`` marks the rectangle.
        With no label-0 row the images are returned unchanged.
    """
    del model
    batch, _, image_height, image_width = images.shape
    donor_index = draw_donors(labels, generator)
    mixed_rows = (donor_index >= 0).nonzero().flatten()
    pseudo_mask = torch.zeros(
        batch, 1, image_height, image_width, dtype=torch.bool, device=images.device
    )
    if len(mixed_rows) == 0:
        if (labels == PSEUDO).any():
            logger.debug("No normal image (label 0) in the batch; pseudo bases left unchanged.")
        return AugmentResult(images, labels, donor_index, pseudo_mask, None)

    boxes = draw_boxes(
        len(mixed_rows), image_height, image_width, generator, area_range, aspect_range
    )
    masks = box_masks(boxes, image_height, image_width, images.device)
    donors = donor_index[mixed_rows]

    mixed = images.detach().clone()
    mixed[mixed_rows] = paste(images[donors], images[mixed_rows], masks)
    pseudo_mask[mixed_rows] = masks
    return AugmentResult(mixed, labels, donor_index, pseudo_mask, None)
