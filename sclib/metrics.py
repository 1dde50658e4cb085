"""Image-level detection metrics: AUROC, AUPR, and the per-class breakdown.

- :func:`auroc` is the probability that a random anomaly scores higher than a random
  normal image, with ties counted as one half. It is computed from average ranks
  (the Mann-Whitney U statistic), which handles ties exactly.
- :func:`aupr` is the average precision as scikit-learn defines it: the sum over score
  thresholds of precision times the recall gained at that threshold. Tied scores form
  one threshold.
- :func:`evaluate` reports both overall, per defect class (normal images against the
  anomalies of one class), and for the seen and unseen classes of the open-set protocol.

Labels are 0 for normal and 1 for anomaly, and a higher score means more anomalous.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def _to_numpy(values) -> np.ndarray:
    """Return ``values`` as a NumPy array; torch tensors of any dtype or device work too."""
    if hasattr(values, "detach"):
        values = values.detach().cpu()
        if values.is_floating_point():
            values = values.double()  # NumPy has no bfloat16
        return values.numpy()
    return np.asarray(values)


def _as_binary_problem(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = _to_numpy(labels).reshape(-1)
    scores = _to_numpy(scores).astype(np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(
            f"labels and scores differ in length: {labels.shape[0]} labels, "
            f"{scores.shape[0]} scores."
        )
    invalid = set(np.unique(labels).tolist()) - {0, 1}
    if invalid:
        raise ValueError(
            f"labels must be 0 (normal) or 1 (anomaly); found {sorted(invalid)}. "
            "Map pseudo-anomaly labels (2) to 1 or drop them before scoring."
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError(
            f"scores contain {int(np.sum(~np.isfinite(scores)))} NaN or infinite values; "
            "check the model output (a diverged run gives NaN)."
        )
    n_anomaly = int(labels.sum())
    n_normal = labels.size - n_anomaly
    if n_normal == 0 or n_anomaly == 0:
        raise ValueError(
            f"AUROC and AUPR need both classes; got {n_normal} normal and {n_anomaly} "
            "anomalous images. Use a test set with at least one of each."
        )
    return labels.astype(np.int64), scores


def average_ranks(values) -> np.ndarray:
    """Return the 1-based ranks of ``values``, with tied values sharing their mean rank."""
    values = np.asarray(values).reshape(-1)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]

    # Each run of equal values gets the mean of the positions it spans.
    starts_new_run = np.concatenate([[True], sorted_values[1:] != sorted_values[:-1]])
    run_id = np.cumsum(starts_new_run) - 1
    run_start = np.flatnonzero(starts_new_run)
    run_end = np.concatenate([run_start[1:], [values.size]])
    mean_rank = (run_start + run_end + 1) / 2.0

    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = mean_rank[run_id]
    return ranks


def auroc(labels, scores) -> float:
    """Return the area under the ROC curve.

    Args:
        labels: shape (N,), 0 for normal and 1 for anomaly; both must occur.
        scores: shape (N,), higher means more anomalous.

    Raises:
        ValueError: when only one class is present, lengths differ, a label is not 0
            or 1, or a score is not finite.
    """
    labels, scores = _as_binary_problem(labels, scores)
    n_anomaly = int(labels.sum())
    n_normal = labels.size - n_anomaly
    ranks = average_ranks(scores)
    # Mann-Whitney U of the anomalies, divided by the number of (anomaly, normal) pairs.
    u_statistic = ranks[labels == 1].sum() - n_anomaly * (n_anomaly + 1) / 2.0
    return float(u_statistic / (n_anomaly * n_normal))


def aupr(labels, scores) -> float:
    """Return the average precision, the area under the precision-recall curve.

    It matches ``sklearn.metrics.average_precision_score``: the sum over distinct score
    thresholds, from high to low, of the precision at that threshold times the recall
    it adds. A random scorer gets the anomaly fraction of the test set.

    Args:
        labels: shape (N,), 0 for normal and 1 for anomaly; both must occur.
        scores: shape (N,), higher means more anomalous.

    Raises:
        ValueError: as :func:`auroc`.
    """
    labels, scores = _as_binary_problem(labels, scores)
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    sorted_labels = labels[order]

    # A threshold sits at the last position of each run of tied scores.
    last_of_run = np.concatenate([sorted_scores[1:] != sorted_scores[:-1], [True]])
    true_positives = np.cumsum(sorted_labels)[last_of_run]
    predicted_positives = np.flatnonzero(last_of_run) + 1

    precision = true_positives / predicted_positives
    recall = true_positives / true_positives[-1]
    recall_gain = np.diff(recall, prepend=0.0)
    return float(np.sum(recall_gain * precision))


def _summary(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    n_anomaly = int(labels.sum())
    return {
        "auroc": auroc(labels, scores),
        "aupr": aupr(labels, scores),
        "n_normal": int(labels.size - n_anomaly),
        "n_anomaly": n_anomaly,
    }


def evaluate(
    scores,
    labels,
    defect_classes: Sequence[str],
    seen_classes: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Compute AUROC and AUPR overall, per defect class, and for seen and unseen classes.

    Every subset compares all normal images with a subset of the anomalies, so a
    per-class number measures how well anomalies of that class are separated from
    normal images.

    Args:
        scores: shape (N,), higher means more anomalous.
        labels: shape (N,), 0 for normal and 1 for anomaly.
        defect_classes: N class names. Normal images may carry any name (usually
            ``"good"``); the classes of the anomalies define the per-class entries.
        seen_classes: the defect classes of the labelled training anomalies, or None
            when they are unknown.

    Returns:
        ``{"overall": {...}, "per_class": {class: {...}}, "seen": {...} or None,
        "unseen": {...} or None}``, where each ``{...}`` holds ``auroc``, ``aupr``,
        ``n_normal`` and ``n_anomaly``. ``seen`` is None when no test anomaly belongs
        to a seen class (the hard setting) or ``seen_classes`` is None or empty.
        ``unseen`` is None when every test anomaly belongs to a seen class or
        ``seen_classes`` is None. With no labelled anomalies (``seen_classes`` empty),
        every anomaly counts as unseen.

    Raises:
        ValueError: when the test set lacks normal images or anomalies, when the
            inputs differ in length, or when ``seen_classes`` is a single string.
    """
    labels, scores = _as_binary_problem(labels, scores)
    defect_classes = np.asarray([str(name) for name in defect_classes], dtype=object)
    if defect_classes.size != labels.size:
        raise ValueError(
            f"defect_classes has {defect_classes.size} entries for {labels.size} scores."
        )
    is_normal = labels == 0
    is_anomaly = labels == 1

    per_class = {}
    for name in sorted(set(defect_classes[is_anomaly].tolist())):
        keep = is_normal | (is_anomaly & (defect_classes == name))
        per_class[name] = _summary(labels[keep], scores[keep])

    if isinstance(seen_classes, str):
        raise ValueError(
            f"seen_classes must be a list of class names, got the string {seen_classes!r}, "
            f"which would count as its letters. Pass [{seen_classes!r}]."
        )
    seen = unseen = None
    if seen_classes is not None:
        seen_set = set(seen_classes)
        in_seen = np.isin(defect_classes, list(seen_set)) if seen_set else np.zeros_like(is_anomaly)
        seen_anomaly = is_anomaly & in_seen
        unseen_anomaly = is_anomaly & ~in_seen
        if seen_set and seen_anomaly.any():
            keep = is_normal | seen_anomaly
            seen = _summary(labels[keep], scores[keep])
        if unseen_anomaly.any():
            keep = is_normal | unseen_anomaly
            unseen = _summary(labels[keep], scores[keep])

    return {
        "overall": _summary(labels, scores),
        "per_class": per_class,
        "seen": seen,
        "unseen": unseen,
    }
