"""Specification of sclib.config: profiles, overrides, validation and JSON round trip."""

from __future__ import annotations

import json

import pytest

from sclib.config import PROFILES, Config, field_names, get_profile


@pytest.mark.parametrize("name", PROFILES)
def test_profile_resolves_and_names_itself(name):
    config = get_profile(name)

    assert isinstance(config, Config)
    assert config.profile == name


@pytest.mark.parametrize("name", PROFILES)
def test_profile_round_trips_through_json(name):
    config = get_profile(name, seed=7, known_class="scratch")

    restored = Config.from_dict(json.loads(json.dumps(config.to_dict())))

    assert restored == config


def test_paper_profile_matches_published_schedule():
    config = get_profile("paper")

    assert config.backbone == "resnet18"
    assert config.image_size == 448
    assert config.batch_size == 48
    assert config.epochs == 30
    assert config.steps_per_epoch == 20
    assert config.lr == 2e-4
    assert config.weight_decay == 1e-5
    assert config.lr_step_epochs == 10
    assert config.lr_gamma == 0.1
    assert config.n_scales == 2
    assert config.augmentation == "saliencycut"
    assert config.saliency_grid == 18
    assert config.bspline_order == 2
    assert config.saliency_threshold == 0.4
    assert config.grad_clip == 1.0


def test_quick_profile_is_shorter_than_paper():
    quick = get_profile("quick")
    paper = get_profile("paper")

    assert quick.backbone == "efficientnet_lite0"
    assert quick.image_size == 224
    assert quick.batch_size == 32
    assert quick.total_steps < paper.total_steps
    assert quick.lr_step_epochs < quick.epochs


def test_tiny_profile_caps_images_and_steps():
    config = get_profile("tiny")

    assert config.image_size == 64
    assert config.batch_size == 6
    assert config.total_steps <= 3
    assert config.max_train_normal is not None
    assert config.max_test is not None


def test_overrides_change_only_named_fields():
    base = get_profile("quick")
    changed = get_profile("quick", seed=5, augmentation="cutmix")

    assert changed.seed == 5
    assert changed.augmentation == "cutmix"
    assert changed.replace(seed=base.seed, augmentation=base.augmentation) == base


def test_unknown_profile_names_valid_profiles():
    with pytest.raises(ValueError, match="paper"):
        get_profile("fast")


def test_unknown_override_names_valid_fields():
    with pytest.raises(ValueError, match="learning_rate.*image_size"):
        get_profile("tiny", learning_rate=0.1)


def test_from_dict_rejects_unknown_keys():
    values = get_profile("tiny").to_dict()
    values["colour"] = "blue"

    with pytest.raises(ValueError, match="colour"):
        Config.from_dict(values)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("image_size", 100),
        ("image_size", 0),
        ("batch_size", 2),
        ("epochs", 0),
        ("lr", 0.0),
        ("lr_gamma", 1.5),
        ("n_scales", 3),
        ("augmentation", "mixup"),
        ("saliency_threshold", 1.2),
        ("precision", "fp16"),
        ("loss_reference", "learned"),
        ("setting", "easy"),
        ("n_anomaly", -1),
        ("contamination", 1.0),
        ("max_test", 1),
        ("num_threads", 0),
        ("grad_clip", -1.0),
        ("channels_last", "yes"),
        ("batch_size", True),
    ],
)
def test_invalid_value_names_field_and_value(field, value):
    with pytest.raises(ValueError, match=f"Config.{field}={value!r}"):
        get_profile("tiny", **{field: value})


def test_config_is_frozen():
    config = get_profile("tiny")

    with pytest.raises(AttributeError):
        config.seed = 1


def test_field_names_cover_contract_fields():
    expected = {
        "profile", "backbone", "image_size", "batch_size", "epochs", "steps_per_epoch", "lr",
        "weight_decay", "lr_step_epochs", "lr_gamma", "n_scales", "augmentation",
        "saliency_grid", "bspline_order", "saliency_threshold", "grad_clip", "precision",
        "channels_last", "loss_reference", "setting", "n_anomaly", "known_class",
        "contamination", "seed", "device", "max_train_normal", "max_test",
        "eval_batch_size", "num_threads",
    }  # fmt: skip

    assert expected <= set(field_names())
