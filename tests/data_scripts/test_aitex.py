"""AITEX converter: 256 px crops, mask-based anomaly rule, 75/25 split of normal crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data_scripts import aitex
from sclib.data import check_layout, discover
from tests.data_scripts import names, read_pixels, snapshot, write_image

HEIGHT = 4


def _strip(width: int, base: int) -> np.ndarray:
    """Return a grey strip whose pixels in crop i all equal base + i."""
    columns = np.arange(width) // 256
    return np.tile((base + columns).astype(np.uint8), (HEIGHT, 1))


def _mask(width: int, columns: list[int]) -> np.ndarray:
    mask = np.zeros((HEIGHT, width), dtype=np.uint8)
    for column in columns:
        mask[1, column] = 255
    return mask


@pytest.fixture
def raw_aitex(tmp_path: Path) -> Path:
    root = tmp_path / "AITEX"
    write_image(root / "NODefect_images" / "2306881-210020u" / "0001_000_00.png", _strip(4096, 0))
    write_image(root / "NODefect_images" / "2311517-195063u" / "0002_000_02.png", _strip(4096, 100))
    # Broken_end: mask pixels at the last column of crop 0 and the first column of crop 5.
    write_image(root / "Defect_images" / "0003_002_00.png", _strip(4096, 50))
    write_image(root / "Mask_images" / "0003_002_00_mask.png", _mask(4096, [255, 5 * 256]))
    # Fuzzyball with two mask files, one defect in each.
    write_image(root / "Defect_images" / "0004_019_04.png", _strip(4096, 150))
    write_image(root / "Mask_images" / "0004_019_04_mask1.png", _mask(4096, [3 * 256 + 7]))
    write_image(root / "Mask_images" / "0004_019_04_mask2.png", _mask(4096, [10 * 256]))
    # Nep on a short strip (600 px, three crops, the last 88 px wide) with an empty mask.
    write_image(root / "Defect_images" / "0005_030_01.png", _strip(600, 200))
    write_image(root / "Mask_images" / "0005_030_01_mask.png", _mask(600, []))
    return root


def test_convert_writes_crops_in_mvtec_layout(raw_aitex: Path, tmp_path: Path):
    subset = aitex.convert(raw_aitex, tmp_path / "out")

    assert subset == (tmp_path / "out" / "aitex").resolve()
    train, test = names(subset / "train" / "good"), names(subset / "test" / "good")
    assert len(train) == 24
    assert len(test) == 8
    assert not set(train) & set(test)
    expected = {f"2306881-210020u_0001_000_00_{i:02d}.png" for i in range(16)}
    expected |= {f"2311517-195063u_0002_000_02_{i:02d}.png" for i in range(16)}
    assert set(train) | set(test) == expected
    assert sorted(p.name for p in (subset / "test").iterdir()) == [
        "Broken_end",
        "Fuzzyball",
        "good",
    ]


def test_crop_is_anomalous_only_where_mask_is_nonzero(raw_aitex: Path, tmp_path: Path):
    subset = aitex.convert(raw_aitex, tmp_path / "out")

    assert names(subset / "test" / "Broken_end") == ["0003_002_00_00.png", "0003_002_00_05.png"]
    assert names(subset / "test" / "Fuzzyball") == ["0004_019_04_03.png", "0004_019_04_10.png"]
    assert not (subset / "test" / "Nep").exists()
    assert names(subset / "ground_truth" / "Broken_end") == [
        "0003_002_00_00_mask.png",
        "0003_002_00_05_mask.png",
    ]
    mask = read_pixels(subset / "ground_truth" / "Broken_end" / "0003_002_00_00_mask.png")
    assert mask.shape == (HEIGHT, 256)
    assert mask[1, 255] == 255
    assert mask.sum() == 255


def test_crops_hold_the_right_columns(raw_aitex: Path, tmp_path: Path):
    subset = aitex.convert(raw_aitex, tmp_path / "out")

    crop = read_pixels(subset / "test" / "Broken_end" / "0003_002_00_05.png")
    assert crop.shape == (HEIGHT, 256)
    assert np.all(crop == 55)
    for path in (subset / "train" / "good").iterdir():
        index = int(path.stem.rsplit("_", 1)[1])
        base = 0 if path.name.startswith("2306881") else 100
        assert np.all(read_pixels(path) == base + index)


def test_split_is_reproducible(raw_aitex: Path, tmp_path: Path):
    first = aitex.convert(raw_aitex, tmp_path / "a")
    second = aitex.convert(raw_aitex, tmp_path / "b")

    assert names(first / "test" / "good") == names(second / "test" / "good")


def test_source_is_unchanged(raw_aitex: Path, tmp_path: Path):
    before = snapshot(raw_aitex)
    aitex.convert(raw_aitex, tmp_path / "out")

    assert snapshot(raw_aitex) == before


def test_short_strip_gives_narrow_last_crop():
    assert aitex.crop_boxes(600, 4) == [(0, 0, 256, 4), (256, 0, 512, 4), (512, 0, 600, 4)]
    assert len(aitex.crop_boxes(4096, 256)) == 16


def test_missing_mask_folder_is_named(raw_aitex: Path, tmp_path: Path):
    for path in (raw_aitex / "Mask_images").iterdir():
        path.unlink()
    (raw_aitex / "Mask_images").rmdir()

    with pytest.raises(FileNotFoundError, match="Mask_images"):
        aitex.convert(raw_aitex, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_mask_file_stops_unless_skipped(raw_aitex: Path, tmp_path: Path):
    (raw_aitex / "Mask_images" / "0003_002_00_mask.png").unlink()

    with pytest.raises(FileNotFoundError, match="0003_002_00_mask.png"):
        aitex.convert(raw_aitex, tmp_path / "out")
    subset = aitex.convert(raw_aitex, tmp_path / "out", skip_missing_masks=True)
    assert not (subset / "test" / "Broken_end").exists()
    assert len(names(subset / "test" / "Fuzzyball")) == 2


def test_unknown_defect_code_is_rejected(raw_aitex: Path, tmp_path: Path):
    write_image(raw_aitex / "Defect_images" / "0006_999_00.png", _strip(512, 0))
    write_image(raw_aitex / "Mask_images" / "0006_999_00_mask.png", _mask(512, [3]))

    with pytest.raises(ValueError, match="0006_999_00.png"):
        aitex.convert(raw_aitex, tmp_path / "out")


def test_mask_size_mismatch_is_rejected(raw_aitex: Path, tmp_path: Path):
    write_image(raw_aitex / "Mask_images" / "0005_030_01_mask.png", _mask(512, []))

    with pytest.raises(ValueError, match="0005_030_01_mask.png"):
        aitex.convert(raw_aitex, tmp_path / "out")
    assert list(tmp_path.glob(".out.partial-*")) == []


def test_cli_check_prints_counts_beside_published(raw_aitex: Path, tmp_path: Path, capsys):
    status = aitex.main(["--source", str(raw_aitex), "--output", str(tmp_path / "out"), "--check"])

    report = capsys.readouterr().out
    assert status == 1  # a miniature data set cannot match the published counts
    assert "train/good" in report
    assert "1692" in report
    assert "MISMATCH" in report


def test_cli_reports_missing_source(tmp_path: Path, capsys):
    status = aitex.main(["--source", str(tmp_path / "nowhere"), "--output", str(tmp_path / "out")])

    assert status == 2
    assert "NODefect_images" in capsys.readouterr().err


def test_output_passes_sclib_layout_check(raw_aitex: Path, tmp_path: Path):
    subset = aitex.convert(raw_aitex, tmp_path / "out")

    report = check_layout(subset)
    records = discover(subset)
    assert report.ok, str(report)
    anomalies = [record for record in records if record.label == 1]
    assert len(anomalies) == 4
    assert all(record.mask_path is not None for record in anomalies)
