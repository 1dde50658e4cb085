"""HeadCT converter: labels.csv decides normal (75/25 split) and haemorrhage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data_scripts import headct
from tests.data_scripts import names, snapshot, write_image

LABELS = {0: 1, 1: 0, 2: 1, 3: 0, 4: 0, 5: 0, 6: 1, 7: 0, 8: 0, 9: 0}


@pytest.fixture
def raw_headct(tmp_path: Path) -> Path:
    root = tmp_path / "head_ct_download"
    for image_id in LABELS:
        write_image(
            root / "head_ct" / "head_ct" / f"{image_id:03d}.png",
            np.full((4, 4), image_id, np.uint8),
        )
    # Rows out of id order and the header with a space, as in the download.
    rows = ["id, hemorrhage"] + [f"{i}, {LABELS[i]}" for i in sorted(LABELS, reverse=True)]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_convert_writes_mvtec_layout(raw_headct: Path, tmp_path: Path):
    subset = headct.convert(raw_headct, tmp_path / "out")

    train, test = names(subset / "train" / "good"), names(subset / "test" / "good")
    assert (len(train), len(test)) == (5, 2)  # 7 normal slices
    assert sorted(train + test) == [f"{i:03d}.png" for i in LABELS if LABELS[i] == 0]
    assert names(subset / "test" / "hemorrhage") == ["000.png", "002.png", "006.png"]


def test_split_does_not_depend_on_row_order(raw_headct: Path, tmp_path: Path):
    first = headct.convert(raw_headct, tmp_path / "a")
    rows = ["id,hemorrhage"] + [f"{i},{LABELS[i]}" for i in sorted(LABELS)]
    (raw_headct / "labels.csv").write_text("\n".join(rows) + "\n")
    second = headct.convert(raw_headct, tmp_path / "b")

    assert names(first / "test" / "good") == names(second / "test" / "good")


def test_source_is_unchanged(raw_headct: Path, tmp_path: Path):
    before = snapshot(raw_headct)
    headct.convert(raw_headct, tmp_path / "out")

    assert snapshot(raw_headct) == before


def test_flat_image_folder_is_accepted(raw_headct: Path, tmp_path: Path):
    (raw_headct / "head_ct" / "head_ct").rename(tmp_path / "slices")
    (raw_headct / "head_ct").rmdir()
    (tmp_path / "slices").rename(raw_headct / "head_ct")

    subset = headct.convert(raw_headct, tmp_path / "out")

    assert len(names(subset / "test" / "hemorrhage")) == 3


def test_missing_labels_file_is_named(raw_headct: Path, tmp_path: Path):
    (raw_headct / "labels.csv").unlink()

    with pytest.raises(FileNotFoundError, match="labels.csv"):
        headct.convert(raw_headct, tmp_path / "out")


def test_missing_image_is_named(raw_headct: Path, tmp_path: Path):
    (raw_headct / "head_ct" / "head_ct" / "006.png").unlink()

    with pytest.raises(FileNotFoundError, match="006.png"):
        headct.convert(raw_headct, tmp_path / "out")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("id,label\n0,1\n", "hemorrhage"),
        ("id,hemorrhage\n0,2\n", "0 or 1"),
        ("id,hemorrhage\nx,1\n", "line 2"),
    ],
)
def test_malformed_labels_are_rejected(
    raw_headct: Path, tmp_path: Path, content: str, message: str
):
    (raw_headct / "labels.csv").write_text(content)

    with pytest.raises(ValueError, match=message):
        headct.convert(raw_headct, tmp_path / "out")


def test_cli_check_prints_published_counts(raw_headct: Path, tmp_path: Path, capsys):
    status = headct.main(
        ["--source", str(raw_headct), "--output", str(tmp_path / "out"), "--check"]
    )

    report = capsys.readouterr().out
    assert status == 1
    assert "test/hemorrhage" in report
