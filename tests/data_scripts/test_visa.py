"""VisA converter: the rows of split_csv/1cls.csv, one subset per object, binary masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data_scripts import visa
from sclib.data import discover
from tests.data_scripts import names, read_pixels, snapshot, write_image

HEADER = "object,split,label,image,mask"


def _object_rows(root: Path, name: str, n_train: int, n_test: int, n_anomaly: int) -> list[str]:
    rows = []
    for i in range(n_train + n_test):
        image = f"{name}/Data/Images/Normal/{i:04d}.JPG"
        write_image(root / image, np.full((4, 4, 3), i, np.uint8))
        rows.append(f"{name},{'train' if i < n_train else 'test'},normal,{image},")
    for i in range(n_anomaly):
        image = f"{name}/Data/Images/Anomaly/{i:03d}.JPG"
        mask = f"{name}/Data/Masks/Anomaly/{i:03d}.png"
        write_image(root / image, np.full((4, 4, 3), 200, np.uint8))
        pixels = np.zeros((4, 4), np.uint8)
        pixels[0, 1] = 1 + i  # VisA masks hold small non-zero values, not 255
        write_image(root / mask, pixels)
        rows.append(f"{name},test,anomaly,{image},{mask}")
    return rows


@pytest.fixture
def raw_visa(tmp_path: Path) -> Path:
    root = tmp_path / "VisA"
    rows = _object_rows(root, "candle", 5, 2, 3) + _object_rows(root, "pcb1", 3, 1, 2)
    (root / "split_csv").mkdir(parents=True)
    (root / "split_csv" / "1cls.csv").write_text("\n".join([HEADER] + rows) + "\n")
    return root


def test_convert_writes_one_subset_per_object(raw_visa: Path, tmp_path: Path):
    output = visa.convert(raw_visa, tmp_path / "out")

    assert sorted(p.name for p in output.iterdir()) == ["candle", "pcb1"]
    candle = output / "candle"
    assert names(candle / "train" / "good") == [f"{i:04d}.JPG" for i in range(5)]
    assert names(candle / "test" / "good") == ["0005.JPG", "0006.JPG"]
    assert names(candle / "test" / "bad") == ["000.JPG", "001.JPG", "002.JPG"]
    assert names(candle / "ground_truth" / "bad") == [
        "000_mask.png",
        "001_mask.png",
        "002_mask.png",
    ]
    assert len(names(output / "pcb1" / "test" / "bad")) == 2


def test_masks_are_binarised(raw_visa: Path, tmp_path: Path):
    output = visa.convert(raw_visa, tmp_path / "out")

    mask = read_pixels(output / "candle" / "ground_truth" / "bad" / "002_mask.png")
    assert mask[0, 1] == 255
    assert mask.sum() == 255


def test_images_are_copied_unchanged(raw_visa: Path, tmp_path: Path):
    output = visa.convert(raw_visa, tmp_path / "out")

    source = raw_visa / "pcb1" / "Data" / "Images" / "Normal" / "0003.JPG"
    assert (output / "pcb1" / "test" / "good" / "0003.JPG").read_bytes() == source.read_bytes()


def test_source_is_unchanged(raw_visa: Path, tmp_path: Path):
    before = snapshot(raw_visa)
    visa.convert(raw_visa, tmp_path / "out")

    assert snapshot(raw_visa) == before


def test_objects_option_selects_subsets(raw_visa: Path, tmp_path: Path):
    output = visa.convert(raw_visa, tmp_path / "out", objects=["pcb1"])

    assert [p.name for p in output.iterdir()] == ["pcb1"]
    with pytest.raises(ValueError, match="unknown objects"):
        visa.convert(raw_visa, tmp_path / "other", objects=["bottle"])


def test_missing_split_file_is_named(raw_visa: Path, tmp_path: Path):
    (raw_visa / "split_csv" / "1cls.csv").unlink()

    with pytest.raises(FileNotFoundError, match="1cls.csv"):
        visa.convert(raw_visa, tmp_path / "out")


def test_missing_listed_mask_is_named(raw_visa: Path, tmp_path: Path):
    (raw_visa / "candle" / "Data" / "Masks" / "Anomaly" / "001.png").unlink()

    with pytest.raises(FileNotFoundError, match="001.png"):
        visa.convert(raw_visa, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            "candle,train,anomaly,candle/Data/Images/Anomaly/000.JPG,"
            "candle/Data/Masks/Anomaly/000.png",
            "no anomalies in train",
        ),
        ("candle,val,normal,candle/Data/Images/Normal/0000.JPG,", "split must be"),
        ("candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,", "without a mask"),
    ],
)
def test_malformed_split_rows_are_rejected(raw_visa: Path, tmp_path: Path, row: str, message: str):
    (raw_visa / "split_csv" / "1cls.csv").write_text(f"{HEADER}\n{row}\n")

    with pytest.raises(ValueError, match=message):
        visa.convert(raw_visa, tmp_path / "out")


def test_cli_check_compares_readme_totals(raw_visa: Path, tmp_path: Path, capsys):
    status = visa.main(
        [
            "--source",
            str(raw_visa),
            "--output",
            str(tmp_path / "out"),
            "--objects",
            "candle",
            "--check",
        ]
    )

    report = capsys.readouterr().out
    assert status == 1
    assert "subset candle" in report
    assert "normal (train + test)" in report
    assert "subset pcb1" not in report


def test_each_object_is_a_discoverable_subset(raw_visa: Path, tmp_path: Path):
    output = visa.convert(raw_visa, tmp_path / "out")

    records = discover(output / "pcb1")
    assert len(records) == 6
    anomalies = [record for record in records if record.label == 1]
    assert [record.mask_path.name for record in anomalies] == ["000_mask.png", "001_mask.png"]
