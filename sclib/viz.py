"""Figures of a run: ROC and precision-recall curves, score histograms, losses, images.

Every function takes plain arrays (NumPy, torch tensors or lists) or a history
DataFrame and returns a new ``matplotlib.figure.Figure``. The figures are built without
``pyplot``, so they work under the Agg backend, hold no global state, and show once in
a notebook when they are the last value of a cell. Save one with
``sclib.runs.save_figure_atomic``.

Scores follow the package convention: higher means more anomalous. Labels are 0 for
normal and 1 for anomaly. The curve and histogram functions take ``(labels, scores)`` in
that order, like scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from sclib.metrics import aupr, auroc

_ALL_LABEL = "all anomalies"


def _to_numpy(values) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu()
    return np.asarray(values)


def _labels_and_scores(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = _to_numpy(labels).reshape(-1)
    scores = _to_numpy(scores).astype(float).reshape(-1)
    invalid = set(np.unique(labels).tolist()) - {0, 1}
    if invalid:
        examples = sorted(invalid)[:5]
        raise ValueError(
            f"labels must be 0 or 1, found {examples}; pass (labels, scores) in that order."
        )
    return labels.astype(int), scores


def _curve_subsets(labels, scores, defect_classes):
    """Yield ``(name, labels, scores)``: all anomalies, then normals against each class."""
    labels, scores = _labels_and_scores(labels, scores)
    yield _ALL_LABEL, labels, scores
    if defect_classes is None:
        return
    classes = np.asarray([str(name) for name in defect_classes], dtype=object)
    for name in sorted(set(classes[labels == 1].tolist())):
        keep = (labels == 0) | ((labels == 1) & (classes == name))
        yield name, labels[keep], scores[keep]


def plot_roc(
    labels, scores, defect_classes: Sequence[str] | None = None, title: str = "ROC"
) -> Figure:
    """Plot the ROC curve of all anomalies and, given the classes, one curve per class.

    Args:
        labels: (N,) 0 normal, 1 anomaly.
        scores: (N,) higher = more anomalous.
        defect_classes: (N,) class names; each class curve compares all normal images
            with the anomalies of that class.
        title: axes title.
    """
    figure = Figure(figsize=(5, 4.5))
    axes = figure.add_subplot()
    for name, subset_labels, subset_scores in _curve_subsets(labels, scores, defect_classes):
        false_positive_rate, true_positive_rate, _ = roc_curve(subset_labels, subset_scores)
        area = auroc(subset_labels, subset_scores)
        width = 2.0 if name == _ALL_LABEL else 1.2
        axes.plot(false_positive_rate, true_positive_rate, lw=width, label=f"{name} ({area:.3f})")
    axes.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="chance (0.500)")
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    axes.set(xlim=(0, 1), ylim=(0, 1.02))
    axes.legend(title="AUROC", loc="lower right", fontsize="small")
    return figure


def plot_pr(
    labels,
    scores,
    defect_classes: Sequence[str] | None = None,
    title: str = "Precision-recall",
) -> Figure:
    """Plot the precision-recall curve of all anomalies and, given the classes, per class.

    The dashed line of each subset is its anomaly fraction, the AUPR of a random scorer.

    Args:
        labels: (N,) 0 normal, 1 anomaly.
        scores: (N,) higher = more anomalous.
        defect_classes: (N,) class names, as in :func:`plot_roc`.
        title: axes title.
    """
    figure = Figure(figsize=(5, 4.5))
    axes = figure.add_subplot()
    for name, subset_labels, subset_scores in _curve_subsets(labels, scores, defect_classes):
        precision, recall, _ = precision_recall_curve(subset_labels, subset_scores)
        area = aupr(subset_labels, subset_scores)
        width = 2.0 if name == _ALL_LABEL else 1.2
        label = f"{name} ({area:.3f})"
        (line,) = axes.step(recall, precision, where="post", lw=width, label=label)
        axes.axhline(subset_labels.mean(), color=line.get_color(), lw=0.8, ls="--")
    axes.set(xlabel="recall", ylabel="precision", title=title, xlim=(0, 1), ylim=(0, 1.02))
    axes.legend(title="AUPR", loc="lower left", fontsize="small")
    return figure


def plot_score_histogram(
    labels,
    scores,
    defect_classes: Sequence[str] | None = None,
    bins: int = 30,
    title: str = "Anomaly scores",
) -> Figure:
    """Plot score histograms of the normal images and of each defect class.

    Each histogram is normalised to unit area, so classes of different sizes compare.
    Normal images are drawn as grey bars and each defect class as an outline.

    Args:
        labels: (N,) 0 normal, 1 anomaly.
        scores: (N,) higher = more anomalous.
        defect_classes: (N,) class names; without them all anomalies form one group.
        bins: number of bins shared by all groups.
        title: axes title.
    """
    labels, scores = _labels_and_scores(labels, scores)
    if defect_classes is None:
        groups = np.where(labels == 0, "normal", "anomaly").astype(object)
    else:
        groups = np.asarray([str(name) for name in defect_classes], dtype=object)
        groups[labels == 0] = "normal"
    names = ["normal"] + sorted(set(groups[labels == 1].tolist()))

    edges = np.histogram_bin_edges(scores, bins=bins)
    figure = Figure(figsize=(6, 4))
    axes = figure.add_subplot()
    for name in names:
        values = scores[groups == name]
        if values.size == 0:
            continue
        label = f"{name} (n={values.size})"
        if name == "normal":
            axes.hist(values, bins=edges, density=True, color="0.75", label=label)
        else:
            axes.hist(values, bins=edges, density=True, histtype="step", lw=1.8, label=label)
    axes.set(xlabel="score (higher = more anomalous)", ylabel="density", title=title)
    axes.legend(fontsize="small")
    return figure


def plot_history(history, smooth: int = 1, title: str = "Training loss") -> Figure:
    """Plot the total loss and the loss of each head per step, and the learning rate.

    Args:
        history: DataFrame from ``sclib.train.train`` with columns ``step``, ``loss``,
            ``loss_normal``, ``loss_anomaly`` and ``lr``.
        smooth: window of a centred moving average over steps; 1 draws raw values.
        title: title of the loss axes.
    """
    required = ("step", "loss", "loss_normal", "loss_anomaly", "lr")
    missing = [column for column in required if column not in history]
    if missing:
        raise ValueError(
            f"history lacks columns {missing}; pass the DataFrame returned by sclib.train.train."
        )
    figure = Figure(figsize=(7, 5))
    loss_axes, lr_axes = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    steps = history["step"].to_numpy()
    curves = (("loss", "total"), ("loss_normal", "normal head"), ("loss_anomaly", "anomaly head"))
    for column, label in curves:
        values = history[column].rolling(smooth, center=True, min_periods=1).mean()
        loss_axes.plot(steps, values.to_numpy(), lw=2.0 if column == "loss" else 1.2, label=label)
    loss_axes.set(ylabel="deviation loss", title=title)
    loss_axes.legend(fontsize="small")
    lr_axes.plot(steps, history["lr"].to_numpy(), color="grey")
    lr_axes.set(xlabel="step", ylabel="learning rate", yscale="log")
    figure.tight_layout()
    return figure


def show_images(
    images,
    titles: Sequence[str] | None = None,
    ncols: int = 6,
    cmap: str | None = None,
    size: float = 2.0,
) -> Figure:
    """Draw images in a grid.

    Args:
        images: a batch (B, 3, H, W) or (B, 1, H, W) tensor or array, a batch in
            (B, H, W, 3) or (B, H, W) layout, or a list of such single images.
            uint8 is shown as is, and float images are min-max scaled per image to [0, 1],
            so normalised model inputs and saliency maps both display.
        titles: one title per image.
        ncols: images per row.
        cmap: colour map for single-channel images; ``"gray"`` when None.
        size: side of one grid cell in inches.
    """
    pictures = [_display_array(image) for image in _split_batch(images)]
    if not pictures:
        raise ValueError("images is empty; pass at least one image.")
    if titles is not None and len(titles) != len(pictures):
        raise ValueError(f"got {len(titles)} titles for {len(pictures)} images.")
    ncols = max(1, min(ncols, len(pictures)))
    nrows = math.ceil(len(pictures) / ncols)
    figure = Figure(figsize=(size * ncols, size * nrows))
    for index, picture in enumerate(pictures):
        axes = figure.add_subplot(nrows, ncols, index + 1)
        if picture.ndim == 2:
            axes.imshow(picture, cmap=cmap or "gray")
        else:
            axes.imshow(picture)
        axes.set_axis_off()
        if titles is not None:
            axes.set_title(str(titles[index]), fontsize="small")
    figure.tight_layout()
    return figure


def _split_batch(images) -> list[np.ndarray]:
    if isinstance(images, (list, tuple)):
        return [_to_numpy(image) for image in images]
    array = _to_numpy(images)
    if array.ndim in (2, 3) and not _is_batch_of_grey(array):
        return [array]
    return list(array)


def _is_batch_of_grey(array: np.ndarray) -> bool:
    # (B, H, W) with B other than 1 or 3 is a batch of grey images. Shapes (3, H, W)
    # and (H, W, 3) are one colour image.
    return array.ndim == 3 and array.shape[0] not in (1, 3) and array.shape[-1] not in (1, 3)


def _display_array(image: np.ndarray) -> np.ndarray:
    """Return an (H, W) or (H, W, 3) array that ``imshow`` draws as intended."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
        image = np.moveaxis(image, 0, -1)  # (C, H, W) -> (H, W, C)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.dtype == np.uint8:
        return image
    image = image.astype(np.float64)
    low, high = np.nanmin(image), np.nanmax(image)
    if high > low:
        image = (image - low) / (high - low)
    else:
        image = np.zeros_like(image)
    return image
