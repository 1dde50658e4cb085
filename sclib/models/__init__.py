"""Models: backbones cut before pooling, the two scoring heads and the two-head model."""

from sclib.models.backbones import (
    BackboneSpec,
    available_backbones,
    build_backbone,
    efficientnet_lite0_classifier,
)
from sclib.models.heads import AnomalyHead, AnomalyHeadOutput, NormalHead
from sclib.models.two_head import TwoHeadModel, TwoHeadOutput, build_model

__all__ = [
    "AnomalyHead",
    "AnomalyHeadOutput",
    "BackboneSpec",
    "NormalHead",
    "TwoHeadModel",
    "TwoHeadOutput",
    "available_backbones",
    "build_backbone",
    "build_model",
    "efficientnet_lite0_classifier",
]
