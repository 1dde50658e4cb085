"""Tests of sclib.batch.aggregate and sclib.reference on batch folders written by hand."""

from __future__ import annotations

import json
import logging
import math
import statistics
from pathlib import Path

import matplotlib
import pytest

from sclib.batch import collect_metrics, compare_with_reference, paper_table, plot_paper_table
from sclib.reference import SOURCES, parse_mean_std, reference_table

matplotlib.use("Agg")

NOTEBOOK_08 = Path(__file__).resolve().parents[1] / "notebooks" / "08_batch_experiments.ipynb"


def write_run(batch_dir: Path, params: dict, auroc: float, **extra_metrics) -> Path:
    """Write one run folder the way a batch leaves it: params.json and metrics.json."""
    name = "__".join(f"{key}={value}" for key, value in params.items())
    run_dir = batch_dir / name
    run_dir.mkdir(parents=True)
    (run_dir / "params.json").write_text(json.dumps(params))
    overall = {"auroc": auroc, "aupr": auroc - 0.2, "n_normal": 377, "n_anomaly": 700}
    metrics = {"overall": overall, "per_class": {}, "seen": None, "unseen": None, **extra_metrics}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


# Values per (setting, n_anomaly, known_class) and seed.
SCORES = {
    ("general", 10, None): [0.80, 0.84, 0.83],
    ("general", 1, None): [0.60, 0.70, 0.65],
    ("hard", 10, "mono"): [0.70, 0.72, 0.74],
    ("hard", 10, "poly"): [0.80, 0.78, 0.82],
}


@pytest.fixture
def paper_batch(tmp_path):
    batch_dir = tmp_path / "batch"
    for (setting, n_anomaly, known_class), values in SCORES.items():
        for seed, auroc in enumerate(values):
            params = {"profile": "quick", "setting": setting, "n_anomaly": n_anomaly}
            if known_class:
                params["known_class"] = known_class
            write_run(batch_dir, {**params, "seed": seed}, auroc)
    return batch_dir


def test_collect_metrics_long_form(tmp_path):
    per_class = {"mono": {"auroc": 0.9, "aupr": 0.8, "n_normal": 377, "n_anomaly": 313}}
    unseen = {"auroc": 0.7, "aupr": 0.6, "n_normal": 377, "n_anomaly": 402}
    write_run(
        tmp_path,
        {"setting": "general", "n_anomaly": 10, "seed": 0},
        0.8,
        per_class=per_class,
        unseen=unseen,
    )

    metrics = collect_metrics(tmp_path)

    assert list(metrics["scope"]) == ["overall", "unseen", "class"]
    assert metrics["defect_class"].isna().tolist() == [True, True, False]
    assert metrics["defect_class"].iloc[2] == "mono"
    assert list(metrics["auroc"]) == [0.8, 0.7, 0.9]
    assert list(metrics["n_test_anomaly"]) == [700, 402, 313]
    assert (metrics["setting"] == "general").all()
    assert (metrics["n_anomaly"] == 10).all()
    assert (metrics["seed"] == 0).all()


def test_collect_metrics_ignores_runs_without_metrics(tmp_path):
    write_run(tmp_path, {"setting": "general", "n_anomaly": 10, "seed": 0}, 0.8)
    failed = tmp_path / "setting=general__n_anomaly=10__seed=1"
    failed.mkdir()
    (failed / "params.json").write_text(
        json.dumps({"setting": "general", "n_anomaly": 10, "seed": 1})
    )

    assert collect_metrics(tmp_path)["seed"].tolist() == [0]


def test_collect_metrics_missing_folder_is_empty(tmp_path):
    metrics = collect_metrics(tmp_path / "absent")

    assert metrics.empty
    assert "auroc" in metrics.columns
    assert paper_table(metrics).empty


def test_collect_metrics_rejects_corrupt_json(tmp_path):
    run_dir = write_run(tmp_path, {"setting": "general", "n_anomaly": 10, "seed": 0}, 0.8)
    (run_dir / "metrics.json").write_text("{not json")

    with pytest.raises(ValueError, match="metrics.json is not valid JSON"):
        collect_metrics(tmp_path)


def test_paper_table_rows_in_paper_order(paper_batch):
    table = paper_table(collect_metrics(paper_batch))

    assert table["row"].tolist() == [
        "general 10-shot",
        "general 1-shot",
        "hard 10-shot, mono known",
        "hard 10-shot, poly known",
        "hard 10-shot, mean over mono/poly known",
    ]
    assert table["known_class"].isna().tolist() == [True, True, False, False, False]
    assert table["known_class"].dropna().tolist() == ["mono", "poly", "mean"]


def test_paper_table_mean_and_std_over_seeds(paper_batch):
    table = paper_table(collect_metrics(paper_batch)).set_index("row")

    for (setting, n_anomaly, known_class), values in SCORES.items():
        label = f"{setting} {n_anomaly}-shot" + (f", {known_class} known" if known_class else "")
        assert table.loc[label, "auroc_mean"] == pytest.approx(statistics.mean(values))
        assert table.loc[label, "auroc_std"] == pytest.approx(statistics.stdev(values))
        assert table.loc[label, "aupr_mean"] == pytest.approx(statistics.mean(values) - 0.2)
        assert table.loc[label, "n_seeds"] == 3
        assert table.loc[label, "seeds"] == [0, 1, 2]
    assert table.loc["general 10-shot", "AUROC"] == "0.823 ± 0.021"


def test_hard_mean_is_mean_over_classes_per_seed(paper_batch):
    table = paper_table(collect_metrics(paper_batch)).set_index("row")
    per_seed = [
        statistics.mean(pair)
        for pair in zip(SCORES[("hard", 10, "mono")], SCORES[("hard", 10, "poly")])
    ]

    row = table.loc["hard 10-shot, mean over mono/poly known"]

    assert row["auroc_mean"] == pytest.approx(statistics.mean(per_seed))
    assert row["auroc_std"] == pytest.approx(statistics.stdev(per_seed))


def test_hard_mean_leaves_out_incomplete_seeds(paper_batch, caplog):
    write_run(
        paper_batch,
        {"profile": "quick", "setting": "hard", "n_anomaly": 10, "known_class": "mono", "seed": 9},
        0.1,
    )

    with caplog.at_level(logging.WARNING, logger="sclib.batch.aggregate"):
        table = paper_table(collect_metrics(paper_batch)).set_index("row")

    assert table.loc["hard 10-shot, mean over mono/poly known", "seeds"] == [0, 1, 2]
    assert table.loc["hard 10-shot, mono known", "seeds"] == [0, 1, 2, 9]
    assert "leaves out seeds [9]" in caplog.text


def test_varying_parameter_splits_rows(tmp_path):
    for augmentation, base in (("saliencycut", 0.8), ("cutmix", 0.7)):
        for seed in (0, 1):
            params = {
                "setting": "general",
                "n_anomaly": 10,
                "augmentation": augmentation,
                "seed": seed,
            }
            write_run(tmp_path, params, base + 0.01 * seed)

    table = paper_table(collect_metrics(tmp_path)).set_index("row")

    assert table.loc["general 10-shot (augmentation=saliencycut)", "auroc_mean"] == pytest.approx(
        0.805
    )
    assert table.loc["general 10-shot (augmentation=cutmix)", "auroc_mean"] == pytest.approx(0.705)
    assert "augmentation" in table.columns


def test_single_seed_has_no_std(tmp_path):
    write_run(tmp_path, {"setting": "general", "n_anomaly": 10, "seed": 0}, 0.8)

    row = paper_table(collect_metrics(tmp_path)).iloc[0]

    assert math.isnan(row["auroc_std"])
    assert row["AUROC"] == "0.800"


def test_paper_table_requires_setting_column(tmp_path):
    write_run(tmp_path, {"n_anomaly": 10, "seed": 0}, 0.8)

    with pytest.raises(ValueError, match=r"lacks parameter column\(s\) \['setting'\]"):
        paper_table(collect_metrics(tmp_path))


def test_reference_table_values_and_sources():
    reference = reference_table("elpv")

    dra = reference[
        (reference["method"] == "DRA (D)")
        & (reference["setting"] == "general")
        & (reference["n_anomaly"] == 10)
    ]
    assert dra["auroc_mean"].item() == 0.845
    assert dra["auroc_std"].item() == 0.013
    assert set(reference["source"]) <= set(SOURCES)
    assert reference["citation"].notna().all()
    assert reference["auroc_mean"].between(0.4, 1.0).all()
    assert "SaliencyCut" not in set(reference["method"])


def test_reference_table_hard_rows_name_known_class():
    reference = reference_table("ELPV")
    hard = reference[
        (reference["method"] == "AHL (DRA)")
        & (reference["setting"] == "hard")
        & (reference["n_anomaly"] == 1)
    ]

    assert dict(zip(hard["known_class"], hard["auroc_mean"])) == {
        "mean": 0.740,
        "mono": 0.774,
        "poly": 0.705,
    }


def test_reference_table_unknown_dataset_raises():
    with pytest.raises(ValueError, match="no reference results stored for dataset 'mvtec'"):
        reference_table("mvtec")


@pytest.mark.parametrize(
    ("text", "mean", "std"), [("0.845±0.013", 0.845, 0.013), ("0.916", 0.916, math.nan)]
)
def test_parse_mean_std(text, mean, std):
    parsed_mean, parsed_std = parse_mean_std(text)

    assert parsed_mean == mean
    assert parsed_std == std or (math.isnan(parsed_std) and math.isnan(std))


def test_compare_puts_published_values_beside_ours(paper_batch):
    table = paper_table(collect_metrics(paper_batch))

    comparison = compare_with_reference(table, methods=["DRA (D)", "PatchCore (unsupervised)"])

    assert list(comparison.columns) == [
        "sclib (this batch)",
        "DRA (D) [D]",
        "PatchCore (unsupervised) [A]",
    ]
    assert comparison.loc["general 10-shot", "sclib (this batch)"] == "0.823 ± 0.021"
    assert comparison.loc["general 10-shot", "DRA (D) [D]"] == "0.845 ± 0.013"
    assert comparison.loc["hard 10-shot, mono known", "DRA (D) [D]"] == "0.731"
    assert (
        comparison.loc["hard 10-shot, mean over mono/poly known", "DRA (D) [D]"] == "0.766 ± 0.029"
    )
    assert comparison.loc["general 1-shot", "PatchCore (unsupervised) [A]"] == "—"
    assert comparison.attrs["sources"]["D"] == SOURCES["D"]


def test_compare_rejects_unknown_method(paper_batch):
    table = paper_table(collect_metrics(paper_batch))

    with pytest.raises(ValueError, match="no published elpv values for \\['SaliencyCut'\\]"):
        compare_with_reference(table, methods=["SaliencyCut"])


def test_plot_draws_one_bar_per_row_and_series(paper_batch):
    table = paper_table(collect_metrics(paper_batch))

    ax = plot_paper_table(table, methods=("DRA (D)",))

    assert len(ax.patches) == 2 * len(table)
    assert [text.get_text() for text in ax.get_legend().get_texts()] == [
        "sclib (this batch)",
        "DRA (D) [D]",
    ]
    assert ax.patches[0].get_height() == pytest.approx(table["auroc_mean"].iloc[0])


@pytest.mark.slow
@pytest.mark.parametrize("has_results", [False, True])
def test_notebook_08_runs_with_and_without_results(tmp_path, paper_batch, has_results):
    import papermill

    batch_dir = paper_batch if has_results else tmp_path / "absent"
    output = tmp_path / "08_executed.ipynb"

    papermill.execute_notebook(
        str(NOTEBOOK_08),
        str(output),
        parameters={"batch_dir": str(batch_dir)},
        kernel_name="python3",
        cwd=str(NOTEBOOK_08.parents[1]),
        progress_bar=False,
    )

    text = output.read_text()
    if has_results:
        assert "0.823 ± 0.021" in text
        assert "0.845 ± 0.013" in text
    else:
        assert "No metrics found" in text
