"""ELPV solar-cell images in the MVTec AD layout, built offline from the ``elpv-dataset`` package.

The ``elpv-dataset`` package (Deitsch et al., version 1.0.0.post1) ships 2624
electroluminescence images of solar cells as 300x300 grey PNG files. Its ``labels.csv``
has three whitespace-separated columns: the image path, the defect probability (0, 1/3,
2/3 or 1) and the cell type (``mono`` or ``poly``). The anomaly-detection protocol of DRA
(Ding et al., CVPR 2022) uses:

- normal: probability 0 (1508 cells); 25% go to test with scikit-learn
  ``train_test_split(test_size=0.25, random_state=42)`` over the normals in the order of
  ``labels.csv``, giving 1131 train and 377 test normals;
- anomaly: probability 1, in two defect classes by cell type, ``mono`` (313) and ``poly``
  (402), all in the test set;
- probability 1/3 or 2/3: dropped.

``build_elpv`` writes ``ROOT/elpv/{train/good, test/good, test/mono, test/poly}``.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.model_selection import train_test_split
from tqdm.auto import tqdm

from sclib.paths import resolve_path

logger = logging.getLogger(__name__)

SUBSET = "elpv"
MARKER_NAME = ".sclib_complete.json"
_TEMP_PREFIX = ".elpv-build-"
_PROTOCOL = (
    "normal=p0 (25% test, train_test_split random_state=42); anomaly=p1 by type; p1/3, p2/3 dropped"
)
_CLASS_FOLDERS = {"train/good", "test/good", "test/mono", "test/poly"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def default_labels_path() -> Path:
    """Return ``labels.csv`` of the installed ``elpv-dataset`` package."""
    return Path(str(importlib.resources.files("elpv_dataset") / "data" / "labels.csv"))


def read_elpv_labels(labels_path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Read ``labels.csv`` into columns source_path, probability and cell_type, in file order.

    Raises:
        FileNotFoundError: the labels file is missing (``elpv-dataset`` not installed).
        ValueError: a probability or cell type is outside the known values.
    """
    path = Path(labels_path) if labels_path is not None else default_labels_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"ELPV labels file not found: {path}. Install the package with "
            "`pip install elpv-dataset` or pass labels_path."
        )
    table = pd.read_csv(
        path, sep=r"\s+", header=None, names=["source_path", "probability", "cell_type"]
    )
    known = np.isclose(table["probability"].to_numpy()[:, None], [0, 1 / 3, 2 / 3, 1]).any(axis=1)
    if not known.all():
        bad = table.loc[~known, "probability"].unique().tolist()
        raise ValueError(
            f"{path} has invalid defect probabilities {bad}. Expected 0, 1/3, 2/3 or 1."
        )
    bad_types = sorted(set(table["cell_type"]) - {"mono", "poly"})
    if bad_types:
        raise ValueError(f"{path} has invalid cell types {bad_types}. Expected mono or poly.")
    return table


def elpv_split_table(labels_path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Assign every kept ELPV cell its label, class and split, without touching images.

    Returns:
        One row per kept cell, in ``labels.csv`` order, with columns source_index (row in
        ``labels.csv``), source_path, probability, cell_type, label (0 normal, 1 anomaly),
        defect_class (``good``, ``mono`` or ``poly``), split (``train`` or ``test``) and
        file_name (path inside the subset folder, e.g. ``train/good/cell0004.png``).
    """
    table = read_elpv_labels(labels_path)
    table.insert(0, "source_index", np.arange(len(table)))
    is_normal = np.isclose(table["probability"], 0.0)
    is_anomaly = np.isclose(table["probability"], 1.0)

    normal_index = table.index[is_normal].to_list()
    train_index, test_index = train_test_split(normal_index, test_size=0.25, random_state=42)
    split = pd.Series(pd.NA, index=table.index, dtype="object")
    split[train_index] = "train"
    split[test_index] = "test"
    split[is_anomaly] = "test"

    cells = table[is_normal | is_anomaly].copy()
    cells["label"] = is_anomaly[cells.index].astype(int)
    cells["defect_class"] = np.where(cells["label"] == 1, cells["cell_type"], "good")
    cells["split"] = split[cells.index]
    cells["file_name"] = [
        f"{row.split}/{row.defect_class}/{Path(row.source_path).stem}.png"
        for row in cells.itertuples(index=False)
    ]
    return cells.reset_index(drop=True)


def _expected_counts(table: pd.DataFrame) -> dict[str, int]:
    counts = table.groupby(["split", "defect_class"]).size()
    return {f"{split}/{defect_class}": int(n) for (split, defect_class), n in counts.items()}


def _is_complete(target: Path, counts: dict[str, int]) -> bool:
    marker = target / MARKER_NAME
    if not marker.is_file():
        return False
    try:
        content = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return content.get("counts") == counts


def _is_partial_build(target: Path) -> bool:
    """Return True when ``target`` contains nothing but files a build of this module writes."""
    for folder, subfolders, files in os.walk(target):
        relative = Path(folder).relative_to(target).as_posix()
        if relative == ".":
            if set(subfolders) - {"train", "test"} or set(files) - {MARKER_NAME}:
                return False
        elif relative in ("train", "test"):
            if files or any(f"{relative}/{name}" not in _CLASS_FOLDERS for name in subfolders):
                return False
        elif relative in _CLASS_FOLDERS:
            if subfolders or any(not name.endswith(".png") for name in files):
                return False
        else:
            return False
    return True


def _write_png(source: Path, destination: Path) -> None:
    """Copy a PNG byte for byte, or re-encode any other format as PNG."""
    with source.open("rb") as handle:
        is_png = handle.read(len(_PNG_SIGNATURE)) == _PNG_SIGNATURE
    if is_png:
        shutil.copyfile(source, destination)
    else:
        with Image.open(source) as image:
            image.save(destination, format="PNG")


def _write_tree(table: pd.DataFrame, source_dir: Path, destination: Path, progress: bool) -> None:
    for folder in sorted(_CLASS_FOLDERS):
        (destination / folder).mkdir(parents=True, exist_ok=True)
    rows = list(table.itertuples(index=False))
    for count, row in enumerate(tqdm(rows, desc="Writing ELPV images", disable=not progress), 1):
        _write_png(source_dir / row.source_path, destination / row.file_name)
        if count % 500 == 0 or count == len(rows):
            logger.info("Wrote %d / %d ELPV images", count, len(rows))


def build_elpv(
    root: str | os.PathLike = "data/elpv",
    labels_path: str | os.PathLike | None = None,
    progress: bool = False,
) -> Path:
    """Write the ELPV images in the MVTec AD layout and return the subset folder.

    The build is idempotent: a complete build ends with a marker file holding the image
    counts, and a later call with a valid marker returns at once. Images are written to a
    temporary folder inside ``root`` that is renamed to ``root/elpv`` when complete, so
    an interrupted build never leaves a half-filled subset folder. Two builds must not
    run into the same ``root`` at once: each removes the other's temporary folders.

    Args:
        root: parent folder of the subset; a relative path is taken from the project root
            (see ``sclib.paths.resolve_path``).
        labels_path: ``labels.csv`` with its ``images/`` folder beside it; None uses the
            installed ``elpv-dataset`` package.
        progress: show a tqdm progress bar.

    Returns:
        ``root/elpv``, the folder that contains ``train/`` and ``test/``.

    Raises:
        ValueError: ``root/elpv`` exists, has no valid marker and contains files that a
            build does not write, so it is not replaced.
    """
    root = resolve_path(root)
    labels_file = Path(labels_path) if labels_path is not None else default_labels_path()
    table = elpv_split_table(labels_file)
    counts = _expected_counts(table)
    target = root / SUBSET
    if _is_complete(target, counts):
        logger.info("ELPV already built in %s", target)
        return target
    if target.exists() and not _is_partial_build(target):
        raise ValueError(
            f"{target} exists, is not a complete ELPV build and contains other files, so it "
            "is not replaced. Move it away or pass another root."
        )

    root.mkdir(parents=True, exist_ok=True)
    for leftover in root.glob(_TEMP_PREFIX + "*"):
        logger.info("Removing leftover temporary folder %s", leftover)
        shutil.rmtree(leftover, ignore_errors=True)
    temp_dir = Path(tempfile.mkdtemp(dir=root, prefix=_TEMP_PREFIX))
    logger.info("Building ELPV (%d images) in %s", len(table), target)
    try:
        _write_tree(table, labels_file.parent, temp_dir, progress)
        marker = {"counts": counts, "protocol": _PROTOCOL, "n_images": len(table)}
        (temp_dir / MARKER_NAME).write_text(json.dumps(marker, indent=2))  # written last
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    try:
        if target.exists():
            logger.info("Replacing the incomplete build in %s", target)
            shutil.rmtree(target)
        os.rename(temp_dir, target)
    except OSError:
        shutil.rmtree(temp_dir, ignore_errors=True)
        if _is_complete(target, counts):  # another process finished the same build first
            return target
        raise
    logger.info("ELPV ready in %s: %s", target, counts)
    return target
