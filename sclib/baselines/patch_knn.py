"""PatchKNN: a training-free patch nearest-neighbour detector on frozen features.

The detector stores patch features of normal training images in a memory bank and
scores a test image by how far its most unusual patch lies from every stored patch:

1. ``fit``: run a frozen backbone (multi-level features, see
   ``sclib.models.features``) over the normal training images, flatten every feature
   map into patches (one C-vector per cell), and keep ``bank_size`` of them: a uniform
   random subset, or a greedy coreset that spreads the kept patches over the feature
   space (as PatchCore does).
2. ``forward``: for each patch of a test image, the Euclidean distance to its nearest
   memory patch; the image score is the largest patch distance.

Nothing is trained and labelled anomalies are not used. Higher scores mean more
anomalous. Distances are computed with ``torch.cdist`` in chunks of query patches, so
memory stays at ``chunk_size x bank_size`` floats.

Shapes: images (B, 3, H, W), features (B, C, h, w), patches (N, C), memory bank
(bank_size, C), patch distances (B, 1, h, w).
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from sclib.augment.transforms import normalize
from sclib.models.backbones import BackboneSpec
from sclib.models.features import freeze
from sclib.models.two_head import TwoHeadOutput
from sclib.utils import resolve_device

logger = logging.getLogger(__name__)

SAMPLINGS = ("random", "coreset")


def nearest_distance(
    queries: torch.Tensor, bank: torch.Tensor, chunk_size: int = 2048
) -> torch.Tensor:
    """Return the Euclidean distance of each query (M, C) to its nearest bank row (N, C).

    Queries are processed ``chunk_size`` rows at a time.

    Returns:
        float (M,), >= 0.
    """
    if len(bank) == 0:
        raise ValueError("the memory bank is empty; call PatchKNN.fit first.")
    distances = []
    for first in range(0, len(queries), chunk_size):
        chunk = queries[first : first + chunk_size]
        distances.append(torch.cdist(chunk, bank).amin(dim=1))
    return torch.cat(distances) if distances else queries.new_zeros(0)


def random_subset(count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Return ``size`` distinct indices into ``range(count)`` drawn uniformly (all when fewer).

    The indices are sorted, long (size,), on the CPU.
    """
    if size >= count:
        return torch.arange(count)
    return torch.randperm(count, generator=generator)[:size].sort().values


def greedy_coreset(
    points: torch.Tensor,
    size: int,
    generator: torch.Generator,
    projection_dim: int | None = 128,
) -> torch.Tensor:
    """Select ``size`` rows of ``points`` (N, C) by greedy farthest-point (k-center) search.

    Starting from a random row, each step adds the row farthest from everything selected
    so far, so outlying regions of the feature space are always represented. When
    ``projection_dim`` is smaller than C, distances are measured after a random Gaussian
    projection to ``projection_dim`` dimensions, which preserves them approximately
    (Johnson-Lindenstrauss) and makes each step cheaper.

    Each of the ``size`` steps reads all N points once, so the cost is O(size * N *
    projection_dim): for 20,000 of 220,000 patches that is minutes on a 2-core CPU.

    Args:
        points: float (N, C).
        size: number of rows to select; all rows when ``size >= N``.
        generator: CPU generator for the projection and the first row.
        projection_dim: dimension of the random projection, or None to use C.

    Returns:
        long (size,) of distinct row indices, in selection order.
    """
    count = len(points)
    if size >= count:
        return torch.arange(count)
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}.")

    reduced = points.float()
    if projection_dim is not None and projection_dim < points.shape[1]:
        projection = torch.randn(points.shape[1], projection_dim, generator=generator)
        reduced = reduced @ (projection / math.sqrt(projection_dim)).to(points.device)

    selected = torch.empty(size, dtype=torch.long, device=points.device)
    first = torch.randint(count, (1,), generator=generator).to(points.device)
    selected[0] = first[0]
    min_distance = torch.cdist(reduced, reduced[first]).squeeze(1)  # (N, 1) -> (N,)
    for position in range(1, size):
        index = min_distance.argmax()
        selected[position] = index
        new_distance = torch.cdist(reduced, reduced[index][None]).squeeze(1)
        min_distance = torch.minimum(min_distance, new_distance)
    return selected


class PatchKNN(nn.Module):
    """Nearest-neighbour patch distance to a memory bank of normal patch features.

    Args:
        backbone: feature module (B, 3, H, W) -> (B, C, h, w), for example
            ``build_backbone("efficientnet_lite0", features="multi", smoothing=3)``. It is
            frozen (eval mode, no parameter gradients).
        spec: the backbone's spec; its mean and std normalise images in ``fit``.
        bank_size: number of patches kept in the memory bank.
        sampling: ``"random"`` (uniform subset) or ``"coreset"`` (``greedy_coreset``).
        projection_dim: projection used by the coreset search; see ``greedy_coreset``.
        chunk_size: query patches per ``torch.cdist`` call.
    """

    def __init__(
        self,
        backbone: nn.Module,
        spec: BackboneSpec,
        bank_size: int = 20000,
        sampling: str = "random",
        projection_dim: int | None = 128,
        chunk_size: int = 2048,
    ):
        super().__init__()
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling={sampling!r} is invalid; use one of {list(SAMPLINGS)}.")
        if bank_size < 1:
            raise ValueError(f"bank_size must be >= 1, got {bank_size}.")
        self.backbone = freeze(backbone)
        self.spec = spec
        self.bank_size = bank_size
        self.sampling = sampling
        self.projection_dim = projection_dim
        self.chunk_size = chunk_size
        self.register_buffer("memory_bank", torch.zeros(0, spec.channels))

    def train(self, mode: bool = True) -> PatchKNN:
        """Set the mode flag; the backbone stays in eval mode, because nothing here learns."""
        super().train(mode)
        self.backbone.eval()
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The bank size is only known after fit, so resize the empty buffer to the saved one.
        key = prefix + "memory_bank"
        if key in state_dict:
            self.memory_bank = torch.empty_like(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def patches(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Return the patch features (B * h * w, C) of normalised images and the map side (h, w)."""
        features = self.backbone(images).float()
        height, width = features.shape[-2:]
        patches = features.permute(0, 2, 3, 1).flatten(0, 2)  # (B, C, h, w) -> (B*h*w, C)
        return patches, (height, width)

    @torch.inference_mode()
    def fit(
        self,
        images: torch.Tensor,
        generator: torch.Generator,
        batch_size: int = 64,
        device: str | torch.device = "auto",
        channels_last: bool = True,
    ) -> PatchKNN:
        """Fill the memory bank from normal training images and return ``self``.

        Args:
            images: uint8 (N, 3, S, S) normal training images (labelled anomalies must not
                be among them).
            generator: CPU generator of the random subset or the coreset start.
            batch_size: images per backbone pass.
            device: device of the backbone pass and of the bank.
            channels_last: run the backbone in the channels-last memory format.
        """
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                "images must be a torch.uint8 tensor (N, 3, S, S) of normal images, got "
                f"{getattr(images, 'dtype', type(images).__name__)}."
            )
        if len(images) == 0:
            raise ValueError("images is empty; PatchKNN needs normal training images.")
        device = resolve_device(device)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.to(device=device, memory_format=memory_format)
        self.eval()

        parts = []
        for first in range(0, len(images), batch_size):
            batch = images[first : first + batch_size].to(device)
            batch = normalize(batch, self.spec.mean, self.spec.std)
            patches, _ = self.patches(batch.contiguous(memory_format=memory_format))
            parts.append(patches)
        patches = torch.cat(parts)

        if self.sampling == "coreset":
            keep = greedy_coreset(patches, self.bank_size, generator, self.projection_dim)
        else:
            keep = random_subset(len(patches), self.bank_size, generator).to(patches.device)
        self.memory_bank = patches[keep].clone()
        logger.info(
            "PatchKNN memory bank: %d of %d patches (%s) from %d images",
            len(self.memory_bank),
            len(patches),
            self.sampling,
            len(images),
        )
        return self

    def forward(self, images: torch.Tensor) -> TwoHeadOutput:
        """Score normalised images (B, 3, H, W).

        Returns:
            A ``TwoHeadOutput`` so that the two-head scoring and evaluation code applies
            unchanged: ``anomaly_score`` and ``score`` are the largest patch distance
            (B,), >= 0, higher = more anomalous; ``normal_score`` is zeros (this
            detector has no normality head); ``patch_scores`` (B, 1, h, w) are the patch
            distances.
        """
        batch = images.shape[0]
        patches, (height, width) = self.patches(images)
        distances = nearest_distance(patches, self.memory_bank.float(), self.chunk_size)
        patch_scores = distances.view(batch, 1, height, width)  # (B*h*w,) -> (B, 1, h, w)
        score = patch_scores.flatten(1).amax(dim=1)
        return TwoHeadOutput(
            normal_score=torch.zeros_like(score),
            anomaly_score=score,
            score=score,
            patch_scores=patch_scores,
        )

