"""DevNet-style one-head model: a backbone and one anomaly-scoring head, no pseudo anomalies.

A deviation network (DevNet) learns an anomaly score directly from a few labelled
anomalies and many unlabelled, mostly normal, samples. Its deviation loss pulls normal
scores towards the mean of a standard normal reference. It pushes labelled anomalies
``margin`` reference standard deviations above that mean. This module applies that
loss to images:

- backbone (B, 3, H, W) -> features (B, C, h, w), with the same backbones and feature
  options as the two-head model;
- head: Conv3x3(C, C), BatchNorm, ReLU, Conv1x1(C, 1), giving a score map (B, 1, h, w);
  the image score is the mean of the top ``top_fraction`` cells (multiple-instance
  pooling);
- training: the deviation loss with target 1 for labelled anomalies and 0 for normal
  images, on batches without pseudo anomalies (``pseudo_probability=0`` in
  ``sclib.train.train``) and without SaliencyCut.

So it differs from the two-head model in three ways: no normal head, no patch-wise
residual, and no pseudo anomalies. Higher scores mean more anomalous.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from sclib.augment.transforms import downsample
from sclib.config import Config
from sclib.losses import LossParts, deviation_loss
from sclib.models.backbones import BackboneSpec, build_backbone
from sclib.models.features import freeze
from sclib.models.two_head import TwoHeadOutput


class DevNetModel(nn.Module):
    """Backbone plus one deviation-scored head, evaluated at ``n_scales`` image scales.

    Args:
        backbone: module mapping images (B, 3, H, W) to features (B, C, h, w).
        spec: the backbone's spec; ``spec.channels`` sizes the head.
        n_scales: number of image scales (the image, then downsampled by 2); the score is
            the mean over scales.
        top_fraction: share of the score-map cells averaged into the image score.
        train_backbone: False freezes the backbone (eval mode, no parameter gradients).
    """

    def __init__(
        self,
        backbone: nn.Module,
        spec: BackboneSpec,
        n_scales: int = 1,
        top_fraction: float = 0.1,
        train_backbone: bool = True,
    ):
        super().__init__()
        if n_scales < 1:
            raise ValueError(f"n_scales must be >= 1, got {n_scales}.")
        if not 0.0 < top_fraction <= 1.0:
            raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}.")
        self.backbone = backbone if train_backbone else freeze(backbone)
        self.train_backbone = train_backbone
        self.spec = spec
        self.n_scales = n_scales
        self.top_fraction = top_fraction
        channels = spec.channels
        self.head = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, 1, kernel_size=1),
        )

    def train(self, mode: bool = True) -> DevNetModel:
        """Set train or eval mode; a frozen backbone stays in eval mode."""
        super().train(mode)
        if not self.train_backbone:
            self.backbone.eval()
        return self

    def forward(self, images: torch.Tensor) -> TwoHeadOutput:
        """Score normalised images (B, 3, H, W).

        Returns:
            A ``TwoHeadOutput`` so that the two-head training and scoring code applies:
            ``anomaly_score`` and ``score`` are the DevNet score (B,), any real value,
            higher = more anomalous; ``normal_score`` is zeros (there is no normal
            head); ``patch_scores`` (B, 1, h, w) is the full-scale score map.
        """
        scores = []
        patch_scores = None
        scaled = images
        for scale in range(self.n_scales):
            if scale > 0:
                scaled = downsample(scaled, 2)  # (B, 3, H, W) -> (B, 3, H/2, W/2)
            score_map = self.head(self.backbone(scaled))  # (B, C, h, w) -> (B, 1, h, w)
            cells = score_map.flatten(1)  # (B, 1, h, w) -> (B, h*w)
            n_top = max(1, math.floor(self.top_fraction * cells.shape[1]))
            scores.append(cells.topk(n_top, dim=1).values.mean(dim=1))
            if scale == 0:
                patch_scores = score_map
        score = torch.stack(scores).mean(dim=0)
        return TwoHeadOutput(
            normal_score=torch.zeros_like(score),
            anomaly_score=score,
            score=score,
            patch_scores=patch_scores,
        )


def devnet_loss(
    output: TwoHeadOutput,
    labels: torch.Tensor,
    reference: str = "fixed",
    margin: float = 5.0,
    generator: torch.Generator | None = None,
) -> LossParts:
    """Deviation loss of the one-head score: target 1 for labels 1 and 2, 0 for label 0.

    Returns ``LossParts`` with ``normal`` = 0 (there is no normal head) and
    ``anomaly`` = ``total``, so the training history has the same columns as for the
    two-head model.
    """
    if labels.dtype.is_floating_point:
        raise ValueError(f"labels must be integers 0, 1 or 2, got dtype {labels.dtype}.")
    targets = (labels != 0).float()
    total = deviation_loss(output.anomaly_score, targets, reference, margin, generator)
    return LossParts(total=total, normal=torch.zeros_like(total), anomaly=total)


def build_devnet(config: Config, weights: str | Path | None = "default") -> DevNetModel:
    """Build a ``DevNetModel`` on the CPU from the fields of a ``Config``.

    Uses ``backbone``, ``features``, ``feature_smoothing``, ``n_scales``,
    ``train_backbone`` and ``channels_last``. ``weights`` is passed to
    ``build_backbone`` (``"default"``, a path, or None for random initialisation).
    """
    backbone, spec = build_backbone(
        config.backbone,
        weights=weights,
        features=config.features,
        smoothing=config.feature_smoothing,
    )
    model = DevNetModel(
        backbone, spec, n_scales=config.n_scales, train_backbone=config.train_backbone
    )
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model
