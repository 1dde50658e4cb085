"""ELPV protocol counts and the offline build into the MVTec AD layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.model_selection import train_test_split

from sclib.data.elpv import MARKER_NAME, build_elpv, default_labels_path, elpv_split_table
from sclib.data.layout import check_layout, discover
from sclib.data.protocol import make_split


def test_split_table_counts():
    table = elpv_split_table()
    counts = table.groupby(["split", "defect_class"]).size().to_dict()
    assert counts == {
        ("train", "good"): 1131,
        ("test", "good"): 377,
        ("test", "mono"): 313,
        ("test", "poly"): 402,
    }


def test_split_table_drops_uncertain_cells():
    table = elpv_split_table()
    assert set(np.round(table["probability"], 3)) == {0.0, 1.0}
    assert len(table) == 2624 - 117 - 178 - 56 - 50


def test_split_table_labels_follow_probability():
    table = elpv_split_table()
    assert (table["label"] == (table["probability"] == 1.0).astype(int)).all()
    anomalies = table[table["label"] == 1]
    assert (anomalies["defect_class"] == anomalies["cell_type"]).all()
    assert (anomalies["split"] == "test").all()


def test_split_table_file_names_unique_and_sourced():
    table = elpv_split_table()
    assert table["file_name"].is_unique
    assert table["source_index"].is_monotonic_increasing
    first = table.iloc[0]
    assert first["source_path"] == "images/cell0001.png"
    assert first["file_name"] == "test/mono/cell0001.png"


def test_split_table_matches_reference_split():
    # The protocol restated with the parser of the elpv-dataset package itself.
    data = np.genfromtxt(
        default_labels_path(), dtype=["|S19", "<f8", "|S4"], names=["path", "probability", "type"]
    )
    names = np.char.decode(data["path"])
    normals = [
        Path(name).stem for name, p in zip(names, data["probability"], strict=True) if p == 0.0
    ]
    train, test = train_test_split(normals, test_size=0.25, random_state=42)
    table = elpv_split_table()
    normal_rows = table[table["label"] == 0]
    by_split = normal_rows.groupby("split")["source_path"].apply(
        lambda s: {Path(p).stem for p in s}
    )
    assert by_split["train"] == set(train)
    assert by_split["test"] == set(test)


def test_split_table_is_deterministic():
    assert elpv_split_table().equals(elpv_split_table())


@pytest.fixture(scope="module")
def elpv_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("elpv_data")
    subset = build_elpv(root)
    yield subset
    shutil.rmtree(root)  # about 200 MB of PNG files


def test_build_elpv_counts(elpv_root):
    records = discover(elpv_root)
    counts = {}
    for record in records:
        counts[(record.split, record.defect_class)] = (
            counts.get((record.split, record.defect_class), 0) + 1
        )
    assert counts == {
        ("train", "good"): 1131,
        ("test", "good"): 377,
        ("test", "mono"): 313,
        ("test", "poly"): 402,
    }


def test_build_elpv_copies_pixels(elpv_root):
    source = default_labels_path().parent / "images" / "cell0004.png"
    written = elpv_root / "train" / "good" / "cell0004.png"
    assert written.read_bytes() == source.read_bytes()


def test_build_elpv_layout_passes_check(elpv_root):
    report = check_layout(elpv_root, decode=False)
    assert report.problems == []
    assert set(report.summary["sizes"].str.split(" ").str[0]) == {"300x300"}


def test_build_elpv_ten_shot_general_split(elpv_root):
    split = make_split(discover(elpv_root), n_anomaly=10, seed=0)
    assert len(split.train_normal) == 1131
    assert len(split.test) == 377 + 715 - 10


def test_build_elpv_is_idempotent(elpv_root):
    marker = elpv_root / MARKER_NAME
    before = marker.stat().st_mtime_ns
    assert build_elpv(elpv_root.parent) == elpv_root
    assert marker.stat().st_mtime_ns == before
    assert json.loads(marker.read_text())["counts"]["train/good"] == 1131


# Small fake package: labels.csv and a few images, for the build mechanics.
def _fake_package(folder: Path, extra_bmp: bool = False) -> Path:
    images = folder / "images"
    images.mkdir(parents=True)
    rows = [
        ("cell0001.png", 1.0, "mono"),
        ("cell0002.png", 0.0, "mono"),
        ("cell0003.png", 0.3333333333333333, "poly"),
        ("cell0004.png", 0.0, "poly"),
        ("cell0005.png", 1.0, "poly"),
        ("cell0006.png", 0.0, "mono"),
        ("cell0007.png", 0.6666666666666666, "mono"),
        ("cell0008.png", 0.0, "poly"),
    ]
    if extra_bmp:
        rows.append(("cell0009.bmp", 1.0, "mono"))
    rng = np.random.default_rng(0)
    for name, _, _ in rows:
        Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8)).save(images / name)
    lines = [f"images/{name}  {probability}  {kind}" for name, probability, kind in rows]
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder / "labels.csv"


def test_fake_build_counts(tmp_path):
    labels = _fake_package(tmp_path / "package")
    subset = build_elpv(tmp_path / "out", labels_path=labels)
    assert subset == tmp_path / "out" / "elpv"
    n_train = len(list((subset / "train" / "good").iterdir()))
    n_test_good = len(list((subset / "test" / "good").iterdir()))
    assert (n_train, n_test_good) == (3, 1)
    assert [p.name for p in (subset / "test" / "mono").iterdir()] == ["cell0001.png"]
    assert [p.name for p in (subset / "test" / "poly").iterdir()] == ["cell0005.png"]
    assert not list((tmp_path / "out").glob(".elpv-build-*"))


def test_fake_build_reencodes_other_formats(tmp_path):
    labels = _fake_package(tmp_path / "package", extra_bmp=True)
    subset = build_elpv(tmp_path / "out", labels_path=labels)
    written = subset / "test" / "mono" / "cell0009.png"
    with Image.open(written) as image:
        assert image.format == "PNG"


def test_fake_build_redoes_partial_build(tmp_path):
    labels = _fake_package(tmp_path / "package")
    partial = tmp_path / "out" / "elpv" / "train" / "good"
    partial.mkdir(parents=True)
    (partial / "cell0002.png").write_bytes(b"half")
    leftover = tmp_path / "out" / ".elpv-build-old"
    leftover.mkdir()
    subset = build_elpv(tmp_path / "out", labels_path=labels)
    assert (subset / MARKER_NAME).is_file()
    assert (subset / "train" / "good" / "cell0002.png").read_bytes() != b"half"
    assert not leftover.exists()


def test_fake_build_keeps_foreign_folder(tmp_path):
    labels = _fake_package(tmp_path / "package")
    foreign = tmp_path / "out" / "elpv"
    foreign.mkdir(parents=True)
    (foreign / "thesis.docx").write_text("keep me")
    with pytest.raises(ValueError, match="Move it away") as caught:
        build_elpv(tmp_path / "out", labels_path=labels)
    assert str(foreign) in str(caught.value)
    assert (foreign / "thesis.docx").read_text() == "keep me"


def test_fake_build_rejects_unknown_probability(tmp_path):
    labels = _fake_package(tmp_path / "package")
    labels.write_text(labels.read_text() + "images/cell0001.png  0.5  mono\n")
    with pytest.raises(ValueError, match="0.5"):
        build_elpv(tmp_path / "out", labels_path=labels)


def test_missing_labels_file_says_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="pip install elpv-dataset"):
        elpv_split_table(tmp_path / "labels.csv")
