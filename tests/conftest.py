"""Shared fixtures: tiny synthetic data sets in the MVTec AD layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(min(2, torch.get_num_threads()))

# Notebooks under fixtures/ are inputs of the batch tests, not notebooks for nbval.
collect_ignore_glob = ["fixtures/*.ipynb"]


def _write_image(path: Path, rng: np.random.Generator, size: int, bright_square: bool) -> None:
    pixels = rng.integers(90, 140, size=(size, size, 3), dtype=np.uint8)
    if bright_square:
        corner = rng.integers(0, size // 2)
        pixels[corner : corner + size // 4, corner : corner + size // 4] = 250
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def make_tiny_mvtec(
    parent: Path,
    subset: str = "widget",
    n_train: int = 8,
    n_test_good: int = 4,
    defects: dict[str, int] | None = None,
    size: int = 32,
    seed: int = 0,
) -> Path:
    """Write a small MVTec AD style subset under ``parent`` and return the subset folder.

    Normal images are noise; anomalies carry a bright square, so a detector can learn them.
    The ``scratch`` class gets ground-truth masks.
    """
    defects = {"scratch": 3, "dent": 3} if defects is None else defects
    rng = np.random.default_rng(seed)
    root = parent / subset
    for i in range(n_train):
        _write_image(root / "train" / "good" / f"{i:03d}.png", rng, size, False)
    for i in range(n_test_good):
        _write_image(root / "test" / "good" / f"{i:03d}.png", rng, size, False)
    for defect, count in defects.items():
        for i in range(count):
            _write_image(root / "test" / defect / f"{i:03d}.png", rng, size, True)
            if defect == "scratch":
                mask = np.zeros((size, size), dtype=np.uint8)
                mask[: size // 4, : size // 4] = 255
                mask_path = root / "ground_truth" / defect / f"{i:03d}_mask.png"
                mask_path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(mask_path)
    return root


@pytest.fixture
def tiny_mvtec(tmp_path: Path) -> Path:
    """A subset folder with 8 train normals, 4 test normals, 3 scratches and 3 dents."""
    return make_tiny_mvtec(tmp_path / "data")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
