"""Run the notebook series on ELPV in batch: ``python -m sclib.demo --profile quick``.

The command builds ELPV in the MVTec AD layout (once), creates a new run folder under
``runs/``, and executes every numbered notebook with papermill, passing the profile,
the data folder and the run folder as parameters. Notebook 04 writes the training
results (configuration, manifest, metrics, scores, figures) into that folder, and
every executed notebook is saved beside them in ``notebooks/``. By default it runs
notebooks 00 to 05; ``--notebooks 06,07`` runs others.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from sclib.paths import project_root, runs_dir

logger = logging.getLogger("sclib.demo")

KERNEL_NAME = "python3"
# Notebooks of the default series: the ELPV walk-through from the overview to the
# likelihood bound. Notebook 06 trains eight models and notebook 07 trains on another
# folder, so they run only when named with --notebooks.
DEFAULT_NOTEBOOKS = ["00", "01", "02", "03", "04", "05"]


def list_notebooks(folder: Path, selection: list[str] | None = None) -> list[Path]:
    """Return the numbered notebooks of ``folder`` in order, optionally only those whose
    two-digit prefix is in ``selection`` (``"1"`` means ``"01"``)."""
    notebooks = sorted(path for path in folder.glob("[0-9][0-9]_*.ipynb"))
    if selection:
        selection = [prefix.strip().zfill(2) for prefix in selection]
        notebooks = [path for path in notebooks if path.name[:2] in selection]
        missing = sorted(set(selection) - {path.name[:2] for path in notebooks})
        if missing:
            raise ValueError(
                f"no notebook starts with {missing} in {folder}; "
                f"available: {[path.name[:2] for path in sorted(folder.glob('[0-9][0-9]_*.ipynb'))]}"
            )
    return notebooks


def run_series(
    profile: str,
    data_root: Path,
    run_dir: Path,
    notebooks: list[Path],
    extra_parameters: dict | None = None,
) -> list[tuple[str, float]]:
    """Execute ``notebooks`` in order with papermill and return (name, seconds) per notebook.

    Raises the papermill error of the first notebook that fails; the executed copy in
    ``run_dir/notebooks`` shows the failing cell.
    """
    import papermill

    executed_dir = run_dir / "notebooks"
    executed_dir.mkdir(parents=True, exist_ok=True)
    parameters = {"profile": profile, "data_root": str(data_root), "run_dir": str(run_dir)}
    parameters.update(extra_parameters or {})
    timings = []
    for notebook in notebooks:
        started = time.perf_counter()
        logger.info("running %s", notebook.name)
        papermill.execute_notebook(
            str(notebook),
            str(executed_dir / notebook.name),
            parameters=parameters,
            kernel_name=KERNEL_NAME,
            cwd=str(project_root()),
            progress_bar=False,
        )
        seconds = time.perf_counter() - started
        timings.append((notebook.name, seconds))
        logger.info("finished %s in %.0f s", notebook.name, seconds)
    return timings


def main(argv: list[str] | None = None) -> int:
    from sclib.config import PROFILES

    parser = argparse.ArgumentParser(
        prog="python -m sclib.demo",
        description="Run the notebook series on ELPV (or another subset folder) in batch.",
    )
    parser.add_argument(
        "--profile", default="quick", choices=PROFILES, help="run profile (default: quick)"
    )
    parser.add_argument(
        "--data-root",
        default="data/elpv",
        help="subset folder in the MVTec AD layout; data/elpv is built from the elpv-dataset "
        "package when missing (default: data/elpv)",
    )
    parser.add_argument(
        "--notebooks",
        default=None,
        help="comma-separated two-digit prefixes to run, for example 04,06 (default: 00 to 05)",
    )
    parser.add_argument(
        "--name", default=None, help="run folder name prefix (default: DATA-FOLDER-NAME-PROFILE)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    from sclib.notebook import prepare_data_root
    from sclib.runs import new_run_dir

    started = time.perf_counter()
    selection = args.notebooks.split(",") if args.notebooks else DEFAULT_NOTEBOOKS
    try:
        notebooks = list_notebooks(project_root() / "notebooks", selection)
        data_root = prepare_data_root(args.data_root)
        run_dir = new_run_dir(runs_dir(), args.name or f"{data_root.name}-{args.profile}")
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    logger.info("run folder: %s", run_dir)

    timings = run_series(args.profile, data_root, run_dir, notebooks)

    logger.info("all %d notebooks finished in %.1f min", len(timings), (time.perf_counter() - started) / 60)
    for name, seconds in timings:
        logger.info("  %-40s %6.0f s", name, seconds)
    headline = headline_metrics(run_dir)
    if headline:
        logger.info("%s", headline)
    logger.info("results are in %s", run_dir)
    return 0


def headline_metrics(run_dir: Path) -> str | None:
    """Return the test AUROC and AUPR of ``run_dir/metrics.json`` as a line, or None.

    Notebook 04 writes ``metrics.json``; without it (another notebook selection) there
    is no line.
    """
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return None
    overall = json.loads(path.read_text())["overall"]
    return (
        f"notebook 04 test AUROC {overall['auroc']:.4f}, AUPR {overall['aupr']:.4f} "
        f"({overall['n_normal']} normal, {overall['n_anomaly']} anomalous images)"
    )


if __name__ == "__main__":
    sys.exit(main())
