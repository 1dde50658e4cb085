"""Folder discovery and the layout report."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sclib.data.layout import ImageRecord, LayoutReport, check_layout, discover
from tests.conftest import make_tiny_mvtec


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _noise(size=(32, 32, 3), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=size, dtype=np.uint8)


def test_discover_counts_tiny_mvtec(tiny_mvtec):
    records = discover(tiny_mvtec)
    assert len(records) == 18
    by_class = {}
    for record in records:
        by_class.setdefault((record.split, record.defect_class), []).append(record)
    assert len(by_class[("train", "good")]) == 8
    assert len(by_class[("test", "good")]) == 4
    assert len(by_class[("test", "scratch")]) == 3
    assert len(by_class[("test", "dent")]) == 3


def test_discover_labels_and_masks(tiny_mvtec):
    for record in discover(tiny_mvtec):
        assert isinstance(record, ImageRecord)
        assert record.label == (0 if record.defect_class == "good" else 1)
        if record.defect_class == "scratch":
            assert (
                record.mask_path
                == tiny_mvtec / "ground_truth" / "scratch" / f"{record.path.stem}_mask.png"
            )
        else:
            assert record.mask_path is None


def test_discover_sorted_by_path(tiny_mvtec):
    paths = [str(record.path) for record in discover(tiny_mvtec)]
    assert paths == sorted(paths)


def test_discover_ignores_listing_order(tiny_mvtec, monkeypatch):
    expected = discover(tiny_mvtec)
    original_iterdir = Path.iterdir

    def shuffled_iterdir(self):
        entries = list(original_iterdir(self))
        random.Random(3).shuffle(entries)
        return iter(entries)

    monkeypatch.setattr(Path, "iterdir", shuffled_iterdir)
    assert discover(tiny_mvtec) == expected


def test_discover_accepts_other_extensions(tiny_mvtec):
    _save(tiny_mvtec / "test" / "dent" / "UPPER.PNG", _noise())
    np.save(tiny_mvtec / "test" / "dent" / "array.npy", _noise())
    (tiny_mvtec / "test" / "dent" / ".hidden.png").write_bytes(b"")
    (tiny_mvtec / "test" / "dent" / "readme.txt").write_text("notes")
    names = {r.path.name for r in discover(tiny_mvtec) if r.defect_class == "dent"}
    assert names == {"000.png", "001.png", "002.png", "UPPER.PNG", "array.npy"}


def test_discover_missing_root(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        discover(missing)


def test_discover_missing_train_good(tiny_mvtec):
    shutil.rmtree(tiny_mvtec / "train" / "good")
    with pytest.raises(FileNotFoundError) as caught:
        discover(tiny_mvtec)
    message = str(caught.value)
    assert str(tiny_mvtec / "train" / "good") in message
    assert "expected <subset>/train/good/" in message


def test_discover_parent_folder_names_subset(tiny_mvtec):
    with pytest.raises(FileNotFoundError, match="pass one of them") as caught:
        discover(tiny_mvtec.parent)
    assert str(tiny_mvtec) in str(caught.value)


def test_discover_empty_class_folder(tiny_mvtec):
    empty = tiny_mvtec / "test" / "crack"
    empty.mkdir()
    with pytest.raises(ValueError, match="contains no image") as caught:
        discover(tiny_mvtec)
    assert str(empty) in str(caught.value)


def test_discover_missing_test_folder(tiny_mvtec):
    shutil.rmtree(tiny_mvtec / "test")
    with pytest.raises(FileNotFoundError) as caught:
        discover(tiny_mvtec)
    assert str(tiny_mvtec / "test") in str(caught.value)


def test_discover_test_without_classes(tiny_mvtec):
    shutil.rmtree(tiny_mvtec / "test")
    (tiny_mvtec / "test").mkdir()
    with pytest.raises(ValueError, match="no class folder"):
        discover(tiny_mvtec)


def test_discover_anomalies_in_train(tiny_mvtec):
    _save(tiny_mvtec / "train" / "scratch" / "000.png", _noise())
    with pytest.raises(ValueError, match="scratch"):
        discover(tiny_mvtec)


def test_check_layout_ok_on_tiny(tiny_mvtec):
    report = check_layout(tiny_mvtec)
    assert isinstance(report, LayoutReport)
    assert report.problems == []
    assert report.ok
    summary = report.summary
    assert list(summary.columns) == ["split", "class", "n_images", "n_masks", "sizes", "modes"]
    assert summary["n_images"].sum() == 18
    scratch = summary[summary["class"] == "scratch"].iloc[0]
    assert scratch["n_masks"] == 3
    assert scratch["sizes"] == "32x32 (3)"
    assert scratch["modes"] == "RGB (3)"
    assert "OK" in str(report)
    assert "<table" in report._repr_html_()


def _problem_containing(report: LayoutReport, text: str) -> str:
    matches = [problem for problem in report.problems if text in problem]
    assert matches, f"no problem mentions {text!r}: {report.problems}"
    return matches[0]


def test_check_layout_mixed_sizes(tiny_mvtec):
    _save(tiny_mvtec / "test" / "dent" / "big.png", _noise((40, 48, 3)))
    report = check_layout(tiny_mvtec)
    problem = _problem_containing(report, "Mixed image sizes")
    assert "48x40 (1" in problem
    assert "test/dent/big.png" in problem
    assert not report.ok


def test_check_layout_mixed_modes(tiny_mvtec):
    _save(tiny_mvtec / "train" / "good" / "grey.png", _noise((32, 32)))
    problem = _problem_containing(check_layout(tiny_mvtec), "Mixed image modes")
    assert "L (1" in problem
    assert "RGB" in problem


def test_check_layout_mask_without_image(tiny_mvtec):
    _save(tiny_mvtec / "ground_truth" / "scratch" / "099_mask.png", np.zeros((32, 32), np.uint8))
    problem = _problem_containing(check_layout(tiny_mvtec), "without an image")
    assert "099_mask.png" in problem


def test_check_layout_mask_folder_without_class(tiny_mvtec):
    _save(tiny_mvtec / "ground_truth" / "hole" / "000_mask.png", np.zeros((32, 32), np.uint8))
    _problem_containing(check_layout(tiny_mvtec), "no matching test/hole")


def test_check_layout_duplicate_files(tiny_mvtec):
    shutil.copyfile(
        tiny_mvtec / "train" / "good" / "000.png", tiny_mvtec / "test" / "good" / "copy.png"
    )
    problem = _problem_containing(check_layout(tiny_mvtec), "Duplicate files")
    assert "train/good/000.png" in problem
    assert "test/good/copy.png" in problem


def test_check_layout_unreadable_file(tiny_mvtec):
    (tiny_mvtec / "test" / "dent" / "broken.png").write_text("not an image")
    problem = _problem_containing(check_layout(tiny_mvtec), "unreadable")
    assert "test/dent/broken.png" in problem


def test_check_layout_truncated_file_needs_decode(tiny_mvtec):
    source = (tiny_mvtec / "test" / "dent" / "000.png").read_bytes()
    (tiny_mvtec / "test" / "dent" / "cut.png").write_bytes(source[: len(source) // 2])
    assert any("cut.png" in p for p in check_layout(tiny_mvtec, decode=True).problems)
    assert not any("cut.png" in p for p in check_layout(tiny_mvtec, decode=False).problems)


def test_check_layout_empty_folder(tiny_mvtec):
    (tiny_mvtec / "test" / "crack").mkdir()
    report = check_layout(tiny_mvtec)
    problem = _problem_containing(report, "Empty class folder")
    assert "crack" in problem
    assert "crack" in set(report.summary["class"])


def test_check_layout_non_image_files(tiny_mvtec):
    (tiny_mvtec / "test" / "dent" / "labels.txt").write_text("x")
    _problem_containing(check_layout(tiny_mvtec), "labels.txt")


def test_check_layout_broken_link(tiny_mvtec):
    link = tiny_mvtec / "train" / "good" / "moved.png"
    link.symlink_to(tiny_mvtec / "elsewhere.png")
    report = check_layout(tiny_mvtec)
    assert any("broken link" in problem and "moved.png" in problem for problem in report.problems)


def test_check_layout_missing_train_good_reports(tiny_mvtec):
    shutil.rmtree(tiny_mvtec / "train")
    report = check_layout(tiny_mvtec)
    _problem_containing(report, "No train/good folder")
    assert set(report.summary["split"]) == {"test"}


def test_check_layout_no_defect_classes(tmp_path):
    root = make_tiny_mvtec(tmp_path, defects={})
    report = check_layout(root)
    _problem_containing(report, "No defect class folder")


def test_check_layout_no_test_folder(tiny_mvtec):
    shutil.rmtree(tiny_mvtec / "test")
    shutil.rmtree(tiny_mvtec / "ground_truth")
    _problem_containing(check_layout(tiny_mvtec), "No test folder")


def test_check_layout_missing_root_does_not_raise(tmp_path):
    report = check_layout(tmp_path / "nowhere")
    assert not report.ok
    assert "does not exist" in report.problems[0]
    assert "does not exist" in str(report)
    assert "does not exist" in report._repr_html_()
