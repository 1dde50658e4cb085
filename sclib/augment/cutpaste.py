"""CutPaste pseudo anomalies, a comparison augmentation for SaliencyCut.

Each pseudo-anomaly base (label 2) gets a random rectangle of its own pixels copied to
another random place in the same image. It returns the same ``AugmentResult`` as
``saliencycut`` and takes the same leading arguments.
"""

from __future__ import annotations

import torch
from torch import nn

from sclib.augment.cutmix import AREA_RANGE, ASPECT_RANGE, Boxes, box_masks, draw_boxes
from sclib.augment.saliencycut import PSEUDO, AugmentResult


def cutpaste(
    images: torch.Tensor,
    labels: torch.Tensor,
    model: nn.Module | None,
    generator: torch.Generator,
    area_range: tuple[float, float] = AREA_RANGE,
    aspect_range: tuple[float, float] = ASPECT_RANGE,
) -> AugmentResult:
    """Copy a random rectangle of each pseudo-anomaly base to another place in it.

    Source and target rectangles have the same size and independent uniform positions,
    so they may overlap (the copy reads the original pixels).

    Args:
        images: float (B, C, H, W).
        labels: labels (B,) long.
        model: unused, accepted so that all augmentations share one call shape.
        generator: source of the rectangle draws.
        area_range: rectangle area as a fraction of the image.
        aspect_range: rectangle height / width.

    Returns:
        An ``AugmentResult`` with ``saliency=None``; ``donor_index`` is the row itself for
        label-2 rows and -1 elsewhere, and ``pseudo_mask`` marks the target rectangle.
    """
    del model
    batch, channels, image_height, image_width = images.shape
    device = images.device
    donor_index = torch.full_like(labels, -1, dtype=torch.long)
    pseudo_mask = torch.zeros(batch, 1, image_height, image_width, dtype=torch.bool, device=device)
    rows = (labels == PSEUDO).nonzero().flatten()
    if len(rows) == 0:
        return AugmentResult(images, labels, donor_index, pseudo_mask, None)

    target = draw_boxes(len(rows), image_height, image_width, generator, area_range, aspect_range)
    uniform = torch.rand(len(rows), 2, generator=generator, device=generator.device)
    source_top = (uniform[:, 0] * (image_height - target.height + 1)).floor().long()
    source_left = (uniform[:, 1] * (image_width - target.width + 1)).floor().long()
    source = Boxes(source_top, source_left, target.height, target.width)
    masks = box_masks(target, image_height, image_width, device)  # (N, 1, H, W)

    # NOTE: the patch is copied without colour jitter, so a pseudo anomaly differs from
    # its image only in layout.

    # each target pixel reads the source pixel at the same offset inside its rectangle
    pixel_rows = torch.arange(image_height, device=device).view(1, -1, 1)
    pixel_cols = torch.arange(image_width, device=device).view(1, 1, -1)
    shift_rows = (source.top - target.top).to(device).view(-1, 1, 1)
    shift_cols = (source.left - target.left).to(device).view(-1, 1, 1)
    read_rows = torch.where(masks[:, 0], pixel_rows + shift_rows, pixel_rows)  # (N, H, W)
    read_cols = torch.where(masks[:, 0], pixel_cols + shift_cols, pixel_cols)
    flat_index = (read_rows * image_width + read_cols).flatten(1)  # (N, H, W) -> (N, H*W)

    originals = images[rows].flatten(2)  # (N, C, H, W) -> (N, C, H*W)
    gathered = originals.gather(2, flat_index[:, None].expand(-1, channels, -1))

    mixed = images.detach().clone()
    mixed[rows] = gathered.view(len(rows), channels, image_height, image_width)
    donor_index[rows] = rows
    pseudo_mask[rows] = masks
    return AugmentResult(mixed, labels, donor_index, pseudo_mask, None)
