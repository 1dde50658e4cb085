"""Shared converter helpers: staged output, 75/25 split, mask reading, count check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data_scripts import _common as common
from tests.data_scripts import write_image


def test_staged_output_renames_into_place(tmp_path: Path):
    with common.staged_output(tmp_path / "out", [tmp_path / "src"]) as staging:
        assert staging.parent == tmp_path
        (staging / "a.txt").write_text("a")
        assert not (tmp_path / "out").exists()

    assert (tmp_path / "out" / "a.txt").read_text() == "a"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_staged_output_cleans_up_after_error(tmp_path: Path):
    with pytest.raises(RuntimeError):
        with common.staged_output(tmp_path / "out", []) as staging:
            (staging / "a.txt").write_text("a")
            raise RuntimeError("conversion failed")

    assert list(tmp_path.iterdir()) == []


def test_staged_output_fills_an_empty_folder(tmp_path: Path):
    (tmp_path / "out").mkdir()
    with common.staged_output(tmp_path / "out", []) as staging:
        (staging / "a.txt").write_text("a")

    assert (tmp_path / "out" / "a.txt").is_file()


def test_staged_output_rejects_non_empty_folder(tmp_path: Path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")

    with pytest.raises(FileExistsError, match="--overwrite"):
        with common.staged_output(tmp_path / "out", []):
            pass
    assert (tmp_path / "out" / "old.txt").is_file()


def test_staged_output_overwrite_replaces_contents(tmp_path: Path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")

    with common.staged_output(tmp_path / "out", [], overwrite=True) as staging:
        (staging / "new.txt").write_text("new")

    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_staged_output_never_writes_into_source(tmp_path: Path):
    source = tmp_path / "raw"
    source.mkdir()

    with pytest.raises(ValueError, match="inside the source"):
        with common.staged_output(source / "converted", [source]):
            pass
    with pytest.raises(ValueError, match="inside the source"):
        with common.staged_output(source, [source], overwrite=True):
            pass
    with pytest.raises(ValueError, match="inside the output"):
        with common.staged_output(tmp_path, [source], overwrite=True):
            pass
    assert list(source.iterdir()) == []


def test_split_normals_follows_published_rule():
    items = [f"{i:04d}" for i in range(1143)]

    train, test = common.split_normals(items)

    assert (len(train), len(test)) == (857, 286)
    assert sorted(train + test) == items
    assert common.split_normals(items) == (train, test)


@pytest.mark.parametrize(
    ("count", "n_test"), [(2256, 564), (14000, 3500), (98, 25), (100, 25), (2695, 674)]
)
def test_split_normals_gives_published_test_counts(count: int, n_test: int):
    _, test = common.split_normals(list(range(count)))

    assert len(test) == n_test


def test_split_normals_needs_two_items():
    with pytest.raises(ValueError, match="at least 2"):
        common.split_normals(["only"])


def test_load_mask_reads_any_nonzero_channel(tmp_path: Path):
    rgb = np.zeros((3, 4, 3), dtype=np.uint8)
    rgb[1, 2, 2] = 1
    grey = np.zeros((3, 4), dtype=np.uint8)
    grey[0, 0] = 255

    rgb_mask = common.load_mask(write_image(tmp_path / "rgb.png", rgb))
    grey_mask = common.load_mask(write_image(tmp_path / "grey.bmp", grey))

    assert rgb_mask.shape == (3, 4)
    assert rgb_mask.sum() == 1
    assert rgb_mask[1, 2]
    assert grey_mask.sum() == 1
    assert grey_mask[0, 0]


def test_compare_counts_flags_mismatch_and_known_deviation():
    counts = common.SubsetCounts(
        train_good=857, test_good=286, anomalies={"defect": 53}, masks={"defect": 53}
    )
    published = common.Published(
        train_good=594,
        test_good=286,
        anomalies=54,
        n_classes=1,
        known_deviations={"train/good": (857, "rule gives 857")},
    )

    rows = {row.name: row for row in common.compare_counts(counts, published)}

    assert rows["train/good"].status == "known"
    assert rows["test/good"].status == "ok"
    assert rows["anomalies"].status == "MISMATCH"
    assert rows["defect classes"].status == "ok"
    assert rows["test/defect"].status == ""


def test_known_deviation_needs_the_rule_count():
    counts = common.SubsetCounts(train_good=600, test_good=286, anomalies={}, masks={})
    published = common.Published(train_good=594, known_deviations={"train/good": (857, "rule")})

    rows = {row.name: row for row in common.compare_counts(counts, published)}

    assert rows["train/good"].status == "MISMATCH"


def test_check_output_reports_missing_subset(tmp_path: Path):
    (tmp_path / "a" / "train" / "good").mkdir(parents=True)
    published = {"a": common.Published(train_good=0), "b": common.Published(train_good=1)}

    report, ok = common.check_output(tmp_path, published)

    assert not ok
    assert "subset b" in report
    assert "missing" in report


def test_check_output_counts_tiny_mvtec(tiny_mvtec: Path):
    published = {
        "widget": common.Published(
            train_good=8, test_good=4, anomalies=6, n_classes=2, per_class={"scratch": 3, "dent": 3}
        )
    }

    report, ok = common.check_output(tiny_mvtec.parent, published)

    assert ok, report
    assert "MISMATCH" not in report
    assert common.count_subset(tiny_mvtec).masks == {"dent": 0, "scratch": 3}


@pytest.mark.parametrize("source_kind", ["missing", "file"])
def test_run_cli_names_invalid_source(tmp_path: Path, capsys, source_kind: str):
    source = tmp_path / "download"
    if source_kind == "file":
        source.write_text("not a folder")
    parser = common.make_parser("Convert a test set.", "  <class>/<name>.png")

    def convert(args):
        raise AssertionError("convert must not run without a source folder")

    status = common.run_cli(
        parser, ["--source", str(source), "--output", str(tmp_path / "out")], convert, {}
    )

    error = capsys.readouterr().err
    assert status == 2
    assert f"--source folder not found: {source}" in error
    assert "<class>/<name>.png" in error
    assert not (tmp_path / "out").exists()
