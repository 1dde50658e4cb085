"""Specification of sclib.experiment: a run from a data folder to a complete run folder."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sclib.config import get_profile
from sclib.experiment import (
    SCORE_COLUMNS,
    evaluate_run,
    fit,
    prepare_data,
    run_experiment,
    write_outputs,
    RunResult,
)
from sclib.metrics import evaluate
from tests.conftest import make_tiny_mvtec

RUN_FILES = (
    "config.json",
    "manifest.csv",
    "history.csv",
    "metrics.json",
    "scores.csv",
    "model.pt",
    "roc.png",
    "pr.png",
    "score_hist.png",
    "history.png",
)


def _config(**overrides):
    """Tiny run on the tiny_mvtec fixture: hard setting with scratch as the known class."""
    values = {
        "backbone": "simple_cnn",
        "weights": None,
        "device": "cpu",
        "image_size": 32,
        "steps_per_epoch": 2,
        "setting": "hard",
        "known_class": "scratch",
        "n_anomaly": 2,
        "validation_normal": 0,
    }
    values.update(overrides)
    return get_profile("tiny", **values)


def _snapshot(folder):
    return sorted(
        (str(path.relative_to(folder)), path.stat().st_mtime_ns) for path in folder.rglob("*")
    )


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One finished run on a tiny data set, shared by the tests that only read it."""
    folder = tmp_path_factory.mktemp("experiment")
    data_root = make_tiny_mvtec(folder / "data")
    data_before = _snapshot(data_root.parent)
    result = run_experiment(
        _config(),
        data_root,
        run_parent=folder / "runs",
        progress=False,
        cache_dir=folder / "cache",
    )
    return result, data_root, data_before, folder


@pytest.fixture
def finished_run(shared):
    result, _, data_before, _ = shared
    return result, data_before


def test_run_experiment_writes_every_file(finished_run):
    result, _ = finished_run

    written = sorted(path.name for path in result.run_dir.iterdir())

    assert written == sorted(RUN_FILES)


def test_run_experiment_names_folder_after_data(shared):
    result, _, _, folder = shared

    assert result.run_dir.parent == folder / "runs"
    assert result.run_dir.name.startswith("widget-")


def test_run_experiment_never_writes_in_data_folder(shared):
    _, data_root, data_before, _ = shared

    assert _snapshot(data_root.parent) == data_before


def test_scores_file_matches_metrics(finished_run):
    result, _ = finished_run
    scores = pd.read_csv(result.run_dir / "scores.csv")
    metrics = json.loads((result.run_dir / "metrics.json").read_text())

    expected = evaluate(
        scores["score"], scores["label"], scores["defect_class"], result.data.seen_classes
    )

    assert list(scores.columns) == list(SCORE_COLUMNS)
    assert len(scores) == 7
    assert metrics["overall"]["auroc"] == pytest.approx(expected["overall"]["auroc"])
    assert metrics["overall"]["n_normal"] == 4
    assert metrics["overall"]["n_anomaly"] == 3
    assert sorted(metrics["per_class"]) == ["dent"]
    assert metrics["seen"] is None
    assert metrics["unseen"]["n_anomaly"] == 3
    np.testing.assert_allclose(
        scores["score"], scores["anomaly_score"] - scores["normal_score"], atol=1e-5
    )


def test_manifest_records_every_role(finished_run):
    result, _ = finished_run
    manifest = pd.read_csv(result.run_dir / "manifest.csv")

    roles = manifest["role"].value_counts().to_dict()

    assert roles == {"train_normal": 8, "train_anomaly": 2, "test": 7, "unused": 1}
    assert set(manifest.loc[manifest["role"] == "train_anomaly", "defect_class"]) == {"scratch"}


def test_config_file_records_run(shared):
    result, data_root, _, _ = shared
    record = json.loads((result.run_dir / "config.json").read_text())

    assert record["config"] == result.config.to_dict()
    assert record["status"] == "finished"
    assert record["data_root"] == str(data_root.resolve())
    assert "torch" in record["library_versions"]
    assert set(record["timing"]) == {"prepare_s", "train_s", "score_s", "total_s"}


def test_history_file_has_one_row_per_step(finished_run):
    result, _ = finished_run
    history = pd.read_csv(result.run_dir / "history.csv")

    assert history["step"].tolist() == [1, 2]
    assert np.isfinite(history["loss"]).all()


def test_second_run_gets_new_folder(shared):
    first, data_root, _, folder = shared

    second = run_experiment(
        _config(steps_per_epoch=1),
        data_root,
        run_parent=folder / "runs",
        progress=False,
        cache_dir=folder / "cache",
    )

    assert second.run_dir != first.run_dir
    assert (first.run_dir / "metrics.json").is_file()
    assert (second.run_dir / "metrics.json").is_file()


def test_steps_reproduce_run_experiment(shared, tmp_path):
    result, data_root, _, folder = shared
    config = result.config

    data = prepare_data(config, data_root, cache_dir=folder / "cache")
    model, history = fit(config, data, progress=False)
    scores, metrics = evaluate_run(model, data, config)
    run_dir = tmp_path / "by-steps"
    run_dir.mkdir()
    write_outputs(RunResult(run_dir, config, data, model, history, scores, metrics))

    pd.testing.assert_frame_equal(scores, result.scores)
    assert metrics == result.metrics
    assert sorted(path.name for path in run_dir.iterdir()) == sorted(RUN_FILES)


def test_run_dir_inside_data_folder_is_rejected(tiny_mvtec, tmp_path):
    with pytest.raises(ValueError, match="inside the data folder"):
        run_experiment(
            _config(), tiny_mvtec, run_dir=tiny_mvtec / "runs", cache_dir=tmp_path / "cache"
        )

    assert not (tiny_mvtec / "runs").exists()


def test_finished_run_dir_is_not_overwritten(tiny_mvtec, tmp_path):
    run_dir = tmp_path / "old-run"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text("{}")

    with pytest.raises(ValueError, match="metrics.json of a finished run"):
        run_experiment(_config(), tiny_mvtec, run_dir=run_dir, cache_dir=tmp_path / "cache")

    assert (run_dir / "metrics.json").read_text() == "{}"


def test_unfinished_run_dir_is_reused(tiny_mvtec, tmp_path):
    run_dir = tmp_path / "failed-run"
    (run_dir / "notebooks").mkdir(parents=True)
    (run_dir / "config.json").write_text('{"status": "running"}')

    result = run_experiment(
        _config(steps_per_epoch=1),
        tiny_mvtec,
        run_dir,
        progress=False,
        cache_dir=tmp_path / "cache",
    )

    record = json.loads((run_dir / "config.json").read_text())
    assert result.run_dir == run_dir
    assert record["status"] == "finished"
    assert (run_dir / "metrics.json").is_file()
    assert (run_dir / "notebooks").is_dir()


def test_prepare_data_subsamples_with_both_classes(tiny_mvtec, tmp_path):
    config = _config(
        setting="general", known_class=None, n_anomaly=0, max_train_normal=3, max_test=5
    )

    data = prepare_data(config, tiny_mvtec, cache_dir=tmp_path / "cache")

    test_classes = sorted(set(data.test_classes))
    assert len(data.train_records) == 3
    assert data.train_images.shape == (3, 3, 32, 32)
    assert data.test_images.shape == (5, 3, 32, 32)
    assert test_classes == ["dent", "good", "scratch"]
    roles = data.manifest["role"].value_counts().to_dict()
    assert roles == {"train_normal": 3, "test": 5, "unused": 10}


def test_prepare_data_subsample_depends_on_seed(tiny_mvtec, tmp_path):
    def kept_names(seed):
        config = _config(max_train_normal=3, seed=seed)
        data = prepare_data(config, tiny_mvtec, cache_dir=tmp_path / "cache")
        return [record.path.name for record in data.train_records[:3]]

    assert kept_names(0) == kept_names(0)
    assert any(kept_names(0) != kept_names(seed) for seed in (1, 2, 3))


def test_prepare_data_rejects_test_set_without_anomalies(tiny_mvtec, tmp_path):
    # Six labelled anomalies are every anomaly of tiny_mvtec, so none is left to test.
    config = _config(setting="general", known_class=None, n_anomaly=6)

    with pytest.raises(ValueError, match="0 anomalies"):
        prepare_data(config, tiny_mvtec, cache_dir=tmp_path / "cache")


def test_failed_run_leaves_no_metrics(tiny_mvtec, tmp_path, monkeypatch):
    def failing_fit(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr("sclib.experiment.fit", failing_fit)

    with pytest.raises(RuntimeError, match="out of memory"):
        run_experiment(
            _config(), tiny_mvtec, run_dir=tmp_path / "run", cache_dir=tmp_path / "cache"
        )

    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["status"] == "running"
    assert (tmp_path / "run" / "manifest.csv").is_file()
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_validation_normals_leave_training(tiny_mvtec):
    config = get_profile("tiny", backbone="simple_cnn", weights=None, n_anomaly=2, validation_normal=3)

    data = prepare_data(config, tiny_mvtec)

    held_out = {str(record.path) for record in data.validation_records}
    trained = {str(record.path) for record in data.train_records}
    assert len(held_out) == 3
    assert not held_out & trained
    assert tuple(data.validation_images.shape[:2]) == (3, 3)
    roles = data.manifest.set_index("path").loc[sorted(held_out), "role"]
    assert set(roles) == {"validation"}


def test_run_writes_validation_scores(tiny_mvtec, tmp_path):
    config = get_profile("tiny", backbone="simple_cnn", weights=None, n_anomaly=2, validation_normal=3)

    result = run_experiment(config, tiny_mvtec, run_dir=tmp_path / "run", progress=False)

    validation = pd.read_csv(result.run_dir / "validation_scores.csv")
    assert validation["role"].eq("validation").all()
    assert int((validation["label"] == 0).sum()) == 3
    assert int((validation["label"] == 1).sum()) == 2


def test_validation_cannot_take_every_normal(tiny_mvtec):
    config = get_profile("tiny", backbone="simple_cnn", weights=None, n_anomaly=2, validation_normal=8)

    with pytest.raises(ValueError, match="validation_normal=8"):
        prepare_data(config, tiny_mvtec)


def test_write_outputs_keeps_finished_run(tiny_mvtec, tmp_path):
    config = get_profile("tiny", backbone="simple_cnn", weights=None, n_anomaly=2)
    result = run_experiment(config, tiny_mvtec, run_dir=tmp_path / "run", progress=False)
    before = (result.run_dir / "metrics.json").read_bytes()

    with pytest.raises(ValueError, match="finished run"):
        write_outputs(result)

    assert (result.run_dir / "metrics.json").read_bytes() == before
