"""Specification of sclib.example_data: a synthetic subset in the MVTec AD layout."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from sclib import example_data
from sclib.data import check_layout, discover, load_image


def _small(parent, **overrides):
    values = {"size": 32, "n_train": 4, "n_test_good": 2, "n_defect": 2}
    values.update(overrides)
    return example_data.write_example_dataset(parent, **values)


def test_example_dataset_has_layout_counts(tmp_path):
    root = _small(tmp_path)
    records = discover(root)
    counts = Counter((record.split, record.defect_class) for record in records)
    assert counts == {
        ("train", "good"): 4,
        ("test", "good"): 2,
        ("test", "scratch"): 2,
        ("test", "stain"): 2,
    }
    assert all(record.mask_path is not None for record in records if record.label == 1)


def test_layout_check_reports_only_readme(tmp_path):
    report = check_layout(_small(tmp_path))
    assert len(report.problems) == 1
    assert "README.txt" in report.problems[0]


def test_defect_pixels_differ_inside_mask(tmp_path):
    root = _small(tmp_path, size=64)
    scratch = next(record for record in discover(root) if record.defect_class == "scratch")
    image = load_image(scratch.path)[..., 0].astype(float)
    mask = load_image(scratch.mask_path)[..., 0] > 127
    assert mask.sum() > 0
    assert image[mask].mean() < image[~mask].mean() - 40


def test_same_seed_writes_same_images(tmp_path):
    first = _small(tmp_path / "a")
    second = _small(tmp_path / "b")
    for relative in ("train/good/000.png", "test/stain/001.png"):
        assert np.array_equal(load_image(first / relative), load_image(second / relative))


def test_existing_folder_is_returned_unchanged(tmp_path):
    root = _small(tmp_path)
    marker = root / "train" / "good" / "000.png"
    marker.write_bytes(b"changed")
    assert _small(tmp_path) == root
    assert marker.read_bytes() == b"changed"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["fabric"]


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing_save(array, path):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")

    monkeypatch.setattr(example_data, "_save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        _small(tmp_path)
    assert list(tmp_path.iterdir()) == []
