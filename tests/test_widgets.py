"""Specifications of the explorers: static figures, and controls that change the view."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from sclib import widgets
from sclib.data import discover
from sclib.models import build_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("simple_cnn", weights=None).eval()


@pytest.fixture(scope="module")
def pixels():
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8, generator=generator)


@pytest.fixture
def score_table(tiny_mvtec):
    test_records = [record for record in discover(tiny_mvtec) if record.split == "test"]
    rng = np.random.default_rng(0)
    labels = np.array([record.label for record in test_records])
    return pd.DataFrame(
        {
            "path": [str(record.path) for record in test_records],
            "label": labels,
            "defect_class": [record.defect_class for record in test_records],
            "role": "test",
            "score": rng.normal(size=len(labels)) + labels,
            "normal_score": 1.0,
            "anomaly_score": 1.0,
        }
    )


def test_saliency_explorer_static_is_figure(model, pixels):
    figure = widgets.saliency_explorer(model, pixels)
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 6


def test_saliency_explorer_threshold_shrinks_mask(model, pixels):
    explorer = widgets.saliency_explorer(model, pixels, threshold=0.2, interactive=True)
    before_png, before = explorer.image.value, explorer.state
    explorer.controls["threshold"].value = 0.8
    assert explorer.state.mask_share < before.mask_share
    assert explorer.image.value != before_png
    assert "donor 0" in explorer.caption.value


def test_saliency_explorer_grid_and_order_change_saliency(model, pixels):
    explorer = widgets.saliency_explorer(model, pixels, interactive=True)
    first = explorer.state.saliency
    explorer.controls["grid"].value = 4
    after_grid = explorer.state.saliency
    explorer.controls["order"].value = 0
    after_order = explorer.state.saliency
    assert not torch.equal(first, after_grid)
    assert not torch.equal(after_grid, after_order)


def test_saliency_explorer_donor_and_base_sliders(model, pixels):
    explorer = widgets.saliency_explorer(model, pixels, interactive=True)
    explorer.controls["donor"].value = 2
    explorer.controls["base"].value = 3
    assert torch.equal(explorer.state.donor, pixels[2])
    assert torch.equal(explorer.state.base, pixels[3])


def test_saliency_explorer_needs_two_images(model, pixels):
    with pytest.raises(ValueError, match="at least 2"):
        widgets.saliency_explorer(model, pixels[:1])


def test_augmentation_gallery_static_has_row_per_name(model, pixels):
    figure = widgets.augmentation_gallery(model, pixels)
    assert isinstance(figure, Figure)
    labels = [axes.get_ylabel() for axes in figure.axes if axes.get_ylabel()]
    assert labels == ["saliencycut", "cutmix", "cutpaste", "none"]


def test_augmentation_gallery_seed_slider_redraws(model, pixels):
    explorer = widgets.augmentation_gallery(model, pixels, interactive=True)
    before_png = explorer.image.value
    before = explorer.state["cutmix"].pseudo_mask
    explorer.controls["seed"].value = 7
    assert not torch.equal(explorer.state["cutmix"].pseudo_mask, before)
    assert explorer.image.value != before_png
    assert "Seed 7" in explorer.caption.value


def test_model_explorer_draw_slider_changes_offsets(model):
    images = torch.randint(0, 256, (2, 3, 112, 112), dtype=torch.uint8)
    explorer = widgets.model_explorer(model, images, interactive=True)
    assert explorer.controls["draw"].max >= 1
    first = explorer.state
    explorer.controls["draw"].value = 1
    assert explorer.state.offsets != first.offsets
    assert not torch.equal(explorer.state.patch_scores, first.patch_scores)
    assert torch.equal(explorer.state.eval_patch_scores, first.eval_patch_scores)


def test_model_explorer_image_slider_changes_score(model):
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (2, 3, 112, 112), dtype=torch.uint8, generator=generator)
    images[1] = 0
    explorer = widgets.model_explorer(model, images, interactive=True)
    before_png, before = explorer.image.value, explorer.state.score
    explorer.controls["image"].value = 1
    assert explorer.state.score != before
    assert explorer.image.value != before_png


def test_model_explorer_static_is_figure(model, pixels):
    assert isinstance(widgets.model_explorer(model, pixels), Figure)


def test_score_explorer_threshold_updates_counts(score_table):
    explorer = widgets.score_explorer(score_table, interactive=True)
    slider = explorer.controls["threshold"]
    slider.value = slider.min
    low = explorer.state
    png = explorer.image.value
    slider.value = slider.max
    high = explorer.state
    assert low.true_positives + low.false_positives == len(score_table)
    assert high.true_positives + high.false_positives == 1
    assert high.false_negatives > low.false_negatives
    assert explorer.image.value != png


def test_score_explorer_reads_run_folder(tmp_path, score_table):
    score_table.to_csv(tmp_path / "scores.csv", index=False)
    figure = widgets.score_explorer(str(tmp_path), threshold=0.0)
    assert isinstance(figure, Figure)


def test_score_explorer_shows_missing_files(score_table):
    table = score_table.assign(path="/nonexistent/image.png")
    figure = widgets.score_explorer(table, threshold=0.0)
    texts = [text.get_text() for axes in figure.axes for text in axes.texts]
    assert "file not found" in texts


def test_protocol_explorer_static_has_five_settings(tiny_mvtec):
    figure = widgets.protocol_explorer(discover(tiny_mvtec))
    labels = [label.get_text() for label in figure.axes[0].get_yticklabels()]
    assert len(labels) == 5
    assert "anomaly-free" in labels


def test_protocol_explorer_adds_chosen_setting(tiny_mvtec):
    explorer = widgets.protocol_explorer(discover(tiny_mvtec), interactive=True)
    assert "Not shown" in explorer.caption.value  # n_anomaly 10 > 6 anomalies
    assert explorer.state is None
    explorer.controls["n_anomaly"].value = 2
    explorer.controls["setting"].value = "hard"
    chosen = explorer.state.loc["your choice"]
    assert chosen[("train_anomaly", "dent")] == 2
    assert chosen[("test", "dent")] == 0


def test_explorer_keeps_last_view_after_invalid_value(model, pixels):
    explorer = widgets.saliency_explorer(model, pixels, interactive=True)
    state, png = explorer.state, explorer.image.value
    explorer.controls["donor"].max = 10
    explorer.controls["donor"].value = 9
    assert "donor=9" in explorer.caption.value
    assert explorer.state is state
    assert explorer.image.value == png


def test_score_explorer_names_empty_error_row(score_table):
    lowest = float(score_table["score"].min())
    figure = widgets.score_explorer(score_table, threshold=lowest)
    texts = [text.get_text() for axes in figure.axes for text in axes.texts]
    assert "no false negatives" in texts
    assert "no false positives" not in texts
