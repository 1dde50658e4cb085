"""Baselines: PatchKNN memory bank and scoring, coreset subsampling, DevNet one-head model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sclib.baselines import (
    DevNetModel,
    KnnEnsemble,
    PatchKNN,
    devnet_loss,
    greedy_coreset,
    nearest_distance,
)
from sclib.baselines.detectors import CALIBRATION_IMAGES, build_detector, fit_detector
from sclib.baselines.patch_knn import random_subset
from sclib.config import Config, get_profile
from sclib.experiment import prepare_data, run_experiment
from sclib.metrics import auroc
from sclib.models.backbones import build_backbone
from sclib.train import load_checkpoint, score_images, train


def textured_images(count: int, seed: int, size: int = 64) -> torch.Tensor:
    """Uint8 images (count, 3, size, size) of one smooth stripe texture with mild noise."""
    generator = torch.Generator().manual_seed(seed)
    columns = torch.arange(size).float()
    stripes = 128 + 60 * torch.sin(columns / 3.0)
    base = stripes.expand(count, 3, size, size)
    noise = 8 * torch.randn(count, 3, size, size, generator=generator)
    return (base + noise).clamp(0, 255).to(torch.uint8)


def plant_square(images: torch.Tensor, corner: int = 20, side: int = 16) -> torch.Tensor:
    planted = images.clone()
    planted[:, :, corner : corner + side, corner : corner + side] = 255
    return planted


@pytest.fixture
def knn() -> PatchKNN:
    torch.manual_seed(0)
    backbone, spec = build_backbone("simple_cnn", weights=None, features="multi", smoothing=3)
    return PatchKNN(backbone, spec, bank_size=100)


def test_patch_knn_scores_planted_anomaly_higher(knn):
    knn.fit(textured_images(12, seed=0), torch.Generator().manual_seed(0), device="cpu")
    normals = textured_images(6, seed=1)
    anomalies = plant_square(textured_images(6, seed=2))

    output = score_images(knn, torch.cat([normals, anomalies]), batch_size=4, device="cpu")
    labels = [0] * 6 + [1] * 6

    assert output.score.shape == (12,)
    assert auroc(labels, output.score.numpy()) == 1.0
    assert torch.equal(output.score, output.anomaly_score)
    assert torch.equal(output.normal_score, torch.zeros(12))


def test_patch_knn_bank_has_requested_size(knn):
    knn.fit(textured_images(12, seed=0), torch.Generator().manual_seed(0), device="cpu")

    # simple_cnn multi-level features: 224 channels, 4 x 4 patches, 12 x 16 in all
    assert knn.memory_bank.shape == (100, 224)


def test_patch_knn_score_is_max_patch_distance(knn):
    knn.fit(textured_images(12, seed=0), torch.Generator().manual_seed(0), device="cpu")
    batch = torch.randn(2, 3, 64, 64)

    output = knn.eval()(batch)

    features = knn.backbone(batch)
    patches = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
    expected = torch.cdist(patches, knn.memory_bank).amin(dim=1).view(2, -1).amax(dim=1)
    assert output.patch_scores.shape == (2, 1, 4, 4)
    assert torch.allclose(output.score, expected, atol=1e-4)


def test_patch_knn_state_dict_restores_bank(knn):
    knn.fit(textured_images(12, seed=0), torch.Generator().manual_seed(0), device="cpu")
    backbone, spec = build_backbone("simple_cnn", weights=None, features="multi", smoothing=3)
    restored = PatchKNN(backbone, spec, bank_size=100)

    restored.load_state_dict(knn.state_dict())

    assert torch.equal(restored.memory_bank, knn.memory_bank)


def test_patch_knn_backbone_stays_frozen(knn):
    knn.train()

    assert not knn.backbone.training
    assert not any(parameter.requires_grad for parameter in knn.parameters())


def test_patch_knn_unfitted_raises(knn):
    with pytest.raises(ValueError, match="fit"):
        knn.eval()(torch.randn(1, 3, 64, 64))


def test_nearest_distance_matches_brute_force():
    generator = torch.Generator().manual_seed(0)
    queries = torch.randn(50, 8, generator=generator)
    bank = torch.randn(30, 8, generator=generator)

    distances = nearest_distance(queries, bank, chunk_size=7)

    expected = (queries[:, None] - bank[None]).norm(dim=2).amin(dim=1)
    assert torch.allclose(distances, expected, atol=1e-5)


def test_coreset_returns_requested_count():
    points = torch.randn(500, 16, generator=torch.Generator().manual_seed(0))

    selected = greedy_coreset(points, 40, torch.Generator().manual_seed(0), projection_dim=8)

    assert selected.shape == (40,)
    assert len(set(selected.tolist())) == 40
    assert int(selected.max()) < 500


def test_coreset_covers_far_points():
    generator = torch.Generator().manual_seed(0)
    cluster = 0.1 * torch.randn(1000, 16, generator=generator)
    outliers = 50 + torch.randn(5, 16, generator=generator) * 20
    points = torch.cat([cluster, outliers])

    selected = greedy_coreset(points, 20, torch.Generator().manual_seed(1), projection_dim=None)

    assert set(range(1000, 1005)) <= set(selected.tolist())
    # every point lies close to the selection, unlike a random subset of the same size
    coverage = nearest_distance(points, points[selected]).max()
    random_coverage = nearest_distance(
        points, points[random_subset(len(points), 20, torch.Generator().manual_seed(1))]
    ).max()
    assert coverage < random_coverage


def test_coreset_of_all_points_is_identity():
    points = torch.randn(10, 4)

    selected = greedy_coreset(points, 25, torch.Generator().manual_seed(0))

    assert torch.equal(selected, torch.arange(10))


def test_random_subset_is_sorted_and_distinct():
    subset = random_subset(100, 10, torch.Generator().manual_seed(0))

    assert subset.shape == (10,)
    assert torch.equal(subset, subset.sort().values)
    assert len(set(subset.tolist())) == 10


def test_patch_knn_coreset_sampling_fills_bank():
    torch.manual_seed(0)
    backbone, spec = build_backbone("simple_cnn", weights=None, features="multi")
    knn = PatchKNN(backbone, spec, bank_size=50, sampling="coreset", projection_dim=16)

    knn.fit(textured_images(8, seed=0), torch.Generator().manual_seed(0), device="cpu")

    assert knn.memory_bank.shape == (50, 224)


def test_devnet_loss_targets_labelled_anomalies():
    output = DevNetModel(*build_backbone("simple_cnn", weights=None))(torch.randn(3, 3, 64, 64))
    labels = torch.tensor([0, 0, 1])

    parts = devnet_loss(output, labels)

    score = output.anomaly_score
    expected = (score[0].abs() + score[1].abs() + (5 - score[2]).clamp(min=0)) / 3
    assert torch.allclose(parts.total, expected)
    assert parts.normal == 0
    assert torch.equal(parts.total, parts.anomaly)


def test_devnet_trains_head_on_frozen_backbone():
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
    torch.manual_seed(0)
    model = DevNetModel(
        *build_backbone("simple_cnn", weights=None, features="multi"), train_backbone=False
    )
    head_before = [parameter.detach().clone() for parameter in model.head.parameters()]
    backbone_before = [parameter.detach().clone() for parameter in model.backbone.parameters()]
    train_images = textured_images(12, seed=0)
    train_labels = torch.tensor([0] * 9 + [1] * 3)

    history = train(
        model, train_images, train_labels, config, progress=False, loss=devnet_loss,
        pseudo_probability=0.0,
    )

    assert len(history) == 2
    assert (history["loss_normal"] == 0).all()
    assert not model.backbone.training
    assert all(
        torch.equal(before, after)
        for before, after in zip(backbone_before, model.backbone.parameters())
    )
    assert any(
        not torch.equal(before, after.detach())
        for before, after in zip(head_before, model.head.parameters())
    )


def tiny_config(**values):
    base = {
        "backbone": "simple_cnn",
        "weights": None,
        "features": "multi",
        "train_backbone": False,
        "device": "cpu",
        "knn_bank_size": 64,
        "n_anomaly": 2,
    }
    return get_profile("tiny", **{**base, **values})


@pytest.mark.parametrize(
    "values",
    [
        {"method": "patch_knn"},
        {"method": "devnet", "augmentation": "none"},
        {"method": "two_head", "scoring": "knn_ensemble"},
    ],
    ids=["patch_knn", "devnet", "knn_ensemble"],
)
def test_run_experiment_writes_run_folder_per_method(tiny_mvtec, tmp_path, values):
    config = tiny_config(**values)

    result = run_experiment(config, tiny_mvtec, tmp_path / "run", progress=False)

    files = {path.name for path in result.run_dir.iterdir()}
    assert {"config.json", "manifest.csv", "scores.csv", "metrics.json", "model.pt"} <= files
    scores = result.scores
    assert np.isfinite(scores["score"]).all()
    assert result.metrics["overall"]["auroc"] == pytest.approx(
        auroc(scores["label"], scores["score"])
    )
    expected_steps = 0 if values["method"] == "patch_knn" else config.total_steps
    assert len(result.history) == expected_steps
    assert ("history.png" in files) == (expected_steps > 0)


@pytest.mark.parametrize(
    ("values", "detector"),
    [
        ({"method": "patch_knn"}, PatchKNN),
        ({"method": "devnet", "augmentation": "none"}, DevNetModel),
        ({"method": "two_head", "scoring": "knn_ensemble"}, KnnEnsemble),
        ({"method": "devnet", "augmentation": "none", "scoring": "knn_ensemble"}, KnnEnsemble),
    ],
    ids=["patch_knn", "devnet", "knn_ensemble", "devnet_knn_ensemble"],
)
def test_checkpoint_restores_detector_scores(tiny_mvtec, tmp_path, values, detector):
    config = tiny_config(**values)
    result = run_experiment(config, tiny_mvtec, tmp_path / "run", progress=False)

    restored, restored_config = load_checkpoint(result.run_dir / "model.pt")

    assert isinstance(restored, detector)
    assert restored_config == config
    output = score_images(restored, result.data.test_images, device="cpu")
    assert np.allclose(output.score.numpy(), result.scores["score"].to_numpy(), atol=1e-5)


def test_knn_ensemble_averages_standardised_scores():
    ensemble = build_detector(tiny_config(scoring="knn_ensemble"), weights=None)
    ensemble.calibrate(torch.tensor([1.0, 3.0]), torch.tensor([10.0, 14.0]))

    combined = ensemble.combine(torch.tensor([2.0 + 2**0.5]), torch.tensor([12.0]))

    # model: mean 2, std sqrt(2) -> z = 1; knn: mean 12, std sqrt(8) -> z = 0
    assert torch.allclose(combined, torch.tensor([0.5]))


def test_knn_ensemble_bank_leaves_out_calibration_images(tiny_mvtec):
    config = tiny_config(scoring="knn_ensemble", knn_bank_size=10_000)
    data = prepare_data(config, tiny_mvtec)

    ensemble, _ = fit_detector(config, data.train_images, data.train_labels, progress=False)

    n_normal = int((data.train_labels == 0).sum())
    held_out = min(CALIBRATION_IMAGES, n_normal // 2)
    patches_per_image = (config.image_size // 16) ** 2
    assert len(ensemble.knn.memory_bank) == (n_normal - held_out) * patches_per_image
    assert not torch.equal(ensemble.reference, torch.tensor([[0.0, 1.0], [0.0, 1.0]]))


@pytest.mark.parametrize(
    "values",
    [
        {"method": "devnet", "features": "multi", "train_backbone": False},
        {"method": "patch_knn", "knn_sampling": "coreset", "knn_bank_size": 5000},
        {"scoring": "knn_ensemble", "knn_smoothing": 1, "feature_smoothing": 3},
    ],
)
def test_method_fields_round_trip(values):
    config = get_profile("quick", **{"features": "multi", **values})

    restored = Config.from_dict(json.loads(json.dumps(config.to_dict())))

    assert restored == config
    for field, value in values.items():
        assert getattr(restored, field) == value


@pytest.mark.parametrize(
    "values",
    [
        {"method": "kde"},
        {"scoring": "rank"},
        {"method": "patch_knn", "scoring": "knn_ensemble"},
        {"knn_sampling": "kmeans"},
        {"knn_smoothing": 2},
        {"knn_bank_size": 0},
        {"features": "last", "feature_smoothing": 3},
        {"train_backbone": "no"},
    ],
)
def test_invalid_method_fields_are_rejected(values):
    field = next(iter(values)) if len(values) == 1 else list(values)[-1]
    with pytest.raises(ValueError, match=field):
        get_profile("quick", **values)
