"""MVTec AD checker: layout problems, counts beside the published ones, exit status."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_scripts import mvtec_ad
from tests.data_scripts import snapshot


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def _write_subset(
    root: Path, name: str, train: int, test: int, anomalies: int, classes: int
) -> None:
    for i in range(train):
        _touch(root / name / "train" / "good" / f"{i:03d}.png")
    for i in range(test):
        _touch(root / name / "test" / "good" / f"{i:03d}.png")
    for i in range(anomalies):
        defect = f"defect_{i % classes}"
        _touch(root / name / "test" / defect / f"{i:03d}.png")
        _touch(root / name / "ground_truth" / defect / f"{i:03d}_mask.png")


@pytest.fixture
def two_subsets(tmp_path: Path) -> Path:
    """Empty files in the MVTec AD layout: bottle and toothbrush with the published counts."""
    root = tmp_path / "mvtec_anomaly_detection"
    for name in ("bottle", "toothbrush"):
        _write_subset(root, name, *mvtec_ad._SUBSET_COUNTS[name])
    (root / "license.txt").write_text("licence")
    return root


def test_published_subset_counts_add_up_to_totals():
    total = mvtec_ad.PUBLISHED_TOTAL
    columns = list(zip(*mvtec_ad._SUBSET_COUNTS.values(), strict=True))

    assert len(mvtec_ad._SUBSET_COUNTS) == 15
    assert [sum(column) for column in columns] == [
        total.train_good,
        total.test_good,
        total.anomalies,
        total.n_classes,
    ]


def test_copy_with_published_counts_passes(two_subsets: Path, capsys):
    status = mvtec_ad.main(["--source", str(two_subsets), "--subsets", "bottle", "toothbrush"])

    report = capsys.readouterr().out
    assert status == 0, report
    assert "MISMATCH" not in report
    assert "subset total" in report
    assert "269" in report  # 209 + 60 training images


def test_all_subsets_are_checked_by_default(two_subsets: Path, capsys):
    status = mvtec_ad.main(["--source", str(two_subsets)])

    report = capsys.readouterr().out
    assert status == 1
    assert "subset folder missing" in report
    assert "DRA, Table 5" in report


def test_checker_leaves_the_folder_unchanged(two_subsets: Path):
    before = snapshot(two_subsets)
    mvtec_ad.check(two_subsets, ["bottle"])

    assert snapshot(two_subsets) == before


def test_missing_mask_is_reported(tmp_path: Path):
    _write_subset(tmp_path, "bottle", 209, 20, 63, 3)
    (tmp_path / "bottle" / "ground_truth" / "defect_1" / "004_mask.png").unlink()
    _touch(tmp_path / "bottle" / "ground_truth" / "defect_2" / "999_mask.png")

    report, ok = mvtec_ad.check(tmp_path, ["bottle"])

    assert not ok
    assert "mask missing" in report
    assert "004_mask.png" in report
    assert "mask without image" in report
    assert "MISMATCH" not in report  # the image counts still match


def test_count_mismatch_fails(tmp_path: Path):
    _write_subset(tmp_path, "toothbrush", 60, 12, 29, 1)

    report, ok = mvtec_ad.check(tmp_path, ["toothbrush"])

    assert not ok
    assert "MISMATCH" in report


def test_missing_subset_is_reported(tmp_path: Path):
    _write_subset(tmp_path, "bottle", 209, 20, 63, 3)

    report, ok = mvtec_ad.check(tmp_path, ["bottle", "zipper"])

    assert not ok
    assert "subset folder missing" in report
    assert "zipper" in report


def test_empty_train_folder_is_reported(tmp_path: Path):
    _write_subset(tmp_path, "bottle", 0, 20, 63, 3)

    report, ok = mvtec_ad.check(tmp_path, ["bottle"])

    assert not ok
    assert "no images in" in report


def test_cli_rejects_bad_arguments(tmp_path: Path, capsys):
    assert mvtec_ad.main(["--source", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert mvtec_ad.main(["--source", str(tmp_path), "--subsets", "widget"]) == 2
    assert "widget" in capsys.readouterr().err
