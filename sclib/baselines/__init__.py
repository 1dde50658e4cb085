"""Baselines that score through the same evaluation as the two-head model.

- ``PatchKNN``: training-free nearest-neighbour patch distance to a memory bank of
  normal patch features (frozen multi-level features).
- ``DevNetModel``: a one-head deviation network trained on the labelled anomalies
  against normal images, without a normal head and without pseudo anomalies.

Both return ``TwoHeadOutput`` from ``forward``, so ``sclib.train.score_images`` and
``sclib.experiment.evaluate_run`` score them like the two-head model.
"""

from sclib.baselines.devnet import DevNetModel, build_devnet, devnet_loss
from sclib.baselines.patch_knn import PatchKNN, greedy_coreset, nearest_distance, random_subset

__all__ = [
    "DevNetModel",
    "PatchKNN",
    "build_devnet",
    "devnet_loss",
    "greedy_coreset",
    "nearest_distance",
    "random_subset",
]
