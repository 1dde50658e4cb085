"""Augmentation: device transforms, input saliency, SaliencyCut and comparison augmentations.

Every pseudo-anomaly augmentation is called as ``augment(images, labels, model, generator)``
and returns an ``AugmentResult``. ``get_augmentation(name)`` looks one up by the name used
in the configuration: ``"saliencycut"``, ``"cutmix"``, ``"cutpaste"`` or ``"none"``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from sclib.augment.cutmix import cutmix
from sclib.augment.cutpaste import cutpaste
from sclib.augment.saliency import input_saliency, smooth_saliency
from sclib.augment.saliencycut import AugmentResult, draw_donors, paste, saliencycut
from sclib.augment.transforms import downsample, normalize, random_rotate, rotate


def no_augmentation(
    images: torch.Tensor,
    labels: torch.Tensor,
    model: nn.Module | None = None,
    generator: torch.Generator | None = None,
) -> AugmentResult:
    """Return the batch unchanged: pseudo bases stay plain normal images with label 2."""
    del model, generator
    batch, _, height, width = images.shape
    return AugmentResult(
        images=images,
        labels=labels,
        donor_index=torch.full_like(labels, -1, dtype=torch.long),
        pseudo_mask=torch.zeros(batch, 1, height, width, dtype=torch.bool, device=images.device),
        saliency=None,
    )


AUGMENTATIONS: dict[str, Callable[..., AugmentResult]] = {
    "saliencycut": saliencycut,
    "cutmix": cutmix,
    "cutpaste": cutpaste,
    "none": no_augmentation,
}


def get_augmentation(name: str) -> Callable[..., AugmentResult]:
    """Return the augmentation registered under ``name``; see ``AUGMENTATIONS``."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"Unknown augmentation {name!r}; choose one of {sorted(AUGMENTATIONS)}.")
    return AUGMENTATIONS[name]


__all__ = [
    "AUGMENTATIONS",
    "AugmentResult",
    "cutmix",
    "cutpaste",
    "downsample",
    "draw_donors",
    "get_augmentation",
    "input_saliency",
    "no_augmentation",
    "normalize",
    "paste",
    "random_rotate",
    "rotate",
    "saliencycut",
    "smooth_saliency",
]
