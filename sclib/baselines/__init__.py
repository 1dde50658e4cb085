"""Baselines that score through the same evaluation as the two-head model.

- ``PatchKNN``: training-free nearest-neighbour patch distance to a memory bank of
  normal patch features (frozen multi-level features).
- ``DevNetModel``: a one-head deviation network trained on the labelled anomalies
  against normal images, without a normal head and without pseudo anomalies.

- ``KnnEnsemble``: the two-head model and PatchKNN with their standardised scores
  averaged (``scoring="knn_ensemble"``).

All return ``TwoHeadOutput`` from ``forward``, so ``sclib.train.score_images`` and
``sclib.experiment.evaluate_run`` score them like the two-head model.
``build_detector`` and ``fit_detector`` (in ``sclib.baselines.detectors``) build and fit
the detector a ``Config`` names.
"""

from sclib.baselines.devnet import DevNetModel, build_devnet, devnet_loss
from sclib.baselines.ensemble import KnnEnsemble
from sclib.baselines.patch_knn import PatchKNN, greedy_coreset, nearest_distance, random_subset

__all__ = [
    "DevNetModel",
    "KnnEnsemble",
    "PatchKNN",
    "build_devnet",
    "devnet_loss",
    "greedy_coreset",
    "nearest_distance",
    "random_subset",
]
