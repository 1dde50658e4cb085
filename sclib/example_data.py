"""A small synthetic data set in the MVTec AD layout, for trying sclib on "your own" data.

:func:`write_example_dataset` draws woven-fabric-like textures: a sum of two sine
gratings with a random phase, plus noise. Defect classes:

- ``scratch``: a thin dark line segment at a random angle;
- ``stain``: a soft bright blob.

Each defect image gets a ground-truth mask under ``ground_truth/<class>/<stem>_mask.png``.
The folder also contains a ``README.txt`` in ``train/good``, a file that is not an
image, so that ``sclib.data.check_layout`` has one harmless problem to report.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

DEFECT_CLASSES = ("scratch", "stain")
README_TEXT = (
    "Synthetic example data written by sclib.example_data.write_example_dataset.\n"
    "This file is not an image: sclib.data.check_layout reports it and training ignores it.\n"
)


def fabric_texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw a grey fabric-like texture: float (size, size) in [0, 1]."""
    rows, columns = np.mgrid[0:size, 0:size] / size
    period = 12 + rng.uniform(-1.0, 1.0)
    phase = rng.uniform(0, 2 * np.pi, size=2)
    weave = np.sin(2 * np.pi * period * rows + phase[0]) * np.sin(
        2 * np.pi * period * columns + phase[1]
    )
    texture = 0.5 + 0.18 * weave + rng.normal(0.0, 0.04, size=(size, size))
    return np.clip(texture, 0.0, 1.0)


def scratch_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw a bool (size, size) mask of a line segment 2-3 px wide and 30-60% of the side long."""
    rows, columns = np.mgrid[0:size, 0:size].astype(float)
    centre = rng.uniform(0.3, 0.7, size=2) * size
    angle = rng.uniform(0, np.pi)
    half_length = rng.uniform(0.15, 0.3) * size
    along = (columns - centre[1]) * np.cos(angle) + (rows - centre[0]) * np.sin(angle)
    across = -(columns - centre[1]) * np.sin(angle) + (rows - centre[0]) * np.cos(angle)
    return (np.abs(along) <= half_length) & (np.abs(across) <= rng.uniform(1.0, 1.5))


def stain_mask(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw a soft blob: its weight, float (size, size) in [0, 1], and its mask (weight > 0.5)."""
    rows, columns = np.mgrid[0:size, 0:size].astype(float)
    centre = rng.uniform(0.25, 0.75, size=2) * size
    radius = rng.uniform(0.06, 0.12) * size
    distance = np.hypot(rows - centre[0], columns - centre[1])
    weight = np.exp(-0.5 * (distance / radius) ** 2)
    return weight, weight > 0.5


def _save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _defect_image(defect_class: str, size: int, rng: np.random.Generator):
    texture = fabric_texture(size, rng)
    if defect_class == "scratch":
        mask = scratch_mask(size, rng)
        texture = np.where(mask, texture * 0.25, texture)
    else:
        weight, mask = stain_mask(size, rng)
        texture = texture + 0.35 * weight * (1.0 - texture)
    return texture, mask


def write_example_dataset(
    parent: str | os.PathLike,
    name: str = "fabric",
    size: int = 128,
    n_train: int = 60,
    n_test_good: int = 20,
    n_defect: int = 15,
    seed: int = 0,
) -> Path:
    """Write the example subset ``parent/name`` once and return its path.

    An existing folder is returned unchanged. A new one is written into a temporary
    folder beside it and renamed into place, so an interrupted call leaves no partial
    data set behind.

    Args:
        parent: folder that receives the subset folder.
        name: subset folder name.
        size: image side in pixels.
        n_train: normal training images.
        n_test_good: normal test images.
        n_defect: test images per defect class.
        seed: seed of the ``numpy.random.default_rng`` that draws every image.

    Returns:
        The subset folder, which contains ``train/``, ``test/`` and ``ground_truth/``.
    """
    parent = Path(parent).expanduser()
    root = parent / name
    if root.is_dir():
        return root
    parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=parent))
    try:
        for folder, count in (("train", n_train), ("test", n_test_good)):
            for index in range(count):
                path = staging / folder / "good" / f"{index:03d}.png"
                _save(_to_rgb(fabric_texture(size, rng)), path)
        for defect_class in DEFECT_CLASSES:
            for index in range(n_defect):
                texture, mask = _defect_image(defect_class, size, rng)
                _save(_to_rgb(texture), staging / "test" / defect_class / f"{index:03d}.png")
                mask_path = staging / "ground_truth" / defect_class / f"{index:03d}_mask.png"
                _save(mask.astype(np.uint8) * 255, mask_path)
        (staging / "train" / "good" / "README.txt").write_text(README_TEXT)
        os.replace(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return root


def _to_rgb(texture: np.ndarray) -> np.ndarray:
    grey = np.round(texture * 255).astype(np.uint8)
    return np.stack([grey] * 3, axis=-1)  # (H, W) -> (H, W, 3)
