"""Specification of sclib.runs: fresh run folders, atomic writes, version records."""

from __future__ import annotations

import json
import re
from datetime import datetime

import matplotlib
import pandas as pd
import pytest
from matplotlib.figure import Figure

import sclib.runs
from sclib.runs import (
    atomic_open,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    library_versions,
    new_run_dir,
    save_figure_atomic,
    write_csv_atomic,
)

matplotlib.use("Agg")


def _leftovers(folder):
    return sorted(path.name for path in folder.iterdir() if path.name.endswith(".tmp"))


def test_new_run_dir_names_folder_with_timestamp(tmp_path):
    run_dir = new_run_dir(tmp_path / "runs", name="elpv")

    assert run_dir.is_dir()
    assert run_dir.parent == tmp_path / "runs"
    assert re.fullmatch(r"elpv-\d{8}-\d{6}(-\d+)?", run_dir.name)


def test_new_run_dir_never_reuses_folder(tmp_path):
    folders = [new_run_dir(tmp_path, name="elpv") for _ in range(3)]

    assert len(set(folders)) == 3
    assert all(folder.is_dir() for folder in folders)


def test_new_run_dir_counts_within_one_second(tmp_path, monkeypatch):
    class FrozenClock:
        @staticmethod
        def now():
            return datetime(2024, 5, 1, 12, 0, 0)

    monkeypatch.setattr(sclib.runs, "datetime", FrozenClock)
    first = new_run_dir(tmp_path, name="widget")
    (first / "metrics.json").write_text("{}")

    second = new_run_dir(tmp_path, name="widget")
    third = new_run_dir(tmp_path, name="widget")

    assert first.name == "widget-20240501-120000"
    assert second.name == "widget-20240501-120000-2"
    assert third.name == "widget-20240501-120000-3"
    assert (first / "metrics.json").read_text() == "{}"
    assert list(second.iterdir()) == []


@pytest.mark.parametrize("name", ["", "a/b", ".."])
def test_new_run_dir_rejects_path_like_names(tmp_path, name):
    with pytest.raises(ValueError, match="run name"):
        new_run_dir(tmp_path, name=name)


def test_new_run_dir_parent_file_names_path(tmp_path):
    parent = tmp_path / "runs"
    parent.write_text("not a folder")
    with pytest.raises(FileExistsError, match=f"run parent {parent} is a file"):
        new_run_dir(parent, "elpv")


def test_atomic_writes_leave_no_temp_files(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "hello\n")
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    atomic_write_json(tmp_path / "c.json", {"auroc": 0.5})
    write_csv_atomic(pd.DataFrame({"x": [1, 2]}), tmp_path / "d.csv")

    assert (tmp_path / "a.txt").read_text() == "hello\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert json.loads((tmp_path / "c.json").read_text()) == {"auroc": 0.5}
    assert pd.read_csv(tmp_path / "d.csv")["x"].tolist() == [1, 2]
    assert _leftovers(tmp_path) == []


def test_failing_writer_keeps_old_file(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")

    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_open(target, "w") as handle:
            handle.write("half of the new con")
            raise RuntimeError("disk full")

    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_failing_csv_writer_keeps_old_file(tmp_path):
    target = tmp_path / "scores.csv"
    target.write_text("old")

    class BrokenFrame:
        def to_csv(self, handle, index):
            handle.write("path,score\n")
            raise OSError("device lost")

    with pytest.raises(OSError, match="device lost"):
        write_csv_atomic(BrokenFrame(), target)

    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_json_writer_keeps_file_on_type_error(tmp_path):
    target = tmp_path / "config.json"
    target.write_text("old")

    with pytest.raises(TypeError, match="object"):
        atomic_write_json(target, {"value": object()})

    assert target.read_text() == "old"


def test_json_writer_converts_numpy_and_paths(tmp_path):
    import numpy as np

    atomic_write_json(tmp_path / "v.json", {"n": np.int64(3), "a": np.arange(2), "p": tmp_path})

    values = json.loads((tmp_path / "v.json").read_text())
    assert values == {"n": 3, "a": [0, 1], "p": str(tmp_path)}


def test_atomic_open_needs_existing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        atomic_write_text(tmp_path / "missing" / "a.txt", "x")


def test_save_figure_atomic_writes_png(tmp_path):
    figure = Figure()
    figure.add_subplot().plot([0, 1], [0, 1])

    path = save_figure_atomic(figure, tmp_path / "roc.png")

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _leftovers(tmp_path) == []


def test_library_versions_lists_main_libraries():
    versions = library_versions()

    for key in ("python", "torch", "torchvision", "timm", "numpy", "sklearn", "sclib",
                "platform", "cpu_capability", "cuda"):
        assert key in versions
    assert versions["torch"]
    json.dumps(versions)
