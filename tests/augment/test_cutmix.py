"""CutMix pseudo anomalies and the rectangle helpers."""

from __future__ import annotations

import pytest
import torch

from sclib.augment.cutmix import box_masks, cutmix, draw_boxes

LABELS = torch.tensor([0, 2, 0, 1, 2, 2, 0, 2])


def images(batch: int = len(LABELS), size: int = 32) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_boxes_fit_and_follow_area_range():
    boxes = draw_boxes(500, 40, 60, torch.Generator().manual_seed(0), area_range=(0.05, 0.1))
    area = (boxes.height * boxes.width).float() / (40 * 60)
    assert (boxes.top >= 0).all()
    assert (boxes.left >= 0).all()
    assert (boxes.top + boxes.height <= 40).all()
    assert (boxes.left + boxes.width <= 60).all()
    assert area.min() > 0.03  # rounding and clipping move the area a little
    assert area.max() < 0.13


def test_box_masks_match_boxes():
    boxes = draw_boxes(20, 16, 16, torch.Generator().manual_seed(1))
    masks = box_masks(boxes, 16, 16, "cpu")
    assert masks.shape == (20, 1, 16, 16)
    assert masks.sum(dim=(1, 2, 3)).tolist() == (boxes.height * boxes.width).tolist()
    for mask, top, left in zip(masks, boxes.top, boxes.left):
        assert mask[0, top, left]


def test_cutmix_keeps_labels_and_other_rows():
    batch = images()
    augmented = cutmix(batch, LABELS, None, torch.Generator().manual_seed(0))
    others = LABELS != 2
    assert torch.equal(augmented.labels, LABELS)
    assert torch.equal(augmented.images[others], batch[others])
    assert not augmented.pseudo_mask[others].any()
    assert augmented.saliency is None


def test_cutmix_pastes_donor_rectangle_in_place():
    batch = images()
    augmented = cutmix(batch, LABELS, None, torch.Generator().manual_seed(0))
    for row in (LABELS == 2).nonzero().flatten().tolist():
        mask = augmented.pseudo_mask[row, 0]
        donor = augmented.donor_index[row]
        assert LABELS[donor] == 0
        assert mask.any()
        assert torch.equal(augmented.images[row][:, mask], batch[donor][:, mask])
        assert torch.equal(augmented.images[row][:, ~mask], batch[row][:, ~mask])


def test_cutmix_follows_generator():
    batch = images()
    first = cutmix(batch, LABELS, None, torch.Generator().manual_seed(3))
    second = cutmix(batch, LABELS, None, torch.Generator().manual_seed(3))
    assert torch.equal(first.images, second.images)


def test_cutmix_without_normals_leaves_batch():
    labels = torch.tensor([2, 2, 1])
    batch = images(batch=3)
    augmented = cutmix(batch, labels, None, torch.Generator().manual_seed(0))
    assert torch.equal(augmented.images, batch)
    assert (augmented.donor_index == -1).all()


@pytest.mark.parametrize("size", [1, 5])
def test_cutmix_tiny_images(size):
    augmented = cutmix(images(size=size), LABELS, None, torch.Generator().manual_seed(0))
    assert augmented.images.shape == (len(LABELS), 3, size, size)
