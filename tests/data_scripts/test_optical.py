"""Optical (DAGM 2007) converter: label files, label-file order split, class folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from data_scripts import optical
from sclib.data import check_layout, discover
from tests.data_scripts import names, read_pixels, snapshot, write_image


def _write_part(part_root: Path, first: int, defective: set[int]) -> None:
    """Write 4 images numbered from ``first`` and a Labels.txt marking ``defective``."""
    rows = ["1"]
    for row, number in enumerate(range(first, first + 4), start=1):
        image = f"{number:04d}.PNG"
        write_image(part_root / image, np.full((4, 4), number % 256, dtype=np.uint8))
        if number in defective:
            mask = np.zeros((4, 4), dtype=np.uint8)
            mask[1:3, 1:3] = 255
            write_image(part_root / "Label" / f"{number:04d}_label.PNG", mask)
            rows.append(f"{row}\t1\t{image}\t0\t{number:04d}_label.PNG")
        else:
            rows.append(f"{row}\t0\t{image}\t0")
    (part_root / "Label").mkdir(parents=True, exist_ok=True)
    (part_root / "Label" / "Labels.txt").write_text("\n".join(rows) + "\n")


@pytest.fixture
def raw_optical(tmp_path: Path) -> Path:
    root = tmp_path / "DAGM"
    # Class1 and Class10 are nested twice as in the download; Class2 once.
    for class_root, first in (
        (root / "Class1" / "Class1", 100),
        (root / "Class2", 200),
        (root / "Class10" / "Class10", 300),
    ):
        _write_part(class_root / "Train", first, {first + 1})
        _write_part(class_root / "Test", first + 50, set())
    return root


def _label_file_order() -> list[str]:
    order = []
    for class_name, first in (("Class1", 100), ("Class2", 200), ("Class10", 300)):
        for part, start in (("Train", first), ("Test", first + 50)):
            order += [
                f"{class_name}_{part}_{n:04d}.PNG"
                for n in range(start, start + 4)
                if not (part == "Train" and n == first + 1)
            ]
    return order


def test_convert_writes_mvtec_layout(raw_optical: Path, tmp_path: Path):
    subset = optical.convert(raw_optical, tmp_path / "out")

    assert len(names(subset / "train" / "good")) == 15  # 21 normal images: 15 / 6
    assert len(names(subset / "test" / "good")) == 6
    assert sorted(p.name for p in (subset / "test").iterdir()) == [
        "Class1",
        "Class10",
        "Class2",
        "good",
    ]
    assert names(subset / "test" / "Class10") == ["Class10_Train_0301.PNG"]
    assert names(subset / "ground_truth" / "Class10") == ["Class10_Train_0301_mask.png"]


def test_split_follows_label_file_order(raw_optical: Path, tmp_path: Path):
    subset = optical.convert(raw_optical, tmp_path / "out")

    expected_train, expected_test = train_test_split(
        _label_file_order(), test_size=0.25, random_state=42
    )
    assert names(subset / "train" / "good") == sorted(expected_train)
    assert names(subset / "test" / "good") == sorted(expected_test)


def test_images_are_copied_unchanged(raw_optical: Path, tmp_path: Path):
    subset = optical.convert(raw_optical, tmp_path / "out")

    copied = subset / "test" / "Class2" / "Class2_Train_0201.PNG"
    assert copied.read_bytes() == (raw_optical / "Class2" / "Train" / "0201.PNG").read_bytes()
    mask = read_pixels(subset / "ground_truth" / "Class2" / "Class2_Train_0201_mask.png")
    assert mask.sum() == 4 * 255


def test_source_is_unchanged(raw_optical: Path, tmp_path: Path):
    before = snapshot(raw_optical)
    optical.convert(raw_optical, tmp_path / "out")

    assert snapshot(raw_optical) == before


def test_read_labels_skips_header_and_reads_masks(tmp_path: Path):
    path = tmp_path / "Labels.txt"
    path.write_text("\ufeff1\n1\t0\t0001.PNG\t0\n2\t1\t0002.PNG\t0\t0002_label.PNG\n\n")

    rows = optical.read_labels(path)

    assert rows == [
        optical.LabelRow("0001.PNG", False, None),
        optical.LabelRow("0002.PNG", True, "0002_label.PNG"),
    ]


def test_malformed_label_row_names_the_line(tmp_path: Path):
    path = tmp_path / "Labels.txt"
    path.write_text("1\n1\tx\t0001.PNG\t0\n")

    with pytest.raises(ValueError, match="line 2"):
        optical.read_labels(path)


def test_missing_label_file_is_named(raw_optical: Path, tmp_path: Path):
    (raw_optical / "Class2" / "Test" / "Label" / "Labels.txt").unlink()

    with pytest.raises(FileNotFoundError, match="Labels.txt"):
        optical.convert(raw_optical, tmp_path / "out")


def test_missing_listed_image_is_named(raw_optical: Path, tmp_path: Path):
    (raw_optical / "Class1" / "Class1" / "Test" / "0152.PNG").unlink()

    with pytest.raises(FileNotFoundError, match="0152.PNG"):
        optical.convert(raw_optical, tmp_path / "out")


def test_source_without_class_folders_is_rejected(tmp_path: Path):
    (tmp_path / "raw" / "pictures").mkdir(parents=True)

    with pytest.raises(FileNotFoundError, match="Class<N>"):
        optical.convert(tmp_path / "raw", tmp_path / "out")


def test_cli_check_shows_per_class_counts(raw_optical: Path, tmp_path: Path, capsys):
    status = optical.main(
        ["--source", str(raw_optical), "--output", str(tmp_path / "out"), "--check"]
    )

    report = capsys.readouterr().out
    assert status == 1
    assert "10500" in report
    assert "test/Class7" in report  # published class with no converted images


def test_output_passes_sclib_layout_check(raw_optical: Path, tmp_path: Path):
    subset = optical.convert(raw_optical, tmp_path / "out")

    report = check_layout(subset)
    assert report.ok, str(report)
    anomalies = [record for record in discover(subset) if record.label == 1]
    assert {record.defect_class for record in anomalies} == {"Class1", "Class2", "Class10"}
    assert all(record.mask_path is not None for record in anomalies)
