"""Notebook setup: parameters resolve into a config and folders outside the data."""

from __future__ import annotations

import pytest

from sclib.notebook import start


def test_start_resolves_profile_and_run_dir(tiny_mvtec, tmp_path):
    session = start("tiny", tiny_mvtec, run_dir=tmp_path / "run", seed=None, n_anomaly=2)
    assert session.config.profile == "tiny"
    assert session.config.n_anomaly == 2
    assert session.data_root == tiny_mvtec.resolve()
    assert session.run_dir == tmp_path / "run"
    assert session.run_dir.is_dir()


def test_start_rejects_run_dir_inside_data(tiny_mvtec):
    with pytest.raises(ValueError, match="inside the data folder"):
        start("tiny", tiny_mvtec, run_dir=tiny_mvtec / "run")
    assert not (tiny_mvtec / "run").exists()


def test_start_rejects_runs_parent_inside_data(tiny_mvtec, monkeypatch):
    monkeypatch.setenv("SCLIB_RUNS_DIR", str(tiny_mvtec / "runs"))
    with pytest.raises(ValueError, match="inside the data folder"):
        start("tiny", tiny_mvtec, new_run="nb")
    assert not (tiny_mvtec / "runs").exists()


def test_start_missing_data_root_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_subset"):
        start("tiny", tmp_path / "missing_subset")
