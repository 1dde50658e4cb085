"""The two-head model: a backbone, a normal head and an anomaly head, over two scales.

Each scale (the image, then the image downsampled by 2, 4, ...) goes through the same
backbone and both heads, and each head's scores are averaged over the scales. The image
score is ``anomaly_score - normal_score``: higher means more anomalous.

Input: normalised float images (B, 3, H, W), normalised with the backbone spec's mean
and std. Output: a ``TwoHeadOutput`` of per-image scores and the anomaly head's patch
score map at full scale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from sclib.augment.transforms import downsample
from sclib.models.backbones import BackboneSpec, build_backbone
from sclib.models.features import freeze
from sclib.models.heads import AnomalyHead, NormalHead


class TwoHeadOutput(NamedTuple):
    """Scores of the two-head model.

    Attributes:
        normal_score: normal-head score (B,), >= 0, higher = more normal.
        anomaly_score: anomaly-head score (B,), >= 0, higher = more anomalous.
        score: image anomaly score (B,) = anomaly_score - normal_score.
        patch_scores: anomaly-head cell scores (B, 1, k, k) at full scale, >= 0.
    """

    normal_score: torch.Tensor
    anomaly_score: torch.Tensor
    score: torch.Tensor
    patch_scores: torch.Tensor


class TwoHeadModel(nn.Module):
    """Backbone plus normal and anomaly heads, evaluated at ``n_scales`` image scales.

    Scale j feeds the image downsampled by 2**j with a 2**j x 2**j average pool (an
    antialiased box filter that is exact for sides divisible by 2**j). The heads are
    shared between scales, so a scale adds no parameters.

    Args:
        backbone: module mapping images (B, 3, H, W) to features (B, C, h, w).
        spec: the backbone's spec; ``spec.channels`` sizes the heads.
        n_scales: number of scales, >= 1. The SaliencyCut paper uses 2.
        top_fraction: passed to ``AnomalyHead``.
        eval_draws: passed to ``AnomalyHead``.
        generator: generator for the anomaly head's train-mode offset draws.
        train_backbone: False freezes the backbone (see ``sclib.models.features.freeze``):
            its parameters get no gradient and it stays in eval mode when the model is
            put in train mode, so only the heads learn.
    """

    def __init__(
        self,
        backbone: nn.Module,
        spec: BackboneSpec,
        n_scales: int = 2,
        top_fraction: float = 0.1,
        eval_draws: int = 8,
        generator: torch.Generator | None = None,
        train_backbone: bool = True,
    ):
        super().__init__()
        if n_scales < 1:
            raise ValueError(f"n_scales must be >= 1, got {n_scales}.")
        self.backbone = backbone if train_backbone else freeze(backbone)
        self.train_backbone = train_backbone
        self.spec = spec
        self.n_scales = n_scales
        self.normal_head = NormalHead(spec.channels)
        self.anomaly_head = AnomalyHead(
            spec.channels, top_fraction=top_fraction, eval_draws=eval_draws, generator=generator
        )

    def train(self, mode: bool = True) -> TwoHeadModel:
        """Set train or eval mode; a frozen backbone stays in eval mode."""
        super().train(mode)
        if not self.train_backbone:
            self.backbone.eval()
        return self

    def forward(self, images: torch.Tensor) -> TwoHeadOutput:
        """Score normalised images (B, 3, H, W); see ``TwoHeadOutput`` for the fields."""
        normal_scores = []
        anomaly_scores = []
        patch_scores = None
        scaled = images
        for scale in range(self.n_scales):
            if scale > 0:
                scaled = downsample(scaled, 2)  # (B, 3, H, W) -> (B, 3, H/2, W/2)
            features = self.backbone(scaled)
            normal_scores.append(self.normal_head(features))
            anomaly = self.anomaly_head(features)
            anomaly_scores.append(anomaly.score)
            if scale == 0:
                patch_scores = anomaly.patch_scores

        normal_score = torch.stack(normal_scores).mean(dim=0)
        anomaly_score = torch.stack(anomaly_scores).mean(dim=0)
        return TwoHeadOutput(
            normal_score=normal_score,
            anomaly_score=anomaly_score,
            score=anomaly_score - normal_score,
            patch_scores=patch_scores,
        )


def build_model(
    backbone: Any = "efficientnet_lite0",
    weights: str | Path | None = "default",
    n_scales: int = 2,
    allow_download: bool = False,
    channels_last: bool = False,
    features: str = "last",
    feature_smoothing: int = 1,
    train_backbone: bool = True,
    **head_options: Any,
) -> TwoHeadModel:
    """Build a ``TwoHeadModel`` on a registered backbone.

    Args:
        backbone: a backbone name (see ``sclib.models.backbones.available_backbones``), or
            a configuration object with fields ``backbone``, ``n_scales``,
            ``channels_last``, ``features``, ``feature_smoothing`` and ``train_backbone``
            (such as ``sclib.config.Config``), whose fields then replace those arguments.
        weights: ``"default"``, a path, or None; see ``build_backbone``.
        n_scales: number of image scales.
        allow_download: let the backbone download its weights if they are missing.
        channels_last: convert the model to the channels-last memory format.
        features: ``"last"`` or ``"multi"``; see ``build_backbone``.
        feature_smoothing: local-average side over ``"multi"`` features.
        train_backbone: False freezes the backbone; see ``TwoHeadModel``.
        **head_options: ``top_fraction``, ``eval_draws`` or ``generator`` for the anomaly
            head.

    Returns:
        The model on the CPU, in train mode.
    """
    if not isinstance(backbone, str):
        config = backbone
        backbone = config.backbone
        n_scales = config.n_scales
        channels_last = getattr(config, "channels_last", channels_last)
        features = getattr(config, "features", features)
        feature_smoothing = getattr(config, "feature_smoothing", feature_smoothing)
        train_backbone = getattr(config, "train_backbone", train_backbone)

    trunk, spec = build_backbone(
        backbone,
        weights=weights,
        allow_download=allow_download,
        features=features,
        smoothing=feature_smoothing,
    )
    model = TwoHeadModel(
        trunk, spec, n_scales=n_scales, train_backbone=train_backbone, **head_options
    )
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model
