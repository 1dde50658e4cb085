"""A training step and a scoring loop that do the work the way the research code does.

This module is the slow side of ``train_speed.py``. It keeps the model work per image of
the public SaliencyCut code and none of sclib's speed levers:

- data: a ``torch.utils.data.DataLoader`` whose dataset opens each PNG from disk for
  every item of every step, converts it to RGB, resizes it, rotates it by a random
  angle with PIL (zero fill), and applies ``ToTensor`` and ``Normalize``;
- float32 everywhere, contiguous (NCHW) tensors, no autocast;
- saliency: the model in eval mode on the WHOLE batch, ``loss.backward()`` (which also
  fills every parameter gradient), then ``images.grad``;
- smoothing and paste: a Python loop over the pseudo-anomaly rows, one map at a time;
- training pass: train mode, loss, backward, gradient-norm clipping at 1.0, Adam step.

The model itself (two scales, both heads) is the same ``TwoHeadModel`` that the fast
path trains, so both variants do the same network work per training pass. The code is
written from the method description in sclib's design, not taken from the research code.

Shapes: images (B, 3, H, W), labels (B,) long, saliency maps (B, 1, H, W).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from sclib.augment.saliency import smooth_saliency
from sclib.losses import two_head_loss

NORMAL, ANOMALY, PSEUDO = 0, 1, 2
PHASES = ("data", "saliency", "smooth_and_paste", "train_pass")


class ResearchStyleDataset(Dataset):
    """Images read from disk and transformed with PIL on every access.

    An item key is ``(index, label, angle)``: the file index, the batch label (0, 1 or
    2) and the rotation angle in degrees (None for no rotation). The batch sampler draws
    labels and angles, so the result does not depend on the number of loader workers.

    Args:
        paths: image files.
        size: output side in pixels.
        mean: per-channel mean on the [0, 1] scale for ``Normalize``.
        std: per-channel standard deviation on the [0, 1] scale.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
    ):
        self.paths = [Path(path) for path in paths]
        self.size = size
        self.mean = list(mean)
        self.std = list(std)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int, float | None]) -> tuple[torch.Tensor, int]:
        index, label, angle = key
        with Image.open(self.paths[index]) as image:
            image = image.convert("RGB")
        image = TF.resize(image, [self.size, self.size])
        if angle is not None:
            image = TF.rotate(image, angle, fill=0)
        tensor = TF.to_tensor(image)
        return TF.normalize(tensor, self.mean, self.std), label


class BalancedKeySampler:
    """Batch sampler over ``ResearchStyleDataset`` keys: 2B/3 normal, B/3 anomaly slots.

    Each normal slot becomes a pseudo-anomaly base (label 2) with probability 0.5, and
    every item gets an angle drawn uniformly from [-180, 180] degrees. Iteration never
    ends; the training loop decides how many batches it takes.

    Args:
        normal_indices: dataset indices of the normal pool.
        anomaly_indices: dataset indices of the labelled anomalies (may be empty).
        batch_size: B.
        seed: seed of the ``numpy.random.Generator`` behind every draw.
    """

    def __init__(
        self,
        normal_indices: Sequence[int],
        anomaly_indices: Sequence[int],
        batch_size: int,
        seed: int,
    ):
        self.normal_indices = np.asarray(normal_indices)
        self.anomaly_indices = np.asarray(anomaly_indices)
        self.n_anomaly_slots = batch_size // 3 if len(self.anomaly_indices) else 0
        self.n_normal_slots = batch_size - self.n_anomaly_slots
        self.rng = np.random.default_rng(seed)

    def __iter__(self) -> Iterator[list[tuple[int, int, float]]]:
        while True:
            normal = self.rng.choice(self.normal_indices, self.n_normal_slots)
            pseudo = self.rng.random(self.n_normal_slots) < 0.5
            keys = [(int(i), PSEUDO if p else NORMAL) for i, p in zip(normal, pseudo)]
            if self.n_anomaly_slots:
                anomalies = self.rng.choice(self.anomaly_indices, self.n_anomaly_slots)
                keys += [(int(i), ANOMALY) for i in anomalies]
            angles = self.rng.uniform(-180.0, 180.0, len(keys))
            yield [(index, label, float(angle)) for (index, label), angle in zip(keys, angles)]


def whole_batch_saliency(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Compute the input saliency of every image with a full ``loss.backward()``.

    The model runs in eval mode. The backward pass fills the parameter gradients as well
    as ``images.grad``; the parameter gradients are cleared afterwards.

    Returns:
        float (B, 1, H, W), ``sqrt(mean over channels of grad**2)``.
    """
    model.eval()
    inputs = images.detach().clone().requires_grad_(True)
    loss = two_head_loss(model(inputs), labels).total
    model.zero_grad(set_to_none=True)
    loss.backward()
    gradient = inputs.grad
    model.zero_grad(set_to_none=True)
    return gradient.square().mean(dim=1, keepdim=True).sqrt()  # (B, 3, H, W) -> (B, 1, H, W)


def paste_per_sample(
    images: torch.Tensor,
    labels: torch.Tensor,
    saliency: torch.Tensor,
    rng: np.random.Generator,
    grid: int,
    order: int,
    threshold: float,
) -> torch.Tensor:
    """Replace the salient region of a random normal donor, one pseudo row at a time.

    For each label-2 row A, a donor N is drawn among the label-0 rows. The donor's map is
    smoothed alone and thresholded into a mask M, and the row becomes
    ``M * A + (1 - M) * N``.
    """
    mixed = images.detach().clone()
    label_list = labels.tolist()
    normal_rows = [row for row, label in enumerate(label_list) if label == NORMAL]
    if not normal_rows:
        return mixed
    for row, label in enumerate(label_list):
        if label != PSEUDO:
            continue
        donor = normal_rows[int(rng.integers(len(normal_rows)))]
        smooth = smooth_saliency(saliency[donor : donor + 1], grid=grid, order=order)
        mask = (smooth[0] > threshold).float()  # (1, 1, H, W) -> (1, H, W)
        mixed[row] = mask * images[row] + (1 - mask) * images[donor]
    return mixed


class StepTiming(NamedTuple):
    """Wall-clock seconds of one training step and of each of its phases (``PHASES``)."""

    seconds: float
    phase_seconds: dict[str, float]
    loss: float


class ResearchStyleTrainer:
    """Research-style training, one step per call of :meth:`step`.

    A step runs from asking the loader for a batch to the end of the optimiser step, so
    with ``num_workers=0`` it includes every decode and transform of that batch.

    Args:
        model: the model to train; it is moved to ``device`` in the contiguous format.
        dataset: training images.
        sampler: batch sampler over ``dataset`` keys.
        device: training device.
        lr, weight_decay: Adam settings.
        grad_clip: maximum gradient norm.
        grid, order, threshold: SaliencyCut smoothing and mask settings.
        num_workers: DataLoader worker processes.
        seed: seed of the donor draws.
    """

    def __init__(
        self,
        model: nn.Module,
        dataset: ResearchStyleDataset,
        sampler: BalancedKeySampler,
        device: torch.device,
        lr: float = 2e-4,
        weight_decay: float = 1e-5,
        grad_clip: float = 1.0,
        grid: int = 18,
        order: int = 2,
        threshold: float = 0.4,
        num_workers: int = 0,
        seed: int = 0,
    ):
        self.model = model.to(device=device, memory_format=torch.contiguous_format)
        self.device = device
        self.parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
        self.optimizer = torch.optim.Adam(self.parameters, lr=lr, weight_decay=weight_decay)
        self.grad_clip = grad_clip
        self.grid, self.order, self.threshold = grid, order, threshold
        loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
        )
        self.batches = iter(loader)
        self.paste_rng = np.random.default_rng(seed + 1)

    def step(self) -> StepTiming:
        """Run one training step and return its timing."""
        model, device = self.model, self.device
        marks = [_mark(device)]
        images, labels = next(self.batches)
        images = images.to(device)
        labels = labels.to(device)
        marks.append(_mark(device))

        saliency = whole_batch_saliency(model, images, labels)
        marks.append(_mark(device))

        mixed = paste_per_sample(
            images, labels, saliency, self.paste_rng, self.grid, self.order, self.threshold
        )
        marks.append(_mark(device))

        model.train()
        loss = two_head_loss(model(mixed), labels).total
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.parameters, self.grad_clip)
        self.optimizer.step()
        marks.append(_mark(device))

        phase_seconds = {
            phase: end - start for phase, start, end in zip(PHASES, marks[:-1], marks[1:])
        }
        return StepTiming(marks[-1] - marks[0], phase_seconds, float(loss.detach()))


def score_research_style(
    model: nn.Module,
    dataset: ResearchStyleDataset,
    batch_size: int,
    device: torch.device,
    num_workers: int = 0,
) -> tuple[torch.Tensor, float]:
    """Score every image of ``dataset`` in eval mode, decoding each file on the way.

    Returns:
        ``(scores, seconds)``: image scores (N,) on the CPU, higher = more anomalous, and
        the wall-clock time of the loop.
    """
    keys = [(index, NORMAL, None) for index in range(len(dataset))]
    batches = [keys[first : first + batch_size] for first in range(0, len(keys), batch_size)]
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=num_workers)
    model.to(device=device, memory_format=torch.contiguous_format)
    model.eval()

    scores = []
    started = _mark(device)
    with torch.no_grad():
        for images, _ in loader:
            scores.append(model(images.to(device)).score.cpu())
    seconds = _mark(device) - started
    return torch.cat(scores), seconds


def _mark(device: torch.device) -> float:
    # CUDA kernels run asynchronously: wait for them so that a phase is charged its work.
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
