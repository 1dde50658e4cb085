"""Tests of sclib.batch: grid files, run names, and batches executed with papermill on Dask.

The executed notebook is tests/fixtures/batch_fixture.ipynb, which writes fake,
deterministic metrics computed from its parameters; the tests check the batch
machinery, not any model.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

from sclib.batch import (
    GridError,
    collect_metrics,
    load_grid,
    paper_table,
    parse_grid,
    run_batch,
    run_name,
)
from sclib.batch.__main__ import main
from sclib.batch.execute import available_cores, default_workers, plan_runs

FIXTURE_NOTEBOOK = Path(__file__).parent / "fixtures" / "batch_fixture.ipynb"
REPOSITORY = Path(__file__).resolve().parents[1]


def fixture_auroc(seed: int, n_anomaly: int, known_class: str | None = None) -> float:
    """The fake AUROC the fixture notebook writes for these parameters."""
    auroc = 0.6 + 0.02 * seed
    if n_anomaly == 10:
        auroc += 0.1
    if known_class == "poly":
        auroc += 0.05
    return auroc


def write_grid(path: Path, document: dict) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def minimal_grid(tmp_path: Path, **changes) -> dict:
    document = {
        "notebook": str(FIXTURE_NOTEBOOK),
        "output": str(tmp_path / "out"),
        "grid": {"setting": ["general"], "n_anomaly": [10, 1]},
        "seeds": [0, 1],
    }
    document.update(changes)
    return document


# Grid expansion and names


def test_run_name_orders_keys_and_puts_seed_last():
    name = run_name({"setting": "hard", "known_class": "mono", "n_anomaly": 10}, seed=2)

    assert name == "setting=hard__known_class=mono__n_anomaly=10__seed=2"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (False, "false"),
        (None, "none"),
        (0.1, "0.1"),
        (2e-05, "2e-05"),
        ("a/b c", "a-b-c"),
    ],
)
def test_run_name_formats_values_safely(value, text):
    assert run_name({"value": value}, seed=0) == f"value={text}__seed=0"


def test_expand_is_product_times_seeds_seed_major(tmp_path):
    spec = parse_grid(minimal_grid(tmp_path, fixed={"profile": "tiny"}))

    names = [run.name for run in spec.runs()]

    assert names == [
        "setting=general__n_anomaly=10__seed=0",
        "setting=general__n_anomaly=1__seed=0",
        "setting=general__n_anomaly=10__seed=1",
        "setting=general__n_anomaly=1__seed=1",
    ]


def test_fixed_parameters_not_in_names(tmp_path):
    spec = parse_grid(minimal_grid(tmp_path, fixed={"profile": "tiny", "data_root": "data/elpv"}))

    first = spec.runs()[0]

    assert first.params == {
        "profile": "tiny",
        "data_root": "data/elpv",
        "setting": "general",
        "n_anomaly": 10,
        "seed": 0,
    }
    assert "profile" not in first.name
    assert spec.run_dir(first) == tmp_path / "out" / first.name


def test_expand_adds_cases_and_pinned_seed(tmp_path):
    cases = [
        {"setting": "hard", "known_class": "mono", "n_anomaly": 10},
        {"setting": "hard", "known_class": "poly", "n_anomaly": 10, "seed": 7},
    ]
    spec = parse_grid(minimal_grid(tmp_path, grid={"setting": ["general"]}, cases=cases))

    names = [run.name for run in spec.runs()]

    assert names == [
        "setting=general__seed=0",
        "setting=hard__known_class=mono__n_anomaly=10__seed=0",
        "setting=general__seed=1",
        "setting=hard__known_class=mono__n_anomaly=10__seed=1",
        "setting=hard__known_class=poly__n_anomaly=10__seed=7",
    ]


def test_cases_alone_are_a_valid_grid(tmp_path):
    document = minimal_grid(tmp_path, cases=[{"setting": "hard", "known_class": "mono"}])
    del document["grid"]

    assert len(parse_grid(document).runs()) == 2


def test_relative_paths_resolve_against_cwd(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "04.ipynb").write_text(FIXTURE_NOTEBOOK.read_text())

    spec = parse_grid(
        minimal_grid(tmp_path, notebook="notebooks/04.ipynb", output="runs/batch/x"), cwd=tmp_path
    )

    assert spec.notebook == tmp_path / "notebooks" / "04.ipynb"
    assert spec.output == tmp_path / "runs" / "batch" / "x"
    assert spec.cwd == tmp_path


def test_defaults_for_kernel_timeout_workers(tmp_path):
    spec = parse_grid(minimal_grid(tmp_path))

    assert spec.kernel == "python3"
    assert spec.timeout is None
    assert spec.workers is None


def test_default_workers_leaves_cores_per_run():
    assert default_workers(n_runs=10, cores=16) == 4
    assert default_workers(n_runs=2, cores=16) == 2
    assert default_workers(n_runs=10, cores=2) == 1


@pytest.mark.parametrize("name", ["elpv_quick.yaml", "elpv_paper_gpu.yaml"])
def test_repository_grids_expand_to_paper_rows(name):
    spec = load_grid(REPOSITORY / "grids" / name, check_notebook=False)
    runs = spec.runs()

    assert len(runs) == 18
    assert len({run.name for run in runs}) == 18
    assert spec.seeds == [0, 1, 2]
    hard = [run for run in runs if run.params["setting"] == "hard"]
    assert {(run.params["known_class"], run.params["n_anomaly"]) for run in hard} == {
        ("mono", 10),
        ("poly", 10),
        ("mono", 1),
        ("poly", 1),
    }


# Grid validation


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seed": [0]}, "unknown key 'seed' (did you mean 'seeds'?)"),
        ({"grid": {}}, "the grid is empty"),
        ({"grid": {"n_anomaly": []}}, "'grid.n_anomaly' is an empty list"),
        ({"grid": {"n_anomaly": 10}}, "'grid.n_anomaly' must be a list"),
        ({"grid": {"n_anomaly": [10, 10]}}, "lists 10 more than once"),
        ({"grid": {"n_anomaly": [[1, 2]]}}, "must be a string, number, boolean or null"),
        ({"grid": {"seed": [0, 1]}}, "put seeds in 'seeds'"),
        ({"grid": {"n-anomaly": [1]}}, "not a valid Python identifier"),
        ({"grid": {"run_dir": ["x"]}}, "must not set 'run_dir'"),
        ({"fixed": {"setting": "hard"}}, "'setting' is in both 'fixed' and 'grid'"),
        ({"fixed": {"seed": 3}}, "put seeds in 'seeds'"),
        ({"seeds": []}, "'seeds' must be a non-empty list"),
        ({"seeds": [0, 0]}, "lists a seed more than once"),
        ({"seeds": ["zero"]}, "seed 'zero' is not an integer"),
        ({"timeout": -5}, "'timeout' must be a positive number"),
        ({"workers": 1.5}, "'workers' must be a positive integer"),
        ({"kernel": ""}, "'kernel' must be a kernel name"),
        ({"cases": [{"setting": "general", "n_anomaly": 10}]}, "run name(s) occur more than once"),
        ({"cases": [{"n_anomaly": 1, "seed": "a"}]}, "'cases[0].seed' must be one integer"),
        ({"cases": [{}]}, "'cases[0]' must be a non-empty mapping"),
        ({"cases": {"setting": "hard"}}, "'cases' must be a list of mappings"),
    ],
)
def test_invalid_grid_raises_clear_error(tmp_path, changes, message):
    document = minimal_grid(tmp_path, **changes)

    with pytest.raises(GridError) as error:
        parse_grid(document)

    assert message in str(error.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"grid": {"n_anomly": [1, 10]}}, "parameter 'n_anomly' (did you mean 'n_anomaly'?)"),
        ({"fixed": {"lr": 0.001}}, "parameter 'lr' is not defined in the parameters cell"),
        ({"fixed": {"profile": "nope"}}, "unknown profile 'nope'"),
        ({"grid": {"setting": ["hardd"]}}, "Config.setting='hardd' is invalid"),
        ({"grid": {"n_anomaly": ["1"]}}, "Config.n_anomaly='1' is invalid"),
        ({"fixed": {"profile": "tiny"}, "grid": {"setting": ["hard"]}}, "needs known_class"),
    ],
)
def test_grid_parameter_mistakes_raise_before_running(tmp_path, changes, message):
    document = minimal_grid(tmp_path, **changes)
    document.setdefault("fixed", {}).setdefault("profile", "tiny")

    with pytest.raises(GridError) as error:
        parse_grid(document)

    assert message in str(error.value)


def test_yaml_exponent_string_gets_hint(tmp_path):
    text = yaml.safe_dump(minimal_grid(tmp_path, fixed={"profile": "tiny"}), sort_keys=False)
    path = tmp_path / "grid.yaml"
    path.write_text(text + "cases:\n  - {seed: 0, n_anomaly: 1e1}\n", encoding="utf-8")

    with pytest.raises(GridError) as error:
        load_grid(path)

    assert "YAML read n_anomaly: 1e1 as a string" in str(error.value)


def test_output_inside_data_root_raises(tmp_path):
    document = minimal_grid(
        tmp_path, output=str(tmp_path / "data" / "runs"), fixed={"data_root": str(tmp_path / "data")}
    )

    with pytest.raises(GridError, match="inside the data folder"):
        parse_grid(document)


@pytest.mark.parametrize("name", ["elpv_quick.yaml", "elpv_paper_gpu.yaml"])
def test_repository_grids_pass_notebook_checks(name):
    assert len(load_grid(REPOSITORY / "grids" / name).runs()) == 18


def test_missing_required_key_raises(tmp_path):
    document = minimal_grid(tmp_path)
    del document["output"]

    with pytest.raises(GridError, match="missing required key 'output'"):
        parse_grid(document)


def test_missing_notebook_names_path_and_cwd(tmp_path):
    document = minimal_grid(tmp_path, notebook="notebooks/absent.ipynb")

    with pytest.raises(FileNotFoundError) as error:
        parse_grid(document, cwd=tmp_path)

    assert str(tmp_path / "notebooks" / "absent.ipynb") in str(error.value)
    assert "resolve against" in str(error.value)


def test_invalid_yaml_names_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("notebook: [unclosed\n", encoding="utf-8")

    with pytest.raises(GridError, match="broken.yaml: invalid YAML"):
        load_grid(path)


def test_yaml_that_is_not_a_mapping_raises(tmp_path):
    path = write_grid(tmp_path / "list.yaml", ["notebook", "output"])  # type: ignore[arg-type]

    with pytest.raises(GridError, match="expected a mapping"):
        load_grid(path)


def test_cli_reports_invalid_grid_with_status_2(tmp_path, capsys):
    path = write_grid(tmp_path / "grid.yaml", minimal_grid(tmp_path, workerz=2))

    status = main([str(path)])

    assert status == 2
    assert "unknown key 'workerz'" in capsys.readouterr().err


def test_cli_rejects_local_with_scheduler(tmp_path):
    path = write_grid(tmp_path / "grid.yaml", minimal_grid(tmp_path))

    with pytest.raises(SystemExit) as exit_info:
        main([str(path), "--local", "--scheduler", "tcp://127.0.0.1:1"])

    assert exit_info.value.code == 2


def test_dry_run_lists_runs_and_skips_finished(tmp_path, capsys):
    spec = parse_grid(minimal_grid(tmp_path))
    finished = spec.run_dir(spec.runs()[1])
    finished.mkdir(parents=True)
    (finished / "metrics.json").write_text("{}")
    path = write_grid(tmp_path / "grid.yaml", minimal_grid(tmp_path))

    status = main([str(path), "--dry-run"])

    output = capsys.readouterr().out
    assert status == 0
    assert "4 runs: 3 to run, 1 skipped" in output
    assert plan_runs(spec)["action"].tolist() == ["run", "skip", "run", "run"]
    assert not (tmp_path / "out" / "summary.csv").exists()


# Batches executed with papermill


@pytest.fixture(scope="module")
def first_batch(tmp_path_factory):
    """Run 6 fixture runs on a local Dask cluster of 2 workers: 4 succeed, 2 fail."""
    root = tmp_path_factory.mktemp("batch")
    document = {
        "notebook": str(FIXTURE_NOTEBOOK),
        "output": str(root / "out"),
        "fixed": {"profile": "tiny"},
        "grid": {"setting": ["general"], "n_anomaly": [10, 1]},
        "cases": [
            {"setting": "general", "n_anomaly": 1, "fail": True, "seed": 0},
            {"setting": "general", "n_anomaly": 1, "write_metrics": False, "seed": 1},
        ],
        "seeds": [0, 1],
    }
    grid_path = write_grid(root / "grid.yaml", document)
    spec = load_grid(grid_path)
    summary = run_batch(spec, workers=2)
    return grid_path, spec, summary


FAILING_RUN = "setting=general__n_anomaly=1__fail=true__seed=0"
SILENT_RUN = "setting=general__n_anomaly=1__write_metrics=false__seed=1"


@pytest.mark.slow
def test_batch_reports_failed_run_with_error_and_notebook(first_batch):
    _, _, summary = first_batch
    failed = summary.set_index("run").loc[FAILING_RUN]

    assert failed["status"] == "failed"
    assert "RuntimeError: fixture failure requested (seed 0)" in failed["error"]
    executed = nbformat.read(failed["notebook"], as_version=4)
    error_outputs = [
        output
        for cell in executed.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert error_outputs[0]["ename"] == "RuntimeError"


@pytest.mark.slow
def test_batch_fails_run_that_writes_no_metrics(first_batch):
    _, _, summary = first_batch
    silent = summary.set_index("run").loc[SILENT_RUN]

    assert silent["status"] == "failed"
    assert "without writing metrics.json" in silent["error"]


@pytest.mark.slow
def test_batch_completes_other_runs(first_batch):
    _, spec, summary = first_batch
    ok = summary[summary["status"] == "ok"]

    assert len(summary) == 6
    assert len(ok) == 4
    for run in spec.runs():
        if run.name in set(ok["run"]):
            run_dir = spec.run_dir(run)
            assert (run_dir / "metrics.json").is_file()
            assert json.loads((run_dir / "params.json").read_text()) == run.params


@pytest.mark.slow
def test_batch_summary_files_match_returned_summary(first_batch):
    _, spec, summary = first_batch

    from_csv = pd.read_csv(spec.output / "summary.csv")
    from_json = json.loads((spec.output / "summary.json").read_text())

    assert from_csv["run"].tolist() == summary["run"].tolist()
    assert from_csv["status"].tolist() == summary["status"].tolist()
    assert [row["params"] for row in from_json] == summary["params"].tolist()
    assert json.loads(from_csv["params"].iloc[0]) == summary["params"].iloc[0]


@pytest.mark.slow
def test_batch_sets_kernel_threads_and_cwd(first_batch):
    _, spec, _ = first_batch
    environment = json.loads((spec.run_dir(spec.runs()[0]) / "environment.json").read_text())

    assert environment["OMP_NUM_THREADS"] == str(max(1, available_cores() // 2))
    assert environment["cwd"] == str(spec.cwd)


@pytest.mark.slow
def test_second_batch_on_scheduler_skips_finished_runs(first_batch, capsys):
    from distributed import LocalCluster

    grid_path, spec, first_summary = first_batch
    ok_runs = first_summary[first_summary["status"] == "ok"]
    modified = {
        run: Path(notebook).stat().st_mtime_ns
        for run, notebook in zip(ok_runs["run"], ok_runs["notebook"])
    }

    # In-process workers start fast; the local-cluster path with worker processes ran above.
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as cluster:
        status = main(
            [str(grid_path), "--scheduler", cluster.scheduler_address, "--threads-per-run", "1"]
        )

    summary = pd.read_csv(spec.output / "summary.csv").set_index("run")
    assert status == 1
    assert (summary.loc[list(modified), "status"] == "skipped").all()
    assert summary.loc[FAILING_RUN, "status"] == "failed"
    assert summary.loc[SILENT_RUN, "status"] == "failed"
    for run, notebook in zip(ok_runs["run"], ok_runs["notebook"]):
        assert Path(notebook).stat().st_mtime_ns == modified[run]
    assert "4 skipped" in capsys.readouterr().out


@pytest.mark.slow
def test_batch_table_has_mean_and_std_over_seeds(first_batch):
    _, spec, _ = first_batch

    table = paper_table(collect_metrics(spec.output)).set_index("row")

    # The failed runs wrote no metrics, so their parameters (fail, write_metrics) split no rows.
    assert list(table.index) == ["general 10-shot", "general 1-shot"]
    for n_anomaly in (10, 1):
        row = table.loc[f"general {n_anomaly}-shot"]
        expected = [fixture_auroc(seed, n_anomaly) for seed in (0, 1)]
        assert row["auroc_mean"] == pytest.approx(statistics.mean(expected))
        assert row["auroc_std"] == pytest.approx(statistics.stdev(expected))
        mean, std = statistics.mean(expected), statistics.stdev(expected)
        assert row["AUROC"] == f"{mean:.3f} ± {std:.3f}"
        assert row["n_seeds"] == 2


@pytest.mark.slow
def test_local_run_times_out(tmp_path):
    document = {
        "notebook": str(FIXTURE_NOTEBOOK),
        "output": str(tmp_path / "out"),
        "cases": [{"setting": "general", "sleep_seconds": 120}],
        "seeds": [0],
        "timeout": 3,
    }
    spec = parse_grid(document)

    summary = run_batch(spec, local=True)

    row = summary.iloc[0]
    assert row["status"] == "failed"
    assert row["error"] == "timed out after 3 s"
    assert row["seconds"] < 60
    status = json.loads((spec.run_dir(spec.runs()[0]) / "status.json").read_text())
    assert status["status"] == "failed"
