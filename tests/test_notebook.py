"""Notebook setup: parameters resolve into a config and folders outside the data."""

from __future__ import annotations

import logging

import pytest

from sclib.notebook import start


@pytest.fixture(autouse=True)
def restore_root_logging():
    """start() reconfigures the root logger; put the test runner's handlers back."""
    root_logger = logging.getLogger()
    saved_handlers, saved_level = root_logger.handlers[:], root_logger.level
    yield
    root_logger.handlers[:] = saved_handlers
    root_logger.setLevel(saved_level)


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


def test_start_logs_info_to_stdout_and_warnings_to_stderr(tiny_mvtec, capsys):
    start("tiny", tiny_mvtec)
    logging.getLogger("sclib.check").info("progress line")
    logging.getLogger("sclib.check").warning("problem line")
    output = capsys.readouterr()
    assert "sclib.check: progress line" in output.out
    assert "progress line" not in output.err
    assert "sclib.check: problem line" in output.err
    assert "problem line" not in output.out
