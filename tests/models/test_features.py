"""Multi-level features and the frozen backbone of the two-head model."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from sclib.config import get_profile
from sclib.losses import two_head_loss
from sclib.models.backbones import build_backbone
from sclib.models.features import (
    MultiLevelFeatures,
    freeze,
    fuse_batch_norms,
    multi_level_features,
)
from sclib.models.two_head import build_model
from sclib.train import train


def images(batch: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("name", "channels"),
    [("efficientnet_lite0", 40 + 112), ("resnet18", 128 + 256), ("simple_cnn", 96 + 128)],
)
def test_multi_level_shape_and_channels(name, channels):
    backbone, spec = build_backbone(name, weights=None, features="multi")

    features = backbone(images(size=96))

    assert spec.channels == channels
    assert spec.stride == 16
    assert features.shape == (2, channels, 96 // 16, 96 // 16)


def test_multi_level_concatenates_pooled_stride8_and_stride16():
    backbone, _ = build_backbone("simple_cnn", weights=None, features="multi")
    backbone.eval()
    batch = images()

    features = backbone(batch)

    stride8 = backbone.stage8(backbone.stem(batch))
    stride16 = backbone.stage16(stride8)
    assert stride8.shape[-1] == 64 // 8
    assert torch.allclose(features[:, :96], F.avg_pool2d(stride8, 2), atol=1e-6)
    assert torch.allclose(features[:, 96:], stride16, atol=1e-6)


def test_smoothing_is_local_average():
    plain, _ = build_backbone("simple_cnn", weights=None, features="multi")
    smoothed = MultiLevelFeatures(plain.stem, plain.stage8, plain.stage16, smoothing=3).eval()
    plain.eval()
    batch = images(size=96)

    expected = F.avg_pool2d(plain(batch), 3, stride=1, padding=1, count_include_pad=False)

    assert torch.allclose(smoothed(batch), expected, atol=1e-6)


def test_efficientnet_levels_are_blocks_2_and_4():
    trunk, _ = build_backbone("efficientnet_lite0", weights=None)
    backbone, channels = multi_level_features("efficientnet_lite0", trunk)
    net = trunk.model.eval()
    backbone.eval()
    batch = images()

    hidden = net.bn1(net.conv_stem(batch))
    for block in net.blocks[:3]:
        hidden = block(hidden)
    stride8 = hidden
    for block in net.blocks[3:5]:
        hidden = block(hidden)
    expected = torch.cat([F.avg_pool2d(stride8, 2), hidden], dim=1)

    assert channels == 152
    assert torch.allclose(backbone(batch), expected, atol=1e-5)


@pytest.mark.parametrize("smoothing", [0, 2])
def test_smoothing_must_be_odd_positive(smoothing):
    with pytest.raises(ValueError, match="smoothing"):
        build_backbone("simple_cnn", weights=None, features="multi", smoothing=smoothing)


def test_unknown_feature_level_is_rejected():
    with pytest.raises(ValueError, match="features"):
        build_backbone("simple_cnn", weights=None, features="stride8")


def test_freeze_turns_off_gradients_and_training():
    backbone, _ = build_backbone("simple_cnn", weights=None, features="multi")

    frozen = freeze(backbone.train())

    assert not frozen.training
    assert not any(parameter.requires_grad for parameter in frozen.parameters())


def test_frozen_backbone_passes_input_gradient():
    model = build_model("simple_cnn", weights=None, features="multi", train_backbone=False)
    batch = images().requires_grad_(True)

    loss = two_head_loss(model.eval()(batch), torch.tensor([0, 1])).total
    (gradient,) = torch.autograd.grad(loss, batch)

    assert gradient.abs().sum() > 0


def test_frozen_backbone_stays_in_eval_mode():
    model = build_model("simple_cnn", weights=None, features="multi", train_backbone=False)

    model.train()

    assert not model.backbone.training
    assert all(not module.training for module in model.backbone.modules())
    assert model.normal_head.training
    assert model.anomaly_head.training


def test_training_updates_heads_not_frozen_backbone():
    config = get_profile(
        "tiny",
        backbone="simple_cnn",
        weights=None,
        features="multi",
        train_backbone=False,
        device="cpu",
        epochs=1,
        steps_per_epoch=2,
    )
    model = build_model(config, weights=None)
    backbone_before = {key: value.clone() for key, value in model.backbone.state_dict().items()}
    heads_before = [parameter.detach().clone() for parameter in model.anomaly_head.parameters()]
    generator = torch.Generator().manual_seed(0)
    train_images = torch.randint(0, 256, (12, 3, 64, 64), dtype=torch.uint8, generator=generator)
    train_labels = torch.tensor([0] * 9 + [1] * 3)

    train(model, train_images, train_labels, config, progress=False)

    for key, value in model.backbone.state_dict().items():
        # weights and batch-norm running statistics alike stay untouched
        assert torch.equal(value, backbone_before[key]), key
    assert all(parameter.grad is None for parameter in model.backbone.parameters())
    assert not model.backbone.training
    changed = [
        not torch.equal(before, after.detach())
        for before, after in zip(heads_before, model.anomaly_head.parameters())
    ]
    assert any(changed)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet18", "simple_cnn"])
@pytest.mark.parametrize("features", ["last", "multi"])
def test_fused_batch_norms_keep_output(name, features):
    backbone, _ = build_backbone(name, weights=None, features=features)
    generator = torch.Generator().manual_seed(0)
    for module in backbone.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            # non-trivial statistics, so that a wrong fold shows
            module.running_mean.uniform_(-1, 1, generator=generator)
            module.running_var.uniform_(0.5, 2, generator=generator)
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.uniform_(-1, 1, generator=generator)
    reference = copy.deepcopy(backbone).eval()
    batch = images(size=96)

    folded = fuse_batch_norms(backbone.eval(), torch.zeros(1, 3, 64, 64))

    remaining = [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert folded > 0
    assert remaining == []
    with torch.no_grad():
        expected = reference(batch)
        assert torch.allclose(backbone(batch), expected, atol=1e-4 * expected.abs().max())
