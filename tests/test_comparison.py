"""Specification of sclib.comparison: augmentations compared on one split and seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from sclib import comparison, experiment
from sclib.config import get_profile
from tests.conftest import make_tiny_mvtec

AUGMENTATIONS = ["saliencycut", "none"]
BASELINES = ["patch_knn", "devnet"]


def _config(**overrides):
    values = {
        "backbone": "simple_cnn",
        "weights": None,
        "device": "cpu",
        "image_size": 32,
        "steps_per_epoch": 2,
        "n_anomaly": 2,
    }
    values.update(overrides)
    return get_profile("tiny", **values)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    folder = tmp_path_factory.mktemp("comparison")
    data_root = make_tiny_mvtec(folder / "data")
    table = comparison.compare_augmentations(
        _config(),
        data_root,
        augmentations=AUGMENTATIONS,
        seeds=(0, 1),
        hard_known_class="scratch",
        cache_dir=folder / "cache",
        baselines=BASELINES,
    )
    return table, data_root, folder


def _single_run(config, data_root, folder):
    """Return the prepared data, metrics and history of one run of ``config``."""
    data = experiment.prepare_data(config, data_root, cache_dir=folder / "cache")
    model, history = experiment.fit(config, data, progress=False)
    _, metrics = experiment.evaluate_run(model, data, config)
    return data, metrics, history


def test_compare_has_one_row_per_run(compared):
    table, _, _ = compared
    assert len(table) == 2 * 2 * (len(AUGMENTATIONS) + len(BASELINES))
    assert list(dict.fromkeys(table["case"])) == ["general", "hard, known scratch"]
    assert list(table.columns[: len(comparison.COMPARISON_COLUMNS)]) == list(
        comparison.COMPARISON_COLUMNS
    )


def test_hard_case_scores_unseen_classes_only(compared):
    table, _, _ = compared
    hard = table[table["case"] == "hard, known scratch"]
    assert hard["auroc_seen"].isna().all()
    assert hard["auroc_unseen"].notna().all()
    assert hard["auroc_scratch"].isna().all()
    assert hard["auroc_dent"].notna().all()


def test_general_case_scores_seen_classes(compared):
    table, _, _ = compared
    general = table[table["case"] == "general"]
    assert general["auroc_seen"].notna().all()
    assert general["auroc"].between(0, 1).all()


def test_compare_row_matches_single_run(compared):
    table, data_root, folder = compared
    _, metrics, _ = _single_run(_config(seed=1, augmentation="none"), data_root, folder)
    row = table[(table["case"] == "general") & (table["seed"] == 1)]
    row = row[row["variant"] == "none"].iloc[0]
    assert row["auroc"] == pytest.approx(metrics["overall"]["auroc"])
    assert row["aupr"] == pytest.approx(metrics["overall"]["aupr"])


def test_baseline_rows_name_their_variant(compared):
    table, _, _ = compared
    baseline_rows = table[table["variant"].isin(BASELINES)]
    assert len(baseline_rows) == 2 * 2 * len(BASELINES)
    assert (baseline_rows["augmentation"] == "none").all()
    assert list(dict.fromkeys(table["variant"])) == AUGMENTATIONS + BASELINES


def test_patch_knn_row_matches_single_run(compared):
    table, data_root, folder = compared
    config = _config(seed=0, method="patch_knn", augmentation="none")
    _, metrics, history = _single_run(config, data_root, folder)
    row = table[(table["case"] == "general") & (table["seed"] == 0)]
    row = row[row["variant"] == "patch_knn"].iloc[0]
    assert len(history) == 0
    assert row["auroc"] == pytest.approx(metrics["overall"]["auroc"])


def test_summary_separates_devnet_from_none(compared):
    table, _, _ = compared
    summary = comparison.summarize_comparison(table)
    assert list(summary.index) == AUGMENTATIONS + BASELINES
    assert summary.loc["devnet", ("general", "n_seeds")] == 2


def test_compare_rejects_unknown_augmentation(tiny_mvtec):
    with pytest.raises(ValueError, match="mixup"):
        comparison.compare_augmentations(_config(), tiny_mvtec, augmentations=["mixup"])


def test_compare_rejects_unknown_baseline(tiny_mvtec):
    with pytest.raises(ValueError, match="patchcore"):
        comparison.compare_augmentations(_config(), tiny_mvtec, baselines=["patchcore"])


def test_cases_skip_duplicate_hard_setting():
    config = _config(setting="hard", known_class="scratch")
    assert list(comparison.comparison_cases(config, "scratch")) == ["hard"]
    assert list(comparison.comparison_cases(_config(), None)) == ["general"]


@pytest.fixture
def made_up_table():
    return pd.DataFrame(
        {
            "case": ["general"] * 4 + ["hard, known a"] * 4,
            "seed": [0, 1, 0, 1] * 2,
            "augmentation": ["saliencycut", "saliencycut", "none", "none"] * 2,
            "auroc": [0.9, 0.8, 0.6, 0.7, 0.75, 0.65, 0.5, 0.55],
        }
    )


def test_summarize_gives_mean_and_sample_std(made_up_table):
    summary = comparison.summarize_comparison(made_up_table)
    assert list(summary.index) == ["saliencycut", "none"]
    assert summary.loc["saliencycut", ("general", "mean")] == pytest.approx(0.85)
    expected_std = np.std([0.9, 0.8], ddof=1)
    assert summary.loc["saliencycut", ("general", "std")] == pytest.approx(expected_std)
    assert summary.loc["none", ("hard, known a", "mean")] == pytest.approx(0.525)
    assert summary.loc["none", ("hard, known a", "n_seeds")] == 2


def test_summarize_rejects_unknown_metric(made_up_table):
    with pytest.raises(ValueError, match="auroc_seen"):
        comparison.summarize_comparison(made_up_table, metric="auroc_seen")


def test_format_omits_std_of_one_seed(made_up_table):
    one_seed = made_up_table[made_up_table["seed"] == 0]
    text = comparison.format_mean_std(comparison.summarize_comparison(one_seed))
    assert text.loc["saliencycut", "general"] == "0.900"
    both = comparison.format_mean_std(comparison.summarize_comparison(made_up_table))
    assert both.loc["none", "general"] == "0.650 ± 0.071"


def test_plot_draws_one_bar_per_case_and_augmentation(made_up_table):
    figure = comparison.plot_comparison(comparison.summarize_comparison(made_up_table))
    assert isinstance(figure, Figure)
    bars = [patch for patch in figure.axes[0].patches]
    assert len(bars) == 4


def test_with_baselines_lists_run_first(compared):
    _, data_root, folder = compared
    config = _config(seed=0, augmentation="none")
    data, metrics, _ = _single_run(config, data_root, folder)
    table = comparison.compare_with_baselines(config, data, metrics, baselines=["patch_knn"])
    assert list(table.index) == ["two_head, none", "patch_knn"]
    assert table.loc["two_head, none", "auroc"] == pytest.approx(metrics["overall"]["auroc"])
    assert np.isnan(table.loc["two_head, none", "fit_s"])
    assert table.loc["patch_knn", "fit_s"] > 0


def test_with_baselines_matches_comparison_row(compared):
    table, data_root, folder = compared
    config = _config(seed=1)
    data = experiment.prepare_data(config, data_root, cache_dir=folder / "cache")
    metrics = {"overall": {"auroc": 0.5, "aupr": 0.5}, "seen": None, "unseen": None}
    listed = comparison.compare_with_baselines(config, data, metrics, baselines=["devnet"])
    row = table[(table["case"] == "general") & (table["seed"] == 1)]
    row = row[row["variant"] == "devnet"].iloc[0]
    assert listed.loc["devnet", "auroc"] == pytest.approx(row["auroc"])


def test_with_baselines_rejects_unknown_name():
    with pytest.raises(ValueError, match="patchcore"):
        comparison.compare_with_baselines(_config(), None, {}, baselines=["patchcore"])
