"""Training loop, batch scoring and checkpoints of the two-head model.

:func:`train` runs the schedule of a :class:`~sclib.config.Config` on a uint8 image
cache. Every step works on the training device, without a data loader:

1. draw balanced batch indices (normal slots, anomaly slots, pseudo-anomaly bases);
2. gather the uint8 images, scale them to [0, 1], rotate them by a random angle and
   normalise them with the backbone's mean and std;
3. turn the pseudo-anomaly bases into pseudo anomalies (SaliencyCut by default);
4. forward in train mode, two-head deviation loss, backward, clip the gradient norm,
   Adam step. The learning rate follows StepLR once per epoch.

Losses stay on the device as tensors and are copied to the host only every
``config.log_every`` steps, so the loop adds no host-device synchronisation between log
points. (The augmentations synchronise once or twice per step, because the number of
pseudo-anomaly bases varies from batch to batch.) The loop records one row per step in
a :data:`History` DataFrame, which ``sclib.viz`` plots.

:func:`score_images` scores a uint8 image tensor in eval mode.
:func:`save_checkpoint` and :func:`load_checkpoint` store a model with its config.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

import sclib
from sclib.augment import get_augmentation, saliencycut
from sclib.augment.transforms import normalize, random_rotate, to_unit_float
from sclib.config import Config
from sclib.data.sampler import BalancedBatchSampler
from sclib.losses import LossParts, two_head_loss
from sclib.models.backbones import BackboneSpec
from sclib.models.two_head import TwoHeadModel, TwoHeadOutput
from sclib.runs import atomic_write_bytes
from sclib.utils import autocast_dtype, resolve_device

logger = logging.getLogger(__name__)

# One row per optimiser step. ``epoch`` and ``step`` count from 1, and ``step`` counts
# over the whole run. The time shares are fractions of the step's wall time.
HISTORY_COLUMNS = (
    "epoch",
    "step",
    "loss",
    "loss_normal",
    "loss_anomaly",
    "grad_norm",
    "lr",
    "images_per_s",
    "data_time_share",
    "augment_time_share",
)

#: Training history: a pandas DataFrame with :data:`HISTORY_COLUMNS`, one row per step.
History = pd.DataFrame

CHECKPOINT_FORMAT = 1


def train(
    model: TwoHeadModel,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    config: Config,
    progress: bool = True,
    callback: Callable[[History], None] | None = None,
    *,
    loss: Callable[..., LossParts] = two_head_loss,
    pseudo_probability: float = 0.5,
) -> History:
    """Train ``model`` in place on a uint8 image cache and return the per-step history.

    Args:
        model: a two-head model with a ``spec`` (mean and std for normalisation). It is
            moved to ``config.device`` and stays there, in train mode.
        train_images: uint8 (N, 3, S, S) with S = ``config.image_size``, for example
            from ``sclib.data.build_image_cache``. The whole tensor is copied to the
            device.
        train_labels: (N,) 0 for the unlabelled normal images, 1 for labelled anomalies.
        config: schedule, augmentation, device and precision settings.
        progress: show a tqdm progress bar.
        callback: called after every log point with the history so far, for example
            to redraw a live plot.
        loss: called as ``loss(output, labels, reference=..., generator=...)`` and
            returning ``LossParts``; the two-head loss by default. A one-head model such
            as ``sclib.baselines.DevNetModel`` passes its own.
        pseudo_probability: chance that a normal batch slot becomes a pseudo-anomaly
            base (label 2); 0 trains on normal images and labelled anomalies only.

    Returns:
        A DataFrame with one row per step and the columns of :data:`HISTORY_COLUMNS`.

    Raises:
        ValueError: for images or labels of the wrong shape, dtype or values, or when
            there are no normal images.
        FloatingPointError: when the loss becomes NaN or infinite; lower ``config.lr``.
    """
    images = train_images
    labels = torch.as_tensor(train_labels)
    _check_training_data(images, labels, config.image_size)
    device = resolve_device(config.device)
    dtype = autocast_dtype(device, config.precision)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    spec = model.spec
    model.to(device=device, memory_format=memory_format)
    model.train()

    # The whole cache lives on the device, so a batch is an index lookup.
    labels = labels.to(images.device)
    normal_pool = images[labels == 0].to(device)
    anomaly_pool = images[labels == 1].to(device)
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed)
    sampler = BalancedBatchSampler(
        len(normal_pool),
        len(anomaly_pool),
        config.batch_size,
        generator=generator,
        pseudo_probability=pseudo_probability,
    )
    loss_fn = functools.partial(
        loss,
        reference=config.loss_reference,
        generator=generator if config.loss_reference == "sampled" else None,
    )

    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=config.lr_step_epochs, gamma=config.lr_gamma
    )
    logger.info(
        "training %s on %s: %d normal and %d anomalous images at %d px, %d epochs x %d "
        "steps, batch %d, augmentation %s, autocast %s, %s",
        spec.name,
        device,
        len(normal_pool),
        len(anomaly_pool),
        config.image_size,
        config.epochs,
        config.steps_per_epoch,
        config.batch_size,
        config.augmentation,
        dtype or "off (float32)",
        "channels-last" if config.channels_last else "contiguous",
    )

    clock = _StepClock(device)
    recorder = _HistoryRecorder(config, callback)
    bar = tqdm(total=config.total_steps, desc="train", unit="step", disable=not progress)
    step = 0
    with _torch_threads(config.num_threads), bar:
        for epoch in range(1, config.epochs + 1):
            for _ in range(config.steps_per_epoch):
                step += 1
                lr = optimizer.param_groups[0]["lr"]
                start = clock.mark()
                batch = sampler.sample()
                batch_images = torch.cat(
                    [normal_pool[batch.normal_index], anomaly_pool[batch.anomaly_index]]
                )
                batch_images = _prepare_batch(batch_images, spec, generator, memory_format)
                data_done = clock.mark()

                with _autocast(device, dtype):
                    batch_images, batch_labels = _augment(
                        config, batch_images, batch.labels, model, loss_fn, generator
                    )
                augment_done = clock.mark()

                model.train()
                with _autocast(device, dtype):
                    output = model(batch_images)
                losses = loss_fn(_scores_as_float(output), batch_labels)
                optimizer.zero_grad(set_to_none=True)
                losses.total.backward()
                if config.grad_clip is not None:
                    grad_norm = nn.utils.clip_grad_norm_(parameters, config.grad_clip)
                else:
                    grad_norm = _gradient_norm(parameters)
                optimizer.step()
                end = clock.mark()

                marks = (start, data_done, augment_done, end)
                recorder.add(epoch, step, lr, losses, grad_norm, marks)
                bar.update(1)
                if step % config.log_every == 0 or step == config.total_steps:
                    recorder.flush(clock, bar)
            scheduler.step()

    return recorder.history()


def _check_training_data(images: torch.Tensor, labels: torch.Tensor, image_size: int) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        raise ValueError(
            f"images must be a torch.uint8 tensor (N, 3, S, S), got "
            f"{getattr(images, 'dtype', type(images).__name__)}; build it with "
            "sclib.data.build_image_cache."
        )
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (N, 3, S, S), got {tuple(images.shape)}.")
    if images.shape[2] != image_size or images.shape[3] != image_size:
        raise ValueError(
            f"images are {images.shape[2]}x{images.shape[3]} px but config.image_size is "
            f"{image_size}; rebuild the cache at {image_size} px."
        )
    if labels.shape != (images.shape[0],):
        raise ValueError(
            f"labels must have shape ({images.shape[0]},), one per image, got "
            f"{tuple(labels.shape)}."
        )
    invalid = sorted(set(labels.unique().tolist()) - {0, 1})
    if invalid:
        raise ValueError(
            f"training labels must be 0 (normal) or 1 (labelled anomaly), found {invalid}."
        )
    if not bool((labels == 0).any()):
        raise ValueError("the training set has no normal image (label 0); training needs some.")


def _prepare_batch(
    images: torch.Tensor,
    spec: BackboneSpec,
    generator: torch.Generator,
    memory_format: torch.memory_format,
) -> torch.Tensor:
    """Turn uint8 images (B, 3, S, S) into rotated, normalised float model inputs."""
    images = to_unit_float(images)
    # Rotate in [0, 1] pixel space, so that the zero fill is black.
    images, _ = random_rotate(images, generator)
    images = normalize(images, spec.mean, spec.std)
    return images.contiguous(memory_format=memory_format)


def _augment(
    config: Config,
    images: torch.Tensor,
    labels: torch.Tensor,
    model: nn.Module,
    loss_fn: Callable,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn the pseudo-anomaly bases (label 2) of a batch into pseudo anomalies."""
    if config.augmentation == "saliencycut":
        result = saliencycut(
            images,
            labels,
            model,
            generator,
            loss_fn=loss_fn,
            grid=config.saliency_grid,
            order=config.bspline_order,
            threshold=config.saliency_threshold,
        )
    else:
        result = get_augmentation(config.augmentation)(images, labels, model, generator)
    return result.images, result.labels


def _scores_as_float(output: TwoHeadOutput) -> TwoHeadOutput:
    # The loss runs in float32 even when the forward pass ran under bfloat16 autocast.
    return output._replace(
        normal_score=output.normal_score.float(), anomaly_score=output.anomaly_score.float()
    )


def _gradient_norm(parameters: list[torch.Tensor]) -> torch.Tensor:
    gradients = [parameter.grad for parameter in parameters if parameter.grad is not None]
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in gradients]))


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def _torch_threads(num_threads: int | None) -> Iterator[None]:
    """Set torch's CPU thread count for the block and restore it afterwards."""
    if num_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class _StepClock:
    """Time marks within a step: CUDA events on a GPU, ``perf_counter`` on the CPU.

    CUDA kernels run asynchronously, so host clocks would measure launch time. Events are
    recorded in the stream and read only at log points, after one synchronisation.
    """

    # NOTE: the CUDA paths of this module (events, device generator, bfloat16 autocast)
    # are covered only by the gpu-marked test and have not run on a GPU yet.

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def mark(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def seconds(self, start: Any, end: Any) -> float:
        if not self.cuda:
            return end - start
        return start.elapsed_time(end) / 1000.0

    def synchronize(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


class _HistoryRecorder:
    """Collect per-step tensors and turn them into history rows at log points."""

    def __init__(self, config: Config, callback: Callable[[History], None] | None):
        self.config = config
        self.callback = callback
        self.rows: list[dict[str, Any]] = []
        self.pending: list[dict[str, Any]] = []

    def add(self, epoch, step, lr, losses, grad_norm, marks) -> None:
        self.pending.append(
            {
                "epoch": epoch,
                "step": step,
                "lr": lr,
                "values": torch.stack(
                    [losses.total.detach(), losses.normal.detach(), losses.anomaly.detach(),
                     grad_norm.detach().float()]
                ),
                "marks": marks,
            }
        )

    def flush(self, clock: _StepClock, bar) -> None:
        """Copy the pending losses to the host, log one line and call the callback."""
        if not self.pending:
            return
        clock.synchronize()
        # One device-to-host copy for the whole window.
        values = torch.stack([entry["values"] for entry in self.pending]).cpu().tolist()
        window = []
        for entry, (loss, loss_normal, loss_anomaly, grad_norm) in zip(self.pending, values):
            start, data_done, augment_done, end = entry["marks"]
            step_seconds = max(clock.seconds(start, end), 1e-9)
            window.append(
                {
                    "epoch": entry["epoch"],
                    "step": entry["step"],
                    "loss": loss,
                    "loss_normal": loss_normal,
                    "loss_anomaly": loss_anomaly,
                    "grad_norm": grad_norm,
                    "lr": entry["lr"],
                    "images_per_s": self.config.batch_size / step_seconds,
                    "data_time_share": clock.seconds(start, data_done) / step_seconds,
                    "augment_time_share": clock.seconds(data_done, augment_done) / step_seconds,
                }
            )
        self.pending.clear()
        self.rows.extend(window)
        self._report(window, bar)

        last = window[-1]
        if not all(math.isfinite(row["loss"]) for row in window):
            raise FloatingPointError(
                f"the training loss became {last['loss']} by step {last['step']} (epoch "
                f"{last['epoch']}); lower config.lr (now {self.config.lr}) or check the images."
            )
        if self.callback is not None:
            self.callback(self.history())

    def _report(self, window: list[dict[str, Any]], bar) -> None:
        frame = pd.DataFrame(window)
        last = window[-1]
        total_seconds = (self.config.batch_size / frame["images_per_s"]).sum()
        images_per_s = self.config.batch_size * len(window) / total_seconds
        logger.info(
            "epoch %d/%d step %d/%d loss %.4f (normal %.4f, anomaly %.4f) lr %.2e "
            "%.1f images/s data %.0f%% augment %.0f%%",
            last["epoch"],
            self.config.epochs,
            last["step"],
            self.config.total_steps,
            frame["loss"].mean(),
            frame["loss_normal"].mean(),
            frame["loss_anomaly"].mean(),
            last["lr"],
            images_per_s,
            100 * frame["data_time_share"].mean(),
            100 * frame["augment_time_share"].mean(),
        )
        bar.set_postfix(loss=f"{frame['loss'].mean():.3f}", img_s=f"{images_per_s:.1f}")

    def history(self) -> History:
        return pd.DataFrame(self.rows, columns=list(HISTORY_COLUMNS))


def score_images(
    model: TwoHeadModel,
    images: torch.Tensor,
    spec: BackboneSpec | None = None,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    precision: str = "auto",
    channels_last: bool = True,
) -> TwoHeadOutput:
    """Score uint8 images in eval mode, in batches, without gradients.

    Args:
        model: a two-head model; it is moved to ``device`` and its train/eval mode is
            restored afterwards.
        images: uint8 (N, 3, H, W), resized to the training size.
        spec: backbone spec whose mean and std normalise the images; the model's own
            spec when None.
        batch_size: images per forward pass.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or a ``torch.device``.
        precision: ``"auto"``, ``"bf16"`` or ``"fp32"``, see ``sclib.utils.autocast_dtype``.
        channels_last: run in the channels-last memory format.

    Returns:
        A ``TwoHeadOutput`` of float32 CPU tensors: ``normal_score``, ``anomaly_score``
        and ``score`` (N,), higher score = more anomalous, and ``patch_scores``
        (N, 1, k, k).
    """
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(
            f"images must be a torch.uint8 tensor (N, 3, H, W), got "
            f"{getattr(images, 'dtype', type(images).__name__)} with shape "
            f"{tuple(getattr(images, 'shape', ()))}."
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    spec = spec if spec is not None else model.spec
    device = resolve_device(device)
    dtype = autocast_dtype(device, precision)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    was_training = model.training
    model.to(device=device, memory_format=memory_format)
    model.eval()

    parts: list[TwoHeadOutput] = []
    try:
        with torch.inference_mode():
            for first in range(0, len(images), batch_size):
                batch = images[first : first + batch_size].to(device)
                batch = normalize(batch, spec.mean, spec.std)
                batch = batch.contiguous(memory_format=memory_format)
                with _autocast(device, dtype):
                    output = model(batch)
                parts.append(TwoHeadOutput(*(field.float().cpu() for field in output)))
    finally:
        model.train(was_training)

    if not parts:
        raise ValueError("images is empty; there is nothing to score.")
    return TwoHeadOutput(*(torch.cat(fields) for fields in zip(*parts)))


def save_checkpoint(path: str | Path, model: TwoHeadModel, config: Config) -> Path:
    """Write the model weights and the config to ``path`` atomically and return the path.

    The file is a ``torch.save`` dict with ``config`` (``Config.to_dict()``),
    ``state_dict`` (CPU tensors), ``sclib_version`` and ``format``. It loads with
    ``torch.load(weights_only=True)``.
    """
    state_dict = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "sclib_version": sclib.__version__,
        "config": config.to_dict(),
        "state_dict": state_dict,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path) -> tuple[TwoHeadModel, Config]:
    """Rebuild a model saved by :func:`save_checkpoint` and return it with its config.

    The detector of ``config.method`` (a two-head model, a DevNet model, a PatchKNN or a
    KnnEnsemble) is built without pretrained weights (nothing is read or downloaded),
    then the saved state dict is loaded. The model is on the CPU in eval mode.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: when the file is not an sclib checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist.")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is not an sclib checkpoint (format {CHECKPOINT_FORMAT}); "
            "write one with sclib.train.save_checkpoint."
        )
    config = Config.from_dict(payload["config"])
    # imported here because sclib.baselines imports this module
    from sclib.baselines.detectors import build_detector

    model = build_detector(config, weights=None)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, config
