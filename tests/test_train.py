"""Specification of sclib.train: the training loop, batch scoring and checkpoints."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from sclib.config import get_profile
from sclib.models.backbones import BackboneSpec
from sclib.models.two_head import TwoHeadOutput, build_model
from sclib.train import (
    HISTORY_COLUMNS,
    load_checkpoint,
    save_checkpoint,
    score_images,
    train,
)

SIZE = 32


def _config(**overrides):
    values = {
        "backbone": "simple_cnn",
        "weights": None,
        "device": "cpu",
        "image_size": SIZE,
        "steps_per_epoch": 2,
    }
    values.update(overrides)
    return get_profile("tiny", **values)


def _model(config, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(config, weights=None, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def cache():
    """Ten noise images and four with a bright square, uint8 (14, 3, 32, 32)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(90, 140, (14, 3, SIZE, SIZE), generator=generator, dtype=torch.uint8)
    images[10:, :, 4:12, 4:12] = 250
    labels = torch.tensor([0] * 10 + [1] * 4)
    return images, labels


@pytest.fixture
def trained(cache):
    """A model trained for two steps, its config, history, start weights and callbacks."""
    images, labels = cache
    config = _config(log_every=1)
    model = _model(config)
    start_weights = [parameter.detach().clone() for parameter in model.parameters()]
    callbacks = []

    history = train(model, images, labels, config, progress=False, callback=callbacks.append)

    return model, config, history, start_weights, callbacks


def test_train_returns_history_per_step(trained):
    _, _, history, _, _ = trained

    assert isinstance(history, pd.DataFrame)
    assert list(history.columns) == list(HISTORY_COLUMNS)
    assert history["step"].tolist() == [1, 2]
    assert history["epoch"].tolist() == [1, 1]
    for column in ("loss", "loss_normal", "loss_anomaly", "grad_norm", "images_per_s"):
        assert all(math.isfinite(value) for value in history[column]), column
    assert (history["loss"] - history["loss_normal"] - history["loss_anomaly"]).abs().max() < 1e-5
    assert history["data_time_share"].between(0, 1).all()
    assert history["augment_time_share"].between(0, 1).all()


def test_train_updates_parameters(trained):
    model, _, _, start_weights, _ = trained

    changed = [
        not torch.equal(old, new.detach()) for old, new in zip(start_weights, model.parameters())
    ]

    assert any(changed)


def test_train_calls_callback_at_log_points(trained):
    _, _, history, _, callbacks = trained

    assert [len(rows) for rows in callbacks] == [1, 2]
    pd.testing.assert_frame_equal(callbacks[-1], history)


@pytest.mark.parametrize("augmentation", ["saliencycut", "cutmix", "cutpaste", "none"])
def test_train_runs_every_augmentation(cache, augmentation):
    images, labels = cache
    config = _config(augmentation=augmentation, steps_per_epoch=1)

    history = train(_model(config), images, labels, config, progress=False)

    assert len(history) == 1
    assert math.isfinite(history["loss"].iloc[0])


def test_train_follows_step_schedule(cache):
    images, labels = cache
    config = _config(epochs=3, steps_per_epoch=1, lr=1e-3, lr_step_epochs=1, lr_gamma=0.5)

    history = train(_model(config), images, labels, config, progress=False)

    assert history["lr"].tolist() == pytest.approx([1e-3, 5e-4, 2.5e-4])
    assert history["epoch"].tolist() == [1, 2, 3]


def test_train_is_reproducible_on_cpu(cache):
    images, labels = cache
    config = _config(steps_per_epoch=1)

    first = train(_model(config), images, labels, config, progress=False)
    second = train(_model(config), images, labels, config, progress=False)

    assert first["loss"].tolist() == second["loss"].tolist()


def test_train_without_anomalies_uses_normal_batches(cache):
    images, labels = cache
    config = _config(steps_per_epoch=1)

    history = train(_model(config), images[:10], labels[:10], config, progress=False)

    assert len(history) == 1
    assert all(math.isfinite(value) for value in history["loss"])


def test_train_rejects_wrong_image_size(cache):
    images, labels = cache
    config = _config(image_size=96)

    with pytest.raises(ValueError, match="32x32 px but config.image_size is 96"):
        train(_model(config), images, labels, config, progress=False)


def test_train_rejects_float_images(cache):
    images, labels = cache
    config = _config()

    with pytest.raises(ValueError, match="torch.uint8"):
        train(_model(config), images.float(), labels, config, progress=False)


def test_train_rejects_pseudo_labels(cache):
    images, labels = cache
    labels = labels.clone()
    labels[0] = 2
    config = _config()

    with pytest.raises(ValueError, match=r"found \[2\]"):
        train(_model(config), images, labels, config, progress=False)


def test_train_needs_normal_images(cache):
    images, labels = cache
    config = _config()

    with pytest.raises(ValueError, match="no normal image"):
        train(_model(config), images[10:], labels[10:], config, progress=False)


class _DivergingModel(nn.Module):
    """A stand-in model whose scores are NaN, as after a diverged update."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))
        self.spec = BackboneSpec("fake", 1, 32, SIZE, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

    def forward(self, images):
        scores = images.mean(dim=(1, 2, 3)) * self.weight * float("nan")
        return TwoHeadOutput(scores, scores, scores, scores[:, None, None, None])


def test_train_stops_on_nan_loss(cache):
    images, labels = cache
    config = _config(augmentation="none")

    with pytest.raises(FloatingPointError, match="lower config.lr"):
        train(_DivergingModel(), images, labels, config, progress=False)


def test_score_images_returns_cpu_scores(cache):
    images, _ = cache
    config = _config()
    model = _model(config)
    model.train()

    output = score_images(model, images, batch_size=4, device="cpu")

    assert output.score.shape == (14,)
    assert output.score.device.type == "cpu"
    assert output.score.dtype == torch.float32
    assert torch.allclose(output.score, output.anomaly_score - output.normal_score)
    assert output.patch_scores.shape[:2] == (14, 1)
    assert model.training


def test_score_images_does_not_depend_on_batching(cache):
    images, _ = cache
    model = _model(_config())

    small_batches = score_images(model, images, batch_size=3, device="cpu")
    one_batch = score_images(model, images, batch_size=64, device="cpu")

    assert torch.allclose(small_batches.score, one_batch.score, atol=1e-5)


def test_checkpoint_round_trip_gives_identical_scores(trained, cache, tmp_path):
    model, config, _, _, _ = trained
    images, _ = cache
    expected = score_images(model, images, device="cpu")

    path = save_checkpoint(tmp_path / "model.pt", model, config)
    restored, restored_config = load_checkpoint(path)
    actual = score_images(restored, images, device="cpu")

    assert restored_config == config
    assert torch.equal(actual.score, expected.score)
    assert [entry.name for entry in tmp_path.iterdir()] == ["model.pt"]


def test_load_checkpoint_rejects_other_files(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(1)}, path)

    with pytest.raises(ValueError, match="not an sclib checkpoint"):
        load_checkpoint(path)


def test_load_checkpoint_reports_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.gpu
def test_train_and_score_on_cuda(cache):
    images, labels = cache
    config = _config(device="cuda", precision="auto", log_every=1)
    model = _model(config)

    history = train(model, images, labels, config, progress=False)
    output = score_images(model, images, device="cuda", precision="auto")

    assert all(math.isfinite(value) for value in history["loss"])
    assert history["images_per_s"].gt(0).all()
    assert next(model.parameters()).device.type == "cuda"
    assert output.score.device.type == "cpu"
    assert torch.isfinite(output.score).all()
