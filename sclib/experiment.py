"""One experiment from a data folder to a run folder: split, cache, train, score, report.

:func:`run_experiment` does everything in one call. Notebooks can call its steps one at
a time instead, and look at the result of each:

1. :func:`prepare_data`: discover the images, draw the open-set split, subsample it when
   ``max_train_normal`` or ``max_test`` is set, and decode the images into uint8 caches.
2. :func:`fit`: build the two-head model and train it.
3. :func:`evaluate_run`: score the test images and compute AUROC and AUPR overall, per
   class, and for seen and unseen classes.
4. :func:`write_outputs`: write everything into the run folder.

A run folder contains ``config.json`` (resolved config, library versions, data folder,
timing), ``manifest.csv`` (the role of every image), ``history.csv`` (one row per
training step), ``metrics.json``, ``scores.csv`` (one row per test image),
``model.pt`` (checkpoint), and the figures ``roc.png``, ``pr.png``, ``score_hist.png``
and ``history.png``. Every file is written atomically, and nothing is ever written
inside the data folder.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sclib import viz
from sclib.baselines.detectors import fit_detector
from sclib.config import Config
from sclib.data.images import build_image_cache
from sclib.data.layout import ImageRecord, discover
from sclib.data.protocol import Split, make_split
from sclib.metrics import evaluate
from sclib.models.two_head import TwoHeadModel
from sclib.paths import runs_dir
from sclib.runs import (
    atomic_write_json,
    library_versions,
    new_run_dir,
    save_figure_atomic,
    write_csv_atomic,
)
from sclib.train import History, save_checkpoint, score_images
from sclib.utils import autocast_dtype, resolve_device

logger = logging.getLogger(__name__)

SCORE_COLUMNS = ("path", "label", "defect_class", "role", "score", "normal_score", "anomaly_score")
# Written last, so its presence marks a finished run (the batch runner relies on it).
METRICS_FILE = "metrics.json"


@dataclass
class PreparedData:
    """Split and decoded images of one run.

    Attributes:
        data_root: the subset folder that contains ``train/`` and ``test/``.
        split: the open-set split as drawn by ``make_split``, before subsampling.
        manifest: the split manifest (path, label, defect_class, role, contaminated)
            after subsampling: images left out by ``max_train_normal`` or ``max_test``
            have role ``"unused"``.
        train_records: training images, the unlabelled normals first, then the labelled
            anomalies.
        train_images: uint8 (N_train, 3, S, S) in the order of ``train_records``.
        train_labels: long (N_train,): 0 for every unlabelled image (including hidden
            anomalies under contamination), 1 for labelled anomalies.
        test_records: test images, sorted by path.
        test_images: uint8 (N_test, 3, S, S) in the order of ``test_records``.
        seen_classes: defect classes of the labelled anomalies.
        validation_records: unlabelled training normals held out of training
            (``config.validation_normal`` of them), sorted by path; role "validation".
        validation_images: uint8 (N_validation, 3, S, S), or None without validation.
    """

    data_root: Path
    split: Split
    manifest: pd.DataFrame
    train_records: list[ImageRecord]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_records: list[ImageRecord]
    test_images: torch.Tensor
    seen_classes: list[str]
    validation_records: list[ImageRecord] = field(default_factory=list)
    validation_images: torch.Tensor | None = None

    @property
    def test_labels(self) -> np.ndarray:
        """Test labels (N_test,): 0 normal, 1 anomaly."""
        return np.array([record.label for record in self.test_records], dtype=np.int64)

    @property
    def test_classes(self) -> list[str]:
        """Defect class of each test image; ``"good"`` for normal images."""
        return [record.defect_class for record in self.test_records]


@dataclass
class RunResult:
    """Everything one run produced.

    Attributes:
        run_dir: the run folder, or None when nothing was written.
        config: the resolved config.
        data: split and image caches.
        model: the trained model, on the training device.
        history: one row per training step, see ``sclib.train.HISTORY_COLUMNS``.
        scores: one row per test image with the columns of ``SCORE_COLUMNS``.
        metrics: output of ``sclib.metrics.evaluate``.
        timing: seconds per phase: ``prepare_s``, ``train_s``, ``score_s``, and
            ``total_s`` from the start to the end of scoring (writing files excluded).
        validation_scores: scores of the held-out normals and labelled anomalies (see
            ``score_validation``), or None; written to ``validation_scores.csv``.
    """

    run_dir: Path | None
    config: Config
    data: PreparedData
    model: TwoHeadModel
    history: History
    scores: pd.DataFrame
    metrics: dict[str, Any]
    timing: dict[str, float] = field(default_factory=dict)
    validation_scores: pd.DataFrame | None = None


def prepare_data(
    config: Config,
    data_root: str | Path,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> PreparedData:
    """Draw the split of ``data_root`` and decode its training and test images.

    The split follows ``config.setting``, ``n_anomaly``, ``known_class``,
    ``contamination`` and ``seed``. Then ``config.max_train_normal`` keeps a random
    subset of the unlabelled training images, and ``config.max_test`` keeps a random
    subset of the test set, stratified by defect class so that every class, normal
    included, keeps at least one image when the size allows. Both subsets come from a
    ``numpy.random.default_rng`` seeded with ``config.seed`` and are sorted by path.

    Args:
        config: the run configuration.
        data_root: the subset folder that contains ``train/`` and ``test/``.
        cache_dir: folder for the decoded-image cache; None uses ``$SCLIB_CACHE_DIR``
            or ``~/.cache/sclib``. It must lie outside ``data_root``.
        progress: show progress bars while decoding.

    Raises:
        FileNotFoundError: when ``data_root`` does not exist.
        ValueError: when the split leaves the test set without normal images or without
            anomalies, or for the errors of ``make_split``.
    """
    data_root = Path(data_root).expanduser().resolve()
    records = discover(data_root)
    split = make_split(
        records,
        setting=config.setting,
        n_anomaly=config.n_anomaly,
        known_class=config.known_class,
        seed=config.seed,
        contamination=config.contamination,
    )
    rng = np.random.default_rng(config.seed)
    train_normal = _random_subset(split.train_normal, config.max_train_normal, rng)
    test_records = _stratified_subset(split.test, config.max_test, rng)
    _check_test_set(test_records, config)
    train_normal, validation_records = _hold_out(train_normal, config.validation_normal, rng)

    manifest = split.manifest.copy()
    kept = {str(record.path) for record in train_normal + test_records}
    held_out = {str(record.path) for record in validation_records}
    left_out = manifest["role"].isin(["train_normal", "test"]) & ~manifest["path"].isin(kept)
    manifest.loc[left_out, "role"] = "unused"
    manifest.loc[manifest["path"].isin(held_out), "role"] = "validation"

    train_records = train_normal + list(split.train_anomaly)
    train_labels = torch.tensor(
        [0] * len(train_normal) + [1] * len(split.train_anomaly), dtype=torch.long
    )
    logger.info(
        "split %s: %d unlabelled training images, %d labelled anomalies %s, %d test images "
        "(%d anomalies)",
        config.setting,
        len(train_normal),
        len(split.train_anomaly),
        split.seen_classes,
        len(test_records),
        sum(record.label for record in test_records),
    )

    train_cache = build_image_cache(
        [record.path for record in train_records], config.image_size, cache_dir, progress=progress
    )
    test_cache = build_image_cache(
        [record.path for record in test_records], config.image_size, cache_dir, progress=progress
    )
    validation_images = None
    if validation_records:
        validation_images = build_image_cache(
            [record.path for record in validation_records], config.image_size, cache_dir
        ).images
    return PreparedData(
        data_root=data_root,
        split=split,
        manifest=manifest,
        train_records=train_records,
        train_images=train_cache.images,
        train_labels=train_labels,
        test_records=test_records,
        test_images=test_cache.images,
        seen_classes=list(split.seen_classes),
        validation_records=validation_records,
        validation_images=validation_images,
    )


def _hold_out(
    records: list[ImageRecord], count: int, rng: np.random.Generator
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Split ``records`` into (kept, held out) with ``count`` held out at random."""
    if count == 0:
        return records, []
    if count >= len(records):
        raise ValueError(
            f"validation_normal={count} would hold out all {len(records)} unlabelled training "
            "images; use a smaller validation_normal."
        )
    held = set(rng.choice(len(records), size=count, replace=False).tolist())
    kept = [record for index, record in enumerate(records) if index not in held]
    held_out = [record for index, record in enumerate(records) if index in held]
    return kept, held_out


def _random_subset(
    records: list[ImageRecord], size: int | None, rng: np.random.Generator
) -> list[ImageRecord]:
    records = sorted(records, key=lambda record: str(record.path))
    if size is None or size >= len(records):
        return records
    keep = np.sort(rng.choice(len(records), size=size, replace=False))
    return [records[index] for index in keep]


def _stratified_subset(
    records: list[ImageRecord], size: int | None, rng: np.random.Generator
) -> list[ImageRecord]:
    """Keep ``size`` records with each defect class in proportion, at least one each."""
    records = sorted(records, key=lambda record: str(record.path))
    if size is None or size >= len(records):
        return records
    groups: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault(record.defect_class, []).append(index)
    names = sorted(groups)

    # Largest-remainder allocation of the quota, then one image for every empty class,
    # taken from the class with the largest quota.
    exact = np.array([size * len(groups[name]) / len(records) for name in names])
    quota = np.floor(exact).astype(int)
    for position in np.argsort(-(exact - quota), kind="stable")[: size - quota.sum()]:
        quota[position] += 1
    for position in range(len(names)):
        if quota[position] == 0 and quota.max() > 1:
            quota[np.argmax(quota)] -= 1
            quota[position] += 1

    keep: list[int] = []
    for name, count in zip(names, quota):
        members = groups[name]
        keep.extend(np.asarray(members)[rng.choice(len(members), size=count, replace=False)])
    return [records[index] for index in sorted(keep)]


def _check_test_set(test_records: list[ImageRecord], config: Config) -> None:
    n_anomaly = sum(record.label == 1 for record in test_records)
    n_normal = len(test_records) - n_anomaly
    if n_normal == 0 or n_anomaly == 0:
        raise ValueError(
            f"the test set has {n_normal} normal images and {n_anomaly} anomalies after the "
            f"split (setting={config.setting!r}, n_anomaly={config.n_anomaly}, "
            f"max_test={config.max_test}); AUROC needs both. Use fewer labelled anomalies, "
            "another setting, or a larger max_test."
        )


def fit(
    config: Config,
    data: PreparedData,
    progress: bool = True,
    callback=None,
) -> tuple[TwoHeadModel, History]:
    """Build the detector of ``config`` and train (or fit) it on ``data``.

    ``config.method`` selects the two-head model, the DevNet one-head model or the
    training-free PatchKNN, and ``config.scoring="knn_ensemble"`` adds a PatchKNN to the
    two-head model; see ``sclib.baselines.detectors.fit_detector``. The weights are
    initialised from ``config.seed`` without touching torch's global random state, so
    the same config and data give the same model on the CPU.

    Returns:
        ``(model, history)``: the trained model on the training device and the
        per-step history (no rows for PatchKNN, which does not train).
    """
    return fit_detector(
        config, data.train_images, data.train_labels, progress=progress, callback=callback
    )


def evaluate_run(
    model: TwoHeadModel, data: PreparedData, config: Config
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Score the test images and compute the metrics.

    Returns:
        ``(scores, metrics)``: a DataFrame with one row per test image and the columns of
        ``SCORE_COLUMNS`` (higher score = more anomalous), and the dict of
        ``sclib.metrics.evaluate``.
    """
    output = score_images(
        model,
        data.test_images,
        batch_size=config.eval_batch_size,
        device=config.device,
        precision=config.precision,
        channels_last=config.channels_last,
    )
    scores = pd.DataFrame(
        {
            "path": [str(record.path) for record in data.test_records],
            "label": data.test_labels,
            "defect_class": data.test_classes,
            "role": "test",
            "score": output.score.numpy(),
            "normal_score": output.normal_score.numpy(),
            "anomaly_score": output.anomaly_score.numpy(),
        },
        columns=list(SCORE_COLUMNS),
    )
    metrics = evaluate(
        scores["score"].to_numpy(), data.test_labels, data.test_classes, data.seen_classes
    )
    overall = metrics["overall"]
    logger.info(
        "test AUROC %.4f, AUPR %.4f (%d normal, %d anomalous images)",
        overall["auroc"],
        overall["aupr"],
        overall["n_normal"],
        overall["n_anomaly"],
    )
    return scores, metrics


def score_validation(model: TwoHeadModel, data: PreparedData, config: Config) -> pd.DataFrame | None:
    """Score the held-out normals and the labelled anomalies for calibration.

    The anomaly rows are the labelled training anomalies, the only anomalies outside the
    test set, so they were seen in training; the normal rows were not.

    Returns:
        A DataFrame with the columns of ``SCORE_COLUMNS`` and role "validation", or None
        when the run holds out no normal image.
    """
    if not data.validation_records:
        return None
    anomalous = data.train_labels == 1
    records = data.validation_records + [
        record for record, keep in zip(data.train_records, anomalous.tolist()) if keep
    ]
    images = torch.cat([data.validation_images, data.train_images[anomalous]])
    output = score_images(
        model,
        images,
        batch_size=config.eval_batch_size,
        device=config.device,
        precision=config.precision,
        channels_last=config.channels_last,
    )
    return pd.DataFrame(
        {
            "path": [str(record.path) for record in records],
            "label": [0] * len(data.validation_records) + [1] * int(anomalous.sum()),
            "defect_class": [record.defect_class for record in records],
            "role": "validation",
            "score": output.score.numpy(),
            "normal_score": output.normal_score.numpy(),
            "anomaly_score": output.anomaly_score.numpy(),
        },
        columns=list(SCORE_COLUMNS),
    )


def write_outputs(result: RunResult, run_dir: str | Path | None = None) -> Path:
    """Write every file of a run into its run folder and return the folder.

    ``metrics.json`` is written last, so a folder that contains it is complete.

    Args:
        result: the run to write.
        run_dir: target folder; ``result.run_dir`` when None. It must exist.
    """
    run_dir = run_dir if run_dir is not None else result.run_dir
    if run_dir is None or not Path(run_dir).is_dir():
        raise FileNotFoundError(
            f"run folder {run_dir} does not exist; create one with sclib.runs.new_run_dir."
        )
    run_dir = Path(run_dir)
    _check_outside_data(run_dir, result.data.data_root)
    if (run_dir / METRICS_FILE).exists():
        raise ValueError(
            f"run folder {run_dir} already contains the {METRICS_FILE} of a finished run, "
            "which must not be overwritten; write into a new folder from "
            "sclib.runs.new_run_dir."
        )

    write_csv_atomic(result.data.manifest, run_dir / "manifest.csv")
    if result.validation_scores is not None:
        write_csv_atomic(result.validation_scores, run_dir / "validation_scores.csv")
    write_csv_atomic(result.history, run_dir / "history.csv")
    write_csv_atomic(result.scores, run_dir / "scores.csv")
    save_checkpoint(run_dir / "model.pt", result.model, result.config)

    labels = result.scores["label"].to_numpy()
    scores = result.scores["score"].to_numpy()
    classes = result.scores["defect_class"].tolist()
    figures = {
        "roc.png": viz.plot_roc(labels, scores, classes),
        "pr.png": viz.plot_pr(labels, scores, classes),
        "score_hist.png": viz.plot_score_histogram(labels, scores, classes),
    }
    if len(result.history) > 0:  # PatchKNN has no training history
        figures["history.png"] = viz.plot_history(result.history)
    for name, figure in figures.items():
        save_figure_atomic(figure, run_dir / name)

    _write_run_config(run_dir, result.config, result.data.data_root, result.timing, "finished")
    atomic_write_json(run_dir / METRICS_FILE, result.metrics)
    logger.info("run written to %s", run_dir)
    return run_dir


def run_experiment(
    config: Config,
    data_root: str | Path,
    run_dir: str | Path | None = None,
    *,
    run_parent: str | Path | None = None,
    name: str | None = None,
    progress: bool = True,
    cache_dir: str | Path | None = None,
) -> RunResult:
    """Split, cache, train, score and evaluate, and write the run folder.

    Args:
        config: the run configuration, for example ``get_profile("quick")``.
        data_root: the subset folder that contains ``train/`` and ``test/``.
        run_dir: an existing or new folder to write into, such as the folder papermill
            passes to a notebook. It must not contain a finished run (``metrics.json``).
            The files of an unfinished run there are replaced, so a failed run can be
            retried in its folder. None creates a new folder under ``run_parent``.
        run_parent: parent of the new run folder when ``run_dir`` is None; None uses
            ``$SCLIB_RUNS_DIR`` or ``<project>/runs``.
        name: run folder prefix; the name of ``data_root`` when None.
        progress: show progress bars.
        cache_dir: decoded-image cache folder, see :func:`prepare_data`.

    Returns:
        A :class:`RunResult`; ``result.run_dir`` is the folder written.

    Raises:
        ValueError: when the run folder lies inside ``data_root`` or already contains a
            finished run.
    """
    started = time.perf_counter()
    data_root = Path(data_root).expanduser().resolve()
    if not data_root.is_dir():
        raise FileNotFoundError(
            f"data folder {data_root} does not exist; pass the subset folder that "
            "contains train/ and test/."
        )
    run_dir = _open_run_dir(data_root, run_parent, name, run_dir)
    _write_run_config(run_dir, config, data_root, {}, "running")

    data = prepare_data(config, data_root, cache_dir=cache_dir, progress=progress)
    write_csv_atomic(data.manifest, run_dir / "manifest.csv")
    prepared = time.perf_counter()

    model, history = fit(config, data, progress=progress)
    trained = time.perf_counter()

    scores, metrics = evaluate_run(model, data, config)
    scored = time.perf_counter()

    timing = {
        "prepare_s": prepared - started,
        "train_s": trained - prepared,
        "score_s": scored - trained,
        "total_s": scored - started,
    }
    validation_scores = score_validation(model, data, config)
    result = RunResult(
        run_dir, config, data, model, history, scores, metrics, timing, validation_scores
    )
    write_outputs(result)
    return result


def _open_run_dir(
    data_root: Path,
    run_parent: str | Path | None,
    name: str | None,
    run_dir: str | Path | None,
) -> Path:
    if run_dir is None:
        parent = Path(run_parent).expanduser() if run_parent is not None else runs_dir()
        _check_outside_data(parent, data_root)
        return new_run_dir(parent, name or data_root.name)

    run_dir = Path(run_dir).expanduser()
    _check_outside_data(run_dir, data_root)
    if (run_dir / METRICS_FILE).exists():
        raise ValueError(
            f"run folder {run_dir} already contains the {METRICS_FILE} of a finished run; "
            "pass run_dir=None to get a new folder, or delete that file to run again."
        )
    if (run_dir / "config.json").exists():
        logger.warning("replacing the files of an unfinished run in %s", run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _check_outside_data(folder: Path, data_root: Path) -> None:
    folder = Path(folder).expanduser().resolve()
    if folder == data_root or data_root in folder.parents:
        raise ValueError(
            f"run folder {folder} is inside the data folder {data_root}; runs must not "
            "write into a data folder. Choose a run folder elsewhere."
        )


def _write_run_config(
    run_dir: Path, config: Config, data_root: Path, timing: dict[str, float], status: str
) -> None:
    device = resolve_device(config.device)
    dtype = autocast_dtype(device, config.precision)
    atomic_write_json(
        run_dir / "config.json",
        {
            "config": config.to_dict(),
            "status": status,
            "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "data_root": str(data_root),
            "run_dir": str(run_dir),
            "device": str(device),
            "autocast_dtype": str(dtype) if dtype is not None else "float32 (no autocast)",
            "timing": timing,
            "library_versions": library_versions(),
        },
    )
