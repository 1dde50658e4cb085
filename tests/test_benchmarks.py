"""Specification of the benchmark scripts: they run end to end and report every field.

The scripts live in ``benchmarks/`` outside the package, so the speed benchmark runs as
a subprocess, and its baseline module is loaded from its file. No test checks a timing.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sclib.augment.saliency import input_saliency
from sclib.models.two_head import build_model
from tests.conftest import make_tiny_mvtec

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load_module(name: str, monkeypatch: pytest.MonkeyPatch):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    # dataclasses look the module up in sys.modules while the file executes
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def speed_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run train_speed.py for one step of each variant at 64 px and return its JSON."""
    tmp_path = tmp_path_factory.mktemp("speed")
    data_root = make_tiny_mvtec(tmp_path / "data")
    output = tmp_path / "results" / "speed.json"
    command = [
        sys.executable,
        str(BENCHMARKS / "train_speed.py"),
        "--profile", "tiny",
        "--backbone", "simple_cnn",
        "--image-size", "64",
        "--batch-size", "6",
        "--steps", "1",
        "--warmup", "0",
        "--n-anomaly", "2",
        "--eval-images", "6",
        "--variants", "all",
        "--device", "cpu",
        "--threads", "1",
        "--data-root", str(data_root),
        "--cache-dir", str(tmp_path / "cache"),
        "--json", str(output),
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "speed-up" in completed.stdout
    return json.loads(output.read_text())


def test_speed_report_describes_machine(speed_report):
    machine = speed_report["machine"]

    assert machine["torch"] == torch.__version__
    assert machine["torch_threads"] == 1
    assert set(machine["cpu_flags"]) >= {"amx_bf16", "avx512_bf16"}
    assert speed_report["steps"] == 1


def test_speed_report_has_both_variants(speed_report):
    profile = speed_report["profiles"]["tiny"]

    assert profile["config"]["backbone"] == "simple_cnn"
    assert profile["config"]["batch_size"] == 6
    assert profile["n_test_images"] == 6
    for variant in ("baseline", "fast"):
        result = profile[variant]
        assert result["train_images_per_s"] > 0, variant
        assert result["inference_images_per_s"] > 0, variant
        assert len(result["step_seconds"]) == 1, variant
        assert np.isfinite(result["mean_loss"]), variant
    assert profile["baseline"]["precision"] == "fp32"
    assert profile["baseline"]["channels_last"] is False
    assert profile["fast"]["channels_last"] is True


def test_speed_report_breakdown_shares(speed_report):
    profile = speed_report["profiles"]["tiny"]

    for variant in ("baseline", "fast"):
        breakdown = profile[variant]["breakdown"]
        phases = ("data", "saliency", "smooth_and_paste", "train_pass")
        assert all(0 <= breakdown[phase] <= 1 for phase in phases), breakdown
        assert sum(breakdown[phase] for phase in phases) == pytest.approx(1, abs=1e-6)
        assert breakdown["augment"] == pytest.approx(
            breakdown["saliency"] + breakdown["smooth_and_paste"], abs=1e-6
        )


def test_speed_report_ratio_matches_rates(speed_report):
    profile = speed_report["profiles"]["tiny"]
    baseline, fast = profile["baseline"], profile["fast"]

    expected = fast["train_images_per_s"] / baseline["train_images_per_s"]
    assert profile["ratio"]["train"] == pytest.approx(expected)
    expected = fast["inference_images_per_s"] / baseline["inference_images_per_s"]
    assert profile["ratio"]["inference"] == pytest.approx(expected)
    expected = baseline["step_seconds"][0] / fast["step_seconds"][0]
    assert profile["ratio"]["train_per_round"] == [pytest.approx(expected, rel=1e-2)]
    assert profile["ratio"]["train_median"] == pytest.approx(expected, rel=1e-2)


def test_speed_report_variant_table(speed_report):
    variants = speed_report["profiles"]["tiny"]["variants"]

    names = sorted(row["name"] for row in variants)
    assert names == ["bf16, channels-last", "fp32, channels-last", "fp32, contiguous"]
    assert [row["default"] for row in variants].count(True) == 1
    assert all(row["train_images_per_s"] > 0 for row in variants)


def test_baseline_saliency_matches_input_saliency(monkeypatch):
    baseline = _load_module("research_baseline", monkeypatch)
    model = build_model("simple_cnn", weights=None)
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 0, 2, 1])

    whole_batch = baseline.whole_batch_saliency(model, images, labels)
    donors_only = input_saliency(model, images, labels)

    # the whole-batch loss is a mean, so each image's gradient is scaled by 1 / B
    assert torch.allclose(whole_batch * len(images), donors_only, rtol=1e-4, atol=1e-7)
    assert all(parameter.grad is None for parameter in model.parameters())


def test_baseline_paste_changes_only_pseudo_rows(monkeypatch):
    baseline = _load_module("research_baseline", monkeypatch)
    images = torch.stack([torch.full((3, 36, 36), float(value)) for value in range(5)])
    labels = torch.tensor([0, 2, 1, 0, 2])
    saliency = torch.zeros(5, 1, 36, 36)
    saliency[..., :18, :18] = 1.0

    mixed = baseline.paste_per_sample(
        images, labels, saliency, np.random.default_rng(0), grid=18, order=2, threshold=0.4
    )

    for row in (0, 2, 3):
        assert torch.equal(mixed[row], images[row]), row
    for row in (1, 4):
        assert mixed[row, :, 0, 0].eq(float(row)).all(), row
        assert set(mixed[row, 0, -1, -1].unique().tolist()) <= {0.0, 3.0}, row


def test_parity_table_difference(monkeypatch):
    parity = _load_module("precision_parity", monkeypatch)
    rows = [
        {"seed": 0, "precision": "fp32", "auroc": 0.80},
        {"seed": 0, "precision": "bf16", "auroc": 0.79},
        {"seed": 1, "precision": "fp32", "auroc": 0.70},
        {"seed": 1, "precision": "bf16", "auroc": 0.73},
        {"seed": 2, "precision": "fp32", "auroc": 0.90},
    ]

    table = parity.parity_table(rows)

    assert table.index.tolist() == [0, 1]
    assert table["difference"].tolist() == pytest.approx([-0.01, 0.03])
    assert parity.mean_difference(table) == pytest.approx(0.01)


def test_parity_difference_rejects_empty_table(monkeypatch):
    parity = _load_module("precision_parity", monkeypatch)
    table = parity.parity_table([{"seed": 0, "precision": "fp32", "auroc": 0.8}])

    with pytest.raises(ValueError, match="both precisions"):
        parity.mean_difference(table)
