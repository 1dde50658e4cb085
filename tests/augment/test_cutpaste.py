"""CutPaste pseudo anomalies."""

from __future__ import annotations

import pytest
import torch

from sclib.augment import AUGMENTATIONS, get_augmentation, no_augmentation
from sclib.augment.cutpaste import cutpaste

LABELS = torch.tensor([0, 2, 0, 1, 2, 2, 0, 2])


def images(batch: int = len(LABELS), size: int = 32) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


def find_source(image: torch.Tensor, patch: torch.Tensor) -> list[tuple[int, int]]:
    """Return every top-left position where ``patch`` (C, h, w) occurs in ``image``."""
    _, height, width = patch.shape
    hits = []
    for top in range(image.shape[1] - height + 1):
        for left in range(image.shape[2] - width + 1):
            if torch.equal(image[:, top : top + height, left : left + width], patch):
                hits.append((top, left))
    return hits


def test_cutpaste_keeps_labels_and_other_rows():
    batch = images()
    augmented = cutpaste(batch, LABELS, None, torch.Generator().manual_seed(0))
    others = LABELS != 2
    assert torch.equal(augmented.labels, LABELS)
    assert torch.equal(augmented.images[others], batch[others])
    assert not augmented.pseudo_mask[others].any()
    assert (augmented.donor_index[others] == -1).all()


def test_cutpaste_copies_patch_of_same_image():
    batch = images()
    augmented = cutpaste(batch, LABELS, None, torch.Generator().manual_seed(0))
    for row in (LABELS == 2).nonzero().flatten().tolist():
        mask = augmented.pseudo_mask[row, 0]
        rows = mask.any(dim=1).nonzero().flatten()
        cols = mask.any(dim=0).nonzero().flatten()
        patch = augmented.images[row][:, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

        assert augmented.donor_index[row] == row
        assert mask.sum() == len(rows) * len(cols)  # a single rectangle
        assert torch.equal(augmented.images[row][:, ~mask], batch[row][:, ~mask])
        assert find_source(batch[row], patch)


def test_cutpaste_follows_generator():
    batch = images()
    first = cutpaste(batch, LABELS, None, torch.Generator().manual_seed(3))
    second = cutpaste(batch, LABELS, None, torch.Generator().manual_seed(3))
    assert torch.equal(first.images, second.images)


def test_cutpaste_needs_no_normals():
    labels = torch.tensor([2, 2, 1])
    augmented = cutpaste(images(batch=3), labels, None, torch.Generator().manual_seed(0))
    assert augmented.pseudo_mask[:2].any(dim=(1, 2, 3)).all()


def test_registry_names_and_none():
    assert sorted(AUGMENTATIONS) == ["cutmix", "cutpaste", "none", "saliencycut"]
    assert get_augmentation("cutpaste") is cutpaste
    batch = images()
    augmented = no_augmentation(batch, LABELS)
    assert augmented.images is batch
    assert not augmented.pseudo_mask.any()


def test_registry_rejects_unknown_name():
    with pytest.raises(ValueError, match="mixup"):
        get_augmentation("mixup")
