"""Deviation loss and the two-head loss."""

from __future__ import annotations

import pytest
import torch

from sclib.losses import REFERENCE_DRAWS, deviation_loss, reference_statistics, two_head_loss
from sclib.models.two_head import TwoHeadOutput


def output(normal: list[float], anomaly: list[float]) -> TwoHeadOutput:
    normal_score = torch.tensor(normal)
    anomaly_score = torch.tensor(anomaly)
    return TwoHeadOutput(
        normal_score, anomaly_score, anomaly_score - normal_score, torch.zeros(len(normal), 1, 1, 1)
    )


@pytest.mark.parametrize(
    ("score", "target", "expected"),
    [
        (0.0, 0, 0.0),  # a normal score at the reference mean costs nothing
        (-1.0, 0, 1.0),  # |dev|
        (2.0, 1, 3.0),  # margin 5 - dev 2
        (6.0, 1, 0.0),  # beyond the margin
        (5.0, 1, 0.0),
        (-2.0, 1, 7.0),
    ],
)
def test_deviation_loss_hand_cases(score, target, expected):
    loss = deviation_loss(torch.tensor([score]), torch.tensor([target]))
    assert loss.item() == pytest.approx(expected)


def test_deviation_loss_averages_batch():
    scores = torch.tensor([0.0, -1.0, 2.0, 6.0])
    targets = torch.tensor([0.0, 0.0, 1.0, 1.0])
    assert deviation_loss(scores, targets).item() == pytest.approx((0 + 1 + 3 + 0) / 4)


def test_deviation_loss_margin_option():
    loss = deviation_loss(torch.tensor([2.0]), torch.tensor([1.0]), margin=3.0)
    assert loss.item() == pytest.approx(1.0)


def test_fixed_reference_is_standard():
    mean, std = reference_statistics("fixed")
    assert mean.item() == 0.0
    assert std.item() == 1.0


def test_sampled_reference_close_to_standard_normal():
    mean, std = reference_statistics("sampled", torch.Generator().manual_seed(0))
    # standard errors over 5000 draws: 0.014 for the mean, 0.010 for the std
    assert abs(mean.item()) < 0.06
    assert abs(std.item() - 1.0) < 0.04
    assert REFERENCE_DRAWS == 5000


def test_sampled_reference_follows_generator():
    first = reference_statistics("sampled", torch.Generator().manual_seed(4))
    second = reference_statistics("sampled", torch.Generator().manual_seed(4))
    assert torch.equal(first[0], second[0])
    assert torch.equal(first[1], second[1])


def test_sampled_loss_uses_drawn_reference():
    mean, std = reference_statistics("sampled", torch.Generator().manual_seed(1))
    generator = torch.Generator().manual_seed(1)
    loss = deviation_loss(torch.tensor([2.0]), torch.tensor([0.0]), "sampled", generator=generator)
    assert loss.item() == pytest.approx(((2.0 - mean) / std).abs().item())


def test_invalid_reference_raises():
    with pytest.raises(ValueError, match="'normal'"):
        deviation_loss(torch.zeros(2), torch.zeros(2), reference="normal")


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        deviation_loss(torch.zeros(2), torch.zeros(3))


def test_two_head_loss_targets_by_label():
    labels = torch.tensor([0, 1, 2])
    parts = two_head_loss(output(normal=[6.0, 1.0, 2.0], anomaly=[0.5, 4.0, 7.0]), labels)
    # normal head: label 0 is target 1 (6 -> 0), labels 1 and 2 are target 0 (|1|, |2|)
    assert parts.normal.item() == pytest.approx((0.0 + 1.0 + 2.0) / 3)
    # anomaly head: label 0 is target 0 (|0.5|), labels 1 and 2 are target 1 (5 - 4, 0)
    assert parts.anomaly.item() == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert parts.total.item() == pytest.approx(parts.normal.item() + parts.anomaly.item())


def test_two_head_loss_rejects_float_labels():
    with pytest.raises(ValueError, match="labels"):
        two_head_loss(output([1.0], [1.0]), torch.tensor([0.0]))


def test_deviation_loss_rejects_empty_batch():
    with pytest.raises(ValueError, match="empty batch"):
        deviation_loss(torch.zeros(0), torch.zeros(0))
