"""Backbone registry, weight loading and the EfficientNet-Lite0 ImageNet sanity checks."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import sklearn
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image

from sclib.models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RESNET18_FILENAME,
    available_backbones,
    build_backbone,
    efficientnet_lite0_classifier,
    efficientnet_lite0_weight_path,
    remap_state_dict_in_order,
    resnet18_weight_path,
)

GRACE_HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
FLOWER = Path(sklearn.__file__).parent / "datasets" / "images" / "flower.jpg"
DAISY = 985
MILITARY_UNIFORM = 652
CROSSWORD_PUZZLE = 918
# classes a portrait of an officer in uniform may plausibly get
UNIFORM_LIKE = {400, 457, 465, 652, 667, 834, 906}  # gown, ties, uniforms, mortarboard, suit


def photo(path: Path, size: int = 224) -> torch.Tensor:
    """Load a photo resized to size x size, as float (1, 3, size, size) in [0, 1]."""
    image = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255


def normalise(images: torch.Tensor, mean, std) -> torch.Tensor:
    return (images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def pretrained_classifier():
    return efficientnet_lite0_classifier("default")


@pytest.fixture(scope="module")
def lite0_source_state():
    return torch.load(efficientnet_lite0_weight_path(), map_location="cpu", weights_only=True)


@pytest.mark.parametrize("name", ["simple_cnn", "resnet18", "efficientnet_lite0"])
def test_backbone_feature_map_shape(name):
    backbone, spec = build_backbone(name, weights=None)
    features = backbone(torch.randn(2, 3, 64, 64))
    assert features.shape == (2, spec.channels, 64 // spec.stride, 64 // spec.stride)


def test_registry_lists_three_backbones():
    assert available_backbones() == ["efficientnet_lite0", "resnet18", "simple_cnn"]


def test_unknown_backbone_raises():
    with pytest.raises(ValueError, match="vgg"):
        build_backbone("vgg")


def test_simple_cnn_rejects_weight_file(tmp_path):
    with pytest.raises(ValueError, match="no pretrained weights"):
        build_backbone("simple_cnn", weights=tmp_path / "weights.pth")


def test_efficientnet_lite0_maps_all_tensors(lite0_source_state):
    classifier = efficientnet_lite0_classifier(None)
    remapped = remap_state_dict_in_order(lite0_source_state, classifier)

    assert len(lite0_source_state) == 296
    assert list(remapped) == list(classifier.state_dict())
    for (source_key, source), (key, expected) in zip(
        lite0_source_state.items(), classifier.state_dict().items()
    ):
        assert source.shape == expected.shape, (source_key, key)
        assert remapped[key] is source


def test_efficientnet_lite0_loads_package_weights(lite0_source_state):
    backbone, spec = build_backbone("efficientnet_lite0")
    stem = backbone.model.conv_stem.weight
    head_bn_mean = backbone.model.bn2.running_mean

    assert torch.equal(stem, lite0_source_state["_conv_stem.weight"])
    assert torch.equal(head_bn_mean, lite0_source_state["_bn1.running_mean"])
    assert spec.channels == 1280
    assert spec.stride == 32


def test_efficientnet_features_differ_from_random_init():
    torch.manual_seed(0)
    images = torch.randn(1, 3, 64, 64)
    pretrained, _ = build_backbone("efficientnet_lite0")
    random_init, _ = build_backbone("efficientnet_lite0", weights=None)
    with torch.no_grad():
        difference = pretrained.eval()(images) - random_init.eval()(images)
    assert difference.abs().mean() > 0.1


def test_remap_rejects_wrong_shape():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    source = OrderedDict(w=torch.zeros(2, 4), b=torch.zeros(2))
    with pytest.raises(ValueError, match=r"#0: w \(2, 4\) -> 0.weight \(2, 3\)"):
        remap_state_dict_in_order(source, model, source_name="w.pth")


def test_remap_rejects_wrong_count():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    with pytest.raises(ValueError, match="contains 1 tensors but Sequential expects 2"):
        remap_state_dict_in_order(OrderedDict(w=torch.zeros(2, 3)), model)


@pytest.mark.skipif(not GRACE_HOPPER.is_file(), reason="matplotlib sample photo not installed")
def test_classifier_names_uniform_on_grace_hopper(pretrained_classifier):
    _, spec = build_backbone("efficientnet_lite0", weights=None)
    images = normalise(photo(GRACE_HOPPER), spec.mean, spec.std)
    with torch.no_grad():
        probabilities = pretrained_classifier(images).softmax(dim=1)[0]
    top5 = set(probabilities.topk(5).indices.tolist())

    assert probabilities.argmax().item() == MILITARY_UNIFORM
    assert probabilities[MILITARY_UNIFORM] > 0.2  # 200 times the chance level of 1/1000
    assert len(top5 & UNIFORM_LIKE) >= 3


@pytest.mark.skipif(not FLOWER.is_file(), reason="scikit-learn sample photo not installed")
def test_classifier_names_daisy_on_flower(pretrained_classifier):
    _, spec = build_backbone("efficientnet_lite0", weights=None)
    with torch.no_grad():
        logits = pretrained_classifier(normalise(photo(FLOWER), spec.mean, spec.std))
    assert logits.argmax().item() == DAISY


@pytest.mark.skipif(not GRACE_HOPPER.is_file(), reason="matplotlib sample photo not installed")
def test_classifier_prediction_survives_flip(pretrained_classifier):
    _, spec = build_backbone("efficientnet_lite0", weights=None)
    images = normalise(photo(GRACE_HOPPER), spec.mean, spec.std)
    with torch.no_grad():
        logits = pretrained_classifier(torch.cat([images, images.flip(3)]))
    assert logits.argmax(dim=1).tolist() == [MILITARY_UNIFORM, MILITARY_UNIFORM]


@pytest.mark.skipif(not GRACE_HOPPER.is_file(), reason="matplotlib sample photo not installed")
def test_half_normalisation_matches_stem_statistics(lite0_source_state):
    """Mean = std = 0.5 reproduces the stem batch-norm statistics; ImageNet's does not."""
    _, spec = build_backbone("efficientnet_lite0", weights=None)
    stem = efficientnet_lite0_classifier("default").conv_stem
    running_var = lite0_source_state["_bn0.running_var"]

    def variance_ratio(mean, std) -> float:
        with torch.no_grad():
            response = stem(normalise(photo(GRACE_HOPPER), mean, std))
        return (response.var(dim=(0, 2, 3)) / running_var).median().item()

    spec_ratio = variance_ratio(spec.mean, spec.std)
    imagenet_ratio = variance_ratio(IMAGENET_MEAN, IMAGENET_STD)
    assert abs(np.log(spec_ratio)) < abs(np.log(imagenet_ratio))
    assert 0.5 < spec_ratio < 2.0


def test_classifier_calls_checkerboard_crossword(pretrained_classifier):
    """A black-and-white checkerboard is a crossword puzzle, with or without noise or a flip."""
    rows = torch.arange(224).view(-1, 1) // 28
    cols = torch.arange(224).view(1, -1) // 28
    board = ((rows + cols) % 2).float().expand(1, 3, 224, 224) * 2 - 1  # mean = std = 0.5
    noise = 0.05 * torch.randn(board.shape, generator=torch.Generator().manual_seed(0))
    images = torch.cat([board, board + noise, board.flip(3)])
    random_init = efficientnet_lite0_classifier(None)
    with torch.no_grad():
        probabilities = pretrained_classifier(images).softmax(dim=1)
        untrained = random_init(board).softmax(dim=1)

    assert probabilities.argmax(dim=1).tolist() == [CROSSWORD_PUZZLE] * 3
    assert probabilities[:, CROSSWORD_PUZZLE].min() > 0.05  # 50 times the chance level
    assert untrained[0, CROSSWORD_PUZZLE] < probabilities[0, CROSSWORD_PUZZLE] / 2


def test_resnet18_missing_weights_error_names_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected_path = tmp_path / "hub" / "checkpoints" / RESNET18_FILENAME
    with pytest.raises(FileNotFoundError) as error:
        build_backbone("resnet18")
    assert str(expected_path) in str(error.value)
    assert "https://download.pytorch.org/models/" + RESNET18_FILENAME in str(error.value)


def test_resnet18_loads_from_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = torchvision.models.resnet18(weights=None)
    path = resnet18_weight_path()
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)

    backbone, spec = build_backbone("resnet18")
    assert path == tmp_path / "hub" / "checkpoints" / RESNET18_FILENAME
    assert torch.equal(backbone.conv1.weight, reference.conv1.weight)
    assert torch.equal(backbone.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)
    assert spec.mean == IMAGENET_MEAN


def test_resnet18_loads_from_user_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "my_resnet.pth"
    torch.save(reference.state_dict(), path)

    backbone, _ = build_backbone("resnet18", weights=path)
    images = torch.randn(1, 3, 64, 64)
    expected = torch.nn.Sequential(*list(reference.children())[:-2]).eval()(images)
    assert torch.allclose(backbone.eval()(images), expected)


def test_resnet18_missing_user_path_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        build_backbone("resnet18", weights=tmp_path / "nowhere.pth")


def test_backbone_works_channels_last():
    backbone, _ = build_backbone("efficientnet_lite0", weights=None)
    backbone.eval()
    images = torch.randn(2, 3, 64, 64)
    expected = backbone(images)
    backbone = backbone.to(memory_format=torch.channels_last)
    actual = backbone(images.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(actual, expected, atol=1e-4)
    assert F.mse_loss(actual, expected) < 1e-8
