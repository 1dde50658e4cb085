"""Deviation loss (DevNet) and the two-head loss built from it.

The deviation of a score is ``dev = (score - mu_r) / sigma_r`` against a reference
distribution of scores (a standard normal). The loss pulls images with target 0 towards
the reference mean (``|dev|``) and pushes images with target 1 at least ``margin``
reference standard deviations above it (``max(0, margin - dev)``).

The two-head model trains both heads with it: the normal head gets target 1 for normal
images (label 0), the anomaly head gets target 1 for real and pseudo anomalies (labels 1
and 2). The total loss is the sum of the two.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch

if TYPE_CHECKING:
    from sclib.models.two_head import TwoHeadOutput

REFERENCE_DRAWS = 5000
_REFERENCES = ("fixed", "sampled")


class LossParts(NamedTuple):
    """Scalar losses of one batch: ``total = normal + anomaly``."""

    total: torch.Tensor
    normal: torch.Tensor
    anomaly: torch.Tensor


def reference_statistics(
    reference: str = "fixed",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(mu_r, sigma_r)`` of the deviation-loss reference distribution.

    Args:
        reference: ``"fixed"`` gives exactly (0, 1). ``"sampled"`` gives the mean and
            standard deviation of 5000 draws of a standard normal from ``generator``
            (the global RNG when None), as DevNet does.
        generator: generator for the ``"sampled"`` draws. The draws are made on its device.
        device: device of the returned scalars.
    """
    if reference not in _REFERENCES:
        raise ValueError(f"reference={reference!r} is invalid; use one of {_REFERENCES}.")
    if reference == "fixed":
        return torch.zeros((), device=device), torch.ones((), device=device)

    draw_device = generator.device if generator is not None else "cpu"
    draws = torch.randn(REFERENCE_DRAWS, generator=generator, device=draw_device)
    return draws.mean().to(device), draws.std().to(device)


def deviation_loss(
    scores: torch.Tensor,
    targets: torch.Tensor,
    reference: str = "fixed",
    margin: float = 5.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Compute the deviation loss, averaged over the batch.

    ``loss = mean((1 - t) * |dev| + t * max(0, margin - dev))`` with
    ``dev = (score - mu_r) / sigma_r``.

    The default reference is ``"fixed"`` (mu_r = 0, sigma_r = 1): the mean and standard
    deviation of 5000 standard normal draws have standard errors of 0.014 and 0.010 and
    change at every call, which adds noise to the loss and carries no information.
    ``"sampled"`` reproduces DevNet's per-call draws.

    Args:
        scores: scores (B,), any real values.
        targets: targets (B,), 0 or 1 (float or integer).
        reference: ``"fixed"`` or ``"sampled"``; see ``reference_statistics``.
        margin: how many reference standard deviations target-1 scores must exceed.
        generator: generator for the ``"sampled"`` reference.

    Returns:
        A scalar tensor, >= 0.
    """
    if scores.numel() == 0:
        raise ValueError("deviation_loss got an empty batch; pass at least one score.")
    if scores.shape != targets.shape:
        raise ValueError(
            f"scores and targets must have the same shape, got {tuple(scores.shape)} "
            f"and {tuple(targets.shape)}."
        )
    mu_r, sigma_r = reference_statistics(reference, generator, device=scores.device)
    deviation = (scores.float() - mu_r) / sigma_r  # float32 also under bfloat16 autocast
    targets = targets.to(deviation.dtype)
    inlier_loss = deviation.abs()
    outlier_loss = (margin - deviation).clamp(min=0)
    return ((1 - targets) * inlier_loss + targets * outlier_loss).mean()


def two_head_loss(
    output: TwoHeadOutput,
    labels: torch.Tensor,
    reference: str = "fixed",
    margin: float = 5.0,
    generator: torch.Generator | None = None,
) -> LossParts:
    """Compute the deviation loss of each head and their sum.

    Args:
        output: model output with ``normal_score`` and ``anomaly_score`` (B,).
        labels: labels (B,) long: 0 normal, 1 real anomaly, 2 pseudo anomaly.
        reference, margin, generator: passed to ``deviation_loss``.

    Returns:
        ``LossParts(total, normal, anomaly)`` of scalar tensors.
    """
    if labels.dtype.is_floating_point:
        raise ValueError(f"labels must be integers 0, 1 or 2, got dtype {labels.dtype}.")
    normal_targets = (labels == 0).float()
    anomaly_targets = ((labels == 1) | (labels == 2)).float()
    normal = deviation_loss(output.normal_score, normal_targets, reference, margin, generator)
    anomaly = deviation_loss(output.anomaly_score, anomaly_targets, reference, margin, generator)
    return LossParts(total=normal + anomaly, normal=normal, anomaly=anomaly)
