"""SaliencyCut: donor draw, paste, and the batched augmentation."""

from __future__ import annotations

import logging

import pytest
import torch

from sclib.augment.saliency import input_saliency, smooth_saliency
from sclib.augment.saliencycut import AugmentResult, draw_donors, paste, saliencycut
from sclib.losses import two_head_loss
from sclib.models.two_head import build_model

LABELS = torch.tensor([0, 2, 0, 1, 2, 2, 0, 2])


def images(batch: int = len(LABELS), size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def model():
    return build_model("simple_cnn", weights=None)


@pytest.fixture
def result(model) -> tuple[torch.Tensor, AugmentResult]:
    batch = images()
    return batch, saliencycut(batch, LABELS, model, torch.Generator().manual_seed(0))


def test_paste_takes_base_inside_mask_and_donor_outside():
    bases = torch.full((2, 3, 4, 4), 1.0)
    donors = torch.full((2, 3, 4, 4), -1.0)
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    mask[0, 0, 1:3, 1:3] = True
    pasted = paste(bases, donors, mask)
    assert torch.equal(pasted[:, :, mask[0, 0]][0], torch.ones(3, 4))
    assert (pasted[0][:, ~mask[0, 0]] == -1).all()
    assert (pasted[1] == -1).all()


def test_paste_float_mask_blends():
    bases, donors = torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
    mask = torch.tensor([0.0, 0.25, 0.5, 1.0]).view(1, 1, 2, 2)
    assert torch.allclose(paste(bases, donors, mask), mask.expand(1, 3, 2, 2))


def test_draw_donors_picks_normals_for_pseudo_rows():
    donors = draw_donors(LABELS, torch.Generator().manual_seed(0))
    pseudo = LABELS == 2
    assert donors.shape == LABELS.shape
    assert (donors[~pseudo] == -1).all()
    assert (LABELS[donors[pseudo]] == 0).all()


def test_draw_donors_follows_generator():
    first = draw_donors(LABELS, torch.Generator().manual_seed(9))
    second = draw_donors(LABELS, torch.Generator().manual_seed(9))
    assert torch.equal(first, second)


def test_draw_donors_uses_every_normal():
    labels = torch.tensor([0, 0, 0] + [2] * 60)
    donors = draw_donors(labels, torch.Generator().manual_seed(0))
    assert set(donors[3:].tolist()) == {0, 1, 2}


def test_draw_donors_without_normals():
    donors = draw_donors(torch.tensor([1, 2, 2]), torch.Generator().manual_seed(0))
    assert donors.tolist() == [-1, -1, -1]


def test_saliencycut_keeps_labels(result):
    _, augmented = result
    assert torch.equal(augmented.labels, LABELS)


def test_saliencycut_changes_only_pseudo_rows(result):
    batch, augmented = result
    others = LABELS != 2
    assert torch.equal(augmented.images[others], batch[others])
    assert (augmented.donor_index[others] == -1).all()
    assert not augmented.pseudo_mask[others].any()


def test_saliencycut_pastes_base_inside_and_donor_outside(result):
    batch, augmented = result
    for row in (LABELS == 2).nonzero().flatten().tolist():
        mask = augmented.pseudo_mask[row, 0]
        donor = augmented.donor_index[row]
        assert LABELS[donor] == 0
        assert 0 < mask.sum() < mask.numel()
        assert torch.equal(augmented.images[row][:, mask], batch[row][:, mask])
        assert torch.equal(augmented.images[row][:, ~mask], batch[donor][:, ~mask])


def test_saliencycut_mask_is_thresholded_donor_saliency(model, result):
    batch, augmented = result
    pseudo = (LABELS == 2).nonzero().flatten()
    donors = augmented.donor_index[pseudo]
    expected = smooth_saliency(input_saliency(model, batch[donors], torch.zeros_like(donors)))
    assert torch.allclose(augmented.saliency[pseudo], expected, atol=1e-5)
    assert torch.equal(augmented.pseudo_mask[pseudo], augmented.saliency[pseudo] > 0.4)
    assert augmented.saliency[LABELS != 2].abs().max() == 0


def test_saliency_computed_for_unique_donors_only(model):
    batch_sizes = []
    model.backbone.register_forward_hook(lambda module, inputs, out: batch_sizes.append(len(out)))
    augmented = saliencycut(images(), LABELS, model, torch.Generator().manual_seed(0))
    n_donors = len(augmented.donor_index[augmented.donor_index >= 0].unique())
    # 4 pseudo rows share 3 normals: at least one donor repeats and is computed once
    assert n_donors <= 3
    assert batch_sizes == [n_donors] * model.n_scales


def test_saliencycut_leaves_model_state_alone(model):
    model.train()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    saliencycut(images(), LABELS, model, torch.Generator().manual_seed(0))
    assert model.training
    assert all(module.training for module in model.modules())
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert all(p.grad is None for p in model.parameters())


def test_saliencycut_without_normals_leaves_batch(model, caplog):
    labels = torch.tensor([1, 2, 2, 1])
    batch = images(batch=4)
    with caplog.at_level(logging.DEBUG, logger="sclib.augment.saliencycut"):
        augmented = saliencycut(batch, labels, model, torch.Generator().manual_seed(0))
    assert torch.equal(augmented.images, batch)
    assert (augmented.donor_index == -1).all()
    assert "No normal image" in caplog.text


def test_saliencycut_accepts_loss_before_generator(model):
    batch = images()
    expected = saliencycut(batch, LABELS, model, torch.Generator().manual_seed(2))
    swapped = saliencycut(batch, LABELS, model, two_head_loss, torch.Generator().manual_seed(2))
    assert torch.equal(swapped.images, expected.images)


def test_saliencycut_threshold_zero_takes_base_almost_everywhere(model):
    batch = images()
    augmented = saliencycut(batch, LABELS, model, torch.Generator().manual_seed(0), threshold=0.0)
    pseudo = LABELS == 2
    # only the pixels at the donor's minimum saliency (value 0) keep the donor
    assert augmented.pseudo_mask[pseudo].float().mean() > 0.95


@pytest.mark.gpu
@pytest.mark.parametrize("generator_device", ["cpu", "cuda"])
def test_saliencycut_runs_on_cuda(model, generator_device):
    device = torch.device("cuda")
    model = model.to(device)
    batch = images().to(device)
    labels = LABELS.to(device)
    generator = torch.Generator(device=generator_device).manual_seed(0)
    augmented = saliencycut(batch, labels, model, generator)

    assert augmented.images.device.type == "cuda"
    assert augmented.pseudo_mask.device.type == "cuda"
    assert torch.equal(augmented.images[labels != 2], batch[labels != 2])
    for row in (labels == 2).nonzero().flatten().tolist():
        mask = augmented.pseudo_mask[row, 0]
        donor = augmented.donor_index[row]
        assert torch.equal(augmented.images[row][:, mask], batch[row][:, mask])
        assert torch.equal(augmented.images[row][:, ~mask], batch[donor][:, ~mask])
