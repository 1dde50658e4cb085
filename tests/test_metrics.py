"""Specification of sclib.metrics: AUROC and AUPR equal scikit-learn's, and the breakdown."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, roc_auc_score

from sclib.metrics import aupr, auroc, average_ranks, evaluate


@st.composite
def scored_labels(draw):
    """Labels with both classes and scores drawn from few values, so that ties are common."""
    size = draw(st.integers(min_value=2, max_value=60))
    labels = draw(st.lists(st.integers(0, 1), min_size=size, max_size=size))
    labels[0], labels[1] = 0, 1
    levels = draw(st.integers(min_value=1, max_value=8))
    scores = draw(
        st.lists(st.integers(0, levels), min_size=size, max_size=size).map(
            lambda values: [value / levels - 0.3 for value in values]
        )
    )
    return np.array(labels), np.array(scores)


@settings(max_examples=200, deadline=None)
@given(scored_labels())
def test_auroc_equals_sklearn_with_ties(problem):
    labels, scores = problem

    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(scored_labels())
def test_aupr_equals_sklearn_with_ties(problem):
    labels, scores = problem

    assert aupr(labels, scores) == pytest.approx(
        average_precision_score(labels, scores), abs=1e-12
    )


def test_metrics_equal_sklearn_on_continuous_scores():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=500)
    scores = rng.normal(size=500) + labels

    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert aupr(labels, scores) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


def test_average_ranks_equal_scipy():
    values = np.array([3.0, 1.0, 3.0, 2.0, 1.0, 3.0])

    np.testing.assert_allclose(average_ranks(values), rankdata(values))


def test_perfect_and_reversed_ranking():
    labels = np.array([0, 0, 1, 1])

    assert auroc(labels, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert auroc(labels, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert aupr(labels, [0.1, 0.2, 0.8, 0.9]) == 1.0


def test_all_tied_scores_give_chance():
    labels = np.array([0, 0, 0, 1])

    assert auroc(labels, np.zeros(4)) == 0.5
    assert aupr(labels, np.zeros(4)) == 0.25


@pytest.mark.parametrize("metric", [auroc, aupr])
def test_single_class_raises_clear_error(metric):
    with pytest.raises(ValueError, match="need both classes; got 3 normal and 0"):
        metric([0, 0, 0], [0.1, 0.2, 0.3])


def test_pseudo_label_is_rejected():
    with pytest.raises(ValueError, match=r"found \[2\]"):
        auroc([0, 1, 2], [0.1, 0.2, 0.3])


def test_nan_score_is_rejected():
    with pytest.raises(ValueError, match="NaN"):
        auroc([0, 1], [0.1, float("nan")])


def test_length_mismatch_is_rejected():
    with pytest.raises(ValueError, match="differ in length"):
        aupr([0, 1, 1], [0.1, 0.2])


@pytest.fixture
def hand_example():
    """Three normals, two scratches (seen) and two dents (unseen)."""
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    classes = ["good", "good", "good", "scratch", "scratch", "dent", "dent"]
    # Scratches rank above every normal. Each dent ranks above one or two normals.
    scores = np.array([0.1, 0.3, 0.5, 0.9, 0.8, 0.2, 0.4])
    return scores, labels, classes


def test_evaluate_reports_overall(hand_example):
    scores, labels, classes = hand_example

    result = evaluate(scores, labels, classes, seen_classes=["scratch"])

    assert result["overall"]["auroc"] == pytest.approx(roc_auc_score(labels, scores))
    assert result["overall"]["aupr"] == pytest.approx(average_precision_score(labels, scores))
    assert result["overall"]["n_normal"] == 3
    assert result["overall"]["n_anomaly"] == 4


def test_evaluate_compares_normals_with_each_class(hand_example):
    scores, labels, classes = hand_example

    per_class = evaluate(scores, labels, classes, seen_classes=["scratch"])["per_class"]

    assert sorted(per_class) == ["dent", "scratch"]
    assert per_class["scratch"]["auroc"] == 1.0
    # Dent 0.2 ranks above 0.1, and dent 0.4 above 0.1 and 0.3: 3 of 6 pairs.
    assert per_class["dent"]["auroc"] == pytest.approx(3 / 6)
    assert per_class["dent"]["n_normal"] == 3
    assert per_class["dent"]["n_anomaly"] == 2


def test_evaluate_splits_seen_and_unseen(hand_example):
    scores, labels, classes = hand_example

    result = evaluate(scores, labels, classes, seen_classes=["scratch"])

    assert result["seen"] == result["per_class"]["scratch"]
    assert result["unseen"] == result["per_class"]["dent"]


def test_evaluate_without_seen_test_anomalies_gives_none(hand_example):
    scores, labels, classes = hand_example

    result = evaluate(scores, labels, classes, seen_classes=["crack"])

    assert result["seen"] is None
    assert result["unseen"] == result["overall"]


def test_evaluate_with_all_classes_seen_has_no_unseen(hand_example):
    scores, labels, classes = hand_example

    result = evaluate(scores, labels, classes, seen_classes=["scratch", "dent"])

    assert result["unseen"] is None
    assert result["seen"] == result["overall"]


def test_evaluate_without_seen_classes_skips_split(hand_example):
    scores, labels, classes = hand_example

    result = evaluate(scores, labels, classes, seen_classes=None)

    assert result["seen"] is None
    assert result["unseen"] is None


def test_evaluate_needs_normals():
    with pytest.raises(ValueError, match="0 normal"):
        evaluate([0.1, 0.2], [1, 1], ["dent", "dent"], seen_classes=["dent"])


def test_evaluate_checks_class_count():
    with pytest.raises(ValueError, match="defect_classes has 1 entries"):
        evaluate([0.1, 0.2], [0, 1], ["dent"])


def test_evaluate_rejects_string_seen_classes(hand_example):
    scores, labels, classes = hand_example
    with pytest.raises(ValueError, match=r"Pass \['mono'\]"):
        evaluate(scores, labels, classes, seen_classes="mono")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_metrics_accept_torch_tensors(dtype):
    torch = pytest.importorskip("torch")
    labels = torch.tensor([0, 1, 1, 0])
    scores = torch.tensor([0.25, 0.75, 0.5, 0.5], dtype=getattr(torch, dtype), requires_grad=True)
    expected = [0.25, 0.75, 0.5, 0.5]
    assert auroc(labels, scores) == roc_auc_score([0, 1, 1, 0], expected)
    assert aupr(labels, scores) == average_precision_score([0, 1, 1, 0], expected)
