"""The two scoring heads that sit on a backbone feature map (B, C, h, w).

- ``NormalHead`` learns a normality score from globally pooled features.
- ``AnomalyHead`` learns an anomaly score from the patch-wise residual module: four
  k x k windows of the feature map at diagonal offsets are combined as
  R = b4 - b3 + b2 - b1. The coefficients sum to zero, so texture that is the same in
  all four windows cancels, and what remains is what differs between image regions.

Both heads return non-negative scores (absolute values), one per image, higher meaning
more of what the head detects (normality for ``NormalHead``, abnormality for
``AnomalyHead``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

N_BLOCKS = 4
# Sign of each of the four blocks b1..b4 in R = b4 - b3 + b2 - b1.
BLOCK_SIGNS = (-1.0, 1.0, -1.0, 1.0)
EVAL_SEED = 0


class NormalHead(nn.Module):
    """Global average pool, Linear(C, hidden), ReLU, Linear(hidden, 1), absolute value.

    ``forward`` maps a feature map (B, C, h, w) to normality scores (B,), which are >= 0.
    """

    def __init__(self, channels: int, hidden: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = features.mean(dim=(2, 3))  # (B, C, h, w) -> (B, C)
        return self.mlp(pooled).abs().squeeze(1)  # (B, 1) -> (B,)


class AnomalyHeadOutput(NamedTuple):
    """Output of ``AnomalyHead``.

    Attributes:
        score: anomaly scores (B,), >= 0, higher = more anomalous.
        patch_scores: per-cell scores (B, 1, k, k), >= 0, with k = s // 2 + 1 for a
            feature map of side s. In eval mode they are averaged over the fixed draws.
    """

    score: torch.Tensor
    patch_scores: torch.Tensor


def block_geometry(side: int) -> tuple[int, int]:
    """Return ``(k, n_offsets)``: the block side and how many diagonal offsets fit.

    For a feature map of side s, k = s // 2 + 1 and the offsets are 0 .. s - k.
    """
    if side < 1:
        raise ValueError(f"feature-map side must be >= 1, got {side}.")
    block = side // 2 + 1
    return block, side - block + 1


def draw_offsets(side: int, generator: torch.Generator | None = None) -> tuple[int, ...]:
    """Draw the four diagonal offsets (i1, i2, i3, i4) for a feature map of side ``side``.

    With at least four offsets available, the four are distinct: the first four entries
    of ``torch.randperm`` drawn from ``generator`` (the global CPU RNG when None).

    Args:
        side: feature-map side s.
        generator: a ``torch.Generator`` on any device, or None for the global RNG. A CUDA
            generator makes each draw wait for the GPU, because the offsets are Python ints.

    Returns:
        Four offsets in [0, s - k].
    """
    _, n_offsets = block_geometry(side)
    device = generator.device if generator is not None else "cpu"
    order = torch.randperm(n_offsets, generator=generator, device=device).tolist()
    if n_offsets >= N_BLOCKS:
        return tuple(order[:N_BLOCKS])

    # NOTE: fewer than four offsets exist when s <= 6 (inputs below 224 px at stride 32),
    # where the research code fails. The permuted offsets are then repeated in turn:
    # (p0, p1, p0, p1) gives R = 2 * (b[p1] - b[p0]) and (p0, p1, p2, p0) gives
    # R = b[p1] - b[p2], so R cancels constant texture and is non-zero whenever two
    # offsets exist. With a single offset (s <= 2) R is zero for every input.
    return tuple(order[j % n_offsets] for j in range(N_BLOCKS))


class AnomalyHead(nn.Module):
    """Anomaly head with the patch-wise residual module.

    For a feature map of side s (the shorter side if it is not square), the head takes
    four k x k blocks ``features[:, :, i:i+k, i:i+k]`` at diagonal offsets i1..i4 with
    k = s // 2 + 1, forms R = b4 - b3 + b2 - b1, applies Conv3x3(C, C), BatchNorm, ReLU and
    Conv1x1(C, 1), takes the absolute value, and scores each image with the mean of its
    top ``top_fraction`` of the k * k cells (at least one cell).

    Offsets:
        - Train mode: one draw of four offsets per forward pass from ``self.generator``
          (the global RNG when None), see ``draw_offsets``.
        - Eval mode: deterministic. For each feature-map side, ``eval_draws`` offset
          tuples are drawn once from a CPU generator seeded with 0 and cached. The score
          is the mean over those draws of the per-draw score, and ``patch_scores`` is
          the mean of the per-draw maps. Repeated tuples are computed once and weighted
          by their count, which gives the same mean.

    Args:
        channels: channel count C of the feature map.
        top_fraction: share of the k * k cells averaged into the image score.
        eval_draws: number of fixed offset draws averaged in eval mode.
        generator: generator for the train-mode draws, preferably on the CPU (settable
            later as ``head.generator``).
    """

    def __init__(
        self,
        channels: int,
        top_fraction: float = 0.1,
        eval_draws: int = 8,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if not 0.0 < top_fraction <= 1.0:
            raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}.")
        if eval_draws < 1:
            raise ValueError(f"eval_draws must be >= 1, got {eval_draws}.")
        self.top_fraction = top_fraction
        self.eval_draws = eval_draws
        self.generator = generator
        self.scorer = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, 1, kernel_size=1),
        )
        self._eval_offsets: dict[int, list[tuple[tuple[int, ...], int]]] = {}

    def eval_offsets(self, side: int) -> list[tuple[tuple[int, ...], int]]:
        """Return the fixed eval-mode draws for ``side`` as ``(offsets, count)`` pairs."""
        if side not in self._eval_offsets:
            generator = torch.Generator().manual_seed(EVAL_SEED)
            counts: dict[tuple[int, ...], int] = {}
            for _ in range(self.eval_draws):
                offsets = draw_offsets(side, generator)
                counts[offsets] = counts.get(offsets, 0) + 1
            self._eval_offsets[side] = list(counts.items())
        return self._eval_offsets[side]

    def residual(self, features: torch.Tensor, offsets: tuple[int, ...]) -> torch.Tensor:
        """Return R = b4 - b3 + b2 - b1 (B, C, k, k) for the blocks at ``offsets``."""
        side = min(features.shape[-2:])
        block, _ = block_geometry(side)
        residual = 0
        for sign, offset in zip(BLOCK_SIGNS, offsets):
            window = features[:, :, offset : offset + block, offset : offset + block]
            residual = residual + sign * window
        return residual

    def top_mean(self, patch_scores: torch.Tensor) -> torch.Tensor:
        """Return the mean of the top ``top_fraction`` cells of each map (B, 1, k, k) -> (B,)."""
        cells = patch_scores.flatten(1)  # (B, 1, k, k) -> (B, k*k)
        n_top = max(1, math.floor(self.top_fraction * cells.shape[1]))
        return cells.topk(n_top, dim=1).values.mean(dim=1)

    def forward(self, features: torch.Tensor) -> AnomalyHeadOutput:
        """Score a feature map (B, C, h, w); see the class docstring for the offsets."""
        batch = features.shape[0]
        side = min(features.shape[-2:])

        if self.training:
            residual = self.residual(features, draw_offsets(side, self.generator))
            patch_scores = self.scorer(residual).abs()
            return AnomalyHeadOutput(self.top_mean(patch_scores), patch_scores)

        # eval: all draws in one pass, stacked along the batch dimension
        draws = self.eval_offsets(side)
        residuals = torch.cat([self.residual(features, offsets) for offsets, _ in draws])
        patch_scores = self.scorer(residuals).abs()  # (D*B, C, k, k) -> (D*B, 1, k, k)
        scores = self.top_mean(patch_scores)

        weights = torch.tensor(
            [count for _, count in draws], dtype=scores.dtype, device=scores.device
        )
        weights = weights / weights.sum()
        scores = scores.unflatten(0, (len(draws), batch))  # (D*B,) -> (D, B)
        patch_scores = patch_scores.unflatten(0, (len(draws), batch))  # -> (D, B, 1, k, k)
        score = (weights[:, None] * scores).sum(dim=0)
        patch_map = (weights[:, None, None, None, None] * patch_scores).sum(dim=0)
        return AnomalyHeadOutput(score, patch_map)
