"""Two-head model: output fields, scales, determinism and memory formats."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from sclib.augment.transforms import downsample
from sclib.losses import two_head_loss
from sclib.models.two_head import TwoHeadModel, TwoHeadOutput, build_model


def images(batch: int = 3, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def model() -> TwoHeadModel:
    return build_model("simple_cnn", weights=None, n_scales=2)


def test_output_fields_and_shapes(model):
    output = model(images())
    assert isinstance(output, TwoHeadOutput)
    assert output.normal_score.shape == (3,)
    assert output.anomaly_score.shape == (3,)
    assert output.score.shape == (3,)
    # simple_cnn has stride 16: a 64 px image gives side 4, so k = 4 // 2 + 1 = 3
    assert output.patch_scores.shape == (3, 1, 3, 3)


@pytest.mark.parametrize("training", [True, False])
def test_score_is_anomaly_minus_normal(model, training):
    output = model.train(training)(images())
    assert torch.equal(output.score, output.anomaly_score - output.normal_score)


def test_scores_average_over_scales(model):
    model.eval()
    batch = images()
    output = model(batch)

    full = model.backbone(batch)
    half = model.backbone(downsample(batch, 2))
    normal = (model.normal_head(full) + model.normal_head(half)) / 2
    anomaly = (model.anomaly_head(full).score + model.anomaly_head(half).score) / 2
    assert torch.allclose(output.normal_score, normal, atol=1e-6)
    assert torch.allclose(output.anomaly_score, anomaly, atol=1e-6)
    assert torch.allclose(output.patch_scores, model.anomaly_head(full).patch_scores)


def test_single_scale_uses_full_image_only():
    model = build_model("simple_cnn", weights=None, n_scales=1).eval()
    batch = images()
    output = model(batch)
    assert torch.allclose(output.normal_score, model.normal_head(model.backbone(batch)))


def test_eval_output_repeats_exactly(model):
    model.eval()
    batch = images()
    first = model(batch)
    torch.rand(5)  # advance the global RNG: eval scores must not depend on it
    second = model(batch)
    for before, after in zip(first, second):
        assert torch.equal(before, after)


def test_channels_last_matches_contiguous(model):
    model.eval()
    batch = images()
    expected = model(batch)
    model = model.to(memory_format=torch.channels_last)
    actual = model(batch.contiguous(memory_format=torch.channels_last))
    for name, before, after in zip(TwoHeadOutput._fields, expected, actual):
        assert torch.allclose(before, after, atol=1e-5), name


def test_build_model_channels_last_option():
    model = build_model("simple_cnn", weights=None, channels_last=True)
    weight = model.anomaly_head.scorer[0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert model(images()).score.shape == (3,)


def test_build_model_reads_config_fields():
    config = SimpleNamespace(backbone="simple_cnn", n_scales=3, channels_last=False)
    model = build_model(config, weights=None)
    assert model.n_scales == 3
    assert model.spec.name == "simple_cnn"


def test_zero_scales_raise():
    with pytest.raises(ValueError, match="n_scales"):
        build_model("simple_cnn", weights=None, n_scales=0)


def test_loss_reaches_backbone_and_both_heads(model):
    labels = torch.tensor([0, 1, 2])
    two_head_loss(model.train()(images()), labels).total.backward()
    for part in (model.backbone, model.normal_head, model.anomaly_head):
        gradients = [p.grad for p in part.parameters()]
        assert all(g is not None for g in gradients)
        assert sum(g.abs().sum() for g in gradients) > 0



@pytest.mark.gpu
def test_cuda_bfloat16_channels_last_close_to_float32(model):
    device = torch.device("cuda")
    model = model.to(device).eval()
    batch = images().to(device)
    expected = model(batch)
    model = model.to(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        actual = model(batch.contiguous(memory_format=torch.channels_last))
    assert torch.isfinite(actual.score).all()
    assert torch.allclose(actual.score.float(), expected.score, atol=0.1, rtol=0.05)
