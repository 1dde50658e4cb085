"""Specification of sclib.bound: the one-head and two-head bounds, the ELBO and calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import logsumexp
from scipy.stats import norm

from sclib import bound

FINITE = st.floats(min_value=-500.0, max_value=500.0, allow_nan=False)
UNIT = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@st.composite
def joint_terms(draw, elements=FINITE, max_size=20):
    """Draw ``(a0, a1)``: two float64 arrays of one length."""
    size = draw(st.integers(min_value=1, max_value=max_size))
    a0 = draw(arrays(np.float64, size, elements=elements))
    a1 = draw(arrays(np.float64, size, elements=elements))
    return a0, a1


@settings(max_examples=200, deadline=None)
@given(joint_terms())
def test_two_head_bound_not_below_one_head(terms):
    a0, a1 = terms
    assert np.all(bound.two_head_bound(a0, a1) >= bound.one_head_bound(a0))


@settings(max_examples=200, deadline=None)
@given(joint_terms(), st.data())
def test_elbo_below_log_likelihood(terms, data):
    a0, a1 = terms
    q1 = data.draw(arrays(np.float64, a0.shape, elements=UNIT))
    log_likelihood = logsumexp(np.stack([a0, a1]), axis=0)

    lower = bound.elbo(q1, a0, a1)

    assert np.all(lower <= log_likelihood + 1e-9 * (1 + np.abs(log_likelihood)))


@settings(max_examples=200, deadline=None)
@given(joint_terms(elements=st.floats(min_value=-30.0, max_value=30.0)))
def test_elbo_maximum_is_logsumexp_at_posterior(terms):
    a0, a1 = terms
    log_likelihood = logsumexp(np.stack([a0, a1]), axis=0)
    at_posterior = bound.elbo(bound.posterior(a0, a1), a0, a1)
    q_grid = np.linspace(0.0, 1.0, 101)[:, None]  # (Q, 1), broadcast against (N,)

    on_grid = bound.elbo(q_grid, a0, a1)  # (Q, N)

    np.testing.assert_allclose(at_posterior, log_likelihood, rtol=0, atol=1e-9)
    assert np.all(on_grid.max(axis=0) <= at_posterior + 1e-9)


def test_elbo_certain_q_gives_joint_term():
    a0 = np.array([-1.0, -np.inf, 2.0])
    a1 = np.array([-np.inf, -3.0, 5.0])

    all_normal = bound.elbo(np.zeros(3), a0, a1)
    all_anomaly = bound.elbo(np.ones(3), a0, a1)

    assert not np.isnan(all_normal).any()
    assert not np.isnan(all_anomaly).any()
    np.testing.assert_array_equal(all_normal, a0)
    np.testing.assert_array_equal(all_anomaly, a1)


def test_elbo_gradient_finite_at_certain_q():
    a0 = torch.tensor([0.5, -2.0], requires_grad=True)
    a1 = torch.tensor([1.0, 3.0], requires_grad=True)
    q1 = torch.tensor([0.0, 1.0], requires_grad=True)

    bound.elbo(q1, a0, a1).sum().backward()

    assert torch.isfinite(a0.grad).all()
    assert torch.isfinite(a1.grad).all()
    assert torch.equal(a0.grad, torch.tensor([1.0, 0.0]))


@pytest.mark.parametrize("q1", [-0.1, 1.5, float("nan")])
def test_elbo_rejects_q_outside_unit_interval(q1):
    with pytest.raises(ValueError, match="q1 must lie in"):
        bound.elbo(np.array([q1]), np.zeros(1), np.zeros(1))


@settings(max_examples=200, deadline=None)
@given(joint_terms(elements=st.floats(min_value=-40.0, max_value=40.0)))
def test_gap_equals_softplus_and_bound_difference(terms):
    a0, a1 = terms
    expected = torch.nn.functional.softplus(torch.from_numpy(a1 - a0), threshold=50).numpy()

    gap = bound.bound_gap(a0, a1)

    np.testing.assert_allclose(gap, expected, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(
        gap, bound.two_head_bound(a0, a1) - bound.one_head_bound(a0), rtol=1e-9, atol=1e-12
    )


@settings(max_examples=200, deadline=None)
@given(joint_terms())
def test_gap_is_non_negative(terms):
    assert np.all(bound.bound_gap(*terms) >= 0)


def test_gap_vanishes_where_anomaly_term_is_negligible():
    a0 = np.array([0.0, -10.0, 100.0])

    gap = bound.bound_gap(a0, a0 - 50.0)

    assert np.all(gap < 1e-21)
    assert bound.bound_gap(np.zeros(1), np.array([-np.inf]))[0] == 0.0


def test_gap_tracks_difference_where_anomaly_term_dominates():
    gap = bound.bound_gap(np.array([0.0, -5.0]), np.array([1000.0, 60.0]))

    np.testing.assert_allclose(gap, [1000.0, 65.0], rtol=1e-12)


@settings(max_examples=200, deadline=None)
@given(joint_terms(elements=st.floats(min_value=-30.0, max_value=30.0), max_size=30))
def test_log_odds_monotone_in_posterior(heads):
    h0, h1 = heads
    order = np.argsort(bound.log_odds(h0, h1), kind="stable")

    ordered_posterior = bound.posterior(h0, h1)[order]

    assert np.all(np.diff(ordered_posterior) >= 0)


def test_log_odds_is_logit_of_posterior():
    h0 = np.array([0.0, 2.0, -3.0])
    h1 = np.array([1.0, -2.0, 4.0])
    q1 = bound.posterior(h0, h1)

    np.testing.assert_allclose(np.log(q1) - np.log1p(-q1), bound.log_odds(h0, h1), atol=1e-12)


FUNCTIONS_OF_TWO = [bound.two_head_bound, bound.bound_gap, bound.posterior, bound.log_odds]


@pytest.mark.parametrize("function", FUNCTIONS_OF_TWO, ids=lambda function: function.__name__)
def test_functions_keep_input_kind(function):
    first = np.array([0.0, -1.0, 3.0])
    second = np.array([2.0, -4.0, 3.0])

    from_numpy = function(first, second)
    from_torch = function(torch.from_numpy(first), torch.from_numpy(second))

    assert isinstance(from_numpy, np.ndarray)
    assert isinstance(from_torch, torch.Tensor)
    np.testing.assert_allclose(from_torch.numpy(), from_numpy, rtol=1e-12)


def test_one_head_bound_returns_copy():
    a0 = np.array([1.0, 2.0])

    result = bound.one_head_bound(a0)
    result[0] = 99.0

    assert a0[0] == 1.0


def test_likelihood_bounds_table():
    a0 = np.array([-1.0, -8.0])
    a1 = np.array([-6.0, -2.0])

    table = bound.likelihood_bounds(torch.from_numpy(a0), a1, index=["first", "second"])

    assert tuple(table.columns) == bound.BOUND_COLUMNS
    assert list(table.index) == ["first", "second"]
    np.testing.assert_allclose(table["two_head"], np.logaddexp(a0, a1))
    np.testing.assert_allclose(table["gap"], table["two_head"] - table["one_head"])
    np.testing.assert_allclose(table["posterior_anomaly"], np.exp(a1 - np.logaddexp(a0, a1)))
    np.testing.assert_allclose(table["log_odds"], a1 - a0)


# ---------------------------------------------------------------------------------------------
# Calibration
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def validation_scores():
    """Head scores of 300 validation samples whose image scores are N(-2, 1) and N(3, 2)."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], [240, 60])
    image_score = np.where(labels == 0, rng.normal(-2.0, 1.0, 300), rng.normal(3.0, 2.0, 300))
    normal_score = rng.uniform(0.0, 5.0, 300)
    anomaly_score = normal_score + image_score
    ids = [f"image-{i:03d}.png" for i in range(300)]
    return normal_score, anomaly_score, labels, ids


def test_calibration_records_fitted_ids(validation_scores):
    calibration = bound.fit_calibration(*validation_scores)

    assert calibration.fitted_ids == tuple(validation_scores[3])
    assert calibration.n_normal == 240
    assert calibration.n_anomaly == 60


def test_calibration_estimates_score_gaussians(validation_scores):
    normal_score, anomaly_score, labels, ids = validation_scores
    calibration = bound.fit_calibration(normal_score, anomaly_score, labels, ids)
    image_score = anomaly_score - normal_score

    a0, a1 = calibration.transform(normal_score, anomaly_score)

    assert calibration.prior_anomaly == pytest.approx(0.2)
    assert calibration.mean == pytest.approx((-2.0, 3.0), abs=0.4)
    assert calibration.std == pytest.approx((1.0, 2.0), rel=0.25)
    expected_a0 = np.log(0.8) + norm.logpdf(image_score, calibration.mean[0], calibration.std[0])
    expected_a1 = np.log(0.2) + norm.logpdf(image_score, calibration.mean[1], calibration.std[1])
    np.testing.assert_allclose(a0, expected_a0, rtol=1e-10)
    np.testing.assert_allclose(a1, expected_a1, rtol=1e-10)


def test_calibration_transform_keeps_tensor_kind(validation_scores):
    calibration = bound.fit_calibration(*validation_scores)
    normal_score = torch.tensor([0.0, 1.0], dtype=torch.float64)
    anomaly_score = torch.tensor([-1.0, 5.0], dtype=torch.float64)

    a0, a1 = calibration.transform(normal_score, anomaly_score)
    expected = calibration.transform(normal_score.numpy(), anomaly_score.numpy())

    assert isinstance(a0, torch.Tensor)
    assert isinstance(a1, torch.Tensor)
    np.testing.assert_allclose(a0.numpy(), expected[0])
    np.testing.assert_allclose(a1.numpy(), expected[1])


def test_calibration_shared_variance_gives_linear_log_odds(validation_scores):
    calibration = bound.fit_calibration(*validation_scores, shared_variance=True)
    image_score = np.linspace(-5.0, 5.0, 11)

    a0, a1 = calibration.transform(np.zeros(11), image_score)

    assert calibration.std[0] == calibration.std[1]
    np.testing.assert_allclose(np.diff(a1 - a0, n=2), 0.0, atol=1e-9)
    assert np.all(np.diff(a1 - a0) > 0)


def test_calibration_prior_override(validation_scores):
    calibration = bound.fit_calibration(*validation_scores, prior_anomaly=0.01)

    a0, a1 = calibration.transform(np.zeros(1), np.zeros(1))
    default = bound.fit_calibration(*validation_scores)
    default_a0, default_a1 = default.transform(np.zeros(1), np.zeros(1))

    assert calibration.prior_anomaly == 0.01
    np.testing.assert_allclose(a1 - default_a1, np.log(0.01 / 0.2))
    np.testing.assert_allclose(a0 - default_a0, np.log(0.99 / 0.8))


def test_calibration_rejects_test_role(validation_scores):
    roles = ["validation"] * 300
    roles[17] = "test"

    with pytest.raises(ValueError, match="role 'test'.*image-017.png"):
        bound.fit_calibration(*validation_scores, roles=roles)


def test_calibration_rejects_test_id_in_manifest(validation_scores):
    ids = validation_scores[3]
    manifest = pd.DataFrame({"path": ids, "role": ["train_normal"] * 299 + ["test"]})

    with pytest.raises(ValueError, match="image-299.png"):
        bound.fit_calibration(*validation_scores, manifest=manifest)


def test_calibration_accepts_non_test_manifest(validation_scores):
    manifest = pd.DataFrame({"path": validation_scores[3], "role": "validation"})

    calibration = bound.fit_calibration(*validation_scores, manifest=manifest)

    assert len(calibration.fitted_ids) == 300


def test_calibration_rejects_ids_missing_from_manifest(validation_scores):
    manifest = pd.DataFrame({"path": validation_scores[3][:-1], "role": "validation"})

    with pytest.raises(ValueError, match="not in the manifest"):
        bound.fit_calibration(*validation_scores, manifest=manifest)


def test_check_unseen_raises_on_fitted_id(validation_scores):
    calibration = bound.fit_calibration(*validation_scores)

    calibration.check_unseen(["image-999.png"])
    with pytest.raises(ValueError, match="image-005.png"):
        calibration.check_unseen(["image-999.png", "image-005.png"])


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array([0, 0, 0, 1]), "at least 2 normal and 2 anomalous"),
        (np.array([0, 0, 2, 1]), "labels must be 0"),
    ],
)
def test_calibration_rejects_invalid_labels(labels, message):
    with pytest.raises(ValueError, match=message):
        bound.fit_calibration(np.zeros(4), np.arange(4.0), labels, ["a", "b", "c", "d"])


def test_calibration_rejects_duplicate_ids():
    with pytest.raises(ValueError, match="duplicates"):
        bound.fit_calibration(np.zeros(4), np.arange(4.0), [0, 0, 1, 1], ["a", "a", "c", "d"])


def test_calibration_rejects_length_mismatch():
    with pytest.raises(ValueError, match="one length"):
        bound.fit_calibration(np.zeros(4), np.arange(4.0), [0, 0, 1, 1], ["a", "b", "c"])


def _score_table(test_shift: float) -> pd.DataFrame:
    """Score table with 40 validation rows and 20 test rows; test scores moved by ``test_shift``."""
    rng = np.random.default_rng(1)
    labels = np.tile([0, 0, 0, 1], 15)
    roles = ["validation"] * 40 + ["test"] * 20
    anomaly_score = rng.normal(0.0, 1.0, 60) + 3.0 * labels
    anomaly_score[40:] += test_shift
    return pd.DataFrame(
        {
            "path": [f"cell-{i:02d}.png" for i in range(60)],
            "normal_score": rng.uniform(0.0, 1.0, 60),
            "anomaly_score": anomaly_score,
            "label": labels,
            "role": roles,
        }
    )


def test_bounds_from_scores_fits_validation_rows_only():
    calibration, table = bound.bounds_from_scores(_score_table(test_shift=0.0))
    shifted_calibration, _ = bound.bounds_from_scores(_score_table(test_shift=100.0))

    assert calibration.fitted_ids == tuple(f"cell-{i:02d}.png" for i in range(40))
    assert shifted_calibration == calibration
    assert list(table["sample_id"]) == [f"cell-{i:02d}.png" for i in range(40, 60)]


def test_bounds_from_scores_table_columns():
    scores = _score_table(test_shift=0.0)

    calibration, table = bound.bounds_from_scores(scores)
    test_rows = scores[scores["role"] == "test"]
    a0, a1 = calibration.transform(test_rows["normal_score"], test_rows["anomaly_score"])

    assert list(table.columns) == ["sample_id", "label", "image_score", *bound.BOUND_COLUMNS]
    np.testing.assert_allclose(table["gap"], bound.bound_gap(a0, a1))
    np.testing.assert_array_equal(table["label"], test_rows["label"])


def test_bounds_from_scores_requires_columns():
    scores = _score_table(test_shift=0.0).drop(columns="role")

    with pytest.raises(ValueError, match="role"):
        bound.bounds_from_scores(scores)
