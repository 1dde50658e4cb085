"""Specifications of the computations behind the explorers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import confusion_matrix, precision_score, roc_curve

from sclib import explore
from sclib.augment import normalize, saliencycut
from sclib.data import discover
from sclib.models import build_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("simple_cnn", weights=None).eval()


@pytest.fixture(scope="module")
def pixels():
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (6, 3, 64, 64), dtype=torch.uint8, generator=generator)


@pytest.fixture(scope="module")
def raw(model, pixels):
    return explore.donor_saliency(model, pixels)


@pytest.fixture
def score_table():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 12 + [1] * 8)
    scores = rng.normal(size=20) + 1.5 * labels
    return pd.DataFrame(
        {
            "path": [f"img_{index:02d}.png" for index in range(20)],
            "label": labels,
            "defect_class": ["good"] * 12 + ["scratch"] * 4 + ["dent"] * 4,
            "role": "test",
            "score": scores,
        }
    )


def test_load_pixels_gives_uint8_batch(tiny_mvtec):
    paths = [record.path for record in discover(tiny_mvtec)[:3]]
    batch = explore.load_pixels(paths, 48)
    assert batch.shape == (3, 3, 48, 48)
    assert batch.dtype == torch.uint8


def test_to_unit_range_inverts_normalize(pixels):
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    restored = explore.to_unit_range(normalize(pixels, mean, std), mean, std)
    assert torch.allclose(restored, pixels.float() / 255, atol=1e-5)


def test_saliency_view_matches_saliencycut(model, pixels, raw):
    labels = torch.tensor([0, 0, 0, 2, 2, 2])
    images = normalize(pixels, model.spec.mean, model.spec.std)
    result = saliencycut(images, labels, model, torch.Generator().manual_seed(3))

    for row in (3, 4, 5):
        donor = int(result.donor_index[row])
        view = explore.saliency_view(pixels, raw, donor=donor, base=row)
        assert torch.equal(view.mask, result.pseudo_mask[row])
        pasted = normalize(view.pseudo_anomaly[None], model.spec.mean, model.spec.std)[0]
        assert torch.allclose(pasted, result.images[row], atol=1e-6)


def test_saliency_view_mask_shrinks_with_threshold(pixels, raw):
    views = [explore.saliency_view(pixels, raw, 1, 2, threshold=t) for t in (0.2, 0.5, 0.8)]
    shares = [view.mask_share for view in views]
    assert shares[0] >= shares[1] >= shares[2]
    assert shares[0] > shares[2]


def test_saliency_view_keeps_donor_outside_mask(pixels, raw):
    view = explore.saliency_view(pixels, raw, donor=0, base=4, threshold=0.5)
    outside = ~view.mask.expand_as(view.donor)
    assert torch.equal(view.pseudo_anomaly[outside], pixels[0][outside])
    assert torch.equal(view.pseudo_anomaly[~outside], pixels[4][~outside])


def test_saliency_view_rejects_index_out_of_range(pixels, raw):
    with pytest.raises(ValueError, match="donor=6"):
        explore.saliency_view(pixels, raw, donor=6, base=0)


def test_augment_all_repeats_with_same_seed(model, pixels):
    first = explore.augment_all(model, pixels, seed=5)
    second = explore.augment_all(model, pixels, seed=5)
    assert list(first) == list(explore.AUGMENTATION_NAMES)
    for name in first:
        assert torch.equal(first[name].images, second[name].images), name


def test_augment_all_changes_only_pseudo_rows(model, pixels):
    labels = explore.gallery_labels(len(pixels))
    images = normalize(pixels, model.spec.mean, model.spec.std)
    results = explore.augment_all(model, pixels, labels, seed=1)
    normal = labels == 0
    for name, result in results.items():
        assert torch.equal(result.images[normal], images[normal]), name
    assert torch.equal(results["none"].images, images)
    assert not torch.equal(results["cutmix"].images, images)


def test_augment_all_seed_changes_cutmix(model, pixels):
    first = explore.augment_all(model, pixels, seed=0, names=["cutmix"])["cutmix"]
    second = explore.augment_all(model, pixels, seed=1, names=["cutmix"])["cutmix"]
    assert not torch.equal(first.pseudo_mask, second.pseudo_mask)


def test_gallery_labels_half_pseudo():
    assert explore.gallery_labels(5).tolist() == [0, 0, 2, 2, 2]
    with pytest.raises(ValueError):
        explore.gallery_labels(1)


def test_block_view_geometry(model):
    image = torch.randint(0, 256, (3, 112, 112), dtype=torch.uint8)
    view = explore.block_view(model, image, draw=0)
    assert view.side == 112 // model.spec.stride
    assert view.block == view.side // 2 + 1
    assert len(set(view.offsets)) == 4
    assert all(0 <= offset <= view.side - view.block for offset in view.offsets)
    assert view.residual_norm.shape == (view.block, view.block)
    assert view.cell_pixels == model.spec.stride


def test_block_view_eval_map_is_mean_of_draws(model):
    image = torch.randint(0, 256, (1, 3, 112, 112), dtype=torch.uint8)
    first = explore.block_view(model, image, draw=0)
    weighted = torch.zeros_like(first.patch_scores)
    draws = model.anomaly_head.eval_offsets(first.side)
    for index, (offsets, count) in enumerate(draws):
        view = explore.block_view(model, image, draw=index)
        assert view.offsets == offsets
        weighted += count * view.patch_scores
    total = sum(count for _, count in draws)
    assert torch.allclose(weighted / total, first.eval_patch_scores, atol=1e-5)


def test_block_view_rejects_unknown_draw(model):
    image = torch.randint(0, 256, (3, 112, 112), dtype=torch.uint8)
    with pytest.raises(ValueError, match="draw=99"):
        explore.block_view(model, image, draw=99)


@pytest.mark.parametrize("threshold", [-1.0, 0.0, 0.7, 1.5, 9.0])
def test_threshold_summary_matches_sklearn(score_table, threshold):
    labels, scores = score_table["label"], score_table["score"]
    summary = explore.threshold_summary(labels, scores, threshold)
    predicted = (scores >= threshold).astype(int)
    expected = confusion_matrix(labels, predicted, labels=[0, 1])
    assert summary.confusion_matrix().to_numpy().tolist() == expected.tolist()
    if predicted.sum():
        assert summary.precision == pytest.approx(precision_score(labels, predicted))
    else:
        assert np.isnan(summary.precision)
    assert summary.recall == pytest.approx(expected[1, 1] / expected[1].sum())


def test_threshold_summary_lies_on_roc_curve(score_table):
    labels, scores = score_table["label"], score_table["score"]
    false_positive_rates, true_positive_rates, thresholds = roc_curve(labels, scores)
    points = zip(false_positive_rates[1:], true_positive_rates[1:], thresholds[1:])
    for fpr, tpr, threshold in points:
        summary = explore.threshold_summary(labels, scores, threshold)
        assert summary.false_positive_rate == pytest.approx(fpr)
        assert summary.recall == pytest.approx(tpr)


def test_default_threshold_maximises_youden(score_table):
    labels, scores = score_table["label"].to_numpy(), score_table["score"].to_numpy()
    best = max(
        explore.threshold_summary(labels, scores, t).recall
        - explore.threshold_summary(labels, scores, t).false_positive_rate
        for t in scores
    )
    chosen = explore.threshold_summary(labels, scores, explore.default_threshold(labels, scores))
    assert chosen.recall - chosen.false_positive_rate == pytest.approx(best)


def test_error_examples_worst_first(score_table):
    threshold = 0.5
    false_positives, false_negatives = explore.error_examples(score_table, threshold, limit=3)
    assert (false_positives["label"] == 0).all()
    assert (false_positives["score"] >= threshold).all()
    assert (false_negatives["label"] == 1).all()
    assert (false_negatives["score"] < threshold).all()
    assert false_positives["score"].is_monotonic_decreasing
    assert false_negatives["score"].is_monotonic_increasing
    flagged_normal = (score_table["label"] == 0) & (score_table["score"] >= threshold)
    all_false_positives = score_table[flagged_normal]
    assert len(false_positives) == min(3, len(all_false_positives))
    assert false_positives["score"].iloc[0] == all_false_positives["score"].max()


def test_select_test_rows_drops_other_roles(score_table):
    table = pd.concat([score_table, score_table.head(3).assign(role="validation")])
    rows = explore.select_test_rows(table)
    assert len(rows) == len(score_table)
    assert set(rows["role"]) == {"test"}


def test_select_test_rows_rejects_missing_column(score_table):
    with pytest.raises(ValueError, match="score"):
        explore.select_test_rows(score_table.drop(columns="score"))


def test_select_test_rows_rejects_single_label(score_table):
    with pytest.raises(ValueError, match="labels"):
        explore.select_test_rows(score_table[score_table["label"] == 0])


def test_read_scores_from_run_folder(tmp_path, score_table):
    score_table.to_csv(tmp_path / "scores.csv", index=False)
    table = explore.read_scores(tmp_path)
    assert table["path"].tolist() == score_table["path"].tolist()
    with pytest.raises(FileNotFoundError, match="missing"):
        explore.read_scores(tmp_path / "missing")


def test_role_counts_assign_every_image_once(tiny_mvtec):
    records = discover(tiny_mvtec)
    table = explore.role_counts(records)
    totals = table.groupby("case")["count"].sum()
    assert (totals == len(records)).all()
    assert len(totals) == 5


def test_role_counts_hard_setting_tests_unseen_only(tiny_mvtec):
    records = discover(tiny_mvtec)
    table = explore.role_counts(records)
    hard = table[table["case"] == "hard, known dent"]
    test_classes = set(hard.loc[hard["role"] == "test", "defect_class"])
    assert test_classes == {"good", "scratch"}
    assert set(hard.loc[hard["role"] == "train_anomaly", "defect_class"]) == {"dent"}


def test_role_counts_mark_hidden_anomalies(tiny_mvtec):
    records = discover(tiny_mvtec)
    cases = {"hidden": {"setting": "general", "n_anomaly": 1, "contamination": 0.25}}
    table = explore.role_counts(records, cases)
    hidden = table[table["role"] == "train_normal (hidden anomaly)"]
    assert hidden["count"].sum() == round(0.25 * 8)
    assert set(hidden["defect_class"]) <= {"scratch", "dent"}


def test_role_matrix_orders_roles_and_classes(tiny_mvtec):
    matrix = explore.role_matrix(explore.role_counts(discover(tiny_mvtec)))
    roles = list(dict.fromkeys(role for role, _ in matrix.columns))
    assert roles == ["train_normal", "train_anomaly", "test"]
    test_classes = [name for role, name in matrix.columns if role == "test"]
    assert test_classes == ["good", "dent", "scratch"]
    assert (matrix.sum(axis=1) == len(discover(tiny_mvtec))).all()


@pytest.mark.gpu
def test_views_accept_cuda_model(pixels):
    model = build_model("simple_cnn", weights=None).eval().to("cuda")
    raw = explore.donor_saliency(model, pixels)
    assert raw.device.type == "cpu"
    results = explore.augment_all(model, pixels, seed=0, names=["saliencycut"])
    assert results["saliencycut"].images.device.type == "cpu"
    view = explore.block_view(model, pixels[0], draw=0)
    assert view.eval_patch_scores.device.type == "cpu"
