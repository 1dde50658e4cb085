"""The demo command line: argument errors stop before any folder is created."""

from __future__ import annotations

import json

import pytest

from sclib import demo
from sclib.demo import list_notebooks, main


def _notebook_folder(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name in ("01_data.ipynb", "02_saliency.ipynb", "10_extra.ipynb", "notes.ipynb"):
        (folder / name).write_text("{}")
    return folder


def test_list_notebooks_orders_numbered(tmp_path):
    names = [path.name for path in list_notebooks(_notebook_folder(tmp_path))]
    assert names == ["01_data.ipynb", "02_saliency.ipynb", "10_extra.ipynb"]


def test_list_notebooks_pads_prefix(tmp_path):
    selected = list_notebooks(_notebook_folder(tmp_path), ["2", "10"])
    assert [path.name for path in selected] == ["02_saliency.ipynb", "10_extra.ipynb"]


def test_list_notebooks_unknown_prefix_lists_available(tmp_path):
    with pytest.raises(ValueError, match=r"\['01', '02', '10'\]"):
        list_notebooks(_notebook_folder(tmp_path), ["99"])


def test_demo_rejects_unknown_profile(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SCLIB_RUNS_DIR", str(tmp_path / "runs"))
    with pytest.raises(SystemExit) as caught:
        main(["--profile", "nope"])
    assert caught.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_demo_missing_data_root_exits_cleanly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SCLIB_RUNS_DIR", str(tmp_path / "runs"))
    with pytest.raises(SystemExit) as caught:
        main(["--profile", "tiny", "--data-root", str(tmp_path / "missing")])
    assert caught.value.code == 2
    assert f"data folder {tmp_path / 'missing'} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_demo_unknown_notebook_exits_cleanly(tiny_mvtec, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SCLIB_RUNS_DIR", str(tmp_path / "runs"))
    with pytest.raises(SystemExit) as caught:
        main(["--profile", "tiny", "--data-root", str(tiny_mvtec), "--notebooks", "99"])
    assert caught.value.code == 2
    assert "no notebook starts with ['99']" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_headline_reads_metrics(tmp_path):
    overall = {"auroc": 0.83854, "aupr": 0.9159, "n_normal": 377, "n_anomaly": 705}
    (tmp_path / "metrics.json").write_text(json.dumps({"overall": overall}))
    line = demo.headline_metrics(tmp_path)
    assert line == "notebook 04 test AUROC 0.8385, AUPR 0.9159 (377 normal, 705 anomalous images)"


def test_headline_without_metrics_is_none(tmp_path):
    assert demo.headline_metrics(tmp_path) is None
