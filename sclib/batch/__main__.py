"""Command line: ``python -m sclib.batch GRID.yaml [--workers N | --scheduler ADDRESS | --local]``.

Exit status: 0 when every run is ok or skipped, 1 when a run failed, 2 for an invalid
grid file or invalid options.
"""

from __future__ import annotations

import argparse
import logging
import sys

import pandas as pd

from sclib.batch.execute import SUMMARY_CSV, plan_runs, run_batch
from sclib.batch.grid import GridError, load_grid


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of ``python -m sclib.batch``."""
    parser = argparse.ArgumentParser(
        prog="python -m sclib.batch",
        description="Run a notebook over a YAML grid of parameters and seeds with papermill.",
    )
    parser.add_argument("grid", help="grid YAML file (see grids/README.md)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=int,
        help="parallel runs on a local Dask cluster "
        "(default: the grid file's workers, else one per 4 cores)",
    )
    where.add_argument(
        "--scheduler", help="address of a running Dask scheduler, such as tcp://SCHEDULER_HOST:8786"
    )
    where.add_argument(
        "--local", action="store_true", help="run one after another in this process, without Dask"
    )
    parser.add_argument(
        "--threads-per-run",
        type=int,
        help="OMP_NUM_THREADS, MKL_NUM_THREADS and OPENBLAS_NUM_THREADS of each kernel "
        "(default: cores // workers locally)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="list the runs and which would be skipped, run nothing",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = args.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level == "INFO":
        # Keep one line per run; DEBUG shows every cluster and papermill event. Importing
        # distributed first, because it sets its logger levels on import.
        import distributed  # noqa: F401

        for name in ("distributed", "papermill"):
            logging.getLogger(name).setLevel(logging.WARNING)
    for name, value in (("--workers", args.workers), ("--threads-per-run", args.threads_per_run)):
        if value is not None and value < 1:
            parser.error(f"{name} must be at least 1, got {value}")

    try:
        spec = load_grid(args.grid)
    except (GridError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    with pd.option_context(
        "display.width", 200, "display.max_colwidth", 100, "display.max_rows", None
    ):
        if args.dry_run:
            plan = plan_runs(spec)
            print(plan.to_string(index=False))
            counts = plan["action"].value_counts()
            print(
                f"\n{len(plan)} runs: {counts.get('run', 0)} to run, "
                f"{counts.get('skip', 0)} skipped"
            )
            return 0

        summary = run_batch(
            spec,
            workers=args.workers,
            scheduler=args.scheduler,
            local=args.local,
            threads_per_run=args.threads_per_run,
        )
        print(summary[["run", "status", "seconds", "error"]].fillna("").to_string(index=False))
    counts = summary["status"].value_counts()
    print(
        f"\n{len(summary)} runs: {counts.get('ok', 0)} ok, {counts.get('failed', 0)} failed, "
        f"{counts.get('skipped', 0)} skipped; summary in {spec.output / SUMMARY_CSV}"
    )
    return 1 if counts.get("failed", 0) else 0


if __name__ == "__main__":
    sys.exit(main())
