"""SaliencyCut: pseudo anomalies made by replacing the salient region of a normal image.

For each pseudo-anomaly base A of a batch (label 2), SaliencyCut picks a donor N among the
batch's normal images (label 0). It thresholds N's smoothed input saliency into a mask M
and builds ``M * A + (1 - M) * N``. So the region where the model is most sensitive in N
is replaced by the same region of A. The result keeps label 2.

Only the chosen donors get a saliency map, in one batched input-gradient pass, and the
paste runs batched on the device of the images.

Shapes: images (B, 3, H, W) normalised float model inputs, labels (B,) long, masks and
saliency maps (B, 1, H, W).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from sclib.augment.saliency import input_saliency, smooth_saliency
from sclib.losses import two_head_loss

logger = logging.getLogger(__name__)

NORMAL, ANOMALY, PSEUDO = 0, 1, 2


class AugmentResult(NamedTuple):
    """Output of a pseudo-anomaly augmentation, with what it drew.

    Attributes:
        images: the augmented batch (B, 3, H, W). Only label-2 rows differ from the input.
        labels: labels (B,), unchanged (pseudo anomalies keep label 2).
        donor_index: (B,) long. For each mixed row, the batch index of the image its
            other pixels came from; -1 for rows left unchanged.
        pseudo_mask: bool (B, 1, H, W), True on the pasted region of a mixed row: the
            base's pixels inside the donor for SaliencyCut, the patch for CutMix and
            CutPaste. All False on unchanged rows.
        saliency: float (B, 1, H, W) in [0, 1], the smoothed donor saliency behind each
            SaliencyCut mask, zeros on unchanged rows; None for augmentations that use no
            saliency.
    """

    images: torch.Tensor
    labels: torch.Tensor
    donor_index: torch.Tensor
    pseudo_mask: torch.Tensor
    saliency: torch.Tensor | None


def paste(bases: torch.Tensor, donors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Return ``mask * bases + (1 - mask) * donors``.

    Args:
        bases: images (B, C, H, W), taken where ``mask`` is set.
        donors: images (B, C, H, W), taken elsewhere.
        mask: bool or float (B, 1, H, W) in [0, 1], broadcast over channels.
    """
    if mask.dtype == torch.bool:
        return torch.where(mask, bases, donors)
    return mask * bases + (1 - mask) * donors


def draw_donors(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Pick, for every pseudo-anomaly row (label 2), a random normal row (label 0).

    All rows are drawn at once, uniformly and with replacement, on the generator's device.

    Args:
        labels: labels (B,) long.
        generator: source of the draw.

    Returns:
        donor_index (B,) long on the device of ``labels``: a label-0 batch index for each
        label-2 row, -1 for every other row, and -1 everywhere when the batch has no
        label-0 row.
    """
    donor_index = torch.full_like(labels, -1, dtype=torch.long)
    pseudo_rows = (labels == PSEUDO).nonzero().flatten()
    normal_rows = (labels == NORMAL).nonzero().flatten()
    if len(pseudo_rows) == 0 or len(normal_rows) == 0:
        return donor_index

    picks = torch.randint(
        len(normal_rows), (len(pseudo_rows),), generator=generator, device=generator.device
    )
    donor_index[pseudo_rows] = normal_rows[picks.to(labels.device)]
    return donor_index


def _unchanged(images: torch.Tensor, labels: torch.Tensor) -> AugmentResult:
    batch, _, height, width = images.shape
    return AugmentResult(
        images=images,
        labels=labels,
        donor_index=torch.full_like(labels, -1, dtype=torch.long),
        pseudo_mask=torch.zeros(batch, 1, height, width, dtype=torch.bool, device=images.device),
        saliency=torch.zeros(batch, 1, height, width, device=images.device),
    )


def saliencycut(
    images: torch.Tensor,
    labels: torch.Tensor,
    model: nn.Module,
    generator: torch.Generator,
    loss_fn: Callable = two_head_loss,
    grid: int = 18,
    order: int = 2,
    threshold: float = 0.4,
) -> AugmentResult:
    """Replace the salient region of a random normal donor with the pseudo base's pixels.

    For each label-2 row A with donor N (see ``draw_donors``): M = smooth_saliency(N) >
    ``threshold`` and the new row is ``paste(A, N, M)``. The donors' saliency comes from
    one ``input_saliency`` pass over the distinct donors with labels 0. The model's
    train/eval flags, batch-norm statistics and parameter gradients are left as they were.

    Args:
        images: normalised float model inputs (B, 3, H, W).
        labels: labels (B,) long.
        model: the two-head model being trained.
        generator: source of the donor draw.
        loss_fn: loss whose input gradient defines saliency.
        grid: coarse grid side for ``smooth_saliency``.
        order: B-spline order for ``smooth_saliency``.
        threshold: saliency level in [0, 1] above which a donor pixel is replaced.

    Returns:
        An ``AugmentResult``. With no label-2 row, or no label-0 row to serve as a donor,
        the images are returned unchanged.
    """
    if callable(generator) and isinstance(loss_fn, torch.Generator):
        # accept the order (images, labels, model, loss_fn, generator) as well
        generator, loss_fn = loss_fn, generator

    donor_index = draw_donors(labels, generator)
    mixed_rows = (donor_index >= 0).nonzero().flatten()
    if len(mixed_rows) == 0:
        if (labels == PSEUDO).any():
            logger.debug("No normal image (label 0) in the batch; pseudo bases left unchanged.")
        return _unchanged(images, labels)

    donors = donor_index[mixed_rows]
    unique_donors, donor_slot = torch.unique(donors, return_inverse=True)
    donor_labels = torch.full_like(unique_donors, NORMAL)
    raw = input_saliency(model, images[unique_donors], donor_labels, loss_fn)
    smooth = smooth_saliency(raw, grid=grid, order=order)  # (U, 1, H, W)
    masks = smooth[donor_slot] > threshold  # (U, 1, H, W) -> (M, 1, H, W)

    result = _unchanged(images.detach().clone(), labels)
    with torch.no_grad():
        result.images[mixed_rows] = paste(images[mixed_rows], images[donors], masks)
    result.pseudo_mask[mixed_rows] = masks
    result.saliency[mixed_rows] = smooth[donor_slot]
    result.donor_index[mixed_rows] = donors
    return result
