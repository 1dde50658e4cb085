"""Build and fit the detector that a ``Config`` names, whatever its method.

``config.method`` selects the detector and ``config.scoring`` how the two-head model
scores:

============  ==============  ===============================================
method        scoring         detector
============  ==============  ===============================================
two_head      model           ``TwoHeadModel`` (SaliencyCut two-head model)
two_head      knn_ensemble    ``KnnEnsemble`` of ``TwoHeadModel`` and ``PatchKNN``
devnet        model           ``DevNetModel`` (one head, no pseudo anomalies)
devnet        knn_ensemble    ``KnnEnsemble`` of ``DevNetModel`` and ``PatchKNN``
patch_knn     model           ``PatchKNN`` (no training)
============  ==============  ===============================================

Every detector maps normalised images (B, 3, H, W) to a ``TwoHeadOutput``, so
``sclib.train.score_images`` and ``sclib.metrics.evaluate`` treat them alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from sclib.baselines.devnet import build_devnet, devnet_loss
from sclib.baselines.ensemble import KnnEnsemble
from sclib.baselines.patch_knn import PatchKNN
from sclib.config import Config
from sclib.models.backbones import build_backbone
from sclib.models.two_head import build_model
from sclib.train import HISTORY_COLUMNS, History, score_images, train

logger = logging.getLogger(__name__)

# Normal training images held out of the PatchKNN memory bank to calibrate KnnEnsemble.
CALIBRATION_IMAGES = 128


def build_patch_knn(config: Config, weights: str | Path | None = "default") -> PatchKNN:
    """Build an unfitted ``PatchKNN`` on ``config.backbone``'s multi-level features.

    PatchKNN always uses multi-level features, smoothed with ``config.knn_smoothing``,
    regardless of ``config.features``.
    """
    backbone, spec = build_backbone(
        config.backbone, weights=weights, features="multi", smoothing=config.knn_smoothing
    )
    return PatchKNN(backbone, spec, bank_size=config.knn_bank_size, sampling=config.knn_sampling)


def build_detector(
    config: Config, weights: str | Path | None = "default", generator: torch.Generator | None = None
) -> nn.Module:
    """Build the untrained detector of ``config`` on the CPU (see the module table).

    Args:
        config: the run configuration.
        weights: backbone weights, see ``sclib.models.backbones.build_backbone``.
        generator: generator for the two-head anomaly head's train-mode offset draws.
    """
    if config.method == "patch_knn":
        return build_patch_knn(config, weights)
    if config.method == "devnet":
        model = build_devnet(config, weights)
    else:
        model = build_model(config, weights=weights, generator=generator)
    if config.scoring == "knn_ensemble":
        return KnnEnsemble(model, build_patch_knn(config, weights))
    return model


def fit_detector(
    config: Config,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    progress: bool = True,
    callback: Callable[[History], None] | None = None,
) -> tuple[nn.Module, History]:
    """Build the detector of ``config`` and fit it on a uint8 image cache.

    - ``two_head``: ``sclib.train.train`` with SaliencyCut (or ``config.augmentation``).
    - ``devnet``: ``sclib.train.train`` with ``devnet_loss`` and no pseudo anomalies.
    - ``patch_knn``: fills the memory bank from all normal training images.

    With ``scoring="knn_ensemble"`` the PatchKNN memory bank is filled after training
    from the normal training images except ``CALIBRATION_IMAGES`` held-out ones, whose
    scores calibrate the ensemble.

    Weights and random draws come from ``config.seed`` without touching torch's global
    random state.

    Args:
        config: the run configuration.
        train_images: uint8 (N, 3, S, S).
        train_labels: long (N,): 0 unlabelled (normal), 1 labelled anomaly.
        progress: show a progress bar during training.
        callback: passed to ``sclib.train.train``.

    Returns:
        ``(detector, history)``; the history has no rows for ``patch_knn``.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        head_generator = torch.Generator().manual_seed(config.seed)
        detector = build_detector(config, weights=config.weights, generator=head_generator)

    normal_images = train_images[torch.as_tensor(train_labels) == 0]
    generator = torch.Generator().manual_seed(config.seed)
    knn_options = {
        "batch_size": config.eval_batch_size,
        "device": config.device,
        "channels_last": config.channels_last,
    }
    if isinstance(detector, PatchKNN):
        detector.fit(normal_images, generator, **knn_options)
        return detector, empty_history()

    loss = devnet_loss if config.method == "devnet" else None
    model = detector.model if isinstance(detector, KnnEnsemble) else detector
    options = {"loss": loss, "pseudo_probability": 0.0} if loss is not None else {}
    history = train(
        model, train_images, train_labels, config, progress=progress, callback=callback, **options
    )
    if isinstance(detector, KnnEnsemble):
        _fit_ensemble(detector, normal_images, generator, config, knn_options)
    return detector, history


def _fit_ensemble(
    ensemble: KnnEnsemble,
    normal_images: torch.Tensor,
    generator: torch.Generator,
    config: Config,
    knn_options: dict,
) -> None:
    order = torch.randperm(len(normal_images), generator=generator)
    n_held_out = min(CALIBRATION_IMAGES, len(normal_images) // 2)
    if n_held_out < 2:
        raise ValueError(
            f"scoring='knn_ensemble' needs at least 4 normal training images, got "
            f"{len(normal_images)}."
        )
    held_out = normal_images[order[:n_held_out].sort().values]
    bank_images = normal_images[order[n_held_out:].sort().values]
    ensemble.knn.fit(bank_images, generator, **knn_options)

    score_options = {
        "batch_size": config.eval_batch_size,
        "device": config.device,
        "precision": config.precision,
        "channels_last": config.channels_last,
    }
    model_scores = score_images(ensemble.model, held_out, **score_options).score
    knn_scores = score_images(ensemble.knn, held_out, **score_options).score
    ensemble.calibrate(model_scores, knn_scores)
    logger.info(
        "KnnEnsemble calibrated on %d held-out normal images: model %.3f +- %.3f, "
        "knn %.3f +- %.3f",
        n_held_out,
        *ensemble.reference.flatten().tolist(),
    )



def empty_history() -> History:
    """Return a history with the columns of ``sclib.train.HISTORY_COLUMNS`` and no rows."""
    return pd.DataFrame(columns=list(HISTORY_COLUMNS))
