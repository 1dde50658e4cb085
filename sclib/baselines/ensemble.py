"""A trained model's score and the PatchKNN distance combined into one image score.

The two-head model learns from labelled and pseudo anomalies, and PatchKNN measures how
far an image's most unusual patch lies from normal patches without any training. On
ELPV their rankings disagree enough that a combination beats either one: on the
general 10-shot test set their rank correlation is about 0.7, and
``benchmarks/ACCURACY.md`` lists the AUROC of each part and of the ensemble.
``KnnEnsemble`` standardises each score by its mean and standard deviation on held-out
normal training images and averages the two::

    score = ((model_score - mean_m) / std_m + (knn_score - mean_k) / std_k) / 2

The reference statistics come from normal training images that the PatchKNN memory bank
does not contain, so their distances are not biased towards zero. Each image's score
depends only on that image, not on the rest of the test set. This combination is an
sclib option, not part of the SaliencyCut paper; higher scores mean more anomalous.
"""

from __future__ import annotations

import torch
from torch import nn

from sclib.baselines.patch_knn import PatchKNN
from sclib.models.two_head import TwoHeadOutput


class KnnEnsemble(nn.Module):
    """A trained model (two-head or DevNet) and a fitted PatchKNN, scored together.

    Args:
        model: the trained model: a module with a ``spec`` that returns ``TwoHeadOutput``,
            such as ``TwoHeadModel`` or ``DevNetModel``.
        knn: a PatchKNN on the same backbone family (same input normalisation).

    Attributes:
        reference: float (2, 2), rows (model, knn) and columns (mean, std) of the scores
            of held-out normal images; set by ``calibrate``. Before that it is (0, 1) for
            both, which leaves the scores unscaled.
    """

    def __init__(self, model: nn.Module, knn: PatchKNN):
        super().__init__()
        if model.spec.mean != knn.spec.mean or model.spec.std != knn.spec.std:
            raise ValueError(
                f"the model normalises with mean {model.spec.mean} and std "
                f"{model.spec.std} but PatchKNN with {knn.spec.mean} and {knn.spec.std}; "
                "build both on the same backbone."
            )
        self.model = model
        self.knn = knn
        self.spec = model.spec
        self.register_buffer("reference", torch.tensor([[0.0, 1.0], [0.0, 1.0]]))

    def calibrate(self, model_scores: torch.Tensor, knn_scores: torch.Tensor) -> None:
        """Store mean and std of both scores (N,) of held-out normal images, N >= 2."""
        if len(model_scores) < 2 or len(model_scores) != len(knn_scores):
            raise ValueError(
                f"calibration needs the same number (>= 2) of model and knn scores, got "
                f"{len(model_scores)} and {len(knn_scores)}."
            )
        statistics = []
        for scores in (model_scores, knn_scores):
            scores = scores.detach().float().cpu()
            # a constant score would divide by zero; 1e-6 keeps its term finite
            statistics.append([scores.mean(), scores.std().clamp(min=1e-6)])
        self.reference = torch.tensor(statistics, device=self.reference.device)

    def combine(self, model_score: torch.Tensor, knn_score: torch.Tensor) -> torch.Tensor:
        """Return the mean of the two standardised scores (B,)."""
        reference = self.reference.to(model_score.device)
        model_z = (model_score - reference[0, 0]) / reference[0, 1]
        knn_z = (knn_score - reference[1, 0]) / reference[1, 1]
        return (model_z + knn_z) / 2

    def forward(self, images: torch.Tensor) -> TwoHeadOutput:
        """Score normalised images (B, 3, H, W).

        Returns:
            A ``TwoHeadOutput`` with the model's ``normal_score``, ``anomaly_score`` and
            ``patch_scores``, and ``score`` = ``combine`` of the model's score and the
            PatchKNN distance (B,), higher = more anomalous.
        """
        output = self.model(images)
        knn_score = self.knn(images).score
        return output._replace(score=self.combine(output.score, knn_score))
