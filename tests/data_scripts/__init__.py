"""Tests of the data-set converters; the helpers below build tiny raw data sets."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, pixels: np.ndarray) -> Path:
    """Write a uint8 array, (H, W) grey or (H, W, 3) RGB, as an image file (format from suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path)
    return path


def read_pixels(path: Path) -> np.ndarray:
    """Read an image file as a uint8 array."""
    with Image.open(path) as image:
        return np.asarray(image)


def snapshot(folder: Path) -> dict[str, str]:
    """Map every file under ``folder`` (relative POSIX path) to the SHA-256 of its bytes."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def names(folder: Path) -> list[str]:
    """Sorted file names in ``folder`` (empty when it does not exist)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_file())
