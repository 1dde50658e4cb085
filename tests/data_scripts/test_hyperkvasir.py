"""Hyper-Kvasir converter: upper-GI landmarks are normal, findings are 4 anomaly classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from data_scripts import hyperkvasir
from sclib.data import discover
from tests.data_scripts import names, snapshot, write_image

LANDMARKS = {"pylorus": 3, "retroflex-stomach": 2, "z-line": 3}
FINDINGS = {"barretts": 1, "barretts-short-segment": 1, "esophagitis-a": 2, "esophagitis-b-d": 1}


def _fill(upper_gi: Path) -> None:
    for category, folders in (
        ("anatomical-landmarks", LANDMARKS),
        ("pathological-findings", FINDINGS),
    ):
        for folder, count in folders.items():
            for i in range(count):
                write_image(
                    upper_gi / category / folder / f"{folder[:3]}-{i}.jpg",
                    np.full((4, 4, 3), i, np.uint8),
                )


@pytest.fixture
def raw_hyperkvasir(tmp_path: Path) -> Path:
    root = tmp_path / "hyper-kvasir"
    _fill(root / "labeled-images" / "upper-gi-tract")
    # Lower-GI images must not enter the subset.
    write_image(
        root / "labeled-images" / "lower-gi-tract" / "anatomical-landmarks" / "cecum" / "c.jpg",
        np.zeros((4, 4, 3), np.uint8),
    )
    return root


def test_convert_writes_mvtec_layout(raw_hyperkvasir: Path, tmp_path: Path):
    subset = hyperkvasir.convert(raw_hyperkvasir, tmp_path / "out")

    train, test = names(subset / "train" / "good"), names(subset / "test" / "good")
    assert (len(train), len(test)) == (6, 2)
    assert all(not name.startswith("cecum") for name in train + test)
    assert sorted(p.name for p in (subset / "test").iterdir()) == sorted(FINDINGS) + ["good"]
    assert names(subset / "test" / "esophagitis-a") == ["eso-0.jpg", "eso-1.jpg"]


def test_split_uses_sorted_landmark_order(raw_hyperkvasir: Path, tmp_path: Path):
    subset = hyperkvasir.convert(raw_hyperkvasir, tmp_path / "out")

    ordered = [
        f"{folder}_{folder[:3]}-{i}.jpg"
        for folder in sorted(LANDMARKS)
        for i in range(LANDMARKS[folder])
    ]
    _, expected_test = train_test_split(ordered, test_size=0.25, random_state=42)
    assert names(subset / "test" / "good") == sorted(expected_test)


def test_source_is_unchanged(raw_hyperkvasir: Path, tmp_path: Path):
    before = snapshot(raw_hyperkvasir)
    hyperkvasir.convert(raw_hyperkvasir, tmp_path / "out")

    assert snapshot(raw_hyperkvasir) == before


def test_upper_gi_folder_is_accepted_as_source(tmp_path: Path):
    _fill(tmp_path / "upper-gi-tract")

    subset = hyperkvasir.convert(tmp_path / "upper-gi-tract", tmp_path / "out")

    assert len(names(subset / "test" / "barretts")) == 1


def test_missing_landmarks_are_named(tmp_path: Path):
    (tmp_path / "raw" / "labeled-images").mkdir(parents=True)

    with pytest.raises(FileNotFoundError, match="anatomical-landmarks"):
        hyperkvasir.convert(tmp_path / "raw", tmp_path / "out")


def test_missing_findings_are_named(raw_hyperkvasir: Path, tmp_path: Path):
    findings = raw_hyperkvasir / "labeled-images" / "upper-gi-tract" / "pathological-findings"
    findings.rename(findings.with_name("findings-moved"))

    with pytest.raises(FileNotFoundError, match="pathological-findings"):
        hyperkvasir.convert(raw_hyperkvasir, tmp_path / "out")


def test_cli_check_prints_per_class_counts(raw_hyperkvasir: Path, tmp_path: Path, capsys):
    status = hyperkvasir.main(
        ["--source", str(raw_hyperkvasir), "--output", str(tmp_path / "out"), "--check"]
    )

    report = capsys.readouterr().out
    assert status == 1
    assert "test/esophagitis-b-d" in report
    assert "260" in report


def test_output_is_discovered_by_sclib(raw_hyperkvasir: Path, tmp_path: Path):
    subset = hyperkvasir.convert(raw_hyperkvasir, tmp_path / "out")

    records = discover(subset)
    assert len(records) == 13
    assert {record.defect_class for record in records if record.label == 1} == set(FINDINGS)
