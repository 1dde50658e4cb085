"""Mastcam converter: the data set's own typical/novel split, test_novel/all skipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data_scripts import mastcam
from tests.data_scripts import names, read_pixels, snapshot


def _frame(path: Path, value: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = np.full((4, 4, 6), value, dtype=np.float64)
    frame[0, 0, 3:] = 999.0  # bands 3-5 are not part of the PNG
    np.save(path, frame)


@pytest.fixture
def raw_mastcam(tmp_path: Path) -> Path:
    root = tmp_path / "mastcam"
    for i in range(5):
        _frame(root / "train_typical" / f"t{i}.npy", 10 + i)
    for i in range(2):
        _frame(root / "validation_typical" / f"v{i}.npy", 30)
    for i in range(3):
        _frame(root / "test_typical" / f"s{i}.npy", 40 + i)
    _frame(root / "test_novel" / "veins" / "n0.npy", 300.0)  # clipped to 255 in PNG
    _frame(root / "test_novel" / "veins" / "n1.npy", 60)
    _frame(root / "test_novel" / "drill-hole" / "n1.npy", 60)  # a frame with two labels
    _frame(root / "test_novel" / "all" / "n0.npy", 300.0)
    _frame(root / "test_novel" / "all" / "n1.npy", 60)
    return root


def test_convert_keeps_the_data_set_split(raw_mastcam: Path, tmp_path: Path):
    subset = mastcam.convert(raw_mastcam, tmp_path / "out")

    assert names(subset / "train" / "good") == [f"t{i}.png" for i in range(5)]
    assert names(subset / "test" / "good") == [f"s{i}.png" for i in range(3)]
    assert sorted(p.name for p in (subset / "test").iterdir()) == ["drill-hole", "good", "veins"]
    assert names(subset / "test" / "veins") == ["n0.png", "n1.png"]
    assert names(subset / "test" / "drill-hole") == ["n1.png"]


def test_png_holds_first_three_bands(raw_mastcam: Path, tmp_path: Path):
    subset = mastcam.convert(raw_mastcam, tmp_path / "out")

    pixels = read_pixels(subset / "train" / "good" / "t2.png")
    assert pixels.shape == (4, 4, 3)
    assert np.all(pixels == 12)
    assert np.all(read_pixels(subset / "test" / "veins" / "n0.png") == 255)


def test_keep_npy_copies_frames_unchanged(raw_mastcam: Path, tmp_path: Path):
    subset = mastcam.convert(raw_mastcam, tmp_path / "out", keep_npy=True)

    assert names(subset / "train" / "good") == [f"t{i}.npy" for i in range(5)]
    copied = subset / "test" / "veins" / "n0.npy"
    assert copied.read_bytes() == (raw_mastcam / "test_novel" / "veins" / "n0.npy").read_bytes()


def test_frames_scaled_to_unit_range_are_rejected(raw_mastcam: Path, tmp_path: Path):
    np.save(raw_mastcam / "test_typical" / "s1.npy", np.full((4, 4, 6), 0.5))

    with pytest.raises(ValueError, match="s1.npy"):
        mastcam.convert(raw_mastcam, tmp_path / "out")
    assert mastcam.convert(raw_mastcam, tmp_path / "out", keep_npy=True).is_dir()


def test_output_is_readable_by_sclib(raw_mastcam: Path, tmp_path: Path):
    from sclib.data import discover, load_image

    subset = mastcam.convert(raw_mastcam, tmp_path / "out")

    records = discover(subset)
    assert len(records) == 11
    assert sum(record.label for record in records) == 3
    assert load_image(records[0].path).shape == (4, 4, 3)


def test_source_is_unchanged(raw_mastcam: Path, tmp_path: Path):
    before = snapshot(raw_mastcam)
    mastcam.convert(raw_mastcam, tmp_path / "out")

    assert snapshot(raw_mastcam) == before


def test_missing_test_typical_is_named(raw_mastcam: Path, tmp_path: Path):
    for path in (raw_mastcam / "test_typical").iterdir():
        path.unlink()
    (raw_mastcam / "test_typical").rmdir()

    with pytest.raises(FileNotFoundError, match="test_typical"):
        mastcam.convert(raw_mastcam, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_novel_folder_without_classes_is_rejected(raw_mastcam: Path, tmp_path: Path):
    for folder in ("veins", "drill-hole"):
        for path in (raw_mastcam / "test_novel" / folder).iterdir():
            path.unlink()
        (raw_mastcam / "test_novel" / folder).rmdir()

    with pytest.raises(FileNotFoundError, match="no class folders"):
        mastcam.convert(raw_mastcam, tmp_path / "out")


def test_cli_check_counts_novel_classes(raw_mastcam: Path, tmp_path: Path, capsys):
    status = mastcam.main(
        ["--source", str(raw_mastcam), "--output", str(tmp_path / "out"), "--check"]
    )

    report = capsys.readouterr().out
    assert status == 1
    assert "9302" in report
    assert "test/veins" in report
    assert "test/all" not in report
