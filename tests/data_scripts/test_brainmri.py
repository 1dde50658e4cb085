"""BrainMRI converter: no/ is normal (75/25 split), yes/ is the tumour class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from data_scripts import brainmri
from tests.data_scripts import names, snapshot, write_image

NORMAL = [
    "1 no.jpeg",
    "N1.JPG",
    "N2.jpg",
    "no 10.jpg",
    "no3.png",
    "20 no.jpg",
    "N15.jpg",
    "no 9.png",
]
TUMOUR = ["Y1.jpg", "Y2.JPG", "y3.png"]


def _fill(root: Path) -> None:
    for i, name in enumerate(NORMAL):
        write_image(root / "no" / name, np.full((6, 5), i, dtype=np.uint8))
    for i, name in enumerate(TUMOUR):
        write_image(root / "yes" / name, np.full((6, 5, 3), 100 + i, dtype=np.uint8))


@pytest.fixture
def raw_brainmri(tmp_path: Path) -> Path:
    _fill(tmp_path / "brain_mri")
    return tmp_path / "brain_mri"


def test_convert_writes_mvtec_layout(raw_brainmri: Path, tmp_path: Path):
    subset = brainmri.convert(raw_brainmri, tmp_path / "out")

    train, test = names(subset / "train" / "good"), names(subset / "test" / "good")
    assert (len(train), len(test)) == (6, 2)
    assert sorted(train + test) == sorted(NORMAL)
    assert names(subset / "test" / "tumor") == sorted(TUMOUR)
    assert sorted(p.name for p in (subset / "test").iterdir()) == ["good", "tumor"]


def test_split_uses_sorted_file_names(raw_brainmri: Path, tmp_path: Path):
    subset = brainmri.convert(raw_brainmri, tmp_path / "out")

    _, expected_test = train_test_split(sorted(NORMAL), test_size=0.25, random_state=42)
    assert names(subset / "test" / "good") == sorted(expected_test)


def test_files_are_copied_unchanged(raw_brainmri: Path, tmp_path: Path):
    subset = brainmri.convert(raw_brainmri, tmp_path / "out")

    assert (subset / "test" / "tumor" / "Y2.JPG").read_bytes() == (
        raw_brainmri / "yes" / "Y2.JPG"
    ).read_bytes()


def test_source_is_unchanged(raw_brainmri: Path, tmp_path: Path):
    before = snapshot(raw_brainmri)
    brainmri.convert(raw_brainmri, tmp_path / "out")

    assert snapshot(raw_brainmri) == before


def test_nested_archive_folder_is_accepted(tmp_path: Path):
    _fill(tmp_path / "archive" / "brain_tumor_dataset")

    subset = brainmri.convert(tmp_path / "archive", tmp_path / "out")

    assert len(names(subset / "test" / "tumor")) == 3


def test_missing_yes_folder_is_named(raw_brainmri: Path, tmp_path: Path):
    for path in (raw_brainmri / "yes").iterdir():
        path.unlink()
    (raw_brainmri / "yes").rmdir()

    with pytest.raises(FileNotFoundError, match="yes"):
        brainmri.convert(raw_brainmri, tmp_path / "out")


def test_empty_no_folder_is_rejected(raw_brainmri: Path, tmp_path: Path):
    for path in (raw_brainmri / "no").iterdir():
        path.unlink()

    with pytest.raises(FileNotFoundError, match="no images"):
        brainmri.convert(raw_brainmri, tmp_path / "out")


def test_cli_check_prints_published_counts(raw_brainmri: Path, tmp_path: Path, capsys):
    status = brainmri.main(
        ["--source", str(raw_brainmri), "--output", str(tmp_path / "out"), "--check"]
    )

    report = capsys.readouterr().out
    assert status == 1
    assert "test/tumor" in report
    assert "155" in report
