"""The OSAD split protocol: settings, the 1-shot rule, seeds, contamination and manifests."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest

from sclib.data.layout import ImageRecord, discover
from sclib.data.protocol import ROLES, Split, make_split, read_manifest
from tests.conftest import make_tiny_mvtec

DEFECTS = {"crack": 8, "hole": 7, "stain": 5}


def _records(n_train=30, n_test_good=12, defects=None) -> list[ImageRecord]:
    """Build records of a synthetic subset. make_split does not open the files."""
    defects = DEFECTS if defects is None else defects
    root = Path("/data/part")
    records = [
        ImageRecord(root / "train" / "good" / f"{i:03d}.png", 0, "good", "train")
        for i in range(n_train)
    ]
    records += [
        ImageRecord(root / "test" / "good" / f"{i:03d}.png", 0, "good", "test")
        for i in range(n_test_good)
    ]
    for defect, count in defects.items():
        records += [
            ImageRecord(root / "test" / defect / f"{i:03d}.png", 1, defect, "test")
            for i in range(count)
        ]
    return records


def _paths(records) -> list[str]:
    return [str(record.path) for record in records]


def _role_counts(split: Split) -> dict[str, int]:
    return split.manifest["role"].value_counts().reindex(ROLES, fill_value=0).to_dict()


def test_general_split_counts_tiny(tiny_mvtec):
    split = make_split(discover(tiny_mvtec), n_anomaly=2, one_shot_from_ten=False)
    assert len(split.train_normal) == 8
    assert len(split.train_anomaly) == 2
    assert len(split.test) == 4 + 6 - 2
    assert split.unused == []
    assert _role_counts(split) == {"train_normal": 8, "train_anomaly": 2, "test": 8, "unused": 0}


def test_general_split_counts_ten_shot():
    split = make_split(_records(), n_anomaly=10, seed=1)
    assert len(split.train_normal) == 30
    assert len(split.train_anomaly) == 10
    assert all(record.label == 1 for record in split.train_anomaly)
    assert len(split.test) == 12 + 20 - 10
    assert split.unused == []


def test_split_covers_every_record_once():
    records = _records()
    split = make_split(records, n_anomaly=1, seed=4, contamination=0.1)
    assert sorted(split.manifest["path"]) == sorted(_paths(records))
    assert split.manifest["path"].is_unique


def test_labelled_anomalies_leave_test():
    split = make_split(_records(), n_anomaly=10, seed=2)
    assert not set(_paths(split.train_anomaly)) & set(_paths(split.test))


def test_one_shot_test_equals_ten_shot_test():
    records = _records()
    ten_shot = make_split(records, n_anomaly=10, seed=5)
    one_shot = make_split(records, n_anomaly=1, seed=5)
    assert _paths(one_shot.test) == _paths(ten_shot.test)
    assert _paths(one_shot.train_anomaly) == _paths(ten_shot.train_anomaly[:1])
    assert _paths(one_shot.unused) == sorted(_paths(ten_shot.train_anomaly[1:]))


def test_five_shot_is_prefix_of_ten_shot():
    records = _records()
    ten_shot = make_split(records, n_anomaly=10, seed=8)
    five_shot = make_split(records, n_anomaly=5, seed=8)
    assert _paths(five_shot.train_anomaly) == _paths(ten_shot.train_anomaly[:5])
    assert _paths(five_shot.test) == _paths(ten_shot.test)
    assert len(five_shot.unused) == 5


def test_one_shot_without_rule_keeps_other_anomalies():
    split = make_split(_records(), n_anomaly=1, seed=5, one_shot_from_ten=False)
    assert len(split.test) == 12 + 20 - 1
    assert split.unused == []


def test_one_shot_few_anomalies_keeps_test_anomalies(tiny_mvtec, caplog):
    split = make_split(discover(tiny_mvtec), n_anomaly=1, seed=0)
    assert len(split.train_anomaly) == 1
    assert split.unused == []
    assert len(split.test) == 4 + 6 - 1
    assert sum(record.label for record in split.test) == 5
    assert "drawing 1 instead" in caplog.text


def test_few_shot_ten_anomalies_keeps_test_anomalies():
    split = make_split(_records(defects={"crack": 10}), n_anomaly=3, seed=0)
    assert len(split.train_anomaly) == 3
    assert split.unused == []
    assert sum(record.label for record in split.test) == 7


def test_hard_one_shot_few_anomalies_keeps_draw():
    split = make_split(
        _records(defects={"crack": 4, "hole": 3}), setting="hard", n_anomaly=1, known_class="hole"
    )
    assert len(split.unused) == 2
    assert {record.defect_class for record in split.test if record.label == 1} == {"crack"}


def test_same_seed_same_manifest():
    first = make_split(_records(), n_anomaly=10, seed=3)
    second = make_split(_records(), n_anomaly=10, seed=3)
    pd.testing.assert_frame_equal(first.manifest, second.manifest)


def test_different_seed_different_draw():
    draws = {
        tuple(_paths(make_split(_records(), n_anomaly=10, seed=seed).train_anomaly))
        for seed in range(4)
    }
    assert len(draws) == 4


def test_record_order_does_not_change_split():
    records = _records()
    shuffled = list(records)
    random.Random(11).shuffle(shuffled)
    first = make_split(records, n_anomaly=10, seed=6, contamination=0.1)
    second = make_split(shuffled, n_anomaly=10, seed=6, contamination=0.1)
    pd.testing.assert_frame_equal(first.manifest, second.manifest)


def _relative_manifest(split: Split, root: Path) -> pd.DataFrame:
    manifest = split.manifest.copy()
    manifest["path"] = [str(Path(p).relative_to(root)) for p in manifest["path"]]
    return manifest


def test_file_order_does_not_change_split(tmp_path, monkeypatch):
    defects = {"scratch": 6, "dent": 6}
    forward = make_tiny_mvtec(tmp_path / "a", defects=defects, size=8)
    # A second copy with the files written in reverse order.
    source_files = sorted(p for p in forward.rglob("*") if p.is_file())
    backward = tmp_path / "b" / "widget"
    for path in reversed(source_files):
        target = backward / path.relative_to(forward)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())

    original_iterdir = Path.iterdir

    def reversed_iterdir(self):
        return iter(sorted(original_iterdir(self), reverse=True))

    first = make_split(discover(forward), n_anomaly=3, seed=9)
    monkeypatch.setattr(Path, "iterdir", reversed_iterdir)
    second = make_split(discover(backward), n_anomaly=3, seed=9)
    pd.testing.assert_frame_equal(
        _relative_manifest(first, forward), _relative_manifest(second, backward)
    )


def test_hard_setting_removes_known_class():
    records = _records(defects={"crack": 14, "hole": 7, "stain": 5})
    split = make_split(records, setting="hard", n_anomaly=10, known_class="crack", seed=0)
    assert {record.defect_class for record in split.train_anomaly} == {"crack"}
    assert len(split.train_anomaly) == 10
    assert "crack" not in {record.defect_class for record in split.test}
    assert {record.defect_class for record in split.unused} == {"crack"}
    assert len(split.unused) == 14 - 10
    assert len(split.test) == 12 + 7 + 5
    assert split.seen_classes == ["crack"]


def test_hard_one_shot_removes_known_class():
    split = make_split(_records(), setting="hard", n_anomaly=1, known_class="hole", seed=0)
    assert [record.defect_class for record in split.train_anomaly] == ["hole"]
    assert "hole" not in {record.defect_class for record in split.test}
    assert len(split.unused) == 7 - 1


def test_hard_one_shot_test_equals_ten_shot_test():
    records = _records(defects={"crack": 12, "hole": 11})
    ten_shot = make_split(records, setting="hard", n_anomaly=10, known_class="crack", seed=1)
    one_shot = make_split(records, setting="hard", n_anomaly=1, known_class="crack", seed=1)
    assert _paths(one_shot.test) == _paths(ten_shot.test)
    assert _paths(one_shot.train_anomaly) == _paths(ten_shot.train_anomaly[:1])


def test_hard_requires_known_class():
    with pytest.raises(ValueError, match="known_class"):
        make_split(_records(), setting="hard", n_anomaly=1)


def test_hard_unknown_known_class_lists_classes():
    with pytest.raises(ValueError) as caught:
        make_split(_records(), setting="hard", n_anomaly=1, known_class="scratch")
    message = str(caught.value)
    assert "'scratch'" in message
    assert "crack, hole, stain" in message


def test_known_class_rejected_outside_hard():
    with pytest.raises(ValueError, match="setting='hard'"):
        make_split(_records(), setting="general", known_class="crack")


def test_anomaly_free_setting():
    records = _records()
    split = make_split(records, setting="anomaly_free", seed=0)
    assert split.train_anomaly == []
    assert split.unused == []
    assert split.seen_classes == []
    assert len(split.test) == 12 + 20
    assert len(split.train_normal) == 30


def test_general_with_zero_anomalies_matches_anomaly_free():
    first = make_split(_records(), setting="general", n_anomaly=0)
    second = make_split(_records(), setting="anomaly_free")
    pd.testing.assert_frame_equal(first.manifest, second.manifest)


def test_contamination_hides_anomalies_in_train():
    clean = make_split(_records(), n_anomaly=2, seed=3)
    split = make_split(_records(), n_anomaly=2, seed=3, contamination=0.2)
    hidden = split.manifest[split.manifest["contaminated"]]
    assert len(hidden) == round(0.2 * 30)
    assert (hidden["role"] == "train_normal").all()
    assert (hidden["label"] == 1).all()
    assert len(split.train_normal) == 30 + 6
    assert len(split.test) == len(clean.test) - 6
    assert not set(hidden["path"]) & set(_paths(split.test))
    assert not set(hidden["path"]) & set(_paths(split.train_anomaly))
    assert _paths(split.train_anomaly) == _paths(clean.train_anomaly)


def test_no_contamination_column_all_false():
    split = make_split(_records(), n_anomaly=2)
    assert "contaminated" in split.manifest.columns
    assert not split.manifest["contaminated"].any()


def test_contamination_needs_enough_anomalies():
    with pytest.raises(ValueError, match="hidden anomalies"):
        make_split(_records(n_train=300), n_anomaly=10, contamination=0.5)


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 2.0, "0.1", None, float("nan")])
def test_contamination_out_of_range(fraction):
    with pytest.raises(ValueError, match="contamination"):
        make_split(_records(), contamination=fraction)


@pytest.mark.parametrize("seed", [-1, None, 1.5, True])
def test_invalid_seed_raises(seed):
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        make_split(_records(), seed=seed)


def test_too_many_anomalies_says_how_many_exist():
    with pytest.raises(ValueError, match="only 20 anomalies") as caught:
        make_split(_records(), n_anomaly=21)
    assert "n_anomaly=21" in str(caught.value)


def test_too_many_anomalies_hard_names_class():
    with pytest.raises(ValueError, match="class 'stain' has only 5 anomalies"):
        make_split(_records(), setting="hard", n_anomaly=6, known_class="stain")


def test_unknown_setting_lists_settings():
    with pytest.raises(ValueError, match="general, hard, anomaly_free"):
        make_split(_records(), setting="open")


@pytest.mark.parametrize("count", [-1, 1.5, True])
def test_invalid_n_anomaly(count):
    with pytest.raises(ValueError, match="n_anomaly"):
        make_split(_records(), n_anomaly=count)


def test_anomaly_in_train_split_raises():
    records = _records() + [ImageRecord(Path("/data/part/train/good/bad.png"), 1, "crack", "train")]
    with pytest.raises(ValueError, match="bad.png"):
        make_split(records)


def test_no_train_normals_raises():
    with pytest.raises(ValueError, match="train/good"):
        make_split([r for r in _records() if r.split == "test"])


def test_seen_classes_are_labelled_classes():
    split = make_split(_records(), n_anomaly=10, seed=0)
    assert split.seen_classes == sorted({record.defect_class for record in split.train_anomaly})


def test_manifest_round_trip(tmp_path):
    split = make_split(_records(), n_anomaly=1, seed=2, contamination=0.1)
    path = split.write_manifest(tmp_path / "run" / "manifest.csv")
    assert path.is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == ["manifest.csv"]
    table = pd.read_csv(path)
    assert list(table.columns) == ["path", "label", "defect_class", "role", "contaminated"]
    loaded = read_manifest(path)
    pd.testing.assert_frame_equal(loaded.manifest, split.manifest)
    assert loaded.train_anomaly == split.train_anomaly
    assert loaded.test == split.test
    assert loaded.unused == split.unused
    assert loaded.seen_classes == split.seen_classes
    contaminated = [r for r in loaded.train_normal if r.label == 1]
    assert contaminated
    assert all(r.split == "test" for r in contaminated)


def test_manifest_rows_grouped_by_role():
    split = make_split(_records(), n_anomaly=1, seed=2)
    roles = list(split.manifest["role"])
    assert roles == sorted(roles, key=ROLES.index)


def test_read_manifest_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        read_manifest(tmp_path / "missing.csv")
    bad_columns = tmp_path / "bad.csv"
    bad_columns.write_text("path,label\na.png,0\n")
    with pytest.raises(ValueError, match="role"):
        read_manifest(bad_columns)
    bad_role = tmp_path / "role.csv"
    bad_role.write_text("path,label,defect_class,role\na.png,0,good,training\n")
    with pytest.raises(ValueError, match="training"):
        read_manifest(bad_role)
