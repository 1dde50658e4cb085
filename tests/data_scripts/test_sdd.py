"""KolektorSDD converter: horizontal thirds, mask-based anomaly rule, 75/25 split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data_scripts import sdd
from sclib.data import discover
from tests.data_scripts import names, read_pixels, snapshot, write_image

HEIGHT, WIDTH = 10, 4  # thirds: rows [0, 3), [3, 6), [6, 10)


def _image(value: int) -> np.ndarray:
    rows = np.arange(HEIGHT)[:, None]
    return np.broadcast_to((value + rows).astype(np.uint8), (HEIGHT, WIDTH)).copy()


def _label(rows: list[int]) -> np.ndarray:
    label = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    for row in rows:
        label[row, 1] = 255
    return label


@pytest.fixture
def raw_sdd(tmp_path: Path) -> Path:
    root = tmp_path / "KolektorSDD"
    defects = {("kos01", "Part0"): [2], ("kos02", "Part1"): [3, 9]}
    for item in ("kos01", "kos02"):
        for part in range(3):
            stem = f"Part{part}"
            write_image(root / item / f"{stem}.jpg", _image(10 * part))
            write_image(root / item / f"{stem}_label.bmp", _label(defects.get((item, stem), [])))
    (root / "readme.txt").write_text("not an item folder")
    return root


def test_convert_writes_thirds_in_mvtec_layout(raw_sdd: Path, tmp_path: Path):
    subset = sdd.convert(raw_sdd, tmp_path / "out")

    train, test = names(subset / "train" / "good"), names(subset / "test" / "good")
    assert len(train) == 11  # 18 thirds, 3 anomalous, 15 normal: 11 / 4
    assert len(test) == 4
    assert not set(train) & set(test)
    assert sorted(p.name for p in (subset / "test").iterdir()) == ["defect", "good"]


def test_third_is_anomalous_only_where_mask_is_nonzero(raw_sdd: Path, tmp_path: Path):
    subset = sdd.convert(raw_sdd, tmp_path / "out")

    assert names(subset / "test" / "defect") == [
        "kos01_Part0_0.png",
        "kos02_Part1_1.png",
        "kos02_Part1_2.png",
    ]
    assert names(subset / "ground_truth" / "defect") == [
        "kos01_Part0_0_mask.png",
        "kos02_Part1_1_mask.png",
        "kos02_Part1_2_mask.png",
    ]
    normal = set(names(subset / "train" / "good")) | set(names(subset / "test" / "good"))
    assert "kos01_Part0_1.png" in normal
    assert "kos02_Part1_0.png" in normal
    mask = read_pixels(subset / "ground_truth" / "defect" / "kos02_Part1_2_mask.png")
    assert mask.shape == (4, WIDTH)  # the bottom third takes the remaining rows
    assert mask[3, 1] == 255
    assert mask.sum() == 255


def test_thirds_hold_the_right_rows(raw_sdd: Path, tmp_path: Path):
    subset = sdd.convert(raw_sdd, tmp_path / "out")

    # JPEG is lossy, so compare the mean of each row with the written row value.
    crop = read_pixels(subset / "test" / "defect" / "kos02_Part1_1.png").astype(float)
    assert crop.shape == (3, WIDTH)
    assert np.allclose(crop.mean(axis=1), [13, 14, 15], atol=2)


def test_third_rows_cover_the_image():
    assert sdd.third_rows(10) == [(0, 3), (3, 6), (6, 10)]
    assert sdd.third_rows(1251) == [(0, 417), (417, 834), (834, 1251)]


def test_source_is_unchanged(raw_sdd: Path, tmp_path: Path):
    before = snapshot(raw_sdd)
    sdd.convert(raw_sdd, tmp_path / "out")

    assert snapshot(raw_sdd) == before


def test_missing_label_is_named(raw_sdd: Path, tmp_path: Path):
    (raw_sdd / "kos02" / "Part2_label.bmp").unlink()

    with pytest.raises(FileNotFoundError, match="Part2_label.bmp"):
        sdd.convert(raw_sdd, tmp_path / "out")


def test_label_size_mismatch_is_rejected(raw_sdd: Path, tmp_path: Path):
    write_image(raw_sdd / "kos01" / "Part1_label.bmp", np.zeros((5, WIDTH), dtype=np.uint8))

    with pytest.raises(ValueError, match="Part1_label.bmp"):
        sdd.convert(raw_sdd, tmp_path / "out")


def test_source_without_images_is_rejected(tmp_path: Path):
    (tmp_path / "empty" / "kos01").mkdir(parents=True)

    with pytest.raises(FileNotFoundError, match="no .jpg images"):
        sdd.convert(tmp_path / "empty", tmp_path / "out")


def test_overwrite_is_needed_for_a_used_output(raw_sdd: Path, tmp_path: Path):
    sdd.convert(raw_sdd, tmp_path / "out")

    with pytest.raises(FileExistsError):
        sdd.convert(raw_sdd, tmp_path / "out")
    subset = sdd.convert(raw_sdd, tmp_path / "out", overwrite=True)
    assert len(names(subset / "train" / "good")) == 11


def test_check_marks_the_published_training_count_as_known():
    counts = sdd.common.SubsetCounts(
        train_good=857, test_good=286, anomalies={"defect": 54}, masks={}
    )

    rows = {row.name: row for row in sdd.common.compare_counts(counts, sdd.PUBLISHED["sdd"])}

    assert rows["train/good"].status == "known"
    assert rows["test/good"].status == "ok"
    assert rows["anomalies"].status == "ok"


def test_cli_check_without_source_reads_existing_output(raw_sdd: Path, tmp_path: Path, capsys):
    sdd.convert(raw_sdd, tmp_path / "out")

    status = sdd.main(["--output", str(tmp_path / "out"), "--check"])

    report = capsys.readouterr().out
    assert status == 1
    assert "594" in report
    assert "test/defect" in report


def test_output_is_discovered_with_masks(raw_sdd: Path, tmp_path: Path):
    subset = sdd.convert(raw_sdd, tmp_path / "out")

    records = discover(subset)
    assert len(records) == 18
    anomalies = [record for record in records if record.label == 1]
    assert [record.mask_path.name for record in anomalies] == [
        "kos01_Part0_0_mask.png",
        "kos02_Part1_1_mask.png",
        "kos02_Part1_2_mask.png",
    ]
