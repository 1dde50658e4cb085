"""Balanced batches: normal images, labelled anomalies and pseudo-anomaly bases.

Each training step takes a batch of B images: about 2B/3 slots from the normal pool and
B/3 from the labelled anomalies, so a handful of anomalies is seen in every step.
Each normal slot becomes a pseudo-anomaly base (label 2) with probability 0.5; the
augmentation later turns those bases into pseudo anomalies.

Slot counts: ``n_anomaly_slots = B // 3`` (rounded down) and ``n_normal_slots = B -
B // 3``, so B = 32 gives 22 normal and 10 anomaly slots. Without labelled anomalies
every slot is a normal slot.

Labels: 0 = normal, 1 = labelled anomaly, 2 = pseudo-anomaly base.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch


class BatchIndices(NamedTuple):
    """Indices of one batch.

    Attributes:
        normal_index: long tensor ``(n_normal_slots,)``, positions in the normal pool.
        anomaly_index: long tensor ``(n_anomaly_slots,)``, positions in the anomaly pool;
            empty without labelled anomalies.
        labels: long tensor ``(B,)`` in batch order, normal slots first, then anomaly
            slots: 0 normal, 2 pseudo-anomaly base, 1 labelled anomaly.
    """

    normal_index: torch.Tensor
    anomaly_index: torch.Tensor
    labels: torch.Tensor


def _draw_balanced(pool_size: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """Draw ``count`` indices from ``range(pool_size)`` as concatenated random permutations.

    No index repeats when ``count <= pool_size``. Otherwise the counts of any two indices
    differ by at most one.
    """
    n_rounds = -(-count // pool_size)
    rounds = [
        torch.randperm(pool_size, generator=generator, device=generator.device)
        for _ in range(n_rounds)
    ]
    return torch.cat(rounds)[:count]


class BalancedBatchSampler:
    """Draw batch indices with fixed normal and anomaly slot counts.

    Args:
        n_normal: size of the normal pool (at least 1).
        n_anomaly: size of the labelled-anomaly pool; 0 gives all-normal batches.
        batch_size: B, at least 3 when ``n_anomaly > 0`` so one anomaly slot exists.
        generator: the only source of randomness.
        pseudo_probability: chance that a normal slot becomes a pseudo-anomaly base.

    Iterating yields one ``BatchIndices`` per step without end; ``sample()`` draws one.
    """

    def __init__(
        self,
        n_normal: int,
        n_anomaly: int,
        batch_size: int,
        generator: torch.Generator,
        pseudo_probability: float = 0.5,
    ):
        if n_normal < 1:
            raise ValueError(
                f"n_normal must be at least 1, got {n_normal}, because batches need normal images."
            )
        if n_anomaly < 0:
            raise ValueError(f"n_anomaly must be non-negative, got {n_anomaly}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        if n_anomaly > 0 and batch_size < 3:
            raise ValueError(
                f"batch_size={batch_size} leaves no anomaly slot (B // 3 = 0) although "
                f"n_anomaly={n_anomaly}; use batch_size >= 3."
            )
        if not 0.0 <= pseudo_probability <= 1.0:
            raise ValueError(f"pseudo_probability must lie in [0, 1], got {pseudo_probability}.")
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}.")
        self.n_normal = n_normal
        self.n_anomaly = n_anomaly
        self.batch_size = batch_size
        self.generator = generator
        self.pseudo_probability = pseudo_probability
        self.n_anomaly_slots = batch_size // 3 if n_anomaly > 0 else 0
        self.n_normal_slots = batch_size - self.n_anomaly_slots

    def sample(self) -> BatchIndices:
        """Draw the indices and labels of one batch, on the generator's device."""
        device = self.generator.device
        normal_index = _draw_balanced(self.n_normal, self.n_normal_slots, self.generator)
        if self.n_anomaly_slots:
            anomaly_index = _draw_balanced(self.n_anomaly, self.n_anomaly_slots, self.generator)
        else:
            anomaly_index = torch.empty(0, dtype=torch.long, device=device)

        draws = torch.rand(self.n_normal_slots, generator=self.generator, device=device)
        normal_labels = (draws < self.pseudo_probability).long() * 2
        anomaly_labels = torch.ones(self.n_anomaly_slots, dtype=torch.long, device=device)
        labels = torch.cat([normal_labels, anomaly_labels])  # (B,)
        return BatchIndices(normal_index, anomaly_index, labels)

    def __iter__(self) -> Iterator[BatchIndices]:
        while True:
            yield self.sample()
