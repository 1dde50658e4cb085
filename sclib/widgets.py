"""Interactive explorers for notebooks: sliders over the computations of ``sclib.explore``.

Each explorer function takes the objects a notebook already has (a model, a uint8 image
batch, a score table) and returns:

- with ``interactive=True``, an :class:`Explorer`: ipywidgets controls above a figure and
  a caption. Moving a control recomputes the view and redraws the figure;
- with ``interactive=False`` (batch runs with papermill, nbval), the same figure for the
  initial control values, as a ``matplotlib.figure.Figure``.

Explorers:

- :func:`saliency_explorer`: donor, saliency, mask and pseudo anomaly of SaliencyCut, with
  sliders for threshold, grid size and B-spline order.
- :func:`augmentation_gallery`: SaliencyCut, CutMix, CutPaste and no augmentation on one
  batch and one seed.
- :func:`model_explorer`: the anomaly head's four residual blocks and its patch scores.
- :func:`score_explorer`: a threshold slider with the confusion matrix, precision, recall,
  the ROC point and the worst false positives and false negatives.
- :func:`protocol_explorer`: how many images of each class each open-set setting uses.

The figures are built without ``pyplot`` and sent to the browser as PNG bytes in an
``ipywidgets.Image``, so an explorer works the same in JupyterLab, Notebook and VS Code.
"""

from __future__ import annotations

import html
import io
import logging
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from sklearn.metrics import roc_curve

from sclib import explore
from sclib.data.images import load_image, resize_image
from sclib.data.layout import ImageRecord
from sclib.metrics import auroc

logger = logging.getLogger(__name__)

# The four residual blocks b1..b4, drawn in the order and with the signs of R.
BLOCK_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red")
BLOCK_SIGNS_TEXT = ("-", "+", "-", "+")
PNG_DPI = 80
THUMBNAIL_SIDE = 96


class Explorer(ipywidgets.VBox):
    """Controls, a figure and a caption, redrawn whenever a control changes.

    Attributes:
        controls: the control widgets by name; set ``controls[name].value`` to move one.
        image: the figure as PNG bytes (``image.value``).
        caption: HTML text under the figure, or the error message of the last update.
        state: the object the last successful update computed (for example a
            ``SaliencyView``); None before the first one.
        figure: the last figure drawn.
    """

    def __init__(
        self,
        controls: dict[str, ipywidgets.Widget],
        update: Callable[..., tuple[Any, Figure, str]],
    ):
        self.controls = controls
        self.image = ipywidgets.Image(format="png", layout=ipywidgets.Layout(max_width="100%"))
        self.caption = ipywidgets.HTML()
        self.state: Any = None
        self.figure: Figure | None = None
        self._update = update
        super().__init__([ipywidgets.HBox(list(controls.values())), self.image, self.caption])
        for control in controls.values():
            control.observe(self.refresh, names="value")
        self.refresh()

    def values(self) -> dict[str, Any]:
        """Return the current value of every control by name."""
        return {name: control.value for name, control in self.controls.items()}

    def refresh(self, change: Any = None) -> None:
        """Recompute the view for the current control values and redraw it."""
        del change
        try:
            state, figure, caption = self._update(**self.values())
        except ValueError as error:
            # Show why the control values were rejected, instead of failing silently.
            logger.info("explorer update rejected: %s", error)
            self.caption.value = f"<b>Not shown:</b> {html.escape(str(error))}"
            return
        self.state, self.figure = state, figure
        self.image.value = figure_png(figure)
        self.caption.value = caption


def figure_png(figure: Figure, dpi: int = PNG_DPI) -> bytes:
    """Render a figure to PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _finish(update, defaults: dict[str, Any], controls: Callable[[], dict], interactive: bool):
    """Return the static figure for ``defaults``, or an Explorer built on ``controls()``."""
    if not interactive:
        _, figure, _ = update(**defaults)
        return figure
    return Explorer(controls(), update)


def _slider(kind, description: str, value, low, high, step=1) -> ipywidgets.Widget:
    style = {"description_width": "initial"}
    return kind(
        value=value,
        min=low,
        max=high,
        step=step,
        description=description,
        continuous_update=False,
        style=style,
    )


def _picture(array) -> np.ndarray:
    """Return (H, W) or (H, W, 3) for ``imshow`` from a (3, H, W) or (1, H, W) tensor."""
    array = array.detach().cpu() if hasattr(array, "detach") else torch.as_tensor(array)
    array = array.numpy()
    if array.ndim == 3 and array.shape[0] == 1:
        return array[0]
    if array.ndim == 3 and array.shape[0] == 3:
        return np.moveaxis(array, 0, -1)  # (3, H, W) -> (H, W, 3)
    return array


def _draw(axes, array, title: str, **options) -> None:
    picture = _picture(array)
    if picture.ndim == 2 and "cmap" not in options:
        options["cmap"] = "gray"
    axes.imshow(picture, **options)
    axes.set_title(title, fontsize="small")
    axes.set_axis_off()


# --- saliency ---------------------------------------------------------------------------


def draw_saliency(view: explore.SaliencyView, threshold: float, donor: int, base: int) -> Figure:
    """Draw donor, raw and smoothed saliency, mask, base and pseudo anomaly in one row."""
    figure = Figure(figsize=(13, 2.6))
    axes = figure.subplots(1, 6)
    _draw(axes[0], view.donor, f"donor N = {donor}")
    _draw(axes[1], view.raw, "raw saliency", cmap="magma")
    _draw(axes[2], view.saliency, "smoothed saliency", cmap="magma", vmin=0, vmax=1)
    axes[2].contour(_picture(view.saliency), levels=[threshold], colors="cyan", linewidths=0.8)
    mask_title = f"mask > {threshold:.2f} ({view.mask_share:.0%})"
    _draw(axes[3], view.mask.float(), mask_title, vmin=0, vmax=1)
    _draw(axes[4], view.base, f"base A = {base}")
    _draw(axes[5], view.pseudo_anomaly, "pseudo anomaly")
    axes[5].contour(_picture(view.mask.float()), levels=[0.5], colors="red", linewidths=0.8)
    figure.tight_layout()
    return figure


def saliency_explorer(
    model: torch.nn.Module,
    pixels: torch.Tensor,
    *,
    donor: int = 0,
    base: int | None = None,
    threshold: float = 0.4,
    grid: int = 18,
    order: int = 2,
    interactive: bool = False,
):
    """Explore how SaliencyCut builds a pseudo anomaly from a donor N and a base A.

    The raw saliency of every image is computed once, so the sliders only smooth,
    threshold and paste again, and they respond quickly.

    Args:
        model: a ``TwoHeadModel``.
        pixels: uint8 (B, 3, H, W), B >= 2.
        donor: first donor index.
        base: first base index; ``(donor + 1) % B`` when None.
        threshold: first mask threshold.
        grid: first grid side.
        order: first B-spline order.
        interactive: return an :class:`Explorer` instead of a figure.
    """
    if len(pixels) < 2:
        raise ValueError(f"pass at least 2 images (a donor and a base), got {len(pixels)}.")
    base = (donor + 1) % len(pixels) if base is None else base
    raw = explore.donor_saliency(model, pixels)

    def update(donor, base, threshold, grid, order):
        view = explore.saliency_view(pixels, raw, donor, base, grid, order, threshold)
        figure = draw_saliency(view, threshold, donor, base)
        caption = (
            f"Threshold {threshold:.2f}, grid {grid} x {grid}, B-spline order {order}: the "
            f"paste replaces {view.mask_share:.1%} of donor {donor} with base {base}."
        )
        return view, figure, caption

    def controls():
        last = len(pixels) - 1
        side = pixels.shape[-1]
        return {
            "donor": _slider(ipywidgets.IntSlider, "donor N", donor, 0, last),
            "base": _slider(ipywidgets.IntSlider, "base A", base, 0, last),
            "threshold": _slider(ipywidgets.FloatSlider, "threshold", threshold, 0.0, 1.0, 0.05),
            "grid": _slider(ipywidgets.IntSlider, "grid", grid, 1, max(grid, min(side, 36))),
            "order": _slider(ipywidgets.IntSlider, "B-spline order", order, 0, 4),
        }

    defaults = {"donor": donor, "base": base, "threshold": threshold, "grid": grid, "order": order}
    return _finish(update, defaults, controls, interactive)


# --- augmentation gallery ---------------------------------------------------------------


def draw_gallery(
    results: dict[str, Any], mean: Sequence[float], std: Sequence[float], columns: int = 4
) -> Figure:
    """Draw the pseudo-anomaly rows of each augmentation, one row per augmentation.

    The pasted region of each image (``pseudo_mask``) is outlined in red.
    """
    first = next(iter(results.values()))
    rows = (first.labels == 2).nonzero().flatten()[:columns].tolist()
    if not rows:
        raise ValueError("the batch has no pseudo base (label 2); nothing to show.")
    figure = Figure(figsize=(2.0 * len(rows) + 0.8, 2.0 * len(results)))
    axes = np.atleast_2d(figure.subplots(len(results), len(rows), squeeze=False))
    for line, (name, result) in enumerate(results.items()):
        shown = explore.to_unit_range(result.images[rows], mean, std)
        for column, row in enumerate(rows):
            target = axes[line, column]
            source = int(result.donor_index[row])
            if source == row:
                title = f"row {row}, own patch"
            elif source >= 0:
                title = f"row {row}, donor {source}"
            else:
                title = f"row {row}"
            _draw(target, shown[column], title)
            mask = result.pseudo_mask[row].float()
            if mask.any():
                target.contour(_picture(mask), levels=[0.5], colors="red", linewidths=0.8)
        axes[line, 0].set_axis_on()
        axes[line, 0].set(xticks=[], yticks=[])
        axes[line, 0].set_ylabel(name)
    figure.tight_layout()
    return figure


def augmentation_gallery(
    model: torch.nn.Module,
    pixels: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    seed: int = 0,
    names: Sequence[str] = explore.AUGMENTATION_NAMES,
    interactive: bool = False,
):
    """Compare augmentations on the same batch, each with a generator seeded with ``seed``.

    Args:
        model: a ``TwoHeadModel`` (SaliencyCut needs its saliency).
        pixels: uint8 (B, 3, H, W).
        labels: labels (B,), 0 normal and 2 pseudo base; ``explore.gallery_labels`` when None.
        seed: first seed.
        names: augmentations to compare.
        interactive: return an :class:`Explorer` with a seed slider instead of a figure.
    """

    def update(seed):
        results = explore.augment_all(model, pixels, labels, seed=seed, names=names)
        figure = draw_gallery(results, model.spec.mean, model.spec.std)
        shares = ", ".join(
            f"{name} {float(result.pseudo_mask[result.labels == 2].float().mean()):.1%}"
            for name, result in results.items()
        )
        return results, figure, f"Seed {seed}. Pasted area of the pseudo anomalies: {shares}."

    def controls():
        return {"seed": _slider(ipywidgets.IntSlider, "seed", seed, 0, 99)}

    return _finish(update, {"seed": seed}, controls, interactive)


# --- model ------------------------------------------------------------------------------


def draw_blocks(pixels: torch.Tensor, view: explore.BlockView) -> Figure:
    """Draw the image with blocks b1..b4, |R|, the draw's patch scores and the eval map.

    The k x k maps have no single place in the image, because each cell mixes four
    windows. The last panel stretches the eval map over the image, as anomaly maps are
    usually shown, so read it as a coarse guide.
    """
    figure = Figure(figsize=(11, 2.9))
    axes = figure.subplots(1, 4)
    height, width = pixels.shape[-2:]
    _draw(axes[0], pixels, f"s = {view.side}, k = {view.block}, offsets {view.offsets}")
    size = view.block * view.cell_pixels
    blocks = zip(view.offsets, BLOCK_COLOURS, BLOCK_SIGNS_TEXT)
    for index, (offset, colour, sign) in enumerate(blocks):
        # shrink each box a little more than the last, so repeated offsets stay visible
        inset = 1.0 + 1.5 * index
        corner = offset * view.cell_pixels + inset
        axes[0].add_patch(
            Rectangle(
                (corner, corner),
                size - 2 * inset,
                size - 2 * inset,
                fill=False,
                edgecolor=colour,
                linewidth=1.5,
            )
        )
        label = f"{sign}b{index + 1}"
        backing = {"facecolor": "white", "alpha": 0.7, "pad": 1, "linewidth": 0}
        axes[0].text(
            corner + 2, corner + 2, label, color=colour, fontsize=8, va="top", bbox=backing
        )
    axes[0].set(xlim=(-0.5, width - 0.5), ylim=(height - 0.5, -0.5))
    _draw(axes[1], view.residual_norm, "|R| = |b4 - b3 + b2 - b1|", cmap="viridis")
    _draw(axes[2], view.patch_scores, "patch scores, this draw", cmap="viridis")
    eval_map = view.eval_patch_scores[None, None]  # (k, k) -> (1, 1, k, k)
    overlay = F.interpolate(eval_map, size=(height, width), mode="nearest")
    _draw(axes[3], pixels, f"eval map, stretched (score {view.score:.3f})")
    axes[3].imshow(_picture(overlay[0]), cmap="inferno", alpha=0.5)
    figure.tight_layout()
    return figure


def model_explorer(
    model: torch.nn.Module,
    pixels: torch.Tensor,
    *,
    image: int = 0,
    draw: int = 0,
    interactive: bool = False,
):
    """Show the anomaly head's residual blocks and patch scores for one image.

    Args:
        model: a ``TwoHeadModel``; it is put in eval mode.
        pixels: uint8 (B, 3, H, W).
        image: first image index.
        draw: first index into the head's fixed eval-mode offset draws.
        interactive: return an :class:`Explorer` instead of a figure.
    """

    def update(image, draw):
        if not 0 <= image < len(pixels):
            raise ValueError(f"image={image} is out of range; pass 0 <= image < {len(pixels)}.")
        view = explore.block_view(model, pixels[image], draw)
        caption = (
            f"Feature map {view.side} x {view.side}, blocks of {view.block} x {view.block} cells "
            f"at offsets {view.offsets}; image score {view.score:.3f}."
        )
        return view, draw_blocks(pixels[image], view), caption

    def controls():
        side = explore.block_view(model, pixels[image], 0).side
        n_draws = len(explore.eval_draws(model, side))
        return {
            "image": _slider(ipywidgets.IntSlider, "image", image, 0, len(pixels) - 1),
            "draw": _slider(ipywidgets.IntSlider, "offset draw", draw, 0, n_draws - 1),
        }

    return _finish(update, {"image": image, "draw": draw}, controls, interactive)


# --- scores -----------------------------------------------------------------------------


def _thumbnail(path: str, cache: dict[str, np.ndarray]) -> np.ndarray | None:
    if path not in cache:
        try:
            cache[path] = resize_image(load_image(path), THUMBNAIL_SIDE)
        except (OSError, ValueError):
            cache[path] = None
    return cache[path]


def draw_scores(
    rows: pd.DataFrame,
    summary: explore.ThresholdSummary,
    limit: int,
    thumbnails: dict[str, np.ndarray],
) -> Figure:
    """Draw the confusion matrix, the ROC point and the worst errors at one threshold."""
    figure = Figure(figsize=(max(8.0, 1.6 * limit), 3.2 + 3.2))
    grid = figure.add_gridspec(3, max(2, limit), height_ratios=(2.2, 1, 1))
    half = max(2, limit) // 2
    matrix_axes = figure.add_subplot(grid[0, :half])
    roc_axes = figure.add_subplot(grid[0, half:])

    counts = summary.confusion_matrix()
    values = counts.to_numpy()
    matrix_axes.imshow(values, cmap="Blues", vmin=0, vmax=max(1, values.max()))
    for (row, column), value in np.ndenumerate(values):
        colour = "white" if value > 0.6 * values.max() else "black"
        matrix_axes.text(
            column, row, str(value), ha="center", va="center", fontsize=12, color=colour
        )
    matrix_axes.set(xticks=[0, 1], yticks=[0, 1], xlabel="predicted", ylabel="true")
    matrix_axes.set_xticklabels(counts.columns)
    matrix_axes.set_yticklabels(counts.index)
    precision = "n/a" if np.isnan(summary.precision) else f"{summary.precision:.3f}"
    matrix_axes.set_title(
        f"threshold {summary.threshold:.3f}: precision {precision}, recall {summary.recall:.3f}",
        fontsize="small",
    )

    false_positive_rate, true_positive_rate, _ = roc_curve(rows["label"], rows["score"])
    roc_axes.plot(false_positive_rate, true_positive_rate, lw=1.5)
    roc_axes.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    roc_axes.plot(summary.false_positive_rate, summary.recall, "o", color="red")
    roc_axes.set(xlabel="false positive rate", ylabel="true positive rate")
    roc_axes.set(xlim=(0, 1), ylim=(0, 1.02))
    roc_axes.set_title(f"ROC (AUROC {auroc(rows['label'], rows['score']):.3f})", fontsize="small")

    false_positives, false_negatives = explore.error_examples(rows, summary.threshold, limit)
    galleries = (("false positive", false_positives), ("false negative", false_negatives))
    for line, (name, errors) in enumerate(galleries):
        for column in range(max(2, limit)):
            axes = figure.add_subplot(grid[line + 1, column])
            axes.set_axis_off()
            if column == 0 and errors.empty:
                axes.text(0.0, 0.5, f"no {name}s", ha="left", va="center", fontsize=9)
            if column >= len(errors):
                continue
            record = errors.iloc[column]
            picture = _thumbnail(str(record["path"]), thumbnails)
            if picture is None:
                axes.text(0.5, 0.5, "file not found", ha="center", va="center", fontsize=8)
            else:
                axes.imshow(picture)
            axes.set_title(f"{name}\n{record['defect_class']}, {record['score']:.3f}", fontsize=7)
    figure.tight_layout()
    return figure


def score_explorer(
    scores: pd.DataFrame | str,
    *,
    threshold: float | None = None,
    limit: int = 4,
    interactive: bool = False,
):
    """Explore one threshold on the test scores of a run.

    Args:
        scores: a ``scores.csv`` table with columns path, label, defect_class, score and
            role, or a run folder or file to read it from. Only rows with role "test"
            are used.
        threshold: first threshold; the ROC point with the largest TPR - FPR when None.
        limit: false positives and false negatives shown, the worst first.
        interactive: return an :class:`Explorer` with a threshold slider instead of a figure.
    """
    table = scores if isinstance(scores, pd.DataFrame) else explore.read_scores(scores)
    rows = explore.select_test_rows(table)
    if threshold is None:
        threshold = explore.default_threshold(rows["label"], rows["score"])
    thumbnails: dict[str, np.ndarray] = {}

    def update(threshold):
        summary = explore.threshold_summary(rows["label"], rows["score"], threshold)
        figure = draw_scores(rows, summary, limit, thumbnails)
        caption = (
            f"Flagged: {summary.true_positives + summary.false_positives} of {len(rows)} images; "
            f"{summary.false_positives} false positives, {summary.false_negatives} false negatives."
        )
        return summary, figure, caption

    def controls():
        low, high = float(rows["score"].min()), float(rows["score"].max())
        step = (high - low) / 200 or 1e-3
        start = min(max(threshold, low), high)
        return {
            "threshold": ipywidgets.FloatSlider(
                value=start,
                min=low,
                max=high,
                step=step,
                readout_format=".3f",
                description="threshold",
                continuous_update=False,
            )
        }

    return _finish(update, {"threshold": threshold}, controls, interactive)


# --- protocol ---------------------------------------------------------------------------


# Short column labels for the protocol figure, by manifest role.
ROLE_LABELS = {
    "train_normal": "normal\n(train)",
    explore.HIDDEN_ROLE: "hidden\n(train)",
    "train_anomaly": "labelled\n(train)",
    "test": "test",
    "unused": "unused",
}


def draw_protocol(matrix: pd.DataFrame) -> Figure:
    """Draw ``explore.role_matrix`` output as a grid of counts, coloured on a log scale."""
    values = matrix.to_numpy()
    shade = np.log1p(values)
    figure = Figure(figsize=(1.6 + 0.75 * values.shape[1], 1.0 + 0.45 * values.shape[0]))
    axes = figure.add_subplot()
    axes.imshow(shade, cmap="Blues", aspect="auto", vmin=0, vmax=max(1.0, shade.max()))
    for (row, column), value in np.ndenumerate(values):
        dark = shade[row, column] > 0.6 * shade.max()
        colour = "white" if dark else "black"
        text = str(value) if value else ""
        axes.text(column, row, text, ha="center", va="center", fontsize=8, color=colour)
    labels = [f"{ROLE_LABELS.get(role, role)}\n{name}" for role, name in matrix.columns]
    axes.set_xticks(range(values.shape[1]), labels, fontsize=7)
    axes.set_yticks(range(values.shape[0]), matrix.index, fontsize=8)
    axes.xaxis.tick_top()
    figure.tight_layout()
    return figure


def protocol_explorer(
    records: Sequence[ImageRecord],
    *,
    seed: int = 0,
    interactive: bool = False,
):
    """Show how many images of each class each open-set setting puts in each role.

    The static figure shows the five standard settings of ``explore.protocol_cases``.
    The interactive explorer adds one more row, ``your choice``, set by its controls.

    Args:
        records: the records of one subset, for example from ``discover``.
        seed: seed of every split.
        interactive: return an :class:`Explorer` instead of a figure.
    """
    cases = explore.protocol_cases(records)
    classes = sorted({record.defect_class for record in records if record.label == 1})

    def update(seed, setting=None, n_anomaly=None, known_class=None, contamination=0.0):
        chosen = dict(cases)
        if setting is not None:
            arguments = {"setting": setting, "n_anomaly": n_anomaly, "contamination": contamination}
            if setting == "hard":
                arguments["known_class"] = known_class
            chosen["your choice"] = arguments
        matrix = explore.role_matrix(explore.role_counts(records, chosen, seed=seed))
        return matrix, draw_protocol(matrix), f"Seed {seed}; counts of images per role and class."

    def controls():
        return {
            "seed": _slider(ipywidgets.IntSlider, "seed", seed, 0, 20),
            "setting": ipywidgets.Dropdown(
                options=["general", "hard", "anomaly_free"], value="general", description="setting"
            ),
            "n_anomaly": _slider(ipywidgets.IntSlider, "n_anomaly", 10, 0, 20),
            "known_class": ipywidgets.Dropdown(
                options=classes, value=classes[0], description="known"
            ),
            "contamination": _slider(ipywidgets.FloatSlider, "contamination", 0.0, 0.0, 0.1, 0.01),
        }

    return _finish(update, {"seed": seed}, controls, interactive)
