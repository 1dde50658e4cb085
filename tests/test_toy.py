"""Specification of sclib.toy: the Gaussian-mixture toy problem and its trained heads."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure
from scipy.special import logsumexp

from sclib import bound
from sclib.toy import (
    ToyMixture,
    plot_toy_figure,
    toy_bound_table,
    toy_figure_data,
    toy_summary,
    train_toy_heads,
)


@settings(max_examples=50, deadline=None)
@given(
    prior=st.floats(min_value=0.001, max_value=0.999),
    separation=st.floats(min_value=0.0, max_value=10.0),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_exact_heads_recover_log_density(prior, separation, seed):
    mixture = ToyMixture(prior=prior, separation=separation)
    points = np.random.default_rng(seed).uniform(-8.0, 15.0, size=(64, 2))

    a0, a1 = mixture.log_joint(points)

    np.testing.assert_allclose(
        bound.two_head_bound(a0, a1), mixture.log_density(points), rtol=0, atol=1e-6
    )
    assert np.all(bound.one_head_bound(a0) <= mixture.log_density(points) + 1e-12)


def test_log_density_integrates_to_one():
    mixture = ToyMixture(prior=0.3, separation=2.0)
    axis = np.linspace(-9.0, 11.0, 401)
    grid = np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
    cell_area = (axis[1] - axis[0]) ** 2

    log_mass = logsumexp(mixture.log_density(grid)) + np.log(cell_area)

    assert abs(log_mass) < 1e-4


def test_sample_shapes_and_prior():
    mixture = ToyMixture(prior=0.2, separation=4.0)

    points, labels = mixture.sample(20000, np.random.default_rng(3))

    assert points.shape == (20000, 2)
    assert labels.shape == (20000,)
    assert set(np.unique(labels)) == {0, 1}
    # Binomial standard error of the share is sqrt(0.2 * 0.8 / 20000) = 0.0028.
    assert abs(labels.mean() - 0.2) < 0.012
    np.testing.assert_allclose(points[labels == 0].mean(axis=0), mixture.means[0], atol=0.05)
    np.testing.assert_allclose(points[labels == 1].mean(axis=0), mixture.means[1], atol=0.1)


def test_sample_reproducible_from_seed():
    first = ToyMixture(seed=5).sample(50)
    second = ToyMixture(seed=5).sample(50)
    other = ToyMixture(seed=6).sample(50)

    np.testing.assert_array_equal(first[0], second[0])
    assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"prior": 0.0}, "prior"), ({"prior": 1.0}, "prior"), ({"separation": -1.0}, "separation")],
)
def test_mixture_rejects_invalid_parameters(arguments, message):
    with pytest.raises(ValueError, match=message):
        ToyMixture(**arguments)


# ---------------------------------------------------------------------------------------------
# Trained heads
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained():
    """Heads trained briefly on the default mixture, and their bound table on test points."""
    mixture = ToyMixture(prior=0.1, separation=3.0)
    heads = train_toy_heads(mixture, n_train=1000, steps=150, seed=0, n_validation=600)
    table = toy_bound_table(mixture, heads, n_test=1500, seed=0)
    return heads, table


def test_training_reduces_both_losses(trained):
    heads, _ = trained
    history = heads.history

    assert len(history) == 150
    assert history["loss_two_head"].iloc[-1] < 0.5 * history["loss_two_head"].iloc[0]
    assert history["loss_one_head"].iloc[-1] < 0.5 * history["loss_one_head"].iloc[0]


def test_calibration_fitted_on_validation_points_only(trained):
    heads, table = trained
    fitted = set(heads.calibration.fitted_ids)

    assert len(fitted) == 600
    assert all(sample_id.startswith("validation-") for sample_id in fitted)
    assert fitted.isdisjoint(table["sample_id"])


def test_exact_columns_of_table(trained):
    _, table = trained

    np.testing.assert_allclose(table["two_head_exact"], table["log_p"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(table["one_head_exact"], table["a0"])
    np.testing.assert_allclose(
        table["gap_exact"], table["two_head_exact"] - table["one_head_exact"], atol=1e-9
    )


def test_model_bounds_stay_below_log_p(trained):
    _, table = trained

    assert np.all(table["one_head_model"] <= table["log_p"] + 1e-9)
    assert np.all(table["two_head_model"] <= table["log_p"] + 1e-9)


def test_two_head_bound_closer_on_anomalies(trained):
    _, table = trained
    anomalies = table[table["y"] == 1]

    one_head_error = (anomalies["log_p"] - anomalies["one_head_model"]).abs().mean()
    two_head_error = (anomalies["log_p"] - anomalies["two_head_model"]).abs().mean()

    assert len(anomalies) > 50
    assert two_head_error < one_head_error
    # With a posterior close to the exact one, most of the one-head gap closes.
    assert two_head_error < 0.1 * one_head_error


def test_calibrated_posterior_near_exact(trained):
    _, table = trained

    posterior_error = (table["posterior_model"] - table["posterior_exact"]).abs().mean()
    gap_correlation = np.corrcoef(table["gap_predicted"], table["gap_exact"])[0, 1]

    assert posterior_error < 0.1
    assert gap_correlation > 0.9


def test_gaps_larger_on_anomalies(trained):
    _, table = trained
    summary = toy_summary(table)

    for column in ("gap_exact", "gap_model", "gap_predicted"):
        assert summary.loc["anomaly", column] > summary.loc["normal", column]


def test_two_head_ranking_close_to_optimal(trained):
    _, table = trained
    summary = toy_summary(table)
    optimal = summary.loc["all", "auroc_log_odds_exact"]

    # The exact log-odds is the Neyman-Pearson ranking, so no score beats it by more than noise.
    assert summary.loc["all", "auroc_two_head_score"] <= optimal + 0.01
    assert summary.loc["all", "auroc_two_head_score"] > optimal - 0.05


def test_summary_counts_match_table(trained):
    _, table = trained
    summary = toy_summary(table)

    assert summary.loc["all", "n"] == len(table)
    assert summary.loc["anomaly", "n"] == int(table["y"].sum())
    assert summary.loc["all", "gap_exact"] == pytest.approx(table["gap_exact"].mean())


# ---------------------------------------------------------------------------------------------
# Figure data
# ---------------------------------------------------------------------------------------------


def test_figure_data_shapes_and_signs():
    data = toy_figure_data(prior=0.2, separation=2.0, grid_size=31, n_points=200)

    assert data.axis.shape == (31,)
    assert data.log_p.shape == (31, 31)
    assert data.gap.shape == (31, 31)
    assert data.points.shape == (200, 2)
    assert np.all(data.gap >= 0)
    assert np.all(data.line_log_p >= data.line_one_head)
    assert data.mean_gap["anomaly"] > data.mean_gap["normal"]


def test_figure_gap_shrinks_with_smaller_prior():
    frequent = toy_figure_data(prior=0.3, separation=3.0, grid_size=21)
    rare = toy_figure_data(prior=0.01, separation=3.0, grid_size=21)

    assert rare.gap.mean() < frequent.gap.mean()


def test_plot_toy_figure_draws_three_panels():
    data = toy_figure_data(grid_size=21, n_points=50)

    figure = plot_toy_figure(data, figure=Figure())

    assert len(figure.axes) == 5  # three panels and two colour bars


def test_toy_explorer_redraws_on_slider_change():
    widgets = pytest.importorskip("ipywidgets")
    import matplotlib.pyplot as plt

    from sclib.toy import toy_explorer

    view = toy_explorer()
    prior_slider, separation_slider = view.children[0].children
    separation_slider.value = 1.0
    plt.close("all")

    assert isinstance(view, widgets.VBox)
    assert prior_slider.description == "prior"
    assert separation_slider.value == 1.0
