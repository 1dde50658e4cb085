"""Computations behind the explorers of ``sclib.widgets``, free of any widget.

Each explorer in ``sclib.widgets`` is a thin view: it reads its sliders, calls one
function here, and draws the result. Tests and notebooks call these functions directly.

- Saliency: :func:`donor_saliency` computes the raw input saliency of every image once,
  and :func:`saliency_view` smooths, thresholds and pastes for one donor and one base,
  exactly as SaliencyCut does inside a training step.
- Augmentations: :func:`augment_all` applies SaliencyCut, CutMix, CutPaste and no
  augmentation to the same batch with the same seed.
- Model: :func:`block_view` returns the four residual blocks of the anomaly head for one
  image and one offset draw, with the patch score maps.
- Scores: :func:`threshold_summary`, :func:`error_examples` and :func:`default_threshold`
  turn a ``scores.csv`` table into a confusion matrix, precision, recall, a point on the
  ROC curve and the misclassified images at one threshold.
- Protocol: :func:`role_counts` counts the images each open-set setting uses.

Shapes: pixel images are uint8 (B, 3, H, W); saliency maps and masks (B, 1, H, W).
Scores follow the package convention: higher means more anomalous.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_curve

from sclib.augment import AugmentResult, get_augmentation, input_saliency, normalize, paste
from sclib.augment.saliency import smooth_saliency
from sclib.data.images import load_image, resize_image
from sclib.data.layout import NORMAL_CLASS, ImageRecord
from sclib.data.protocol import ROLES, make_split

AUGMENTATION_NAMES = ("saliencycut", "cutmix", "cutpaste", "none")
SCORE_TABLE_COLUMNS = ("path", "label", "defect_class", "score")
# Role shown for training normals that are hidden anomalies (contamination).
HIDDEN_ROLE = "train_normal (hidden anomaly)"


def load_pixels(paths: Iterable[str | os.PathLike], size: int) -> torch.Tensor:
    """Decode and resize images to a uint8 batch (B, 3, size, size)."""
    arrays = [resize_image(load_image(path), size) for path in paths]
    if not arrays:
        raise ValueError("no image paths given; pass at least one path.")
    batch = torch.from_numpy(np.stack(arrays))
    return batch.permute(0, 3, 1, 2).contiguous()  # (B, H, W, 3) -> (B, 3, H, W)


def model_device(model: torch.nn.Module) -> torch.device:
    """Return the device of the model's first parameter (the CPU for a model without any)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def to_unit_range(
    images: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """Undo ``normalize``: float (B, 3, H, W) model inputs back to pixels in [0, 1]."""
    mean_t = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images.detach() * std_t + mean_t).clamp(0.0, 1.0)


# --- saliency ---------------------------------------------------------------------------


class SaliencyView(NamedTuple):
    """One SaliencyCut paste, with every intermediate map.

    Attributes:
        donor: uint8 (3, H, W), the normal image N whose saliency decides the region.
        base: uint8 (3, H, W), the pseudo-anomaly base A that supplies the pasted pixels.
        raw: float (1, H, W) >= 0, the donor's input saliency.
        saliency: float (1, H, W) in [0, 1], the smoothed saliency.
        mask: bool (1, H, W), ``saliency > threshold``.
        pseudo_anomaly: uint8 (3, H, W), ``mask * base + (1 - mask) * donor``.
        mask_share: fraction of the donor's pixels that the paste replaces.
    """

    donor: torch.Tensor
    base: torch.Tensor
    raw: torch.Tensor
    saliency: torch.Tensor
    mask: torch.Tensor
    pseudo_anomaly: torch.Tensor
    mask_share: float


def donor_saliency(model: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Compute the raw input saliency of every image as a normal donor (label 0).

    The images are normalised with ``model.spec``. ``input_saliency`` runs the model in
    eval mode, so each map depends on its own image only, and computing all maps here
    once gives the maps SaliencyCut computes for any choice of donors.

    Args:
        model: a ``TwoHeadModel`` (anything with ``spec.mean`` and ``spec.std``).
        pixels: uint8 (B, 3, H, W).

    Returns:
        float (B, 1, H, W) >= 0, on the CPU.
    """
    images = normalize(pixels.to(model_device(model)), model.spec.mean, model.spec.std)
    labels = torch.zeros(len(images), dtype=torch.long, device=images.device)
    return input_saliency(model, images, labels).cpu()


def saliency_view(
    pixels: torch.Tensor,
    raw: torch.Tensor,
    donor: int,
    base: int,
    grid: int = 18,
    order: int = 2,
    threshold: float = 0.4,
) -> SaliencyView:
    """Smooth the donor's saliency, threshold it, and paste the base into it.

    Args:
        pixels: uint8 (B, 3, H, W).
        raw: float (B, 1, H, W), from :func:`donor_saliency`.
        donor: batch index of the normal donor N.
        base: batch index of the pseudo-anomaly base A.
        grid: side of the coarse saliency grid.
        order: B-spline order of the smoothing.
        threshold: saliency level in [0, 1] above which a donor pixel is replaced.
    """
    for name, index in (("donor", donor), ("base", base)):
        if not 0 <= index < len(pixels):
            raise ValueError(f"{name}={index} is out of range; pass 0 <= {name} < {len(pixels)}.")
    saliency = smooth_saliency(raw[donor : donor + 1], grid=grid, order=order)[0]
    mask = saliency > threshold
    pseudo = paste(pixels[base : base + 1], pixels[donor : donor + 1], mask[None])[0]
    return SaliencyView(
        donor=pixels[donor],
        base=pixels[base],
        raw=raw[donor],
        saliency=saliency,
        mask=mask,
        pseudo_anomaly=pseudo,
        mask_share=float(mask.float().mean()),
    )


# --- augmentation gallery ---------------------------------------------------------------


def gallery_labels(batch_size: int) -> torch.Tensor:
    """Return labels (B,) long: the first half normal (0), the rest pseudo bases (2)."""
    if batch_size < 2:
        raise ValueError(f"the gallery needs at least 2 images, got {batch_size}.")
    labels = torch.zeros(batch_size, dtype=torch.long)
    labels[batch_size // 2 :] = 2
    return labels


def augment_all(
    model: torch.nn.Module,
    pixels: torch.Tensor,
    labels: torch.Tensor | None = None,
    seed: int = 0,
    names: Sequence[str] = AUGMENTATION_NAMES,
) -> dict[str, AugmentResult]:
    """Apply each augmentation to the same batch, each with a generator seeded with ``seed``.

    Args:
        model: the two-head model; SaliencyCut needs it for the saliency, and its spec
            normalises the pixels.
        pixels: uint8 (B, 3, H, W).
        labels: labels (B,) long, 0 normal and 2 pseudo base; ``gallery_labels`` when None.
        seed: seed of every augmentation's ``torch.Generator``.
        names: augmentation names, see ``sclib.augment.AUGMENTATIONS``.

    Returns:
        ``{name: AugmentResult}`` in the order of ``names``, on the CPU; ``images`` are
        normalised model inputs (use :func:`to_unit_range` to display them).
    """
    labels = gallery_labels(len(pixels)) if labels is None else labels
    images = normalize(pixels.to(model_device(model)), model.spec.mean, model.spec.std)
    labels = labels.to(images.device)
    results = {}
    for name in names:
        augmentation = get_augmentation(name)
        generator = torch.Generator().manual_seed(seed)
        result = augmentation(images, labels, model, generator)
        results[name] = AugmentResult(*(_to_cpu(field) for field in result))
    return results


def _to_cpu(value):
    return value.detach().cpu() if isinstance(value, torch.Tensor) else value


# --- model: residual blocks and patch scores --------------------------------------------


class BlockView(NamedTuple):
    """The anomaly head's four blocks for one image and one offset draw, at full scale.

    Attributes:
        side: feature-map side s.
        block: block side k = s // 2 + 1, in feature cells.
        offsets: the diagonal offsets (i1, i2, i3, i4) of blocks b1..b4.
        cell_pixels: image pixels per feature cell (image side / s).
        residual_norm: float (k, k), root mean square over channels of R = b4 - b3 + b2 - b1.
        patch_scores: float (k, k) >= 0, the head's cell scores for this draw.
        eval_patch_scores: float (k, k) >= 0, the eval-mode map: the mean over the fixed
            draws, as ``TwoHeadOutput.patch_scores`` returns it.
        score: the image score ``anomaly_score - normal_score`` in eval mode.
    """

    side: int
    block: int
    offsets: tuple[int, ...]
    cell_pixels: float
    residual_norm: torch.Tensor
    patch_scores: torch.Tensor
    eval_patch_scores: torch.Tensor
    score: float


def eval_draws(model: torch.nn.Module, side: int) -> list[tuple[int, ...]]:
    """Return the distinct offset tuples the anomaly head averages over in eval mode."""
    return [offsets for offsets, _ in model.anomaly_head.eval_offsets(side)]


def block_view(model: torch.nn.Module, pixels: torch.Tensor, draw: int = 0) -> BlockView:
    """Compute the residual blocks and patch scores of one image.

    Args:
        model: a ``TwoHeadModel``; it is put in eval mode.
        pixels: uint8 (3, H, W) or (1, 3, H, W).
        draw: index into ``eval_draws(model, side)``.
    """
    if pixels.dim() == 3:
        pixels = pixels[None]  # (3, H, W) -> (1, 3, H, W)
    model.eval()
    images = normalize(pixels.to(model_device(model)), model.spec.mean, model.spec.std)
    with torch.inference_mode():
        features = model.backbone(images)
        side = min(features.shape[-2:])
        draws = eval_draws(model, side)
        if not 0 <= draw < len(draws):
            raise ValueError(f"draw={draw} is out of range; pass 0 <= draw < {len(draws)}.")
        offsets = draws[draw]
        residual = model.anomaly_head.residual(features, offsets)  # (1, C, k, k)
        patch_scores = model.anomaly_head.scorer(residual).abs()  # (1, C, k, k) -> (1, 1, k, k)
        output = model(images)
    return BlockView(
        side=int(side),
        block=int(residual.shape[-1]),
        offsets=tuple(offsets),
        cell_pixels=images.shape[-1] / features.shape[-1],
        residual_norm=residual[0].float().square().mean(dim=0).sqrt().cpu(),
        patch_scores=patch_scores[0, 0].float().cpu(),
        eval_patch_scores=output.patch_scores[0, 0].float().cpu(),
        score=float(output.score[0]),
    )


# --- scores: threshold, confusion matrix, errors ----------------------------------------


class ThresholdSummary(NamedTuple):
    """Detection at one threshold: an image is flagged when ``score >= threshold``.

    Attributes:
        threshold: the score threshold.
        true_positives, false_positives, true_negatives, false_negatives: image counts.
        precision: flagged anomalies / flagged images; NaN when no image is flagged.
        recall: flagged anomalies / anomalies, the true positive rate.
        false_positive_rate: flagged normal images / normal images.
    """

    threshold: float
    true_positives: int
    false_positives: int
    true_negatives: int
    false_negatives: int
    precision: float
    recall: float
    false_positive_rate: float

    def confusion_matrix(self) -> pd.DataFrame:
        """Return the 2 x 2 counts: rows are true labels, columns predictions."""
        return pd.DataFrame(
            [
                [self.true_negatives, self.false_positives],
                [self.false_negatives, self.true_positives],
            ],
            index=pd.Index(["normal", "anomaly"], name="true"),
            columns=pd.Index(["normal", "anomaly"], name="predicted"),
        )


def select_test_rows(scores: pd.DataFrame) -> pd.DataFrame:
    """Return the test rows of a ``scores.csv`` table (all rows when it has no ``role``).

    Raises:
        ValueError: when a column of ``SCORE_TABLE_COLUMNS`` is missing, or when no test
            row has both labels.
    """
    missing = [column for column in SCORE_TABLE_COLUMNS if column not in scores.columns]
    if missing:
        raise ValueError(
            f"the score table lacks columns {missing}; pass the scores.csv of a run folder "
            f"(columns {list(SCORE_TABLE_COLUMNS)} and role)."
        )
    rows = scores[scores["role"] == "test"] if "role" in scores.columns else scores
    labels = set(rows["label"].tolist())
    if labels != {0, 1}:
        raise ValueError(
            f"the test rows have labels {sorted(labels)}; a threshold needs normal (0) and "
            "anomalous (1) test images."
        )
    return rows.reset_index(drop=True)


def read_scores(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``scores.csv`` from a run folder or from the file itself."""
    path = Path(path)
    if path.is_dir():
        path = path / "scores.csv"
    if not path.is_file():
        raise FileNotFoundError(
            f"score file {path} not found; pass a run folder written by notebook 04 or "
            "sclib.experiment.run_experiment."
        )
    return pd.read_csv(path, keep_default_na=False)


def threshold_summary(labels, scores, threshold: float) -> ThresholdSummary:
    """Count the images flagged at ``threshold`` (``score >= threshold``) by true label.

    Args:
        labels: (N,) 0 normal, 1 anomaly.
        scores: (N,) higher = more anomalous.
        threshold: score threshold.
    """
    labels = np.asarray(labels).astype(int).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    flagged = scores >= threshold
    true_positives = int(np.sum(flagged & (labels == 1)))
    false_positives = int(np.sum(flagged & (labels == 0)))
    false_negatives = int(np.sum(~flagged & (labels == 1)))
    true_negatives = int(np.sum(~flagged & (labels == 0)))
    n_flagged = true_positives + false_positives
    return ThresholdSummary(
        threshold=float(threshold),
        true_positives=true_positives,
        false_positives=false_positives,
        true_negatives=true_negatives,
        false_negatives=false_negatives,
        precision=true_positives / n_flagged if n_flagged else float("nan"),
        recall=true_positives / max(1, true_positives + false_negatives),
        false_positive_rate=false_positives / max(1, false_positives + true_negatives),
    )


def default_threshold(labels, scores) -> float:
    """Return the threshold of the ROC point with the largest TPR - FPR (Youden's J).

    Among equal J, the highest threshold wins, so fewer images are flagged.
    """
    false_positive_rate, true_positive_rate, thresholds = roc_curve(labels, scores)
    youden = true_positive_rate - false_positive_rate
    finite = np.isfinite(thresholds)
    best = np.flatnonzero(finite & (youden == youden[finite].max()))[0]
    return float(thresholds[best])


def error_examples(
    scores: pd.DataFrame, threshold: float, limit: int = 4
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return the worst false positives and false negatives at ``threshold``.

    Args:
        scores: rows with columns ``label`` and ``score`` (and any others).
        threshold: images with ``score >= threshold`` are flagged as anomalies.
        limit: maximum rows of each table.

    Returns:
        ``(false_positives, false_negatives)``: flagged normal images by decreasing score,
        and missed anomalies by increasing score, so the worst mistakes come first.
    """
    flagged = scores["score"] >= threshold
    false_positives = scores[flagged & (scores["label"] == 0)]
    false_negatives = scores[~flagged & (scores["label"] == 1)]
    return (
        false_positives.sort_values("score", ascending=False, kind="stable").head(limit),
        false_negatives.sort_values("score", ascending=True, kind="stable").head(limit),
    )


# --- protocol: which images each setting uses -------------------------------------------


def protocol_cases(records: Sequence[ImageRecord]) -> dict[str, dict[str, Any]]:
    """Return the ``make_split`` arguments of the five settings, named for display.

    The shot count is 10, or fewer when the first defect class (sorted) has fewer
    anomalies. The hard setting takes that class as the known class, and the
    contamination case hides anomalies amounting to 2% of the training normals.
    """
    classes = sorted({record.defect_class for record in records if record.label == 1})
    if not classes:
        raise ValueError("the records contain no anomaly; the settings need defect classes.")
    first_class = [record for record in records if record.defect_class == classes[0]]
    n_anomaly = min(10, len(first_class))
    return {
        f"general, {n_anomaly}-shot": {"setting": "general", "n_anomaly": n_anomaly},
        "general, 1-shot": {"setting": "general", "n_anomaly": 1},
        f"hard, known {classes[0]}": {
            "setting": "hard",
            "n_anomaly": n_anomaly,
            "known_class": classes[0],
        },
        "anomaly-free": {"setting": "anomaly_free", "n_anomaly": 0},
        "contamination 2%": {"setting": "general", "n_anomaly": n_anomaly, "contamination": 0.02},
    }


def role_counts(
    records: Sequence[ImageRecord],
    cases: dict[str, dict[str, Any]] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Count the images of each role and class under each setting.

    Args:
        records: the records of one subset, for example from ``discover``.
        cases: ``{name: make_split keyword arguments}``; ``protocol_cases(records)`` when None.
        seed: seed of every split.

    Returns:
        One row per (case, role, defect_class) with a column ``count``. Roles appear in the
        order of ``sclib.data.protocol.ROLES``, normal images before the defect classes
        within a role, and training normals that are hidden
        anomalies get the role ``train_normal (hidden anomaly)``.
    """
    cases = protocol_cases(records) if cases is None else cases
    rows = []
    for name, arguments in cases.items():
        manifest = make_split(records, seed=seed, **arguments).manifest
        hidden = manifest["contaminated"].astype(bool)
        roles = manifest["role"].where(~hidden, HIDDEN_ROLE)
        manifest = manifest.assign(role=roles)
        counts = manifest.groupby(["role", "defect_class"], sort=False).size()
        for (role, defect_class), count in counts.items():
            rows.append(
                {"case": name, "role": role, "defect_class": defect_class, "count": int(count)}
            )
    table = pd.DataFrame(rows, columns=["case", "role", "defect_class", "count"])
    role_order = {role: position for position, role in enumerate(_display_roles())}
    table["order"] = table["role"].map(role_order)
    case_order = {name: position for position, name in enumerate(cases)}
    table["case_order"] = table["case"].map(case_order)
    table["anomalous"] = table["defect_class"] != NORMAL_CLASS
    table = table.sort_values(["case_order", "order", "anomalous", "defect_class"], kind="stable")
    return table.drop(columns=["order", "case_order", "anomalous"]).reset_index(drop=True)


def _display_roles() -> list[str]:
    return [ROLES[0], HIDDEN_ROLE, *ROLES[1:]]


def role_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """Pivot ``role_counts`` output: one row per case, one column per (role, class).

    Columns follow the role order of ``role_counts`` and, within a role, normal images
    first, then the defect classes sorted by name. Missing combinations count 0.
    """
    role_order = {role: position for position, role in enumerate(_display_roles())}
    pairs = set(zip(table["role"], table["defect_class"]))
    columns = sorted(
        pairs, key=lambda pair: (role_order[pair[0]], pair[1] != NORMAL_CLASS, pair[1])
    )
    matrix = table.pivot_table(
        index="case", columns=["role", "defect_class"], values="count", aggfunc="sum", fill_value=0
    )
    cases = list(dict.fromkeys(table["case"]))
    return matrix.reindex(index=cases, columns=pd.MultiIndex.from_tuples(columns), fill_value=0)
